//! Secrets never reach output, logs, results or state: every secret value that configuration
//! rendering sees is registered here, and every text leaving the process goes through [`redact`].

use std::sync::{Mutex, OnceLock};

fn registry() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remembers a secret value so it is masked wherever it would be printed.
pub fn register(secret: &str) {
    // Very short values ("", "1") would mask harmless text everywhere.
    if secret.chars().count() < 4 {
        return;
    }
    let mut secrets = registry().lock().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Masks every registered secret in `text`.
pub fn redact(text: &str) -> String {
    let secrets = registry().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "****");
        }
    }
    out
}

/// Whether a configuration key holds a secret by its name.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passphrase",
        "secret",
        "token",
        "api_key",
        "apikey",
        "private_key",
        "authorization",
        "credentials",
        "keyfile_json",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Registers the secret parts of a rendered configuration tree: values of secret-named keys,
/// and the password inside connection URLs.
pub fn register_in(value: &serde_json::Value) {
    fn walk(key: Option<&str>, value: &serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    walk(Some(k), v);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(key, v)),
            serde_json::Value::String(s) => {
                if key.is_some_and(is_secret_key) {
                    register(s);
                    // `Bearer <token>`, `Basic <credentials>`: the token alone is secret too.
                    for part in s
                        .split_whitespace()
                        .filter(|p| p.len() >= 8 && p.len() < s.len())
                    {
                        register(part);
                    }
                }
                if let Some(password) = url_password(s) {
                    register(&password);
                }
            }
            _ => {}
        }
    }
    walk(None, value);
}

/// The password of `scheme://user:password@host/...`, if any.
pub fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_and_url_passwords() {
        register_in(&serde_json::json!({
            "url": "postgres://app:s3cr3t-pw@127.0.0.1:5432/ops",
            "headers": {"Authorization": "Bearer tok-123456"},
            "name": "visible",
        }));
        let text =
            redact("failed postgres://app:s3cr3t-pw@127.0.0.1 with Bearer tok-123456 for visible");
        assert_eq!(
            text,
            "failed postgres://app:****@127.0.0.1 with **** for visible"
        );
    }

    #[test]
    fn the_token_of_an_authorization_value_is_masked_alone() {
        register_in(&serde_json::json!({"headers": {"Authorization": "Bearer tok-only-98765"}}));
        assert_eq!(redact("echoed tok-only-98765"), "echoed ****");
    }

    #[test]
    fn url_password_parsing() {
        assert_eq!(
            url_password("postgres://u:p%40ss@h/db").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(url_password("postgres://u@h/db"), None);
        assert_eq!(url_password("not a url"), None);
    }
}
