//! Unit tests: configuration, property values, request bodies and batch answers.

use serde_json::json;

use super::config::HubSpotConfig;
use super::request::*;
use super::*;
use crate::destination::Record;
use crate::value::Value;

fn dest_config(settings: serde_json::Value) -> DestinationConfig {
    DestinationConfig {
        name: "crm".into(),
        kind: "hubspot".into(),
        settings: settings.as_object().cloned().unwrap_or_default(),
        file: "activate.yml".into(),
    }
}

#[test]
fn config_requires_a_token_and_rejects_unknown_keys() {
    let err = HubSpotConfig::from_config(&dest_config(json!({}))).unwrap_err();
    assert!(err.to_string().contains("access_token"), "{err}");
    assert!(err.to_string().contains("destinations.crm"), "{err}");
    let err = HubSpotConfig::from_config(&dest_config(
        json!({"access_token": "pat-na1-xyz", "acess_token": "x"}),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("acess_token"), "{err}");
    let err = HubSpotConfig::from_config(&dest_config(
        json!({"access_token": "pat-na1-xyz", "batch_size": 101}),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("between 1 and 100"), "{err}");
}

#[test]
fn config_defaults_follow_hubspot() {
    let c = HubSpotConfig::from_config(&dest_config(
        json!({"access_token": "pat-na1-xyz", "base_url": "http://127.0.0.1:9/"}),
    ))
    .unwrap();
    assert_eq!(c.base_url, "http://127.0.0.1:9");
    assert_eq!(c.batch_size, 100);
    assert_eq!(c.requests_per_window, 100);
    // 100 per 10 s, paced one slot under the limit.
    assert_eq!(
        c.request_interval(),
        std::time::Duration::from_secs(10) / 99
    );
}

#[test]
fn property_values_are_hubspot_strings() {
    assert_eq!(property_value(&Value::Null), "");
    assert_eq!(property_value(&Value::Bool(true)), "true");
    assert_eq!(property_value(&Value::Int(42)), "42");
    assert_eq!(property_value(&Value::Number("1250.50".into())), "1250.50");
    assert_eq!(
        property_value(&Value::Date("2024-03-01".into())),
        "2024-03-01"
    );
    assert_eq!(
        property_value(&Value::TimestampTz("2024-03-01T12:30:00.123456Z".into())),
        "2024-03-01T12:30:00.123Z"
    );
    assert_eq!(
        property_value(&Value::Timestamp("2024-03-01T12:30:00".into())),
        "2024-03-01T12:30:00.000Z"
    );
    assert_eq!(property_value(&Value::json(json!(["a", "b"]))), "a;b");
    assert_eq!(property_value(&Value::json(json!({"a": 1}))), r#"{"a":1}"#);
}

fn batch_of<'a>(
    fields: &'a [String],
    keys: &'a [usize],
    records: &'a [Record],
    op: WriteOp,
) -> WriteBatch<'a> {
    WriteBatch {
        sync: "sync.x.y",
        object: "companies",
        op,
        fields,
        key_positions: keys,
        records,
        keys_new_to_state: false,
    }
}

#[test]
fn bodies_carry_id_property_and_clear_empties_non_key_fields() {
    let fields = vec!["company_id".to_owned(), "name".to_owned()];
    let records = vec![Record {
        values: vec![Value::Text("A1".into()), Value::Text("Acme".into())],
    }];
    let batch = batch_of(&fields, &[0], &records, WriteOp::Upsert);
    assert_eq!(key_value(&batch, &records[0]).as_deref(), Some("A1"));
    let props = properties(&batch, &records[0], false);
    assert_eq!(
        upsert_body("company_id", &[("A1".into(), props)]),
        json!({"inputs": [{"idProperty": "company_id", "id": "A1",
                           "properties": {"company_id": "A1", "name": "Acme"}}]})
    );
    assert_eq!(
        properties(&batch, &records[0], true),
        json!({"company_id": "A1", "name": ""})
    );
}

#[test]
fn multi_status_errors_become_per_input_failures() {
    let body = json!({
        "status": "COMPLETE",
        "results": [{"id": "11", "properties": {"email": "a@x.com"}}],
        "numErrors": 1,
        "errors": [{"status": "error", "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid: INVALID_EMAIL",
                    "context": {"ids": ["B@x"]}}]
    })
    .to_string();
    let resp = BatchResponse::parse(&body).unwrap();
    let ids = vec!["A@x.com".to_owned(), "b@x".to_owned()];
    let found = resp.ids_by("email");
    let confirmed: Vec<bool> = ids
        .iter()
        .map(|k| found.contains_key(&k.to_lowercase()))
        .collect();
    assert_eq!(confirmed, vec![true, false]);
    let failed = failures(&ids, &confirmed, &resp.errors);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 1);
    assert!(failed[0].1.contains("VALIDATION_ERROR"), "{failed:?}");
    assert!(failed[0].1.contains("INVALID_EMAIL"), "{failed:?}");
}

#[test]
fn errors_naming_no_input_fail_every_unconfirmed_input() {
    let errors = vec![BatchError {
        message: "something went wrong".into(),
        names: Default::default(),
    }];
    let ids = vec!["a".to_owned(), "b".to_owned()];
    let failed = failures(&ids, &[true, false], &errors);
    assert_eq!(failed, vec![(1, "something went wrong".to_owned())]);
    // A 207 whose body is unreadable confirms nothing.
    let failed = judge_results(&ids, 207, "<html>", |_| vec![true, true]);
    assert_eq!(failed.len(), 2);
}

#[test]
fn refusal_status_is_read_from_the_reason() {
    assert_eq!(refused_status("HTTP 401: bad token"), Some(401));
    assert_eq!(refused_status("something"), None);
    assert!(check_object("crm", "p_projects").is_ok());
    assert!(check_object("crm", "../x").is_err());
}

#[test]
fn list_objects_and_their_syncs_are_checked_before_sending() {
    use super::lists::{ListInfo, check_list_sync, list_name, missing_ids};
    assert_eq!(
        list_name("list:High value at risk"),
        Some("High value at risk")
    );
    assert_eq!(list_name("contacts"), None);
    let email = vec!["email".to_string()];
    let with_mrr = vec!["email".to_string(), "mrr".to_string()];
    let check = |fields: &[String], op, removal| {
        check_list_sync(
            "VIP",
            &SyncShape {
                object: "list:VIP",
                op,
                removal,
                fields,
                key_fields: &email,
            },
        )
    };
    assert!(check(&email, WriteOp::Upsert, Some(WriteOp::Delete)).is_ok());
    assert!(check(&email, WriteOp::Insert, None).is_ok());
    let e = check(&with_mrr, WriteOp::Upsert, None).unwrap_err();
    assert!(
        e.contains("`mrr`") && e.contains("only the match field"),
        "{e}"
    );
    let e = check(&email, WriteOp::Update, None).unwrap_err();
    assert!(e.contains("operation: update"), "{e}");
    let e = check(&email, WriteOp::Upsert, Some(WriteOp::Clear)).unwrap_err();
    assert!(e.contains("on_delete: clear"), "{e}");
    assert_eq!(
        ListInfo::parse(r#"{"list": {"listId": "12", "processingType": "MANUAL", "name": "VIP"}}"#),
        Some(ListInfo {
            id: "12".into(),
            processing_type: "MANUAL".into()
        })
    );
    assert_eq!(ListInfo::parse(r#"{"lists": []}"#), None);
    assert_eq!(
        missing_ids(r#"{"recordIdsAdded": ["1"], "recordIdsMissing": ["7", 8]}"#),
        vec!["7".to_string(), "8".to_string()]
    );
    assert!(missing_ids(r#"{"recordsIdsAdded": ["1"]}"#).is_empty());
}
