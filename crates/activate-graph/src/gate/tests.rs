#![allow(clippy::unwrap_used)]

use activate_manifest::{ActivationSpec, RunResults};
use serde_json::json;

use crate::fixture;
use crate::{Gate, GatePolicy, ProjectGraph, gate};

const STRICT: GatePolicy = GatePolicy {
    include_unbuilt: false,
};
const UNBUILT: GatePolicy = GatePolicy {
    include_unbuilt: true,
};

/// run_results.json of `dbt <which>` with `(unique_id, status, message)` results.
fn run_results(which: &str, results: &[(&str, &str, Option<&str>)]) -> RunResults {
    let results: Vec<_> = results
        .iter()
        .map(|(id, status, message)| json!({"unique_id": id, "status": status, "message": message}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"},
        "args": {"which": which},
        "results": results,
    }))
    .unwrap()
}

/// The gate of sync `sync` given the last invocation.
fn gate_of(sync: &str, results: Option<&RunResults>, policy: GatePolicy) -> Gate {
    let (manifest, specs) = fixture::project();
    let graph = ProjectGraph::new(&manifest, &specs);
    let spec: &ActivationSpec = specs.iter().find(|s| s.name == sync).unwrap();
    gate(&graph, results, spec, policy)
}

fn skip(reason: &str) -> Gate {
    Gate::Skip {
        reason: reason.to_owned(),
    }
}

#[test]
fn built_model_is_ready() {
    for status in ["success", "no-op", "reused", "pass"] {
        let rr = run_results("build", &[("model.p.enriched_leads", status, None)]);
        assert_eq!(
            gate_of("leads_to_crm", Some(&rr), STRICT),
            Gate::Ready,
            "{status}"
        );
    }
}

#[test]
fn run_and_retry_invocations_count() {
    for which in ["run", "retry"] {
        let rr = run_results(which, &[("model.p.churn_risk", "success", None)]);
        assert_eq!(
            gate_of("churn_to_cs", Some(&rr), STRICT),
            Gate::Ready,
            "{which}"
        );
    }
}

#[test]
fn passing_and_warning_tests_are_fine() {
    let rr = run_results(
        "build",
        &[
            ("model.p.enriched_leads", "success", None),
            (
                "test.p.unique_enriched_leads_email",
                "warn",
                Some("Got 2 results, configured to warn if != 0"),
            ),
            // A failure on a test of another model does not matter here.
            ("test.p.not_null_churn_risk_id", "fail", None),
        ],
    );
    assert_eq!(gate_of("leads_to_crm", Some(&rr), STRICT), Gate::Ready);
}

#[test]
fn failed_test_skips() {
    let rr = run_results(
        "build",
        &[
            ("model.p.enriched_leads", "success", None),
            (
                "test.p.unique_enriched_leads_email",
                "fail",
                Some("Got 3 results, configured to fail if != 0"),
            ),
        ],
    );
    assert_eq!(
        gate_of("leads_to_crm", Some(&rr), STRICT),
        skip("test unique_enriched_leads_email failed")
    );
}

#[test]
fn errored_test_skips() {
    let rr = run_results(
        "build",
        &[
            ("model.p.churn_risk", "success", None),
            (
                "test.p.not_null_churn_risk_id",
                "error",
                Some("Database Error"),
            ),
        ],
    );
    assert_eq!(
        gate_of("churn_to_cs", Some(&rr), STRICT),
        skip("test not_null_churn_risk_id errored")
    );
}

#[test]
fn failed_model_skips_with_first_line_of_error() {
    let rr = run_results(
        "build",
        &[(
            "model.p.enriched_leads",
            "error",
            Some(
                "\nRuntime Error in model enriched_leads (models/marts/enriched_leads.sql)\n  Binder Error: column x not found",
            ),
        )],
    );
    assert_eq!(
        gate_of("leads_to_ops", Some(&rr), STRICT),
        skip(
            "model failed to build: Runtime Error in model enriched_leads (models/marts/enriched_leads.sql)"
        )
    );
    let rr = run_results("build", &[("model.p.enriched_leads", "error", None)]);
    assert_eq!(
        gate_of("leads_to_ops", Some(&rr), STRICT),
        skip("model failed to build")
    );
}

#[test]
fn skipped_downstream_names_the_failed_upstream_model() {
    let rr = run_results(
        "build",
        &[
            ("seed.p.raw_usage", "success", None),
            ("model.p.stg_usage", "error", Some("Database Error")),
            ("model.p.enriched_leads", "skipped", None),
            ("model.p.int_scores", "skipped", None),
            ("model.p.high_value_at_risk", "skipped", None),
        ],
    );
    assert_eq!(
        gate_of("leads_to_crm", Some(&rr), STRICT),
        skip("upstream model stg_usage failed")
    );
    assert_eq!(
        gate_of("segment_to_marketing", Some(&rr), STRICT),
        skip("upstream model stg_usage failed")
    );
}

#[test]
fn skipped_downstream_names_the_failed_upstream_test() {
    let rr = run_results(
        "build",
        &[
            ("model.p.stg_usage", "success", None),
            ("test.p.unique_stg_usage_id", "fail", None),
            ("model.p.churn_risk", "skipped", None),
        ],
    );
    assert_eq!(
        gate_of("churn_to_cs", Some(&rr), STRICT),
        skip("test unique_stg_usage_id on upstream model stg_usage failed")
    );
}

#[test]
fn skipped_without_a_known_cause() {
    let rr = run_results("build", &[("model.p.churn_risk", "skipped", None)]);
    assert_eq!(
        gate_of("churn_to_cs", Some(&rr), STRICT),
        skip("upstream model failed")
    );
}

#[test]
fn absent_model_skips_unless_include_unbuilt() {
    let rr = run_results("build", &[("model.p.churn_risk", "success", None)]);
    assert_eq!(
        gate_of("leads_to_crm", Some(&rr), STRICT),
        skip("not built in the last dbt invocation")
    );
    assert_eq!(gate_of("leads_to_crm", Some(&rr), UNBUILT), Gate::Ready);
}

#[test]
fn include_unbuilt_still_honours_failed_tests() {
    let rr = run_results(
        "test",
        &[("test.p.unique_enriched_leads_email", "fail", None)],
    );
    assert_eq!(
        gate_of("leads_to_crm", Some(&rr), UNBUILT),
        skip("test unique_enriched_leads_email failed")
    );
}

#[test]
fn compile_proves_nothing() {
    let rr = run_results("compile", &[("model.p.enriched_leads", "success", None)]);
    assert_eq!(
        gate_of("leads_to_crm", Some(&rr), STRICT),
        skip("the last dbt invocation was `dbt compile`, which builds nothing; run `dbt build`")
    );
    assert_eq!(gate_of("leads_to_crm", Some(&rr), UNBUILT), Gate::Ready);
    let rr = run_results("generate", &[("model.p.enriched_leads", "success", None)]);
    assert_eq!(
        gate_of("leads_to_crm", Some(&rr), STRICT),
        skip(
            "the last dbt invocation was `dbt docs generate`, which builds nothing; run `dbt build`"
        )
    );
}

#[test]
fn missing_run_results() {
    assert_eq!(gate_of("leads_to_crm", None, UNBUILT), Gate::Ready);
    let Gate::Skip { reason } = gate_of("leads_to_crm", None, STRICT) else {
        panic!("expected a skip");
    };
    assert!(reason.contains("--include-unbuilt"), "{reason}");
}
