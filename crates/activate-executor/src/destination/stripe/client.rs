//! Stripe's HTTP conventions: form-encoded bodies, `Authorization: Bearer`, `Idempotency-Key`,
//! errors as `{"error": {type, code, message, param}}`, and `Stripe-Should-Retry`.
//!
//! The retry loop is local (not `http::send_with_retries`) because Stripe's
//! `Stripe-Should-Retry` header overrides the status: `true` retries even a 409 lock timeout,
//! `false` stops even a 5xx. It reuses the shared `RetryPolicy` backoff, `RateLimiter`,
//! `retry_after` and `excerpt`.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::destination::http::{self, RateLimiter, RetryPolicy};
use crate::error::DestinationError;
use crate::value::Value;

/// `application/x-www-form-urlencoded` of `(name, value)` pairs, in order.
pub(super) fn form_encode(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode(&mut out, k);
        out.push('=');
        percent_encode(&mut out, v);
    }
    out
}

/// One URL path segment, percent-encoded (a customer id from the model).
pub(super) fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    percent_encode(&mut out, text);
    out.replace('+', "%20")
}

fn percent_encode(out: &mut String, text: &str) {
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// A value as Stripe's form parameters take it; null is the empty string, which Stripe reads
/// as "unset" (for `metadata[key]`, removes the key).
pub(super) fn form_value(value: &Value) -> String {
    match value {
        Value::Json(json) => match json.as_str() {
            Some(text) => text.to_owned(),
            None => json.to_string(),
        },
        other => other.to_text().unwrap_or_default(),
    }
}

/// What Stripe answered a request, once retries are done.
#[derive(Debug)]
pub(super) enum Answer {
    Ok(serde_json::Value),
    /// Refused for this record (the reason is Stripe's error, without secrets).
    Rejected(String),
}

/// One request to Stripe: what to send, which limiter it counts against.
pub(super) struct Call<'a> {
    pub method: Method,
    /// Path and query, e.g. `/v1/customers/search?query=...`.
    pub path: String,
    pub form: Option<String>,
    pub idempotency_key: Option<String>,
    pub limiter: &'a RateLimiter,
}

pub(super) struct StripeClient {
    pub http: reqwest::Client,
    pub base_url: String,
    pub api_key: String,
    pub stripe_version: Option<String>,
    pub retry: RetryPolicy,
}

impl StripeClient {
    pub async fn call(&self, call: Call<'_>) -> Result<Answer, DestinationError> {
        let url = format!("{}{}", self.base_url, call.path);
        let what = format!("stripe {} {}", call.method, path_only(&call.path));
        let mut last = String::new();
        for attempt in 1..=self.retry.max_attempts {
            call.limiter.acquire().await;
            let mut request = self
                .http
                .request(call.method.clone(), &url)
                .bearer_auth(&self.api_key);
            if let Some(version) = &self.stripe_version {
                request = request.header("Stripe-Version", version);
            }
            if let Some(key) = &call.idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if let Some(form) = &call.form {
                request = request
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.clone());
            }
            let (retry, after) = match request.send().await {
                Err(e) if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() => {
                    last = crate::secrets::redact(&error_chain(&e));
                    (true, None)
                }
                Err(e) => {
                    return Err(DestinationError::new(format!(
                        "{what}: {}",
                        crate::secrets::redact(&error_chain(&e))
                    )));
                }
                Ok(response) => {
                    let status = response.status();
                    let should_retry = response
                        .headers()
                        .get("Stripe-Should-Retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim().eq_ignore_ascii_case("true"));
                    let after = http::retry_after(&response);
                    let body = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        let json = serde_json::from_str(&body).map_err(|e| {
                            DestinationError::new(format!(
                                "{what}: the answer is not JSON ({e}): {}",
                                http::excerpt(&body)
                            ))
                        })?;
                        return Ok(Answer::Ok(json));
                    }
                    let reason = error_reason(status, &body);
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        // Every record would fail the same way: the sync fails, nothing is
                        // reported delivered.
                        return Err(DestinationError::new(format!(
                            "{what}: the API key was refused ({reason})"
                        )));
                    }
                    let retry = should_retry.unwrap_or(
                        status == StatusCode::TOO_MANY_REQUESTS
                            || status == StatusCode::REQUEST_TIMEOUT
                            || status.is_server_error(),
                    );
                    if !retry {
                        return Ok(Answer::Rejected(reason));
                    }
                    last = reason;
                    (true, after)
                }
            };
            debug_assert!(retry);
            if attempt == self.retry.max_attempts {
                break;
            }
            let wait = after.unwrap_or_else(|| self.retry.backoff(attempt));
            if let Some(after) = after {
                // Stripe said when: every sync writing to this account waits too.
                call.limiter.pause_for(after).await;
            }
            tracing::warn!(target: "dbt_activate::http", "{what}: {last}; retry {attempt} in {:.1}s", wait.as_secs_f64());
            tokio::time::sleep(wait.min(Duration::from_secs(300))).await;
        }
        Err(DestinationError::new(format!(
            "{what}: gave up after {} attempts, last: {last}",
            self.retry.max_attempts
        )))
    }
}

/// The path without its query string (which may carry customer data).
fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut text = match e.url() {
        Some(url) => e.to_string().replace(url.as_str(), "<url>"),
        None => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `HTTP 400 invalid_request_error/email_invalid (param email): Invalid email address: x`,
/// from Stripe's error object, or a body excerpt when the body is not one.
pub(super) fn error_reason(status: StatusCode, body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let Some(error) = error else {
        return format!("HTTP {}: {}", status.as_u16(), http::excerpt(body));
    };
    let text = |k: &str| error.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let mut reason = format!("HTTP {}", status.as_u16());
    let (kind, code) = (text("type"), text("code"));
    if !kind.is_empty() || !code.is_empty() {
        reason.push(' ');
        reason.push_str(kind);
        if !code.is_empty() {
            if !kind.is_empty() {
                reason.push('/');
            }
            reason.push_str(code);
        }
    }
    if !text("param").is_empty() {
        reason.push_str(&format!(" (param {})", text("param")));
    }
    reason.push_str(": ");
    reason.push_str(text("message"));
    http::excerpt(&reason)
}
