//! A dbt-snowflake profile output, read with the keys and defaults dbt-snowflake uses.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;

/// How the session authenticates.
#[derive(Clone)]
pub enum SnowflakeAuth {
    Password(String),
    /// Key-pair authentication: a PEM private key, inline (`private_key`) or in a file
    /// (`private_key_path`), optionally encrypted with `private_key_passphrase`.
    KeyPair {
        key: KeySource,
        passphrase: Option<String>,
    },
}

#[derive(Clone)]
pub enum KeySource {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for SnowflakeAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnowflakeAuth::Password(_) => f.write_str("Password(<redacted>)"),
            SnowflakeAuth::KeyPair { key, .. } => match key {
                KeySource::Inline(_) => f.write_str("KeyPair(inline <redacted>)"),
                KeySource::File(path) => write!(f, "KeyPair({})", path.display()),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct SnowflakeConfig {
    /// `profile `x` target `y` (profiles.yml path)`: every error names it.
    pub origin: String,
    pub account: String,
    pub user: String,
    pub auth: SnowflakeAuth,
    pub role: Option<String>,
    pub warehouse: Option<String>,
    pub database: String,
    pub schema: String,
    /// `{protocol}://{host}:{port}`; host defaults to `{account}.snowflakecomputing.com`.
    pub base_url: String,
    pub connect_timeout: Duration,
}

fn text(output: &serde_json::Value, key: &str) -> Option<String> {
    match output.get(key)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl SnowflakeConfig {
    /// Reads a rendered `type: snowflake` output; `origin` names the profile, target and file.
    pub fn from_profile(output: &serde_json::Value, origin: &str) -> Result<Self, ConfigError> {
        let required = |key: &str| {
            text(output, key).ok_or_else(|| {
                ConfigError::new(format!(
                    "{origin}: the snowflake output has no `{key}:` (dbt-snowflake requires it)"
                ))
                .with_hint(format!(
                    "add `{key}:` to that output in profiles.yml, as for `dbt debug`"
                ))
            })
        };
        let account = required("account")?;
        let user = required("user")?;
        let database = required("database")?;
        let schema = required("schema")?;
        if let Some(method) = text(output, "authenticator")
            && !method.eq_ignore_ascii_case("snowflake")
            && !method.eq_ignore_ascii_case("snowflake_jwt")
        {
            return Err(ConfigError::new(format!(
                "{origin}: `authenticator: {method}` is not supported by dbt-activate's Snowflake source"
            ))
            .with_hint("use `password:`, or key-pair authentication with `private_key_path:` / `private_key:`"));
        }
        let passphrase = text(output, "private_key_passphrase");
        let auth = if let Some(key) = text(output, "private_key") {
            SnowflakeAuth::KeyPair {
                key: KeySource::Inline(key),
                passphrase,
            }
        } else if let Some(path) = text(output, "private_key_path") {
            SnowflakeAuth::KeyPair {
                key: KeySource::File(PathBuf::from(path)),
                passphrase,
            }
        } else if let Some(password) = text(output, "password") {
            SnowflakeAuth::Password(password)
        } else {
            return Err(ConfigError::new(format!(
                "{origin}: the snowflake output has neither `password:` nor `private_key_path:` / `private_key:`"
            ))
            .with_hint("add one, as dbt-snowflake needs it; keep the secret in an environment variable: `password: \"{{ env_var('SNOWFLAKE_PASSWORD') }}\"`"));
        };
        let protocol = text(output, "protocol").unwrap_or_else(|| "https".into());
        if protocol != "https" && protocol != "http" {
            return Err(ConfigError::new(format!(
                "{origin}: `protocol: {protocol}` must be `https` or `http`"
            )));
        }
        let host =
            text(output, "host").unwrap_or_else(|| format!("{account}.snowflakecomputing.com"));
        let port = match output.get("port") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .filter(|p| *p > 0 && *p <= 65535)
                    .ok_or_else(|| {
                        ConfigError::new(format!("{origin}: `port: {v}` is not a port number"))
                    })?,
            ),
        };
        let base_url = match port {
            Some(port) => format!("{protocol}://{host}:{port}"),
            None => format!("{protocol}://{host}"),
        };
        let connect_timeout = output
            .get("connect_timeout")
            .and_then(|v| v.as_u64())
            .unwrap_or(10);
        Ok(Self {
            origin: origin.to_owned(),
            account,
            user,
            auth,
            role: text(output, "role"),
            warehouse: text(output, "warehouse"),
            database,
            schema,
            base_url,
            connect_timeout: Duration::from_secs(connect_timeout.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dbt_snowflake_keys() {
        let output = serde_json::json!({
            "type": "snowflake", "account": "xy12345", "user": "dbt", "password": "pw",
            "role": "transformer", "warehouse": "wh", "database": "analytics", "schema": "s",
            "host": "127.0.0.1", "port": 8085, "protocol": "http"
        });
        let c = SnowflakeConfig::from_profile(&output, "profile `p` target `dev`").unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:8085");
        assert_eq!(c.role.as_deref(), Some("transformer"));
        assert!(matches!(c.auth, SnowflakeAuth::Password(_)));
        assert!(!format!("{c:?}").contains("pw\""));

        let output = serde_json::json!({"account": "xy12345", "user": "u", "database": "d",
            "schema": "s", "private_key_path": "/k.p8"});
        let c = SnowflakeConfig::from_profile(&output, "p").unwrap();
        assert_eq!(c.base_url, "https://xy12345.snowflakecomputing.com");
        assert!(matches!(c.auth, SnowflakeAuth::KeyPair { .. }));
    }

    #[test]
    fn missing_keys_name_the_key_and_the_profile() {
        let output =
            serde_json::json!({"account": "a", "user": "u", "schema": "s", "password": "x"});
        let err = SnowflakeConfig::from_profile(&output, "profile `p` target `dev`").unwrap_err();
        assert!(err.message.contains("profile `p` target `dev`"));
        assert!(err.message.contains("`database:`"));
        let output =
            serde_json::json!({"account": "a", "user": "u", "schema": "s", "database": "d"});
        let err = SnowflakeConfig::from_profile(&output, "p").unwrap_err();
        assert!(err.message.contains("password"));
    }
}
