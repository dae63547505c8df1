//! A fake webhook receiver: a small HTTP/1.1 server on loopback (std only) that
//! keeps every request it received, and answers 200 unless told otherwise.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One request the webhook received, with the status it was answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names as sent (compare with [`Request::header`], case-insensitive).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status code the fake answered (for a dropped connection: the status the fake
    /// decided on, though the client never saw it).
    pub status: u16,
    /// The fake processed the request and then dropped the connection without answering.
    pub dropped: bool,
}

impl Request {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (panics with the body when it is not JSON).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `records` of the body.
    #[track_caller]
    pub fn records(&self) -> Vec<serde_json::Value> {
        match self.json().get("records") {
            Some(serde_json::Value::Array(r)) => r.clone(),
            other => panic!("webhook body has no `records` array: {other:?}"),
        }
    }

    /// The receiving system took the request (2xx), whether or not the answer reached the
    /// client (see [`Request::dropped`]).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What the fake answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// After deciding this answer (the request was processed), close the connection without
    /// writing any response: the client sees a connection error, not a status.
    pub drop_connection: bool,
    /// How long the fake waits, after processing the request, before answering (a slow
    /// receiver; past the client's timeout the answer is lost).
    pub delay: Duration,
}

impl Reply {
    /// `200 OK`, empty body.
    pub fn ok() -> Self {
        Self::status(200)
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            drop_connection: false,
            delay: Duration::ZERO,
        }
    }

    /// The request was processed (recorded as `200`), then the connection is dropped without
    /// an answer, as when a server commits and the answer is lost on the way.
    pub fn drop_connection() -> Self {
        Self::ok().then_drop()
    }

    /// This answer is decided (and recorded), but the connection is dropped instead of
    /// writing it.
    pub fn then_drop(mut self) -> Self {
        self.drop_connection = true;
        self
    }

    /// `429 Too Many Requests` with `Retry-After: 0`.
    pub fn too_many_requests() -> Self {
        Self::status(429).header("Retry-After", "0")
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    /// Answers only after `delay` (the request counts as processed when it arrives).
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Responder = Box<dyn FnMut(usize, &Request) -> Reply + Send>;

struct Shared {
    requests: Mutex<Vec<Request>>,
    responder: Mutex<Responder>,
    stop: AtomicBool,
}

/// The fake webhook. Stops accepting when dropped.
pub struct Webhook {
    url: String,
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

impl Webhook {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake webhook on loopback");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            responder: Mutex::new(Box::new(|_, _| Reply::ok())),
            stop: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn_shared = Arc::clone(&accept_shared);
                thread::spawn(move || serve(stream, &conn_shared));
            }
        });
        Self {
            url: format!("http://{addr}/hooks/activate"),
            addr,
            shared,
        }
    }

    /// `http://127.0.0.1:<port>/hooks/activate`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Decides the answer to each request from now on: `f(n, request)` where `n`
    /// counts every request received so far (0-based).
    pub fn respond_with(&self, f: impl FnMut(usize, &Request) -> Reply + Send + 'static) {
        *self.shared.responder.lock().expect("responder lock") = Box::new(f);
    }

    /// Every request received, in order (answered or not accepted).
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().expect("requests lock").len()
    }

    /// The records of every request that was answered 2xx, in order: what the
    /// receiving system ended up holding.
    pub fn accepted_records(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r.accepted())
            .flat_map(|r| r.records())
            .collect()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Serves one connection: requests one after another (keep-alive) until the
/// client closes it.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some((mut request, close)) = read_request(&mut reader) else {
            return;
        };
        let reply = {
            let mut requests = shared.requests.lock().expect("requests lock");
            let n = requests.len();
            let reply = (shared.responder.lock().expect("responder lock"))(n, &request);
            request.status = reply.status;
            request.dropped = reply.drop_connection;
            requests.push(request);
            reply
        };
        if !reply.delay.is_zero() {
            thread::sleep(reply.delay);
        }
        if reply.drop_connection {
            // Processed, but the answer is lost: close both directions without writing.
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n",
            reply.status,
            reason(reply.status),
            reply.body.len()
        );
        if !reply.body.is_empty() {
            head.push_str("Content-Type: text/plain\r\n");
        }
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(reply.body.as_bytes()).is_err()
        {
            return;
        }
        let _ = writer.flush();
        if close {
            return;
        }
    }
}

fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}

/// Reads one request; `None` when the connection ended. The flag says whether
/// the client asked to close the connection after it.
fn read_request(reader: &mut impl BufRead) -> Option<(Request, bool)> {
    let mut start = read_line(reader)?;
    while start.is_empty() {
        start = read_line(reader)?;
    }
    let mut parts = start.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line(reader)?;
            let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // trailers until an empty line
                while !read_line(reader)?.is_empty() {}
                break;
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            read_line(reader)?;
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
    }
    Some((
        Request {
            method,
            path,
            headers,
            body,
            status: 0,
            dropped: false,
        },
        close,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(url_addr: &str, body: &str) -> String {
        let mut s = TcpStream::connect(url_addr).expect("connect");
        let req = format!(
            "POST /hooks/activate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut reader = BufReader::new(s);
        read_line(&mut reader).expect("status line")
    }

    #[test]
    fn keeps_requests_and_answers_configured_statuses() {
        let hook = Webhook::start();
        let addr = hook
            .url()
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("addr")
            .to_owned();
        hook.respond_with(|n, _| {
            if n == 0 {
                Reply::too_many_requests()
            } else {
                Reply::ok()
            }
        });
        assert_eq!(
            post(&addr, r#"{"records":[{"a":1}]}"#),
            "HTTP/1.1 429 Too Many Requests"
        );
        assert_eq!(post(&addr, r#"{"records":[{"a":2}]}"#), "HTTP/1.1 200 OK");
        let requests = hook.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(hook.accepted_records(), vec![serde_json::json!({"a": 2})]);
    }

    #[test]
    fn drops_the_connection_after_processing() {
        let hook = Webhook::start();
        let addr = hook
            .url()
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("addr")
            .to_owned();
        hook.respond_with(|n, _| {
            if n == 0 {
                Reply::drop_connection()
            } else {
                Reply::ok()
            }
        });
        let mut s = TcpStream::connect(&addr).expect("connect");
        let body = r#"{"records":[{"a":1}]}"#;
        let req = format!(
            "POST /hooks/activate HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut reader = BufReader::new(s);
        assert_eq!(
            read_line(&mut reader),
            None,
            "no answer, the connection is closed"
        );
        assert_eq!(post(&addr, r#"{"records":[{"a":2}]}"#), "HTTP/1.1 200 OK");
        let requests = hook.requests();
        assert!(requests[0].dropped && requests[0].accepted());
        assert!(!requests[1].dropped);
        assert_eq!(
            hook.accepted_records(),
            vec![serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]
        );
    }
}
