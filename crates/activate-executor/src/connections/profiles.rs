//! The warehouse connection, read from dbt's own `profiles.yml` (same profile, same target).

use std::path::{Path, PathBuf};

use crate::connections::postgres_profile::PostgresProfile;
use crate::connections::project::ProjectSettings;
use crate::connections::read_yaml;
use crate::connections::render::{RenderContext, render_yaml};
use crate::error::ConfigError;
use crate::secrets;

#[derive(Debug, Clone)]
pub struct Profile {
    pub profile_name: String,
    pub target_name: String,
    pub profiles_file: PathBuf,
    pub threads: Option<usize>,
    pub warehouse: WarehouseConfig,
}

#[derive(Debug, Clone)]
pub enum WarehouseConfig {
    /// dbt-duckdb: `path` to the database file (relative paths are relative to the project dir).
    DuckDb { path: PathBuf },
    /// dbt-postgres: the connection keys of the output (docs/warehouses.md).
    Postgres(Box<PostgresProfile>),
    /// dbt-snowflake: account, user, password or key pair, role, warehouse, database, schema.
    Snowflake(Box<crate::warehouse::snowflake::SnowflakeConfig>),
    /// dbt-bigquery: method (oauth, service-account, service-account-json), project, dataset.
    BigQuery(Box<crate::warehouse::bigquery::BigQueryConfig>),
    /// A warehouse type this release does not read yet.
    Unsupported { kind: String },
}

impl WarehouseConfig {
    pub fn kind(&self) -> &str {
        match self {
            WarehouseConfig::DuckDb { .. } => "duckdb",
            WarehouseConfig::Postgres(_) => "postgres",
            WarehouseConfig::Snowflake(_) => "snowflake",
            WarehouseConfig::BigQuery(_) => "bigquery",
            WarehouseConfig::Unsupported { kind } => kind,
        }
    }
}

/// Where profiles.yml is: `--profiles-dir` / `DBT_PROFILES_DIR`, else the project dir when it
/// has one, else `~/.dbt`.
pub fn find_profiles_file(
    project_dir: &Path,
    profiles_dir: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    let candidates: Vec<PathBuf> = match profiles_dir {
        Some(dir) => vec![dir.join("profiles.yml")],
        None => {
            let mut c = vec![project_dir.join("profiles.yml")];
            if let Some(home) = std::env::var_os("HOME") {
                c.push(PathBuf::from(home).join(".dbt").join("profiles.yml"));
            }
            c
        }
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            ConfigError::new(format!(
                "no profiles.yml found (looked in {})",
                looked.join(", ")
            ))
            .with_hint("pass --profiles-dir or set DBT_PROFILES_DIR, as for dbt")
        })
}

pub fn load_profile(
    project: &ProjectSettings,
    profiles_dir: Option<&Path>,
    target: Option<&str>,
) -> Result<Profile, ConfigError> {
    let file = find_profiles_file(&project.project_dir, profiles_dir)?;
    let yaml = read_yaml(&file)?;
    let shown = file.display().to_string();
    let entry = yaml.get(project.profile_name.as_str()).ok_or_else(|| {
        let names: Vec<String> = yaml
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .filter(|k| k != "config")
                    .collect()
            })
            .unwrap_or_default();
        ConfigError::new(format!(
            "profile `{}` (named in dbt_project.yml) is not in {shown}",
            project.profile_name
        ))
        .with_hint(format!(
            "profiles there: {}",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ))
    })?;
    let ctx = RenderContext::default();
    let default_target = match entry.get("target") {
        Some(t) => render_yaml(t, &ctx, &shown)?.as_str().map(str::to_owned),
        None => None,
    };
    let target_name = target
        .map(str::to_owned)
        .or(default_target)
        .unwrap_or_else(|| "default".to_owned());
    let outputs = entry.get("outputs").ok_or_else(|| {
        ConfigError::new(format!(
            "{shown}: profile `{}` has no `outputs:`",
            project.profile_name
        ))
    })?;
    let output = outputs.get(target_name.as_str()).ok_or_else(|| {
        let names: Vec<String> = outputs
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ConfigError::new(format!(
            "target `{target_name}` is not an output of profile `{}` in {shown}",
            project.profile_name
        ))
        .with_hint(format!("outputs: {}", names.join(", ")))
    })?;
    let rendered = render_yaml(output, &ctx, &shown)?;
    secrets::register_in(&rendered);
    let kind = rendered
        .get("type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            ConfigError::new(format!(
                "{shown}: output `{target_name}` of profile `{}` has no `type:`",
                project.profile_name
            ))
        })?
        .to_owned();
    let threads = rendered
        .get("threads")
        .and_then(|v| v.as_u64())
        .map(|t| t as usize);
    let warehouse = match kind.as_str() {
        "duckdb" => {
            let path = rendered
                .get("path")
                .and_then(|v| v.as_str())
                .unwrap_or(":memory:");
            if path == ":memory:" || path.starts_with("md:") {
                return Err(ConfigError::new(format!(
                    "{shown}: profile `{}` target `{target_name}` uses DuckDB `path: {path}`, which dbt-activate cannot read after dbt exits",
                    project.profile_name
                ))
                .with_hint("point `path:` at a database file, e.g. `path: dev.duckdb`"));
            }
            let path = PathBuf::from(path);
            let path = if path.is_absolute() {
                path
            } else {
                project.project_dir.join(path)
            };
            WarehouseConfig::DuckDb { path }
        }
        "postgres" => {
            let site = format!(
                "profile `{}` target `{target_name}` in {shown}",
                project.profile_name
            );
            WarehouseConfig::Postgres(Box::new(PostgresProfile::from_output(&rendered, &site)?))
        }
        "snowflake" => WarehouseConfig::Snowflake(Box::new(
            crate::warehouse::snowflake::SnowflakeConfig::from_profile(
                &rendered,
                &format!(
                    "profile `{}` target `{target_name}` ({shown})",
                    project.profile_name
                ),
            )?,
        )),
        "bigquery" => WarehouseConfig::BigQuery(Box::new(
            crate::warehouse::bigquery::BigQueryConfig::from_profile(
                &rendered,
                &format!(
                    "profile `{}` target `{target_name}` ({shown})",
                    project.profile_name
                ),
            )?,
        )),
        other => WarehouseConfig::Unsupported {
            kind: other.to_owned(),
        },
    };
    Ok(Profile {
        profile_name: project.profile_name.clone(),
        target_name,
        profiles_file: file,
        threads,
        warehouse,
    })
}
