//! OAuth 2.0 sessions and API requests: every request goes through the shared retry policy and
//! this destination's rate limiter, carries the bearer token (renewed once on a 401), and
//! reports `Sforce-Limit-Info: api-usage=N/M`.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, Response};
use tokio::sync::Mutex;

use super::config::{Auth, Settings};
use crate::destination::http::{self, RateLimiter, RetryPolicy};
use crate::error::DestinationError;

#[derive(Debug, Clone)]
struct Session {
    access_token: String,
    instance_url: String,
}

pub struct Client {
    pub settings: Settings,
    /// `salesforce destination `crm``, for messages.
    pub site: String,
    http: reqwest::Client,
    retry: RetryPolicy,
    limiter: RateLimiter,
    session: Mutex<Option<Session>>,
    /// The last `Sforce-Limit-Info` api-usage seen: (used, allowed).
    usage: StdMutex<Option<(u64, u64)>>,
}

/// A request body with its content type.
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Bytes,
}

impl Body {
    pub fn json(text: String) -> Option<Self> {
        Some(Self {
            content_type: "application/json",
            bytes: Bytes::from(text),
        })
    }
}

/// `application/x-www-form-urlencoded` text of pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://form.invalid/").expect("a constant URL parses");
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    url.query().unwrap_or_default().to_owned()
}

/// `errorCode: message` of Salesforce's error array (`[{"message", "errorCode", "fields"}]`) or
/// OAuth error object (`{"error", "error_description"}`), else the text as it is.
pub fn error_text(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    match parsed {
        Some(serde_json::Value::Array(errors)) if !errors.is_empty() => errors
            .iter()
            .map(|e| {
                let code = e["errorCode"].as_str().unwrap_or("ERROR");
                let message = e["message"].as_str().unwrap_or_default();
                format!("{code}: {message}")
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(serde_json::Value::Object(o)) if o.contains_key("error") => format!(
            "{}: {}",
            o["error"].as_str().unwrap_or_default(),
            o.get("error_description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
        ),
        _ => body.to_owned(),
    }
}

/// Rewrites the shared layer's `HTTP 400: <body excerpt>` with Salesforce's error code.
pub fn refusal(reason: &str) -> String {
    match reason.split_once(": ") {
        Some((status, body)) if status.starts_with("HTTP ") => {
            format!("{status} {}", crate::secrets::redact(&error_text(body)))
        }
        _ => reason.to_owned(),
    }
}

/// `api-usage=N/M` of a `Sforce-Limit-Info` header.
pub fn parse_limit_info(value: &str) -> Option<(u64, u64)> {
    value.split(',').find_map(|part| {
        let (_, usage) = part.trim().split_once("api-usage=")?;
        let (used, allowed) = usage.split_once('/')?;
        Some((used.trim().parse().ok()?, allowed.trim().parse().ok()?))
    })
}

impl Client {
    pub fn new(settings: Settings, site: String) -> Result<Self, DestinationError> {
        let http = http::client(settings.timeout)?;
        let mut retry = RetryPolicy::default();
        if let Some(n) = settings.max_retries {
            retry.max_attempts = n + 1;
        }
        let limiter = RateLimiter::new(settings.requests_per_second, Duration::from_secs(1));
        Ok(Self {
            settings,
            site,
            http,
            retry,
            limiter,
            session: Mutex::new(None),
            usage: StdMutex::new(None),
        })
    }

    async fn session(&self) -> Result<Session, DestinationError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let session = self.login().await?;
        *guard = Some(session.clone());
        Ok(session)
    }

    async fn forget(&self, stale: &Session) {
        let mut guard = self.session.lock().await;
        if guard
            .as_ref()
            .is_some_and(|s| s.access_token == stale.access_token)
        {
            *guard = None;
        }
    }

    async fn login(&self) -> Result<Session, DestinationError> {
        let body = match &self.settings.auth {
            Auth::ClientCredentials {
                client_id,
                client_secret,
            } => form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret),
            ]),
            Auth::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => {
                let mut pairs = vec![
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id.as_str()),
                    ("refresh_token", refresh_token.as_str()),
                ];
                if let Some(secret) = client_secret {
                    pairs.push(("client_secret", secret));
                }
                form(&pairs)
            }
            Auth::JwtBearer {
                client_id,
                username,
                audience,
                key,
            } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let assertion = key
                    .assertion(client_id, username, audience, now)
                    .map_err(|why| DestinationError::new(format!("{}: {why}", self.site)))?;
                crate::secrets::register(&assertion);
                form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ])
            }
        };
        let url = format!("{}/services/oauth2/token", self.settings.login_url);
        let what = format!("{}: OAuth token request", self.site);
        let body = Bytes::from(body);
        let outcome = http::send_with_retries(&self.retry, Some(&self.limiter), &what, || {
            self.http
                .post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body.clone())
                .send()
        })
        .await?;
        let response = outcome.map_err(|reason| {
            let hint = match &self.settings.auth {
                Auth::JwtBearer { username, audience, .. } => format!(
                    "; check that the connected app holds the certificate of this private key, that `username` ({username}) is pre-authorized for it, and that `audience` ({audience}) is https://login.salesforce.com, https://test.salesforce.com or your Experience Cloud site URL"
                ),
                _ => String::new(),
            };
            DestinationError::new(format!(
                "{}: Salesforce refused the credentials at {}: {}{hint}",
                self.site,
                self.settings.login_url,
                refusal(&reason)
            ))
        })?;
        let text = response.text().await.map_err(|e| {
            DestinationError::new(format!(
                "{what}: {}",
                crate::secrets::redact(&e.to_string())
            ))
        })?;
        let token: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
            DestinationError::new(format!(
                "{what}: the answer is not JSON: {}",
                http::excerpt(&text)
            ))
        })?;
        let Some(access_token) = token["access_token"].as_str().filter(|t| !t.is_empty()) else {
            return Err(DestinationError::new(format!(
                "{what}: no access_token in the answer"
            )));
        };
        crate::secrets::register(access_token);
        let instance_url = match (&self.settings.instance_url, token["instance_url"].as_str()) {
            (Some(configured), _) => configured.clone(),
            (None, Some(from_token)) => from_token.trim_end_matches('/').to_owned(),
            (None, None) => {
                return Err(DestinationError::new(format!(
                    "{what}: no instance_url in the answer; set `instance_url`"
                )));
            }
        };
        tracing::debug!(target: "dbt_activate::salesforce", "{}: logged in, instance {instance_url}", self.site);
        Ok(Session {
            access_token: access_token.to_owned(),
            instance_url,
        })
    }

    /// Sends one API request. `path` is absolute on the instance (`/services/data/...`).
    /// `Ok(Err(reason))` when Salesforce refused it for its content (a 4xx other than 401 and
    /// the daily limit); a 401 renews the token once; the daily limit fails the whole write.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Result<Response, String>, DestinationError> {
        if let Some((used, allowed)) = *self.usage.lock().unwrap_or_else(|e| e.into_inner())
            && allowed > 0
            && used >= allowed
        {
            return Err(DestinationError::new(format!(
                "{}: the daily API request limit is reached ({used}/{allowed} per Sforce-Limit-Info); stopping before sending more",
                self.site
            )));
        }
        let what = format!(
            "{}: {method} {}",
            self.site,
            path.split('?').next().unwrap_or(path)
        );
        for attempt in 0..2 {
            let session = self.session().await?;
            let url = format!("{}{path}", session.instance_url);
            let outcome = http::send_with_retries(&self.retry, Some(&self.limiter), &what, || {
                let mut request = self
                    .http
                    .request(method.clone(), &url)
                    .bearer_auth(&session.access_token)
                    .header(reqwest::header::ACCEPT, "application/json");
                if let Some(body) = &body {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, body.content_type)
                        .body(body.bytes.clone());
                }
                request.send()
            })
            .await?;
            match outcome {
                Ok(response) => {
                    self.track_usage(&response);
                    return Ok(Ok(response));
                }
                Err(reason) if reason.starts_with("HTTP 401") && attempt == 0 => {
                    tracing::info!(target: "dbt_activate::salesforce", "{}: session expired, logging in again", self.site);
                    self.forget(&session).await;
                }
                Err(reason) if reason.contains("REQUEST_LIMIT_EXCEEDED") => {
                    return Err(DestinationError::new(format!(
                        "{}: Salesforce refused the request: {}",
                        self.site,
                        refusal(&reason)
                    )));
                }
                Err(reason) => return Ok(Err(refusal(&reason))),
            }
        }
        Err(DestinationError::new(format!(
            "{what}: refused with 401 after logging in again"
        )))
    }

    /// A request whose refusal fails the whole write; returns the body text.
    pub async fn request_text(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<String, DestinationError> {
        let what = format!(
            "{}: {method} {}",
            self.site,
            path.split('?').next().unwrap_or(path)
        );
        match self.request(method, path, body).await? {
            Ok(response) => response.text().await.map_err(|e| {
                DestinationError::new(format!(
                    "{what}: {}",
                    crate::secrets::redact(&e.to_string())
                ))
            }),
            Err(reason) => Err(DestinationError::new(format!("{what}: {reason}"))),
        }
    }

    /// Like [`Client::request_text`], parsed as JSON.
    pub async fn request_json(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<serde_json::Value, DestinationError> {
        let text = self.request_text(method.clone(), path, body).await?;
        serde_json::from_str(&text).map_err(|_| {
            DestinationError::new(format!(
                "{}: {method} {}: the answer is not JSON: {}",
                self.site,
                path.split('?').next().unwrap_or(path),
                http::excerpt(&text)
            ))
        })
    }

    fn track_usage(&self, response: &Response) {
        let Some(usage) = response
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_limit_info)
        else {
            return;
        };
        let (used, allowed) = usage;
        if allowed > 0 && used * 10 >= allowed * 9 {
            tracing::warn!(target: "dbt_activate::salesforce", "{}: API usage {used}/{allowed} of the daily limit", self.site);
        } else {
            tracing::debug!(target: "dbt_activate::salesforce", "{}: API usage {used}/{allowed}", self.site);
        }
        *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage);
    }
}
