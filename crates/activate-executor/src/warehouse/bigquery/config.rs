//! A dbt-bigquery profile output, read with the keys dbt-bigquery uses.

use std::path::PathBuf;

use crate::error::ConfigError;

/// How requests are authorised.
#[derive(Clone)]
pub enum BigQueryAuth {
    /// `method: oauth`: Application Default Credentials (gcloud login, metadata server, or
    /// `GOOGLE_APPLICATION_CREDENTIALS`).
    OAuth,
    /// `method: service-account` with `keyfile`.
    KeyFile(PathBuf),
    /// `method: service-account-json` with `keyfile_json` (the key's fields inline).
    KeyJson(serde_json::Value),
    /// An emulator reached through `api_endpoint` with `method: oauth` and no credentials:
    /// requests carry no token.
    Anonymous,
}

impl std::fmt::Debug for BigQueryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BigQueryAuth::OAuth => f.write_str("OAuth"),
            BigQueryAuth::KeyFile(p) => write!(f, "KeyFile({})", p.display()),
            BigQueryAuth::KeyJson(_) => f.write_str("KeyJson(<redacted>)"),
            BigQueryAuth::Anonymous => f.write_str("Anonymous"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BigQueryConfig {
    /// `profile `x` target `y` (profiles.yml path)`: every error names it.
    pub origin: String,
    pub project: String,
    pub dataset: String,
    pub location: Option<String>,
    pub auth: BigQueryAuth,
    /// `https://bigquery.googleapis.com/bigquery/v2` unless `api_endpoint` says otherwise.
    pub v2_base_url: String,
    /// dbt-bigquery's `job_execution_timeout_seconds`: how long a query may run.
    pub job_timeout_seconds: u64,
}

fn text(output: &serde_json::Value, key: &str) -> Option<String> {
    match output.get(key)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl BigQueryConfig {
    pub fn from_profile(output: &serde_json::Value, origin: &str) -> Result<Self, ConfigError> {
        let missing = |key: &str| {
            ConfigError::new(format!(
                "{origin}: the bigquery output has no `{key}:` (dbt-bigquery requires it)"
            ))
            .with_hint(format!("add `{key}:` to that output in profiles.yml"))
        };
        // dbt-bigquery accepts `database` for `project` and `schema` for `dataset`.
        let project = text(output, "project")
            .or_else(|| text(output, "database"))
            .ok_or_else(|| missing("project"))?;
        let dataset = text(output, "dataset")
            .or_else(|| text(output, "schema"))
            .ok_or_else(|| missing("dataset"))?;
        let method = text(output, "method").ok_or_else(|| missing("method"))?;
        let api_endpoint = text(output, "api_endpoint");
        let auth = match method.as_str() {
            "oauth" if api_endpoint.is_some() => BigQueryAuth::Anonymous,
            "oauth" => BigQueryAuth::OAuth,
            "service-account" => BigQueryAuth::KeyFile(PathBuf::from(
                text(output, "keyfile").ok_or_else(|| missing("keyfile"))?,
            )),
            "service-account-json" => BigQueryAuth::KeyJson(
                output
                    .get("keyfile_json")
                    .filter(|v| v.is_object())
                    .cloned()
                    .ok_or_else(|| missing("keyfile_json"))?,
            ),
            other => {
                return Err(ConfigError::new(format!(
                    "{origin}: `method: {other}` is not supported by dbt-activate's BigQuery source"
                ))
                .with_hint("use `oauth`, `service-account` (keyfile) or `service-account-json` (keyfile_json)"));
            }
        };
        let v2_base_url = match api_endpoint {
            Some(endpoint) => format!("{}/bigquery/v2", endpoint.trim_end_matches('/')),
            None => "https://bigquery.googleapis.com/bigquery/v2".to_owned(),
        };
        let job_timeout_seconds = output
            .get("job_execution_timeout_seconds")
            .and_then(|v| v.as_u64())
            .unwrap_or(3600);
        Ok(Self {
            origin: origin.to_owned(),
            project,
            dataset,
            location: text(output, "location"),
            auth,
            v2_base_url,
            job_timeout_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dbt_bigquery_keys() {
        let output = serde_json::json!({"type": "bigquery", "method": "service-account",
            "keyfile": "/k.json", "project": "p", "dataset": "d", "location": "EU"});
        let c = BigQueryConfig::from_profile(&output, "profile `x` target `dev`").unwrap();
        assert_eq!(c.project, "p");
        assert_eq!(c.location.as_deref(), Some("EU"));
        assert!(matches!(c.auth, BigQueryAuth::KeyFile(_)));
        assert_eq!(c.v2_base_url, "https://bigquery.googleapis.com/bigquery/v2");

        let output = serde_json::json!({"method": "oauth", "database": "p", "schema": "d",
            "api_endpoint": "http://127.0.0.1:9050/"});
        let c = BigQueryConfig::from_profile(&output, "p").unwrap();
        assert_eq!(c.v2_base_url, "http://127.0.0.1:9050/bigquery/v2");
        assert!(matches!(c.auth, BigQueryAuth::Anonymous));
    }

    #[test]
    fn missing_keys_are_named() {
        let output =
            serde_json::json!({"method": "service-account", "project": "p", "dataset": "d"});
        let err = BigQueryConfig::from_profile(&output, "profile `x` target `dev`").unwrap_err();
        assert!(err.message.contains("`keyfile:`"));
        assert!(err.message.contains("profile `x` target `dev`"));
    }
}
