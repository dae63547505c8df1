//! The audit part of each history record (`.dbt-activate/<target>/history.jsonl`): who ran
//! the sync, where, on which target, from which manifest, with which dbt-activate.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// Fields added to every history record of one run.
pub fn fields(target: &str, manifest: &Path) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    out.insert("target".into(), target.into());
    out.insert("user".into(), user().into());
    out.insert("host".into(), host().into());
    out.insert(
        "manifest_sha256".into(),
        std::fs::read(manifest)
            .map(|bytes| hex::encode(Sha256::digest(&bytes)))
            .map_or(serde_json::Value::Null, serde_json::Value::String),
    );
    out.insert(
        "dbt_activate_version".into(),
        env!("CARGO_PKG_VERSION").into(),
    );
    out
}

/// The login name (`USER`, `LOGNAME`), else `uid <n>` of this process.
fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            std::fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid {}", m.uid()))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
