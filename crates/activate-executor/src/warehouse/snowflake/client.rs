//! A thin client of Snowflake's HTTP protocol, the one its drivers speak: a login request that
//! returns a session token, query requests, and result chunks fetched one at a time (JSON or
//! Arrow). It honours dbt-snowflake's `host`/`port`/`protocol`, which the `snowflake-api` crate
//! cannot (docs/warehouses/snowflake.md says why this client exists).

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::WarehouseError;
use crate::value::Value;
use crate::warehouse::snowflake::config::{KeySource, SnowflakeAuth, SnowflakeConfig};
use crate::warehouse::snowflake::convert::{self, RowType};

/// Snowflake's codes for "the query is still running; ask again at getResultUrl".
const QUERY_IN_PROGRESS: &[&str] = &["333333", "333334"];
/// How long one query may keep running before it is abandoned.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    success: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    #[serde(default)]
    rowtype: Vec<RowType>,
    #[serde(default)]
    rowset: Option<Vec<Vec<serde_json::Value>>>,
    #[serde(default)]
    rowset_base64: Option<String>,
    #[serde(default)]
    query_result_format: Option<String>,
    #[serde(default)]
    chunks: Vec<Chunk>,
    #[serde(default)]
    chunk_headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    qrmk: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Chunk {
    url: String,
}

/// A query's result: its columns, then rows arriving chunk by chunk.
pub struct QueryResult {
    pub columns: Vec<RowType>,
    data: QueryData,
}

pub struct SnowflakeClient {
    config: SnowflakeConfig,
    http: reqwest::Client,
    token: std::sync::Mutex<Option<String>>,
}

fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, WarehouseError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        WarehouseError::new(
            "internal: the Snowflake client runs on a blocking thread of the runtime",
        )
    })?;
    Ok(handle.block_on(future))
}

impl SnowflakeClient {
    pub fn new(config: SnowflakeConfig) -> Result<Self, WarehouseError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| WarehouseError::new(format!("Snowflake HTTP client: {e}")))?;
        Ok(Self {
            config,
            http,
            token: std::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &SnowflakeConfig {
        &self.config
    }

    fn error(&self, what: &str, detail: impl std::fmt::Display) -> WarehouseError {
        WarehouseError::new(format!(
            "Snowflake ({}, {} as user `{}`): {what}: {detail}",
            self.config.origin, self.config.base_url, self.config.user
        ))
    }

    fn session_token(&self) -> Result<String, WarehouseError> {
        let mut token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = token.as_ref() {
            return Ok(t.clone());
        }
        let fresh = block_on(self.login())??;
        *token = Some(fresh.clone());
        Ok(fresh)
    }

    async fn login(&self) -> Result<String, WarehouseError> {
        let c = &self.config;
        let credentials = match &c.auth {
            SnowflakeAuth::Password(p) => serde_json::json!({"PASSWORD": p}),
            SnowflakeAuth::KeyPair { key, passphrase } => {
                if passphrase.is_some() {
                    return Err(self.error(
                        "login failed",
                        "`private_key_passphrase` is set, but dbt-activate reads unencrypted PKCS#8 keys only (decrypt the key with `openssl pkcs8 -topk8 -nocrypt`)",
                    ));
                }
                let pem = match key {
                    KeySource::Inline(pem) => pem.clone(),
                    KeySource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                        self.error(
                            "login failed",
                            format!("cannot read private_key_path {}: {e}", path.display()),
                        )
                    })?,
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let jwt = super::keypair::pkcs8_der(&pem)
                    .and_then(|der| super::keypair::login_jwt(&c.account, &c.user, &der, now))
                    .map_err(|e| self.error("login failed", e))?;
                crate::secrets::register(&jwt);
                serde_json::json!({"AUTHENTICATOR": "SNOWFLAKE_JWT", "TOKEN": jwt})
            }
        };
        let mut query: Vec<(&str, &str)> = vec![
            ("databaseName", c.database.as_str()),
            ("schemaName", c.schema.as_str()),
        ];
        if let Some(w) = &c.warehouse {
            query.push(("warehouse", w));
        }
        if let Some(r) = &c.role {
            query.push(("roleName", r));
        }
        let mut data = serde_json::json!({
            "CLIENT_APP_ID": "dbt-activate",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": c.account,
            "LOGIN_NAME": c.user,
            "SESSION_PARAMETERS": {"TIMEZONE": "UTC"},
        });
        if let (Some(data), serde_json::Value::Object(credentials)) =
            (data.as_object_mut(), credentials)
        {
            data.extend(credentials);
        }
        let body = serde_json::json!({ "data": data });
        let url = format!("{}/session/v1/login-request", c.base_url);
        let response = self
            .http
            .post(&url)
            .query(&query)
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                self.error(
                    "could not reach the server",
                    format!(
                        "{} (check account, host, port and protocol in profiles.yml)",
                        with_causes(&e)
                    ),
                )
            })?;
        let envelope = self.envelope(response, "login").await?;
        envelope
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| self.error("login failed", "the response carried no session token"))
    }

    async fn envelope(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> Result<Envelope, WarehouseError> {
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| self.error(&format!("{what} failed"), e))?;
        let envelope: Envelope = serde_json::from_str(&text).map_err(|_| {
            let shown: String = text.chars().take(200).collect();
            self.error(
                &format!("{what} failed"),
                format!("HTTP {status}, not a Snowflake response: {shown}"),
            )
        })?;
        let in_progress = envelope
            .code
            .as_deref()
            .is_some_and(|c| QUERY_IN_PROGRESS.contains(&c));
        if !envelope.success && !in_progress {
            let message = envelope.message.as_deref().unwrap_or("no message");
            let code = envelope.code.as_deref().unwrap_or("none");
            let hint = if what == "login" {
                " (check user and password in profiles.yml)"
            } else {
                ""
            };
            return Err(self.error(
                &format!("{what} failed"),
                format!("{message} (code {code}, HTTP {status}){hint}"),
            ));
        }
        Ok(envelope)
    }

    /// Runs one statement and returns its columns and first rows; rows of further chunks are
    /// fetched by `for_each_chunk`.
    pub fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError> {
        let token = self.session_token()?;
        block_on(self.query_async(sql, &token))?
    }

    async fn query_async(&self, sql: &str, token: &str) -> Result<QueryResult, WarehouseError> {
        let auth = format!("Snowflake Token=\"{token}\"");
        let url = format!("{}/queries/v1/query-request", self.config.base_url);
        let submitted = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let body = serde_json::json!({
            "sqlText": sql,
            "asyncExec": false,
            "sequenceId": 1,
            "querySubmissionTime": submitted,
        });
        let response = self
            .http
            .post(&url)
            .query(&[("requestId", uuid::Uuid::new_v4().to_string())])
            .header("Accept", "application/snowflake")
            .header("Authorization", &auth)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.error("query failed", with_causes(&e)))?;
        let mut envelope = self.envelope(response, "query").await?;
        let started = Instant::now();
        // A long query answers "in progress" with a URL to poll for the result.
        while envelope
            .code
            .as_deref()
            .is_some_and(|c| QUERY_IN_PROGRESS.contains(&c))
        {
            if started.elapsed() > QUERY_TIMEOUT {
                return Err(self.error("query failed", "still running after an hour"));
            }
            let path = envelope
                .data
                .as_ref()
                .and_then(|d| d.get("getResultUrl"))
                .and_then(|u| u.as_str())
                .ok_or_else(|| self.error("query failed", "in progress without a result URL"))?
                .to_owned();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let response = self
                .http
                .get(format!("{}{path}", self.config.base_url))
                .header("Accept", "application/snowflake")
                .header("Authorization", &auth)
                .send()
                .await
                .map_err(|e| self.error("query failed", with_causes(&e)))?;
            envelope = self.envelope(response, "query").await?;
        }
        let data: QueryData = serde_json::from_value(envelope.data.unwrap_or_default())
            .map_err(|e| self.error("query failed", format!("unexpected result shape: {e}")))?;
        Ok(QueryResult {
            columns: data.rowtype.clone(),
            data,
        })
    }

    /// Calls `on_rows` with the rows of the first chunk, then of every further chunk, fetched
    /// one at a time so that only one chunk is held in memory.
    pub fn for_each_chunk(
        &self,
        result: QueryResult,
        on_rows: &mut dyn FnMut(Vec<Vec<Value>>) -> Result<(), WarehouseError>,
    ) -> Result<(), WarehouseError> {
        let QueryResult { columns, mut data } = result;
        let arrow = data
            .query_result_format
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("arrow"));
        if arrow {
            if let Some(b64) = data.rowset_base64.as_deref().filter(|s| !s.is_empty()) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| self.error("reading the result failed", e))?;
                self.arrow_rows(&columns, &bytes, on_rows)?;
            }
        } else if let Some(rows) = data.rowset.take() {
            on_rows(json_rows(&columns, rows))?;
        }
        for chunk in &data.chunks {
            let bytes = block_on(self.fetch_chunk(&chunk.url, &data))??;
            if arrow {
                self.arrow_rows(&columns, &bytes, on_rows)?;
            } else {
                // A JSON chunk is the rows without the enclosing brackets: `[..],[..]`.
                let mut text = Vec::with_capacity(bytes.len() + 2);
                text.push(b'[');
                text.extend_from_slice(&bytes);
                text.push(b']');
                let rows: Vec<Vec<serde_json::Value>> = serde_json::from_slice(&text)
                    .map_err(|e| self.error("reading a result chunk failed", e))?;
                on_rows(json_rows(&columns, rows))?;
            }
        }
        Ok(())
    }

    async fn fetch_chunk(&self, url: &str, data: &QueryData) -> Result<Vec<u8>, WarehouseError> {
        let mut request = self.http.get(url);
        if let Some(headers) = &data.chunk_headers {
            for (name, value) in headers {
                if let Some(v) = value.as_str() {
                    request = request.header(name.as_str(), v);
                }
            }
        } else if let Some(key) = &data.qrmk {
            request = request
                .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
                .header("x-amz-server-side-encryption-customer-key", key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.error("fetching a result chunk failed", with_causes(&e)))?;
        if !response.status().is_success() {
            return Err(self.error(
                "fetching a result chunk failed",
                format!("HTTP {}", response.status()),
            ));
        }
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.error("fetching a result chunk failed", e))
    }

    fn arrow_rows(
        &self,
        columns: &[RowType],
        bytes: &[u8],
        on_rows: &mut dyn FnMut(Vec<Vec<Value>>) -> Result<(), WarehouseError>,
    ) -> Result<(), WarehouseError> {
        let batches = super::ipc::read_stream(bytes)
            .map_err(|e| self.error("reading an Arrow result failed", e))?;
        for batch in batches {
            if batch.num_columns() != columns.len() {
                return Err(self.error(
                    "reading an Arrow result failed",
                    format!(
                        "{} columns in the data, {} in the rowtype",
                        batch.num_columns(),
                        columns.len()
                    ),
                ));
            }
            let mut rows = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                rows.push(
                    columns
                        .iter()
                        .zip(batch.columns())
                        .map(|(column, array)| convert::from_arrow(column, array, row))
                        .collect(),
                );
            }
            on_rows(rows)?;
        }
        Ok(())
    }
}

/// An error and its causes, e.g. `error sending request: ...: Connection refused`.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn json_rows(columns: &[RowType], rows: Vec<Vec<serde_json::Value>>) -> Vec<Vec<Value>> {
    rows.into_iter()
        .map(|row| {
            columns
                .iter()
                .zip(row.iter())
                .map(|(column, cell)| convert::from_json_cell(column, cell))
                .collect()
        })
        .collect()
}
