//! The `activate.yml` keys of a `hubspot` destination.

use std::time::Duration;

use crate::connections::DestinationConfig;
use crate::destination::{check_keys, setting_str, setting_u64};
use crate::error::ConfigError;

/// HubSpot's documented maximum of inputs per CRM batch request.
pub const MAX_BATCH_INPUTS: usize = 100;
/// HubSpot's rolling rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Private apps on Free and Starter accounts: 100 requests per 10 seconds.
pub const DEFAULT_REQUESTS_PER_WINDOW: u64 = 100;
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

const KEYS: &[&str] = &[
    "access_token",
    "base_url",
    "batch_size",
    "requests_per_10_seconds",
    "timeout_seconds",
    "max_retries",
];

#[derive(Debug, Clone)]
pub struct HubSpotConfig {
    pub access_token: String,
    /// Without a trailing slash.
    pub base_url: String,
    pub batch_size: usize,
    pub requests_per_window: u32,
    pub timeout: Duration,
    pub max_retries: Option<u32>,
}

impl HubSpotConfig {
    pub fn from_config(config: &DestinationConfig) -> Result<Self, ConfigError> {
        check_keys(config, KEYS)?;
        let access_token = setting_str(config, "access_token")?
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ConfigError::new(format!(
                    "{}: `access_token` is required (a private app's access token)",
                    config.site()
                ))
                .with_hint("access_token: \"{{ env_var('HUBSPOT_ACCESS_TOKEN') }}\"")
            })?
            .to_owned();
        crate::secrets::register(&access_token);
        let base_url = setting_str(config, "base_url")?
            .filter(|u| !u.is_empty())
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::new(format!(
                "{}: `base_url` must start with http:// or https://",
                config.site()
            )));
        }
        let batch_size = setting_u64(config, "batch_size")?.unwrap_or(MAX_BATCH_INPUTS as u64);
        if batch_size == 0 || batch_size > MAX_BATCH_INPUTS as u64 {
            return Err(ConfigError::new(format!(
                "{}: `batch_size` must be between 1 and {MAX_BATCH_INPUTS} (HubSpot's maximum of inputs per batch request), found {batch_size}",
                config.site()
            )));
        }
        let requests =
            setting_u64(config, "requests_per_10_seconds")?.unwrap_or(DEFAULT_REQUESTS_PER_WINDOW);
        if requests == 0 || requests > 10_000 {
            return Err(ConfigError::new(format!(
                "{}: `requests_per_10_seconds` must be between 1 and 10000, found {requests}",
                config.site()
            )));
        }
        let timeout = setting_u64(config, "timeout_seconds")?.unwrap_or(30).max(1);
        let max_retries = setting_u64(config, "max_retries")?.map(|n| n.min(20) as u32);
        Ok(Self {
            access_token,
            base_url,
            batch_size: batch_size as usize,
            requests_per_window: requests as u32,
            timeout: Duration::from_secs(timeout),
            max_retries,
        })
    }

    /// The spacing between two requests: evenly paced just under the limit, so a rolling
    /// 10-second window never holds more than `requests_per_10_seconds` requests even when
    /// their arrival is a little uneven.
    pub fn request_interval(&self) -> Duration {
        let slots = self.requests_per_window.saturating_sub(1).max(1);
        WINDOW / slots
    }
}
