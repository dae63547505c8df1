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
    let list = Value::json(serde_json::json!(["export", "sso"]));
    let mut json = String::new();
    encode::write_json(&list, &mut json);
    assert_eq!(
        json, "\"export;sso\"",
        "a list is multi-select picklist text"
    );
    assert_eq!(encode::csv_text(&list).as_deref(), Some("export;sso"));
    assert_eq!(encode::csv_text(&Value::json(serde_json::json!([]))), None);
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
    let dest = SalesforceDestination::from_config(
        &config(serde_json::json!({
            "client_id": "cid", "client_secret": "csecret-123", "instance_url": "http://127.0.0.1:1"
        })),
        std::path::Path::new("."),
    )
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
        keys_new_to_state: false,
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
    let err = SalesforceDestination::from_config(
        &config(serde_json::json!({
            "client_id": "cid", "client_secret": "x-secret", "bulk_treshold": 5
        })),
        std::path::Path::new("."),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("activate.yml, destinations.crm: unknown key `bulk_treshold`"),
        "{err}"
    );
    assert!(err.contains("did you mean `bulk_threshold`"), "{err}");
    let err = SalesforceDestination::from_config(
        &config(serde_json::json!({"client_id": "cid"})),
        std::path::Path::new("."),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("`client_secret` (client credentials flow), `refresh_token`"),
        "{err}"
    );
    let err = SalesforceDestination::from_config(
        &config(serde_json::json!({
            "client_id": "cid", "client_secret": "x-secret", "batch_size": 201
        })),
        std::path::Path::new("."),
    )
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
        row(Value::json(json!(["sso", "export"]))),
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

/// The test-only keys of tests/keys/ (see its README).
fn test_key(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/keys")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The DER body of a PEM block.
fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn jwt_assertions_are_rs256_with_salesforce_claims_from_pkcs8_and_pkcs1_keys() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let public = pem_der(&test_key("salesforce-jwt-test.pub"));
    let verifier = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &public,
    );
    for file in ["salesforce-jwt-test.key", "salesforce-jwt-test.pkcs1.key"] {
        let signer = super::jwt::Signer::from_pem(&test_key(file)).unwrap();
        let jwt = signer
            .assertion(
                "3MVGconsumer",
                "ops@acme.com",
                "https://login.salesforce.com",
                1_000,
            )
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "RS256"}));
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"iss": "3MVGconsumer", "sub": "ops@acme.com",
                "aud": "https://login.salesforce.com", "exp": 1_000 + super::jwt::LIFETIME_SECONDS})
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        verifier
            .verify(signed.as_bytes(), &signature)
            .unwrap_or_else(|_| panic!("{file}: the public key verifies the signature"));
    }
    let wrong = super::jwt::Signer::from_pem(&test_key("salesforce-jwt-wrong.key")).unwrap();
    let jwt = wrong.assertion("c", "u", "a", 0).unwrap();
    let (signed, sig) = jwt.rsplit_once('.').unwrap();
    assert!(
        verifier
            .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .is_err()
    );
}

#[test]
fn jwt_config_reads_the_key_from_a_path_or_text_and_never_shows_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
    let dest = SalesforceDestination::from_config(
        &config(serde_json::json!({
            "client_id": "cid", "username": "ops@acme.com",
            "private_key_path": "keys/salesforce-jwt-test.key",
            "login_url": "https://acme.my.salesforce.com"
        })),
        &dir,
    )
    .unwrap();
    match &dest.settings().auth {
        super::config::Auth::JwtBearer { audience, .. } => {
            assert_eq!(
                audience, "https://login.salesforce.com",
                "a My Domain's aud"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        super::config::default_audience("https://acme--uat.sandbox.my.salesforce.com"),
        "https://test.salesforce.com"
    );
    assert_eq!(
        super::config::default_audience("http://127.0.0.1:4000"),
        "http://127.0.0.1:4000"
    );
    // A key pasted into a CI secret with spaces or literal \n for its line breaks.
    let pem = test_key("salesforce-jwt-test.pkcs1.key");
    for pasted in [pem.replace('\n', " "), pem.replace('\n', "\\n")] {
        assert!(super::jwt::Signer::from_pem(&pasted).is_ok());
    }
    // A truncated key: the error says what is wrong, not the key.
    let lines: Vec<&str> = pem.lines().collect();
    let broken = [&lines[..5], &lines[lines.len() - 1..]].concat().join("\n");
    let err = SalesforceDestination::from_config(
        &config(
            serde_json::json!({"client_id": "cid", "username": "u@x.io", "private_key": broken}),
        ),
        &dir,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("`private_key`: the RSA PRIVATE KEY is not a usable RSA key"),
        "{err}"
    );
    assert!(!err.contains(lines[2]), "{err}");
    let err = SalesforceDestination::from_config(
        &config(serde_json::json!({"client_id": "cid", "private_key": pem})),
        &dir,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("`username` is required with a private key"),
        "{err}"
    );
    let err = SalesforceDestination::from_config(
        &config(serde_json::json!({"client_id": "cid", "username": "u", "private_key_path": "keys/missing.key"})),
        &dir,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("`private_key_path`: cannot read"), "{err}");
}
