//! The parts of dbt's `run_results.json` (schema v4-v6) that gate syncs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::ManifestError;

#[derive(Debug, Clone, Deserialize)]
pub struct RunResults {
    #[serde(default)]
    pub metadata: RunResultsMetadata,
    #[serde(default)]
    pub results: Vec<NodeResult>,
    #[serde(default)]
    pub args: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunResultsMetadata {
    #[serde(default)]
    pub dbt_schema_version: String,
    #[serde(default)]
    pub invocation_id: Option<String>,
    #[serde(default)]
    pub generated_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeResult {
    pub unique_id: String,
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
    /// dbt's steps for the node (`compile`, `execute`), with when each started and ended.
    #[serde(default)]
    pub timing: Vec<TimingStep>,
}

/// One step of a node's build in `run_results.json` (`timing[]`).
#[derive(Debug, Clone, Deserialize)]
pub struct TimingStep {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
}

impl NodeResult {
    /// When dbt finished working on the node: the latest `completed_at` of its steps
    /// (RFC 3339 text as dbt wrote it), if any.
    pub fn completed_at(&self) -> Option<&str> {
        self.timing
            .iter()
            .filter_map(|t| t.completed_at.as_deref())
            .max()
    }
}

/// The dbt command that wrote the file, as far as gating cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    /// `build`, `run`, `retry`, `seed`, `snapshot`, `test`: results say what was built.
    Builds,
    /// `compile`, `docs generate`, `show`, ...: the file proves nothing about builds.
    ProvesNothing,
}

impl RunResults {
    pub fn from_path(path: &Path) -> Result<Self, ManifestError> {
        let bytes = std::fs::read(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_slice(&bytes, path)
    }

    /// Parses `run_results.json` text; `path` is named in errors.
    pub fn from_slice(bytes: &[u8], path: &Path) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The dbt command, from `args.which` (dbt >= 1.5) or `args.rpc_method`.
    pub fn command(&self) -> Option<&str> {
        self.args
            .get("which")
            .or_else(|| self.args.get("rpc_method"))
            .and_then(Value::as_str)
    }

    pub fn invocation(&self) -> Invocation {
        match self.command() {
            Some("build" | "run" | "retry" | "seed" | "snapshot" | "test" | "run-operation") => {
                Invocation::Builds
            }
            // Older files without args: results with model statuses still tell the truth.
            None if self.results.iter().any(|r| is_build_status(&r.status)) => Invocation::Builds,
            _ => Invocation::ProvesNothing,
        }
    }

    pub fn by_id(&self) -> BTreeMap<&str, &NodeResult> {
        self.results
            .iter()
            .map(|r| (r.unique_id.as_str(), r))
            .collect()
    }
}

fn is_build_status(status: &str) -> bool {
    matches!(status, "success" | "error" | "skipped" | "no-op" | "reused")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_proves_nothing() {
        let r: RunResults = serde_json::from_str(
            r#"{"results": [{"unique_id": "model.p.a", "status": "success"}], "args": {"which": "compile"}}"#,
        )
        .unwrap();
        assert_eq!(r.invocation(), Invocation::ProvesNothing);
        let r: RunResults = serde_json::from_str(
            r#"{"results": [{"unique_id": "model.p.a", "status": "success"}], "args": {"which": "build"}}"#,
        )
        .unwrap();
        assert_eq!(r.invocation(), Invocation::Builds);
    }

    #[test]
    fn completed_at_is_the_last_step() {
        let r: RunResults = serde_json::from_str(
            r#"{"results": [{"unique_id": "model.p.a", "status": "success", "timing": [
                {"name": "compile", "started_at": "2026-11-25T10:00:00.000001Z", "completed_at": "2026-11-25T10:00:00.500000Z"},
                {"name": "execute", "started_at": "2026-11-25T10:00:00.500001Z", "completed_at": "2026-11-25T10:00:02.250000Z"}
            ]}, {"unique_id": "model.p.b", "status": "success"}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.results[0].completed_at(),
            Some("2026-11-25T10:00:02.250000Z")
        );
        assert_eq!(r.results[1].completed_at(), None);
    }
}
