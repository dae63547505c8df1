//! `stripe`: customers (matched by id or by a metadata key through search) and billing meter
//! events, one form-encoded request per record (Stripe has no batch API), sent with bounded
//! concurrency under one rate limiter per destination.
//!
//! Every write carries an `Idempotency-Key` derived from the sync, the record's key and what
//! is sent (see [`idempotency_key`]), so a retried request never acts twice.

mod client;
mod config;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::Method;
use sha2::{Digest, Sha256};

use crate::connections::DestinationConfig;
use crate::destination::http::{self, RateLimiter, RetryPolicy};
use crate::destination::{
    BatchOutcome, Capabilities, Destination, ObjectSchema, Record, SyncShape, WriteBatch, WriteOp,
};
use crate::error::{ConfigError, DestinationError};
use crate::value::Value;

use client::{Answer, Call, StripeClient, form_encode, form_value, path_segment};
use config::StripeConfig;

pub fn build(config: &DestinationConfig) -> Result<Arc<dyn Destination>, ConfigError> {
    Ok(Arc::new(StripeDestination::from_config(config)?))
}

/// The objects this destination writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Customers,
    MeterEvents,
}

const OBJECTS: &str = "customers, billing/meter_events";

impl Object {
    fn parse(name: &str) -> Result<Self, DestinationError> {
        match name {
            "customers" => Ok(Object::Customers),
            "billing/meter_events" | "meter_events" => Ok(Object::MeterEvents),
            other => Err(DestinationError::new(format!(
                "stripe has no object `{other}` in this release (objects: {OBJECTS})"
            ))),
        }
    }
}

/// Standard customer parameters that take a single value (Stripe's create/update customer
/// API); `metadata[<key>]` is free.
const CUSTOMER_FIELDS: &[&str] = &[
    "id",
    "email",
    "name",
    "description",
    "phone",
    "balance",
    "invoice_prefix",
    "tax_exempt",
    "address[line1]",
    "address[line2]",
    "address[city]",
    "address[state]",
    "address[postal_code]",
    "address[country]",
];

/// Meter event parameters; `payload[<key>]` is free.
const METER_EVENT_FIELDS: &[&str] = &["event_name", "identifier", "timestamp"];

/// Checks mapped field names locally: Stripe has no schema endpoint for metadata.
fn check_fields(object: Object, fields: &[String]) -> Result<(), String> {
    let (known, open) = match object {
        Object::Customers => (CUSTOMER_FIELDS, "metadata"),
        Object::MeterEvents => (METER_EVENT_FIELDS, "payload"),
    };
    for field in fields {
        if known.contains(&field.as_str()) {
            continue;
        }
        if let Some(inner) = field
            .strip_prefix(open)
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.strip_suffix(']'))
        {
            if inner.is_empty() || inner.contains(['[', ']']) || inner.chars().count() > 40 {
                return Err(format!(
                    "`{field}`: {open} keys are 1 to 40 characters without square brackets"
                ));
            }
            continue;
        }
        let hint = match activate_manifest::did_you_mean(field, known.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("fields: {}, {open}[<key>]", known.join(", ")),
        };
        return Err(format!(
            "`{field}` is not a field this destination writes; {hint}"
        ));
    }
    Ok(())
}

/// How customers are found: by Stripe id, or by a metadata key through the Search API.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    Id,
    Metadata(String),
}

impl Lookup {
    fn of(match_on: &str) -> Result<Self, String> {
        if match_on == "id" {
            return Ok(Lookup::Id);
        }
        match match_on
            .strip_prefix("metadata[")
            .and_then(|r| r.strip_suffix(']'))
        {
            Some(key) if !key.is_empty() => Ok(Lookup::Metadata(key.to_owned())),
            _ => Err(format!(
                "customers are matched on `id` (a Stripe customer id column) or `metadata[<key>]`, not `{match_on}`"
            )),
        }
    }
}

/// `metadata['key']:'value'` in Stripe's search query language.
/// Clauses one search may combine (Stripe's search query language allows up to 10).
const CLAUSES_PER_SEARCH: usize = 10;

/// What a search found for one metadata value: the ids of the customers holding it, or why
/// the search was refused.
type Found = Result<Vec<String>, String>;

fn search_query(key: &str, value: &str) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('\'', "\\'");
    format!("metadata['{}']:'{}'", esc(key), esc(value))
}

/// The idempotency key of one write: a SHA-256 over the sync, the request, the record's key
/// and the form body (the row's mapped values, so a changed row gets a new key), plus `scope`.
fn idempotency_key(sync: &str, request: &str, key: &[Value], form: &str, scope: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        sync,
        request,
        &Value::json(serde_json::Value::Array(
            key.iter().map(Value::to_json).collect(),
        ))
        .to_json_string(),
        form,
        scope,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("dbt-activate-{}", &hex::encode(h.finalize())[..48])
}

/// Unix seconds of a meter event's `timestamp`.
fn unix_seconds(value: &Value) -> Result<i64, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let bad = || format!("timestamp `{}` is not a date or time", form_value(value));
    match value {
        Value::Int(i) => Ok(*i),
        Value::Date(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp())
            .ok_or_else(bad),
        Value::Timestamp(s) => NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|t| t.and_utc().timestamp())
            .map_err(|_| bad()),
        Value::TimestampTz(s) | Value::Text(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp()))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

pub struct StripeDestination {
    config: StripeConfig,
    client: StripeClient,
    writes: RateLimiter,
    searches: RateLimiter,
    /// Scopes update keys to this run (see `docs/destinations/stripe.md`, Idempotency).
    run_nonce: String,
}

impl StripeDestination {
    fn from_config(config: &DestinationConfig) -> Result<Self, ConfigError> {
        let cfg = StripeConfig::from_config(config)?;
        let http = http::client(Duration::from_secs(cfg.timeout_seconds))
            .map_err(|e| ConfigError::new(format!("{}: {}", config.site(), e.message)))?;
        let retry = RetryPolicy {
            max_attempts: cfg.max_attempts,
            ..RetryPolicy::default()
        };
        let client = StripeClient {
            http,
            base_url: cfg.base_url.clone(),
            api_key: cfg.api_key.clone(),
            stripe_version: cfg.stripe_version.clone(),
            retry,
        };
        Ok(Self {
            writes: RateLimiter::new(cfg.writes_per_second, Duration::from_secs(1)),
            searches: RateLimiter::new(cfg.searches_per_second, Duration::from_secs(1)),
            run_nonce: format!("{:016x}", rand::random::<u64>()),
            config: cfg,
            client,
        })
    }

    /// Sends `row` for every record with bounded concurrency; a fatal error fails the batch.
    async fn each_record<'b, F, Fut>(
        &self,
        batch: &'b WriteBatch<'b>,
        row: F,
    ) -> Result<BatchOutcome, DestinationError>
    where
        F: Fn(usize, &'b Record) -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, DestinationError>>,
    {
        let mut pending = Vec::with_capacity(batch.records.len());
        for (i, record) in batch.records.iter().enumerate() {
            let fut = row(i, record);
            pending.push(async move { (i, fut.await) });
        }
        let mut results =
            futures_util::stream::iter(pending).buffer_unordered(self.config.concurrency);
        let mut outcome = BatchOutcome::default();
        while let Some((i, result)) = results.next().await {
            match result {
                Ok(None) => {}
                Ok(Some(reason)) => outcome.rejected.push((i, reason)),
                // Stop sending (a refused key would fail every row alike). Requests cut short
                // here are not confirmed: a create or meter event re-sent later carries the same
                // idempotency key and replays; an update is idempotent anyway.
                Err(e) => return Err(e),
            }
        }
        outcome.rejected.sort_by_key(|(i, _)| *i);
        Ok(outcome)
    }

    /// Form parameters of a record: every field, or every field but `skip` (the id in the path).
    fn params(
        batch: &WriteBatch<'_>,
        record: &Record,
        skip: Option<usize>,
    ) -> Vec<(String, String)> {
        batch
            .fields
            .iter()
            .zip(&record.values)
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, (f, v))| (f.clone(), form_value(v)))
            .collect()
    }

    async fn write_customers(
        &self,
        batch: &WriteBatch<'_>,
    ) -> Result<BatchOutcome, DestinationError> {
        if batch.op == WriteOp::Delete {
            return Err(DestinationError::new(
                "stripe customers are never deleted by a mirror: deleting a Stripe customer cancels its subscriptions and cannot be undone\n  hint: set `on_delete: clear` (empties the mapped fields and metadata keys, keeping the customer) or `on_delete: ignore`",
            ));
        }
        let [key_pos] = batch.key_positions else {
            return Err(DestinationError::new(
                "stripe customers are matched on exactly one field (`match_on: id` or `match_on: metadata[<key>]`)",
            ));
        };
        let key_pos = *key_pos;
        let lookup = Lookup::of(&batch.fields[key_pos]).map_err(DestinationError::new)?;
        if lookup == Lookup::Id && batch.op == WriteOp::Insert {
            return Err(DestinationError::new(
                "stripe chooses customer ids: `operation: insert` needs `match_on: metadata[<key>]`, not `id`",
            ));
        }
        match &lookup {
            Lookup::Metadata(meta) => {
                self.customers_by_metadata(batch, key_pos, &lookup, meta)
                    .await
            }
            Lookup::Id => {
                self.each_record(batch, |_, record| {
                    self.customer(batch, record, key_pos, &lookup, None)
                })
                .await
            }
        }
    }

    /// Customers matched by `metadata[meta]`, ten rows at a time: one search finds the
    /// customers holding any of the ten key values (`metadata['k']:'a' OR metadata['k']:'b'
    /// ...`, `limit=100`), then the ten rows are written one after the other. Up to
    /// `concurrency` groups run at once, so the next groups' searches overlap this group's
    /// writes, and one search per ten rows keeps the Search API's lower rate from pacing the
    /// writes.
    async fn customers_by_metadata(
        &self,
        batch: &WriteBatch<'_>,
        key_pos: usize,
        lookup: &Lookup,
        meta: &str,
    ) -> Result<BatchOutcome, DestinationError> {
        let mut pending = Vec::new();
        for (n, group) in batch.records.chunks(CLAUSES_PER_SEARCH).enumerate() {
            pending.push(async move {
                let mut values: Vec<String> = group
                    .iter()
                    .map(|r| form_value(&r.values[key_pos]))
                    .filter(|v| !v.is_empty())
                    .collect();
                values.sort_unstable();
                values.dedup();
                let found: HashMap<String, Found> = if values.is_empty() {
                    HashMap::new()
                } else {
                    self.search_group(meta, &values)
                        .await?
                        .into_iter()
                        .collect()
                };
                let mut rejected = Vec::new();
                for (j, record) in group.iter().enumerate() {
                    let known = found.get(&form_value(&record.values[key_pos]));
                    if let Some(reason) =
                        self.customer(batch, record, key_pos, lookup, known).await?
                    {
                        rejected.push((n * CLAUSES_PER_SEARCH + j, reason));
                    }
                }
                Ok::<_, DestinationError>(rejected)
            });
        }
        let mut groups =
            futures_util::stream::iter(pending).buffer_unordered(self.config.concurrency);
        let mut outcome = BatchOutcome::default();
        while let Some(result) = groups.next().await {
            // A fatal error stops the batch, as in `each_record`.
            outcome.rejected.extend(result?);
        }
        outcome.rejected.sort_by_key(|(i, _)| *i);
        Ok(outcome)
    }

    /// The customers holding one `metadata[meta]` value (at most two: more is ambiguous).
    async fn search_one(&self, meta: &str, value: &str) -> Result<Found, DestinationError> {
        let query = form_encode(&[
            ("query".to_owned(), search_query(meta, value)),
            ("limit".to_owned(), "2".to_owned()),
        ]);
        let answer = self
            .client
            .call(Call {
                method: Method::GET,
                path: format!("/v1/customers/search?{query}"),
                form: None,
                idempotency_key: None,
                limiter: &self.searches,
            })
            .await?;
        Ok(match answer {
            Answer::Ok(found) => Ok(found["data"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|c| c["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()),
            Answer::Rejected(reason) => Err(reason),
        })
    }

    /// The customers holding each of `values` (at most 10), by value. Empty when Stripe
    /// answered `has_more` (each row then searches alone).
    async fn search_group(
        &self,
        meta: &str,
        values: &[String],
    ) -> Result<Vec<(String, Found)>, DestinationError> {
        let clauses: Vec<String> = values.iter().map(|v| search_query(meta, v)).collect();
        let query = form_encode(&[
            ("query".to_owned(), clauses.join(" OR ")),
            ("limit".to_owned(), "100".to_owned()),
        ]);
        let answer = self
            .client
            .call(Call {
                method: Method::GET,
                path: format!("/v1/customers/search?{query}"),
                form: None,
                idempotency_key: None,
                limiter: &self.searches,
            })
            .await?;
        let json = match answer {
            Answer::Ok(json) => json,
            Answer::Rejected(reason) => {
                return Ok(values
                    .iter()
                    .map(|v| (v.clone(), Err(reason.clone())))
                    .collect());
            }
        };
        if json["has_more"] == true {
            return Ok(Vec::new());
        }
        let mut ids: HashMap<&str, Vec<String>> =
            values.iter().map(|v| (v.as_str(), Vec::new())).collect();
        for customer in json["data"].as_array().into_iter().flatten() {
            let (Some(id), Some(value)) =
                (customer["id"].as_str(), customer["metadata"][meta].as_str())
            else {
                continue;
            };
            if let Some(list) = ids.get_mut(value) {
                list.push(id.to_owned());
            }
        }
        Ok(ids
            .into_iter()
            .map(|(v, list)| (v.to_owned(), Ok(list)))
            .collect())
    }

    async fn customer(
        &self,
        batch: &WriteBatch<'_>,
        record: &Record,
        key_pos: usize,
        lookup: &Lookup,
        known: Option<&Found>,
    ) -> Result<Option<String>, DestinationError> {
        let key_value = form_value(&record.values[key_pos]);
        if key_value.is_empty() {
            return Ok(Some(format!(
                "the key `{}` is empty",
                batch.fields[key_pos]
            )));
        }
        let row_key = batch.key_of(record);
        let target = match lookup {
            Lookup::Id => Some(key_value.clone()),
            Lookup::Metadata(meta) => {
                let ids = match known {
                    Some(Ok(ids)) => ids.clone(),
                    Some(Err(reason)) => return Ok(Some(reason.clone())),
                    None => match self.search_one(meta, &key_value).await? {
                        Ok(ids) => ids,
                        Err(reason) => return Ok(Some(reason)),
                    },
                };
                match ids.as_slice() {
                    [] => None,
                    [one] => Some(one.clone()),
                    _ => {
                        return Ok(Some(format!(
                            "more than one customer has metadata[{meta}] = '{key_value}' ({}); match on a unique key",
                            ids.join(", ")
                        )));
                    }
                }
            }
        };
        let (path, params, scope) = match (batch.op, target) {
            (WriteOp::Insert, Some(id)) => {
                return Ok(Some(format!(
                    "a customer with {} = '{key_value}' already exists ({id}); operation insert only creates",
                    batch.fields[key_pos]
                )));
            }
            (WriteOp::Update, None) => {
                return Ok(Some(format!(
                    "no customer has {} = '{key_value}'; operation update only changes existing customers",
                    batch.fields[key_pos]
                )));
            }
            // Nothing to empty.
            (WriteOp::Clear, None) => return Ok(None),
            (_, Some(id)) => {
                let skip = (*lookup == Lookup::Id).then_some(key_pos);
                (
                    format!("/v1/customers/{}", path_segment(&id)),
                    Self::params(batch, record, skip),
                    // An update is idempotent by nature; a key scoped to the run keeps a row that
                    // returns to earlier values within Stripe's 24 hours from replaying an old answer.
                    self.run_nonce.as_str(),
                )
            }
            (_, None) => (
                "/v1/customers".to_owned(),
                Self::params(batch, record, None),
                "",
            ),
        };
        let form = form_encode(&params);
        let key = idempotency_key(batch.sync, &format!("POST {path}"), &row_key, &form, scope);
        let answer = self
            .client
            .call(Call {
                method: Method::POST,
                path,
                form: Some(form),
                idempotency_key: Some(key),
                limiter: &self.writes,
            })
            .await?;
        Ok(match answer {
            Answer::Ok(_) => None,
            Answer::Rejected(reason) => Some(reason),
        })
    }

    async fn write_meter_events(
        &self,
        batch: &WriteBatch<'_>,
    ) -> Result<BatchOutcome, DestinationError> {
        if batch.op != WriteOp::Insert {
            return Err(DestinationError::new(format!(
                "stripe billing/meter_events are append-only: set `operation: insert` (this sync asks for {})\n  hint: each row becomes one meter event; a row that changes later is not sent again",
                batch.op.as_str()
            )));
        }
        let has_identifier = batch.fields.iter().any(|f| f == "identifier");
        self.each_record(batch, |_, record| async move {
            let row_key = batch.key_of(record);
            let mut params = Vec::with_capacity(batch.fields.len() + 1);
            for (field, value) in batch.fields.iter().zip(&record.values) {
                if field == "timestamp" && !value.is_null() {
                    match unix_seconds(value) {
                        Ok(secs) => params.push((field.clone(), secs.to_string())),
                        Err(reason) => return Ok(Some(reason)),
                    }
                } else if !value.is_null() {
                    params.push((field.clone(), form_value(value)));
                }
            }
            if !has_identifier {
                // Stripe deduplicates events by identifier: derive one from the row's key.
                let id = idempotency_key(batch.sync, "identifier", &row_key, "", "");
                params.push(("identifier".to_owned(), id));
            }
            let form = form_encode(&params);
            let key = idempotency_key(
                batch.sync,
                "POST /v1/billing/meter_events",
                &row_key,
                &form,
                "",
            );
            let answer = self
                .client
                .call(Call {
                    method: Method::POST,
                    path: "/v1/billing/meter_events".to_owned(),
                    form: Some(form),
                    idempotency_key: Some(key),
                    limiter: &self.writes,
                })
                .await?;
            Ok(match answer {
                Answer::Ok(_) => None,
                Answer::Rejected(reason) => Some(reason),
            })
        })
        .await
    }
}

#[async_trait]
impl Destination for StripeDestination {
    fn kind(&self) -> &'static str {
        "stripe"
    }

    fn identity(&self) -> String {
        format!("{} ({} mode)", self.config.base_url, self.config.mode())
    }

    fn capabilities(&self) -> Capabilities {
        // No batch API: a "batch" is the unit of concurrency and of journaling.
        Capabilities {
            max_batch_rows: self.config.batch_size,
        }
    }

    async fn health_check(&self) -> Result<(), DestinationError> {
        let answer = self
            .client
            .call(Call {
                method: Method::GET,
                path: "/v1/customers?limit=1".to_owned(),
                form: None,
                idempotency_key: None,
                limiter: &self.searches,
            })
            .await?;
        match answer {
            Answer::Ok(_) => Ok(()),
            Answer::Rejected(reason) => Err(DestinationError::new(format!(
                "stripe {}: {reason}",
                self.identity()
            ))),
        }
    }

    /// Stripe has no schema endpoint for metadata or payload keys, so fields are checked
    /// locally when the sync starts (`check_fields`); here only the object is checked.
    async fn describe(&self, object: &str) -> Result<Option<ObjectSchema>, DestinationError> {
        Object::parse(object)?;
        Ok(None)
    }

    /// Everything Stripe would refuse for the sync as a whole, found before anything is sent:
    /// unknown fields, the wrong key or operation for the object, deleting customers.
    fn check_sync(&self, sync: &SyncShape<'_>) -> Result<(), String> {
        let object = Object::parse(sync.object).map_err(|e| e.message)?;
        check_fields(object, sync.fields)?;
        match object {
            Object::MeterEvents if sync.op != WriteOp::Insert || sync.removal.is_some() => Err(
                "billing/meter_events are append-only: use `operation: insert` and `sync_mode: incremental`"
                    .into(),
            ),
            Object::MeterEvents => Ok(()),
            Object::Customers => {
                if sync.removal == Some(WriteOp::Delete) {
                    return Err("stripe customers are never deleted by a mirror (it cancels their subscriptions)\n  hint: set `on_delete: clear` or `on_delete: ignore`".into());
                }
                let [key] = sync.key_fields else {
                    return Err("customers are matched on exactly one field (`match_on: id` or `match_on: metadata[<key>]`)".into());
                };
                let lookup = Lookup::of(key)?;
                if lookup == Lookup::Id && sync.op == WriteOp::Insert {
                    return Err("stripe chooses customer ids: `operation: insert` needs `match_on: metadata[<key>]`, not `id`".into());
                }
                Ok(())
            }
        }
    }

    async fn write(&self, batch: &WriteBatch<'_>) -> Result<BatchOutcome, DestinationError> {
        let object = Object::parse(batch.object)?;
        check_fields(object, batch.fields)
            .map_err(|e| DestinationError::new(format!("stripe {}: {e}", batch.object)))?;
        match object {
            Object::Customers => self.write_customers(batch).await,
            Object::MeterEvents => self.write_meter_events(batch).await,
        }
    }
}
