//! `hubspot`: HubSpot CRM v3 objects (contacts, companies, deals, tickets, custom objects)
//! through a private app's access token (`Authorization: Bearer`).
//!
//! - upsert: `POST /crm/v3/objects/{objectType}/batch/upsert` by `idProperty` (the sync's
//!   `match_on`, a unique-value property), up to 100 inputs per request.
//! - update / clear: the records are found with `batch/read` by `idProperty`, then
//!   `batch/update` by record id (a missing record is a per-row reject for update; nothing to
//!   do for clear).
//! - insert: `batch/read` first (an existing record is a per-row reject), then `batch/create`.
//! - delete (mirror): `batch/read`, then `batch/archive` by record id; records already gone
//!   count as deleted.
//!
//! A 207 Multi-Status answer's `errors` become per-row rejects with HubSpot's message; a
//! request refused whole (400) is split in halves until the bad rows are isolated. 401/403
//! fail the sync. Requests are paced under `requests_per_10_seconds` by one rate limiter
//! shared by every sync to this destination; `X-HubSpot-RateLimit-Remaining: 0` pauses it,
//! `X-HubSpot-RateLimit-Daily-Remaining: 0` stops further requests of the run, and 429/5xx
//! are retried honouring `Retry-After`.
//!
//! `object: "list:<name>"` syncs segment membership into a static contact list instead
//! (see `lists`).

mod config;
mod lists;
mod request;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value as Json;

use self::config::HubSpotConfig;
use self::request::{BatchResponse, failures, key_value, properties};
use crate::connections::DestinationConfig;
use crate::destination::http::{self, RateLimiter, RetryPolicy};
use crate::destination::{
    BatchOutcome, Capabilities, Destination, FieldSchema, Kind, ObjectSchema, SyncShape,
    WriteBatch, WriteOp,
};
use crate::error::{ConfigError, DestinationError};

pub fn build(config: &DestinationConfig) -> Result<Arc<dyn Destination>, ConfigError> {
    Ok(Arc::new(HubSpotDestination::from_config(config)?))
}

pub struct HubSpotDestination {
    name: String,
    config: HubSpotConfig,
    client: reqwest::Client,
    retry: RetryPolicy,
    limiter: RateLimiter,
    daily_exhausted: AtomicBool,
    /// List ids by name, for `list:<name>` syncs: found or created once per run.
    lists: tokio::sync::Mutex<BTreeMap<String, String>>,
}

/// A HubSpot answer after retries: accepted (2xx) or refused for its content (4xx).
enum Answer {
    Accepted { status: u16, body: String },
    Refused(String),
}

/// One row on its way: its index in the batch and the id HubSpot knows it by (its
/// `idProperty` value, or its record id once resolved with `batch/read`).
type Row = (usize, String);

impl HubSpotDestination {
    pub fn from_config(config: &DestinationConfig) -> Result<Self, ConfigError> {
        let settings = HubSpotConfig::from_config(config)?;
        let client = http::client(settings.timeout).map_err(|e| ConfigError::new(e.message))?;
        let mut retry = RetryPolicy::default();
        if let Some(n) = settings.max_retries {
            retry.max_attempts = n + 1;
        }
        let limiter = RateLimiter::new(1, settings.request_interval());
        Ok(Self {
            name: config.name.clone(),
            config: settings,
            client,
            retry,
            limiter,
            daily_exhausted: AtomicBool::new(false),
            lists: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// One request with retries; `Err` when it failed for good or the token was refused.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Answer, DestinationError> {
        let what = format!("hubspot `{}`: {method} {path}", self.name);
        if self.daily_exhausted.load(Ordering::Relaxed) {
            return Err(DestinationError::new(format!(
                "{what}: the account's daily API limit is used up (X-HubSpot-RateLimit-Daily-Remaining: 0); the rest is sent on a later run"
            )));
        }
        let url = format!("{}{path}", self.config.base_url);
        let bytes = bytes::Bytes::from(body.map(Json::to_string).unwrap_or_default());
        let outcome = http::send_with_retries(&self.retry, Some(&self.limiter), &what, || {
            let mut request = self
                .client
                .request(method.clone(), &url)
                .bearer_auth(&self.config.access_token);
            if body.is_some() {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            request.send()
        })
        .await?;
        match outcome {
            Ok(response) => {
                self.observe_limits(response.headers()).await;
                let status = response.status().as_u16();
                let body = response.text().await.map_err(|e| {
                    DestinationError::new(format!(
                        "{what}: reading the answer: {}",
                        crate::secrets::redact(&e.to_string())
                    ))
                })?;
                Ok(Answer::Accepted { status, body })
            }
            Err(reason) => match refused_status(&reason) {
                Some(401) => Err(DestinationError::new(format!(
                    "{what}: HubSpot refused the access token ({reason}); check the private app's token"
                ))),
                Some(403) => Err(DestinationError::new(format!(
                    "{what}: the private app lacks a scope for this ({reason})"
                ))),
                _ => Ok(Answer::Refused(reason)),
            },
        }
    }

    /// Reads HubSpot's rate-limit headers: none left in the window pauses every sync of this
    /// destination for one request slot; none left today stops the run's requests.
    async fn observe_limits(&self, headers: &reqwest::header::HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        if number("x-hubspot-ratelimit-remaining").is_some_and(|n| n <= 0) {
            let interval = number("x-hubspot-ratelimit-interval-milliseconds")
                .filter(|ms| *ms > 0)
                .map_or(config::WINDOW, |ms| {
                    std::time::Duration::from_millis(ms as u64)
                });
            let max = number("x-hubspot-ratelimit-max")
                .unwrap_or(1)
                .clamp(1, 100_000);
            self.limiter.pause_for(interval / max as u32).await;
        }
        if number("x-hubspot-ratelimit-daily-remaining").is_some_and(|n| n <= 0) {
            self.daily_exhausted.store(true, Ordering::Relaxed);
        }
    }

    /// Sends `rows` in one request, splitting a request HubSpot refused whole in halves
    /// until each refused row stands alone. `on_accepted` returns the failed rows of an
    /// accepted request (indexes into the slice it was given).
    async fn send_split<'r>(
        &self,
        path: &str,
        rows: &'r [Row],
        body: impl Fn(&[Row]) -> Json,
        mut on_accepted: impl FnMut(&[Row], u16, &str) -> Vec<(usize, String)>,
        rejected: &mut Vec<(usize, String)>,
    ) -> Result<(), DestinationError> {
        let mut stack: Vec<&'r [Row]> = vec![rows];
        while let Some(part) = stack.pop() {
            if part.is_empty() {
                continue;
            }
            match self.call(Method::POST, path, Some(&body(part))).await? {
                Answer::Accepted { status, body } => {
                    for (j, reason) in on_accepted(part, status, &body) {
                        rejected.push((part[j].0, reason));
                    }
                }
                Answer::Refused(reason) if part.len() == 1 => rejected.push((part[0].0, reason)),
                Answer::Refused(_) => {
                    let (a, b) = part.split_at(part.len() / 2);
                    stack.push(b);
                    stack.push(a);
                }
            }
        }
        Ok(())
    }

    /// HubSpot record ids of `rows` by their `idProperty` value (lower-cased), through
    /// `batch/read`. Rows HubSpot does not have are absent. `Err(reason)` when the read was
    /// refused (every row is then rejected with it).
    async fn resolve(
        &self,
        object: &str,
        id_property: &str,
        rows: &[Row],
    ) -> Result<Result<BTreeMap<String, String>, String>, DestinationError> {
        Ok(self
            .read_records(object, id_property, rows, &[])
            .await?
            .map(|found| found.into_iter().map(|(k, (id, _))| (k, id)).collect()))
    }

    /// `batch/read` with the given properties: each record found by key (lower-cased).
    #[allow(clippy::type_complexity)]
    async fn read_records(
        &self,
        object: &str,
        id_property: &str,
        rows: &[Row],
        properties: &[String],
    ) -> Result<
        Result<BTreeMap<String, (String, BTreeMap<String, String>)>, String>,
        DestinationError,
    > {
        let ids: Vec<&str> = rows.iter().map(|(_, k)| k.as_str()).collect();
        let body = request::read_body(id_property, &ids, properties);
        let path = format!("/crm/v3/objects/{object}/batch/read");
        Ok(match self.call(Method::POST, &path, Some(&body)).await? {
            Answer::Accepted { body, .. } => match BatchResponse::parse(&body) {
                Ok(resp) => Ok(resp.records_by(id_property)),
                Err(e) => Err(format!("unreadable batch/read answer: {e}")),
            },
            Answer::Refused(reason) => Err(reason),
        })
    }

    async fn upsert(
        &self,
        batch: &WriteBatch<'_>,
        id_property: &str,
        rows: &[Row],
        rejected: &mut Vec<(usize, String)>,
    ) -> Result<(), DestinationError> {
        let path = format!("/crm/v3/objects/{}/batch/upsert", batch.object);
        let body = |part: &[Row]| {
            let inputs: Vec<(String, Json)> = part
                .iter()
                .map(|(i, k)| (k.clone(), properties(batch, &batch.records[*i], false)))
                .collect();
            request::upsert_body(id_property, &inputs)
        };
        let on_accepted =
            |part: &[Row], status: u16, text: &str| judge_by_key(id_property, part, status, text);
        self.send_split(&path, rows, body, on_accepted, rejected)
            .await
    }

    async fn update(
        &self,
        batch: &WriteBatch<'_>,
        id_property: &str,
        rows: &[Row],
        clear: bool,
        rejected: &mut Vec<(usize, String)>,
    ) -> Result<(), DestinationError> {
        let read = self.resolve(batch.object, id_property, rows).await?;
        let Some(found) = found_or_reject(read, rows, rejected) else {
            return Ok(());
        };
        // (row index, HubSpot record id)
        let mut targets: Vec<Row> = Vec::new();
        for (i, key) in rows {
            match found.get(&key.to_lowercase()) {
                Some(id) => targets.push((*i, id.clone())),
                None if clear => {} // nothing to clear
                None => rejected.push((
                    *i,
                    format!(
                        "no {} record has {id_property} = {key} (operation: update never creates records)",
                        batch.object
                    ),
                )),
            }
        }
        let path = format!("/crm/v3/objects/{}/batch/update", batch.object);
        let body = |part: &[Row]| {
            let inputs: Vec<(String, Json)> = part
                .iter()
                .map(|(i, id)| (id.clone(), properties(batch, &batch.records[*i], clear)))
                .collect();
            request::update_body(&inputs)
        };
        let on_accepted = |part: &[Row], status: u16, text: &str| {
            let ids: Vec<String> = part.iter().map(|(_, id)| id.clone()).collect();
            judge_results(&ids, status, text, |resp| {
                ids.iter()
                    .map(|id| resp.results.iter().any(|(rid, _)| rid == id))
                    .collect()
            })
        };
        self.send_split(&path, &targets, body, on_accepted, rejected)
            .await
    }

    async fn insert(
        &self,
        batch: &WriteBatch<'_>,
        id_property: &str,
        rows: &[Row],
        rejected: &mut Vec<(usize, String)>,
    ) -> Result<(), DestinationError> {
        let read = self
            .read_records(batch.object, id_property, rows, batch.fields)
            .await?;
        let Some(found) = found_or_reject(read, rows, rejected) else {
            return Ok(());
        };
        let mut new_rows: Vec<Row> = Vec::new();
        for (i, key) in rows {
            match found.get(&key.to_lowercase()) {
                // The record holds exactly this row: an earlier create landed but its answer
                // was lost. It is this sync's record, delivered: confirm it, send nothing.
                Some((_, held)) if holds_row(held, &properties(batch, &batch.records[*i], false), id_property) => {}
                Some((id, _)) => rejected.push((
                    *i,
                    format!(
                        "{} record {id} already has {id_property} = {key} (operation: insert never updates records)",
                        batch.object
                    ),
                )),
                None => new_rows.push((*i, key.clone())),
            }
        }
        let path = format!("/crm/v3/objects/{}/batch/create", batch.object);
        let body = |part: &[Row]| {
            let props: Vec<Json> = part
                .iter()
                .map(|(i, _)| properties(batch, &batch.records[*i], false))
                .collect();
            request::create_body(&props)
        };
        let on_accepted =
            |part: &[Row], status: u16, text: &str| judge_by_key(id_property, part, status, text);
        self.send_split(&path, &new_rows, body, on_accepted, rejected)
            .await
    }

    async fn archive(
        &self,
        batch: &WriteBatch<'_>,
        id_property: &str,
        rows: &[Row],
        rejected: &mut Vec<(usize, String)>,
    ) -> Result<(), DestinationError> {
        let read = self.resolve(batch.object, id_property, rows).await?;
        let Some(found) = found_or_reject(read, rows, rejected) else {
            return Ok(());
        };
        // Records HubSpot no longer has are already deleted.
        let targets: Vec<Row> = rows
            .iter()
            .filter_map(|(i, key)| found.get(&key.to_lowercase()).map(|id| (*i, id.clone())))
            .collect();
        let path = format!("/crm/v3/objects/{}/batch/archive", batch.object);
        let body = |part: &[Row]| {
            let ids: Vec<&str> = part.iter().map(|(_, id)| id.as_str()).collect();
            request::archive_body(&ids)
        };
        self.send_split(&path, &targets, body, |_, _, _| Vec::new(), rejected)
            .await
    }
}

/// The failed inputs of an accepted batch request. A 207 without readable `errors` fails
/// every input without a result.
/// The result of a read, or `None` after rejecting every row with the reason it was refused.
fn found_or_reject<T>(
    read: Result<T, String>,
    rows: &[Row],
    rejected: &mut Vec<(usize, String)>,
) -> Option<T> {
    match read {
        Ok(found) => Some(found),
        Err(reason) => {
            rejected.extend(rows.iter().map(|(i, _)| (*i, reason.clone())));
            None
        }
    }
}

/// Judges an upsert or create answer: a row is confirmed when a returned record carries its
/// `idProperty` value.
fn judge_by_key(id_property: &str, part: &[Row], status: u16, text: &str) -> Vec<(usize, String)> {
    let keys: Vec<String> = part.iter().map(|(_, k)| k.clone()).collect();
    judge_results(&keys, status, text, |resp| {
        let found = resp.ids_by(id_property);
        keys.iter()
            .map(|k| found.contains_key(&k.to_lowercase()))
            .collect()
    })
}

/// Whether a record's properties equal a row's (an empty property is absent in HubSpot; the
/// id property is compared without case, as HubSpot lower-cases emails).
fn holds_row(held: &BTreeMap<String, String>, row: &Json, id_property: &str) -> bool {
    row.as_object().is_some_and(|fields| {
        fields.iter().all(|(name, value)| {
            let want = value.as_str().unwrap_or_default();
            let have = held.get(name).map(String::as_str).unwrap_or_default();
            want == have || (name == id_property && want.eq_ignore_ascii_case(have))
        })
    })
}

fn judge_results(
    ids: &[String],
    status: u16,
    text: &str,
    confirmed: impl FnOnce(&BatchResponse) -> Vec<bool>,
) -> Vec<(usize, String)> {
    match BatchResponse::parse(text) {
        Ok(resp) if status == 207 && resp.errors.is_empty() => {
            let ok = confirmed(&resp);
            let reason = format!("HTTP 207 without errors: {}", http::excerpt(text));
            failures(
                ids,
                &ok,
                &[request::BatchError {
                    message: reason,
                    names: Default::default(),
                }],
            )
        }
        Ok(resp) => {
            let ok = confirmed(&resp);
            failures(ids, &ok, &resp.errors)
        }
        Err(_) if status != 207 => Vec::new(),
        Err(e) => (0..ids.len())
            .map(|i| (i, format!("unreadable HTTP 207 answer: {e}")))
            .collect(),
    }
}

/// The status of a refusal reason from `http::send_with_retries` (`HTTP 400: ...`).
fn refused_status(reason: &str) -> Option<u16> {
    reason.strip_prefix("HTTP ")?.get(..3)?.parse().ok()
}

/// Object types go into the URL path: names, fully qualified names and type ids only.
fn check_object(name: &str, object: &str) -> Result<(), DestinationError> {
    if !object.is_empty()
        && object
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        Ok(())
    } else {
        Err(DestinationError::new(format!(
            "hubspot `{name}`: `{object}` is not a HubSpot object type (contacts, companies, deals, tickets, or a custom object's fullyQualifiedName or objectTypeId such as p_projects or 2-123456)"
        )))
    }
}

#[async_trait]
impl Destination for HubSpotDestination {
    fn kind(&self) -> &'static str {
        "hubspot"
    }

    fn identity(&self) -> String {
        crate::secrets::redact(&self.config.base_url)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_rows: self.config.batch_size,
        }
    }

    /// HubSpot finds records by a unique property value without case (emails are stored
    /// lower-cased).
    fn matches_keys_ignoring_case(&self) -> bool {
        true
    }

    async fn health_check(&self) -> Result<(), DestinationError> {
        match self
            .call(Method::GET, "/account-info/v3/details", None)
            .await?
        {
            Answer::Accepted { .. } => Ok(()),
            Answer::Refused(reason) => Err(DestinationError::new(format!(
                "hubspot `{}`: account details refused: {reason}",
                self.name
            ))),
        }
    }

    async fn describe(&self, object: &str) -> Result<Option<ObjectSchema>, DestinationError> {
        if let Some(name) = lists::list_name(object) {
            return self.describe_list(name).await;
        }
        check_object(&self.name, object)?;
        let path = format!("/crm/v3/properties/{object}");
        match self.call(Method::GET, &path, None).await? {
            Answer::Accepted { body, .. } => Ok(Some(ObjectSchema {
                fields: self.property_fields(&body, object, false)?,
            })),
            Answer::Refused(reason) => Err(DestinationError::new(format!(
                "hubspot `{}`: cannot read the properties of object type `{object}` ({reason}); object types are contacts, companies, deals, tickets, or a custom object's fullyQualifiedName or objectTypeId",
                self.name
            ))),
        }
    }

    fn check_sync(&self, sync: &SyncShape<'_>) -> Result<(), String> {
        match lists::list_name(sync.object) {
            Some(name) => lists::check_list_sync(name, sync),
            None => Ok(()),
        }
    }

    async fn write(&self, batch: &WriteBatch<'_>) -> Result<BatchOutcome, DestinationError> {
        if let Some(name) = lists::list_name(batch.object) {
            return self.write_list(name, batch).await;
        }
        check_object(&self.name, batch.object)?;
        let [key_position] = batch.key_positions else {
            return Err(DestinationError::new(format!(
                "hubspot `{}`: HubSpot matches records by one unique property (idProperty); match_on names {} fields",
                self.name,
                batch.key_positions.len()
            )));
        };
        let id_property = batch
            .fields
            .get(*key_position)
            .ok_or_else(|| {
                DestinationError::new("hubspot: the key field is missing from the batch")
            })?
            .as_str();
        let mut rejected = Vec::new();
        let mut rows: Vec<Row> = Vec::with_capacity(batch.records.len());
        for (i, record) in batch.records.iter().enumerate() {
            match key_value(batch, record) {
                Some(key) => rows.push((i, key)),
                None => rejected.push((
                    i,
                    format!("{id_property} is empty: HubSpot matches records by it"),
                )),
            }
        }
        for chunk in rows.chunks(self.config.batch_size) {
            match batch.op {
                WriteOp::Upsert => {
                    self.upsert(batch, id_property, chunk, &mut rejected)
                        .await?
                }
                WriteOp::Update => {
                    self.update(batch, id_property, chunk, false, &mut rejected)
                        .await?
                }
                WriteOp::Clear => {
                    self.update(batch, id_property, chunk, true, &mut rejected)
                        .await?
                }
                WriteOp::Insert => {
                    self.insert(batch, id_property, chunk, &mut rejected)
                        .await?
                }
                WriteOp::Delete => {
                    self.archive(batch, id_property, chunk, &mut rejected)
                        .await?
                }
            }
        }
        rejected.sort_by_key(|(i, _)| *i);
        Ok(BatchOutcome { rejected })
    }
}

impl HubSpotDestination {
    /// The fields of a Properties API answer (`results[]`: name and type); with
    /// `only_unique`, only properties with unique values (those a record can be matched on).
    fn property_fields(
        &self,
        body: &str,
        object: &str,
        only_unique: bool,
    ) -> Result<Vec<FieldSchema>, DestinationError> {
        let json: Json = serde_json::from_str(body).map_err(|e| {
            DestinationError::new(format!(
                "hubspot `{}`: unreadable properties of {object}: {e}",
                self.name
            ))
        })?;
        Ok(json["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !only_unique || p["hasUniqueValue"].as_bool() == Some(true))
            .filter_map(|p| {
                let name = p["name"].as_str()?;
                let native = p["type"].as_str().unwrap_or_default();
                Some(FieldSchema::new(name, property_kind(native), native))
            })
            .collect())
    }
}

/// The kind of value a HubSpot property type (`results[].type` of the Properties API) takes.
fn property_kind(hubspot_type: &str) -> Kind {
    match hubspot_type {
        "string" | "enumeration" | "phone_number" => Kind::Text,
        "number" => Kind::Number,
        "bool" => Kind::Boolean,
        "date" => Kind::Date,
        "datetime" => Kind::DateTime,
        _ => Kind::Any,
    }
}
