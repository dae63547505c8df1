//! Shared by HTTP destinations: a client with timeouts, and retries with exponential backoff
//! and jitter on 429, 5xx, timeouts and connection errors, honouring `Retry-After`.
//! 4xx validation errors are never retried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use tokio::sync::Mutex;

use crate::error::DestinationError;
use crate::secrets;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter for attempt `n` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let jitter: f64 = rand::random::<f64>() * 0.5 + 0.5;
        capped.mul_f64(jitter)
    }
}

/// What a response means for the batch that caused it.
#[derive(Debug)]
pub enum Verdict {
    Done(Response),
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// The request was refused for its content: the rows are rejected with this reason.
    Refused(String),
}

/// Whether to retry a status, and after how long the server asked.
pub async fn judge(response: Response) -> Verdict {
    let status = response.status();
    if status.is_success() {
        return Verdict::Done(response);
    }
    let after = retry_after(&response);
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Verdict::Retry {
            after,
            why: format!("HTTP {}", status.as_u16()),
        };
    }
    let body = response.text().await.unwrap_or_default();
    Verdict::Refused(format!("HTTP {}: {}", status.as_u16(), excerpt(&body)))
}

/// `Retry-After` as seconds (HTTP dates are treated as "soon").
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    match value.trim().parse::<f64>() {
        Ok(secs) if secs >= 0.0 => Some(Duration::from_secs_f64(secs.min(300.0))),
        _ => Some(Duration::from_secs(1)),
    }
}

/// Sends with retries. `send` builds and sends one attempt. Returns the successful response,
/// or `Ok(Err(reason))` when the server refused the content (per-row rejects), or `Err` when
/// retries ran out (the batch failed; nothing is confirmed).
pub async fn send_with_retries<F, Fut>(
    policy: &RetryPolicy,
    limiter: Option<&RateLimiter>,
    what: &str,
    mut send: F,
) -> Result<Result<Response, String>, DestinationError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Response, reqwest::Error>>,
{
    let mut last = String::new();
    for attempt in 1..=policy.max_attempts {
        if let Some(limiter) = limiter {
            limiter.acquire().await;
        }
        let verdict = match send().await {
            Ok(response) => judge(response).await,
            Err(e) if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() => {
                Verdict::Retry {
                    after: None,
                    why: describe_reqwest_error(&e),
                }
            }
            Err(e) => {
                return Err(DestinationError::new(format!(
                    "{what}: {}",
                    describe_reqwest_error(&e)
                )));
            }
        };
        match verdict {
            Verdict::Done(response) => return Ok(Ok(response)),
            Verdict::Refused(reason) => return Ok(Err(reason)),
            Verdict::Retry { after, why } => {
                last = why;
                if attempt == policy.max_attempts {
                    break;
                }
                let wait = after.unwrap_or_else(|| policy.backoff(attempt));
                if let (Some(limiter), Some(after)) = (limiter, after) {
                    // The server said when: every sync sharing this account waits too.
                    limiter.pause_for(after).await;
                }
                tracing::warn!(target: "dbt_activate::http", "{what}: {last}; retry {attempt} in {:.1}s", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
        }
    }
    Err(DestinationError::new(format!(
        "{what}: gave up after {} attempts, last: {last}",
        policy.max_attempts
    )))
}

fn describe_reqwest_error(e: &reqwest::Error) -> String {
    // The URL may carry a token in its query string: never print it.
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
    secrets::redact(&text)
}

/// The first 300 characters of a response body, on one line, without secrets.
pub fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = one_line.chars().take(300).collect();
    secrets::redact(&cut)
}

/// A pacer shared by every sync writing to one destination in a run: at most `requests` per
/// `per`, evenly spaced, never in bursts.
///
/// Requests are granted on a timeline of slots `interval` apart, with
/// `interval = per * (1 + MARGIN) / requests`. A grant that comes late (a timer waking a
/// little after its slot) does not delay the next slot, so the rate does not drift below the
/// limit; a grant that comes much later (the senders were idle or slow) restarts the timeline
/// from itself less `per * MARGIN / 2`, so idle time never turns into a burst. Together, any
/// `requests + 1` consecutive grants span at least `per * (1 + MARGIN / 2)`, more than
/// `per`: no window of length `per`, rolling or fixed, sees more than `requests`,
/// with room for the requests to arrive a few milliseconds apart from when they were sent.
/// A server's `Retry-After` (or a vendor's "no requests left until ..." header) pauses it for
/// everyone.
#[derive(Clone)]
pub struct RateLimiter {
    pacer: Arc<Mutex<Pacer>>,
}

/// How much slower than the limit the pacer runs: 1% (a window holds 1% of `per` spare).
const MARGIN: f64 = 0.01;

struct Pacer {
    interval: Duration,
    /// How late a grant may be and still keep the timeline (`per * MARGIN / 2`).
    catch_up: Duration,
    /// The next slot: the earliest time the next request may go.
    next: Instant,
}

impl RateLimiter {
    pub fn new(requests: u32, per: Duration) -> Self {
        let interval = per.mul_f64(1.0 + MARGIN) / requests.max(1);
        Self {
            pacer: Arc::new(Mutex::new(Pacer {
                interval,
                catch_up: per.mul_f64(MARGIN / 2.0),
                next: Instant::now(),
            })),
        }
    }

    /// Waits until a request may be sent, and takes its slot.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut p = self.pacer.lock().await;
                let now = Instant::now();
                if now >= p.next {
                    let floor = now - p.catch_up.min(now - p.next);
                    p.next = p.next.max(floor) + p.interval;
                    return;
                }
                p.next - now
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// No request for `d` (from `Retry-After` or a rate-limit reset header).
    pub async fn pause_for(&self, d: Duration) {
        let mut p = self.pacer.lock().await;
        let until = Instant::now() + d;
        if p.next < until {
            p.next = until;
        }
    }
}

pub fn client(timeout: Duration) -> Result<reqwest::Client, DestinationError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .user_agent(concat!("dbt-activate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DestinationError::new(format!("HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limiter_spaces_requests_evenly_without_bursts() {
        let limiter = RateLimiter::new(5, Duration::from_millis(100));
        let mut grants = Vec::new();
        for _ in 0..15 {
            limiter.acquire().await;
            grants.push(Instant::now());
        }
        // One every 20.2 ms, no burst: any 6 consecutive grants span more than 100 ms, so
        // no 100 ms window holds more than 5.
        for pair in grants.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(18), "{grants:?}");
        }
        for six in grants.windows(6) {
            assert!(six[5] - six[0] > Duration::from_millis(100), "{grants:?}");
        }
        let paused = Instant::now();
        limiter.pause_for(Duration::from_millis(50)).await;
        limiter.acquire().await;
        assert!(paused.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn limiter_shared_by_concurrent_senders_keeps_the_spacing() {
        let limiter = RateLimiter::new(10, Duration::from_millis(100));
        let grants = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (limiter, grants) = (limiter.clone(), Arc::clone(&grants));
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    limiter.acquire().await;
                    grants.lock().expect("grants").push(Instant::now());
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let mut grants = grants.lock().expect("grants").clone();
        grants.sort();
        assert_eq!(grants.len(), 20);
        for pair in grants.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(9), "{grants:?}");
        }
        for eleven in grants.windows(11) {
            assert!(
                eleven[10] - eleven[0] > Duration::from_millis(100),
                "{grants:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert!(p.backoff(1) <= Duration::from_millis(100));
        assert!(p.backoff(1) >= Duration::from_millis(50));
        assert!(p.backoff(10) <= Duration::from_secs(1));
    }
}
