//! Connections: the dbt project, the warehouse from dbt's `profiles.yml`, and the destinations
//! from `activate.yml`. Nothing is configured twice.

pub mod activate_yml;
pub mod postgres_profile;
pub mod profiles;
pub mod project;
pub mod query_syncs;
pub mod render;

#[cfg(test)]
mod fuzz_tests;

pub use activate_yml::{ActivateConfig, DestinationConfig, load_activate_yml};
pub use postgres_profile::PostgresProfile;
pub use profiles::{Profile, WarehouseConfig, load_profile};
pub use project::{ProjectSettings, load_project};
pub use query_syncs::render_query_syncs;
pub use render::RenderContext;

use crate::error::ConfigError;

/// Flow collections (`[...]`, `{...}`) nested deeper than this are refused before parsing:
/// the YAML parser's time grows with the square of that depth (100,000 levels take minutes),
/// and no configuration needs more than a few.
const MAX_FLOW_DEPTH: usize = 64;

/// The line where flow nesting first passes `max` levels, if it does. Quoted scalars and
/// comments are skipped; the count is conservative, never an obstacle for real files.
fn line_past_flow_depth(text: &str, max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut prev = '\n';
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '#' if prev.is_whitespace() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' | '\'' if prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':') => {
                let mut escaped = false;
                for q in chars.by_ref() {
                    if q == '\n' {
                        line += 1;
                    }
                    if c == '"' && q == '\\' && !escaped {
                        escaped = true;
                        continue;
                    }
                    if q == c && !escaped {
                        break;
                    }
                    escaped = false;
                }
            }
            '[' | '{' => {
                depth += 1;
                if depth > max {
                    return Some(line);
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    None
}

/// Reads a YAML file into a `serde_yaml_ng::Value`, with the file named in errors.
pub(crate) fn read_yaml(path: &std::path::Path) -> Result<serde_yaml_ng::Value, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("could not read {}: {e}", path.display())))?;
    if let Some(line) = line_past_flow_depth(&text, MAX_FLOW_DEPTH) {
        return Err(ConfigError::new(format!(
            "{}: `[`/`{{` nested more than {MAX_FLOW_DEPTH} levels deep at line {line}; refused without parsing",
            path.display()
        ))
        .with_hint("write nested settings as indented blocks, a few levels deep"));
    }
    serde_yaml_ng::from_str(&text).map_err(|e| {
        ConfigError::new(format!("{} is not valid YAML: {e}", path.display()))
            .with_hint("check the indentation and quoting near the line named above")
    })
}
