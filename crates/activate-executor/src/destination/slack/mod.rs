//! `slack`: rows become Slack messages, through an incoming webhook or `chat.postMessage`.
//!
//! - `message_mode: per_row` (default): one message per row; its text from `text_template`
//!   (default: the `text` field, else `field: value` lines), optional Block Kit from
//!   `blocks_template`.
//! - `message_mode: digest`: one message per batch, a header, one section per row and a count,
//!   split to stay within Slack's 50 blocks and 40,000 characters per message.
//!
//! Slack posts about one message per second per channel: each channel has its own
//! [`RateLimiter`] (shared by every sync to it in a run), and a `429` pauses that channel for
//! its `Retry-After`. A message Slack refuses (`{"ok": false, "error": ...}` or a webhook's
//! `4xx`) rejects its rows with Slack's error code; a refused token fails the sync.
//! Messages are posted, never edited or deleted: `upsert` and `insert` post, `update` and
//! mirror removals are errors.

mod client;
mod config;
mod message;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::connections::DestinationConfig;
use crate::destination::http::{self, RateLimiter};
use crate::destination::{
    AlertMessage, BatchOutcome, Capabilities, Destination, ObjectSchema, SyncShape, WriteBatch,
    WriteOp,
};
use crate::error::{ConfigError, DestinationError};

use client::{Client, Posted};
use config::{MessageMode, Settings, Transport};
use message::Templates;

pub fn build(config: &DestinationConfig) -> Result<Arc<dyn Destination>, ConfigError> {
    Ok(Arc::new(SlackDestination::from_config(config)?))
}

pub struct SlackDestination {
    name: String,
    client: Client,
    templates: Templates,
    message_mode: MessageMode,
    batch_size: usize,
    messages_per_second: u32,
    /// One limiter per channel: Slack's limit is per channel.
    limiters: Mutex<HashMap<String, RateLimiter>>,
}

impl SlackDestination {
    pub fn from_config(config: &DestinationConfig) -> Result<Self, ConfigError> {
        let settings = Settings::parse(config)?;
        let templates = Templates::new(&settings, &config.site())?;
        let http = http::client(settings.timeout).map_err(|e| ConfigError::new(e.message))?;
        Ok(Self {
            name: config.name.clone(),
            client: Client {
                transport: settings.transport.clone(),
                http,
                retry: settings.retry.clone(),
            },
            templates,
            message_mode: settings.message_mode,
            batch_size: settings.batch_size,
            messages_per_second: settings.messages_per_second,
            limiters: Mutex::new(HashMap::new()),
        })
    }

    /// The limiter of a channel, created on first use.
    fn limiter(&self, channel: &str) -> RateLimiter {
        let mut map = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(channel.to_owned())
            .or_insert_with(|| RateLimiter::new(self.messages_per_second, Duration::from_secs(1)))
            .clone()
    }

    /// Posts a plain text message to a channel (run alerts). With an incoming webhook the
    /// message goes to the webhook's channel.
    pub async fn post_text(&self, channel: &str, text: &str) -> Result<(), DestinationError> {
        let channel = channel_of(channel).map_err(DestinationError::new)?;
        match self
            .client
            .post(&self.limiter(&channel), &channel, text, None)
            .await?
        {
            Posted::Ok => Ok(()),
            Posted::Refused(reason) => Err(DestinationError::new(format!(
                "slack destination `{}`: message to {channel} refused: {reason}",
                self.name
            ))),
        }
    }
}

/// The channel to post to: a channel id (`C0123ABCD`) or a name (`cs-alerts`, `#cs-alerts`).
fn channel_of(object: &str) -> Result<String, String> {
    let name = object.trim().trim_start_matches('#');
    let is_id = name.len() >= 9
        && name.starts_with(['C', 'G', 'D'])
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    let is_name = !name.is_empty()
        && name.chars().count() <= 80
        && name
            .chars()
            .all(|c| c.is_lowercase() || c.is_numeric() || c == '-' || c == '_');
    if is_id || is_name {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "`{object}` is not a Slack channel: use a channel name (`cs-alerts`, lowercase letters, digits, `-` and `_`, at most 80 characters) or a channel id (`C0123ABCD`)"
        ))
    }
}

#[async_trait]
impl Destination for SlackDestination {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn identity(&self) -> String {
        self.client.identity()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_rows: self.batch_size,
        }
    }

    async fn health_check(&self) -> Result<(), DestinationError> {
        self.client.auth_test().await
    }

    /// Channels have no fields; the object must look like a channel.
    async fn describe(&self, object: &str) -> Result<Option<ObjectSchema>, DestinationError> {
        channel_of(object).map_err(DestinationError::new)?;
        Ok(None)
    }

    /// Slack posts messages: updates and mirror removals are refused before anything is sent.
    async fn send_alert(&self, alert: &AlertMessage<'_>) -> Result<(), DestinationError> {
        let channel = match (alert.channel, self.uses_webhook()) {
            (Some(channel), _) => channel,
            // An incoming webhook posts to its own channel; the name is not sent.
            (None, true) => "alerts",
            (None, false) => {
                return Err(DestinationError::new(format!(
                    "slack destination `{}` posts with a bot token: give the alerts a channel (`send_to: [{{destination: {}, channel: data-alerts}}]`)",
                    self.name, self.name
                )));
            }
        };
        self.post_text(channel, alert.text).await
    }

    fn check_sync(&self, sync: &SyncShape<'_>) -> Result<(), String> {
        channel_of(sync.object)?;
        if sync.op == WriteOp::Update {
            return Err("Slack messages are posted, never edited: `operation: update` is not supported\n  hint: use `operation: insert` (each key posted once) or `upsert` (a changed row is posted again)".into());
        }
        if sync.removal.is_some() {
            return Err("Slack messages are not records, so a mirror cannot remove them\n  hint: use `sync_mode: incremental` (or `on_delete: ignore`)".into());
        }
        Ok(())
    }

    async fn write(&self, batch: &WriteBatch<'_>) -> Result<BatchOutcome, DestinationError> {
        match batch.op {
            WriteOp::Upsert | WriteOp::Insert => {}
            WriteOp::Update => {
                return Err(DestinationError::new(format!(
                    "slack destination `{}` posts messages and never edits them: `operation: update` is not supported\n  hint: use `operation: insert` (each key posted once) or `upsert` (a changed row is posted again)",
                    self.name
                )));
            }
            WriteOp::Delete | WriteOp::Clear => {
                return Err(DestinationError::new(format!(
                    "slack destination `{}`: Slack messages are not records, so a mirror cannot {} them; nothing was removed\n  hint: use `sync_mode: incremental` (or `on_delete: ignore`) for syncs to Slack",
                    self.name,
                    if batch.op == WriteOp::Delete {
                        "delete"
                    } else {
                        "clear"
                    }
                )));
            }
        }
        let channel = channel_of(batch.object).map_err(DestinationError::new)?;
        let limiter = self.limiter(&channel);
        let mut outcome = BatchOutcome::default();
        let messages = match self.message_mode {
            MessageMode::PerRow => batch
                .records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    self.templates
                        .per_row(batch, i, r)
                        .map_err(|e| (vec![i], e))
                })
                .collect(),
            MessageMode::Digest => self.templates.digest(batch),
        };
        for message in messages {
            let message = match message {
                Ok(m) => m,
                Err((rows, reason)) => {
                    outcome
                        .rejected
                        .extend(rows.into_iter().map(|i| (i, reason.clone())));
                    continue;
                }
            };
            match self
                .client
                .post(&limiter, &channel, &message.text, message.blocks.as_ref())
                .await?
            {
                Posted::Ok => {}
                Posted::Refused(reason) => outcome
                    .rejected
                    .extend(message.rows.iter().map(|&i| (i, reason.clone()))),
            }
        }
        outcome.rejected.sort_by_key(|(i, _)| *i);
        Ok(outcome)
    }
}

impl SlackDestination {
    /// Whether messages go through an incoming webhook (the channel is the webhook's own).
    pub fn uses_webhook(&self) -> bool {
        matches!(self.client.transport, Transport::Webhook { .. })
    }
}

#[cfg(test)]
mod tests;
