//! The webhook destination against a loopback server that answers from a script.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::*;
use crate::destination::Record;
use crate::value::Value;

struct Received {
    headers: String,
    body: String,
}

/// Serves one scripted response per request (the last one repeats), recording each request.
async fn server(script: Vec<&'static str>) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((mut socket, _)) = listener.accept().await {
            let Some((headers, body)) =
                crate::destination::test_http::read_request(&mut socket).await
            else {
                continue;
            };
            log.lock().unwrap().push(Received {
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let response = script[n.min(script.len() - 1)];
            n += 1;
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, seen)
}

fn destination(url: &str, extra: serde_json::Value) -> WebhookDestination {
    let mut settings = serde_json::Map::new();
    settings.insert("url".into(), url.into());
    if let serde_json::Value::Object(m) = extra {
        settings.extend(m);
    }
    WebhookDestination::from_config(&DestinationConfig {
        name: "hook".into(),
        kind: "webhook".into(),
        settings,
        file: "activate.yml".into(),
    })
    .unwrap()
}

fn batch_records() -> (Vec<String>, Vec<Record>) {
    let fields = vec!["id".to_owned(), "score".to_owned()];
    let records = vec![
        Record {
            values: vec![Value::Int(1), Value::Number("0.950".into())],
        },
        Record {
            values: vec![Value::Int(2), Value::Null],
        },
    ];
    (fields, records)
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
const TOO_MANY: &str = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
const BAD: &str = "HTTP/1.1 400 Bad Request\r\ncontent-length: 17\r\nconnection: close\r\n\r\n{\"error\":\"nope\"}\n";

#[tokio::test]
async fn posts_signed_json_and_retries_429() {
    let (url, seen) = server(vec![TOO_MANY, OK]).await;
    let dest = destination(
        &url,
        serde_json::json!({"secret": "shh-secret", "headers": {"X-Team": "growth"}}),
    );
    let (fields, records) = batch_records();
    let outcome = dest
        .write(&WriteBatch {
            sync: "sync.p.s",
            object: "alerts",
            op: WriteOp::Upsert,
            fields: &fields,
            key_positions: &[0],
            records: &records,
            keys_new_to_state: false,
        })
        .await
        .unwrap();
    assert!(outcome.rejected.is_empty());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one 429, then the retry");
    let body = &seen[1].body;
    assert_eq!(
        body,
        r#"{"sync":"sync.p.s","object":"alerts","operation":"upsert","records":[{"id":1,"score":0.950},{"id":2,"score":null}]}"#
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(b"shh-secret").unwrap();
    mac.update(body.as_bytes());
    let expected = format!(
        "x-activate-signature: sha256={}",
        hex::encode(mac.finalize().into_bytes())
    );
    assert!(
        seen[1].headers.to_ascii_lowercase().contains(&expected),
        "{}",
        seen[1].headers
    );
    assert!(
        seen[1]
            .headers
            .to_ascii_lowercase()
            .contains("x-team: growth")
    );
}

#[tokio::test]
async fn a_4xx_rejects_the_rows_without_retrying() {
    let (url, seen) = server(vec![BAD]).await;
    let dest = destination(&url, serde_json::json!({}));
    let (fields, records) = batch_records();
    let outcome = dest
        .write(&WriteBatch {
            sync: "s",
            object: "o",
            op: WriteOp::Clear,
            fields: &fields,
            key_positions: &[0],
            records: &records,
            keys_new_to_state: false,
        })
        .await
        .unwrap();
    assert_eq!(outcome.rejected.len(), 2);
    assert!(
        outcome.rejected[0].1.contains("HTTP 400"),
        "{:?}",
        outcome.rejected
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        seen.lock().unwrap()[0]
            .body
            .contains("\"operation\":\"update\""),
        "clear is an update"
    );
}

#[tokio::test]
async fn retries_run_out_as_a_batch_error() {
    let (url, seen) = server(vec![TOO_MANY]).await;
    let dest = destination(&url, serde_json::json!({"max_retries": 2}));
    let (fields, records) = batch_records();
    let err = dest
        .write(&WriteBatch {
            sync: "s",
            object: "o",
            op: WriteOp::Insert,
            fields: &fields,
            key_positions: &[0],
            records: &records,
            keys_new_to_state: false,
        })
        .await
        .unwrap_err();
    assert!(
        err.message.contains("gave up after 3 attempts"),
        "{}",
        err.message
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn config_errors_name_the_destination() {
    let err = WebhookDestination::from_config(&DestinationConfig {
        name: "hook".into(),
        kind: "webhook".into(),
        settings: serde_json::json!({"url": "ftp://x", "batchsize": 5})
            .as_object()
            .unwrap()
            .clone(),
        file: "activate.yml".into(),
    })
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("activate.yml, destinations.hook: unknown key `batchsize`"),
        "{err}"
    );
    assert!(
        err.to_string().contains("did you mean `batch_size`"),
        "{err}"
    );
}
