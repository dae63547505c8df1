//! `webhook`: JSON batches POSTed to a URL.
//!
//! Each request: `{"sync", "object", "operation": "upsert"|"update"|"insert"|"delete",
//! "records": [{...}]}`; a `clear` is an `update` whose non-key fields are null. A 2xx accepts
//! the whole batch. With `secret`, `X-Activate-Signature: sha256=<hex HMAC-SHA256 of the body>`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::connections::DestinationConfig;
use crate::destination::http::{self, RetryPolicy};
use crate::destination::{
    AlertMessage, BatchOutcome, Capabilities, Destination, JsonKeys, ObjectSchema, WriteBatch,
    WriteOp, check_keys, setting_str, setting_u64, write_record_json,
};
use crate::error::{ConfigError, DestinationError};
use crate::value::write_json_string;

const KEYS: &[&str] = &[
    "url",
    "batch_size",
    "headers",
    "secret",
    "timeout_seconds",
    "max_retries",
];

pub struct WebhookDestination {
    url: String,
    batch_size: usize,
    headers: BTreeMap<String, String>,
    secret: Option<String>,
    client: reqwest::Client,
    retry: RetryPolicy,
}

impl WebhookDestination {
    pub fn from_config(config: &DestinationConfig) -> Result<Self, ConfigError> {
        check_keys(config, KEYS)?;
        let url = setting_str(config, "url")?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ConfigError::new(format!("{}: `url` is required", config.site())))?
            .to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::new(format!(
                "{}: `url` must start with http:// or https://",
                config.site()
            )));
        }
        let batch_size = setting_u64(config, "batch_size")?.unwrap_or(500).max(1) as usize;
        let timeout = setting_u64(config, "timeout_seconds")?.unwrap_or(30).max(1);
        let mut headers = BTreeMap::new();
        match config.settings.get("headers") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(map)) => {
                for (k, v) in map {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    headers.insert(k.clone(), v);
                }
            }
            Some(_) => {
                return Err(ConfigError::new(format!(
                    "{}: `headers` must be a mapping",
                    config.site()
                )));
            }
        }
        // Header values and query parameters carry credentials more often than not.
        for v in headers.values() {
            crate::secrets::register(v);
        }
        if let Some((_, query)) = url.split_once('?') {
            for pair in query.split('&') {
                if let Some((_, value)) = pair.split_once('=') {
                    crate::secrets::register(value);
                }
            }
        }
        let secret = setting_str(config, "secret")?
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let mut retry = RetryPolicy::default();
        if let Some(n) = setting_u64(config, "max_retries")? {
            retry.max_attempts = n as u32 + 1;
        }
        let client =
            http::client(Duration::from_secs(timeout)).map_err(|e| ConfigError::new(e.message))?;
        Ok(Self {
            url,
            batch_size,
            headers,
            secret,
            client,
            retry,
        })
    }

    fn body(&self, batch: &WriteBatch<'_>) -> String {
        let (operation, fields): (&str, &[String]) = match batch.op {
            WriteOp::Clear => ("update", batch.fields),
            op => (op.as_str(), batch.fields),
        };
        let mut body = String::with_capacity(128 + batch.records.len() * 96);
        body.push_str("{\"sync\":");
        write_json_string(&mut body, batch.sync);
        body.push_str(",\"object\":");
        write_json_string(&mut body, batch.object);
        body.push_str(",\"operation\":");
        write_json_string(&mut body, operation);
        body.push_str(",\"records\":[");
        let keys = JsonKeys::new(fields);
        let mut records = batch.records.iter();
        if let Some(first) = records.next() {
            let before = body.len();
            write_record_json(&mut body, &keys, first);
            let first_len = body.len() - before + 1;
            // Room for the rest at about the first record's size (one allocation, no copies
            // of a growing body), at most 64 MiB: a first record much larger than the others
            // must not ask for gigabytes.
            let rest = records.len();
            let estimate = first_len.saturating_mul(rest + rest / 8);
            body.reserve(estimate.min(64 << 20));
        }
        for record in records {
            body.push(',');
            write_record_json(&mut body, &keys, record);
        }
        body.push_str("]}");
        body
    }

    fn signature(&self, body: &[u8]) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(body);
        Some(format!(
            "sha256={}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }
}

#[async_trait]
impl Destination for WebhookDestination {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn identity(&self) -> String {
        // The URL without its query string, which may carry a token.
        let base = self.url.split('?').next().unwrap_or(&self.url);
        crate::secrets::redact(base)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_rows: self.batch_size,
        }
    }

    async fn health_check(&self) -> Result<(), DestinationError> {
        // Reachability only: any HTTP answer means the endpoint is there.
        let target = self.identity();
        self.client
            .head(&self.url)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                DestinationError::new(format!(
                    "webhook {target} is not reachable: {}",
                    crate::secrets::redact(&e.to_string())
                ))
            })
    }

    async fn describe(&self, _object: &str) -> Result<Option<ObjectSchema>, DestinationError> {
        Ok(None)
    }

    /// POSTs `{"event": "dbt_activate.alerts", "target", "invocation_id", "alerts": [...]}`,
    /// signed like batches, with `X-Activate-Event: alerts`.
    async fn send_alert(&self, alert: &AlertMessage<'_>) -> Result<(), DestinationError> {
        let body = alert.payload.to_string();
        self.post(body, Some("alerts")).await?.map_err(|reason| {
            DestinationError::new(format!("webhook {}: {reason}", self.identity()))
        })
    }

    async fn write(&self, batch: &WriteBatch<'_>) -> Result<BatchOutcome, DestinationError> {
        Ok(match self.post(self.body(batch), None).await? {
            Ok(()) => BatchOutcome::default(),
            Err(reason) => BatchOutcome::all_rejected(batch.records.len(), &reason),
        })
    }
}

impl WebhookDestination {
    /// POSTs a JSON body, signed when a `secret` is set, with retries; `event` becomes the
    /// `X-Activate-Event` header. `Ok(Err(reason))` is an answer that refused the body.
    async fn post(
        &self,
        body: String,
        event: Option<&str>,
    ) -> Result<Result<(), String>, DestinationError> {
        let body = bytes::Bytes::from(body);
        let signature = self.signature(&body);
        let what = format!("webhook {}", self.identity());
        let outcome = http::send_with_retries(&self.retry, None, &what, || {
            let mut request = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(event) = event {
                request = request.header("X-Activate-Event", event);
            }
            for (k, v) in &self.headers {
                request = request.header(k, v);
            }
            if let Some(sig) = &signature {
                request = request.header("X-Activate-Signature", sig);
            }
            request.send()
        })
        .await?;
        Ok(outcome.map(|_| ()))
    }
}

#[cfg(test)]
mod tests;
