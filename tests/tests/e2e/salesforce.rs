//! The salesforce destination end to end: the real binary against the fake org of
//! `dbt_activate_e2e::fakes::salesforce` (OAuth, describe, sObject Collections, Bulk API 2.0,
//! SOQL, rate limit), syncing the example's `enriched_leads` to `Lead`.

use dbt_activate_e2e::fakes::salesforce::{
    CLIENT_ID, CLIENT_SECRET, JWT_USERNAME, REFRESH_TOKEN, SalesforceFake, test_key_path,
};
use dbt_activate_e2e::{Project, RunOutput, sorted, syncs};
use serde_json::{Value, json};

use crate::common::*;

/// activate.yml with `crm` pointed at the fake on the ci target; `extra` adds keys to it.
fn point_crm_at_fake(p: &Project, extra: &str) {
    let yml = format!(
        r#"destinations:
  crm:       {{type: file, path: "synced/crm", format: jsonl}}
  cs_tool:   {{type: file, path: "synced/cs_tool", format: jsonl}}
  marketing: {{type: file, path: "synced/marketing", format: csv}}
  billing:   {{type: file, path: "synced/billing", format: jsonl}}
  alerts:    {{type: file, path: "synced/alerts", format: jsonl}}
targets:
  ci:
    destinations:
      crm:
        type: salesforce
        login_url: "{{{{ env_var('SF_LOGIN_URL') }}}}"
        client_id: "{{{{ env_var('SF_CLIENT_ID') }}}}"
        requests_per_second: 10
        bulk_poll_interval_ms: 50
        max_retries: 3
{extra}"#
    );
    p.write_file("activate.yml", &yml);
}

const CLIENT_CREDENTIALS: &str = "        client_secret: \"{{ env_var('SF_CLIENT_SECRET') }}\"\n";

fn leads_run(p: &Project, fake: &SalesforceFake) -> RunOutput {
    p.activate_cmd(&["run", "--target", "ci", "--select", "enriched_leads"])
        .env("SF_LOGIN_URL", &fake.url())
        .env("SF_CLIENT_ID", CLIENT_ID)
        .env("SF_CLIENT_SECRET", CLIENT_SECRET)
        .env("SF_REFRESH_TOKEN", REFRESH_TOKEN)
        .run()
}

/// What the org holds in Lead, in the shape of [`leads_model`].
fn leads_in_org(fake: &SalesforceFake) -> Rows {
    let text = |r: &serde_json::Map<String, Value>, k: &str| match r.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    sorted(
        fake.records("Lead")
            .iter()
            .map(|r| {
                vec![
                    text(r, "Email"),
                    text(r, "Company"),
                    text(r, "Lead_Score__c"),
                    text(r, "Features_Used__c"),
                    // 2025-01-06T09:00:00.000Z → 2025-01-06 09:00:00
                    text(r, "Last_Product_Activity__c").map(|t| t[..19].replace('T', " ")),
                    text(r, "LeadSource"),
                ]
            })
            .collect(),
    )
}

/// The model's rows as Salesforce should hold them (lists as multi-select picklist text).
fn leads_model(p: &Project) -> Rows {
    sorted(p.duck(
        "select email, company, lead_score, nullif(array_to_string(features_used, ';'), ''),
                    strftime(timezone('UTC', last_active_at), '%Y-%m-%d %H:%M:%S'), 'dbt-activate'
             from main.enriched_leads",
    ))
}

fn model_emails(p: &Project, filter: &str) -> Vec<String> {
    p.duck(&format!(
        "select email from main.enriched_leads where {filter} order by email"
    ))
    .into_iter()
    .filter_map(|r| r[0].clone())
    .collect()
}

/// Requests that wrote records (collections or bulk), not logins, describes or queries.
fn writes(fake: &SalesforceFake) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.contains("/composite/sobjects") || r.path.contains("/jobs/ingest"))
        .count()
}

#[track_caller]
fn assert_within_limits(fake: &SalesforceFake) {
    assert!(
        fake.largest_collection() <= 200,
        "a collection request carried {} records",
        fake.largest_collection()
    );
    assert_eq!(fake.throttled(), 0, "no request may exceed the rate limit");
    for r in fake.requests() {
        assert_ne!(r.status, 400, "a refused request: {} {}", r.method, r.path);
    }
}

/// Sets `operation` / `sync_mode` of enriched_leads' activation and rebuilds the project.
fn edit_activation(p: &Project, lines: &str) {
    p.replace_in_file(
        "models/marts/schema.yml",
        "          primary_key: email\n",
        &format!("          primary_key: email\n{lines}"),
    );
    p.dbt_build();
}

#[test]
fn salesforce_upsert_lands_every_lead_and_a_rerun_sends_nothing() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, CLIENT_CREDENTIALS);
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "success");
    assert_counts(&r, 30, 0, 0);
    assert_eq!(leads_in_org(&fake), leads_model(&p));
    assert_within_limits(&fake);
    let upserts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/composite/sobjects/Lead/Email"))
        .collect();
    assert_eq!(upserts.len(), 1, "30 records fit one collection call");
    let body = upserts[0].json();
    assert_eq!(body["allOrNone"], false);
    assert_eq!(body["records"][0]["attributes"]["type"], "Lead");
    assert!(
        upserts[0]
            .header("authorization")
            .is_some_and(|h| h.starts_with("Bearer ")),
        "bearer token"
    );
    assert_eq!(fake.bulk_jobs(), 0, "below bulk_threshold: no Bulk API job");

    let before = writes(&fake);
    let out = leads_run(&p, &fake);
    out.assert_success();
    assert_counts(&p.result(syncs::LEADS), 0, 0, 0);
    assert_eq!(writes(&fake), before, "a rerun sends nothing");
    assert_eq!(fake.records("Lead").len(), 30);
}

#[test]
fn salesforce_bulk_api_job_above_the_threshold_with_refresh_token_and_failed_rows() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(
        &p,
        "        refresh_token: \"{{ env_var('SF_REFRESH_TOKEN') }}\"\n        bulk_threshold: 10\n",
    );
    let acme = model_emails(&p, "lead_score = 'warm'");
    assert!(!acme.is_empty());
    fake.reject_when(
        "Lead",
        "Lead_Score__c",
        json!("warm"),
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Warm leads need a campaign",
    );
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), acme.len() as u64, "{r:#}");
    assert_counts(&r, 30 - acme.len() as u64, 0, 0);
    let rejections = r["rejections"].as_array().expect("rejections");
    for x in rejections {
        let reason = x["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION:Warm leads need a campaign"),
            "the sf__Error of the failed results file: {reason}"
        );
    }
    let mut rejected_keys: Vec<String> = rejections
        .iter()
        .map(|x| rejection_key(x)[0].as_str().unwrap_or_default().to_owned())
        .collect();
    rejected_keys.sort();
    assert_eq!(rejected_keys, acme);
    assert_eq!(
        fake.bulk_jobs(),
        1,
        "30 rows > bulk_threshold 10: one ingest job"
    );
    assert_eq!(fake.collection_calls(), 0);
    let grant = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/services/oauth2/token")
        .expect("a token request");
    assert!(String::from_utf8_lossy(&grant.body).contains("grant_type=refresh_token"));

    fake.clear_rules();
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "success");
    assert_counts(&r, acme.len() as u64, 0, 0);
    assert_eq!(leads_in_org(&fake), leads_model(&p));
    assert_eq!(
        fake.bulk_jobs(),
        1,
        "the retried rows are below the threshold: a collection call"
    );
    assert_within_limits(&fake);
}

#[test]
fn salesforce_per_record_errors_are_rejects_retried_next_run() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, &format!("{CLIENT_CREDENTIALS}        batch_size: 7\n"));
    let hot = model_emails(&p, "lead_score = 'hot'");
    assert!(!hot.is_empty());
    fake.reject_when(
        "Lead",
        "Lead_Score__c",
        json!("hot"),
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Hot leads need an owner",
    );
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), hot.len() as u64);
    assert!(
        r["rejections"]
            .as_array()
            .expect("rejections")
            .iter()
            .all(|x| x["reason"].as_str().is_some_and(
                |s| s.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION: Hot leads need an owner")
            )),
        "{r:#}"
    );
    assert_eq!(
        fake.records("Lead").len(),
        30 - hot.len(),
        "the good rows landed"
    );
    assert!(fake.largest_collection() <= 7, "batch_size is honoured");
    assert_eq!(fake.collection_calls(), 5, "30 rows, 7 a call");

    fake.clear_rules();
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "success");
    assert_counts(&r, hot.len() as u64, 0, 0);
    assert_eq!(leads_in_org(&fake), leads_model(&p));
    assert_within_limits(&fake);
}

#[test]
fn salesforce_a_request_refused_for_one_record_is_split_so_the_good_rows_land() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, CLIENT_CREDENTIALS);
    let bad = model_emails(&p, "true").remove(7);
    fake.refuse_request_when("Email", json!(bad));
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "warn");
    assert_counts(&r, 29, 0, 0);
    assert_eq!(count(&r, "rejected"), 1);
    let rejection = &r["rejections"][0];
    assert_eq!(rejection_key(rejection)[0], json!(bad));
    assert!(
        rejection["reason"]
            .as_str()
            .is_some_and(|s| s.contains("HTTP 400 JSON_PARSER_ERROR")),
        "{r:#}"
    );
    assert_eq!(fake.records("Lead").len(), 29, "the good rows landed");
    let refused = fake.requests().iter().filter(|r| r.status == 400).count();
    assert!(
        (2..=10).contains(&refused),
        "halving isolates one record in about log2(30) refusals, got {refused}"
    );

    fake.clear_rules();
    let out = leads_run(&p, &fake);
    out.assert_success();
    assert_counts(&p.result(syncs::LEADS), 1, 0, 0);
    assert_eq!(leads_in_org(&fake), leads_model(&p));
}

#[test]
fn salesforce_update_only_updates_existing_leads_and_rejects_missing_ones() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, CLIENT_CREDENTIALS);
    edit_activation(&p, "          operation: update\n");
    let existing: Vec<String> = model_emails(&p, "true").into_iter().take(5).collect();
    for email in &existing {
        fake.insert(
            "Lead",
            json!({"Email": email, "Company": "Old Co", "LastName": "Kept"}),
        );
    }
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 25, "{r:#}");
    assert!(
        r["rejections"]
            .as_array()
            .expect("rejections")
            .iter()
            .all(|x| x["reason"]
                .as_str()
                .is_some_and(|s| s.starts_with("NOT_FOUND: no Lead has Email = "))),
        "{r:#}"
    );
    assert_eq!(fake.records("Lead").len(), 5, "update never creates");
    let model: Rows = leads_model(&p)
        .into_iter()
        .filter(|row| row[0].as_ref().is_some_and(|e| existing.contains(e)))
        .collect();
    assert_eq!(leads_in_org(&fake), model);
    assert!(
        fake.records("Lead").iter().all(|r| r["LastName"] == "Kept"),
        "unmapped fields stay"
    );
    assert!(fake.queries() >= 1, "external ids resolved to Ids by SOQL");
    assert_within_limits(&fake);
}

/// Salesforce commits a collection call, then the connection drops before the answer: the
/// client sees a connection error and resends it; the upsert by external id (Email) makes the
/// resent call update what the first one created, so every lead exists exactly once.
#[test]
fn salesforce_commit_then_drop_upserts_every_lead_exactly_once() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    // Seven records a call: five collection calls, every second one dropped after its commit.
    point_crm_at_fake(&p, &format!("{CLIENT_CREDENTIALS}        batch_size: 7\n"));
    fake.drop_after_commit_every(2);
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0, "{r:#}");
    assert!(
        fake.requests().iter().any(|q| q.dropped),
        "a collection call was dropped after its commit"
    );
    let mut per_key = std::collections::BTreeMap::<String, usize>::new();
    for lead in fake.records("Lead") {
        let email = lead
            .get("Email")
            .and_then(Value::as_str)
            .unwrap_or_default();
        *per_key.entry(email.to_owned()).or_default() += 1;
    }
    assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
    assert_eq!(leads_in_org(&fake), leads_model(&p));
    // Nothing reported delivered that the org does not hold. The resent upsert finds the
    // records the lost call created, so they may be counted as updated rather than inserted.
    assert_eq!(count(&r, "inserted") + count(&r, "updated"), 30, "{r:#}");
    assert_eq!(fake.records("Lead").len(), 30);
    assert_within_limits(&fake);

    let before = writes(&fake);
    let out = leads_run(&p, &fake);
    out.assert_success();
    assert_counts(&p.result(syncs::LEADS), 0, 0, 0);
    assert_eq!(writes(&fake), before, "a rerun sends nothing");
    assert_eq!(leads_in_org(&fake), leads_model(&p));
}

#[test]
fn salesforce_insert_only_rejects_existing_keys() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, CLIENT_CREDENTIALS);
    edit_activation(&p, "          operation: insert\n");
    let taken = model_emails(&p, "true").remove(0);
    fake.insert("Lead", json!({"Email": taken, "Company": "Already here"}));
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "warn");
    assert_counts(&r, 29, 0, 0);
    assert_eq!(count(&r, "rejected"), 1);
    let rejection = &r["rejections"][0];
    assert_eq!(rejection_key(rejection)[0], json!(taken));
    assert!(
        rejection["reason"]
            .as_str()
            .is_some_and(|s| s.contains("DUPLICATE_VALUE")),
        "{r:#}"
    );
    assert_eq!(fake.records("Lead").len(), 30);
    assert_within_limits(&fake);
}

#[test]
fn salesforce_mirror_deletes_leads_that_left_the_model() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, CLIENT_CREDENTIALS);
    p.replace_in_file(
        "models/marts/schema.yml",
        "          sync_mode: incremental          # no cursor: changed rows by diff\n",
        "          sync_mode: mirror\n          on_delete: delete\n",
    );
    p.dbt_build();
    // Someone else's lead, never synced by dbt-activate: mirror must not touch it.
    fake.insert(
        "Lead",
        json!({"Email": "someone@else.example", "Company": "Other"}),
    );
    let out = leads_run(&p, &fake);
    out.assert_success();
    assert_counts(&p.result(syncs::LEADS), 30, 0, 0);

    p.edit_seed("leads", |csv| {
        let lines: Vec<&str> = csv.lines().collect();
        lines[..lines.len() - 3].join("\n") + "\n"
    });
    p.dbt_build();
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "success");
    assert_counts(&r, 0, 0, 3);
    let mut org = leads_in_org(&fake);
    org.retain(|row| row[0].as_deref() != Some("someone@else.example"));
    assert_eq!(org, leads_model(&p));
    assert_eq!(fake.records("Lead").len(), 28);
    let deletes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(
        deletes.len(),
        1,
        "one DELETE composite/sobjects?ids=.. call"
    );
    assert_within_limits(&fake);
}

#[test]
fn salesforce_429_with_retry_after_is_honoured() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    fake.set_rate_limit(3);
    point_crm_at_fake(&p, &format!("{CLIENT_CREDENTIALS}        batch_size: 5\n"));
    // Our limiter allows 10 calls a second; the org only 3: it answers 429 + Retry-After.
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "success");
    assert_counts(&r, 30, 0, 0);
    assert!(fake.throttled() > 0, "the org throttled some calls");
    assert_eq!(
        leads_in_org(&fake),
        leads_model(&p),
        "every row exactly once"
    );
    let throttled: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .collect();
    assert!(
        throttled
            .iter()
            .all(|r| r.path.starts_with("/services/data/"))
    );
}

#[test]
fn salesforce_daily_api_limit_stops_the_sync_cleanly() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    // describe + two collection calls, then Sforce-Limit-Info says api-usage=3/3.
    fake.set_daily_limit(3);
    // One call at a time: each answer's Sforce-Limit-Info is read before the next call.
    point_crm_at_fake(
        &p,
        &format!("{CLIENT_CREDENTIALS}        batch_size: 7\n        concurrency: 1\n"),
    );
    let out = leads_run(&p, &fake);
    out.assert_code(1);
    let r = p.result(syncs::LEADS);
    assert_status(&r, "error");
    assert!(
        message(&r).contains("daily api request limit is reached (3/3"),
        "{r:#}"
    );
    assert_eq!(fake.records("Lead").len(), 14, "two calls of 7 landed");
    assert!(
        fake.requests().iter().all(|r| r.status != 403),
        "the sync stopped before Salesforce had to refuse a call"
    );

    fake.set_daily_limit(15_000);
    let out = leads_run(&p, &fake);
    out.assert_success();
    assert_status(&p.result(syncs::LEADS), "success");
    assert_eq!(
        leads_in_org(&fake),
        leads_model(&p),
        "upserts by Email: no duplicates"
    );
}

#[test]
fn salesforce_unknown_mapped_field_fails_preflight_and_bad_credentials_fail_cleanly() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, CLIENT_CREDENTIALS);
    // A typo in the mapping, as `dbt parse` would write it (saves a dbt build).
    p.edit_file("target/manifest.json", |m| {
        m.replace(
            "\"lead_score\": \"Lead_Score__c\"",
            "\"lead_score\": \"Lead_Scor__c\"",
        )
    });
    let out = leads_run(&p, &fake);
    out.assert_code(2);
    out.assert_contains("Lead_Scor__c")
        .assert_contains("does not exist");
    out.assert_contains("did you mean `Lead_Score__c`");
    assert_eq!(writes(&fake), 0, "nothing is sent");
    assert_eq!(fake.records("Lead").len(), 0);

    let out = p
        .activate_cmd(&["run", "--target", "ci", "--select", "enriched_leads"])
        .env("SF_LOGIN_URL", &fake.url())
        .env("SF_CLIENT_ID", CLIENT_ID)
        .env("SF_CLIENT_SECRET", "wrong-secret-value")
        .run();
    assert_ne!(out.code, 0);
    out.assert_contains("invalid_client");
    assert!(!out.text().contains("wrong-secret-value"), "{out}");
}

#[test]
fn salesforce_secrets_never_appear_in_output_results_or_state() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, CLIENT_CREDENTIALS);
    fake.reject_when(
        "Lead",
        "Lead_Score__c",
        json!("cold"),
        "INVALID_FIELD",
        "cold",
    );
    let mut outputs = vec![leads_run(&p, &fake)];
    outputs[0].assert_success();
    outputs.push(
        p.activate_cmd(&["debug", "--target", "ci"])
            .env("SF_LOGIN_URL", &fake.url())
            .env("SF_CLIENT_ID", CLIENT_ID)
            .env("SF_CLIENT_SECRET", CLIENT_SECRET)
            .run(),
    );
    outputs.push(
        p.activate_cmd(&[
            "run",
            "--target",
            "ci",
            "--select",
            "enriched_leads",
            "--log-format",
            "json",
        ])
        .env("SF_LOGIN_URL", &fake.url())
        .env("SF_CLIENT_ID", CLIENT_ID)
        .env("SF_CLIENT_SECRET", CLIENT_SECRET)
        .env("RUST_LOG", "debug")
        .run(),
    );
    let tokens: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|r| {
            r.header("authorization")
                .map(|h| h.trim_start_matches("Bearer ").to_owned())
        })
        .collect();
    assert!(!tokens.is_empty());
    let mut secrets = vec![CLIENT_SECRET.to_owned()];
    secrets.extend(tokens);
    let outputs: Vec<&RunOutput> = outputs.iter().collect();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_secrets_never_written(&p, &outputs, &secrets);
}

/// Every Lead's Email, with how many records hold it.
fn leads_per_email(fake: &SalesforceFake) -> std::collections::BTreeMap<String, usize> {
    fake.records("Lead")
        .iter()
        .fold(Default::default(), |mut m, lead| {
            let email = lead
                .get("Email")
                .and_then(Value::as_str)
                .unwrap_or_default();
            *m.entry(email.to_owned()).or_default() += 1;
            m
        })
}

/// Insert-only has no external-id upsert to make a resent call harmless: the resent create
/// meets `DUPLICATE_VALUE` on the records the lost call created. The destination then reads
/// those records back (SOQL) and, as each holds exactly its row, confirms them: every lead is
/// in the org once, and every row is reported inserted, none rejected.
#[test]
fn salesforce_insert_only_commit_then_drop_confirms_the_rows_whose_answer_was_lost() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, &format!("{CLIENT_CREDENTIALS}        batch_size: 7\n"));
    edit_activation(&p, "          operation: insert\n");
    fake.drop_after_commit_every(2);
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    let dropped = fake.requests().iter().filter(|q| q.dropped).count();
    assert!(
        dropped >= 2,
        "collection calls dropped after their commit: {dropped}"
    );
    let creates = fake
        .requests()
        .iter()
        .filter(|q| q.method == "POST" && q.path.ends_with("/composite/sobjects"))
        .count();
    assert!(
        creates > 5,
        "30 rows in 5 calls, and the dropped ones resent: {creates}"
    );
    assert!(leads_per_email(&fake).values().all(|n| *n == 1));
    assert_eq!(leads_in_org(&fake), leads_model(&p));
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0, "{r:#}");
    assert_counts(&r, 30, 0, 0);
    assert!(
        fake.queries() >= 1,
        "the duplicates were read back with SOQL"
    );

    let before = writes(&fake);
    let out = leads_run(&p, &fake);
    out.assert_success();
    assert_counts(&p.result(syncs::LEADS), 0, 0, 0);
    assert_eq!(writes(&fake), before, "a rerun sends nothing");
    assert_eq!(fake.records("Lead").len(), 30, "a rerun duplicates nothing");
}

/// The answer is lost and the run gives up on the batch (no retries): its rows are not
/// confirmed. The next run sends them again, meets `DUPLICATE_VALUE`, finds the records hold
/// exactly the rows, and confirms them, instead of rejecting them forever. A record that was
/// already there with other values stays a reject with Salesforce's reason.
#[test]
fn salesforce_insert_only_lost_answer_is_confirmed_next_run_not_rejected_forever() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(&p, &format!("{CLIENT_CREDENTIALS}        batch_size: 7\n"));
    p.replace_in_file("activate.yml", "max_retries: 3", "max_retries: 0");
    edit_activation(&p, "          operation: insert\n");
    let taken = model_emails(&p, "true").remove(29);
    fake.insert("Lead", json!({"Email": taken, "Company": "Someone else's"}));
    fake.drop_after_commit_every(2);
    let out = leads_run(&p, &fake);
    let r = p.result(syncs::LEADS);
    assert_ne!(out.code, 0, "{out}");
    assert_status(&r, "error");
    assert!(fake.requests().iter().any(|q| q.dropped));
    let landed = fake.records("Lead").len();
    assert!(
        landed > 7,
        "the dropped call was committed: {landed} records"
    );

    fake.clear_faults();
    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 1, "{r:#}");
    let rejection = &r["rejections"][0];
    assert_eq!(rejection_key(rejection)[0], json!(taken));
    assert!(
        rejection["reason"]
            .as_str()
            .is_some_and(|s| s.contains("DUPLICATE_VALUE")),
        "{r:#}"
    );
    assert!(leads_per_email(&fake).values().all(|n| *n == 1));
    let mut org = leads_in_org(&fake);
    org.retain(|row| row[0].as_deref() != Some(taken.as_str()));
    let mut model = leads_model(&p);
    model.retain(|row| row[0].as_deref() != Some(taken.as_str()));
    assert_eq!(
        org, model,
        "every other lead landed once, as the model has it"
    );

    let out = leads_run(&p, &fake);
    out.assert_success();
    let r = p.result(syncs::LEADS);
    assert_counts(&r, 0, 0, 0);
    assert_eq!(
        count(&r, "rejected"),
        1,
        "only the other record's key is retried and refused"
    );
}

/// The OAuth 2.0 JWT bearer flow: the connected app's private key (PEM text from an
/// environment variable, PKCS #1) signs an RS256 assertion that the fake verifies with the
/// public key; the rows land. The same run with a key the connected app does not hold (a
/// file, PKCS #8) stops before anything is sent, with Salesforce's `invalid_grant` and exit
/// code 2. Neither key's text is ever printed or written.
#[test]
fn salesforce_jwt_bearer_flow_lands_rows_and_a_wrong_key_fails_cleanly() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    point_crm_at_fake(
        &p,
        "        username: \"{{ env_var('SF_USERNAME') }}\"\n        private_key: \"{{ env_var('SF_PRIVATE_KEY', '') }}\"\n        private_key_path: \"{{ env_var('SF_PRIVATE_KEY_PATH', '') }}\"\n",
    );
    let key = std::fs::read_to_string(test_key_path("salesforce-jwt-test.pkcs1.key"))
        .expect("the test-only key");
    let jwt_run = |extra: &[(&str, &str)]| {
        let mut cmd = p
            .activate_cmd(&["run", "--target", "ci", "--select", "enriched_leads"])
            .env("SF_LOGIN_URL", &fake.url())
            .env("SF_CLIENT_ID", CLIENT_ID)
            .env("SF_USERNAME", JWT_USERNAME);
        for (k, v) in extra {
            cmd = cmd.env(k, v);
        }
        cmd.run()
    };
    let good = jwt_run(&[("SF_PRIVATE_KEY", &key)]);
    good.assert_success();
    let r = p.result(syncs::LEADS);
    assert_status(&r, "success");
    assert_counts(&r, 30, 0, 0);
    assert_eq!(leads_in_org(&fake), leads_model(&p));
    let grants: Vec<String> = fake
        .requests()
        .iter()
        .filter(|q| q.path == "/services/oauth2/token")
        .map(|q| String::from_utf8_lossy(&q.body).into_owned())
        .collect();
    assert_eq!(grants.len(), 1, "one token per run");
    assert!(
        grants[0].starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
        ),
        "{}",
        grants[0]
    );
    assert!(!grants[0].contains("client_secret"));

    // A key the connected app does not hold: Salesforce's invalid_grant, nothing sent.
    let before = writes(&fake);
    let wrong_path = test_key_path("salesforce-jwt-wrong.key");
    let wrong = jwt_run(&[(
        "SF_PRIVATE_KEY_PATH",
        wrong_path.to_str().expect("utf-8 path"),
    )]);
    wrong.assert_code(2);
    wrong
        .assert_contains("invalid_grant: invalid assertion")
        .assert_contains("certificate of this private key");
    assert_eq!(writes(&fake), before, "nothing is sent with a refused key");
    let refused = fake
        .requests()
        .into_iter()
        .rev()
        .find(|q| q.path == "/services/oauth2/token")
        .expect("a token request");
    assert_eq!(refused.status, 400);

    // Neither key's text, nor any assertion, appears anywhere.
    let wrong_key = std::fs::read_to_string(&wrong_path).expect("the wrong key");
    let mut secrets: Vec<String> = [&key, &wrong_key]
        .iter()
        .flat_map(|pem| {
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_owned)
        })
        .collect();
    secrets.extend(
        grants
            .iter()
            .map(|g| g.rsplit('=').next().unwrap_or_default().to_owned()),
    );
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_secrets_never_written(&p, &[&good, &wrong], &secrets);
}
