//! The audit record of each run: every line of `.dbt-activate/<target>/history.jsonl` says
//! who ran the sync, where, on which target, from which manifest (its SHA-256), with which
//! dbt-activate, and what it did (counts, status, rejections).

use sha2::{Digest, Sha256};

use dbt_activate_e2e::{Project, syncs};

use crate::common::*;

#[test]
fn every_history_record_names_who_what_target_manifest_and_counts() {
    let p = Project::new();
    p.activate_cmd(&["run", "--target", "ci"])
        .env("USER", "ci-runner")
        .run()
        .assert_success();
    let manifest = std::fs::read(p.file("target/manifest.json")).expect("manifest.json");
    let checksum = hex::encode(Sha256::digest(&manifest));
    let text = p.read_file(".dbt-activate/ci/history.jsonl");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(records.len(), syncs::ALL.len(), "one record per sync");
    let results = p.results_json();
    for r in &records {
        assert_eq!(r["user"], "ci-runner", "{r:#}");
        assert!(r["host"].as_str().is_some_and(|h| !h.is_empty()), "{r:#}");
        assert_eq!(r["target"], "ci");
        assert_eq!(r["manifest_sha256"], checksum.as_str());
        assert_eq!(r["invocation_id"], results["metadata"]["invocation_id"]);
        assert!(r["dbt_activate_version"].is_string());
        assert!(r["finished_at"].is_string());
        for field in ["inserted", "updated", "deleted", "rejected", "rows_read"] {
            count(r, field);
        }
        assert_status(r, "success");
    }
    let leads = records
        .iter()
        .find(|r| r["name"] == syncs::LEADS)
        .expect("the leads record");
    assert_counts(leads, 30, 0, 0);
}
