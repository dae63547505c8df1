//! `dbt_project.yml`: the project name, the profile it uses, and where dbt writes artifacts.

use std::path::{Path, PathBuf};

use crate::connections::read_yaml;
use crate::connections::render::{RenderContext, render_yaml};
use crate::error::ConfigError;

#[derive(Debug, Clone)]
pub struct ProjectSettings {
    pub project_dir: PathBuf,
    pub project_name: String,
    pub profile_name: String,
    /// Absolute path of dbt's target folder (manifest.json, run_results.json).
    pub target_path: PathBuf,
    /// `vars:` of dbt_project.yml, for `var()` in query syncs (project-scoped vars included).
    pub vars: serde_json::Map<String, serde_json::Value>,
}

/// `target_path` is `--target-path` / `DBT_TARGET_PATH` when given; otherwise dbt_project.yml's
/// `target-path`, otherwise `target`, relative to the project dir.
pub fn load_project(
    project_dir: &Path,
    target_path: Option<&Path>,
) -> Result<ProjectSettings, ConfigError> {
    let file = project_dir.join("dbt_project.yml");
    if !file.is_file() {
        return Err(
            ConfigError::new(format!("no dbt_project.yml in {}", project_dir.display()))
                .with_hint("run dbt-activate from your dbt project, or pass --project-dir"),
        );
    }
    let yaml = read_yaml(&file)?;
    let rendered = render_yaml(&yaml, &RenderContext::default(), "dbt_project.yml")?;
    let name = rendered
        .get("name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ConfigError::new(format!("{}: missing `name`", file.display())))?
        .to_owned();
    let profile_name = rendered
        .get("profile")
        .and_then(|v| v.as_str())
        .unwrap_or(&name)
        .to_owned();
    let target = match target_path {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(
            rendered
                .get("target-path")
                .and_then(|v| v.as_str())
                .unwrap_or("target"),
        ),
    };
    let target_path = if target.is_absolute() {
        target
    } else {
        project_dir.join(target)
    };
    // Global vars, then the ones scoped to this project (`vars: {<project>: {...}}`).
    let mut vars = serde_json::Map::new();
    if let Some(serde_json::Value::Object(all)) = rendered.get("vars") {
        for (k, v) in all {
            if k != &name {
                vars.insert(k.clone(), v.clone());
            }
        }
        if let Some(serde_json::Value::Object(scoped)) = all.get(&name) {
            vars.extend(scoped.clone());
        }
    }
    Ok(ProjectSettings {
        project_dir: project_dir.to_path_buf(),
        project_name: name,
        profile_name,
        target_path,
        vars,
    })
}
