//! A fake Salesforce org, written from Salesforce's published REST and Bulk API 2.0 reference:
//!
//! - `POST /services/oauth2/token` (form): `client_credentials`, `refresh_token` and
//!   `urn:ietf:params:oauth:grant-type:jwt-bearer` grants. A JWT bearer `assertion` must be
//!   `{"alg":"RS256"}`-signed by the connected app's key (verified with its public key,
//!   tests/keys/salesforce-jwt-test.pub) with `iss` = the consumer key, `sub` = a user of the
//!   org ([`JWT_USERNAME`]), `aud` = the login URL and `exp` in the future (at most three
//!   minutes ahead); anything else is `400 {"error": "invalid_grant", ...}`;
//!   `{"access_token", "instance_url", "token_type": "Bearer", ...}` or
//!   `400 {"error": "invalid_client" | "invalid_grant", "error_description"}`.
//! - Every `/services/data/vXX.X/...` call needs `Authorization: Bearer <token>`, else
//!   `401 [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]`;
//!   answers carry `Sforce-Limit-Info: api-usage=N/M`; past the daily allocation
//!   `403 REQUEST_LIMIT_EXCEEDED`; more than `rate_limit` calls in a second: `429` with
//!   `Retry-After` (the concurrency/rate limit the issue asks to model).
//! - `GET sobjects/{sObject}/describe`: `{"name", "fields": [{"name", "type", "externalId",
//!   "idLookup", "unique"}]}`.
//! - sObject Collections: `PATCH composite/sobjects/{sObject}/{externalIdField}` (upsert),
//!   `POST composite/sobjects` (create), `PATCH composite/sobjects` (update by id),
//!   `DELETE composite/sobjects?ids=..`: at most 200 records
//!   (`400 EXCEEDED_ID_LIMIT` otherwise), per-record `{"id", "success", "errors":
//!   [{"statusCode", "message", "fields"}], "created"}` in request order; an unknown field or a
//!   value of the wrong JSON type refuses the whole request (`400 INVALID_FIELD` /
//!   `JSON_PARSER_ERROR`).
//! - `GET query?q=SELECT f, .. FROM sObject WHERE field IN (..)` (the subset needed).
//! - Bulk API 2.0 ingest: `POST jobs/ingest`, `PUT jobs/ingest/{id}/batches` (CSV),
//!   `PATCH jobs/ingest/{id}` `{"state": "UploadComplete"}`, `GET jobs/ingest/{id}`
//!   (`UploadComplete` → `InProgress` → `JobComplete`), `GET .../successfulResults/`
//!   (`sf__Id,sf__Created,<columns>`) and `.../failedResults/` (`sf__Id,sf__Error,<columns>`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::{HttpServer, Reply, Request};

pub const CLIENT_ID: &str = "3MVG9fake-consumer-key";
pub const CLIENT_SECRET: &str = "sf-client-secret-9d8e7f";
pub const REFRESH_TOKEN: &str = "5Aep861-refresh-token-Qx7";
/// The org's user the connected app is pre-authorized for (the JWT's `sub`).
pub const JWT_USERNAME: &str = "integration@acme-fake.example";

/// A TEST-ONLY key file of tests/keys/ (see its README): `salesforce-jwt-test.key` (the
/// connected app's private key, PKCS #8), `salesforce-jwt-test.pkcs1.key` (the same, PKCS #1),
/// `salesforce-jwt-test.pub` (its public key), `salesforce-jwt-wrong.key` (an unknown key).
pub fn test_key_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("keys")
        .join(name)
}

/// The DER body of the connected app's public key (`BEGIN RSA PUBLIC KEY`, PKCS #1).
fn connected_app_public_key() -> Vec<u8> {
    use base64::Engine;
    let path = test_key_path("salesforce-jwt-test.pub");
    let pem = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the fake's public key {}: {e}", path.display()));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap_or_else(|e| panic!("the fake's public key {}: {e}", path.display()))
}
/// The most records one sObject Collections request may carry.
pub const COLLECTION_MAX: usize = 200;

/// One field of an sObject.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    /// `string`, `email`, `picklist`, `multipicklist`, `datetime`, `date`, `double`, `boolean`, `id`.
    pub kind: String,
    /// External id or idLookup, and unique: what upserts and inserts match on.
    pub external_id: bool,
}

fn field(name: &str, kind: &str, external_id: bool) -> Field {
    Field {
        name: name.to_owned(),
        kind: kind.to_owned(),
        external_id,
    }
}

struct SObject {
    fields: Vec<Field>,
    prefix: &'static str,
    /// Id → fields (without `Id`).
    records: BTreeMap<String, Map<String, Value>>,
    /// (unique field, value's JSON text) → Id: finds a record by external id without a scan,
    /// so the fake's cost does not grow with the records it holds.
    unique: HashMap<(String, String), String>,
}

impl SObject {
    fn new(fields: Vec<Field>, prefix: &'static str) -> Self {
        Self {
            fields,
            prefix,
            records: BTreeMap::new(),
            unique: HashMap::new(),
        }
    }

    fn is_unique(&self, field: &str) -> bool {
        self.fields.iter().any(|f| f.external_id && f.name == field)
    }

    fn index(&mut self, id: &str, record: &Map<String, Value>, add: bool) {
        for f in self.fields.iter().filter(|f| f.external_id) {
            if let Some(v) = record.get(&f.name).filter(|v| !v.is_null()) {
                let key = (f.name.clone(), v.to_string());
                if add {
                    self.unique.insert(key, id.to_owned());
                } else if self.unique.get(&key).is_some_and(|held| held == id) {
                    self.unique.remove(&key);
                }
            }
        }
    }

    /// Stores a record under `id`, replacing what it held.
    fn put(&mut self, id: String, record: Map<String, Value>) {
        if let Some(old) = self.records.remove(&id) {
            self.index(&id, &old, false);
        }
        self.index(&id, &record, true);
        self.records.insert(id, record);
    }

    /// Sets fields of an existing record; `false` when there is none.
    fn merge(&mut self, id: &str, fields: Map<String, Value>) -> bool {
        let Some(mut record) = self.records.get(id).cloned() else {
            return false;
        };
        record.extend(fields);
        self.put(id.to_owned(), record);
        true
    }

    fn take(&mut self, id: &str) -> Option<Map<String, Value>> {
        let old = self.records.remove(id)?;
        self.index(id, &old, false);
        Some(old)
    }

    /// The record whose `field` is `value`: by the index for a unique field, else a scan.
    fn find(&self, field: &str, value: &Value) -> Option<String> {
        if self.is_unique(field) {
            return self
                .unique
                .get(&(field.to_owned(), value.to_string()))
                .cloned();
        }
        self.records
            .iter()
            .find(|(_, r)| r.get(field) == Some(value))
            .map(|(id, _)| id.clone())
    }
}

struct Rule {
    object: String,
    field: String,
    value: Value,
    code: String,
    message: String,
}

struct Job {
    object: String,
    operation: String,
    external_id: Option<String>,
    state: String,
    csv: String,
    polls: u32,
    ok: Vec<(String, bool, Vec<String>)>,
    failed: Vec<(String, String, Vec<String>)>,
    header: Vec<String>,
    error: Option<String>,
}

struct State {
    base: String,
    tokens: Vec<String>,
    objects: BTreeMap<String, SObject>,
    rules: Vec<Rule>,
    /// (field, value) that Salesforce cannot deserialize: the whole request is refused.
    unparseable: Vec<(String, Value)>,
    jobs: BTreeMap<String, Job>,
    next_id: u64,
    rate_limit: usize,
    recent: VecDeque<Instant>,
    api_usage: u64,
    daily_limit: u64,
    throttled: usize,
    largest_collection: usize,
    collection_calls: usize,
    queries: usize,
    /// Every n-th sObject Collections write is applied, then the connection is dropped.
    drop_after_commit_every: Option<usize>,
    collection_writes: usize,
}

/// The fake org. Stops when dropped.
pub struct SalesforceFake {
    server: HttpServer,
    state: Arc<Mutex<State>>,
}

fn errors(status: u16, code: &str, message: &str) -> Reply {
    Reply::status(status)
        .header("Content-Type", "application/json")
        .body(&json!([{"message": message, "errorCode": code, "fields": []}]).to_string())
}

fn json_reply(status: u16, value: &Value) -> Reply {
    Reply::status(status)
        .header("Content-Type", "application/json")
        .body(&value.to_string())
}

fn form_pairs(body: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// Percent- and plus-decoding of a form or query component.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_datetime(s: &str) -> bool {
    // yyyy-MM-ddTHH:mm:ss(.SSS)?(Z|+hh:mm)
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s[19..].contains('+') || s[19..].contains('-'))
}

impl Default for SalesforceFake {
    fn default() -> Self {
        Self::start()
    }
}

impl SalesforceFake {
    /// An org with a `Lead` object (Email is an idLookup, unique field) and a rate limit of
    /// 25 calls a second.
    pub fn start() -> Self {
        let server = HttpServer::start();
        let base = server
            .url()
            .split("/hooks/")
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut objects = BTreeMap::new();
        objects.insert(
            "Lead".to_owned(),
            SObject::new(
                vec![
                    field("Id", "id", false),
                    field("Email", "email", true),
                    field("LastName", "string", false),
                    field("Company", "string", false),
                    field("Lead_Score__c", "picklist", false),
                    field("Features_Used__c", "multipicklist", false),
                    field("Last_Product_Activity__c", "datetime", false),
                    field("LeadSource", "picklist", false),
                    field("Page_Views__c", "double", false),
                ],
                "00Q",
            ),
        );
        let state = Arc::new(Mutex::new(State {
            base,
            tokens: Vec::new(),
            objects,
            rules: Vec::new(),
            unparseable: Vec::new(),
            jobs: BTreeMap::new(),
            next_id: 1,
            rate_limit: 25,
            recent: VecDeque::new(),
            api_usage: 0,
            daily_limit: 15_000,
            throttled: 0,
            largest_collection: 0,
            collection_calls: 0,
            queries: 0,
            drop_after_commit_every: None,
            collection_writes: 0,
        }));
        let shared = Arc::clone(&state);
        server.respond_with(move |_, request| {
            let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
            state.handle(request)
        });
        Self { server, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://127.0.0.1:PORT`: the login URL and the instance URL.
    pub fn url(&self) -> String {
        self.state().base.clone()
    }

    /// Fault: every `n`-th sObject Collections write (upsert, create, update, delete) that
    /// succeeds is applied, then the connection is dropped without an answer (the client sees a
    /// connection error), as when Salesforce commits and the connection breaks.
    pub fn drop_after_commit_every(&self, n: usize) {
        self.state().drop_after_commit_every = Some(n.max(1));
    }

    /// No more injected faults (connections are answered again).
    pub fn clear_faults(&self) {
        self.state().drop_after_commit_every = None;
    }

    /// Every request the org received.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// At most `n` API calls per second; more answer 429 with `Retry-After: 1`.
    pub fn set_rate_limit(&self, n: usize) {
        self.state().rate_limit = n;
    }

    /// The daily API request allocation (`Sforce-Limit-Info` and 403 past it).
    pub fn set_daily_limit(&self, n: u64) {
        self.state().daily_limit = n;
    }

    /// A validation rule: a record whose `field` equals `value` fails with `code: message`.
    pub fn reject_when(&self, object: &str, field: &str, value: Value, code: &str, message: &str) {
        self.state().rules.push(Rule {
            object: object.to_owned(),
            field: field.to_owned(),
            value,
            code: code.to_owned(),
            message: message.to_owned(),
        });
    }

    /// A value Salesforce cannot deserialize (say, text in a number field): a Collections
    /// request carrying it is refused whole with `400 JSON_PARSER_ERROR`.
    pub fn refuse_request_when(&self, field: &str, value: Value) {
        self.state().unparseable.push((field.to_owned(), value));
    }

    pub fn clear_rules(&self) {
        let mut state = self.state();
        state.rules.clear();
        state.unparseable.clear();
    }

    /// Creates a record as if someone had entered it in Salesforce; returns its Id.
    pub fn insert(&self, object: &str, fields: Value) -> String {
        let mut state = self.state();
        let id = state.new_id(object);
        let fields = fields.as_object().cloned().unwrap_or_default();
        if let Some(o) = state.objects.get_mut(object) {
            o.put(id.clone(), fields);
        }
        id
    }

    /// What the org holds: every record of `object` (with its `Id`).
    pub fn records(&self, object: &str) -> Vec<Map<String, Value>> {
        let state = self.state();
        state
            .objects
            .get(object)
            .map(|o| {
                o.records
                    .iter()
                    .map(|(id, r)| {
                        let mut r = r.clone();
                        r.insert("Id".into(), Value::String(id.clone()));
                        r
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Calls answered 429.
    pub fn throttled(&self) -> usize {
        self.state().throttled
    }

    /// The most records one sObject Collections request carried.
    pub fn largest_collection(&self) -> usize {
        self.state().largest_collection
    }

    pub fn collection_calls(&self) -> usize {
        self.state().collection_calls
    }

    /// Bulk API 2.0 ingest jobs created.
    pub fn bulk_jobs(&self) -> usize {
        self.state().jobs.len()
    }

    /// SOQL queries answered.
    pub fn queries(&self) -> usize {
        self.state().queries
    }
}

impl State {
    fn new_id(&mut self, object: &str) -> String {
        let prefix = self.objects.get(object).map(|o| o.prefix).unwrap_or("a00");
        let id = format!("{prefix}5g00000{:08}", self.next_id);
        self.next_id += 1;
        id
    }

    fn handle(&mut self, request: &Request) -> Reply {
        let (path, query) = request
            .path
            .split_once('?')
            .unwrap_or((request.path.as_str(), ""));
        if path == "/services/oauth2/token" && request.method == "POST" {
            return self.token(request);
        }
        let Some(rest) = path.strip_prefix("/services/data/") else {
            return errors(404, "NOT_FOUND", "The requested resource does not exist");
        };
        let authorized = request
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| self.tokens.iter().any(|k| k == t));
        if !authorized {
            return errors(401, "INVALID_SESSION_ID", "Session expired or invalid");
        }
        // The rate limit: calls within the last second.
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.rate_limit {
            self.throttled += 1;
            return errors(
                429,
                "REQUEST_LIMIT_EXCEEDED",
                "Too many requests: retry later",
            )
            .header("Retry-After", "1");
        }
        self.recent.push_back(now);
        if self.api_usage >= self.daily_limit {
            return errors(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                &format!(
                    "TotalRequests Limit exceeded. ({}/{})",
                    self.api_usage, self.daily_limit
                ),
            );
        }
        self.api_usage += 1;
        let usage = format!("api-usage={}/{}", self.api_usage, self.daily_limit);
        let mut parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        // vXX.X
        if parts.first().is_none_or(|v| !v.starts_with('v')) {
            return errors(404, "NOT_FOUND", "The requested resource does not exist");
        }
        parts.remove(0);
        let reply = match (request.method.as_str(), parts.as_slice()) {
            ("GET", []) => json_reply(
                200,
                &json!({"sobjects": format!("/services/data/{}/sobjects", rest)}),
            ),
            ("GET", ["sobjects", object, "describe"]) => self.describe(object),
            ("PATCH", ["composite", "sobjects", object, ext]) => {
                self.collection(request, Some((object, ext)), "upsert")
            }
            ("POST", ["composite", "sobjects"]) => self.collection(request, None, "insert"),
            ("PATCH", ["composite", "sobjects"]) => self.collection(request, None, "update"),
            ("DELETE", ["composite", "sobjects"]) => self.delete_collection(query),
            ("GET", ["query"]) => self.query(query),
            ("POST", ["jobs", "ingest"]) => self.create_job(request),
            ("PUT", ["jobs", "ingest", id, "batches"]) => self.upload(id, request),
            ("PATCH", ["jobs", "ingest", id]) => self.close_job(id, request),
            ("GET", ["jobs", "ingest", id]) => self.job_info(id, true),
            ("GET", ["jobs", "ingest", id, "successfulResults"]) => self.results(id, false),
            ("GET", ["jobs", "ingest", id, "failedResults"]) => self.results(id, true),
            _ => errors(404, "NOT_FOUND", "The requested resource does not exist"),
        };
        let collection_write =
            matches!(parts.as_slice(), ["composite", "sobjects", ..]) && request.method != "GET";
        if collection_write && (200..300).contains(&reply.status) {
            self.collection_writes += 1;
            if self
                .drop_after_commit_every
                .is_some_and(|n| self.collection_writes.is_multiple_of(n))
            {
                return reply.then_drop();
            }
        }
        reply.header("Sforce-Limit-Info", &usage)
    }

    fn token(&mut self, request: &Request) -> Reply {
        let form = form_pairs(&request.body);
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let ok = match get("grant_type") {
            "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
                if let Err((error, description)) = self.check_assertion(get("assertion")) {
                    return json_reply(
                        400,
                        &json!({"error": error, "error_description": description}),
                    );
                }
                true
            }
            "client_credentials" => {
                get("client_id") == CLIENT_ID && get("client_secret") == CLIENT_SECRET
            }
            "refresh_token" => {
                get("client_id") == CLIENT_ID && get("refresh_token") == REFRESH_TOKEN
            }
            other => {
                return json_reply(
                    400,
                    &json!({"error": "unsupported_grant_type", "error_description": format!("grant type not supported: {other}")}),
                );
            }
        };
        if !ok {
            let (error, description) = if get("grant_type") == "refresh_token" {
                ("invalid_grant", "expired access/refresh token")
            } else {
                ("invalid_client", "invalid client credentials")
            };
            return json_reply(
                400,
                &json!({"error": error, "error_description": description}),
            );
        }
        let token = format!(
            "00Dfake!AQ{}tok{:06}",
            self.tokens.len(),
            self.next_id * 7919 % 1_000_000
        );
        self.tokens.push(token.clone());
        json_reply(
            200,
            &json!({
                "access_token": token,
                "instance_url": self.base,
                "id": format!("{}/id/00Dfake/005fake", self.base),
                "token_type": "Bearer",
                "issued_at": "1732500000000",
                "signature": "c2lnbmF0dXJl",
            }),
        )
    }

    /// The JWT bearer checks Salesforce documents: the signature by the connected app's
    /// certificate, `iss`, `sub`, `aud` and `exp`. `Err((error, error_description))`.
    fn check_assertion(&self, assertion: &str) -> Result<(), (&'static str, &'static str)> {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let invalid = ("invalid_grant", "invalid assertion");
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts.as_slice() else {
            return Err(invalid);
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| invalid);
        let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| invalid)?;
        if header["alg"] != "RS256" {
            return Err(invalid);
        }
        let signed = format!("{}.{}", parts[0], parts[1]);
        let public = connected_app_public_key();
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &public,
        )
        .verify(signed.as_bytes(), &decode(signature)?)
        .map_err(|_| invalid)?;
        let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|_| invalid)?;
        if claims["iss"] != CLIENT_ID {
            return Err(("invalid_client_id", "client identifier invalid"));
        }
        if claims["aud"].as_str().map(|a| a.trim_end_matches('/')) != Some(self.base.as_str()) {
            return Err(("invalid_grant", "audience is invalid"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // `exp` is a number of seconds (Salesforce also takes it as a string of digits).
        let exp = claims["exp"]
            .as_u64()
            .or_else(|| claims["exp"].as_str().and_then(|s| s.parse().ok()));
        match exp {
            Some(exp) if exp > now && exp <= now + 180 => {}
            Some(exp) if exp <= now => return Err(("invalid_grant", "expired authorization code")),
            _ => return Err(invalid),
        }
        if claims["sub"] != JWT_USERNAME {
            return Err(("invalid_grant", "user hasn't approved this consumer"));
        }
        Ok(())
    }

    fn describe(&self, object: &str) -> Reply {
        let Some(o) = self.objects.get(object) else {
            return errors(404, "NOT_FOUND", "The requested resource does not exist");
        };
        let fields: Vec<Value> = o
            .fields
            .iter()
            .map(|f| {
                json!({"name": f.name, "type": f.kind, "externalId": false, "idLookup": f.external_id || f.kind == "id", "unique": f.external_id, "nillable": f.kind != "id"})
            })
            .collect();
        json_reply(200, &json!({"name": object, "fields": fields}))
    }

    /// Checks a record's JSON values against the object's fields: unknown fields and values
    /// of the wrong JSON type refuse the whole request, as Salesforce's deserializer does.
    fn check_types(&self, object: &str, record: &Map<String, Value>) -> Result<(), Reply> {
        let o = &self.objects[object];
        for (name, value) in record {
            if name == "attributes" || name.eq_ignore_ascii_case("id") {
                continue;
            }
            let Some(f) = o.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)) else {
                return Err(errors(
                    400,
                    "INVALID_FIELD",
                    &format!("No such column '{name}' on sobject of type {object}"),
                ));
            };
            let parseable = !self
                .unparseable
                .iter()
                .any(|(field, v)| field.eq_ignore_ascii_case(name) && v == value);
            let ok = parseable
                && match (f.kind.as_str(), value) {
                    (_, Value::Null) => true,
                    ("double", v) => v.is_number(),
                    ("boolean", v) => v.is_boolean(),
                    ("datetime", Value::String(s)) => is_datetime(s),
                    (_, v) => v.is_string(),
                };
            if !ok {
                return Err(errors(
                    400,
                    "JSON_PARSER_ERROR",
                    &format!(
                        "Cannot deserialize instance of {} from {value} for field {name}",
                        f.kind
                    ),
                ));
            }
        }
        Ok(())
    }

    fn rule_error(&self, object: &str, record: &Map<String, Value>) -> Option<Value> {
        self.rules
            .iter()
            .find(|r| r.object == object && record.get(&r.field) == Some(&r.value))
            .map(|r| json!([{"statusCode": r.code, "message": r.message, "fields": [r.field]}]))
    }

    fn find_by(&self, object: &str, field: &str, value: &Value) -> Option<String> {
        self.objects[object].find(field, value)
    }

    /// Applies one record (values already typed); returns the per-record result.
    fn apply(
        &mut self,
        object: &str,
        operation: &str,
        ext: Option<&str>,
        mut record: Map<String, Value>,
    ) -> Value {
        record.remove("attributes");
        let id_given = record
            .keys()
            .find(|k| k.eq_ignore_ascii_case("id"))
            .cloned()
            .and_then(|k| record.remove(&k))
            .and_then(|v| v.as_str().map(str::to_owned));
        let failure = |code: &str, message: String, fields: Vec<&str>| json!({"id": null, "success": false, "errors": [{"statusCode": code, "message": message, "fields": fields}]});
        if let Some(errors) = self.rule_error(object, &record) {
            return json!({"id": null, "success": false, "errors": errors});
        }
        let unique: Vec<String> = self.objects[object]
            .fields
            .iter()
            .filter(|f| f.external_id)
            .map(|f| f.name.clone())
            .collect();
        match operation {
            "upsert" => {
                let ext = ext.unwrap_or_default();
                let Some(key) = record.get(ext).filter(|v| !v.is_null()).cloned() else {
                    return failure(
                        "MISSING_ARGUMENT",
                        format!("{ext} not specified"),
                        vec![ext],
                    );
                };
                match self.find_by(object, ext, &key) {
                    Some(id) => {
                        if let Some(o) = self.objects.get_mut(object) {
                            o.merge(&id, record);
                        }
                        json!({"id": id, "success": true, "errors": [], "created": false})
                    }
                    None => {
                        let id = self.new_id(object);
                        if let Some(o) = self.objects.get_mut(object) {
                            o.put(id.clone(), record);
                        }
                        json!({"id": id, "success": true, "errors": [], "created": true})
                    }
                }
            }
            "insert" => {
                for u in &unique {
                    if let Some(v) = record.get(u).filter(|v| !v.is_null())
                        && let Some(other) = self.find_by(object, u, v)
                    {
                        return failure(
                            "DUPLICATE_VALUE",
                            format!(
                                "duplicate value found: {u} duplicates value on record with id: {other}"
                            ),
                            vec![u],
                        );
                    }
                }
                let id = self.new_id(object);
                if let Some(o) = self.objects.get_mut(object) {
                    o.put(id.clone(), record);
                }
                json!({"id": id, "success": true, "errors": []})
            }
            "update" => {
                let Some(id) = id_given else {
                    return failure(
                        "MISSING_ARGUMENT",
                        "Id not specified in an update call".into(),
                        vec!["Id"],
                    );
                };
                let merged = self
                    .objects
                    .get_mut(object)
                    .is_some_and(|o| o.merge(&id, record));
                match merged {
                    true => json!({"id": id, "success": true, "errors": []}),
                    false => failure("ENTITY_IS_DELETED", "entity is deleted".into(), vec![]),
                }
            }
            _ => {
                let Some(id) = id_given else {
                    return failure("MISSING_ARGUMENT", "Id not specified".into(), vec!["Id"]);
                };
                match self.objects.get_mut(object).and_then(|o| o.take(&id)) {
                    Some(_) => json!({"id": id, "success": true, "errors": []}),
                    None => failure("ENTITY_IS_DELETED", "entity is deleted".into(), vec![]),
                }
            }
        }
    }

    fn collection(
        &mut self,
        request: &Request,
        upsert: Option<(&str, &str)>,
        operation: &str,
    ) -> Reply {
        self.collection_calls += 1;
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return errors(
                400,
                "JSON_PARSER_ERROR",
                "Unexpected character in the request body",
            );
        };
        let Some(records) = body["records"].as_array() else {
            return errors(400, "JSON_PARSER_ERROR", "records is required");
        };
        self.largest_collection = self.largest_collection.max(records.len());
        if records.len() > COLLECTION_MAX {
            return errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            );
        }
        if body["allOrNone"] == true {
            return errors(
                400,
                "INVALID_INPUT",
                "this fake implements allOrNone=false only",
            );
        }
        let mut typed = Vec::with_capacity(records.len());
        for r in records {
            let Some(map) = r.as_object() else {
                return errors(400, "JSON_PARSER_ERROR", "a record is not an object");
            };
            let Some(object) = r["attributes"]["type"].as_str() else {
                return errors(400, "INVALID_TYPE", "Must send a concrete entity type.");
            };
            if let Some((url_object, _)) = upsert
                && url_object != object
            {
                return errors(
                    400,
                    "INVALID_TYPE",
                    "the records' type must match the URI's sObject",
                );
            }
            if !self.objects.contains_key(object) {
                return errors(
                    400,
                    "INVALID_TYPE",
                    &format!("sObject type '{object}' is not supported."),
                );
            }
            if let Err(reply) = self.check_types(object, map) {
                return reply;
            }
            typed.push((object.to_owned(), map.clone()));
        }
        if let Some((object, ext)) = upsert {
            let ok = self.objects.get(object).is_some_and(|o| {
                o.fields
                    .iter()
                    .any(|f| f.name == ext && (f.external_id || f.kind == "id"))
            });
            if !ok {
                return errors(
                    404,
                    "NOT_FOUND",
                    &format!(
                        "Provided external ID field does not exist or is not accessible: {ext}"
                    ),
                );
            }
        }
        let ext = upsert.map(|(_, e)| e.to_owned());
        let results: Vec<Value> = typed
            .into_iter()
            .map(|(object, record)| self.apply(&object, operation, ext.as_deref(), record))
            .collect();
        json_reply(200, &Value::Array(results))
    }

    fn delete_collection(&mut self, query: &str) -> Reply {
        self.collection_calls += 1;
        let params = form_pairs(query.as_bytes());
        let ids: Vec<String> = params
            .get("ids")
            .map(|s| {
                s.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        self.largest_collection = self.largest_collection.max(ids.len());
        if ids.len() > COLLECTION_MAX {
            return errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            );
        }
        let results: Vec<Value> = ids
            .iter()
            .map(|id| {
                let object = self
                    .objects
                    .iter()
                    .find(|(_, o)| id.starts_with(o.prefix))
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default();
                let mut record = Map::new();
                record.insert("Id".into(), Value::String(id.clone()));
                if object.is_empty() {
                    json!({"id": id, "success": false, "errors": [{"statusCode": "MALFORMED_ID", "message": "malformed id", "fields": []}]})
                } else {
                    self.apply(&object, "delete", None, record)
                }
            })
            .collect();
        json_reply(200, &Value::Array(results))
    }

    /// `SELECT f1, f2 FROM Object WHERE Field IN ('a', 'b', 3)`.
    fn query(&mut self, query: &str) -> Reply {
        self.queries += 1;
        let params = form_pairs(query.as_bytes());
        let Some(soql) = params.get("q") else {
            return errors(400, "MALFORMED_QUERY", "q is required");
        };
        let malformed = || {
            errors(
                400,
                "MALFORMED_QUERY",
                &format!("unexpected token in: {soql}"),
            )
        };
        let upper = soql.to_ascii_uppercase();
        let (Some(from), Some(where_)) = (upper.find(" FROM "), upper.find(" WHERE ")) else {
            return malformed();
        };
        if !upper.starts_with("SELECT ") {
            return malformed();
        }
        let fields: Vec<String> = soql[7..from]
            .split(',')
            .map(|f| f.trim().to_owned())
            .collect();
        let object = soql[from + 6..where_].trim().to_owned();
        let condition = soql[where_ + 7..].trim();
        let Some(in_at) = condition.to_ascii_uppercase().find(" IN (") else {
            return malformed();
        };
        let field = condition[..in_at].trim().to_owned();
        let Some(list) = condition[in_at + 5..].strip_suffix(')') else {
            return malformed();
        };
        let Some(o) = self.objects.get(&object) else {
            return errors(
                400,
                "INVALID_TYPE",
                &format!("sObject type '{object}' is not supported."),
            );
        };
        for f in fields.iter().chain([&field]) {
            if !o.fields.iter().any(|x| x.name.eq_ignore_ascii_case(f)) {
                return errors(
                    400,
                    "INVALID_FIELD",
                    &format!("No such column '{f}' on entity '{object}'."),
                );
            }
        }
        // The literals: 'quoted with \ escapes' or bare numbers.
        let mut values: Vec<Value> = Vec::new();
        let mut chars = list.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    let mut s = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some('r') => s.push('\r'),
                                Some(other) => s.push(other),
                                None => return malformed(),
                            },
                            '\'' => break,
                            c => s.push(c),
                        }
                    }
                    values.push(Value::String(s));
                }
                ',' | ' ' => {}
                c => {
                    let mut s = c.to_string();
                    while let Some(&n) = chars.peek() {
                        if n == ',' {
                            break;
                        }
                        s.push(n);
                        chars.next();
                    }
                    match s.trim().parse::<f64>() {
                        Ok(f) => values.push(json!(f)),
                        Err(_) => return malformed(),
                    }
                }
            }
        }
        // A unique field is looked up by its index, another field scanned.
        let matching: Vec<(&String, &Map<String, Value>)> = if o.is_unique(&field) {
            let mut ids: Vec<&String> = values
                .iter()
                .filter_map(|v| o.unique.get(&(field.clone(), v.to_string())))
                .collect();
            ids.sort();
            ids.dedup();
            ids.into_iter()
                .filter_map(|id| o.records.get_key_value(id))
                .collect()
        } else {
            o.records
                .iter()
                .filter(|(_, r)| r.get(&field).is_some_and(|v| values.contains(v)))
                .collect()
        };
        let records: Vec<Value> = matching
            .into_iter()
            .map(|(id, r)| {
                let mut out = Map::new();
                out.insert("attributes".into(), json!({"type": object, "url": format!("/services/data/v62.0/sobjects/{object}/{id}")}));
                for f in &fields {
                    let v = if f.eq_ignore_ascii_case("Id") {
                        Value::String(id.clone())
                    } else {
                        r.get(f).cloned().unwrap_or(Value::Null)
                    };
                    out.insert(f.clone(), v);
                }
                Value::Object(out)
            })
            .collect();
        json_reply(
            200,
            &json!({"totalSize": records.len(), "done": true, "records": records}),
        )
    }

    fn create_job(&mut self, request: &Request) -> Reply {
        let Ok(spec) = serde_json::from_slice::<Value>(&request.body) else {
            return errors(
                400,
                "JSON_PARSER_ERROR",
                "Unexpected character in the request body",
            );
        };
        let object = spec["object"].as_str().unwrap_or_default().to_owned();
        let operation = spec["operation"].as_str().unwrap_or_default().to_owned();
        if !self.objects.contains_key(&object) {
            return errors(
                400,
                "INVALIDJOB",
                &format!("Unable to find object: {object}"),
            );
        }
        if !["insert", "update", "upsert", "delete", "hardDelete"].contains(&operation.as_str()) {
            return errors(
                400,
                "INVALIDJOB",
                &format!("Invalid operation: {operation}"),
            );
        }
        let external_id = spec["externalIdFieldName"].as_str().map(str::to_owned);
        if operation == "upsert" && external_id.is_none() {
            return errors(400, "INVALIDJOB", "External ID was blank for upsert");
        }
        if spec["contentType"] != "CSV" {
            return errors(400, "INVALIDJOB", "contentType must be CSV");
        }
        let id = format!("750fake{:08}", self.jobs.len() + 1);
        self.jobs.insert(
            id.clone(),
            Job {
                object,
                operation,
                external_id,
                state: "Open".into(),
                csv: String::new(),
                polls: 0,
                ok: Vec::new(),
                failed: Vec::new(),
                header: Vec::new(),
                error: None,
            },
        );
        self.job_info(&id, false)
    }

    fn upload(&mut self, id: &str, request: &Request) -> Reply {
        let Some(job) = self.jobs.get_mut(id) else {
            return errors(404, "NOT_FOUND", "The requested resource does not exist");
        };
        if job.state != "Open" {
            return errors(
                409,
                "INVALIDJOBSTATE",
                &format!("Job is in state {}", job.state),
            );
        }
        if !request
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/csv"))
        {
            return errors(400, "INVALID_CONTENT_TYPE", "Content-Type must be text/csv");
        }
        if request.body.len() > 150 * 1024 * 1024 {
            return errors(400, "INVALIDJOB", "upload exceeds 150 MB");
        }
        job.csv.push_str(&String::from_utf8_lossy(&request.body));
        Reply::status(201)
    }

    fn close_job(&mut self, id: &str, request: &Request) -> Reply {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return errors(
                400,
                "JSON_PARSER_ERROR",
                "Unexpected character in the request body",
            );
        };
        let Some(job) = self.jobs.get_mut(id) else {
            return errors(404, "NOT_FOUND", "The requested resource does not exist");
        };
        if body["state"] != "UploadComplete" || job.state != "Open" {
            return errors(
                400,
                "INVALIDJOBSTATE",
                "Only an Open job can be closed with UploadComplete",
            );
        }
        job.state = "UploadComplete".into();
        let (object, operation, ext, csv) = (
            job.object.clone(),
            job.operation.clone(),
            job.external_id.clone(),
            job.csv.clone(),
        );
        self.process(id, &object, &operation, ext.as_deref(), &csv);
        self.job_info(id, false)
    }

    /// Runs a closed job: each CSV row typed by the object's fields and applied.
    fn process(&mut self, id: &str, object: &str, operation: &str, ext: Option<&str>, csv: &str) {
        let mut reader = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
        let header: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        };
        let fields = self.objects[object].fields.clone();
        let mut unknown = header
            .iter()
            .filter(|h| !fields.iter().any(|f| f.name.eq_ignore_ascii_case(h)));
        if let Some(bad) = unknown.next() {
            if let Some(job) = self.jobs.get_mut(id) {
                job.error = Some(format!("InvalidBatch : Field name not found : {bad}"));
                job.header = header.clone();
            }
            return;
        }
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for row in reader.records() {
            let Ok(row) = row else { continue };
            let cells: Vec<String> = row.iter().map(str::to_owned).collect();
            let mut record = Map::new();
            let mut bad: Option<String> = None;
            for (name, cell) in header.iter().zip(&cells) {
                if cell.is_empty() {
                    continue; // an empty cell leaves the field as it is
                }
                let kind = fields
                    .iter()
                    .find(|f| f.name.eq_ignore_ascii_case(name))
                    .map(|f| f.kind.as_str())
                    .unwrap_or("string");
                let value = if cell == "#N/A" {
                    Value::Null
                } else {
                    match kind {
                        "double" => match cell.parse::<f64>() {
                            Ok(f) => json!(f),
                            Err(_) => {
                                bad = Some(format!(
                                    "INVALID_TYPE_ON_FIELD_IN_RECORD:{name}: value not of required type: {cell}:--"
                                ));
                                Value::Null
                            }
                        },
                        "boolean" => Value::Bool(cell.eq_ignore_ascii_case("true")),
                        "datetime" if !is_datetime(cell) => {
                            bad = Some(format!(
                                "INVALID_TYPE_ON_FIELD_IN_RECORD:{name}: value not of required type: {cell}:--"
                            ));
                            Value::Null
                        }
                        _ => Value::String(cell.clone()),
                    }
                };
                record.insert(name.clone(), value);
            }
            if let Some(reason) = bad {
                failed.push((String::new(), reason, cells));
                continue;
            }
            let result = self.apply(object, operation, ext, record);
            let rid = result["id"].as_str().unwrap_or_default().to_owned();
            if result["success"] == true {
                ok.push((rid, result["created"] == true, cells));
            } else {
                let reason = result["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        let fields: Vec<&str> = e["fields"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|f| f.as_str())
                            .collect();
                        format!(
                            "{}:{}:{}--",
                            e["statusCode"].as_str().unwrap_or_default(),
                            e["message"].as_str().unwrap_or_default(),
                            fields.join(",")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(";");
                failed.push((rid, reason, cells));
            }
        }
        if let Some(job) = self.jobs.get_mut(id) {
            job.header = header;
            job.ok = ok;
            job.failed = failed;
        }
    }

    fn job_info(&mut self, id: &str, poll: bool) -> Reply {
        let Some(job) = self.jobs.get_mut(id) else {
            return errors(404, "NOT_FOUND", "The requested resource does not exist");
        };
        if poll && job.state != "Open" {
            // UploadComplete → InProgress → JobComplete (or Failed), one poll each.
            job.polls += 1;
            job.state = match (job.polls, &job.error) {
                (1, _) => "InProgress".into(),
                (_, Some(_)) => "Failed".into(),
                _ => "JobComplete".into(),
            };
        }
        let mut info = json!({
            "id": id,
            "operation": job.operation,
            "object": job.object,
            "state": job.state,
            "contentType": "CSV",
            "apiVersion": 62.0,
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
            "jobType": "V2Ingest",
            "contentUrl": format!("services/data/v62.0/jobs/ingest/{id}/batches"),
            "numberRecordsProcessed": job.ok.len() + job.failed.len(),
            "numberRecordsFailed": job.failed.len(),
        });
        if let Some(ext) = &job.external_id {
            info["externalIdFieldName"] = ext.clone().into();
        }
        if let Some(e) = &job.error
            && job.state == "Failed"
        {
            info["errorMessage"] = e.clone().into();
        }
        json_reply(200, &info)
    }

    fn results(&self, id: &str, failed: bool) -> Reply {
        let Some(job) = self.jobs.get(id) else {
            return errors(404, "NOT_FOUND", "The requested resource does not exist");
        };
        if job.state != "JobComplete" && job.state != "Failed" {
            return errors(400, "INVALIDJOBSTATE", "Job is not complete");
        }
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let mut head = vec![
            "sf__Id".to_owned(),
            if failed { "sf__Error" } else { "sf__Created" }.to_owned(),
        ];
        head.extend(job.header.iter().cloned());
        let _ = writer.write_record(&head);
        if failed {
            for (rid, error, cells) in &job.failed {
                let mut row = vec![rid.clone(), error.clone()];
                row.extend(cells.iter().cloned());
                let _ = writer.write_record(&row);
            }
        } else {
            for (rid, created, cells) in &job.ok {
                let mut row = vec![rid.clone(), created.to_string()];
                row.extend(cells.iter().cloned());
                let _ = writer.write_record(&row);
            }
        }
        let body = writer.into_inner().unwrap_or_default();
        Reply::status(200)
            .header("Content-Type", "text/csv")
            .body(&String::from_utf8_lossy(&body))
    }
}
