//! Posting one message: an incoming webhook or `chat.postMessage`, and what Slack's answer
//! means for the rows it carries.

use serde_json::json;

use super::config::Transport;
use crate::destination::http::{self, RateLimiter, RetryPolicy};
use crate::error::DestinationError;

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Posted {
    /// Slack posted it.
    Ok,
    /// Slack refused this message: its rows are rejected with Slack's reason.
    Refused(String),
}

/// Errors that no other message would escape: the token or the webhook itself is bad.
const FATAL_API_ERRORS: &[&str] = &[
    "not_authed",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "missing_scope",
    "not_allowed_token_type",
    "ekm_access_denied",
    "org_login_required",
    "team_added_to_org",
    "invalid_arg_name",
    "invalid_post_type",
    "missing_post_type",
    "method_deprecated",
    "deprecated_endpoint",
];

/// Incoming webhook answers that mean the webhook itself is gone or revoked.
const FATAL_WEBHOOK_ERRORS: &[&str] = &[
    "invalid_token",
    "no_service",
    "no_service_id",
    "no_team",
    "team_disabled",
    "no_active_hooks",
];

pub(super) struct Client {
    pub transport: Transport,
    pub http: reqwest::Client,
    pub retry: RetryPolicy,
}

impl Client {
    /// Where messages go, without secrets.
    pub fn identity(&self) -> String {
        match &self.transport {
            Transport::Bot { base_url, .. } => format!("slack {base_url}"),
            Transport::Webhook { url } => {
                use sha2::Digest as _;
                let host = url
                    .split_once("://")
                    .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
                    .unwrap_or("webhook");
                let digest = sha2::Sha256::digest(url.as_bytes());
                format!("slack webhook {host} #{}", hex::encode(&digest[..4]))
            }
        }
    }

    /// Posts one message to `channel`, paced by `limiter`, retrying 429/5xx/timeouts.
    pub async fn post(
        &self,
        limiter: &RateLimiter,
        channel: &str,
        text: &str,
        blocks: Option<&serde_json::Value>,
    ) -> Result<Posted, DestinationError> {
        match &self.transport {
            Transport::Webhook { url } => {
                let mut body = json!({ "text": text });
                if let Some(b) = blocks {
                    body["blocks"] = b.clone();
                }
                let body = bytes::Bytes::from(body.to_string());
                let what = format!("{} ({channel})", self.identity());
                let answer = http::send_with_retries(&self.retry, Some(limiter), &what, || {
                    self.http
                        .post(url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                })
                .await?;
                match answer {
                    Ok(_) => Ok(Posted::Ok),
                    Err(reason) => {
                        let code = reason.split_once(": ").map(|(_, c)| c.trim()).unwrap_or("");
                        if FATAL_WEBHOOK_ERRORS.contains(&code) {
                            Err(DestinationError::new(format!(
                                "{what}: the incoming webhook was refused ({reason})\n  hint: the webhook was revoked or its app removed: create a new one and update `webhook_url`"
                            )))
                        } else {
                            Ok(Posted::Refused(reason))
                        }
                    }
                }
            }
            Transport::Bot { .. } => {
                let mut body = json!({ "channel": channel, "text": text });
                if let Some(b) = blocks {
                    body["blocks"] = b.clone();
                }
                self.call("chat.postMessage", Some(limiter), &body, channel)
                    .await
            }
        }
    }

    /// `auth.test`: is the bot token valid?
    pub async fn auth_test(&self) -> Result<(), DestinationError> {
        match &self.transport {
            Transport::Bot { .. } => match self.call("auth.test", None, &json!({}), "").await? {
                Posted::Ok => Ok(()),
                Posted::Refused(reason) => Err(DestinationError::new(format!(
                    "{}: auth.test: {reason}",
                    self.identity()
                ))),
            },
            // An incoming webhook cannot be checked without posting to its channel.
            Transport::Webhook { .. } => Ok(()),
        }
    }

    /// One Web API method call with the bearer token; `{"ok": false, "error": ...}` becomes
    /// `Refused`, or an error when the token itself is refused.
    async fn call(
        &self,
        method: &str,
        limiter: Option<&RateLimiter>,
        body: &serde_json::Value,
        channel: &str,
    ) -> Result<Posted, DestinationError> {
        let Transport::Bot { token, base_url } = &self.transport else {
            return Err(DestinationError::new("slack: Web API call without a token"));
        };
        let url = format!("{base_url}/{method}");
        let what = if channel.is_empty() {
            format!("slack {method}")
        } else {
            format!("slack {method} to {channel}")
        };
        let body = bytes::Bytes::from(body.to_string());
        let answer = http::send_with_retries(&self.retry, limiter, &what, || {
            self.http
                .post(&url)
                .bearer_auth(token)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .body(body.clone())
                .send()
        })
        .await?;
        let response = match answer {
            Ok(response) => response,
            Err(reason) => return Ok(Posted::Refused(reason)),
        };
        let text = response.text().await.map_err(|e| {
            DestinationError::new(format!(
                "{what}: reading the answer: {}",
                crate::secrets::redact(&e.to_string())
            ))
        })?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
            DestinationError::new(format!(
                "{what}: the answer is not Slack's JSON: {}",
                http::excerpt(&text)
            ))
        })?;
        if json["ok"].as_bool() == Some(true) {
            return Ok(Posted::Ok);
        }
        let error = json["error"].as_str().unwrap_or("unknown_error");
        if FATAL_API_ERRORS.contains(&error) {
            return Err(
                DestinationError::new(format!("{what}: Slack refused the token: {error}"))
                    .with_hint_text(error),
            );
        }
        let mut reason = error.to_owned();
        if let Some(details) = json["errors"].as_array() {
            let details: Vec<&str> = details.iter().filter_map(|d| d.as_str()).collect();
            if !details.is_empty() {
                reason.push_str(": ");
                reason.push_str(&details.join("; "));
            }
        }
        Ok(Posted::Refused(http::excerpt(&reason)))
    }
}

trait WithHint {
    fn with_hint_text(self, error: &str) -> Self;
}

impl WithHint for DestinationError {
    /// Adds how to fix a refused token to the message.
    fn with_hint_text(mut self, error: &str) -> Self {
        let hint = match error {
            "missing_scope" => "the bot token needs the chat:write scope",
            "not_authed" | "invalid_auth" | "token_revoked" | "token_expired" => {
                "check `token` in activate.yml: a bot token (xoxb-...) of an app installed in the workspace"
            }
            _ => "check the app's installation and the token in activate.yml",
        };
        self.message.push_str("\n  hint: ");
        self.message.push_str(hint);
        self
    }
}
