//! The webhook destination against the fake receiver: signatures, retries,
//! rejected batches; and secrets never leaking.

use dbt_activate_e2e::{Project, Reply, syncs};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::common::*;

const HOOK_SECRET: &str = "hook-secret-7f3a9c";

fn alerts_only(p: &Project) -> dbt_activate_e2e::ActivateCommand<'_> {
    p.activate_cmd(&["run", "--target", "ci", "--select", "churn_alerts"])
}

#[test]
fn webhook_requests_are_signed_with_the_secret() {
    let p = Project::new();
    let out = alerts_only(&p)
        .env("ACTIVATE_WEBHOOK_SECRET", HOOK_SECRET)
        .run();
    out.assert_success();
    let requests = p.webhook.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).expect("an HMAC key");
        mac.update(&r.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            r.header("x-activate-signature"),
            Some(expected.as_str()),
            "signature of the raw body"
        );
    }
    assert_eq!(
        alerts_from_records(&p.webhook.accepted_records()),
        alerts_in_model(&p)
    );
}

#[test]
fn webhook_429_and_5xx_are_retried() {
    let p = Project::new();
    p.webhook.respond_with(|n, _| match n {
        0 => Reply::too_many_requests(),
        1 => Reply::status(503),
        _ => Reply::ok(),
    });
    let out = alerts_only(&p).run();
    out.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "success");
    assert_counts(&r, 7, 0, 0);
    assert_eq!(count(&r, "rejected"), 0);
    assert_eq!(p.webhook.request_count(), 3, "429, then 503, then accepted");
    assert_eq!(
        alerts_from_records(&p.webhook.accepted_records()),
        alerts_in_model(&p)
    );
}

#[test]
fn webhook_4xx_rejects_the_batch_and_the_rows_are_retried_next_run() {
    let p = Project::new();
    p.webhook
        .respond_with(|_, _| Reply::status(422).body("alert schema mismatch"));
    let out = alerts_only(&p).run();
    out.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 7);
    assert_counts(&r, 0, 0, 0);
    let rejections = r["rejections"].as_array().expect("rejections");
    assert_eq!(
        rejections.len(),
        7,
        "every row of the batch is rejected: {r:#}"
    );
    assert!(
        rejections
            .iter()
            .all(|x| x["reason"].as_str().is_some_and(|s| s.contains("422"))),
        "the reason carries the status: {r:#}"
    );
    assert_eq!(
        p.webhook.request_count(),
        1,
        "a 4xx other than 429 is not retried"
    );

    p.webhook.respond_with(|_, _| Reply::ok());
    let out = alerts_only(&p).run();
    out.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "success");
    assert_counts(&r, 7, 0, 0);
    assert_eq!(
        alerts_from_records(&p.webhook.accepted_records()),
        alerts_in_model(&p)
    );
}

#[test]
fn secrets_never_appear_in_output_results_or_state() {
    const PASSWORD: &str = "pg-pass-Zq81x";
    let p = Project::new();
    // The test cluster trusts loopback, so a password in the URL is accepted and ignored.
    let url = p.pg.url().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    assert!(url.contains(PASSWORD), "{url}");
    let mut outputs = Vec::new();
    for args in [
        &["run", "--target", "ci"][..],
        &["debug", "--target", "ci"][..],
        &["ls", "--target", "ci"][..],
        &["run", "--target", "ci", "--log-format", "json"][..],
    ] {
        let out = p
            .activate_cmd(args)
            .env("ACTIVATE_PG_URL", &url)
            .env("ACTIVATE_WEBHOOK_SECRET", HOOK_SECRET)
            .run();
        outputs.push(out);
    }
    outputs[0].assert_success();
    // A connection error must not print the URL's password either.
    let bad_url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/nowhere");
    let out = p
        .activate_cmd(&["run", "--target", "ci", "--full-refresh"])
        .env("ACTIVATE_PG_URL", &bad_url)
        .env("ACTIVATE_WEBHOOK_SECRET", HOOK_SECRET)
        .run();
    assert_ne!(out.code, 0, "an unreachable database is an error\n{out}");
    outputs.push(out);

    let outputs: Vec<&dbt_activate_e2e::RunOutput> = outputs.iter().collect();
    assert_secrets_never_written(&p, &outputs, &[PASSWORD, HOOK_SECRET]);
}

/// The receiver processes the batch, then drops the connection before answering. The client
/// cannot tell that from a batch that never arrived, so it sends the batch again: a webhook is
/// at-least-once. What it does guarantee: the retry is byte-identical (same body, same
/// signature, so a receiver can deduplicate by `alert_id`), no row is lost, the run reports
/// each row delivered once, and a rerun sends nothing.
#[test]
fn webhook_commit_then_drop_is_retried_at_least_once_with_an_identical_body() {
    let p = Project::new();
    p.webhook.respond_with(|n, _| {
        if n == 0 {
            Reply::drop_connection()
        } else {
            Reply::ok()
        }
    });
    let out = alerts_only(&p).run();
    out.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "success");
    assert_counts(&r, 7, 0, 0);
    assert_eq!(count(&r, "rejected"), 0);
    let requests = p.webhook.requests();
    assert_eq!(requests.len(), 2, "the dropped batch is sent again");
    assert!(requests[0].dropped && !requests[1].dropped);
    assert_eq!(
        requests[0].body, requests[1].body,
        "the retry is the same batch, byte for byte"
    );
    assert_eq!(
        requests[0].header("x-activate-signature"),
        requests[1].header("x-activate-signature")
    );
    // At-least-once: the receiver processed the batch twice; by key it holds the model.
    let records = p.webhook.accepted_records();
    assert_eq!(records.len(), 14, "every row arrived exactly twice");
    let mut distinct = alerts_from_records(&records);
    distinct.dedup();
    assert_eq!(distinct, alerts_in_model(&p));
    // Nothing reported delivered that the receiver does not hold.
    assert!(count(&r, "inserted") as usize <= distinct.len());

    let out = alerts_only(&p).run();
    out.assert_success();
    assert_eq!(p.webhook.request_count(), 2, "a rerun sends nothing");
}
