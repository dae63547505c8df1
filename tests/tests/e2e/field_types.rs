//! `validate` (and every run's preflight) checks each mapped field's type against what the
//! destination describes: a column whose values the field cannot take is reported by model,
//! column and field before anything is sent.

use dbt_activate_e2e::Project;
use dbt_activate_e2e::fakes::salesforce::{CLIENT_ID, CLIENT_SECRET, SalesforceFake};

use crate::common::*;

#[test]
fn a_text_column_mapped_to_a_numeric_postgres_column_is_refused_by_model_and_column() {
    let p = Project::new();
    // account_name (VARCHAR) into mrr (numeric) cannot work; mrr (DECIMAL) into account_name
    // (text) can: exactly one problem.
    p.replace_in_file(
        "models/marts/schema.yml",
        "            account_name: account_name\n            mrr: mrr\n",
        "            account_name: mrr\n            mrr: account_name\n",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();

    let validate = p.activate(&["validate", "--target", "ci"]);
    validate.assert_code(2);
    validate
        .assert_contains("1 problem found before sending anything")
        .assert_contains("model `high_value_at_risk` (models/marts/schema.yml)")
        .assert_contains("column `account_name` (VARCHAR) is text")
        .assert_contains(
            "destination field `mrr` of marketing.high_value_at_risk is number (numeric)",
        )
        .assert_contains("hint: cast the column in the model (e.g. `cast(... as double)`)");

    let run = run_ci(&p);
    run.assert_code(2);
    run.assert_contains("column `account_name` (VARCHAR) is text");
    assert_eq!(
        p.pg_rows("select count(*) from marketing.high_value_at_risk"),
        vec![vec![Some("0".to_owned())]],
        "nothing is sent when a field's type does not fit"
    );
}

#[test]
fn salesforce_field_types_from_describe_are_checked_and_compatible_ones_pass() {
    let p = Project::new();
    let fake = SalesforceFake::start();
    p.write_file(
        "activate.yml",
        r#"destinations:
  crm:       {type: file, path: "synced/crm", format: jsonl}
  cs_tool:   {type: file, path: "synced/cs_tool", format: jsonl}
  marketing: {type: file, path: "synced/marketing", format: csv}
  billing:   {type: file, path: "synced/billing", format: jsonl}
  alerts:    {type: file, path: "synced/alerts", format: jsonl}
targets:
  ci:
    destinations:
      crm:
        type: salesforce
        login_url: "{{ env_var('SF_LOGIN_URL') }}"
        client_id: "{{ env_var('SF_CLIENT_ID') }}"
        client_secret: "{{ env_var('SF_CLIENT_SECRET') }}"
"#,
    );
    let validate = |p: &Project| {
        p.activate_cmd(&["validate", "--target", "ci", "--select", "enriched_leads"])
            .env("SF_LOGIN_URL", &fake.url())
            .env("SF_CLIENT_ID", CLIENT_ID)
            .env("SF_CLIENT_SECRET", CLIENT_SECRET)
            .run()
    };
    // As shipped: email into an email field, a list into a multi-select picklist, a
    // TIMESTAMPTZ into a datetime, text into picklists: every type fits.
    validate(&p).assert_code(0);

    // lead_score (hot / warm / cold) into a double field does not.
    p.replace_in_file(
        "models/marts/schema.yml",
        "            lead_score: Lead_Score__c\n",
        "            lead_score: Page_Views__c\n",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();
    let out = validate(&p);
    out.assert_code(2);
    out.assert_contains("model `enriched_leads`")
        .assert_contains("column `lead_score` (VARCHAR) is text")
        .assert_contains("destination field `Page_Views__c` of crm.Lead is number (double)");
    assert!(
        fake.records("Lead").is_empty(),
        "validate never writes anything"
    );
}
