//! Gating on dbt's run_results.json: a failed model or test skips exactly its
//! syncs (and their dependents); models not built are skipped unless
//! `--include-unbuilt`.

use dbt_activate_e2e::{Project, syncs};

use crate::common::*;

#[test]
fn failing_model_skips_its_syncs_and_their_dependents() {
    let p = Project::new();
    // churn_risk fails to build; dbt then skips high_value_at_risk and churn_alerts.
    p.replace_in_file(
        "models/marts/churn_risk.sql",
        "    from accounts\n",
        "    from no_such_relation\n",
    );
    let build = p.dbt(&["build", "--target", "ci"]);
    assert_ne!(build.code, 0, "dbt build must fail\n{build}");

    let out = run_ci(&p);
    out.assert_success(); // skipped syncs do not fail a run
    out.assert_contains("Done. PASS=3 WARN=0 ERROR=0 SKIP=3 TOTAL=6");
    for name in [syncs::CHURN_RISK, syncs::HIGH_VALUE, syncs::ALERTS] {
        let r = p.result(name);
        assert_status(&r, "skipped");
        assert!(
            message(&r).contains("failed"),
            "the reason says what failed: {r:#}"
        );
        assert_counts(&r, 0, 0, 0);
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains("SKIP") && l.contains(name)),
            "a SKIP line for {name}\n{out}"
        );
    }
    for (name, rows) in [(syncs::LEADS, 30), (syncs::BILLING, 38)] {
        let r = p.result(name);
        assert_status(&r, "success");
        assert_counts(&r, rows, 0, 0);
    }
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));
    assert_eq!(p.pg.count("marketing.high_value_at_risk"), 0);
    assert_eq!(p.webhook.request_count(), 0);
    assert!(!p.file("synced/cs_tool/companies.jsonl").exists());
}

#[test]
fn failing_test_skips_exactly_its_syncs() {
    let p = Project::new();
    // A test on enriched_leads that fails (leads without usage have no trial_days_remaining).
    p.replace_in_file(
        "models/marts/schema.yml",
        "      - name: trial_days_remaining\n",
        "      - name: trial_days_remaining\n        data_tests: [not_null]\n",
    );
    let build = p.dbt(&["build", "--target", "ci"]);
    assert_ne!(build.code, 0, "dbt build must fail\n{build}");
    build.assert_contains("not_null_enriched_leads_trial_days_remaining");

    let out = run_ci(&p);
    out.assert_success();
    out.assert_contains("Done. PASS=5 WARN=0 ERROR=0 SKIP=1 TOTAL=6");
    let leads = p.result(syncs::LEADS);
    assert_status(&leads, "skipped");
    let msg = message(&leads);
    assert!(
        msg.contains("not_null_enriched_leads_trial_days_remaining") && msg.contains("failed"),
        "the reason names the failed test: {msg}"
    );
    assert_eq!(p.pg.count(r#"crm."Lead""#), 0);
    for name in [
        syncs::CHURN_RISK,
        syncs::HIGH_VALUE,
        syncs::BILLING,
        syncs::ALERTS,
    ] {
        assert_status(&p.result(name), "success");
    }
    assert_eq!(segment_in_postgres(&p), segment_in_model(&p));
    assert_eq!(
        alerts_from_records(&p.webhook.accepted_records()),
        alerts_in_model(&p)
    );
}

#[test]
fn models_not_built_by_the_last_dbt_invocation_are_skipped_unless_include_unbuilt() {
    let p = Project::new();
    p.dbt(&["build", "--target", "ci", "--select", "enriched_leads"])
        .assert_success();

    let out = run_ci(&p);
    out.assert_success();
    out.assert_contains("Done. PASS=1 WARN=0 ERROR=0 SKIP=5 TOTAL=6");
    assert_status(&p.result(syncs::LEADS), "success");
    for name in [
        syncs::CHURN_RISK,
        syncs::HIGH_VALUE,
        syncs::BILLING,
        syncs::ALERTS,
        syncs::LEAD_SCORES,
    ] {
        let r = p.result(name);
        assert_status(&r, "skipped");
        assert!(message(&r).contains("not built"), "{r:#}");
    }
    assert_eq!(p.webhook.request_count(), 0);

    let out = p.activate(&["run", "--target", "ci", "--include-unbuilt"]);
    out.assert_success();
    out.assert_contains("Done. PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");
    assert_eq!(segment_in_postgres(&p), segment_in_model(&p));
    assert_eq!(
        alerts_from_records(&p.webhook.accepted_records()),
        alerts_in_model(&p)
    );
}
