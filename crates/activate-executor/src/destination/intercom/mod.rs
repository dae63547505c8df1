//! `intercom`: contacts and companies through Intercom's REST API.
//!
//! Intercom has no batch endpoint, so every record is its own request (or two), sent up to
//! `concurrency` at a time within the account's rate limit: a token bucket sized to the
//! documented limit (10,000 calls a minute per app, counted in 10-second windows) plus the
//! `X-RateLimit-Remaining` / `X-RateLimit-Reset` headers, which pause every sync sharing the
//! account until the window resets.
//!
//! - `contacts`: matched on one field (`external_id`, `email` or a custom attribute) with
//!   `POST /contacts/search`, then `PUT /contacts/{id}` or `POST /contacts`; deleted with
//!   `DELETE /contacts/{id}`.
//! - `companies`: matched on `company_id`; `POST /companies` creates or updates by it,
//!   `GET /companies?company_id=` finds one for update-only, insert-only and deletes.
//!
//! Mapped fields that are not standard attributes go under `custom_attributes`; `describe`
//! reads `GET /data_attributes?model=contact|company` so a field the workspace does not have
//! fails preflight. A refused record (`errors: [{code, message}]`) is a per-row reject.
//!
//! `object: "tag:<name>"` tags the contacts that are a model's rows instead (see `tags`).

mod body;
mod client;
mod tags;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::connections::DestinationConfig;
use crate::destination::http::{self, RateLimiter, RetryPolicy};
use crate::destination::{
    BatchOutcome, Capabilities, Destination, FieldSchema, Kind, ObjectSchema, Record, SyncShape,
    WriteBatch, WriteOp, check_keys, setting_str, setting_u64,
};
use crate::error::{ConfigError, DestinationError};
use body::{Object, conflict_id, json_value, key_text, record_body};
use client::{Answer, Client};

const KEYS: &[&str] = &[
    "access_token",
    "base_url",
    "api_version",
    "contact_role",
    "batch_size",
    "concurrency",
    "requests_per_window",
    "window_seconds",
    "timeout_seconds",
    "max_retries",
];

const DEFAULT_BASE_URL: &str = "https://api.intercom.io";
const DEFAULT_API_VERSION: &str = "2.11";
/// 10,000 calls a minute per app, enforced in 10-second windows.
const DEFAULT_REQUESTS_PER_WINDOW: u64 = 1_666;
const DEFAULT_WINDOW_SECONDS: u64 = 10;

pub fn build(config: &DestinationConfig) -> Result<Arc<dyn Destination>, ConfigError> {
    Ok(Arc::new(IntercomDestination::from_config(config)?))
}

pub struct IntercomDestination {
    client: Client,
    batch_size: usize,
    concurrency: usize,
    contact_role: String,
    /// Tag ids by name, for `tag:<name>` syncs: found or created once per run.
    tags: tokio::sync::Mutex<BTreeMap<String, String>>,
}

impl IntercomDestination {
    pub fn from_config(config: &DestinationConfig) -> Result<Self, ConfigError> {
        check_keys(config, KEYS)?;
        let site = config.site();
        let token = setting_str(config, "access_token")?
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                ConfigError::new(format!("{site}: `access_token` is required")).with_hint(
                    "access_token: \"{{ env_var('INTERCOM_ACCESS_TOKEN') }}\" (an Intercom app's access token)",
                )
            })?
            .trim()
            .to_owned();
        crate::secrets::register(&token);
        let base_url = setting_str(config, "base_url")?
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::new(format!(
                "{site}: `base_url` must start with http:// or https://"
            )));
        }
        let version = setting_str(config, "api_version")?
            .unwrap_or(DEFAULT_API_VERSION)
            .to_owned();
        let contact_role = setting_str(config, "contact_role")?
            .unwrap_or("user")
            .to_owned();
        if !matches!(contact_role.as_str(), "user" | "lead") {
            return Err(ConfigError::new(format!(
                "{site}: `contact_role` must be `user` or `lead`, found `{contact_role}`"
            )));
        }
        let positive = |key: &str, default: u64| -> Result<u64, ConfigError> {
            match setting_u64(config, key)? {
                Some(0) => Err(ConfigError::new(format!(
                    "{site}: `{key}` must be at least 1"
                ))),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        let batch_size = positive("batch_size", 100)? as usize;
        let concurrency = positive("concurrency", 10)?;
        let per_window = positive("requests_per_window", DEFAULT_REQUESTS_PER_WINDOW)?;
        let window = positive("window_seconds", DEFAULT_WINDOW_SECONDS)?;
        let timeout = positive("timeout_seconds", 30)?;
        let mut retry = RetryPolicy::default();
        if let Some(n) = setting_u64(config, "max_retries")? {
            retry.max_attempts = n as u32 + 1;
        }
        let http = http::client(Duration::from_secs(timeout))
            .map_err(|e| ConfigError::new(format!("{site}: {}", e.message)))?;
        let limiter = RateLimiter::new(
            u32::try_from(per_window).unwrap_or(u32::MAX),
            Duration::from_secs(window),
        );
        Ok(Self {
            client: Client {
                http,
                what: format!("intercom {}", crate::secrets::redact(&base_url)),
                base_url,
                token,
                version,
                retry,
                limiter,
                concurrency,
            },
            batch_size,
            concurrency: concurrency as usize,
            contact_role,
            tags: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    fn object(&self, object: &str) -> Result<Object, DestinationError> {
        Object::parse(object).ok_or_else(|| {
            DestinationError::new(format!(
                "intercom has no object `{object}`; objects: contacts, companies, or tag:<name> (tag the contacts of a segment)"
            ))
        })
    }

    /// Writes one record; `Ok(Some(reason))` when Intercom refused it.
    async fn write_one(
        &self,
        object: Object,
        batch: &WriteBatch<'_>,
        record: &Record,
    ) -> Result<Option<String>, DestinationError> {
        let key_pos = batch.key_positions[0];
        let key_field = &batch.fields[key_pos];
        let key = &record.values[key_pos];
        if key.is_null() {
            return Ok(Some(format!("`{key_field}` is null: nothing to match on")));
        }
        match object {
            Object::Companies => self.write_company(batch, record, key).await,
            Object::Contacts => self.write_contact(batch, record, key_field, key).await,
        }
    }

    async fn write_company(
        &self,
        batch: &WriteBatch<'_>,
        record: &Record,
        key: &crate::value::Value,
    ) -> Result<Option<String>, DestinationError> {
        let company_id = key_text(key);
        let body = Json::Object(record_body(Object::Companies, batch, record));
        if batch.op == WriteOp::Upsert {
            // `POST /companies` creates the company or updates the one with this company_id.
            return Ok(refusal(
                self.client
                    .call(Method::POST, "/companies", Some(&body))
                    .await?,
            ));
        }
        let found = self.find_company(&company_id).await?;
        match (batch.op, found) {
            (WriteOp::Insert, Ok(Some(_))) => Ok(Some(format!(
                "a company with company_id = {company_id} already exists"
            ))),
            (WriteOp::Insert | WriteOp::Upsert, Ok(None)) => Ok(refusal(
                self.client
                    .call(Method::POST, "/companies", Some(&body))
                    .await?,
            )),
            (WriteOp::Update, Ok(None)) => {
                Ok(Some(format!("no company with company_id = {company_id}")))
            }
            (WriteOp::Clear | WriteOp::Delete, Ok(None)) => Ok(None),
            (WriteOp::Delete, Ok(Some(id))) => Ok(refusal(
                self.client
                    .call(Method::DELETE, &format!("/companies/{id}"), None)
                    .await?,
            )),
            (_, Ok(Some(id))) => {
                // The company_id of a company cannot be changed: it is not sent on update.
                let mut body = body;
                if let Some(map) = body.as_object_mut() {
                    map.remove("company_id");
                }
                Ok(refusal(
                    self.client
                        .call(Method::PUT, &format!("/companies/{id}"), Some(&body))
                        .await?,
                ))
            }
            (_, Err(reason)) => Ok(Some(reason)),
        }
    }

    /// The Intercom id of the company with this company_id.
    async fn find_company(
        &self,
        company_id: &str,
    ) -> Result<Result<Option<String>, String>, DestinationError> {
        let path = format!("/companies?company_id={}", percent_encode(company_id));
        Ok(match self.client.call(Method::GET, &path, None).await? {
            Answer::Ok(company) => Ok(company.get("id").and_then(Json::as_str).map(str::to_owned)),
            Answer::NotFound(_) => Ok(None),
            Answer::Refused { reason, .. } => Err(reason),
        })
    }

    async fn write_contact(
        &self,
        batch: &WriteBatch<'_>,
        record: &Record,
        key_field: &str,
        key: &crate::value::Value,
    ) -> Result<Option<String>, DestinationError> {
        let field = Object::Contacts.search_field(key_field);
        let matched = format!("{field} = {}", key_text(key));
        let ids = match self.search_contacts(&field, key).await? {
            Ok(ids) => ids,
            Err(reason) => return Ok(Some(reason)),
        };
        if ids.len() > 1 && batch.op != WriteOp::Delete {
            return Ok(Some(format!(
                "{} contacts match {matched}: make the match field unique",
                ids.len()
            )));
        }
        let body = Json::Object(record_body(Object::Contacts, batch, record));
        match (batch.op, ids.first()) {
            (WriteOp::Delete, _) => {
                for id in &ids {
                    if let Some(reason) = refusal(
                        self.client
                            .call(Method::DELETE, &format!("/contacts/{id}"), None)
                            .await?,
                    ) {
                        return Ok(Some(reason));
                    }
                }
                Ok(None)
            }
            (WriteOp::Insert, Some(_)) => {
                Ok(Some(format!("a contact with {matched} already exists")))
            }
            (WriteOp::Update, None) => Ok(Some(format!("no contact with {matched}"))),
            (WriteOp::Clear, None) => Ok(None),
            (WriteOp::Upsert | WriteOp::Insert, None) => {
                self.create_contact(body, batch.op == WriteOp::Upsert).await
            }
            (_, Some(id)) => self.update_contact(id, &body).await,
        }
    }

    async fn update_contact(
        &self,
        id: &str,
        body: &Json,
    ) -> Result<Option<String>, DestinationError> {
        Ok(refusal(
            self.client
                .call(Method::PUT, &format!("/contacts/{id}"), Some(body))
                .await?,
        ))
    }

    /// `POST /contacts`. When Intercom answers that the contact exists (a retried create whose
    /// first answer was lost, or a contact not yet searchable), an upsert updates that contact.
    async fn create_contact(
        &self,
        mut body: Json,
        upsert: bool,
    ) -> Result<Option<String>, DestinationError> {
        if let Some(map) = body.as_object_mut() {
            map.entry("role")
                .or_insert_with(|| Json::from(self.contact_role.clone()));
        }
        match self
            .client
            .call(Method::POST, "/contacts", Some(&body))
            .await?
        {
            Answer::Refused {
                status: 409,
                reason,
            } if upsert => match conflict_id(&reason) {
                Some(id) => self.update_contact(&id, &body).await,
                None => Ok(Some(reason)),
            },
            answer => Ok(refusal(answer)),
        }
    }

    /// Ids of the contacts whose `field` equals `value`.
    async fn search_contacts(
        &self,
        field: &str,
        value: &crate::value::Value,
    ) -> Result<Result<Vec<String>, String>, DestinationError> {
        let query = json!({
            "query": {"field": field, "operator": "=", "value": json_value(value)},
            "pagination": {"per_page": 5}
        });
        Ok(
            match self
                .client
                .call(Method::POST, "/contacts/search", Some(&query))
                .await?
            {
                Answer::Ok(list) => Ok(list
                    .get("data")
                    .and_then(Json::as_array)
                    .map(|data| {
                        data.iter()
                            .filter_map(|c| c.get("id").and_then(Json::as_str))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()),
                Answer::NotFound(reason) | Answer::Refused { reason, .. } => Err(reason),
            },
        )
    }
}

/// What became of one record: `None` when it was not attempted because another record of
/// the batch failed the whole call; else rejected with a reason, confirmed, or a failure.
type Attempt = Option<Result<Option<String>, DestinationError>>;

/// `None` when the call succeeded, Intercom's reason when it refused the record. A 404 on a
/// delete means the record is already gone, which is what was asked.
fn refusal(answer: Answer) -> Option<String> {
    match answer {
        Answer::Ok(_) => None,
        Answer::NotFound(reason) | Answer::Refused { reason, .. } => Some(reason),
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Destination for IntercomDestination {
    fn kind(&self) -> &'static str {
        "intercom"
    }

    fn identity(&self) -> String {
        crate::secrets::redact(&self.client.base_url)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_rows: self.batch_size,
        }
    }

    async fn health_check(&self) -> Result<(), DestinationError> {
        match self.client.call(Method::GET, "/me", None).await? {
            Answer::Ok(_) => Ok(()),
            Answer::NotFound(reason) | Answer::Refused { reason, .. } => Err(
                DestinationError::new(format!("{}: GET /me: {reason}", self.client.what)),
            ),
        }
    }

    async fn describe(&self, object: &str) -> Result<Option<ObjectSchema>, DestinationError> {
        if tags::tag_name(object).is_some() {
            return self.describe_tag().await;
        }
        let object = self.object(object)?;
        let path = format!("/data_attributes?model={}", object.model());
        let list = match self.client.call(Method::GET, &path, None).await? {
            Answer::Ok(list) => list,
            Answer::NotFound(reason) | Answer::Refused { reason, .. } => {
                return Err(DestinationError::new(format!(
                    "{}: GET {path}: {reason}",
                    self.client.what
                )));
            }
        };
        let mut fields: Vec<FieldSchema> = Vec::new();
        for attribute in list
            .get("data")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if attribute.get("api_writable").and_then(Json::as_bool) == Some(false) {
                continue;
            }
            let Some(name) = attribute.get("name").and_then(Json::as_str) else {
                continue;
            };
            let native = attribute
                .get("data_type")
                .and_then(Json::as_str)
                .unwrap_or_default();
            let field = |name: String| FieldSchema::new(name, attribute_kind(native), native);
            let custom = attribute.get("custom").and_then(Json::as_bool) == Some(true);
            if custom {
                fields.push(field(format!("{}{name}", body::CUSTOM_PREFIX)));
                // A custom attribute may be mapped by its bare name unless that is standard.
                if object.route(name).0 {
                    fields.push(field(name.to_owned()));
                }
            } else if !object.route(name).0 {
                fields.push(field(name.to_owned()));
            }
        }
        fields.sort_by(|a, b| a.name.cmp(&b.name));
        fields.dedup_by(|a, b| a.name == b.name);
        Ok(Some(ObjectSchema { fields }))
    }

    fn check_sync(&self, sync: &SyncShape<'_>) -> Result<(), String> {
        match tags::tag_name(sync.object) {
            Some(name) => tags::check_tag_sync(name, sync),
            None => Ok(()),
        }
    }

    async fn write(&self, batch: &WriteBatch<'_>) -> Result<BatchOutcome, DestinationError> {
        if let Some(name) = tags::tag_name(batch.object) {
            return self.write_tag(name, batch).await;
        }
        let object = self.object(batch.object)?;
        if batch.key_positions.len() != 1 {
            return Err(DestinationError::new(format!(
                "intercom {}: records are matched on one field; match_on has {}",
                object.path(),
                batch.key_positions.len()
            )));
        }
        let key_field = &batch.fields[batch.key_positions[0]];
        if object == Object::Companies && object.route(key_field) != (false, "company_id") {
            return Err(DestinationError::new(format!(
                "intercom companies are matched on `company_id`, not `{key_field}`\n  hint: set `match_on: company_id` and map the key column to company_id"
            )));
        }
        self.each_record(batch, |record| self.write_one(object, batch, record))
            .await
    }
}

impl IntercomDestination {
    /// Carries out `one` for every record of the batch, up to `concurrency` at a time.
    /// `one` answers `Ok(Some(reason))` for a record Intercom refused. On a failure of the
    /// whole call (auth, retries exhausted) no new record is started and the batch fails:
    /// nothing of it is confirmed (the writes are idempotent by key, so a resend is safe).
    async fn each_record<'b, F, Fut>(
        &self,
        batch: &'b WriteBatch<'_>,
        one: F,
    ) -> Result<BatchOutcome, DestinationError>
    where
        F: Fn(&'b Record) -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, DestinationError>>,
    {
        let failed = AtomicBool::new(false);
        let one = &one;
        let results: Vec<(usize, Attempt)> = futures_util::stream::iter(0..batch.records.len())
            .map(|i| {
                let failed = &failed;
                let record = &batch.records[i];
                async move {
                    if failed.load(Ordering::SeqCst) {
                        return (i, None);
                    }
                    let result = one(record).await;
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    (i, Some(result))
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut outcome = BatchOutcome::default();
        let mut first_error: Option<DestinationError> = None;
        for (i, result) in results {
            match result {
                Some(Ok(Some(reason))) => outcome.rejected.push((i, reason)),
                Some(Err(e)) if first_error.is_none() => first_error = Some(e),
                _ => {}
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        outcome.rejected.sort_by_key(|(i, _)| *i);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests;

/// The kind of value an Intercom data attribute (`data_type`) takes. Intercom's `date`
/// attributes are timestamps; dates and ISO 8601 text are converted for them.
fn attribute_kind(intercom_type: &str) -> Kind {
    match intercom_type {
        "string" | "options" => Kind::Text,
        "integer" => Kind::Integer,
        "float" => Kind::Number,
        "boolean" => Kind::Boolean,
        "date" => Kind::DateTime,
        _ => Kind::Any,
    }
}
