use super::client::{error_reason, form_encode, form_value, path_segment};
use super::*;

fn cfg(settings: serde_json::Value) -> DestinationConfig {
    DestinationConfig {
        name: "billing".into(),
        kind: "stripe".into(),
        settings: settings.as_object().cloned().unwrap_or_default(),
        file: "activate.yml".into(),
    }
}

#[test]
fn form_bodies_are_percent_encoded_with_nested_keys() {
    let body = form_encode(&[
        ("metadata[churn_risk]".into(), "0.8".into()),
        ("name".into(), "Acme & Co".into()),
        ("email".into(), "a+b@x.io".into()),
        ("description".into(), "Ünïcode ~_.-".into()),
    ]);
    assert_eq!(
        body,
        "metadata%5Bchurn_risk%5D=0.8&name=Acme+%26+Co&email=a%2Bb%40x.io&description=%C3%9Cn%C3%AFcode+~_.-"
    );
    assert_eq!(form_value(&Value::Null), "");
    assert_eq!(path_segment("cus_A1"), "cus_A1");
    assert_eq!(path_segment("cus/../x y"), "cus%2F..%2Fx%20y");
    assert_eq!(form_value(&Value::Number("0.750".into())), "0.750");
    assert_eq!(form_value(&Value::json(serde_json::json!("x"))), "x");
    assert_eq!(
        form_value(&Value::json(serde_json::json!(["a", 1]))),
        "[\"a\",1]"
    );
}

#[test]
fn fields_are_checked_against_stripe_parameters() {
    let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(
        check_fields(
            Object::Customers,
            &f(&["email", "name", "metadata[churn_risk]"])
        )
        .is_ok()
    );
    let err = check_fields(Object::Customers, &f(&["emial"])).unwrap_err();
    assert!(err.contains("did you mean `email`"), "{err}");
    assert!(check_fields(Object::Customers, &f(&["metadata[]"])).is_err());
    assert!(check_fields(Object::Customers, &f(&["metadata[a[b]]"])).is_err());
    assert!(check_fields(Object::Customers, &f(&["payload[value]"])).is_err());
    assert!(
        check_fields(
            Object::MeterEvents,
            &f(&[
                "event_name",
                "payload[value]",
                "payload[stripe_customer_id]",
                "timestamp"
            ])
        )
        .is_ok()
    );
    assert!(check_fields(Object::MeterEvents, &f(&["email"])).is_err());
    assert!(Object::parse("customers").is_ok());
    assert!(Object::parse("billing/meter_events").is_ok());
    assert!(Object::parse("usage_records").is_err());
}

#[test]
fn customers_match_on_id_or_a_metadata_key() {
    assert_eq!(Lookup::of("id"), Ok(Lookup::Id));
    assert_eq!(
        Lookup::of("metadata[account_id]"),
        Ok(Lookup::Metadata("account_id".into()))
    );
    assert!(Lookup::of("email").is_err());
    assert_eq!(
        search_query("account_id", "o'brien"),
        r"metadata['account_id']:'o\'brien'"
    );
}

#[test]
fn idempotency_keys_follow_sync_row_key_and_content() {
    let key = [Value::Text("acc_1".into())];
    let a = idempotency_key("sync.p.s", "POST /v1/customers", &key, "name=A", "");
    assert_eq!(
        a,
        idempotency_key("sync.p.s", "POST /v1/customers", &key, "name=A", "")
    );
    assert!(a.starts_with("dbt-activate-") && a.len() == 13 + 48 && a.len() <= 255);
    assert_ne!(
        a,
        idempotency_key("sync.p.s", "POST /v1/customers", &key, "name=B", "")
    );
    assert_ne!(
        a,
        idempotency_key("sync.p.t", "POST /v1/customers", &key, "name=A", "")
    );
    let other = [Value::Text("acc_2".into())];
    assert_ne!(
        a,
        idempotency_key("sync.p.s", "POST /v1/customers", &other, "name=A", "")
    );
    assert_ne!(
        a,
        idempotency_key("sync.p.s", "POST /v1/customers", &key, "name=A", "run1")
    );
}

#[test]
fn meter_event_timestamps_become_unix_seconds() {
    assert_eq!(
        unix_seconds(&Value::Date("2025-03-01".into())),
        Ok(1_740_787_200)
    );
    assert_eq!(
        unix_seconds(&Value::Timestamp("2025-03-01T00:00:10.000000".into())),
        Ok(1_740_787_210)
    );
    assert_eq!(
        unix_seconds(&Value::TimestampTz("2025-03-01T01:00:00Z".into())),
        Ok(1_740_790_800)
    );
    assert_eq!(unix_seconds(&Value::Int(5)), Ok(5));
    assert!(unix_seconds(&Value::Text("soon".into())).is_err());
}

#[test]
fn stripe_errors_become_reasons() {
    let body = r#"{"error":{"type":"invalid_request_error","code":"email_invalid","param":"email","message":"Invalid email address: nope"}}"#;
    assert_eq!(
        error_reason(reqwest::StatusCode::BAD_REQUEST, body),
        "HTTP 400 invalid_request_error/email_invalid (param email): Invalid email address: nope"
    );
    assert_eq!(
        error_reason(reqwest::StatusCode::BAD_GATEWAY, "<html>bad gateway</html>"),
        "HTTP 502: <html>bad gateway</html>"
    );
}

#[test]
fn configuration_is_checked() {
    let Ok(ok) = StripeConfig::from_config(&cfg(serde_json::json!({
        "api_key": "sk_test_cfg_4242",
        "base_url": "http://127.0.0.1:9/",
        "writes_per_second": 10
    }))) else {
        panic!("a valid configuration")
    };
    assert_eq!(ok.base_url, "http://127.0.0.1:9");
    assert_eq!(ok.writes_per_second, 10);
    assert_eq!(ok.searches_per_second, 20);
    assert_eq!(ok.mode(), "test");
    let err = |v: serde_json::Value| match StripeConfig::from_config(&cfg(v)) {
        Ok(_) => panic!("an invalid configuration was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err(serde_json::json!({})).contains("`api_key` is required"));
    assert!(err(serde_json::json!({"api_key": "pk_test_x"})).contains("secret key"));
    let e = err(serde_json::json!({"api_key": "sk_test_x", "api_kye": 1}));
    assert!(
        e.contains("unknown key `api_kye`") && e.contains("destinations.billing"),
        "{e}"
    );
    assert!(
        err(serde_json::json!({"api_key": "sk_test_x", "writes_per_second": 0}))
            .contains("at least 1")
    );
    assert!(
        err(serde_json::json!({"api_key": "sk_test_x", "base_url": "ftp://x"}))
            .contains("base_url")
    );
}
