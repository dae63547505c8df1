//! `dbt-activate exposures`: a dbt exposure per activation, which real `dbt parse` accepts and
//! puts in the manifest with its owner and its model as a dependency.

use dbt_activate_e2e::{Project, syncs};
use serde_json::Value;

#[test]
fn exposures_land_in_the_dbt_manifest() {
    let p = Project::new();
    let out = p.activate(&["exposures", "--target", "ci"]);
    out.assert_success();
    out.assert_contains("Wrote 6 exposures to");
    // Four syncs set no owner: they are named, with how to set one.
    out.assert_contains("4 syncs without an owner");
    let yml = p.read_file("models/activate_exposures.yml");
    snapshot!("activate_exposures_yml", yml);

    let parse = p.dbt(&["parse", "--target", "ci"]);
    parse.assert_success();
    let manifest: Value =
        serde_json::from_str(&p.read_file("target/manifest.json")).expect("manifest.json");
    let exposures = manifest["exposures"]
        .as_object()
        .expect("the manifest has exposures");
    assert_eq!(exposures.len(), 6, "{:?}", exposures.keys());
    let exposure = |sync: &str| -> &Value {
        let id = format!("exposure.activate_example.activate_{sync}");
        exposures
            .get(&id)
            .unwrap_or_else(|| panic!("no {id} in {:?}", exposures.keys()))
    };
    for (sync, model) in [
        (syncs::LEADS, "enriched_leads"),
        (syncs::CHURN_RISK, "churn_risk"),
        (syncs::HIGH_VALUE, "high_value_at_risk"),
        (syncs::BILLING, "billing_usage"),
        (syncs::ALERTS, "churn_alerts"),
    ] {
        let e = exposure(sync);
        assert_eq!(e["type"], "application", "{e:#}");
        assert_eq!(
            e["depends_on"]["nodes"],
            serde_json::json!([format!("model.activate_example.{model}")]),
            "{e:#}"
        );
        assert_eq!(e["meta"]["dbt_activate"]["sync"], sync, "{e:#}");
    }
    // Owner from meta.activate, then from the model's meta.owner, else `dbt-activate`.
    assert_eq!(
        exposure(syncs::LEADS)["owner"]["email"],
        "growth@example.com"
    );
    assert_eq!(exposure(syncs::LEADS)["owner"]["name"], "Growth team");
    assert_eq!(
        exposure(syncs::CHURN_RISK)["owner"]["email"],
        "cs-team@example.com"
    );
    assert_eq!(exposure(syncs::BILLING)["owner"]["name"], "dbt-activate");
    // The query sync depends on what its SQL references.
    let scores = exposure(syncs::LEAD_SCORES);
    let nodes: Vec<&str> = scores["depends_on"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        nodes,
        [
            "model.activate_example.stg_leads",
            "model.activate_example.stg_product_usage"
        ],
        "{scores:#}"
    );

    // dbt-activate still reads the manifest that now has exposures.
    p.activate(&["ls", "--target", "ci"]).assert_success();

    // --out writes elsewhere; rerunning gives the same file.
    let elsewhere = p.path().join("../elsewhere/exposures.yml");
    p.activate(&[
        "exposures",
        "--target",
        "ci",
        "--out",
        &elsewhere.display().to_string(),
    ])
    .assert_success();
    assert_eq!(
        std::fs::read_to_string(&elsewhere).expect("the --out file"),
        yml
    );
}
