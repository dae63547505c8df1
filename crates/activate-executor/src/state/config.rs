//! `state:` in `activate.yml`: where the sync state lives.
//!
//! ```yaml
//! state: {type: local}                              # the default: files in .dbt-activate/
//! state: {type: warehouse, schema: activate_state}  # tables in the warehouse, diff as SQL
//! ```

use activate_manifest::did_you_mean;

use crate::error::ConfigError;

const TYPES: &[&str] = &["local", "warehouse"];
const KEYS: &[&str] = &["type", "schema"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateConfig {
    /// Files under `--state-dir` (`<project>/.dbt-activate`).
    #[default]
    Local,
    /// Tables in `schema` of the warehouse the models live in.
    Warehouse { schema: String },
}

impl StateConfig {
    pub fn in_warehouse(&self) -> bool {
        matches!(self, StateConfig::Warehouse { .. })
    }

    /// Reads the `state:` value of `file` (absent: local).
    pub fn parse(value: Option<&serde_yaml_ng::Value>, file: &str) -> Result<Self, ConfigError> {
        let example = "state: {type: warehouse, schema: activate_state}  (or state: {type: local}, the default)";
        let map = match value {
            None | Some(serde_yaml_ng::Value::Null) => return Ok(StateConfig::Local),
            Some(serde_yaml_ng::Value::Mapping(map)) => map,
            Some(_) => {
                return Err(ConfigError::new(format!(
                    "{file}: `state` must be a mapping with `type:`"
                ))
                .with_hint(example));
            }
        };
        for key in map.keys() {
            let key = key.as_str().unwrap_or("?");
            if !KEYS.contains(&key) {
                let hint = match did_you_mean(key, KEYS.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("`state` takes: {}", KEYS.join(", ")),
                };
                return Err(
                    ConfigError::new(format!("{file}: state: unknown key `{key}`")).with_hint(hint),
                );
            }
        }
        let kind = match map.get("type") {
            None => "local",
            Some(serde_yaml_ng::Value::String(s)) => s.as_str(),
            Some(_) => {
                return Err(
                    ConfigError::new(format!("{file}: state.type must be a string"))
                        .with_hint(format!("one of: {}", TYPES.join(", "))),
                );
            }
        };
        let schema = map.get("schema");
        match kind {
            "local" => {
                if schema.is_some() {
                    return Err(ConfigError::new(format!(
                        "{file}: state.schema is set but state.type is `local`"
                    ))
                    .with_hint(
                        "local state lives in --state-dir; remove `schema`, or set `type: warehouse`",
                    ));
                }
                Ok(StateConfig::Local)
            }
            "warehouse" => {
                let schema = match schema {
                    Some(serde_yaml_ng::Value::String(s)) => s.trim().to_owned(),
                    None => {
                        return Err(ConfigError::new(format!(
                            "{file}: state.type is `warehouse` but state.schema is missing"
                        ))
                        .with_hint(format!(
                            "name the schema that holds the state tables: {example}"
                        )));
                    }
                    Some(_) => String::new(),
                };
                let valid = !schema.is_empty()
                    && schema.len() <= 63
                    && schema
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && schema
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(ConfigError::new(format!(
                        "{file}: state.schema `{schema}` is not a plain schema name"
                    ))
                    .with_hint(
                        "use letters, digits and `_`, starting with a letter or `_` (at most 63), e.g. `activate_state`",
                    ));
                }
                Ok(StateConfig::Warehouse {
                    schema: schema.to_ascii_lowercase(),
                })
            }
            other => {
                let hint = match did_you_mean(other, TYPES.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("one of: {}", TYPES.join(", ")),
                };
                Err(ConfigError::new(format!(
                    "{file}: state.type `{other}` is not a kind of state"
                ))
                .with_hint(hint))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<StateConfig, String> {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
        StateConfig::parse(value.get("state"), "activate.yml")
            .map_err(|e| format!("{} | {}", e.message, e.hint.unwrap_or_default()))
    }

    #[test]
    fn reads_local_and_warehouse() {
        assert_eq!(parse("other: 1").unwrap(), StateConfig::Local);
        assert_eq!(parse("state: {type: local}").unwrap(), StateConfig::Local);
        assert_eq!(
            parse("state: {type: warehouse, schema: Activate_State}").unwrap(),
            StateConfig::Warehouse {
                schema: "activate_state".into()
            }
        );
    }

    #[test]
    fn bad_values_say_what_where_and_how() {
        let e = parse("state: {type: warehous, schema: s}").unwrap_err();
        assert!(e.contains("activate.yml: state.type `warehous`"), "{e}");
        assert!(e.contains("did you mean `warehouse`"), "{e}");
        let e = parse("state: {type: warehouse}").unwrap_err();
        assert!(e.contains("state.schema is missing"), "{e}");
        let e = parse("state: {type: warehouse, schema: \"a; drop\"}").unwrap_err();
        assert!(e.contains("not a plain schema name"), "{e}");
        let e = parse("state: {type: warehouse, shema: s}").unwrap_err();
        assert!(
            e.contains("unknown key `shema`") && e.contains("`schema`"),
            "{e}"
        );
        let e = parse("state: warehouse").unwrap_err();
        assert!(e.contains("must be a mapping"), "{e}");
        let e = parse("state: {type: local, schema: s}").unwrap_err();
        assert!(e.contains("state.type is `local`"), "{e}");
    }
}
