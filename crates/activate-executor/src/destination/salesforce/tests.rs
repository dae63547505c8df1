//! Request building and configuration of the salesforce destination (HTTP is covered end to
//! end against the fake in tests/tests/e2e/salesforce.rs).

use super::client::{error_text, form, parse_limit_info};
use super::encode;
use super::*;
use crate::destination::Record;
use crate::value::Value;

fn config(settings: serde_json::Value) -> DestinationConfig {
    DestinationConfig {
        name: "crm".into(),
        kind: "salesforce".into(),
        settings: settings.as_object().cloned().unwrap_or_default(),
        file: "activate.yml".into(),
    }
}

#[test]
fn values_are_encoded_as_salesforce_expects() {
    let mut json = String::new();
    encode::write_json(
        &Value::TimestampTz("2024-05-01T12:30:00.123456Z".into()),
        &mut json,
    );
    assert_eq!(json, "\"2024-05-01T12:30:00.123Z\"");
    assert_eq!(
        encode::datetime("2024-05-01T12:30:00"),
        "2024-05-01T12:30:00.000Z"
    );
    let list = Value::Json(serde_json::json!(["export", "sso"]));
    let mut json = String::new();
    encode::write_json(&list, &mut json);
    assert_eq!(
        json, "\"export;sso\"",
        "a list is multi-select picklist text"
    );
    assert_eq!(encode::csv_text(&list).as_deref(), Some("export;sso"));
    assert_eq!(encode::csv_text(&Value::Json(serde_json::json!([]))), None);
    assert_eq!(
        encode::csv_text(&Value::Bool(true)).as_deref(),
        Some("true")
    );
    assert_eq!(
        encode::csv_text(&Value::Number("12.50".into())).as_deref(),
        Some("12.50")
    );
    assert_eq!(
        encode::soql_literal(&Value::Text("o'neil\\x".into())),
        r"'o\'neil\\x'"
    );
    assert_eq!(encode::soql_literal(&Value::Int(42)), "42");
    assert_eq!(encode::json_key_text(&serde_json::json!(42.0)), "42");
}

#[test]
fn errors_and_limit_headers_are_read() {
    assert_eq!(
        error_text(
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#
        ),
        "INVALID_SESSION_ID: Session expired or invalid"
    );
    assert_eq!(
        error_text(
            r#"{"error":"invalid_client","error_description":"invalid client credentials"}"#
        ),
        "invalid_client: invalid client credentials"
    );
    assert_eq!(
        encode::record_errors(&serde_json::json!([
            {"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}
        ])),
        "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (fields: LastName)"
    );
    assert_eq!(parse_limit_info("api-usage=18/5000"), Some((18, 5000)));
    assert_eq!(
        parse_limit_info("per-app-api-usage=1/10(appName=x), api-usage=7/9"),
        Some((7, 9))
    );
    assert_eq!(
        form(&[("q", "SELECT Id FROM Lead WHERE Email IN ('a+b@x.io')")]),
        "q=SELECT+Id+FROM+Lead+WHERE+Email+IN+%28%27a%2Bb%40x.io%27%29"
    );
}

#[test]
fn collection_records_carry_the_type_and_clear_nulls_non_key_fields() {
    let dest = SalesforceDestination::from_config(&config(serde_json::json!({
        "client_id": "cid", "client_secret": "csecret-123", "instance_url": "http://127.0.0.1:1"
    })))
    .unwrap();
    let fields = vec!["Email".to_owned(), "Company".to_owned()];
    let records = vec![Record {
        values: vec![Value::Text("a@x.io".into()), Value::Text("Acme".into())],
    }];
    let batch = WriteBatch {
        sync: "s",
        object: "Lead",
        op: WriteOp::Clear,
        fields: &fields,
        key_positions: &[0],
        records: &records,
    };
    assert_eq!(
        dest.record_json(&batch, 0, Some("00Q1")),
        r#"{"attributes":{"type":"Lead"},"id":"00Q1","Email":"a@x.io","Company":null}"#
    );
    let (method, path, body) = dest.collection_request(
        &WriteBatch {
            op: WriteOp::Upsert,
            ..batch.clone()
        },
        "Email",
        &[0],
        &[None],
    );
    assert_eq!(method, Method::PATCH);
    assert_eq!(path, "/services/data/v62.0/composite/sobjects/Lead/Email");
    let body = String::from_utf8(body.unwrap().bytes.to_vec()).unwrap();
    assert!(
        body.starts_with(r#"{"allOrNone":false,"records":[{"attributes""#),
        "{body}"
    );
    assert_eq!(dest.capabilities().max_batch_rows, 10_000);
}

#[test]
fn config_errors_name_the_destination() {
    let err = SalesforceDestination::from_config(&config(serde_json::json!({
        "client_id": "cid", "client_secret": "x-secret", "bulk_treshold": 5
    })))
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("activate.yml, destinations.crm: unknown key `bulk_treshold`"),
        "{err}"
    );
    assert!(err.contains("did you mean `bulk_threshold`"), "{err}");
    let err = SalesforceDestination::from_config(&config(serde_json::json!({"client_id": "cid"})))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`client_secret` (client credentials flow) or `refresh_token`"),
        "{err}"
    );
    let err = SalesforceDestination::from_config(&config(serde_json::json!({
        "client_id": "cid", "client_secret": "x-secret", "batch_size": 201
    })))
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("between 1 and 200"), "{err}");
}

#[test]
fn a_held_value_equals_the_row_value_as_salesforce_answers_it() {
    use serde_json::json;
    let row = |v: Value| encode::json_value(&v);
    let same =
        |want: serde_json::Value, have: serde_json::Value| encode::same_value(&want, Some(&have));
    assert!(same(row(Value::Number("12.50".into())), json!(12.5)));
    assert!(same(row(Value::Int(3)), json!(3.0)));
    assert!(same(
        row(Value::TimestampTz("2025-01-06T09:00:00Z".into())),
        json!("2025-01-06T09:00:00.000+0000")
    ));
    assert!(same(
        row(Value::Json(json!(["sso", "export"]))),
        json!("export;sso")
    ));
    assert!(same(row(Value::Null), json!(null)));
    assert!(encode::same_value(&row(Value::Null), None));
    assert!(same(row(Value::Bool(true)), json!(true)));
    assert!(
        !same(row(Value::Text("007".into())), json!("7")),
        "text is exact"
    );
    assert!(!same(row(Value::Text("Acme".into())), json!("Acme Inc")));
    assert!(!same(row(Value::Null), json!("something")));
    assert!(!same(
        row(Value::TimestampTz("2025-01-06T09:00:00Z".into())),
        json!("2025-01-06T09:00:01.000+0000")
    ));
}
