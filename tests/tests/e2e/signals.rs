//! SIGTERM mid-sync (an orchestrator stopping the task): the sync stops at the next batch
//! boundary, results are written, state keeps what the destination confirmed, and the next
//! run sends exactly the rest — nothing lost, nothing sent twice.

use std::time::{Duration, Instant};

use crate::common::*;
use dbt_activate_e2e::{Project, Reply, syncs};

#[test]
fn sigterm_stops_cleanly_and_the_next_run_finishes_the_sync() {
    let p = Project::new();
    // One alert per request, each answered slowly: the run is still sending when signalled.
    p.replace_in_file("activate.yml", "batch_size: 50}", "batch_size: 1}");
    p.webhook.respond_with(|_, _| {
        std::thread::sleep(Duration::from_millis(400));
        Reply::ok()
    });
    let mut child = p
        .activate_cmd(&["run", "--target", "ci", "--select", "churn_alerts"])
        .spawn();
    let start = Instant::now();
    while p.webhook.request_count() < 2 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(p.webhook.request_count() >= 2, "the sync started sending");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = child.wait().expect("wait for dbt-activate");
    assert_eq!(status.code(), Some(1), "a stopped sync is a failed sync");

    let r = p.result(syncs::ALERTS);
    assert_status(&r, "error");
    assert!(message(&r).contains("stopped by a signal"), "{r:#}");
    let first = count(&r, "inserted");
    assert!(
        (1..7).contains(&first),
        "some but not all alerts were sent: {r:#}"
    );
    let delivered = p.webhook.accepted_records().len() as u64;
    assert_eq!(
        delivered, first,
        "the results count exactly what the webhook accepted"
    );

    // The next run sends exactly the rest.
    p.webhook.respond_with(|_, _| Reply::ok());
    let out = p.activate(&["run", "--target", "ci", "--select", "churn_alerts"]);
    out.assert_success();
    assert_counts(&p.result(syncs::ALERTS), 7 - first, 0, 0);
    assert_eq!(
        alerts_from_records(&p.webhook.accepted_records()),
        alerts_in_model(&p),
        "every alert exactly once"
    );
}
