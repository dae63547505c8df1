//! The hubspot destination end to end: the real binary against a stateful fake HubSpot
//! account (`dbt_activate_e2e::fakes::hubspot`), asserting what the account finally holds.

use std::time::Duration;

use dbt_activate_e2e::fakes::hubspot::{HubSpotFake, MAX_INPUTS};
use dbt_activate_e2e::{Project, RunOutput, num, sorted, syncs};

use crate::common::*;

/// Sync names once the custom objects replace the example's object names.
const ALERTS_SYNC: &str = "churn_alerts__alerts__p_cs_alerts";
const SEGMENT_SYNC: &str = "high_value_at_risk__marketing__p_high_value_at_risk";

const TOKEN: &str = "pat-na1-5d1c0ffe-9a7b-4e2d-b3c1-7f00d5ea7e11";

/// An `activate.yml` whose `names` destinations are this HubSpot fake (with `extra` keys),
/// the others local files.
fn activate_yml(p: &Project, names: &[&str], extra: &str) {
    let mut text = String::from("destinations:\n");
    for name in ["crm", "cs_tool", "marketing", "billing", "alerts"] {
        if names.contains(&name) {
            text.push_str(&format!(
                "  {name}: {{type: hubspot, access_token: \"{{{{ env_var('HUBSPOT_ACCESS_TOKEN') }}}}\", base_url: \"{{{{ env_var('HUBSPOT_BASE_URL') }}}}\"{extra}}}\n"
            ));
        } else {
            text.push_str(&format!(
                "  {name}: {{type: file, path: \"synced/{name}\", format: jsonl}}\n"
            ));
        }
    }
    p.write_file("activate.yml", &text);
}

fn run(p: &Project, fake: &HubSpotFake, token: &str, select: &str) -> RunOutput {
    p.activate_cmd(&["run", "--target", "ci", "--select", select])
        .env("HUBSPOT_ACCESS_TOKEN", token)
        .env("HUBSPOT_BASE_URL", &fake.base_url())
        .run()
}

/// A fake account with the custom company properties `churn_risk` maps to.
fn companies_account(risk_bands: &[&str]) -> HubSpotFake {
    let fake = HubSpotFake::start(TOKEN);
    fake.define_property("companies", "company_id", "string", true, &[]);
    fake.define_property("companies", "churn_risk_score", "number", false, &[]);
    fake.define_property("companies", "risk_band", "enumeration", false, risk_bands);
    fake.define_property("companies", "monthly_spend", "number", false, &[]);
    fake
}

fn companies_in_hubspot(fake: &HubSpotFake) -> Rows {
    sorted(
        fake.records("companies")
            .iter()
            .map(|r| {
                let get = |k: &str| r.get(k).cloned();
                vec![
                    get("company_id"),
                    get("name"),
                    get("churn_risk_score").map(|v| num(&v)),
                    get("risk_band"),
                    get("monthly_spend").map(|v| num(&v)),
                ]
            })
            .collect(),
    )
}

#[track_caller]
fn assert_within_limits(fake: &HubSpotFake) {
    let seen = fake.seen();
    assert!(
        seen.iter().all(|r| r.inputs <= MAX_INPUTS),
        "a request exceeded {MAX_INPUTS} inputs: {seen:?}"
    );
    assert!(
        seen.iter().all(|r| r.status != 400),
        "no request may be refused: {seen:?}"
    );
}

#[test]
fn hubspot_upsert_lands_every_company_and_a_rerun_sends_nothing() {
    let p = Project::new();
    let fake = companies_account(&["high", "medium", "low"]);
    activate_yml(&p, &["cs_tool"], "");
    let first = run(&p, &fake, TOKEN, "churn_risk");
    first.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "success");
    let model = companies_in_model(&p);
    assert_counts(&r, model.len() as u64, 0, 0);
    assert_eq!(companies_in_hubspot(&fake), model);
    let writes = fake.writes();
    assert_eq!(writes.len(), 1, "30 rows fit one batch: {writes:?}");
    assert!(
        writes[0]
            .path
            .ends_with("/crm/v3/objects/companies/batch/upsert")
    );
    assert_within_limits(&fake);
    for req in fake.requests() {
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }

    let second = run(&p, &fake, TOKEN, "churn_risk");
    second.assert_success();
    assert_counts(&p.result(syncs::CHURN_RISK), 0, 0, 0);
    assert_eq!(
        fake.writes().len(),
        1,
        "a rerun without changes writes nothing"
    );
    assert_eq!(companies_in_hubspot(&fake), model);
    assert_secrets_never_written(&p, &[&first, &second], &[TOKEN]);
}

#[test]
fn hubspot_invalid_values_are_rejected_per_row_and_retried_next_run() {
    let p = Project::new();
    // `low` is not (yet) an option of the enumeration: HubSpot refuses those inputs (207).
    let fake = companies_account(&["high", "medium"]);
    activate_yml(&p, &["cs_tool"], "");
    let out = run(&p, &fake, TOKEN, "churn_risk");
    out.assert_success();
    let model = companies_in_model(&p);
    let low: Vec<_> = model
        .iter()
        .filter(|r| r[3].as_deref() == Some("low"))
        .cloned()
        .collect();
    assert!(!low.is_empty());
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), low.len() as u64, "{r:#}");
    let rejections = r["rejections"].as_array().expect("rejections");
    assert_eq!(rejections.len(), low.len(), "{r:#}");
    for x in rejections {
        let reason = x["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("INVALID_OPTION") && reason.contains("low"),
            "HubSpot's reason: {x}"
        );
    }
    assert!(fake.seen().iter().any(|s| s.status == 207));
    let landed: Rows = model
        .iter()
        .filter(|r| r[3].as_deref() != Some("low"))
        .cloned()
        .collect();
    assert_eq!(companies_in_hubspot(&fake), landed);

    // The option is added in HubSpot: the next run sends only the rejected rows.
    fake.define_property(
        "companies",
        "risk_band",
        "enumeration",
        false,
        &["high", "medium", "low"],
    );
    let out = run(&p, &fake, TOKEN, "churn_risk");
    out.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0);
    let last = fake.writes().last().cloned().expect("a write");
    assert_eq!(last.inputs, low.len(), "only the rejected rows are resent");
    assert_eq!(companies_in_hubspot(&fake), model);
    assert_within_limits(&fake);
}

#[test]
fn hubspot_requests_are_paced_under_the_rate_limit() {
    let p = Project::new();
    let fake = companies_account(&["high", "medium", "low"]);
    fake.set_rate_limit(8, Duration::from_secs(10));
    activate_yml(
        &p,
        &["cs_tool"],
        ", batch_size: 4, requests_per_10_seconds: 8",
    );
    let out = run(&p, &fake, TOKEN, "churn_risk");
    out.assert_success();
    assert_status(&p.result(syncs::CHURN_RISK), "success");
    assert_eq!(companies_in_hubspot(&fake), companies_in_model(&p));
    let seen = fake.seen();
    assert!(
        seen.len() > 8,
        "more requests than one window allows: {}",
        seen.len()
    );
    assert!(seen.iter().all(|s| s.status != 429), "no 429: {seen:?}");
    assert!(seen.iter().all(|s| s.inputs <= 4), "batch_size is honoured");
    assert!(fake.peak_in_window(Duration::from_secs(10)) <= 8);
}

#[test]
fn hubspot_429_with_retry_after_is_waited_out_and_retried() {
    let p = Project::new();
    let fake = companies_account(&["high", "medium", "low"]);
    // The account allows far less than the configured pace: HubSpot answers 429.
    fake.set_rate_limit(3, Duration::from_secs(2));
    activate_yml(&p, &["cs_tool"], ", batch_size: 5");
    let out = run(&p, &fake, TOKEN, "churn_risk");
    out.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0);
    assert_eq!(companies_in_hubspot(&fake), companies_in_model(&p));
    let seen = fake.seen();
    assert!(
        seen.iter().any(|s| s.status == 429),
        "the limit was hit: {seen:?}"
    );
    for pair in seen.windows(2) {
        if pair[0].status == 429 {
            let gap = pair[1].at.duration_since(pair[0].at);
            assert!(
                gap >= Duration::from_millis(900),
                "Retry-After honoured: {gap:?}"
            );
        }
    }
}

#[test]
fn hubspot_lost_answers_are_retried_and_every_row_lands_once() {
    let p = Project::new();
    let fake = companies_account(&["high", "medium", "low"]);
    // Every second write is committed by HubSpot but its answer is a 503.
    fake.fail_after_commit_every(2);
    activate_yml(&p, &["cs_tool"], ", batch_size: 7");
    let out = run(&p, &fake, TOKEN, "churn_risk");
    out.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0);
    let seen = fake.seen();
    assert!(seen.iter().any(|s| s.status == 503), "{seen:?}");
    // Upserts by idProperty: a resent batch updates the records it created.
    assert_eq!(companies_in_hubspot(&fake), companies_in_model(&p));
    assert_within_limits(&fake);
}

/// HubSpot commits a batch, then the connection drops before the answer: the client sees a
/// connection error, retries, and the upsert by `idProperty` makes the resent batch a no-op.
#[test]
fn hubspot_commit_then_drop_lands_every_row_exactly_once() {
    let p = Project::new();
    let fake = companies_account(&["high", "medium", "low"]);
    fake.drop_after_commit_every(2);
    activate_yml(&p, &["cs_tool"], ", batch_size: 7");
    let out = run(&p, &fake, TOKEN, "churn_risk");
    out.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0);
    assert!(
        fake.requests().iter().any(|q| q.dropped),
        "some connections were dropped"
    );
    let model = companies_in_model(&p);
    let held = fake.records("companies");
    // Exactly once: one record per company_id.
    let mut per_key = std::collections::BTreeMap::<String, usize>::new();
    for record in &held {
        *per_key
            .entry(record.get("company_id").cloned().unwrap_or_default())
            .or_default() += 1;
    }
    assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
    assert_eq!(companies_in_hubspot(&fake), model);
    // Nothing reported delivered that HubSpot does not hold.
    assert_counts(&r, model.len() as u64, 0, 0);
    assert!(count(&r, "inserted") as usize <= held.len());
    assert_within_limits(&fake);

    let writes = fake.writes().len();
    let out = run(&p, &fake, TOKEN, "churn_risk");
    out.assert_success();
    assert_eq!(fake.writes().len(), writes, "a rerun sends nothing");
    assert_eq!(companies_in_hubspot(&fake), model);
}

#[test]
fn hubspot_bad_token_and_unknown_properties_fail_before_sending() {
    let p = Project::new();
    let fake = companies_account(&["high", "medium", "low"]);
    activate_yml(&p, &["cs_tool"], "");
    let wrong = "pat-na1-00000000-wrong-token-0000";
    let out = run(&p, &fake, wrong, "churn_risk");
    out.assert_code(2);
    assert!(out.text().contains("cs_tool"), "{out}");
    assert!(out.text().contains("401"), "{out}");
    assert!(!out.text().contains(wrong), "{out}");
    assert!(fake.writes().is_empty());

    let fake = HubSpotFake::start(TOKEN);
    fake.define_property("companies", "company_id", "string", true, &[]);
    let out = run(&p, &fake, TOKEN, "churn_risk");
    out.assert_code(2);
    for field in ["churn_risk_score", "risk_band", "monthly_spend"] {
        assert!(out.text().contains(field), "names {field}\n{out}");
    }
    assert!(fake.writes().is_empty(), "nothing sent");
    assert!(fake.records("companies").is_empty());
}

/// `high_value_at_risk` mirrored into a custom object, `churn_risk` as update-only into
/// companies and `churn_alerts` as insert-only into another custom object.
#[test]
fn hubspot_update_insert_and_mirror_deletes() {
    let p = Project::new();
    let schema = "models/marts/schema.yml";
    p.replace_in_file(
        schema,
        "object: high_value_at_risk",
        "object: p_high_value_at_risk",
    );
    p.replace_in_file(schema, "object: cs-alerts", "object: p_cs_alerts");
    p.replace_in_file(
        schema,
        "          match_on: company_id\n",
        "          match_on: company_id\n          operation: update\n",
    );
    p.dbt_build();
    activate_yml(&p, &["cs_tool", "marketing", "alerts"], "");

    let fake = companies_account(&["high", "medium", "low"]);
    // Update-only: HubSpot already has some of the companies.
    let model = companies_in_model(&p);
    let existing: Vec<String> = model
        .iter()
        .step_by(2)
        .filter_map(|r| r[0].clone())
        .collect();
    for id in &existing {
        fake.insert_record("companies", &[("company_id", id), ("name", "old name")]);
    }
    // Insert-only: one alert is already there; one account name is not an allowed option,
    // so HubSpot refuses the whole create batch until that row is split off.
    fake.define_object("p_cs_alerts", "2-9001");
    fake.define_property("p_cs_alerts", "alert_id", "string", true, &[]);
    fake.define_property("p_cs_alerts", "text", "string", false, &[]);
    fake.define_property("p_cs_alerts", "score", "number", false, &[]);
    let alerts = alerts_in_model(&p);
    let names: Vec<String> = alerts.iter().filter_map(|r| r[2].clone()).collect();
    let allowed: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    fake.define_property("p_cs_alerts", "account", "enumeration", false, &allowed);
    let already = alerts
        .iter()
        .find(|r| r[2].as_deref() != Some(names[0].as_str()))
        .and_then(|r| r[0].clone())
        .expect("an alert");
    fake.insert_record(
        "p_cs_alerts",
        &[("alert_id", &already), ("text", "posted before")],
    );
    fake.define_object("p_high_value_at_risk", "2-9002");
    fake.define_property("p_high_value_at_risk", "account_id", "string", true, &[]);
    fake.define_property("p_high_value_at_risk", "email", "string", false, &[]);
    fake.define_property("p_high_value_at_risk", "account_name", "string", false, &[]);
    fake.define_property("p_high_value_at_risk", "mrr", "number", false, &[]);

    let out = p
        .activate_cmd(&[
            "run",
            "--target",
            "ci",
            "--select",
            "churn_risk",
            "high_value_at_risk",
            "churn_alerts",
        ])
        .env("HUBSPOT_ACCESS_TOKEN", TOKEN)
        .env("HUBSPOT_BASE_URL", &fake.base_url())
        .run();
    out.assert_success();

    // update: the existing companies hold the model's values; the others are rejected.
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "warn");
    assert_eq!(
        count(&r, "rejected"),
        (model.len() - existing.len()) as u64,
        "{r:#}"
    );
    assert!(
        r["rejections"]
            .as_array()
            .expect("rejections")
            .iter()
            .all(|x| x["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("never creates")),
        "{r:#}"
    );
    let expected: Rows = model
        .iter()
        .filter(|r| r[0].as_ref().is_some_and(|id| existing.contains(id)))
        .cloned()
        .collect();
    assert_eq!(companies_in_hubspot(&fake), expected);

    // insert: new alerts created, the existing one untouched, the invalid one rejected.
    let r = p.result(ALERTS_SYNC);
    assert_status(&r, "warn");
    let reasons: Vec<String> = r["rejections"]
        .as_array()
        .expect("rejections")
        .iter()
        .map(|x| x["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reasons.len(), 2, "{r:#}");
    assert!(
        reasons.iter().any(|x| x.contains("INVALID_OPTION")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|x| x.contains("never updates")),
        "{reasons:?}"
    );
    let held = fake.records("p_cs_alerts");
    assert_eq!(held.len(), alerts.len() - 1);
    let posted: Rows = sorted(
        held.iter()
            .filter(|r| r.get("alert_id") != Some(&already))
            .map(|r| {
                ["alert_id", "text", "account", "score"]
                    .iter()
                    .map(|k| {
                        r.get(*k)
                            .map(|v| if *k == "score" { num(v) } else { v.clone() })
                    })
                    .collect()
            })
            .collect(),
    );
    let expected: Rows = alerts
        .iter()
        .filter(|r| {
            r[0].as_deref() != Some(already.as_str()) && r[2].as_deref() != Some(names[0].as_str())
        })
        .cloned()
        .collect();
    assert_eq!(posted, expected);
    assert!(
        held.iter()
            .any(|r| r.get("text").map(String::as_str) == Some("posted before")),
        "insert never overwrites"
    );

    // mirror: every segment row, then accounts leaving the segment are archived.
    let segment = || -> Rows {
        sorted(
            fake.records("p_high_value_at_risk")
                .iter()
                .map(|r| {
                    ["account_id", "email", "account_name", "mrr"]
                        .iter()
                        .map(|k| r.get(*k).cloned())
                        .collect()
                })
                .collect(),
        )
    };
    let normalise = |rows: Rows| -> Rows {
        sorted(
            rows.into_iter()
                .map(|mut r| {
                    r[3] = r[3].as_deref().map(num);
                    r
                })
                .collect(),
        )
    };
    assert_status(&p.result(SEGMENT_SYNC), "success");
    assert_eq!(normalise(segment()), normalise(segment_in_model(&p)));
    let before = segment().len();

    p.dbt(&[
        "build",
        "--target",
        "ci",
        "--select",
        "high_value_at_risk",
        "--vars",
        "{high_value_mrr_threshold: 2700}",
    ])
    .assert_success();
    let after_model = segment_in_model(&p);
    assert!(after_model.len() < before && !after_model.is_empty());
    let out = run(&p, &fake, TOKEN, "high_value_at_risk");
    out.assert_success();
    let r = p.result(SEGMENT_SYNC);
    assert_status(&r, "success");
    assert_counts(&r, 0, 0, (before - after_model.len()) as u64);
    assert_eq!(normalise(segment()), normalise(after_model));
    assert!(
        fake.seen()
            .iter()
            .any(|s| s.path.ends_with("/p_high_value_at_risk/batch/archive"))
    );
    assert_within_limits_except_split(&fake);
}

/// Batch maximums hold; 400s only where HubSpot refused a create batch for one bad row.
#[track_caller]
fn assert_within_limits_except_split(fake: &HubSpotFake) {
    let seen = fake.seen();
    assert!(seen.iter().all(|r| r.inputs <= MAX_INPUTS), "{seen:?}");
    assert!(
        seen.iter()
            .filter(|r| r.status == 400)
            .all(|r| r.path.ends_with("/batch/create")),
        "{seen:?}"
    );
}

/// Insert-only (batch create) has no upsert to make a resent batch harmless: the resent create
/// meets HubSpot's 409 on the unique `alert_id` of the records the lost call created. The true
/// guarantee: every alert is held exactly once and nothing is reported delivered that is not
/// held; the rows whose answer was lost are reported rejected in that run (conservatively,
/// though they landed), and the next run confirms them by reading them back.
#[test]
fn hubspot_insert_only_commit_then_drop_never_duplicates_and_reports_lost_answers_rejected() {
    let p = Project::new();
    p.replace_in_file(
        "models/marts/schema.yml",
        "object: cs-alerts",
        "object: p_cs_alerts",
    );
    p.dbt_build();
    activate_yml(&p, &["alerts"], ", batch_size: 2");
    let fake = HubSpotFake::start(TOKEN);
    fake.define_object("p_cs_alerts", "2-9001");
    fake.define_property("p_cs_alerts", "alert_id", "string", true, &[]);
    fake.define_property("p_cs_alerts", "text", "string", false, &[]);
    fake.define_property("p_cs_alerts", "score", "number", false, &[]);
    fake.define_property("p_cs_alerts", "account", "string", false, &[]);
    fake.drop_after_commit_every(2);
    let out = run(&p, &fake, TOKEN, "churn_alerts");
    out.assert_success();
    let r = p.result(ALERTS_SYNC);
    assert!(fake.requests().iter().any(|q| q.dropped));
    let held_rows = |fake: &HubSpotFake| -> Rows {
        sorted(
            fake.records("p_cs_alerts")
                .iter()
                .map(|a| {
                    vec![
                        a.get("alert_id").cloned(),
                        a.get("text").cloned(),
                        a.get("account").cloned(),
                        a.get("score").map(|v| num(v)),
                    ]
                })
                .collect(),
        )
    };
    let mut per_key = std::collections::BTreeMap::<String, usize>::new();
    for a in fake.records("p_cs_alerts") {
        *per_key
            .entry(a.get("alert_id").cloned().unwrap_or_default())
            .or_default() += 1;
    }
    assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
    let model = alerts_in_model(&p);
    assert_eq!(held_rows(&fake), model);
    let rejections = r["rejections"].as_array().cloned().unwrap_or_default();
    assert!(!rejections.is_empty(), "{r:#}");
    for x in &rejections {
        let key = rejection_key(x)[0].as_str().unwrap_or_default().to_owned();
        assert!(
            x["reason"].as_str().is_some_and(|s| s.contains("409")),
            "{x:#}"
        );
        assert!(
            per_key.contains_key(&key),
            "a rejected row the lost call did create"
        );
    }
    // Nothing reported delivered that HubSpot does not hold; no row lost or counted twice.
    assert_eq!(
        count(&r, "inserted") + count(&r, "rejected"),
        model.len() as u64,
        "{r:#}"
    );

    // The next run reads those records back, finds each holding exactly its row (the create
    // landed, its answer was lost) and confirms them without sending: delivered, not rejected.
    let writes = |fake: &HubSpotFake| {
        fake.requests()
            .iter()
            .filter(|q| q.path.contains("/batch/create"))
            .count()
    };
    let creates_before = writes(&fake);
    let out = run(&p, &fake, TOKEN, "churn_alerts");
    out.assert_success();
    let r2 = p.result(ALERTS_SYNC);
    assert_status(&r2, "success");
    assert_counts(&r2, rejections.len() as u64, 0, 0);
    assert_eq!(
        writes(&fake),
        creates_before,
        "confirmed by reading, nothing created again"
    );
    assert_eq!(held_rows(&fake), model, "a rerun duplicates nothing");

    let out = run(&p, &fake, TOKEN, "churn_alerts");
    out.assert_success();
    assert_counts(&p.result(ALERTS_SYNC), 0, 0, 0);
}

// ---- list membership for segments (`object: "list:<name>"`) ----

const LIST_NAME: &str = "High value at risk";
const LIST_SYNC: &str = "segment_to_hubspot_list";

/// `high_value_at_risk` as the members of a HubSpot contact list, matched on email.
fn segment_to_list(p: &Project, mapping: &str) {
    p.edit_file("models/marts/schema.yml", |s| {
        s.replace(
            "          destination: marketing\n          object: high_value_at_risk\n          sync_mode: mirror\n          on_delete: delete\n          primary_key: account_id\n          mapping:\n            account_id: account_id\n            owner_email: email\n            account_name: account_name\n            mrr: mrr\n",
            &format!(
                "          name: {LIST_SYNC}\n          destination: marketing\n          object: \"list:{LIST_NAME}\"\n          sync_mode: mirror\n          on_delete: delete\n          primary_key: owner_email\n          match_on: email\n          mapping:\n{mapping}"
            ),
        )
    });
    p.dbt(&["parse", "--target", "ci"]).assert_success();
}

/// The segment's member emails, as the model holds them.
fn segment_emails(p: &Project) -> Vec<String> {
    sorted(
        segment_in_model(p)
            .into_iter()
            .filter_map(|r| r[1].clone())
            .map(|e| e.to_lowercase())
            .collect(),
    )
}

#[test]
fn hubspot_list_membership_follows_the_segment() {
    let p = Project::new();
    segment_to_list(&p, "            owner_email: email\n");
    activate_yml(&p, &["marketing"], "");
    let fake = HubSpotFake::start(TOKEN);
    let emails = segment_emails(&p);
    assert!(emails.len() > 2, "{emails:?}");
    // Every owner is a contact but one; another contact is in no segment.
    let unknown = emails[0].clone();
    for email in &emails[1..] {
        fake.insert_record("contacts", &[("email", email), ("firstname", "Owner")]);
    }
    fake.insert_record("contacts", &[("email", "bystander@example.com")]);
    // Another integration spends the budget: every 4th request meets 429 + Retry-After.
    fake.throttle_every(4);

    let first = run(&p, &fake, TOKEN, "high_value_at_risk");
    first.assert_success();
    let r = p.result(LIST_SYNC);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 1, "{r:#}");
    let reason = r["rejections"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("OBJECT_NOT_FOUND") && reason.contains(&unknown),
        "HubSpot's reason, naming the contact: {r:#}"
    );
    let lists = fake.lists();
    assert_eq!(lists.len(), 1, "the list is created once: {lists:?}");
    assert_eq!(lists[0].name, LIST_NAME);
    assert_eq!(lists[0].object_type_id, "0-1");
    assert_eq!(lists[0].processing_type, "MANUAL");
    assert_eq!(
        fake.list_members(LIST_NAME, "email"),
        Some(emails[1..].to_vec())
    );
    assert!(
        fake.seen()
            .iter()
            .any(|s| s.status == 429 && s.path.starts_with("/crm/v3/lists")),
        "a Lists API call met 429 and was retried: {:?}",
        fake.seen()
    );
    assert_eq!(fake.membership_writes().len(), 1, "one add for one batch");

    // The missing contact appears in HubSpot: the next run adds only that row.
    fake.throttle_every(usize::MAX);
    fake.insert_record("contacts", &[("email", &unknown)]);
    let second = run(&p, &fake, TOKEN, "high_value_at_risk");
    second.assert_success();
    let r = p.result(LIST_SYNC);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0, "{r:#}");
    let writes = fake.membership_writes();
    assert_eq!(writes.len(), 2);
    assert!(writes[1].path.ends_with("/memberships/add"), "{writes:?}");
    assert_eq!(writes[1].inputs, 1, "only the rejected row is resent");
    assert_eq!(fake.list_members(LIST_NAME, "email"), Some(emails.clone()));

    // Nothing changed: a rerun sends nothing.
    let before = fake.seen().len();
    let third = run(&p, &fake, TOKEN, "high_value_at_risk");
    third.assert_success();
    assert_counts(&p.result(LIST_SYNC), 0, 0, 0);
    assert_eq!(fake.membership_writes().len(), 2, "a rerun sends nothing");
    let rerun = &fake.seen()[before..];
    assert!(
        rerun.iter().all(|s| s.method == "GET"),
        "nor reads contacts: {rerun:?}"
    );

    // Accounts leave the segment: their owners leave the list, the contacts stay.
    p.dbt(&[
        "build",
        "--target",
        "ci",
        "--select",
        "high_value_at_risk",
        "--vars",
        "{high_value_mrr_threshold: 2700}",
    ])
    .assert_success();
    let after = segment_emails(&p);
    assert!(after.len() < emails.len() && !after.is_empty());
    let out = run(&p, &fake, TOKEN, "high_value_at_risk");
    out.assert_success();
    let r = p.result(LIST_SYNC);
    assert_status(&r, "success");
    assert_counts(&r, 0, 0, (emails.len() - after.len()) as u64);
    assert_eq!(fake.list_members(LIST_NAME, "email"), Some(after));
    let last = fake.membership_writes().pop().expect("a membership write");
    assert!(last.path.ends_with("/memberships/remove"), "{last:?}");
    assert_eq!(
        fake.records("contacts").len(),
        emails.len() + 1,
        "leaving a list never deletes a contact"
    );
    assert_within_limits(&fake);
    assert_secrets_never_written(&p, &[&first, &second, &third, &out], &[TOKEN]);
}

#[test]
fn hubspot_list_sync_refuses_an_active_list_and_mapped_values_before_sending() {
    let p = Project::new();
    segment_to_list(&p, "            owner_email: email\n            mrr: mrr\n");
    activate_yml(&p, &["marketing"], "");
    let fake = HubSpotFake::start(TOKEN);
    fake.create_list(LIST_NAME, "0-1", "DYNAMIC");
    let out = run(&p, &fake, TOKEN, "high_value_at_risk");
    assert_config_error(
        &p,
        &out,
        &["DYNAMIC", "map only the match field `email`", "`mrr`"],
    );
    assert!(fake.membership_writes().is_empty());
    assert!(
        fake.seen().iter().all(|s| s.method == "GET"),
        "only reads before the refusal: {:?}",
        fake.seen()
    );
}
