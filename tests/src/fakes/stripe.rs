//! A fake Stripe account, written from Stripe's public API reference (api.stripe.com/v1):
//!
//! - Auth: `Authorization: Bearer sk_...`; any other key answers `401` with
//!   `{"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: ..."}}`.
//! - Writes are `application/x-www-form-urlencoded` with nested keys (`metadata[k]=v`); an empty
//!   value unsets a field or removes a metadata key.
//! - Customers: `POST /v1/customers` (create), `POST /v1/customers/{id}` (update),
//!   `GET /v1/customers/{id}`, `DELETE /v1/customers/{id}`, `GET /v1/customers?limit=`,
//!   `GET /v1/customers/search?query=metadata['k']:'v'` (`object: search_result`); up to 10
//!   such clauses joined with ` OR ` (the search query language's clause limit).
//!   Unknown parameters answer `400 parameter_unknown`; an invalid email `400 email_invalid`;
//!   a missing customer `404 resource_missing`.
//! - `POST /v1/billing/meter_events`: `event_name` and `payload[stripe_customer_id]`,
//!   `payload[value]` required; `timestamp` within the past 35 days or 5 minutes ahead of the
//!   account's clock; `identifier` unique (within 24 hours).
//! - Idempotency: a POST with an `Idempotency-Key` that already ran (answered 2xx or 404) replays
//!   the first answer (`Idempotent-Replayed: true`) when method, path and body are the same, and
//!   answers `400 idempotency_error` when they differ. Requests that fail validation are not saved.
//! - Rate limit: a token bucket of `rate_limit` requests per second (reads and writes counted
//!   separately, like Stripe's 25 read + 25 write operations per second in test mode); past it,
//!   `429` with `Retry-After` and `Stripe-Should-Retry: true`, code `rate_limit`.
//! - Errors are `{"error": {"type", "code", "message", "param"}}`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use crate::webhook::{Reply, Request, Webhook};

/// One customer as the account holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub deleted: bool,
}

impl Customer {
    fn json(&self) -> Value {
        if self.deleted {
            return json!({"id": self.id, "object": "customer", "deleted": true});
        }
        json!({
            "id": self.id, "object": "customer", "livemode": false,
            "email": self.email, "name": self.name, "description": self.description,
            "phone": self.phone, "metadata": self.metadata,
        })
    }
}

/// One meter event the account recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterEvent {
    pub event_name: String,
    pub identifier: String,
    pub timestamp: i64,
    pub payload: BTreeMap<String, String>,
}

/// A fault answered to the next write: before running it, or (`after_commit`) after running it
/// and saving its idempotent result, as when a connection drops after Stripe committed.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub should_retry: Option<bool>,
    pub code: &'static str,
    pub after_commit: bool,
    /// Applies to the first write whose (form-decoded) body contains this text; empty: any.
    pub matching: String,
}

impl Fault {
    fn reply(&self) -> Reply {
        let mut reply = error(self.status, "api_error", self.code, "", "Injected fault.");
        if let Some(retry) = self.should_retry {
            reply = reply.header("Stripe-Should-Retry", if retry { "true" } else { "false" });
        }
        reply
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct State {
    api_key: String,
    customers: Vec<Customer>,
    next_id: u64,
    meter_events: Vec<MeterEvent>,
    /// key -> (method + path + body, status, body)
    idempotency: HashMap<String, (String, u16, String)>,
    rate_limit: f64,
    reads: Bucket,
    writes: Bucket,
    rate_limited: usize,
    replayed: usize,
    now: i64,
    faults: VecDeque<Fault>,
    /// Writes whose (form-decoded) body contains one of these texts (empty: any) are run, their
    /// idempotent result saved, and then the connection is dropped without an answer.
    drops: VecDeque<String>,
}

/// The fake account. Drop it to stop the server.
pub struct FakeStripe {
    server: Webhook,
    state: Arc<Mutex<State>>,
}

fn error(status: u16, kind: &str, code: &str, param: &str, message: &str) -> Reply {
    let mut e = json!({"type": kind, "message": message});
    if !code.is_empty() {
        e["code"] = json!(code);
    }
    if !param.is_empty() {
        e["param"] = json!(param);
    }
    Reply::status(status)
        .header("Content-Type", "application/json")
        .body(&json!({"error": e}).to_string())
}

fn ok(body: Value) -> Reply {
    Reply::ok()
        .header("Content-Type", "application/json")
        .body(&body.to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b%5Bc%5D=2` as ordered pairs.
pub fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
}

/// `metadata['k']:'v'` (with `\'` escapes) as (k, v).
/// `metadata['k']:'v'`, or up to 10 such clauses joined with ` OR `: the (key, value) pairs.
fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    let read_quoted = |chars: &mut std::str::Chars<'_>| -> Option<String> {
        let mut s = String::new();
        loop {
            match chars.next()? {
                '\\' => s.push(chars.next()?),
                '\'' => return Some(s),
                c => s.push(c),
            }
        }
    };
    let mut clauses = Vec::new();
    let mut rest = query.trim();
    loop {
        let mut chars = rest.strip_prefix("metadata['")?.chars();
        let key = read_quoted(&mut chars)?;
        let mut chars = chars.as_str().strip_prefix("]:'")?.chars();
        let value = read_quoted(&mut chars)?;
        clauses.push((key, value));
        rest = chars.as_str().trim_start();
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix("OR ")?.trim_start();
    }
    (clauses.len() <= 10).then_some(clauses)
}

impl State {
    fn take(&mut self, write: bool) -> bool {
        let rate = self.rate_limit;
        let b = if write {
            &mut self.writes
        } else {
            &mut self.reads
        };
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn customer_mut(&mut self, id: &str) -> Option<&mut Customer> {
        self.customers.iter_mut().find(|c| c.id == id && !c.deleted)
    }

    /// Applies form parameters to a customer; an error reply for an invalid one.
    fn apply(c: &mut Customer, form: &[(String, String)]) -> Result<(), Reply> {
        for (k, v) in form {
            let value = (!v.is_empty()).then(|| v.clone());
            match k.as_str() {
                "email" => {
                    if let Some(e) = &value
                        && (!valid_email(e) || e.len() > 512)
                    {
                        return Err(error(
                            400,
                            "invalid_request_error",
                            "email_invalid",
                            "email",
                            &format!("Invalid email address: {e}"),
                        ));
                    }
                    c.email = value;
                }
                "name" => c.name = value,
                "description" => c.description = value,
                "phone" => c.phone = value,
                "metadata" if v.is_empty() => c.metadata.clear(),
                _ => match k
                    .strip_prefix("metadata[")
                    .and_then(|r| r.strip_suffix(']'))
                {
                    Some(key) if key.chars().count() <= 40 && v.chars().count() <= 500 => {
                        match value {
                            Some(v) => {
                                c.metadata.insert(key.to_owned(), v);
                            }
                            None => {
                                c.metadata.remove(key);
                            }
                        }
                    }
                    Some(_) => {
                        return Err(error(
                            400,
                            "invalid_request_error",
                            "",
                            k,
                            "Metadata keys can be up to 40 characters and values up to 500 characters.",
                        ));
                    }
                    None => {
                        return Err(error(
                            400,
                            "invalid_request_error",
                            "parameter_unknown",
                            k,
                            &format!("Received unknown parameter: {k}"),
                        ));
                    }
                },
            }
        }
        if c.metadata.len() > 50 {
            return Err(error(
                400,
                "invalid_request_error",
                "",
                "metadata",
                "You can specify up to 50 metadata keys.",
            ));
        }
        Ok(())
    }

    fn route(&mut self, req: &Request) -> Reply {
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let query = parse_form(query);
        let form = parse_form(&String::from_utf8_lossy(&req.body));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", ["v1", "customers", "search"]) => {
                let q = query
                    .iter()
                    .find(|(k, _)| k == "query")
                    .map(|(_, v)| v.as_str());
                let Some(clauses) = q.and_then(parse_query) else {
                    return error(
                        400,
                        "invalid_request_error",
                        "",
                        "query",
                        "Invalid query: this account supports metadata['key']:'value', up to 10 clauses joined with OR.",
                    );
                };
                let limit = query
                    .iter()
                    .find(|(k, _)| k == "limit")
                    .and_then(|(_, v)| v.parse::<usize>().ok())
                    .unwrap_or(10)
                    .clamp(1, 100);
                let found: Vec<Value> = self
                    .customers
                    .iter()
                    .filter(|c| {
                        !c.deleted
                            && clauses
                                .iter()
                                .any(|(key, value)| c.metadata.get(key) == Some(value))
                    })
                    .map(Customer::json)
                    .collect();
                let has_more = found.len() > limit;
                ok(json!({
                    "object": "search_result", "url": "/v1/customers/search",
                    "has_more": has_more, "next_page": null,
                    "data": found.into_iter().take(limit).collect::<Vec<_>>(),
                }))
            }
            ("GET", ["v1", "customers"]) => {
                let data: Vec<Value> = self
                    .customers
                    .iter()
                    .filter(|c| !c.deleted)
                    .take(10)
                    .map(Customer::json)
                    .collect();
                ok(
                    json!({"object": "list", "url": "/v1/customers", "has_more": false, "data": data}),
                )
            }
            ("GET", ["v1", "customers", id]) => match self.customers.iter().find(|c| c.id == *id) {
                Some(c) => ok(c.json()),
                None => missing(id),
            },
            ("DELETE", ["v1", "customers", id]) => match self.customer_mut(id) {
                Some(c) => {
                    c.deleted = true;
                    ok(json!({"id": id, "object": "customer", "deleted": true}))
                }
                None => missing(id),
            },
            ("POST", ["v1", "customers"]) => {
                self.next_id += 1;
                let mut c = Customer {
                    id: format!("cus_Fk{:012}", self.next_id),
                    email: None,
                    name: None,
                    description: None,
                    phone: None,
                    metadata: BTreeMap::new(),
                    deleted: false,
                };
                if let Err(reply) = Self::apply(&mut c, &form) {
                    return reply;
                }
                let body = c.json();
                self.customers.push(c);
                ok(body)
            }
            ("POST", ["v1", "customers", id]) => {
                let Some(c) = self.customer_mut(id) else {
                    return missing(id);
                };
                let mut updated = c.clone();
                if let Err(reply) = Self::apply(&mut updated, &form) {
                    return reply;
                }
                *c = updated;
                ok(c.json())
            }
            ("POST", ["v1", "billing", "meter_events"]) => self.meter_event(&form),
            _ => error(
                404,
                "invalid_request_error",
                "",
                "",
                &format!("Unrecognized request URL ({} {path}).", req.method),
            ),
        }
    }

    fn meter_event(&mut self, form: &[(String, String)]) -> Reply {
        let get = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        let mut payload = BTreeMap::new();
        for (k, v) in form {
            match k.strip_prefix("payload[").and_then(|r| r.strip_suffix(']')) {
                Some(key) => {
                    payload.insert(key.to_owned(), v.clone());
                }
                None if ["event_name", "identifier", "timestamp"].contains(&k.as_str()) => {}
                None => {
                    return error(
                        400,
                        "invalid_request_error",
                        "parameter_unknown",
                        k,
                        &format!("Received unknown parameter: {k}"),
                    );
                }
            }
        }
        let Some(event_name) = get("event_name").filter(|e| !e.is_empty()) else {
            return error(
                400,
                "invalid_request_error",
                "parameter_missing",
                "event_name",
                "Missing required param: event_name.",
            );
        };
        for key in ["stripe_customer_id", "value"] {
            if payload.get(key).is_none_or(|v| v.is_empty()) {
                return error(
                    400,
                    "invalid_request_error",
                    "parameter_missing",
                    &format!("payload[{key}]"),
                    &format!("Missing required param: payload[{key}]."),
                );
            }
        }
        if payload["value"].parse::<f64>().is_err() {
            return error(
                400,
                "invalid_request_error",
                "",
                "payload[value]",
                "The value must be a number.",
            );
        }
        let timestamp = match get("timestamp") {
            None => self.now,
            Some(t) => match t.parse::<i64>() {
                Ok(t) => t,
                Err(_) => {
                    return error(
                        400,
                        "invalid_request_error",
                        "",
                        "timestamp",
                        "Invalid integer: timestamp.",
                    );
                }
            },
        };
        if timestamp < self.now - 35 * 86_400 || timestamp > self.now + 300 {
            return error(
                400,
                "invalid_request_error",
                "",
                "timestamp",
                "Timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
            );
        }
        self.next_id += 1;
        let identifier = get("identifier").unwrap_or_else(|| format!("evt_gen_{}", self.next_id));
        if self.meter_events.iter().any(|e| e.identifier == identifier) {
            return error(
                400,
                "invalid_request_error",
                "",
                "identifier",
                &format!("An event with identifier {identifier} already exists."),
            );
        }
        let event = MeterEvent {
            event_name,
            identifier,
            timestamp,
            payload,
        };
        let body = json!({
            "object": "billing.meter_event", "created": self.now, "livemode": false,
            "event_name": event.event_name, "identifier": event.identifier,
            "payload": event.payload, "timestamp": event.timestamp,
        });
        self.meter_events.push(event);
        ok(body)
    }

    fn handle(&mut self, req: &Request) -> Reply {
        let auth = req.header("authorization").unwrap_or_default();
        if auth != format!("Bearer {}", self.api_key) {
            let shown = auth.trim_start_matches("Bearer ");
            let tail: String = shown
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return error(
                401,
                "invalid_request_error",
                "",
                "",
                &format!("Invalid API Key provided: sk_test_****{tail}"),
            );
        }
        let write = req.method != "GET";
        if !self.take(write) {
            self.rate_limited += 1;
            return error(
                429,
                "invalid_request_error",
                "rate_limit",
                "",
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
            )
            .header("Retry-After", "1")
            .header("Stripe-Should-Retry", "true");
        }
        let body = parse_form(&String::from_utf8_lossy(&req.body))
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let fault = match self.faults.iter().position(|f| body.contains(&f.matching)) {
            Some(i) if write => self.faults.remove(i),
            _ => None,
        };
        let drop = match self.drops.iter().position(|m| body.contains(m.as_str())) {
            Some(i) if write && fault.is_none() => self.drops.remove(i).is_some(),
            _ => false,
        };
        if let Some(f) = &fault
            && !f.after_commit
        {
            return f.reply();
        }
        let key = req.header("idempotency-key").map(str::to_owned);
        let fingerprint = format!(
            "{} {}\n{}",
            req.method,
            req.path,
            String::from_utf8_lossy(&req.body)
        );
        if req.method == "POST"
            && let Some(key) = &key
            && let Some((seen, status, body)) = self.idempotency.get(key)
        {
            if *seen != fingerprint {
                return error(
                    400,
                    "idempotency_error",
                    "",
                    "",
                    &format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                    ),
                );
            }
            self.replayed += 1;
            return Reply::status(*status)
                .header("Content-Type", "application/json")
                .header("Idempotent-Replayed", "true")
                .body(body);
        }
        let reply = self.route(req);
        if req.method == "POST"
            && let Some(key) = key
            && (reply.status < 300 || reply.status == 404)
        {
            self.idempotency
                .insert(key, (fingerprint, reply.status, reply.body.clone()));
        }
        match fault {
            Some(f) => f.reply(),
            None if drop => reply.then_drop(),
            None => reply,
        }
    }
}

fn missing(id: &str) -> Reply {
    error(
        404,
        "invalid_request_error",
        "resource_missing",
        "id",
        &format!("No such customer: '{id}'"),
    )
}

impl FakeStripe {
    /// An empty account that accepts `api_key`, limited to `rate_limit` reads and
    /// `rate_limit` writes per second.
    pub fn start(api_key: &str, rate_limit: u32) -> Self {
        let server = Webhook::start();
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_owned(),
            customers: Vec::new(),
            next_id: 0,
            meter_events: Vec::new(),
            idempotency: HashMap::new(),
            rate_limit: f64::from(rate_limit.max(1)),
            reads: Bucket {
                tokens: f64::from(rate_limit.max(1)),
                last: Instant::now(),
            },
            writes: Bucket {
                tokens: f64::from(rate_limit.max(1)),
                last: Instant::now(),
            },
            rate_limited: 0,
            replayed: 0,
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            faults: VecDeque::new(),
            drops: VecDeque::new(),
        }));
        let shared = Arc::clone(&state);
        server.respond_with(move |_, req| shared.lock().expect("stripe state").handle(req));
        Self { server, state }
    }

    /// `http://127.0.0.1:<port>`, for `base_url`.
    pub fn base_url(&self) -> String {
        let url = self.server.url();
        url.trim_end_matches("/hooks/activate").to_owned()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("stripe state")
    }

    /// Adds a customer the account already holds (created outside dbt-activate).
    pub fn add_customer(&self, email: &str, metadata: &[(&str, &str)]) -> String {
        let mut s = self.state();
        s.next_id += 1;
        let id = format!("cus_Pre{:011}", s.next_id);
        s.customers.push(Customer {
            id: id.clone(),
            email: Some(email.to_owned()),
            name: None,
            description: None,
            phone: None,
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            deleted: false,
        });
        id
    }

    /// Customers not deleted, in creation order.
    pub fn customers(&self) -> Vec<Customer> {
        self.state()
            .customers
            .iter()
            .filter(|c| !c.deleted)
            .cloned()
            .collect()
    }

    pub fn meter_events(&self) -> Vec<MeterEvent> {
        self.state().meter_events.clone()
    }

    /// Sets the account's clock (Unix seconds), which bounds meter event timestamps.
    pub fn set_now(&self, unix: i64) {
        self.state().now = unix;
    }

    /// Answers the next writes with these faults, before running them.
    pub fn inject(&self, faults: &[Fault]) {
        self.state().faults.extend(faults.iter().cloned());
    }

    /// The next writes whose (form-decoded) body contains one of `matching` (empty: any write)
    /// are run and their idempotent result saved, then the connection is dropped without an
    /// answer, as when Stripe commits and the connection breaks before the answer. One drop per
    /// entry.
    pub fn drop_after_commit(&self, matching: &[&str]) {
        self.state()
            .drops
            .extend(matching.iter().map(|m| (*m).to_owned()));
    }

    /// How many requests were answered 429.
    pub fn rate_limited(&self) -> usize {
        self.state().rate_limited
    }

    /// How many requests were answered from a saved idempotent result.
    pub fn replayed(&self) -> usize {
        self.state().replayed
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Requests that changed or could change the account (POST and DELETE).
    pub fn writes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET" && r.method != "HEAD")
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_queries_parse() {
        assert_eq!(
            parse_form("metadata%5Bk%5D=a+b%26c&email="),
            vec![
                ("metadata[k]".to_owned(), "a b&c".to_owned()),
                ("email".to_owned(), String::new())
            ]
        );
        assert_eq!(
            parse_query(r"metadata['account_id']:'o\'b'"),
            Some(vec![("account_id".to_owned(), "o'b".to_owned())])
        );
        assert_eq!(
            parse_query("metadata['a']:'1' OR metadata['a']:'2'"),
            Some(vec![
                ("a".to_owned(), "1".to_owned()),
                ("a".to_owned(), "2".to_owned())
            ])
        );
        let eleven = ["metadata['a']:'1'"; 11].join(" OR ");
        assert_eq!(parse_query(&eleven), None, "at most 10 clauses");
        assert_eq!(parse_query("email:'x'"), None);
        assert!(valid_email("a.b@example.com"));
        assert!(!valid_email("not-an-email"));
        assert!(!valid_email("a@b"));
    }
}
