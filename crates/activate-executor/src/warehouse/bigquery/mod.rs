//! BigQuery: reads the tables dbt-bigquery built through the REST API (jobs.query, then
//! jobs.getQueryResults page by page) with the `gcp-bigquery-client` crate.

pub mod config;
pub mod convert;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::data_format_options::DataFormatOptions;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_row::TableRow;

use crate::error::{StateError, WarehouseError};
use crate::state::warehouse::StateBackend;
use crate::value::Value;
use crate::warehouse::{ColumnDesc, ReadRequest, RowBatch, Warehouse, literal_with};

pub use config::{BigQueryAuth, BigQueryConfig};

/// How long one jobs.query / getQueryResults call waits for the job before answering.
const WAIT_MS: i32 = 10_000;

/// Sends no token: for emulators reached through `api_endpoint`.
#[derive(Clone)]
struct NoToken;

#[async_trait]
impl Authenticator for NoToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(String::new())
    }
}

/// Clones share the client: the warehouse state reads and writes through the run's.
#[derive(Clone)]
pub struct BigQueryWarehouse {
    config: BigQueryConfig,
    client: Arc<std::sync::Mutex<Option<Arc<Client>>>>,
}

/// `project.dataset.table` identifiers are quoted with backticks in GoogleSQL.
pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('\\', "\\\\").replace('`', "\\`"))
}

/// A GoogleSQL string literal. GoogleSQL escapes with backslashes (`''` is two adjacent
/// literals there, a syntax error) and a quoted string may not hold a raw line break.
pub fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A GoogleSQL literal for a cursor value: numbers as they are, everything else as a string.
pub fn literal(value: &Value) -> String {
    literal_with(value, string_literal)
}

fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, WarehouseError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        WarehouseError::new(
            "internal: the BigQuery client runs on a blocking thread of the runtime",
        )
    })?;
    Ok(handle.block_on(future))
}

/// One page of a query's result.
struct Page {
    schema: Vec<TableFieldSchema>,
    rows: Vec<TableRow>,
}

impl BigQueryWarehouse {
    /// Connects lazily: credentials are read on the first probe, on a blocking thread.
    pub fn open(config: BigQueryConfig) -> Self {
        Self {
            config,
            client: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    fn error(&self, what: &str, detail: impl std::fmt::Display) -> WarehouseError {
        WarehouseError::new(format!(
            "BigQuery ({}, project `{}` at {}): {what}: {detail}",
            self.config.origin, self.config.project, self.config.v2_base_url
        ))
    }

    fn describe(&self, error: &BQError) -> String {
        match error {
            BQError::ResponseError { error } => format!(
                "{} (HTTP {}{})",
                error.error.message,
                error.error.code,
                if error.error.status.is_empty() {
                    String::new()
                } else {
                    format!(", {}", error.error.status)
                }
            ),
            other => {
                let mut text = other.to_string();
                let mut source = std::error::Error::source(other);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                text
            }
        }
    }

    fn client(&self) -> Result<Arc<Client>, WarehouseError> {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| self.error("HTTP client", e))?;
        let mut builder = ClientBuilder::new();
        builder
            .with_v2_base_url(self.config.v2_base_url.clone())
            .with_client(http);
        let built = block_on(async {
            match &self.config.auth {
                BigQueryAuth::Anonymous => {
                    builder.build_from_authenticator(Arc::new(NoToken)).await
                }
                BigQueryAuth::OAuth => builder.build_from_application_default_credentials().await,
                BigQueryAuth::KeyFile(path) => {
                    builder
                        .build_from_service_account_key_file(&path.to_string_lossy())
                        .await
                }
                BigQueryAuth::KeyJson(json) => {
                    let key = serde_json::from_value(json.clone()).map_err(|e| {
                        BQError::InvalidServiceAccountKey(std::io::Error::other(e.to_string()))
                    })?;
                    builder.build_from_service_account_key(key, true).await
                }
            }
        })?
        .map_err(|e| {
            self.error(
                "could not set up credentials",
                format!(
                    "{} (check method, keyfile or keyfile_json in profiles.yml)",
                    self.describe(&e)
                ),
            )
        })?;
        let client = Arc::new(built);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs `sql`, calling `on_page` for every page of rows: jobs.query first, then
    /// getQueryResults with the page token until the last page; a job not complete yet is
    /// asked again (bounded by `job_execution_timeout_seconds`). Returns the rows a DML
    /// statement changed (`numDmlAffectedRows`), if it was one.
    fn query_pages(
        &self,
        sql: &str,
        page_rows: usize,
        on_page: &mut dyn FnMut(Page) -> Result<(), WarehouseError>,
    ) -> Result<Option<u64>, WarehouseError> {
        let client = self.client()?;
        let project = self.config.project.clone();
        let location = self.config.location.clone();
        let max_results = i32::try_from(page_rows.max(1)).unwrap_or(i32::MAX);
        let format = DataFormatOptions {
            use_int64_timestamp: Some(true),
        };
        let mut request = QueryRequest::new(sql);
        request.location = location.clone();
        request.max_results = Some(max_results);
        request.timeout_ms = Some(WAIT_MS);
        request.format_options = Some(format);
        let first = block_on(client.job().query(&project, request))?
            .map_err(|e| self.error("query failed", self.describe(&e)))?;
        let job_id = first.job_reference.as_ref().and_then(|j| j.job_id.clone());
        let job_location = first
            .job_reference
            .as_ref()
            .and_then(|j| j.location.clone())
            .or(location);
        let affected = |n: &Option<String>| n.as_deref().and_then(|n| n.parse::<u64>().ok());
        let mut changed = affected(&first.num_dml_affected_rows);
        let mut complete = first.job_complete.unwrap_or(true);
        let mut schema = first.schema.and_then(|s| s.fields).unwrap_or_default();
        let mut token = first.page_token;
        if complete {
            on_page(Page {
                schema: schema.clone(),
                rows: first.rows.unwrap_or_default(),
            })?;
        }
        let started = Instant::now();
        while !complete || token.is_some() {
            if started.elapsed() > Duration::from_secs(self.config.job_timeout_seconds) {
                return Err(self.error(
                    "query failed",
                    format!(
                        "not complete after {} s (job_execution_timeout_seconds)",
                        self.config.job_timeout_seconds
                    ),
                ));
            }
            let job_id = job_id
                .clone()
                .ok_or_else(|| self.error("query failed", "the response has no job reference"))?;
            // `formatOptions` is a nested object that the crate cannot put in a query string
            // (reqwest refuses it), so later pages carry TIMESTAMPs as float seconds.
            let parameters = GetQueryResultsParameters {
                format_options: None,
                location: job_location.clone(),
                max_results: Some(max_results),
                page_token: token.clone(),
                start_index: None,
                timeout_ms: Some(WAIT_MS),
            };
            let page = block_on(
                client
                    .job()
                    .get_query_results(&project, &job_id, parameters),
            )?
            .map_err(|e| self.error("reading results failed", self.describe(&e)))?;
            if let Some(errors) = page.errors.as_ref().filter(|e| !e.is_empty()) {
                return Err(self.error("query failed", format!("{errors:?}")));
            }
            if !page.job_complete.unwrap_or(true) {
                complete = false;
                continue;
            }
            complete = true;
            changed = changed.or(affected(&page.num_dml_affected_rows));
            if let Some(fields) = page.schema.and_then(|s| s.fields) {
                schema = fields;
            }
            token = page.page_token;
            on_page(Page {
                schema: schema.clone(),
                rows: page.rows.unwrap_or_default(),
            })?;
        }
        Ok(changed)
    }
}

fn convert_rows(schema: &[TableFieldSchema], rows: Vec<TableRow>) -> RowBatch {
    rows.into_iter()
        .map(|row| {
            let cells = row.columns.unwrap_or_default();
            schema
                .iter()
                .enumerate()
                .map(
                    |(i, field)| match cells.get(i).and_then(|c| c.value.as_ref()) {
                        Some(v) => convert::from_cell(field, v),
                        None => Value::Null,
                    },
                )
                .collect()
        })
        .collect()
}

impl Warehouse for BigQueryWarehouse {
    fn kind(&self) -> &'static str {
        "bigquery"
    }

    fn describe_location(&self) -> String {
        format!(
            "bigquery project {} dataset {} ({})",
            self.config.project, self.config.dataset, self.config.origin
        )
    }

    fn health_check(&self) -> Result<(), WarehouseError> {
        self.query_pages("SELECT 1", 1, &mut |_| Ok(())).map(|_| ())
    }

    fn columns(&self, relation: &str) -> Result<Vec<ColumnDesc>, WarehouseError> {
        let mut columns = Vec::new();
        self.query_pages(
            &format!("SELECT * FROM {relation} LIMIT 0"),
            1,
            &mut |page| {
                columns = page
                    .schema
                    .iter()
                    .map(|f| ColumnDesc {
                        name: f.name.clone(),
                        data_type: convert::type_name(f),
                    })
                    .collect();
                Ok(())
            },
        )?;
        Ok(columns)
    }

    fn read(
        &self,
        request: &ReadRequest<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), WarehouseError>,
    ) -> Result<(), WarehouseError> {
        let select: Vec<String> = request.columns.iter().map(|c| quote(&c.name)).collect();
        let mut sql = format!("SELECT {} FROM {}", select.join(", "), request.relation);
        if let Some((column, value)) = request.cursor_at_least {
            sql.push_str(&format!(" WHERE {} >= {}", quote(column), literal(value)));
        }
        self.query_pages(&sql, request.batch_rows, &mut |page| {
            let rows = convert_rows(&page.schema, page.rows);
            if rows.is_empty() {
                return Ok(());
            }
            on_batch(rows)
        })
        .map(|_| ())
    }

    fn state_backend(&self, schema: &str, lock: bool) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(state::BigQueryStateBackend::open(
            self.clone(),
            schema,
            lock,
        )?))
    }
}
