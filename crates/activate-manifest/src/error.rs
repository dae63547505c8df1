use std::fmt;
use std::path::PathBuf;

/// Reading a dbt artifact failed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not valid JSON ({source}); it is written by dbt: run `dbt build` (or `dbt parse`) again"
    )]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path} has manifest schema `{found}`, which this dbt-activate does not read (supported: v10, v11, v12, written by dbt 1.6 and later); rebuild with a supported dbt version"
    )]
    UnsupportedVersion { path: PathBuf, found: String },
}

/// One problem in a `meta.activate` block: what, where (model, file, key) and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The model's name, or the query sync's name.
    pub model: String,
    /// "model" or "sync": what `model` names.
    pub what: &'static str,
    pub file: String,
    /// Dotted path of the offending key inside `meta.activate`, e.g. `limits.max_deletes`.
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}` ({})", self.what, self.model, self.file)?;
        if let Some(key) = &self.key {
            if self.what == "sync" {
                write!(f, ", {key}")?;
            } else {
                write!(f, ", meta.activate.{key}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// All the problems found in the activation specs of a project.
#[derive(Debug, Clone)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the activations (meta.activate, activate.yml syncs):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "- {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// The closest candidate within a small edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3) && *d < c.len().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
