//! The Intercom REST client: bearer token, `Intercom-Version`, retries through the shared HTTP
//! layer, and pacing by Intercom's `X-RateLimit-*` headers on top of the shared rate limiter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value as Json;

use super::body::error_reason;
use crate::destination::http::{self, RateLimiter, RetryPolicy};
use crate::error::DestinationError;

/// What one call came back with.
#[derive(Debug)]
pub enum Answer {
    /// 2xx, with the body as JSON (`Null` when empty).
    Ok(Json),
    /// 404: the record (or company) does not exist.
    NotFound(String),
    /// Any other 4xx: the record was refused, with Intercom's reason.
    Refused { status: u16, reason: String },
}

pub struct Client {
    pub http: reqwest::Client,
    pub base_url: String,
    pub token: String,
    pub version: String,
    pub retry: RetryPolicy,
    pub limiter: RateLimiter,
    /// Requests that may be in flight at once: when fewer remain in the window, wait for reset.
    pub concurrency: u64,
    /// For messages: `intercom <base_url>`.
    pub what: String,
}

impl Client {
    /// One call, retried on 429/5xx/timeouts. 401/403 fail the call as a whole.
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Json>,
    ) -> Result<Answer, DestinationError> {
        let url = format!("{}{path_and_query}", self.base_url);
        let body = body.map(|b| bytes::Bytes::from(b.to_string()));
        let what = format!(
            "{} {method} /{}",
            self.what,
            path_without_query(path_and_query)
        );
        let outcome = http::send_with_retries(&self.retry, Some(&self.limiter), &what, || {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                .header("Intercom-Version", &self.version)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let limiter = self.limiter.clone();
            let concurrency = self.concurrency;
            async move {
                let response = request.send().await?;
                pace(&limiter, response.headers(), concurrency).await;
                Ok::<_, reqwest::Error>(response)
            }
        })
        .await?;
        match outcome {
            Ok(response) => {
                let text = response.text().await.map_err(|e| {
                    DestinationError::new(format!("{what}: reading the answer: {e}"))
                })?;
                if text.trim().is_empty() {
                    return Ok(Answer::Ok(Json::Null));
                }
                serde_json::from_str(&text).map(Answer::Ok).map_err(|e| {
                    DestinationError::new(format!(
                        "{what}: the answer is not JSON ({e}): {}",
                        http::excerpt(&text)
                    ))
                })
            }
            Err(refused) => {
                // `send_with_retries` words a refusal "HTTP <status>: <body excerpt>".
                let (status, body) = split_refusal(&refused);
                let reason = error_reason(status, body);
                match status {
                    401 | 403 => Err(DestinationError::new(format!(
                        "{what}: not authorised ({reason})\n  hint: check the access token (an Intercom app's access token, with read and write scopes for {})",
                        path_without_query(path_and_query)
                            .split('/')
                            .next()
                            .unwrap_or_default()
                    ))),
                    404 => Ok(Answer::NotFound(reason)),
                    _ => Ok(Answer::Refused { status, reason }),
                }
            }
        }
    }
}

fn path_without_query(path: &str) -> &str {
    path.split('?')
        .next()
        .unwrap_or(path)
        .trim_start_matches('/')
}

fn split_refusal(text: &str) -> (u16, &str) {
    let rest = text.strip_prefix("HTTP ").unwrap_or(text);
    let (code, body) = rest.split_once(':').unwrap_or((rest, ""));
    (code.trim().parse().unwrap_or(400), body.trim())
}

/// Intercom counts requests in 10-second windows and says how many remain and when the window
/// resets (`X-RateLimit-Remaining`, `X-RateLimit-Reset` in Unix seconds). When no more than the
/// requests that may be in flight remain, every sync sharing the account waits for the reset.
pub async fn pace(limiter: &RateLimiter, headers: &HeaderMap, concurrency: u64) {
    let number = |name: &str| -> Option<f64> {
        headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok()
    };
    let (Some(remaining), Some(reset)) =
        (number("x-ratelimit-remaining"), number("x-ratelimit-reset"))
    else {
        return;
    };
    if remaining > concurrency as f64 {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let wait = (reset - now).clamp(0.0, 60.0);
    if wait > 0.0 {
        limiter.pause_for(Duration::from_secs_f64(wait)).await;
    }
}
