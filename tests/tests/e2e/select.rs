//! `--select` / `--exclude` with dbt's selection syntax pick the right syncs.

use dbt_activate_e2e::{Project, syncs};

/// Runs with extra selection args and returns the sorted names in the results.
#[track_caller]
fn run_selected(p: &Project, selection: &[&str]) -> Vec<String> {
    let mut args = vec!["run", "--target", "ci"];
    args.extend_from_slice(selection);
    let out = p.activate(&args);
    out.assert_success();
    let names = p.result_names();
    out.assert_contains(&format!("TOTAL={}", names.len()));
    names
}

fn names(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn select_runs_only_the_selected_syncs() {
    let p = Project::new();
    assert_eq!(
        run_selected(&p, &["--select", "enriched_leads"]),
        names(&[syncs::LEADS])
    );
    assert_eq!(p.pg.count(r#"crm."Lead""#), 30);
    assert_eq!(p.pg.count("marketing.high_value_at_risk"), 0);
    assert_eq!(p.webhook.request_count(), 0);
    assert_eq!(p.synced_files(), Vec::<String>::new());

    assert_eq!(
        run_selected(&p, &["--exclude", "tag:customer_success"]),
        names(&[syncs::LEADS, syncs::BILLING, syncs::LEAD_SCORES])
    );
    assert_eq!(p.webhook.request_count(), 0);
    assert!(!p.file("synced/cs_tool").exists());

    // a sync by name; a union of two models
    assert_eq!(
        run_selected(&p, &["--select", syncs::ALERTS]),
        names(&[syncs::ALERTS])
    );
    assert_eq!(
        run_selected(&p, &["--select", "enriched_leads", "billing_usage"]),
        names(&[syncs::LEADS, syncs::BILLING])
    );
    assert_eq!(
        run_selected(
            &p,
            &[
                "--select",
                "tag:customer_success",
                "--exclude",
                "churn_alerts"
            ]
        ),
        names(&[syncs::CHURN_RISK, syncs::HIGH_VALUE])
    );
}

#[test]
fn graph_operators_follow_lineage() {
    let p = Project::new();
    assert_eq!(
        run_selected(&p, &["--select", "churn_risk+"]),
        names(&[syncs::CHURN_RISK, syncs::HIGH_VALUE, syncs::ALERTS])
    );
    assert_eq!(
        run_selected(&p, &["--select", "high_value_at_risk+"]),
        names(&[syncs::HIGH_VALUE])
    );
    assert_eq!(
        run_selected(&p, &["--select", "+churn_alerts"]),
        names(&[syncs::CHURN_RISK, syncs::ALERTS])
    );
    // intersection
    assert_eq!(
        run_selected(&p, &["--select", "path:models/marts,tag:customer_success"]),
        names(&[syncs::CHURN_RISK, syncs::HIGH_VALUE, syncs::ALERTS])
    );
    // `+enriched_leads` reaches the staging models, which have no syncs of their own
    assert_eq!(
        run_selected(&p, &["--select", "+enriched_leads"]),
        names(&[syncs::LEADS])
    );
    assert_eq!(p.pg.count(r#"crm."Lead""#), 30);
    assert!(
        !p.file("synced/billing").exists(),
        "billing_usage was never selected"
    );
}
