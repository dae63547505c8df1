//! The `activate.yml` keys of a `salesforce` destination.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::jwt::Signer;

use crate::connections::DestinationConfig;
use crate::destination::{check_keys, setting_str, setting_u64};
use crate::error::ConfigError;

pub const KEYS: &[&str] = &[
    "login_url",
    "instance_url",
    "client_id",
    "client_secret",
    "refresh_token",
    "username",
    "private_key",
    "private_key_path",
    "audience",
    "api_version",
    "bulk_threshold",
    "bulk_batch_size",
    "batch_size",
    "requests_per_second",
    "concurrency",
    "timeout_seconds",
    "max_retries",
    "bulk_poll_interval_ms",
    "bulk_timeout_seconds",
];

/// The most records one sObject Collections request may carry.
pub const COLLECTION_MAX: usize = 200;

/// How the destination gets an access token from `{login_url}/services/oauth2/token`.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `grant_type=client_credentials` (a connected app's client credentials flow).
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    /// `grant_type=refresh_token`.
    RefreshToken {
        client_id: String,
        client_secret: Option<String>,
        refresh_token: String,
    },
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`: an assertion signed with the
    /// private key whose certificate the connected app holds.
    JwtBearer {
        client_id: String,
        username: String,
        /// The assertion's `aud`: `login_url` unless `audience` is set.
        audience: String,
        key: Arc<Signer>,
    },
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<RSA private key>)")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub login_url: String,
    pub instance_url: Option<String>,
    pub auth: Auth,
    /// `62.0`, used as `/services/data/v62.0/...`.
    pub api_version: String,
    /// More rows than this in one write go through a Bulk API 2.0 job.
    pub bulk_threshold: usize,
    /// The most rows one write (and so one Bulk API 2.0 job) carries.
    pub bulk_batch_size: usize,
    /// Records per sObject Collections request (at most 200).
    pub batch_size: usize,
    pub requests_per_second: u32,
    /// sObject Collections calls in flight at once within one write.
    pub concurrency: usize,
    pub timeout: Duration,
    pub max_retries: Option<u32>,
    pub bulk_poll_interval: Duration,
    pub bulk_timeout: Duration,
}

fn url_setting(config: &DestinationConfig, key: &str) -> Result<Option<String>, ConfigError> {
    let Some(url) = setting_str(config, key)?.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::new(format!(
            "{}: `{key}` must start with https:// (or http:// for a local server), found `{url}`",
            config.site()
        )));
    }
    Ok(Some(url.trim_end_matches('/').to_owned()))
}

fn required(config: &DestinationConfig, key: &str) -> Result<String, ConfigError> {
    setting_str(config, key)?
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            ConfigError::new(format!("{}: `{key}` is required", config.site())).with_hint(
                format!("set it from an environment variable: {key}: \"{{{{ env_var('SALESFORCE_{}') }}}}\"", key.to_ascii_uppercase()),
            )
        })
}

/// The JWT bearer flow's private key, from `private_key` (PEM text, usually through
/// `env_var()`) or `private_key_path` (a PEM file, relative to the project directory). The key's
/// text is registered as a secret, never shown.
fn private_key(
    config: &DestinationConfig,
    project_dir: &Path,
) -> Result<Option<Signer>, ConfigError> {
    let text = setting_str(config, "private_key")?.filter(|s| !s.trim().is_empty());
    let path = setting_str(config, "private_key_path")?.filter(|s| !s.is_empty());
    let (pem, source) = match (text, path) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(format!(
                "{}: set `private_key` or `private_key_path`, not both",
                config.site()
            )));
        }
        (Some(text), None) => (text.to_owned(), "`private_key`".to_owned()),
        (None, Some(path)) => {
            let full = project_dir.join(path);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                ConfigError::new(format!(
                    "{}: `private_key_path`: cannot read {}: {e}",
                    config.site(),
                    full.display()
                ))
                .with_hint("the path is relative to the project directory; the file is the PEM private key whose certificate the connected app holds")
            })?;
            (text, format!("`private_key_path` ({})", full.display()))
        }
    };
    crate::secrets::register(pem.trim());
    for line in pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
    {
        crate::secrets::register(line);
    }
    Signer::from_pem(&pem).map(Some).map_err(|why| {
        ConfigError::new(format!("{}: {source}: {why}", config.site())).with_hint(
            "give the RSA private key in PEM, e.g. private_key: \"{{ env_var('SALESFORCE_PRIVATE_KEY') }}\" or private_key_path: keys/salesforce.key",
        )
    })
}

/// The JWT's `aud` when `audience` is not set: Salesforce expects the login server, not a My
/// Domain: `https://test.salesforce.com` for a sandbox My Domain, `https://login.salesforce.com`
/// for another My Domain, else `login_url` itself (login.salesforce.com, test.salesforce.com,
/// an Experience Cloud site, a local test server).
pub fn default_audience(login_url: &str) -> String {
    let host = login_url
        .split("://")
        .nth(1)
        .unwrap_or(login_url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host.ends_with(".sandbox.my.salesforce.com") {
        "https://test.salesforce.com".to_owned()
    } else if host.ends_with(".my.salesforce.com") {
        "https://login.salesforce.com".to_owned()
    } else {
        login_url.to_owned()
    }
}

impl Settings {
    pub fn from_config(
        config: &DestinationConfig,
        project_dir: &Path,
    ) -> Result<Self, ConfigError> {
        check_keys(config, KEYS)?;
        let login_url = url_setting(config, "login_url")?
            .unwrap_or_else(|| "https://login.salesforce.com".to_owned());
        let instance_url = url_setting(config, "instance_url")?;
        let client_id = required(config, "client_id")?;
        let client_secret = setting_str(config, "client_secret")?
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let refresh_token = setting_str(config, "refresh_token")?
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        for secret in [&client_secret, &refresh_token].into_iter().flatten() {
            crate::secrets::register(secret);
        }
        let auth = match (
            private_key(config, project_dir)?,
            refresh_token,
            client_secret,
        ) {
            (Some(key), None, None) => {
                let username = setting_str(config, "username")?
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        ConfigError::new(format!(
                            "{}: `username` is required with a private key (the JWT bearer flow's `sub`: the Salesforce user the connected app acts as)",
                            config.site()
                        ))
                        .with_hint("username: integration@acme.com")
                    })?
                    .to_owned();
                let audience = match url_setting(config, "audience")? {
                    Some(audience) => audience,
                    None => default_audience(&login_url),
                };
                Auth::JwtBearer {
                    client_id,
                    username,
                    audience,
                    key: Arc::new(key),
                }
            }
            (Some(_), _, _) => {
                return Err(ConfigError::new(format!(
                    "{}: a private key (JWT bearer flow) and `client_secret`/`refresh_token` are set: choose one flow",
                    config.site()
                )));
            }
            (None, Some(refresh_token), client_secret) => Auth::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            },
            (None, None, Some(client_secret)) => Auth::ClientCredentials {
                client_id,
                client_secret,
            },
            (None, None, None) => {
                return Err(ConfigError::new(format!(
                    "{}: `client_secret` (client credentials flow), `refresh_token` (refresh token flow) or `private_key`/`private_key_path` with `username` (JWT bearer flow) is required",
                    config.site()
                ))
                .with_hint("client_secret: \"{{ env_var('SALESFORCE_CLIENT_SECRET') }}\""));
            }
        };
        let api_version = setting_str(config, "api_version")?
            .unwrap_or("62.0")
            .trim_start_matches('v')
            .to_owned();
        if api_version.parse::<f64>().is_err() {
            return Err(ConfigError::new(format!(
                "{}: `api_version` must look like 62.0, found `{api_version}`",
                config.site()
            )));
        }
        let batch_size = setting_u64(config, "batch_size")?.unwrap_or(COLLECTION_MAX as u64);
        if batch_size == 0 || batch_size > COLLECTION_MAX as u64 {
            return Err(ConfigError::new(format!(
                "{}: `batch_size` must be between 1 and {COLLECTION_MAX} (the sObject Collections maximum), found {batch_size}",
                config.site()
            )));
        }
        let bulk_threshold = setting_u64(config, "bulk_threshold")?.unwrap_or(2000) as usize;
        let bulk_batch_size = setting_u64(config, "bulk_batch_size")?
            .unwrap_or(10_000)
            .max(1) as usize;
        let requests_per_second = setting_u64(config, "requests_per_second")?
            .unwrap_or(25)
            .clamp(1, u64::from(u32::MAX)) as u32;
        let concurrency = setting_u64(config, "concurrency")?.unwrap_or(4);
        if !(1..=25).contains(&concurrency) {
            return Err(ConfigError::new(format!(
                "{}: `concurrency` must be between 1 and 25 (Salesforce's concurrent long-running request limit), found {concurrency}",
                config.site()
            )));
        }
        let timeout =
            Duration::from_secs(setting_u64(config, "timeout_seconds")?.unwrap_or(60).max(1));
        let max_retries = setting_u64(config, "max_retries")?.map(|n| n.min(100) as u32);
        let bulk_poll_interval = Duration::from_millis(
            setting_u64(config, "bulk_poll_interval_ms")?
                .unwrap_or(2000)
                .max(10),
        );
        let bulk_timeout = Duration::from_secs(
            setting_u64(config, "bulk_timeout_seconds")?
                .unwrap_or(1800)
                .max(1),
        );
        Ok(Self {
            login_url,
            instance_url,
            auth,
            api_version,
            bulk_threshold,
            bulk_batch_size,
            batch_size: batch_size as usize,
            requests_per_second,
            concurrency: concurrency as usize,
            timeout,
            max_retries,
            bulk_poll_interval,
            bulk_timeout,
        })
    }

    /// `/services/data/v62.0`
    pub fn data_path(&self) -> String {
        format!("/services/data/v{}", self.api_version)
    }
}
