//! The `activate.yml` keys of a `slack` destination.

use std::time::Duration;

use crate::connections::DestinationConfig;
use crate::destination::http::RetryPolicy;
use crate::destination::{check_keys, setting_str, setting_u64};
use crate::error::ConfigError;

pub(super) const KEYS: &[&str] = &[
    "webhook_url",
    "token",
    "base_url",
    "message_mode",
    "text_template",
    "blocks_template",
    "digest_title",
    "batch_size",
    "messages_per_second",
    "timeout_seconds",
    "max_retries",
];

/// Slack's Web API.
pub(super) const DEFAULT_BASE_URL: &str = "https://slack.com/api";

/// Rows per digest message: a header, one section per row and a context line stay within
/// Slack's 50 blocks per message.
pub(super) const MAX_DIGEST_ROWS: usize = 47;

/// How messages reach Slack.
#[derive(Debug, Clone)]
pub(super) enum Transport {
    /// An incoming webhook: the URL is the credential, the channel is fixed by the webhook.
    Webhook { url: String },
    /// `chat.postMessage` with a bot token, to the sync's `object` channel.
    Bot { token: String, base_url: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MessageMode {
    /// One message per row.
    PerRow,
    /// One message per batch, listing its rows.
    Digest,
}

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub transport: Transport,
    pub message_mode: MessageMode,
    pub text_template: Option<String>,
    pub blocks_template: Option<serde_json::Value>,
    pub digest_title: Option<String>,
    pub batch_size: usize,
    pub messages_per_second: u32,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl Settings {
    pub fn parse(config: &DestinationConfig) -> Result<Self, ConfigError> {
        check_keys(config, KEYS)?;
        let site = config.site();
        let webhook_url = setting_str(config, "webhook_url")?.filter(|s| !s.is_empty());
        let token = setting_str(config, "token")?.filter(|s| !s.is_empty());
        let base_url = setting_str(config, "base_url")?.filter(|s| !s.is_empty());
        let transport = match (webhook_url, token) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(format!(
                    "{site}: set either `webhook_url` or `token`, not both"
                ))
                .with_hint("`webhook_url` posts to the webhook's own channel; `token` (a bot token, xoxb-...) posts to each sync's `object` channel with chat.postMessage"));
            }
            (None, None) => {
                return Err(ConfigError::new(format!(
                    "{site}: `webhook_url` or `token` is required"
                ))
                .with_hint("token: \"{{ env_var('SLACK_BOT_TOKEN') }}\" (a bot token with chat:write), or webhook_url: \"{{ env_var('SLACK_WEBHOOK_URL') }}\""));
            }
            (Some(url), None) => {
                check_http(&site, "webhook_url", url)?;
                if base_url.is_some() {
                    return Err(ConfigError::new(format!(
                        "{site}: `base_url` applies to `token` (chat.postMessage) only"
                    ))
                    .with_hint("an incoming webhook posts to `webhook_url` as it is"));
                }
                // The whole URL is the credential of an incoming webhook.
                crate::secrets::register(url);
                if let Some((_, path)) = url.split_once("://").and_then(|(_, r)| r.split_once('/'))
                {
                    crate::secrets::register(path);
                }
                Transport::Webhook {
                    url: url.to_owned(),
                }
            }
            (None, Some(token)) => {
                crate::secrets::register(token);
                let base_url = base_url.unwrap_or(DEFAULT_BASE_URL);
                check_http(&site, "base_url", base_url)?;
                Transport::Bot {
                    token: token.to_owned(),
                    base_url: base_url.trim_end_matches('/').to_owned(),
                }
            }
        };
        let message_mode = match setting_str(config, "message_mode")? {
            None | Some("per_row") => MessageMode::PerRow,
            Some("digest") => MessageMode::Digest,
            Some(other) => {
                return Err(ConfigError::new(format!(
                    "{site}: `message_mode` must be `per_row` or `digest`, found `{other}`"
                )));
            }
        };
        let text_template = setting_str(config, "text_template")?.map(str::to_owned);
        let digest_title = setting_str(config, "digest_title")?.map(str::to_owned);
        let blocks_template = match config.settings.get("blocks_template") {
            None | Some(serde_json::Value::Null) => None,
            Some(v @ (serde_json::Value::Array(_) | serde_json::Value::String(_))) => {
                Some(v.clone())
            }
            Some(_) => {
                return Err(ConfigError::new(format!(
                    "{site}: `blocks_template` must be a list of Block Kit blocks (or a template producing their JSON)"
                )));
            }
        };
        if message_mode == MessageMode::Digest && blocks_template.is_some() {
            return Err(ConfigError::new(format!(
                "{site}: `blocks_template` applies to `message_mode: per_row` only"
            ))
            .with_hint("a digest lays out its own blocks: a header (`digest_title`), one section per row (`text_template`) and a count"));
        }
        if message_mode == MessageMode::PerRow && digest_title.is_some() {
            return Err(ConfigError::new(format!(
                "{site}: `digest_title` applies to `message_mode: digest` only"
            )));
        }
        let batch_size = match (message_mode, setting_u64(config, "batch_size")?) {
            (MessageMode::Digest, Some(n)) if n as usize > MAX_DIGEST_ROWS || n == 0 => {
                return Err(ConfigError::new(format!(
                    "{site}: `batch_size` of a digest must be between 1 and {MAX_DIGEST_ROWS} (rows per message; Slack allows 50 blocks per message)"
                )));
            }
            (MessageMode::Digest, n) => n.unwrap_or(MAX_DIGEST_ROWS as u64) as usize,
            (MessageMode::PerRow, n) => n.unwrap_or(10).clamp(1, 1000) as usize,
        };
        let messages_per_second = setting_u64(config, "messages_per_second")?
            .unwrap_or(1)
            .clamp(1, 100) as u32;
        let timeout =
            Duration::from_secs(setting_u64(config, "timeout_seconds")?.unwrap_or(30).max(1));
        let mut retry = RetryPolicy::default();
        if let Some(n) = setting_u64(config, "max_retries")? {
            retry.max_attempts = n.min(20) as u32 + 1;
        }
        Ok(Self {
            transport,
            message_mode,
            text_template,
            blocks_template,
            digest_title,
            batch_size,
            messages_per_second,
            timeout,
            retry,
        })
    }
}

fn check_http(site: &str, key: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "{site}: `{key}` must start with https:// (or http:// for a local server)"
        )))
    }
}
