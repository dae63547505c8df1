//! Connections: the dbt project, the warehouse from dbt's `profiles.yml`, and the destinations
//! from `activate.yml`. Nothing is configured twice.

pub mod activate_yml;
pub mod postgres_profile;
pub mod profiles;
pub mod project;
pub mod query_syncs;
pub mod render;

pub use activate_yml::{ActivateConfig, DestinationConfig, load_activate_yml};
pub use postgres_profile::PostgresProfile;
pub use profiles::{Profile, WarehouseConfig, load_profile};
pub use project::{ProjectSettings, load_project};
pub use query_syncs::render_query_syncs;
pub use render::RenderContext;

use crate::error::ConfigError;

/// Reads a YAML file into a `serde_yaml_ng::Value`, with the file named in errors.
pub(crate) fn read_yaml(path: &std::path::Path) -> Result<serde_yaml_ng::Value, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("could not read {}: {e}", path.display())))?;
    serde_yaml_ng::from_str(&text).map_err(|e| {
        ConfigError::new(format!("{} is not valid YAML: {e}", path.display()))
            .with_hint("check the indentation and quoting near the line named above")
    })
}
