//! `salesforce`: any sObject, matched on an external id field (`match_on`).
//!
//! - Auth: OAuth 2.0 client credentials, refresh token or JWT bearer (an RS256 assertion
//!   signed with the connected app's private key, see `jwt.rs`) against
//!   `{login_url}/services/oauth2/token`; the token's `instance_url` (or the configured one)
//!   receives the API calls.
//! - Up to `bulk_threshold` rows per write: sObject Collections, at most 200 records a call,
//!   `allOrNone: false`, per-record `success`/`errors`. A call refused whole (400) is split in
//!   halves until the bad record is alone and rejected with Salesforce's reason.
//! - More rows: one Bulk API 2.0 ingest job (CSV upload, `UploadComplete`, poll, then the
//!   successful and failed results files; `sf__Error` becomes the row's reason).
//! - `update`, `clear` and `delete` need record Ids: the external ids are resolved with a SOQL
//!   query (`SELECT Id, <match_on> FROM <object> WHERE <match_on> IN (...)`, 100 keys a query).
//!   An update of a missing record is a reject; a delete of a missing record is done.
//! - `insert` never updates: a row refused as `DUPLICATE_VALUE` is a reject, unless the record
//!   with its external id holds exactly the row (read back with SOQL): that is this row's own
//!   create whose answer was lost (committed, then the connection dropped), and it is confirmed.

mod client;
mod config;
mod encode;
mod jwt;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Method;

use self::client::{Body, Client, form};
use self::config::Settings;
use crate::connections::DestinationConfig;
use crate::destination::{
    BatchOutcome, Capabilities, Destination, FieldSchema, Kind, ObjectSchema, WriteBatch, WriteOp,
};
use crate::error::{ConfigError, DestinationError};
use crate::value::write_json_string;

/// Keys per SOQL query when resolving external ids to record Ids.
const KEYS_PER_QUERY: usize = 100;

pub fn build(
    config: &DestinationConfig,
    project_dir: &std::path::Path,
) -> Result<Arc<dyn Destination>, ConfigError> {
    Ok(Arc::new(SalesforceDestination::from_config(
        config,
        project_dir,
    )?))
}

pub struct SalesforceDestination {
    client: Client,
}

/// Rows rejected: (index into the batch's records, reason).
type Rejects = Vec<(usize, String)>;

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SalesforceDestination {
    /// `project_dir` is where a relative `private_key_path` is read from.
    pub fn from_config(
        config: &DestinationConfig,
        project_dir: &std::path::Path,
    ) -> Result<Self, ConfigError> {
        let settings = Settings::from_config(config, project_dir)?;
        let site = format!("salesforce destination `{}`", config.name);
        let client = Client::new(settings, site)
            .map_err(|e| ConfigError::new(format!("{}: {}", config.site(), e.message)))?;
        Ok(Self { client })
    }

    fn settings(&self) -> &Settings {
        &self.client.settings
    }

    fn data(&self) -> String {
        self.settings().data_path()
    }

    /// The one external id field of a batch.
    fn key_field<'a>(
        &self,
        batch: &'a WriteBatch<'_>,
    ) -> Result<(usize, &'a str), DestinationError> {
        if !valid_name(batch.object) {
            return Err(DestinationError::new(format!(
                "{}: `{}` is not an sObject API name",
                self.client.site, batch.object
            )));
        }
        match batch.key_positions {
            [pos] => {
                let field = batch.fields[*pos].as_str();
                if !valid_name(field) {
                    return Err(DestinationError::new(format!(
                        "{}: `{field}` is not a field API name",
                        self.client.site
                    )));
                }
                Ok((*pos, field))
            }
            keys => Err(DestinationError::new(format!(
                "{}: Salesforce matches records on one external id field, the sync's match_on has {}",
                self.client.site,
                keys.len()
            ))),
        }
    }

    /// One record of a collection request: `{"attributes":{"type":..},"id":..,<fields>}`.
    fn record_json(&self, batch: &WriteBatch<'_>, i: usize, id: Option<&str>) -> String {
        let mut out = String::with_capacity(64 + 32 * batch.fields.len());
        out.push_str("{\"attributes\":{\"type\":");
        write_json_string(&mut out, batch.object);
        out.push('}');
        if let Some(id) = id {
            out.push_str(",\"id\":");
            write_json_string(&mut out, id);
        }
        let clear = batch.op == WriteOp::Clear;
        for (j, (field, value)) in batch
            .fields
            .iter()
            .zip(&batch.records[i].values)
            .enumerate()
        {
            out.push(',');
            write_json_string(&mut out, field);
            out.push(':');
            if clear && !batch.key_positions.contains(&j) {
                out.push_str("null");
            } else {
                encode::write_json(value, &mut out);
            }
        }
        out.push('}');
        out
    }

    fn collection_request(
        &self,
        batch: &WriteBatch<'_>,
        key_field: &str,
        rows: &[usize],
        ids: &[Option<String>],
    ) -> (Method, String, Option<Body>) {
        let base = format!("{}/composite/sobjects", self.data());
        let records = |with_ids: bool| {
            let mut body = String::from("{\"allOrNone\":false,\"records\":[");
            for (n, &i) in rows.iter().enumerate() {
                if n > 0 {
                    body.push(',');
                }
                let id = if with_ids { ids[i].as_deref() } else { None };
                body.push_str(&self.record_json(batch, i, id));
            }
            body.push_str("]}");
            Body::json(body)
        };
        match batch.op {
            WriteOp::Upsert => (
                Method::PATCH,
                format!("{base}/{}/{key_field}", batch.object),
                records(false),
            ),
            WriteOp::Insert => (Method::POST, base, records(false)),
            WriteOp::Update | WriteOp::Clear => (Method::PATCH, base, records(true)),
            WriteOp::Delete => {
                let list: Vec<&str> = rows.iter().filter_map(|&i| ids[i].as_deref()).collect();
                (
                    Method::DELETE,
                    format!(
                        "{base}?{}",
                        form(&[("ids", &list.join(",")), ("allOrNone", "false")])
                    ),
                    None,
                )
            }
        }
    }

    /// sObject Collections calls for `rows`, `batch_size` records each, up to `concurrency`
    /// calls in flight (the rate limiter spaces them); the first error fails the write.
    async fn collections(
        &self,
        batch: &WriteBatch<'_>,
        key_field: &str,
        rows: &[usize],
        ids: &[Option<String>],
    ) -> Result<Rejects, DestinationError> {
        let mut pending = Vec::new();
        for chunk in rows.chunks(self.settings().batch_size) {
            pending.push(self.collection_call(batch, key_field, chunk.to_vec(), ids));
        }
        let mut calls =
            futures_util::stream::iter(pending).buffer_unordered(self.settings().concurrency);
        let mut rejected = Vec::new();
        while let Some(result) = calls.next().await {
            rejected.extend(result?);
        }
        Ok(rejected)
    }

    /// One sObject Collections call for `chunk`; a call refused whole is split in halves and
    /// sent again until the bad record is alone and rejected.
    async fn collection_call(
        &self,
        batch: &WriteBatch<'_>,
        key_field: &str,
        chunk: Vec<usize>,
        ids: &[Option<String>],
    ) -> Result<Rejects, DestinationError> {
        let mut rejected = Vec::new();
        let mut queue: VecDeque<Vec<usize>> = VecDeque::from([chunk]);
        while let Some(chunk) = queue.pop_front() {
            let (method, path, body) = self.collection_request(batch, key_field, &chunk, ids);
            let what = format!(
                "{}: {method} {}",
                self.client.site,
                path.split('?').next().unwrap_or(&path)
            );
            match self.client.request(method, &path, body).await? {
                Ok(response) => {
                    let text = response.text().await.map_err(|e| {
                        DestinationError::new(format!(
                            "{what}: {}",
                            crate::secrets::redact(&e.to_string())
                        ))
                    })?;
                    let results: Vec<serde_json::Value> =
                        serde_json::from_str(&text).map_err(|_| {
                            DestinationError::new(format!(
                                "{what}: the answer is not a list of results: {}",
                                crate::destination::http::excerpt(&text)
                            ))
                        })?;
                    if results.len() != chunk.len() {
                        return Err(DestinationError::new(format!(
                            "{what}: {} results for {} records",
                            results.len(),
                            chunk.len()
                        )));
                    }
                    for (result, &i) in results.iter().zip(&chunk) {
                        if result["success"].as_bool() == Some(true) {
                            continue;
                        }
                        let already_deleted = batch.op == WriteOp::Delete
                            && result["errors"].as_array().is_some_and(|errors| {
                                errors
                                    .iter()
                                    .any(|e| e["statusCode"] == "ENTITY_IS_DELETED")
                            });
                        if !already_deleted {
                            rejected.push((i, encode::record_errors(&result["errors"])));
                        }
                    }
                }
                Err(reason) if chunk.len() > 1 => {
                    // Refused whole, maybe for one bad record: halve until it is alone.
                    tracing::debug!(target: "dbt_activate::salesforce", "{what}: {reason}; splitting {} records", chunk.len());
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    queue.push_front(b.to_vec());
                    queue.push_front(a.to_vec());
                }
                Err(reason) => rejected.push((chunk[0], reason)),
            }
        }
        Ok(rejected)
    }

    /// One Bulk API 2.0 ingest job for `rows`.
    async fn bulk(
        &self,
        batch: &WriteBatch<'_>,
        key_pos: usize,
        key_field: &str,
        rows: &[usize],
        ids: &[Option<String>],
    ) -> Result<Rejects, DestinationError> {
        let (operation, with_ids) = match batch.op {
            WriteOp::Upsert => ("upsert", false),
            WriteOp::Insert => ("insert", false),
            WriteOp::Update | WriteOp::Clear => ("update", true),
            WriteOp::Delete => ("delete", true),
        };
        let clear = batch.op == WriteOp::Clear;
        let mut header: Vec<&str> = Vec::new();
        if with_ids {
            header.push("Id");
        }
        if batch.op != WriteOp::Delete {
            header.extend(batch.fields.iter().map(String::as_str));
        }
        let csv_error =
            |e: csv::Error| DestinationError::new(format!("{}: CSV: {e}", self.client.site));
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        writer.write_record(&header).map_err(csv_error)?;
        // The text each row is recognised by in the results files.
        let mut row_of: HashMap<String, usize> = HashMap::with_capacity(rows.len());
        for &i in rows {
            let mut cells: Vec<String> = Vec::with_capacity(header.len());
            if with_ids {
                cells.push(ids[i].clone().unwrap_or_default());
            }
            if batch.op != WriteOp::Delete {
                for (j, value) in batch.records[i].values.iter().enumerate() {
                    cells.push(if clear && j != key_pos {
                        "#N/A".to_owned()
                    } else {
                        encode::csv_text(value).unwrap_or_default()
                    });
                }
            }
            writer.write_record(&cells).map_err(csv_error)?;
            let matched = if with_ids {
                ids[i].clone().unwrap_or_default()
            } else {
                encode::key_text(&batch.records[i].values[key_pos])
            };
            row_of.insert(matched, i);
        }
        let csv = writer
            .into_inner()
            .map_err(|e| DestinationError::new(format!("{}: CSV: {e}", self.client.site)))?;

        let jobs = format!("{}/jobs/ingest", self.data());
        let mut spec = serde_json::json!({
            "object": batch.object,
            "operation": operation,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        if batch.op == WriteOp::Upsert {
            spec["externalIdFieldName"] = key_field.into();
        }
        let job = self
            .client
            .request_json(Method::POST, &jobs, Body::json(spec.to_string()))
            .await?;
        let Some(id) = job["id"].as_str().filter(|id| valid_name(id)) else {
            return Err(DestinationError::new(format!(
                "{}: the Bulk API answered without a job id",
                self.client.site
            )));
        };
        let job_path = format!("{jobs}/{id}");
        tracing::debug!(target: "dbt_activate::salesforce", "{}: bulk {operation} job {id}, {} rows", self.client.site, rows.len());
        self.client
            .request_text(
                Method::PUT,
                &format!("{job_path}/batches"),
                Some(Body {
                    content_type: "text/csv",
                    bytes: Bytes::from(csv),
                }),
            )
            .await?;
        self.client
            .request_json(
                Method::PATCH,
                &job_path,
                Body::json(r#"{"state":"UploadComplete"}"#.to_owned()),
            )
            .await?;
        let started = Instant::now();
        let (state, error_message) = loop {
            let info = self
                .client
                .request_json(Method::GET, &job_path, None)
                .await?;
            let state = info["state"].as_str().unwrap_or_default().to_owned();
            if matches!(state.as_str(), "JobComplete" | "Failed" | "Aborted") {
                break (
                    state,
                    info["errorMessage"].as_str().unwrap_or_default().to_owned(),
                );
            }
            if started.elapsed() > self.settings().bulk_timeout {
                return Err(DestinationError::new(format!(
                    "{}: Bulk API job {id} is still {state} after {}s; its rows are not confirmed (they are sent again next run)",
                    self.client.site,
                    self.settings().bulk_timeout.as_secs()
                )));
            }
            tokio::time::sleep(self.settings().bulk_poll_interval).await;
        };

        let match_column = if with_ids { "Id" } else { key_field };
        let mut succeeded: HashSet<usize> = HashSet::new();
        let mut rejected: Rejects = Vec::new();
        for (file, failed) in [("successfulResults", false), ("failedResults", true)] {
            // A job that failed whole may have no results files: its rows stay unconfirmed.
            let text = match self
                .client
                .request(Method::GET, &format!("{job_path}/{file}/"), None)
                .await?
            {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(text.as_bytes());
            let Ok(head) = reader.headers().cloned() else {
                continue;
            };
            let column = |name: &str| head.iter().position(|h| h.eq_ignore_ascii_case(name));
            let (Some(key_col), error_col) = (
                column(match_column).or_else(|| with_ids.then(|| column("sf__Id")).flatten()),
                column("sf__Error"),
            ) else {
                continue;
            };
            for record in reader.records().flatten() {
                let Some(&i) = record.get(key_col).and_then(|k| row_of.get(k)) else {
                    continue;
                };
                if failed {
                    let reason = error_col
                        .and_then(|c| record.get(c))
                        .filter(|e| !e.is_empty())
                        .unwrap_or("failed without a reason");
                    rejected.push((i, crate::secrets::redact(reason)));
                } else {
                    succeeded.insert(i);
                }
            }
        }
        let reported: HashSet<usize> = rejected.iter().map(|r| r.0).collect();
        for &i in rows {
            if !succeeded.contains(&i) && !reported.contains(&i) {
                let why = if error_message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", crate::secrets::redact(&error_message))
                };
                rejected.push((
                    i,
                    format!("not processed by Bulk API job {id} ({state}{why})"),
                ));
            }
        }
        Ok(rejected)
    }

    /// Record Ids of the batch's external ids (`None` where no record has it).
    async fn resolve_ids(
        &self,
        batch: &WriteBatch<'_>,
        key_pos: usize,
        key_field: &str,
    ) -> Result<Vec<Option<String>>, DestinationError> {
        let rows: Vec<usize> = (0..batch.records.len()).collect();
        let found = self
            .query_records(batch, key_pos, key_field, &rows, &[])
            .await?;
        Ok(batch
            .records
            .iter()
            .map(|r| {
                found
                    .get(&encode::key_text(&r.values[key_pos]))
                    .and_then(|held| held.get("Id"))
                    .and_then(|id| id.as_str())
                    .map(str::to_owned)
            })
            .collect())
    }

    /// The records holding the external ids of `rows`, by key text, with `Id`, the key field
    /// and `fields`, through SOQL (`SELECT Id, .. FROM <object> WHERE <key> IN (..)`, 100 keys a
    /// query, following `nextRecordsUrl`).
    async fn query_records(
        &self,
        batch: &WriteBatch<'_>,
        key_pos: usize,
        key_field: &str,
        rows: &[usize],
        fields: &[String],
    ) -> Result<HashMap<String, serde_json::Map<String, serde_json::Value>>, DestinationError> {
        let mut selected: Vec<&str> = vec!["Id", key_field];
        for f in fields {
            if !selected.iter().any(|s| s.eq_ignore_ascii_case(f)) {
                selected.push(f);
            }
        }
        let mut found = HashMap::new();
        for chunk in rows.chunks(KEYS_PER_QUERY) {
            let list: Vec<String> = chunk
                .iter()
                .map(|&i| encode::soql_literal(&batch.records[i].values[key_pos]))
                .collect();
            let soql = format!(
                "SELECT {} FROM {} WHERE {key_field} IN ({})",
                selected.join(", "),
                batch.object,
                list.join(",")
            );
            let mut path = format!("{}/query?{}", self.data(), form(&[("q", &soql)]));
            loop {
                let page = self.client.request_json(Method::GET, &path, None).await?;
                for record in page["records"].as_array().into_iter().flatten() {
                    let Some(obj) = record.as_object() else {
                        continue;
                    };
                    let key = obj
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(key_field))
                        .map(|(_, v)| encode::json_key_text(v));
                    if let Some(key) = key
                        && obj.get("Id").is_some_and(|v| v.is_string())
                    {
                        found.insert(key, obj.clone());
                    }
                }
                match page["nextRecordsUrl"].as_str() {
                    Some(next) if page["done"] == false && next.starts_with("/services/") => {
                        path = next.to_owned();
                    }
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    /// Insert-only rows refused as `DUPLICATE_VALUE` whose record holds exactly the row: an
    /// earlier create of this row was committed but its answer was lost (the connection
    /// dropped), so the resent create met the record it had made. Such rows are delivered and
    /// leave `rejected`; a record holding anything else stays a reject.
    async fn confirm_lost_inserts(
        &self,
        batch: &WriteBatch<'_>,
        key_pos: usize,
        key_field: &str,
        rejected: &mut Rejects,
    ) -> Result<(), DestinationError> {
        let duplicates: Vec<usize> = rejected
            .iter()
            .filter(|(_, reason)| reason.contains("DUPLICATE_VALUE"))
            .map(|(i, _)| *i)
            .collect();
        if duplicates.is_empty() || !batch.fields.iter().all(|f| valid_name(f)) {
            return Ok(());
        }
        let held = self
            .query_records(batch, key_pos, key_field, &duplicates, batch.fields)
            .await?;
        let holds_row = |i: usize| {
            let record = &batch.records[i];
            held.get(&encode::key_text(&record.values[key_pos]))
                .is_some_and(|held| {
                    batch
                        .fields
                        .iter()
                        .zip(&record.values)
                        .all(|(field, value)| {
                            let have = held
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(field))
                                .map(|(_, v)| v);
                            encode::same_value(&encode::json_value(value), have)
                        })
                })
        };
        rejected.retain(|(i, reason)| {
            let confirmed = reason.contains("DUPLICATE_VALUE") && holds_row(*i);
            if confirmed {
                tracing::debug!(target: "dbt_activate::salesforce", "{}: {} row {i}: the record with this {key_field} holds exactly the row (an earlier create whose answer was lost); confirmed", self.client.site, batch.object);
            }
            !confirmed
        });
        Ok(())
    }
}

#[async_trait]
impl Destination for SalesforceDestination {
    fn kind(&self) -> &'static str {
        "salesforce"
    }

    fn identity(&self) -> String {
        let s = self.settings();
        crate::secrets::redact(s.instance_url.as_deref().unwrap_or(&s.login_url))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_rows: self
                .settings()
                .bulk_batch_size
                .max(self.settings().batch_size),
        }
    }

    async fn health_check(&self) -> Result<(), DestinationError> {
        let data = self.data();
        self.client
            .request_json(Method::GET, &data, None)
            .await
            .map(|_| ())
    }

    async fn describe(&self, object: &str) -> Result<Option<ObjectSchema>, DestinationError> {
        if !valid_name(object) {
            return Err(DestinationError::new(format!(
                "{}: `{object}` is not an sObject API name",
                self.client.site
            )));
        }
        let path = format!("{}/sobjects/{object}/describe", self.data());
        let described = match self.client.request(Method::GET, &path, None).await? {
            Ok(response) => response.json::<serde_json::Value>().await.map_err(|e| {
                DestinationError::new(format!(
                    "{}: describe {object}: {}",
                    self.client.site,
                    crate::secrets::redact(&e.to_string())
                ))
            })?,
            Err(reason) => {
                return Err(DestinationError::new(format!(
                    "{}: cannot describe sObject `{object}`: {reason}",
                    self.client.site
                )));
            }
        };
        let fields = described["fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| {
                        let name = f["name"].as_str()?;
                        let native = f["type"].as_str().unwrap_or_default();
                        Some(FieldSchema::new(name, field_kind(native), native))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(ObjectSchema { fields }))
    }

    async fn write(&self, batch: &WriteBatch<'_>) -> Result<BatchOutcome, DestinationError> {
        let (key_pos, key_field) = self.key_field(batch)?;
        let n = batch.records.len();
        let mut rejected: Rejects = Vec::new();
        let (rows, ids): (Vec<usize>, Vec<Option<String>>) = match batch.op {
            WriteOp::Upsert | WriteOp::Insert => ((0..n).collect(), vec![None; n]),
            WriteOp::Update | WriteOp::Clear | WriteOp::Delete => {
                let ids = self.resolve_ids(batch, key_pos, key_field).await?;
                let mut rows = Vec::with_capacity(n);
                for (i, id) in ids.iter().enumerate() {
                    match id {
                        Some(_) => rows.push(i),
                        // Already gone: nothing to delete.
                        None if batch.op == WriteOp::Delete => {}
                        None => rejected.push((
                            i,
                            format!(
                                "NOT_FOUND: no {} has {key_field} = {}",
                                batch.object,
                                encode::key_text(&batch.records[i].values[key_pos])
                            ),
                        )),
                    }
                }
                (rows, ids)
            }
        };
        if rows.len() > self.settings().bulk_threshold {
            rejected.extend(self.bulk(batch, key_pos, key_field, &rows, &ids).await?);
        } else if !rows.is_empty() {
            rejected.extend(self.collections(batch, key_field, &rows, &ids).await?);
        }
        if batch.op == WriteOp::Insert {
            self.confirm_lost_inserts(batch, key_pos, key_field, &mut rejected)
                .await?;
        }
        rejected.sort_by_key(|r| r.0);
        Ok(BatchOutcome { rejected })
    }
}

/// The kind of value a Salesforce field type (`describe`'s `fields[].type`) takes.
fn field_kind(salesforce_type: &str) -> Kind {
    match salesforce_type {
        "string" | "textarea" | "email" | "phone" | "url" | "picklist" | "multipicklist"
        | "combobox" | "id" | "reference" | "encryptedstring" | "time" => Kind::Text,
        "int" | "long" => Kind::Integer,
        "double" | "currency" | "percent" => Kind::Number,
        "boolean" => Kind::Boolean,
        "date" => Kind::Date,
        "datetime" => Kind::DateTime,
        _ => Kind::Any,
    }
}
