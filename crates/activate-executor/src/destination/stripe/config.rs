//! The `activate.yml` keys of a `type: stripe` destination.

use crate::connections::DestinationConfig;
use crate::destination::{check_keys, setting_str, setting_u64};
use crate::error::ConfigError;

pub(super) const KEYS: &[&str] = &[
    "api_key",
    "base_url",
    "stripe_version",
    "writes_per_second",
    "searches_per_second",
    "concurrency",
    "batch_size",
    "timeout_seconds",
    "max_retries",
];

/// Stripe's documented default: 25 write operations per second in a sandbox (test mode),
/// 100 in live mode. The lower figure is the safe default for both.
pub(super) const DEFAULT_WRITES_PER_SECOND: u64 = 25;
/// The Search API's own limit: 20 read operations per second.
pub(super) const DEFAULT_SEARCHES_PER_SECOND: u64 = 20;

/// No `Debug`: it holds the API key.
#[derive(Clone)]
pub(super) struct StripeConfig {
    pub api_key: String,
    pub base_url: String,
    pub stripe_version: Option<String>,
    pub writes_per_second: u32,
    pub searches_per_second: u32,
    pub concurrency: usize,
    pub batch_size: usize,
    pub timeout_seconds: u64,
    pub max_attempts: u32,
}

impl StripeConfig {
    pub fn from_config(config: &DestinationConfig) -> Result<Self, ConfigError> {
        check_keys(config, KEYS)?;
        let api_key = setting_str(config, "api_key")?
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ConfigError::new(format!("{}: `api_key` is required", config.site())).with_hint(
                    "api_key: \"{{ env_var('STRIPE_SECRET_KEY') }}\" (a secret key sk_... or a restricted key rk_...)",
                )
            })?
            .to_owned();
        crate::secrets::register(&api_key);
        if !(api_key.starts_with("sk_") || api_key.starts_with("rk_")) {
            return Err(ConfigError::new(format!(
                "{}: `api_key` must be a Stripe secret key (sk_...) or restricted key (rk_...)",
                config.site()
            ))
            .with_hint("publishable keys (pk_...) cannot write customers or meter events"));
        }
        let base_url = setting_str(config, "base_url")?
            .filter(|u| !u.is_empty())
            .unwrap_or("https://api.stripe.com")
            .trim_end_matches('/')
            .to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::new(format!(
                "{}: `base_url` must start with http:// or https://",
                config.site()
            )));
        }
        let positive = |key: &str, default: u64| -> Result<u64, ConfigError> {
            match setting_u64(config, key)? {
                Some(0) => Err(ConfigError::new(format!(
                    "{}: `{key}` must be at least 1",
                    config.site()
                ))),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        let writes_per_second = positive("writes_per_second", DEFAULT_WRITES_PER_SECOND)?;
        let searches_per_second = positive("searches_per_second", DEFAULT_SEARCHES_PER_SECOND)?;
        let concurrency = positive("concurrency", 8)?;
        let batch_size = positive("batch_size", 100)?;
        let timeout_seconds = positive("timeout_seconds", 30)?;
        let max_retries = setting_u64(config, "max_retries")?.unwrap_or(5);
        Ok(Self {
            api_key,
            base_url,
            stripe_version: setting_str(config, "stripe_version")?
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            writes_per_second: writes_per_second.min(10_000) as u32,
            searches_per_second: searches_per_second.min(10_000) as u32,
            concurrency: concurrency.min(256) as usize,
            batch_size: batch_size.min(10_000) as usize,
            timeout_seconds,
            max_attempts: max_retries.min(20) as u32 + 1,
        })
    }

    /// `test` or `live`, from the key's prefix (part of the destination's identity).
    pub fn mode(&self) -> &'static str {
        if self.api_key.contains("_live_") {
            "live"
        } else {
            "test"
        }
    }
}
