//! Renders configuration strings the way dbt renders `profiles.yml`: every string scalar is a
//! Jinja template with `env_var('X')`, `env_var('X', 'default')` and `target`.

use std::collections::BTreeMap;

use crate::error::ConfigError;
use crate::secrets;

/// What templates can see.
#[derive(Debug, Clone, Default)]
pub struct RenderContext {
    /// `target.name`, `target.profile_name`, ... (empty while rendering profiles.yml itself).
    pub target: BTreeMap<String, String>,
    /// Overrides the process environment for `env_var()` (tests); `None` reads the process.
    pub env: Option<BTreeMap<String, String>>,
}

/// Renders every string in a YAML tree and returns it as JSON. `file` is named in errors.
pub fn render_yaml(
    value: &serde_yaml_ng::Value,
    ctx: &RenderContext,
    file: &str,
) -> Result<serde_json::Value, ConfigError> {
    render_node(value, ctx, file, "")
}

fn render_node(
    value: &serde_yaml_ng::Value,
    ctx: &RenderContext,
    file: &str,
    path: &str,
) -> Result<serde_json::Value, ConfigError> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => serde_json::Value::Null,
        Y::Bool(b) => serde_json::Value::Bool(*b),
        Y::Number(n) => serde_json::from_str(&n.to_string()).unwrap_or(serde_json::Value::Null),
        Y::String(s) => serde_json::Value::String(render_str(s, ctx, file, path)?),
        Y::Sequence(items) => serde_json::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| render_node(v, ctx, file, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err(ConfigError::new(format!(
                            "{file}: key `{}` under `{path}` is not a string",
                            serde_yaml_ng::to_string(other).unwrap_or_default().trim()
                        )));
                    }
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let rendered = render_node(v, ctx, file, &child)?;
                out.insert(key, rendered);
            }
            serde_json::Value::Object(out)
        }
        Y::Tagged(t) => render_node(&t.value, ctx, file, path)?,
    })
}

/// Renders one string. Strings without `{{`/`{%` are returned as they are.
pub fn render_str(
    template: &str,
    ctx: &RenderContext,
    file: &str,
    path: &str,
) -> Result<String, ConfigError> {
    if !template.contains("{{") && !template.contains("{%") {
        return Ok(template.to_owned());
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let overrides = ctx.env.clone();
    env.add_function("env_var", move |name: String, default: Option<String>| {
        let found = match &overrides {
            Some(map) => map.get(&name).cloned(),
            None => std::env::var(&name).ok(),
        };
        env_var(name, found, default)
    });
    // dbt's type filters (`{{ env_var('PORT') | as_number }}`): the rendered text is the value;
    // each key's reader converts it.
    for filter in ["as_number", "as_text", "as_bool", "as_native"] {
        env.add_filter(filter, |value: minijinja::Value| value);
    }
    let target: BTreeMap<&str, &str> = ctx
        .target
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let result = env
        .render_str(template, minijinja::context! { target => target })
        .map_err(|e| {
            let detail = match e.kind() {
                minijinja::ErrorKind::InvalidOperation => e.detail().unwrap_or_default().to_owned(),
                _ => e.to_string(),
            };
            let mut err = ConfigError::new(format!("{file}: could not render `{path}`: {detail}"));
            if detail.contains("is not set") {
                err = err.with_hint("set the environment variable, or give env_var a default: {{ env_var('NAME', 'default') }}");
            }
            err
        })?;
    Ok(result)
}

fn env_var(
    name: String,
    found: Option<String>,
    default: Option<String>,
) -> Result<String, minijinja::Error> {
    match found {
        Some(value) => {
            // dbt's convention: DBT_ENV_SECRET_* values are secrets wherever they are used.
            if name.starts_with("DBT_ENV_SECRET_") {
                secrets::register(&value);
            }
            Ok(value)
        }
        None => default.ok_or_else(|| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("environment variable `{name}` is not set and env_var() has no default"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_env_vars_and_target() {
        let mut ctx = RenderContext {
            env: Some([("ACTIVATE_TEST_RENDER_A".to_owned(), "from-env".to_owned())].into()),
            ..RenderContext::default()
        };
        ctx.target.insert("name".into(), "ci".into());
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "a: \"{{ env_var('ACTIVATE_TEST_RENDER_A') }}\"\nb: \"{{ env_var('ACTIVATE_TEST_RENDER_MISSING', 'dflt') }}\"\nc: \"x-{{ target.name }}\"\nd: 5\n",
        )
        .unwrap();
        let out = render_yaml(&yaml, &ctx, "activate.yml").unwrap();
        assert_eq!(
            out,
            serde_json::json!({"a": "from-env", "b": "dflt", "c": "x-ci", "d": 5})
        );
    }

    #[test]
    fn dbt_type_filters_keep_the_text() {
        let ctx = RenderContext {
            env: Some([("ACTIVATE_TEST_RENDER_PORT".to_owned(), "6543".to_owned())].into()),
            ..RenderContext::default()
        };
        let out = render_str(
            "{{ env_var('ACTIVATE_TEST_RENDER_PORT') | as_number }}",
            &ctx,
            "profiles.yml",
            "port",
        )
        .unwrap();
        assert_eq!(out, "6543");
    }

    #[test]
    fn missing_env_var_is_a_clear_error() {
        let err = render_str(
            "{{ env_var('ACTIVATE_TEST_RENDER_NOPE') }}",
            &RenderContext::default(),
            "activate.yml",
            "destinations.crm.url",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ACTIVATE_TEST_RENDER_NOPE"), "{text}");
        assert!(text.contains("destinations.crm.url"), "{text}");
        assert!(text.contains("hint:"), "{text}");
    }
}
