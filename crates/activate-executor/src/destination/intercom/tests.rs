//! Request building, configuration, and the client against a scripted loopback server.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::body::{error_reason, record_body};
use super::*;
use crate::value::Value;

fn config(settings: serde_json::Value) -> DestinationConfig {
    let serde_json::Value::Object(settings) = settings else {
        panic!("settings must be an object")
    };
    DestinationConfig {
        name: "cs_tool".into(),
        kind: "intercom".into(),
        settings,
        file: "activate.yml".into(),
    }
}

fn err(settings: serde_json::Value) -> String {
    match IntercomDestination::from_config(&config(settings)) {
        Ok(_) => panic!("expected a configuration error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn configuration_is_checked() {
    let e = err(json!({"access_token": "tok-abcdef", "base_ur": "http://x"}));
    assert!(
        e.contains("activate.yml, destinations.cs_tool: unknown key `base_ur`"),
        "{e}"
    );
    assert!(e.contains("did you mean `base_url`"), "{e}");
    let e = err(json!({}));
    assert!(e.contains("`access_token` is required"), "{e}");
    let e = err(json!({"access_token": "tok-abcdef", "base_url": "ftp://x"}));
    assert!(e.contains("base_url"), "{e}");
    let e = err(json!({"access_token": "tok-abcdef", "contact_role": "admin"}));
    assert!(e.contains("contact_role"), "{e}");
    let e = err(json!({"access_token": "tok-abcdef", "concurrency": 0}));
    assert!(e.contains("`concurrency` must be at least 1"), "{e}");
    let ok = IntercomDestination::from_config(&config(json!({"access_token": "tok-secret-123"})))
        .expect("valid");
    assert_eq!(ok.identity(), "https://api.intercom.io");
    assert_eq!(ok.capabilities().max_batch_rows, 100);
    assert_eq!(
        crate::secrets::redact("token tok-secret-123"),
        "token ****",
        "the token is a registered secret"
    );
}

#[test]
fn standard_fields_go_top_level_and_the_rest_are_custom_attributes() {
    let fields: Vec<String> = [
        "company_id",
        "name",
        "churn_risk_score",
        "custom_attributes.plan",
        "monthly_spend",
        "renewal_at",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let record = Record {
        values: vec![
            Value::Text("acc_001".into()),
            Value::Text("Acme".into()),
            Value::Number("0.412".into()),
            Value::Text("growth".into()),
            Value::Number("304.00".into()),
            Value::TimestampTz("2025-03-01T12:00:00.000000Z".into()),
        ],
    };
    let records = [record];
    let mut batch = WriteBatch {
        sync: "sync.p.s",
        object: "companies",
        op: WriteOp::Upsert,
        fields: &fields,
        key_positions: &[0],
        records: &records,
        keys_new_to_state: false,
    };
    let body = Json::Object(record_body(Object::Companies, &batch, &records[0]));
    assert_eq!(
        body,
        json!({
            "company_id": "acc_001",
            "name": "Acme",
            "monthly_spend": 304.00,
            "custom_attributes": {"churn_risk_score": 0.412, "plan": "growth", "renewal_at": 1740830400}
        })
    );
    batch.op = WriteOp::Clear;
    let body = Json::Object(record_body(Object::Companies, &batch, &records[0]));
    assert_eq!(body["company_id"], json!("acc_001"));
    assert_eq!(body["name"], Json::Null);
    assert_eq!(body["custom_attributes"]["churn_risk_score"], Json::Null);

    assert_eq!(Object::Contacts.search_field("external_id"), "external_id");
    assert_eq!(
        Object::Contacts.search_field("account_id"),
        "custom_attributes.account_id"
    );
    assert_eq!(Object::parse("company"), Some(Object::Companies));
    assert_eq!(Object::parse("Lead"), None);
}

#[test]
fn intercom_errors_become_reasons() {
    let body = r#"{"type":"error.list","request_id":"r1","errors":[{"code":"parameter_invalid","message":"Custom attribute 'x' does not exist"}]}"#;
    assert_eq!(
        error_reason(400, body),
        "HTTP 400 parameter_invalid: Custom attribute 'x' does not exist"
    );
    assert_eq!(error_reason(502, ""), "HTTP 502");
    assert_eq!(error_reason(400, "oops"), "HTTP 400: oops");
    assert_eq!(
        body::conflict_id(
            "HTTP 409 conflict: A contact matching those details already exists with id=6762f0dd1bb6"
        )
        .as_deref(),
        Some("6762f0dd1bb6")
    );
}

/// Answers one scripted response per request (the last repeats); records request heads.
async fn server(script: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let read = socket.read(&mut chunk).await.unwrap_or(0);
                if read == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..read]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(pos) = text.find("\r\n\r\n") {
                    let length = text[..pos]
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0usize);
                    if buf.len() >= pos + 4 + length {
                        break;
                    }
                }
            }
            log.lock()
                .expect("log")
                .push(String::from_utf8_lossy(&buf).to_string());
            let response = &script[n.min(script.len() - 1)];
            n += 1;
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, seen)
}

fn response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
}

fn destination(url: &str) -> IntercomDestination {
    IntercomDestination::from_config(&config(json!({
        "access_token": "tok-unit-test-9",
        "base_url": url,
        "max_retries": 2,
    })))
    .expect("valid")
}

#[tokio::test]
async fn a_rate_limit_reset_header_pauses_until_the_window_resets() {
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 2;
    // A 429 without Retry-After: the reset header says when to come back.
    let throttled = response(
        "429 Too Many Requests",
        &format!(
            "X-RateLimit-Limit: 10\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: {reset}\r\n"
        ),
        r#"{"type":"error.list","errors":[{"code":"rate_limit_exceeded","message":"Exceeded rate limit"}]}"#,
    );
    let fine = response("200 OK", "", r#"{"type":"company","id":"c1"}"#);
    let (url, seen) = server(vec![throttled, fine]).await;
    let dest = destination(&url);
    let fields = vec!["company_id".to_string(), "name".to_string()];
    let records = [Record {
        values: vec![Value::Text("acc_1".into()), Value::Text("Acme".into())],
    }];
    let batch = WriteBatch {
        sync: "sync.p.s",
        object: "companies",
        op: WriteOp::Upsert,
        fields: &fields,
        key_positions: &[0],
        records: &records,
        keys_new_to_state: false,
    };
    let start = Instant::now();
    let outcome = dest.write(&batch).await.expect("written");
    assert_eq!(outcome, BatchOutcome::default());
    let waited = start.elapsed().as_secs_f64();
    let until_reset = reset as f64
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
    assert!(
        until_reset <= 0.05,
        "the retry waited for the reset ({waited:.2}s)"
    );
    let seen = seen.lock().expect("log");
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].starts_with("POST /companies HTTP/1.1"),
        "{}",
        seen[1]
    );
    let head = seen[1].to_ascii_lowercase();
    assert!(
        head.contains("authorization: bearer tok-unit-test-9"),
        "{head}"
    );
    assert!(head.contains("intercom-version: 2.11"), "{head}");
}

#[tokio::test]
async fn a_bad_token_fails_the_batch_and_a_refused_record_is_a_reject() {
    let unauthorized = response(
        "401 Unauthorized",
        "",
        r#"{"type":"error.list","errors":[{"code":"unauthorized","message":"Access Token Invalid"}]}"#,
    );
    let (url, _) = server(vec![unauthorized]).await;
    let e = destination(&url).describe("companies").await.unwrap_err();
    assert!(e.message.contains("not authorised"), "{}", e.message);
    assert!(e.message.contains("Access Token Invalid"), "{}", e.message);
    assert!(!e.message.contains("tok-unit-test-9"), "{}", e.message);

    let refused = response(
        "400 Bad Request",
        "",
        r#"{"type":"error.list","errors":[{"code":"parameter_invalid","message":"Custom attribute 'tier' does not exist"}]}"#,
    );
    let (url, _) = server(vec![refused]).await;
    let fields = vec!["company_id".to_string(), "tier".to_string()];
    let records = [Record {
        values: vec![Value::Text("acc_1".into()), Value::Text("gold".into())],
    }];
    let batch = WriteBatch {
        sync: "sync.p.s",
        object: "companies",
        op: WriteOp::Upsert,
        fields: &fields,
        key_positions: &[0],
        records: &records,
        keys_new_to_state: false,
    };
    let outcome = destination(&url)
        .write(&batch)
        .await
        .expect("per-row outcome");
    assert_eq!(
        outcome.rejected,
        vec![(
            0,
            "HTTP 400 parameter_invalid: Custom attribute 'tier' does not exist".to_string()
        )]
    );
    let e = destination(&url).describe("Lead").await.unwrap_err();
    assert!(e.message.contains("contacts, companies"), "{}", e.message);
}

#[test]
fn tag_objects_and_their_syncs_are_checked_before_sending() {
    use super::tags::{check_tag_sync, tag_id_of, tag_name};
    assert_eq!(tag_name("tag: High value "), Some("High value"));
    assert_eq!(tag_name("contacts"), None);
    let email = vec!["email".to_string()];
    let with_mrr = vec!["email".to_string(), "mrr".to_string()];
    let check = |fields: &[String], op, removal| {
        check_tag_sync(
            "VIP",
            &SyncShape {
                object: "tag:VIP",
                op,
                removal,
                fields,
                key_fields: &email,
            },
        )
    };
    assert!(check(&email, WriteOp::Upsert, Some(WriteOp::Delete)).is_ok());
    let e = check(&with_mrr, WriteOp::Upsert, None).unwrap_err();
    assert!(
        e.contains("`mrr`") && e.contains("only the match field"),
        "{e}"
    );
    let e = check(&email, WriteOp::Update, None).unwrap_err();
    assert!(e.contains("operation: update"), "{e}");
    let e = check(&email, WriteOp::Upsert, Some(WriteOp::Clear)).unwrap_err();
    assert!(e.contains("on_delete: clear"), "{e}");
    let e = check_tag_sync(
        "",
        &SyncShape {
            object: "tag:",
            op: WriteOp::Upsert,
            removal: None,
            fields: &email,
            key_fields: &email,
        },
    )
    .unwrap_err();
    assert!(e.contains("needs the tag's name"), "{e}");
    assert_eq!(
        tag_id_of(&json!({"type": "tag", "id": "17513", "name": "x"})),
        Some("17513".to_owned())
    );
    assert_eq!(tag_id_of(&json!({"id": 42})), Some("42".to_owned()));
    assert_eq!(tag_id_of(&json!({"name": "x"})), None);
}
