//! The stripe destination end to end: the real binary against a fake Stripe account
//! (`dbt_activate_e2e::fakes::stripe`), asserting what the account finally holds.

use std::collections::BTreeMap;

use dbt_activate_e2e::fakes::stripe::{Customer, FakeStripe, Fault};
use dbt_activate_e2e::{Project, RunOutput, sorted};

use crate::common::*;

const KEY: &str = "sk_test_e2eStripeSecret51Hx9QzT";

/// Every destination of the example, with `cs_tool` and `billing` on Stripe accounts.
fn activate_yml(cs_tool: &str, billing: &str, extra: &str) -> String {
    format!(
        r#"destinations:
  crm:       {{type: file, path: "synced/crm", format: jsonl}}
  marketing: {{type: file, path: "synced/marketing", format: csv}}
  alerts:    {{type: file, path: "synced/alerts", format: jsonl}}
  cs_tool:   {{type: stripe, api_key: "{{{{ env_var('STRIPE_API_KEY') }}}}", base_url: "{cs_tool}"}}
  billing:   {{type: stripe, api_key: "{{{{ env_var('STRIPE_API_KEY') }}}}", base_url: "{billing}"}}
{extra}"#
    )
}

const CHURN_BLOCK: &str = "        activate:
          destination: cs_tool
          object: companies
          sync_mode: incremental
          primary_key: account_id
          match_on: company_id
          mapping:
            account_id: company_id
            account_name: name
            churn_risk_score: churn_risk_score
            risk_band: risk_band
            mrr: monthly_spend
          schedule: every_hour
";

/// churn_risk -> Stripe customers matched by `metadata[account_id]`.
fn customers_block(destination: &str, sync_mode: &str, operation: &str, extra: &str) -> String {
    format!(
        "          destination: {destination}
          object: customers
          sync_mode: {sync_mode}
          operation: {operation}
          primary_key: account_id
          match_on: \"metadata[account_id]\"
          mapping:
            account_id: \"metadata[account_id]\"
            account_name: name
            owner_email: email
            churn_risk_score: \"metadata[churn_risk]\"
            risk_band: \"metadata[risk_band]\"
{extra}"
    )
}

fn run(p: &Project, select: &str, key: &str) -> RunOutput {
    p.activate_cmd(&["run", "--select", select])
        .env("STRIPE_API_KEY", key)
        .run()
}

/// (account_id, name, email, churn_risk, risk_band) of churn_risk, by SQL.
fn churn_rows(p: &Project, filter: &str) -> Rows {
    let rows = p.duck(&format!(
        "select account_id, account_name, owner_email, cast(churn_risk_score as varchar), risk_band
         from main.churn_risk {filter}"
    ));
    sorted(rows)
}

/// The same columns from the account's customers that carry `metadata[account_id]`.
fn customer_rows(customers: &[Customer]) -> Rows {
    sorted(
        customers
            .iter()
            .filter(|c| c.metadata.contains_key("account_id"))
            .map(|c| {
                vec![
                    c.metadata.get("account_id").cloned(),
                    c.name.clone(),
                    c.email.clone(),
                    c.metadata.get("churn_risk").cloned(),
                    c.metadata.get("risk_band").cloned(),
                ]
            })
            .collect(),
    )
}

fn by_account(customers: &[Customer]) -> BTreeMap<String, Customer> {
    let mut out = BTreeMap::new();
    for c in customers {
        if let Some(a) = c.metadata.get("account_id") {
            assert!(
                out.insert(a.clone(), c.clone()).is_none(),
                "two customers carry account_id {a}"
            );
        }
    }
    out
}

/// Every write carries an idempotency key; no two different requests share one.
#[track_caller]
fn assert_idempotency_keys(fake: &FakeStripe) {
    let mut seen: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    for w in fake.writes() {
        let key = w
            .header("idempotency-key")
            .unwrap_or_else(|| panic!("a write without Idempotency-Key: {} {}", w.method, w.path));
        assert_eq!(
            w.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let this = (w.path.clone(), w.body.clone());
        if let Some(before) = seen.insert(key.to_owned(), this.clone()) {
            assert_eq!(
                before, this,
                "one idempotency key for two different requests"
            );
        }
    }
}

#[test]
fn stripe_customers_mirror_by_metadata_rejects_per_row_clears_and_reruns_nothing() {
    let p = Project::new();
    let fake = FakeStripe::start(KEY, 25);
    let acme = fake.add_customer("old@acme.example", &[("account_id", "acc_001")]);
    let globex = fake.add_customer(
        "old@globex.example",
        &[("account_id", "acc_002"), ("plan_tier", "gold")],
    );
    let unrelated = fake.add_customer("someone@else.example", &[]);
    p.write_file(
        "activate.yml",
        &activate_yml(&fake.base_url(), &fake.base_url(), ""),
    );
    p.replace_in_file(
        "models/marts/schema.yml",
        CHURN_BLOCK,
        &format!(
            "        activate:\n{}",
            customers_block(
                "cs_tool",
                "mirror",
                "upsert",
                "          on_delete: clear\n"
            )
        ),
    );
    // An address Stripe refuses: a per-row reject, not a failed sync.
    p.edit_seed("accounts", |s| {
        s.replace(
            "jordan.reed@example-saas.com",
            "jordan.reed(at)example-saas.com",
        )
    });
    p.dbt_build();

    let first = run(&p, "churn_risk", KEY);
    first.assert_success();
    let name = "churn_risk__cs_tool__customers";
    let r = p.result(name);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 1, "{r:#}");
    let rejection = &r["rejections"][0];
    assert_eq!(rejection_key(rejection), serde_json::json!(["acc_003"]));
    let reason = rejection["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("email_invalid") && reason.contains("Invalid email address"),
        "the vendor's reason: {reason}"
    );
    assert_eq!(
        customer_rows(&fake.customers()),
        churn_rows(&p, "where account_id <> 'acc_003'")
    );
    let held = by_account(&fake.customers());
    assert_eq!(
        held["acc_001"].id, acme,
        "matched by metadata, not created again"
    );
    assert_eq!(held["acc_002"].id, globex);
    assert_eq!(
        held["acc_002"]
            .metadata
            .get("plan_tier")
            .map(String::as_str),
        Some("gold"),
        "metadata keys not mapped are left alone"
    );
    assert!(fake.customers().iter().any(|c| c.id == unrelated));
    assert_eq!(
        fake.writes().iter().filter(|w| w.status != 429).count(),
        30,
        "one request per row"
    );
    assert_idempotency_keys(&fake);
    assert_eq!(
        fake.rate_limited(),
        0,
        "25 writes per second never exceed Stripe's limit"
    );

    // Fix the address and drop an account from the model: the rejected row is retried, the
    // departed account's mapped fields are cleared (the customer stays).
    p.edit_seed("accounts", |s| {
        s.replace(
            "jordan.reed(at)example-saas.com",
            "jordan.reed@example-saas.com",
        )
        .lines()
        .filter(|l| !l.starts_with("acc_030,"))
        .collect::<Vec<_>>()
        .join("\n")
            + "\n"
    });
    p.dbt_build();
    let writes_before = fake.writes().len();
    let second = run(&p, "churn_risk", KEY);
    second.assert_success();
    let r = p.result(name);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0);
    assert_eq!(count(&r, "inserted"), 1, "{r:#}");
    assert_eq!(count(&r, "cleared"), 1, "{r:#}");
    assert_eq!(fake.writes().len() - writes_before, 2);
    let held = by_account(&fake.customers());
    let zorg = &held["acc_030"];
    assert_eq!(
        (
            zorg.name.as_deref(),
            zorg.email.as_deref(),
            zorg.metadata.len()
        ),
        (None, None, 1),
        "cleared, keeping only the key: {zorg:?}"
    );
    assert_eq!(
        customer_rows(&fake.customers())
            .into_iter()
            .filter(|r| r[0].as_deref() != Some("acc_030"))
            .collect::<Vec<_>>(),
        churn_rows(&p, "")
    );

    let requests_before = fake.requests().len();
    let third = run(&p, "churn_risk", KEY);
    third.assert_success();
    assert_eq!(
        fake.requests().len(),
        requests_before,
        "a rerun sends nothing"
    );
    assert_secrets_never_written(&p, &[&first, &second, &third], &[KEY]);
}

#[test]
fn stripe_update_only_and_insert_only_customers() {
    let p = Project::new();
    let updates = FakeStripe::start(KEY, 25);
    let inserts = FakeStripe::start(KEY, 25);
    for a in ["acc_001", "acc_002"] {
        updates.add_customer("old@x.example", &[("account_id", a)]);
    }
    let existing = inserts.add_customer("old@x.example", &[("account_id", "acc_001")]);
    p.write_file(
        "activate.yml",
        &activate_yml(&updates.base_url(), &inserts.base_url(), ""),
    );
    p.replace_in_file(
        "models/marts/schema.yml",
        CHURN_BLOCK,
        &format!(
            "        activate:\n          - name: churn_update\n{}          - name: churn_insert\n{}",
            customers_block("cs_tool", "incremental", "update", "").replacen("          ", "            ", 1).replace("\n          ", "\n            "),
            customers_block("billing", "incremental", "insert", "").replacen("          ", "            ", 1).replace("\n          ", "\n            "),
        ),
    );
    p.dbt_build();
    let out = run(&p, "churn_risk", KEY);
    out.assert_success();

    // update: the two existing customers change; the others are rejected, none created.
    let r = p.result("churn_update");
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 28, "{r:#}");
    assert!(
        r["rejections"][0]["reason"]
            .as_str()
            .is_some_and(|s| s.contains("no customer has metadata[account_id]")),
        "{r:#}"
    );
    assert_eq!(updates.customers().len(), 2);
    assert_eq!(
        customer_rows(&updates.customers()),
        churn_rows(&p, "where account_id in ('acc_001', 'acc_002')")
    );

    // insert: every account but the existing one is created; the existing one is untouched.
    let r = p.result("churn_insert");
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 1, "{r:#}");
    assert!(
        r["rejections"][0]["reason"]
            .as_str()
            .is_some_and(|s| s.contains("already exists") && s.contains(&existing)),
        "{r:#}"
    );
    let held = by_account(&inserts.customers());
    assert_eq!(held.len(), 30);
    assert_eq!(held["acc_001"].email.as_deref(), Some("old@x.example"));
    assert_eq!(
        customer_rows(&inserts.customers())
            .into_iter()
            .filter(|r| r[0].as_deref() != Some("acc_001"))
            .collect::<Vec<_>>(),
        churn_rows(&p, "where account_id <> 'acc_001'")
    );
    assert_idempotency_keys(&updates);
    assert_idempotency_keys(&inserts);
    assert_secrets_never_written(&p, &[&out], &[KEY]);
}

/// Stripe creates a customer, then the connection drops before the answer. The client retries
/// with the same `Idempotency-Key`, Stripe replays the saved result, and no customer is created
/// twice, even for insert-only, where nothing else would deduplicate.
#[test]
fn stripe_commit_then_drop_is_replayed_and_every_customer_exists_once() {
    let p = Project::new();
    let fake = FakeStripe::start(KEY, 25);
    p.write_file(
        "activate.yml",
        &activate_yml(&fake.base_url(), &fake.base_url(), ""),
    );
    p.replace_in_file(
        "models/marts/schema.yml",
        CHURN_BLOCK,
        &format!(
            "        activate:\n{}",
            customers_block("cs_tool", "incremental", "insert", "")
        ),
    );
    p.dbt_build();
    fake.drop_after_commit(&["acc_003", "acc_017", "acc_029"]);
    let out = run(&p, "churn_risk", KEY);
    out.assert_success();
    let sync = "churn_risk__cs_tool__customers";
    let r = p.result(sync);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0, "{r:#}");
    let dropped = fake.requests().iter().filter(|q| q.dropped).count();
    assert_eq!(dropped, 3, "three writes committed, then dropped");
    assert!(fake.replayed() >= 3, "each dropped write was replayed");
    // Exactly once: by_account panics on two customers with one account_id.
    let held = by_account(&fake.customers());
    assert_eq!(held.len(), 30);
    assert_eq!(fake.customers().len(), 30, "no customer created twice");
    assert_eq!(customer_rows(&fake.customers()), churn_rows(&p, ""));
    // Nothing reported delivered that the account does not hold.
    assert_counts(&r, 30, 0, 0);
    assert_idempotency_keys(&fake);

    let writes = fake.writes().len();
    let out = run(&p, "churn_risk", KEY);
    out.assert_success();
    assert_eq!(fake.writes().len(), writes, "a rerun sends nothing");
    assert_eq!(fake.customers().len(), 30);
}

const BILLING_BLOCK: &str = "          object: usage_records
          sync_mode: incremental
          cursor: period_start
          operation: upsert
          primary_key: usage_id
          mapping:
            usage_id: usage_id
            account_id: customer
            quantity: quantity
            period_start: timestamp
";

const METER_BLOCK: &str = "          object: billing/meter_events
          sync_mode: incremental
          cursor: period_start
          operation: insert
          primary_key: usage_id
          mapping:
            \"'api_calls'\": event_name
            usage_id: identifier
            account_id: \"payload[stripe_customer_id]\"
            quantity: \"payload[value]\"
            period_start: timestamp
";

/// 2025-03-20T00:00:00Z: meter events of March and of February after the 13th are within
/// Stripe's 35 days; January and early February are not.
const ACCOUNT_NOW: i64 = 1_742_428_800;

#[test]
fn stripe_meter_events_from_billing_usage_with_faults_rate_limits_and_bad_key() {
    let p = Project::new();
    let fake = FakeStripe::start(KEY, 10);
    fake.set_now(ACCOUNT_NOW);
    p.write_file(
        "activate.yml",
        &activate_yml(&fake.base_url(), &fake.base_url(), "").replace(
            &format!("base_url: \"{}\"}}\n", fake.base_url()),
            &format!(
                "base_url: \"{}\", writes_per_second: 20}}\n",
                fake.base_url()
            ),
        ),
    );
    p.replace_in_file("models/marts/schema.yml", BILLING_BLOCK, METER_BLOCK);
    p.dbt_build();
    let sync = "billing_usage__billing__billing_meter_events";

    // A wrong key: the sync fails, nothing is reported delivered, the key is never printed.
    let bad = run(&p, "billing_usage", "sk_test_wrongKey0000");
    assert_eq!(bad.code, 1, "{bad}");
    let names = p.result_names();
    let name = names
        .iter()
        .find(|n| n.starts_with("billing_usage__billing"))
        .unwrap_or_else(|| panic!("no billing sync in {names:?}"))
        .clone();
    let r = p.result(&name);
    assert_status(&r, "error");
    assert!(message(&r).contains("api key was refused"), "{r:#}");
    assert!(fake.meter_events().is_empty());
    assert!(
        fake.writes().len() <= 8,
        "a refused key stops the sync after the requests under way: {}",
        fake.writes().len()
    );

    // Stripe-Should-Retry: true (a 409 lock timeout) is retried; false (a 500) is not;
    // a 500 after Stripe committed is retried with the same key and replayed, not duplicated.
    let recent = sorted(p.duck(
        "select usage_id, account_id, cast(quantity as varchar), cast(epoch(period_start) as bigint)::varchar
         from main.billing_usage where period_start >= date '2025-02-13'",
    ));
    let too_old =
        p.duck("select count(*) from main.billing_usage where period_start < date '2025-02-13'");
    let too_old: u64 = too_old[0][0].as_deref().unwrap_or("0").parse().unwrap_or(0);
    assert!(too_old > 0 && recent.len() >= 3, "{recent:?}");
    let fault = |status, should_retry, code, after_commit, row: usize| Fault {
        status,
        should_retry,
        code,
        after_commit,
        matching: format!(
            "identifier={}&",
            recent[row][0].as_deref().unwrap_or_default()
        ),
    };
    fake.inject(&[
        fault(409, Some(true), "lock_timeout", false, 0),
        fault(500, Some(false), "", false, 1),
        fault(500, None, "", true, 2),
    ]);
    let first = run(&p, "billing_usage", KEY);
    first.assert_success();
    let r = p.result(&name);
    assert_eq!(name, sync);
    assert_status(&r, "warn");

    let rejections = r["rejections"].as_array().cloned().unwrap_or_default();
    let old_reasons = rejections
        .iter()
        .filter(|x| {
            x["reason"]
                .as_str()
                .is_some_and(|s| s.contains("35 calendar days"))
        })
        .count() as u64;
    assert_eq!(old_reasons, too_old, "{r:#}");
    let not_retried = rejections
        .iter()
        .filter(|x| x["reason"].as_str().is_some_and(|s| s.contains("HTTP 500")))
        .count();
    assert_eq!(
        not_retried, 1,
        "Stripe-Should-Retry: false is final for the run: {r:#}"
    );
    assert_eq!(count(&r, "rejected"), too_old + 1);
    assert!(fake.replayed() >= 1, "the committed request was replayed");
    assert!(
        fake.rate_limited() > 0,
        "20 writes per second against 10: some 429s"
    );

    // The rejected row is retried on the next run; the old months stay rejected; nothing doubles.
    let second = run(&p, "billing_usage", KEY);
    second.assert_success();
    let events = fake.meter_events();
    let held: Rows = sorted(
        events
            .iter()
            .map(|e| {
                assert_eq!(e.event_name, "api_calls");
                vec![
                    Some(e.identifier.clone()),
                    e.payload.get("stripe_customer_id").cloned(),
                    e.payload.get("value").cloned(),
                    Some(e.timestamp.to_string()),
                ]
            })
            .collect(),
    );
    assert_eq!(held, recent, "every recent month exactly once");
    let r = p.result(sync);
    assert_eq!(count(&r, "rejected"), too_old, "{r:#}");
    assert_idempotency_keys(&fake);
    assert_secrets_never_written(&p, &[&bad, &first, &second], &[KEY]);
}

#[test]
fn stripe_mirror_delete_of_customers_is_refused() {
    let p = Project::new();
    let fake = FakeStripe::start(KEY, 25);
    p.write_file(
        "activate.yml",
        &activate_yml(&fake.base_url(), &fake.base_url(), ""),
    );
    p.replace_in_file(
        "models/marts/schema.yml",
        CHURN_BLOCK,
        &format!(
            "        activate:\n{}",
            customers_block(
                "cs_tool",
                "mirror",
                "upsert",
                "          on_delete: delete\n"
            )
        ),
    );
    p.dbt_build();
    // Refused before anything is sent: a configuration error, nothing written.
    let out = run(&p, "churn_risk", KEY);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.text().contains("on_delete: clear"), "{out}");
    assert!(fake.customers().is_empty(), "nothing was sent");
    assert!(fake.requests().iter().all(|r| r.method != "DELETE"));
}

#[test]
fn stripe_customers_matched_by_id_are_updated_and_a_missing_id_is_rejected() {
    let p = Project::new();
    let fake = FakeStripe::start(KEY, 25);
    // Customers cus_Pre00000000001 .. 029 exist; acc_030's customer does not.
    let ids: Vec<String> = (1..30)
        .map(|_| fake.add_customer("billing@x.example", &[]))
        .collect();
    assert_eq!(ids[0], "cus_Pre00000000001");
    p.write_file(
        "activate.yml",
        &activate_yml(&fake.base_url(), &fake.base_url(), ""),
    );
    p.replace_in_file(
        "models/marts/churn_risk.sql",
        "\nselect\n    account_id,",
        "\nselect\n    'cus_Pre' || lpad(cast(cast(substr(account_id, 5) as integer) as varchar), 11, '0') as stripe_customer_id,\n    account_id,",
    );
    p.replace_in_file(
        "models/marts/schema.yml",
        CHURN_BLOCK,
        "        activate:
          destination: cs_tool
          object: customers
          sync_mode: full_refresh
          primary_key: stripe_customer_id
          match_on: id
          mapping:
            stripe_customer_id: id
            account_name: name
            churn_risk_score: \"metadata[churn_risk]\"
",
    );
    p.dbt_build();
    let out = run(&p, "churn_risk", KEY);
    out.assert_success();
    let r = p.result("churn_risk__cs_tool__customers");
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 1, "{r:#}");
    let rejection = &r["rejections"][0];
    assert_eq!(
        rejection_key(rejection),
        serde_json::json!(["cus_Pre00000000030"])
    );
    let reason = rejection["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("HTTP 404") && reason.contains("No such customer"),
        "{reason}"
    );
    let customers = fake.customers();
    assert_eq!(customers.len(), 29, "matching by id never creates");
    let held: Rows = sorted(
        customers
            .iter()
            .map(|c| {
                vec![
                    Some(c.id.clone()),
                    c.name.clone(),
                    c.metadata.get("churn_risk").cloned(),
                    c.email.clone(),
                ]
            })
            .collect(),
    );
    let expected: Rows = sorted(
        p.duck(
            "select 'cus_Pre' || lpad(cast(cast(substr(account_id, 5) as integer) as varchar), 11, '0'),
                    account_name, cast(churn_risk_score as varchar), 'billing@x.example'
             from main.churn_risk where account_id <> 'acc_030'",
        ),
    );
    assert_eq!(held, expected, "fields not mapped (email) are left alone");
    assert_idempotency_keys(&fake);
    assert_secrets_never_written(&p, &[&out], &[KEY]);
}
