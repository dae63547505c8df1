//! The slack destination against a loopback server answering from a script.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::*;
use crate::destination::Record;
use crate::value::Value;

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: String,
    body: serde_json::Value,
}

type Script = Arc<dyn Fn(usize, &Seen) -> String + Send + Sync>;

/// A loopback server: one connection per request, answers `script(n, request)`.
async fn server(script: Script) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let Some((headers, body)) =
                crate::destination::test_http::read_request(&mut socket).await
            else {
                continue;
            };
            let path = headers
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let request = Seen {
                path,
                headers,
                body,
            };
            let response = {
                let mut log = log.lock().unwrap();
                let n = log.len();
                log.push(request.clone());
                script(n, &request)
            };
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (base, seen)
}

fn reply(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
        body.len()
    )
}

fn ok_json() -> String {
    reply(
        "200 OK",
        "",
        r#"{"ok":true,"channel":"C0001","ts":"1700000000.000100"}"#,
    )
}

fn config(settings: serde_json::Value) -> DestinationConfig {
    let serde_json::Value::Object(settings) = settings else {
        panic!("settings must be a mapping")
    };
    DestinationConfig {
        name: "alerts".into(),
        kind: "slack".into(),
        settings,
        file: "activate.yml".into(),
    }
}

fn destination(settings: serde_json::Value) -> SlackDestination {
    SlackDestination::from_config(&config(settings)).unwrap()
}

fn alerts() -> (Vec<String>, Vec<Record>) {
    let fields = vec![
        "alert_id".to_owned(),
        "text".to_owned(),
        "account".to_owned(),
        "score".to_owned(),
    ];
    let records = (1..=3)
        .map(|i| Record {
            values: vec![
                Value::Text(format!("churn-{i}")),
                Value::Text(format!("Account {i} is at risk")),
                Value::Text(format!("Acme {i}")),
                Value::Number(format!("0.8{i}")),
            ],
        })
        .collect();
    (fields, records)
}

fn batch<'a>(
    op: WriteOp,
    object: &'a str,
    fields: &'a [String],
    records: &'a [Record],
) -> WriteBatch<'a> {
    WriteBatch {
        sync: "sync.p.alerts",
        object,
        op,
        fields,
        key_positions: &[0],
        records,
        keys_new_to_state: false,
    }
}

#[tokio::test]
async fn posts_one_message_per_row_with_the_bot_token() {
    let (base, seen) = server(Arc::new(|_, _| ok_json())).await;
    let dest = destination(serde_json::json!({
        "token": "xoxb-unit-test-token", "base_url": format!("{base}/api"), "messages_per_second": 50,
    }));
    let (fields, records) = alerts();
    let outcome = dest
        .write(&batch(WriteOp::Insert, "#cs-alerts", &fields, &records))
        .await
        .unwrap();
    assert_eq!(outcome, BatchOutcome::default());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.path, "/api/chat.postMessage");
        assert!(
            s.headers
                .to_ascii_lowercase()
                .contains("authorization: bearer xoxb-unit-test-token"),
            "{}",
            s.headers
        );
        assert_eq!(
            s.body,
            serde_json::json!({"channel": "cs-alerts", "text": format!("Account {} is at risk", i + 1)})
        );
    }
}

#[tokio::test]
async fn refused_messages_are_per_row_rejects_and_a_bad_token_fails() {
    let (base, _) = server(Arc::new(|n, _| match n {
        1 => reply(
            "200 OK",
            "",
            r#"{"ok":false,"error":"invalid_blocks","errors":["missing required field: alt_text [json-pointer:/blocks/0]"]}"#,
        ),
        _ => ok_json(),
    }))
    .await;
    let dest = destination(serde_json::json!({
        "token": "xoxb-unit-test-token", "base_url": format!("{base}/api"), "messages_per_second": 50,
    }));
    let (fields, records) = alerts();
    let outcome = dest
        .write(&batch(WriteOp::Upsert, "cs-alerts", &fields, &records))
        .await
        .unwrap();
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].0, 1);
    assert!(
        outcome.rejected[0]
            .1
            .starts_with("invalid_blocks: missing required field"),
        "{:?}",
        outcome.rejected
    );

    let (base, _) = server(Arc::new(|_, _| {
        reply("200 OK", "", r#"{"ok":false,"error":"invalid_auth"}"#)
    }))
    .await;
    let dest = destination(serde_json::json!({
        "token": "xoxb-unit-test-token", "base_url": format!("{base}/api"),
    }));
    let err = dest
        .write(&batch(WriteOp::Insert, "cs-alerts", &fields, &records))
        .await
        .unwrap_err();
    assert!(err.message.contains("invalid_auth"), "{}", err.message);
    assert!(!err.message.contains("xoxb-unit-test-token"));
    assert!(dest.health_check().await.is_err());
}

#[tokio::test]
async fn a_429_waits_for_retry_after_then_posts() {
    let (base, seen) = server(Arc::new(|n, _| match n {
        0 => reply(
            "429 Too Many Requests",
            "retry-after: 1\r\n",
            r#"{"ok":false,"error":"ratelimited"}"#,
        ),
        _ => ok_json(),
    }))
    .await;
    let dest = destination(serde_json::json!({
        "token": "xoxb-unit-test-token", "base_url": format!("{base}/api"),
    }));
    let start = std::time::Instant::now();
    dest.post_text("cs-alerts", "run failed").await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(950));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn one_message_per_second_per_channel() {
    let (base, seen) = server(Arc::new(|_, _| ok_json())).await;
    let dest = destination(serde_json::json!({
        "token": "xoxb-unit-test-token", "base_url": format!("{base}/api"),
    }));
    let start = std::time::Instant::now();
    dest.post_text("a-channel", "1").await.unwrap();
    dest.post_text("b-channel", "1").await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "channels have their own limits"
    );
    dest.post_text("a-channel", "2").await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(950));
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn incoming_webhook_errors() {
    let (base, seen) = server(Arc::new(|n, _| match n {
        0 => reply("400 Bad Request", "", "invalid_payload"),
        1 => reply("200 OK", "", "ok"),
        _ => reply("403 Forbidden", "", "invalid_token"),
    }))
    .await;
    let url = format!("{base}/services/T000/B000/secretpart");
    let dest = destination(serde_json::json!({
        "webhook_url": url,
        "messages_per_second": 50,
        "text_template": "{{ account }}: {{ score }}",
        "blocks_template": [{"type": "section", "text": {"type": "mrkdwn", "text": "*{{ account }}* {{ text }}"}}],
    }));
    assert!(dest.uses_webhook());
    assert!(!dest.identity().contains("secretpart"));
    let (fields, records) = alerts();
    let err = dest
        .write(&batch(WriteOp::Insert, "cs-alerts", &fields, &records))
        .await
        .unwrap_err();
    assert!(err.message.contains("invalid_token"), "{}", err.message);
    assert!(!err.message.contains("secretpart"), "{}", err.message);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[1].path, "/services/T000/B000/secretpart");
    assert_eq!(
        seen[1].body,
        serde_json::json!({
            "text": "Acme 2: 0.82",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Acme 2* Account 2 is at risk"}}],
        })
    );
}

#[tokio::test]
async fn webhook_4xx_rejects_the_row() {
    let (base, _) = server(Arc::new(|n, _| match n {
        0 => reply("400 Bad Request", "", "no_text"),
        _ => reply("200 OK", "", "ok"),
    }))
    .await;
    let dest = destination(serde_json::json!({
        "webhook_url": format!("{base}/services/T/B/x"), "messages_per_second": 50,
    }));
    let (fields, records) = alerts();
    let outcome = dest
        .write(&batch(WriteOp::Insert, "cs-alerts", &fields, &records))
        .await
        .unwrap();
    assert_eq!(outcome.rejected, vec![(0, "HTTP 400: no_text".to_owned())]);
}

#[tokio::test]
async fn digests_stay_within_slacks_limits() {
    let (base, seen) = server(Arc::new(|_, _| ok_json())).await;
    let dest = destination(serde_json::json!({
        "token": "xoxb-unit-test-token", "base_url": format!("{base}/api"),
        "message_mode": "digest", "messages_per_second": 100,
        "digest_title": "{{ count }} churn alerts in {{ object }}",
    }));
    let fields = vec!["id".to_owned(), "text".to_owned()];
    // 47 rows fit one message by blocks; 1,000-character rows split it by text length.
    let short: Vec<Record> = (0..47)
        .map(|i| Record {
            values: vec![Value::Int(i), Value::Text(format!("row {i}"))],
        })
        .collect();
    let outcome = dest
        .write(&batch(WriteOp::Insert, "cs-alerts", &fields, &short))
        .await
        .unwrap();
    assert!(outcome.rejected.is_empty());
    let long: Vec<Record> = (0..47)
        .map(|i| Record {
            values: vec![Value::Int(i), Value::Text("x".repeat(5_000))],
        })
        .collect();
    dest.write(&batch(WriteOp::Insert, "cs-alerts", &fields, &long))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    let first = &seen[0].body;
    let blocks = first["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 49);
    assert_eq!(
        blocks[0]["text"]["text"], "47 churn alerts in cs-alerts",
        "{first:#}"
    );
    assert!(first["text"].as_str().unwrap().contains("\n• row 46"));
    let rest = &seen[1..];
    assert!(rest.len() >= 4, "{} messages", rest.len());
    let mut rows = 0;
    for m in rest {
        let text = m.body["text"].as_str().unwrap();
        assert!(text.chars().count() <= message::MAX_TEXT_CHARS);
        let blocks = m.body["blocks"].as_array().unwrap().len();
        assert!(blocks <= 50);
        let sections = blocks - 2;
        rows += sections;
    }
    assert_eq!(rows, 47, "every row in exactly one digest");
}

#[tokio::test]
async fn update_and_mirror_removals_are_refused() {
    let dest = destination(serde_json::json!({"token": "xoxb-unit-test-token"}));
    let (fields, records) = alerts();
    for op in [WriteOp::Update, WriteOp::Delete, WriteOp::Clear] {
        let err = dest
            .write(&batch(op, "cs-alerts", &fields, &records))
            .await
            .unwrap_err();
        assert!(err.message.contains("hint:"), "{}", err.message);
    }
}

#[tokio::test]
async fn objects_must_be_channels() {
    let dest = destination(serde_json::json!({"token": "xoxb-unit-test-token"}));
    for ok in ["cs-alerts", "#cs-alerts", "C0123ABCD", "ops_2"] {
        assert!(dest.describe(ok).await.unwrap().is_none(), "{ok}");
    }
    for bad in ["CS Alerts", "", "#", "cs.alerts", &"a".repeat(81)] {
        assert!(dest.describe(bad).await.is_err(), "{bad}");
    }
}

#[test]
fn configuration_errors_name_the_destination() {
    let cases = [
        (
            serde_json::json!({}),
            "`webhook_url` or `token` is required",
        ),
        (
            serde_json::json!({"token": "xoxb-a", "webhook_url": "https://hooks.slack.com/services/x"}),
            "not both",
        ),
        (
            serde_json::json!({"token": "xoxb-a", "chanel": "x"}),
            "unknown key `chanel`",
        ),
        (
            serde_json::json!({"token": "xoxb-a", "message_mode": "daily"}),
            "`message_mode` must be",
        ),
        (
            serde_json::json!({"token": "xoxb-a", "message_mode": "digest", "batch_size": 60}),
            "between 1 and 47",
        ),
        (
            serde_json::json!({"token": "xoxb-a", "message_mode": "digest", "blocks_template": []}),
            "per_row` only",
        ),
        (
            serde_json::json!({"token": "xoxb-a", "text_template": "{{ text "}),
            "not a valid template",
        ),
        (
            serde_json::json!({"webhook_url": "hooks.slack.com/x"}),
            "must start with https://",
        ),
    ];
    for (settings, needle) in cases {
        let err = match SlackDestination::from_config(&config(settings.clone())) {
            Ok(_) => panic!("{settings} was accepted"),
            Err(e) => e,
        };
        assert!(
            err.message
                .starts_with("activate.yml, destinations.alerts:"),
            "{}",
            err.message
        );
        assert!(err.message.contains(needle), "{needle}: {}", err.message);
    }
}

#[tokio::test]
async fn template_errors_reject_the_row() {
    let (base, seen) = server(Arc::new(|_, _| ok_json())).await;
    let dest = destination(serde_json::json!({
        "token": "xoxb-unit-test-token", "base_url": format!("{base}/api"), "messages_per_second": 50,
        "text_template": "{{ acount }}",
    }));
    let (fields, records) = alerts();
    let outcome = dest
        .write(&batch(WriteOp::Insert, "cs-alerts", &fields, &records))
        .await
        .unwrap();
    assert_eq!(outcome.rejected.len(), 3);
    assert!(outcome.rejected[0].1.starts_with("text_template:"));
    assert!(seen.lock().unwrap().is_empty());
}
