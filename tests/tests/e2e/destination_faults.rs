//! Destination faults against the webhook fake that the other tests do not cover: answers
//! slower than the client's timeout, and error answers whose bodies are not JSON. No row is
//! reported delivered that the receiver did not acknowledge, and the next run finishes the job.

use std::time::Duration;

use dbt_activate_e2e::{Project, Reply, syncs};

use crate::common::*;

fn alerts_only(p: &Project) -> dbt_activate_e2e::ActivateCommand<'_> {
    p.activate_cmd(&["run", "--target", "ci", "--select", "churn_alerts"])
}

fn posts(p: &Project) -> Vec<dbt_activate_e2e::Request> {
    p.webhook
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

/// The receiver processes every request but answers after 3 s; the client gives up after 1 s,
/// twice. The run reports nothing delivered and fails the sync; once the receiver answers in
/// time, the next run delivers every row (the receiver saw the first copies too: a webhook
/// is at-least-once, with identical bodies to deduplicate by key).
#[test]
fn answers_slower_than_the_timeout_confirm_nothing_and_the_next_run_delivers() {
    let p = Project::new();
    p.replace_in_file(
        "activate.yml",
        "batch_size: 50}",
        "batch_size: 50, timeout_seconds: 1, max_retries: 1}",
    );
    p.webhook.respond_with(|_, r| {
        if r.method == "POST" {
            Reply::ok().delayed(Duration::from_secs(3))
        } else {
            Reply::ok()
        }
    });
    let slow = alerts_only(&p).run();
    assert_ne!(slow.code, 0, "a sync whose batches time out fails\n{slow}");
    assert!(!slow.text().contains("panicked"), "{slow}");
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "error");
    assert_counts(&r, 0, 0, 0);
    assert!(
        message(&r).contains("timed out") || message(&r).contains("timeout"),
        "the message says the receiver timed out: {r:#}"
    );
    let attempts = posts(&p);
    assert_eq!(attempts.len(), 2, "one try and one retry");
    assert_eq!(
        attempts[0].body, attempts[1].body,
        "the retry is the same batch, byte for byte"
    );

    p.webhook.respond_with(|_, _| Reply::ok());
    let next = alerts_only(&p).run();
    next.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "success");
    assert_counts(&r, 7, 0, 0);
    let last = posts(&p).pop().expect("a delivery");
    assert_eq!(
        alerts_from_records(&last.records()),
        alerts_in_model(&p),
        "the next run sends every row, in the same body"
    );

    let again = alerts_only(&p).run();
    again.assert_success();
    assert_counts(&p.result(syncs::ALERTS), 0, 0, 0);
    assert_eq!(posts(&p).len(), 3, "nothing more is sent");
}

/// Error answers with HTML and truncated-JSON bodies: a 502 page is retried, a 400 whose body
/// is not JSON rejects the batch with the body's text as the reason (short, on one line), and
/// no row counts as delivered. A 2xx is the webhook's acknowledgement whatever its body.
#[test]
fn malformed_response_bodies_deliver_nothing_until_acknowledged() {
    let p = Project::new();
    const HTML: &str =
        "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body>\n</html>";
    const TRUNCATED: &str = "{\"error\": \"invalid paylo";
    let mut posts_seen = 0;
    p.webhook.respond_with(move |_, r| {
        if r.method != "POST" {
            return Reply::ok();
        }
        posts_seen += 1;
        match posts_seen {
            1 => Reply::status(502).body(HTML),
            _ => Reply::status(400).body(TRUNCATED),
        }
    });
    let out = alerts_only(&p).run();
    assert!(!out.text().contains("panicked"), "{out}");
    let r = p.result(syncs::ALERTS);
    assert_counts(&r, 0, 0, 0);
    assert_eq!(count(&r, "rejected"), 7, "{r:#}");
    let reasons: Vec<&str> = r["rejections"]
        .as_array()
        .expect("rejections")
        .iter()
        .map(|j| j["reason"].as_str().unwrap_or(""))
        .collect();
    assert!(
        reasons.iter().all(|reason| reason.contains("400")
            && reason.contains("invalid paylo")
            && !reason.contains('\n')),
        "each rejection carries the 400 and its body on one line: {reasons:?}"
    );
    assert_eq!(
        posts(&p).len(),
        2,
        "the 502 was retried once, the 400 was final"
    );

    // A receiver that acknowledges with a body that is not JSON still acknowledges.
    p.webhook
        .respond_with(|_, _| Reply::ok().body("<p>thanks</p>"));
    let next = alerts_only(&p).run();
    next.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_counts(&r, 7, 0, 0);
    assert_eq!(
        alerts_from_records(&p.webhook.accepted_records()),
        alerts_in_model(&p),
        "the rows the 400 refused are delivered by the next run, once"
    );
    let again = alerts_only(&p).run();
    again.assert_success();
    assert_counts(&p.result(syncs::ALERTS), 0, 0, 0);
}
