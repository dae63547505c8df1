//! The three sync modes against real destinations: first run, rerun, changes,
//! duplicate keys, rejected rows, breakers, reset.

use dbt_activate_e2e::{Project, syncs};
use serde_json::json;

use crate::common::*;

#[test]
fn first_run_lands_every_row() {
    let p = Project::new();
    let out = run_ci(&p);
    out.assert_success();
    out.assert_contains("Done. PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");
    for (model, to, rows) in [
        ("enriched_leads", "crm.Lead", 30),
        ("churn_risk", "cs_tool.companies", 30),
        ("high_value_at_risk", "marketing.high_value_at_risk", 7),
        ("billing_usage", "billing.usage_records", 38),
        ("churn_alerts", "alerts.cs-alerts", 7),
    ] {
        let line = sync_line(&out, &format!("OK synced {model} -> {to} "));
        assert!(
            line.contains(&format!("[+{rows} ~0 -0")),
            "expected [+{rows} ~0 -0 ...] in {line:?}"
        );
    }

    // enriched_leads -> crm."Lead": every row, every mapped value.
    let leads = leads_in_postgres(&p);
    assert_eq!(leads.len(), 30);
    assert_eq!(leads, leads_in_model(&p));
    // Types: a LIST lands as a jsonb array, a TIMESTAMPTZ as the same instant, a literal as text.
    assert_eq!(
        p.pg_rows(
            r#"select jsonb_typeof("Features_Used__c"), "Features_Used__c"->>0,
                      to_char("Last_Product_Activity__c" at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                      "LeadSource", "Lead_Score__c", "Company"
               from crm."Lead" where "Email" = 'ava.martin@northwind.io'"#
        ),
        vec![["array", "dashboards", "2025-03-01 00:00:00", "dbt-activate", "hot", "Northwind"].map(|s| Some(s.to_owned())).to_vec()]
    );
    // A lead without product usage: an empty list and a NULL timestamp, not a text "null".
    let no_usage = p.duck(
        "select email from main.enriched_leads where last_active_at is null order by email limit 1",
    );
    let email = no_usage[0][0]
        .clone()
        .expect("the example has leads without usage");
    assert_eq!(
        p.pg_rows(&format!(
            r#"select "Features_Used__c"::text, "Last_Product_Activity__c" is null from crm."Lead" where "Email" = '{email}'"#
        )),
        vec![vec![Some("[]".to_owned()), Some("t".to_owned())]]
    );

    // high_value_at_risk -> marketing.high_value_at_risk (mirror).
    let segment = segment_in_postgres(&p);
    assert_eq!(segment.len(), 7);
    assert_eq!(segment, segment_in_model(&p));

    // churn_alerts -> the webhook: one request (batch_size 50), every alert.
    let requests = p.webhook.requests();
    assert!(!requests.is_empty(), "the webhook received nothing");
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hooks/activate");
        assert!(
            r.header("content-type")
                .is_some_and(|v| v.contains("application/json")),
            "content-type of {r:?}"
        );
        assert_eq!(
            r.header("x-activate-signature"),
            None,
            "no secret, no signature"
        );
        let body = r.json();
        assert_eq!(
            body["sync"],
            "sync.activate_example.churn_alerts__alerts__cs_alerts"
        );
        assert_eq!(body["object"], "cs-alerts");
        assert_eq!(body["operation"], "insert");
    }
    assert_eq!(
        requests.len(),
        1,
        "7 alerts with batch_size 50 are one request"
    );
    let alerts = alerts_from_records(&p.webhook.accepted_records());
    assert_eq!(alerts.len(), 7);
    assert_eq!(alerts, alerts_in_model(&p));

    // churn_risk -> synced/cs_tool/companies.jsonl, billing_usage -> synced/billing/usage_records.jsonl.
    assert_eq!(companies_in_file(&p), companies_in_model(&p));
    assert_eq!(usage_in_file(&p), usage_in_model(&p));
    // Decimals keep their scale in JSON (DECIMAL(12,2) 2909.00 -> 2909.00).
    let companies = p.read_file("synced/cs_tool/companies.jsonl");
    let acc_004 = companies
        .lines()
        .find(|l| l.contains("\"acc_004\""))
        .expect("acc_004 in companies.jsonl");
    assert!(
        acc_004.contains("2909.00"),
        "DECIMAL(12,2) must be sent with its 2 decimals: {acc_004}"
    );

    // activate_results.json
    let json = p.results_json();
    assert!(
        json["metadata"]["invocation_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{:#}",
        json["metadata"]
    );
    assert!(json["metadata"]["generated_at"].is_string());
    assert!(json["metadata"]["dbt_activate_version"].is_string());
    let results = p.results();
    assert_eq!(
        results.keys().map(String::as_str).collect::<Vec<_>>(),
        sorted_names(&syncs::ALL)
    );
    for (name, model, destination, object, mode, rows) in [
        (
            syncs::LEADS,
            "enriched_leads",
            "crm",
            "Lead",
            "incremental",
            30,
        ),
        (
            syncs::CHURN_RISK,
            "churn_risk",
            "cs_tool",
            "companies",
            "incremental",
            30,
        ),
        (
            syncs::HIGH_VALUE,
            "high_value_at_risk",
            "marketing",
            "high_value_at_risk",
            "mirror",
            7,
        ),
        (
            syncs::BILLING,
            "billing_usage",
            "billing",
            "usage_records",
            "incremental",
            38,
        ),
        (
            syncs::ALERTS,
            "churn_alerts",
            "alerts",
            "cs-alerts",
            "incremental",
            7,
        ),
    ] {
        let r = &results[name];
        assert_eq!(r["unique_id"], format!("sync.activate_example.{name}"));
        assert_eq!(r["model"], format!("model.activate_example.{model}"));
        assert_eq!(r["destination"], destination);
        assert_eq!(r["object"], object);
        assert_eq!(r["sync_mode"], mode);
        assert_status(r, "success");
        assert_counts(r, rows, 0, 0);
        assert_eq!(count(r, "rejected"), 0);
        assert_eq!(count(r, "cleared"), 0);
        assert!(r["rejections"].as_array().is_some_and(Vec::is_empty));
        assert!(r["execution_time"].as_f64().is_some_and(|t| t >= 0.0));
    }
}

fn sorted_names(names: &[&'static str]) -> Vec<&'static str> {
    let mut v = names.to_vec();
    v.sort();
    v
}

#[test]
fn rerun_sends_nothing() {
    let p = Project::new();
    run_ci(&p).assert_success();
    let requests = p.webhook.request_count();
    let leads = leads_in_postgres(&p);
    let segment = segment_in_postgres(&p);
    let files: Vec<String> = [
        "synced/cs_tool/companies.jsonl",
        "synced/billing/usage_records.jsonl",
    ]
    .iter()
    .map(|f| p.read_file(f))
    .collect();

    let out = run_ci(&p);
    out.assert_success();
    out.assert_contains("Done. PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");
    for (name, r) in p.results() {
        assert_status(&r, "success");
        assert_counts(&r, 0, 0, 0);
        assert_eq!(count(&r, "rejected"), 0, "{name}");
    }
    for model in [
        "enriched_leads",
        "churn_risk",
        "high_value_at_risk",
        "billing_usage",
        "churn_alerts",
    ] {
        let line = sync_line(&out, &format!("OK synced {model} -> "));
        assert!(
            line.contains("[+0 ~0 -0"),
            "a rerun sends nothing: {line:?}"
        );
    }
    assert_eq!(
        p.webhook.request_count(),
        requests,
        "a rerun must not call the webhook"
    );
    assert_eq!(leads_in_postgres(&p), leads);
    assert_eq!(segment_in_postgres(&p), segment);
    let files_after: Vec<String> = [
        "synced/cs_tool/companies.jsonl",
        "synced/billing/usage_records.jsonl",
    ]
    .iter()
    .map(|f| p.read_file(f))
    .collect();
    assert_eq!(files_after, files);
}

#[test]
fn changes_send_exactly_the_changed_rows() {
    let p = Project::new();
    run_ci(&p).assert_success();
    let requests_before = p.webhook.request_count();

    // enriched_leads: noah's score drops (warm -> cold), ava's page views change
    // without changing anything mapped, and a new lead arrives.
    p.edit_seed("product_usage", |s| {
        s.replace(
            "noah.schmidt@kaufwerk.de,97,",
            "noah.schmidt@kaufwerk.de,40,",
        )
        .replace(
            "ava.martin@northwind.io,182,",
            "ava.martin@northwind.io,190,",
        )
    });
    p.edit_seed("leads", |s| {
        s + "zoe.new@newco.io,NewCo,Zoe,New,US,2025-03-10 10:00:00\n"
    });
    // accounts: Massive Dynamic (acc_020) leaves (so it leaves the segment), Tyrell's
    // (acc_012) mrr changes, and Wayne Enterprises joins at high risk (segment + alert).
    p.edit_seed("accounts", |s| {
        let s: String = s
            .lines()
            .filter(|l| !l.starts_with("acc_020,"))
            .map(|l| format!("{l}\n"))
            .collect();
        s.replace(",5342.50,", ",5400.00,")
            + "acc_031,Wayne Enterprises,bruce.hart@example-saas.com,enterprise,4200.00,10,50,9\n"
    });
    p.dbt_build();

    // `plan` shows the work and sends nothing.
    let plan = p.activate(&["plan", "--target", "ci"]);
    plan.assert_success();
    plan.assert_contains(syncs::LEADS);
    plan.assert_contains(syncs::HIGH_VALUE);
    assert_eq!(
        p.webhook.request_count(),
        requests_before,
        "plan must not call the webhook"
    );
    assert_eq!(
        p.pg_rows(
            r#"select "Lead_Score__c" from crm."Lead" where "Email" = 'noah.schmidt@kaufwerk.de'"#
        ),
        vec![vec![Some("warm".to_owned())]],
        "plan must not write to PostgreSQL"
    );

    let out = run_ci(&p);
    out.assert_success();
    out.assert_contains("Done. PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");
    let results = p.results();
    assert_counts(&results[syncs::LEADS], 1, 1, 0);
    assert_counts(&results[syncs::CHURN_RISK], 1, 1, 0);
    assert_counts(&results[syncs::HIGH_VALUE], 1, 1, 1);
    assert_counts(&results[syncs::ALERTS], 1, 0, 0);
    assert_counts(&results[syncs::BILLING], 0, 0, 0);
    assert!(sync_line(&out, "OK synced enriched_leads -> crm.Lead ").contains("[+1 ~1 -0"));
    assert!(
        sync_line(
            &out,
            "OK synced high_value_at_risk -> marketing.high_value_at_risk "
        )
        .contains("[+1 ~1 -1")
    );

    // The destinations now equal the new models.
    let leads = leads_in_postgres(&p);
    assert_eq!(leads.len(), 31);
    assert_eq!(leads, leads_in_model(&p));
    assert_eq!(
        p.pg_rows(r#"select "Lead_Score__c" from crm."Lead" where "Email" in ('noah.schmidt@kaufwerk.de', 'zoe.new@newco.io') order by 1"#),
        vec![vec![Some("cold".to_owned())], vec![Some("cold".to_owned())]]
    );
    let segment = segment_in_postgres(&p);
    assert_eq!(segment, segment_in_model(&p));
    let ids: Vec<_> = segment
        .iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert!(
        !ids.contains(&"acc_020".to_owned()) && ids.contains(&"acc_031".to_owned()),
        "{ids:?}"
    );
    assert_eq!(
        p.pg_rows(
            "select mrr::text from marketing.high_value_at_risk where account_id = 'acc_012'"
        ),
        vec![vec![Some("5400.00".to_owned())]]
    );

    // The webhook got exactly the new alert.
    let new_requests = &p.webhook.requests()[requests_before..];
    assert_eq!(new_requests.len(), 1, "one new alert is one request");
    assert_eq!(new_requests[0].json()["operation"], "insert");
    let new_alerts: Vec<_> = new_requests[0]
        .records()
        .iter()
        .map(|r| r["alert_id"].clone())
        .collect();
    assert_eq!(new_alerts, vec![json!("churn-acc_031")]);
    assert_eq!(
        alerts_from_records(&p.webhook.accepted_records()),
        alerts_in_model(&p)
    );

    // The CS tool (incremental, no deletes) holds the old accounts plus the new one.
    let companies = companies_in_file(&p);
    assert_eq!(companies.len(), 31);
    assert!(
        companies.iter().any(|r| r[0].as_deref() == Some("acc_020")),
        "incremental never deletes"
    );
    assert!(
        companies
            .iter()
            .any(|r| r[0].as_deref() == Some("acc_012") && r[4].as_deref() == Some("5400"))
    );
}

#[test]
fn duplicate_key_fails_before_any_write() {
    let p = Project::new();
    // Two leads whose emails differ only in case: one key after stg_leads lower-cases them.
    p.edit_seed("leads", |s| {
        s + "Ava.Martin@Northwind.io,Northwind,Ava,Martin,US,2025-02-01 09:00:00\n"
    });
    // Build without the data tests (which would catch it), so the sync itself must.
    p.dbt(&["build", "--target", "ci", "--exclude", "test_type:data"])
        .assert_success();
    assert_eq!(
        p.duck("select count(*) from main.enriched_leads where email = 'ava.martin@northwind.io'"),
        vec![vec![Some("2".to_owned())]]
    );

    let out = run_ci(&p);
    out.assert_code(1);
    out.assert_contains("Done. PASS=4 WARN=0 ERROR=2 SKIP=0 TOTAL=6");
    let leads = p.result(syncs::LEADS);
    assert_status(&leads, "error");
    let msg = message(&leads);
    assert!(
        msg.contains("duplicate") && msg.contains("ava.martin@northwind.io"),
        "the message names the duplicate key: {msg}"
    );
    assert_counts(&leads, 0, 0, 0);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("enriched_leads")),
        "an ERROR line for the sync\n{out}"
    );
    assert_eq!(
        p.pg.count(r#"crm."Lead""#),
        0,
        "nothing may be written for a model with duplicate keys"
    );
    // The query sync reads the same leads: it has the duplicate too.
    assert_status(&p.result(syncs::LEAD_SCORES), "error");
    // The other syncs ran.
    for name in [
        syncs::CHURN_RISK,
        syncs::HIGH_VALUE,
        syncs::BILLING,
        syncs::ALERTS,
    ] {
        assert_status(&p.result(name), "success");
    }
    assert_eq!(segment_in_postgres(&p), segment_in_model(&p));
}

#[test]
fn rejected_row_is_retried() {
    let p = Project::new();
    p.pg.execute(
        r#"ALTER TABLE crm."Lead" ADD CONSTRAINT no_northwind CHECK ("Company" <> 'Northwind')"#,
    );

    let out = run_ci(&p);
    out.assert_success();
    out.assert_contains("Done. PASS=5 WARN=1 ERROR=0 SKIP=0 TOTAL=6");
    out.assert_contains("no_northwind"); // a few rejections are printed with their reason
    assert!(sync_line(&out, "enriched_leads -> crm.Lead ").contains("1 rejected"));
    let leads = p.result(syncs::LEADS);
    assert_status(&leads, "warn");
    assert_counts(&leads, 29, 0, 0);
    assert_eq!(count(&leads, "rejected"), 1);
    let rejections = leads["rejections"].as_array().expect("rejections");
    assert_eq!(rejections.len(), 1, "{leads:#}");
    assert_eq!(
        rejection_key(&rejections[0]),
        json!(["ava.martin@northwind.io"])
    );
    assert!(
        rejections[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no_northwind")),
        "the reason is PostgreSQL's error: {}",
        rejections[0]
    );
    assert_eq!(
        p.pg.count(r#"crm."Lead""#),
        29,
        "the good rows of the batch landed"
    );
    assert_eq!(
        p.pg.count(r#"crm."Lead" where "Email" = 'ava.martin@northwind.io'"#),
        0
    );
    let requests = p.webhook.request_count();

    // Once the destination accepts it, the next run sends that row, and only it.
    p.pg.execute(r#"ALTER TABLE crm."Lead" DROP CONSTRAINT no_northwind"#);
    let out = run_ci(&p);
    out.assert_success();
    out.assert_contains("Done. PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");
    let leads = p.result(syncs::LEADS);
    assert_status(&leads, "success");
    assert_counts(&leads, 1, 0, 0);
    assert_eq!(count(&leads, "rejected"), 0);
    for name in [
        syncs::CHURN_RISK,
        syncs::HIGH_VALUE,
        syncs::BILLING,
        syncs::ALERTS,
    ] {
        assert_counts(&p.result(name), 0, 0, 0);
    }
    assert_eq!(p.webhook.request_count(), requests);
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));
}

#[test]
fn max_deletes_breaker_stops_the_mirror_before_any_write() {
    let p = Project::new();
    run_ci(&p).assert_success();
    assert_eq!(p.pg.count("marketing.high_value_at_risk"), 7);

    // 4 of the 7 accounts of the segment recover: a mirror would delete 57% of the
    // list, over its `max_deletes: "50%"`.
    p.edit_seed("accounts", |s| {
        s.lines()
            .map(|l| {
                let id = l.split(',').next().unwrap_or_default();
                if ["acc_002", "acc_004", "acc_005", "acc_012"].contains(&id) {
                    let f: Vec<&str> = l.split(',').collect();
                    format!("{},{},{},{},{},95,1,0\n", f[0], f[1], f[2], f[3], f[4])
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    });
    p.dbt_build();
    assert_eq!(
        p.duck("select count(*) from main.high_value_at_risk"),
        vec![vec![Some("3".to_owned())]]
    );

    let out = run_ci(&p);
    out.assert_code(1);
    let segment = p.result(syncs::HIGH_VALUE);
    assert_status(&segment, "error");
    assert!(
        message(&segment).contains("max_deletes"),
        "the message names the breaker: {segment:#}"
    );
    assert_counts(&segment, 0, 0, 0);
    assert_eq!(
        p.pg.count("marketing.high_value_at_risk"),
        7,
        "a tripped breaker writes nothing"
    );
    assert_status(&p.result(syncs::CHURN_RISK), "success");
}

#[test]
fn reset_and_full_refresh_resend_every_row() {
    let p = Project::new();
    run_ci(&p).assert_success();

    p.activate(&["reset", "--target", "ci", "--select", "enriched_leads"])
        .assert_success();
    run_ci(&p).assert_success();
    let leads = p.result(syncs::LEADS);
    assert_eq!(
        count(&leads, "inserted") + count(&leads, "updated"),
        30,
        "after reset every row is sent: {leads:#}"
    );
    assert_counts(&p.result(syncs::CHURN_RISK), 0, 0, 0);
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));

    p.activate(&[
        "run",
        "--target",
        "ci",
        "--full-refresh",
        "--select",
        "billing_usage",
    ])
    .assert_success();
    let billing = p.result(syncs::BILLING);
    assert_eq!(
        count(&billing, "inserted") + count(&billing, "updated"),
        38,
        "--full-refresh sends every row: {billing:#}"
    );
    assert_eq!(usage_in_file(&p), usage_in_model(&p));
}

#[test]
fn a_failed_sync_skips_the_syncs_downstream_of_it() {
    let p = Project::new();
    // The CS tool's folder cannot be created: churn_risk's sync fails when it writes.
    p.write_file("synced/cs_tool", "not a folder");
    let out = run_ci(&p);
    out.assert_code(1);
    out.assert_contains("Done. PASS=3 WARN=0 ERROR=1 SKIP=2 TOTAL=6");
    assert_status(&p.result(syncs::CHURN_RISK), "error");
    // high_value_at_risk and churn_alerts are built from churn_risk: their syncs wait for
    // its sync and are skipped when it fails.
    for name in [syncs::HIGH_VALUE, syncs::ALERTS] {
        let r = p.result(name);
        assert_status(&r, "skipped");
        assert!(
            message(&r).contains(&syncs::CHURN_RISK.to_lowercase()),
            "the reason names the failed sync: {r:#}"
        );
    }
    assert_eq!(p.pg.count("marketing.high_value_at_risk"), 0);
    assert_eq!(p.webhook.request_count(), 0);
    for name in [syncs::LEADS, syncs::BILLING] {
        assert_status(&p.result(name), "success");
    }
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));
}

#[test]
fn dev_target_writes_files_and_keeps_its_own_state() {
    let p = Project::new();
    run_ci(&p).assert_success();
    let requests = p.webhook.request_count();

    // The dev target sends everything to files, and does not reuse the ci state.
    let out = p.activate(&["run", "--target", "dev"]);
    out.assert_success();
    out.assert_contains("Done. PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");
    assert_counts(&p.result(syncs::LEADS), 30, 0, 0);
    assert_counts(&p.result(syncs::HIGH_VALUE), 7, 0, 0);
    assert_eq!(
        p.webhook.request_count(),
        requests,
        "dev never calls the ci webhook"
    );
    assert_eq!(p.pg.count(r#"crm."Lead""#), 30);

    let leads = p.synced_jsonl("crm", "Lead");
    assert_eq!(leads.len(), 30);
    let ava = leads
        .iter()
        .find(|r| r["Email"] == "ava.martin@northwind.io")
        .expect("ava in Lead.jsonl");
    assert_eq!(
        *ava,
        json!({
            "Email": "ava.martin@northwind.io",
            "Company": "Northwind",
            "Lead_Score__c": "hot",
            "Features_Used__c": ["dashboards", "alerts", "sso", "reports"],
            "Last_Product_Activity__c": "2025-03-01T00:00:00.000000Z",
            "LeadSource": "dbt-activate"
        })
    );
    let segment: Vec<Vec<Option<String>>> = p
        .synced_csv("marketing", "high_value_at_risk")
        .iter()
        .map(|r| {
            ["account_id", "email", "account_name", "mrr"]
                .iter()
                .map(|k| r.get(*k).cloned())
                .collect()
        })
        .collect();
    assert_eq!(dbt_activate_e2e::sorted(segment), segment_in_model(&p));
    assert_eq!(p.synced_jsonl("alerts", "cs-alerts").len(), 7);

    // Each target remembers its own syncs: a ci rerun still sends nothing.
    run_ci(&p).assert_success();
    for (_, r) in p.results() {
        assert_counts(&r, 0, 0, 0);
    }
}

#[test]
fn state_dir_flag_keeps_state_outside_the_project() {
    let p = Project::new();
    let state = tempfile::tempdir().expect("a temporary folder");
    let state_dir = state.path().display().to_string();
    p.activate(&["run", "--target", "ci", "--state-dir", &state_dir])
        .assert_success();
    assert!(
        !p.file(".dbt-activate").exists()
            || dbt_activate_e2e_files(&p.file(".dbt-activate")).is_empty()
    );
    assert!(
        std::fs::read_dir(state.path())
            .expect("the state dir")
            .next()
            .is_some(),
        "state was written to --state-dir"
    );

    p.activate(&["run", "--target", "ci", "--state-dir", &state_dir])
        .assert_success();
    for (_, r) in p.results() {
        assert_counts(&r, 0, 0, 0);
    }
    // The same state through the environment variable.
    p.activate_cmd(&["run", "--target", "ci"])
        .env("DBT_ACTIVATE_STATE_DIR", &state_dir)
        .run()
        .assert_success();
    assert_counts(&p.result(syncs::LEADS), 0, 0, 0);
}

fn dbt_activate_e2e_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
