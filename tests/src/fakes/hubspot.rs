//! A fake HubSpot account, written from HubSpot's public API reference (CRM v3 objects,
//! properties, account info, error handling and usage limits):
//!
//! - auth: `Authorization: Bearer <private app token>`; anything else is 401
//!   `{"status":"error","category":"INVALID_AUTHENTICATION",...}`.
//! - `GET /account-info/v3/details`; `GET /crm/v3/properties/{objectType}`.
//! - `POST /crm/v3/objects/{objectType}/batch/{read,upsert,create,update,archive}`, at most
//!   100 inputs (more is a 400 `VALIDATION_ERROR` for the whole request).
//!   - `upsert` by `idProperty` (a unique-value property): invalid inputs are answered
//!     207 Multi-Status with one `errors` entry per bad input (`context.ids`), the others land.
//!   - `create` / `update` validate the whole batch first: one bad input refuses the request
//!     (400 `VALIDATION_ERROR`, nothing written), as HubSpot does without multi-status.
//!   - `read` by `idProperty`: missing ids come back as a 207 `OBJECT_NOT_FOUND` error.
//!   - `archive`: 204, unknown ids ignored.
//!
//!   Property checks: unknown property (`PROPERTY_DOESNT_EXIST`), a number property given a
//!   non-number (`INVALID_FLOAT`), an enumeration value outside its options
//!   (`INVALID_OPTION`), and a contact `email` that is not an address (`INVALID_EMAIL`).
//! - a rolling rate-limit window (default 100 requests per 10 s): beyond it, 429
//!   `{"errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}` with `Retry-After`;
//!   every answer carries `X-HubSpot-RateLimit-{Max,Remaining,Interval-Milliseconds,Daily,
//!   Daily-Remaining}`.
//!
//! Object types: `contacts` (`0-1`), `companies` (`0-2`), `deals` (`0-3`), and custom objects
//! added with [`HubSpotFake::define_object`], addressed by fullyQualifiedName or objectTypeId.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::webhook::{Reply, Request, Webhook};

pub const MAX_INPUTS: usize = 100;

#[derive(Debug, Clone)]
pub struct Property {
    pub name: String,
    /// `string`, `number`, `enumeration`, `date`, `datetime`, `bool`.
    pub kind: String,
    pub options: Vec<String>,
    pub unique: bool,
}

#[derive(Debug, Default)]
struct ObjectType {
    type_id: String,
    properties: Vec<Property>,
    /// record id -> properties
    records: BTreeMap<u64, BTreeMap<String, String>>,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub inputs: usize,
    pub status: u16,
}

struct State {
    token: String,
    objects: BTreeMap<String, ObjectType>,
    next_id: u64,
    limit: usize,
    window: Duration,
    daily_limit: u64,
    daily_used: u64,
    arrivals: VecDeque<Instant>,
    seen: Vec<Seen>,
    /// Every n-th batch write is applied, then answered 503 (a lost answer).
    fail_after_commit_every: Option<usize>,
    /// Every n-th batch write is applied, then the connection is dropped without an answer.
    drop_after_commit_every: Option<usize>,
    writes_applied: usize,
}

pub struct HubSpotFake {
    server: Webhook,
    state: Arc<Mutex<State>>,
}

fn prop(name: &str, kind: &str) -> Property {
    Property {
        name: name.to_owned(),
        kind: kind.to_owned(),
        options: Vec::new(),
        unique: false,
    }
}

impl HubSpotFake {
    /// An account that accepts `token`, with HubSpot's default properties of contacts,
    /// companies and deals, and the default limit of 100 requests per 10 seconds.
    pub fn start(token: &str) -> Self {
        let mut objects = BTreeMap::new();
        let mut email = prop("email", "string");
        email.unique = true;
        let mut lifecycle = prop("lifecyclestage", "enumeration");
        lifecycle.options = ["subscriber", "lead", "opportunity", "customer"]
            .map(str::to_owned)
            .to_vec();
        let std_props = |extra: Vec<Property>| {
            let mut v = vec![
                prop("hs_object_id", "number"),
                prop("createdate", "datetime"),
                prop("hs_lastmodifieddate", "datetime"),
            ];
            v.extend(extra);
            v
        };
        objects.insert(
            "contacts".to_owned(),
            ObjectType {
                type_id: "0-1".into(),
                properties: std_props(vec![
                    email,
                    prop("firstname", "string"),
                    prop("lastname", "string"),
                    prop("company", "string"),
                    prop("phone", "string"),
                    lifecycle,
                ]),
                ..Default::default()
            },
        );
        objects.insert(
            "companies".to_owned(),
            ObjectType {
                type_id: "0-2".into(),
                properties: std_props(vec![
                    prop("name", "string"),
                    prop("domain", "string"),
                    prop("industry", "string"),
                    prop("annualrevenue", "number"),
                ]),
                ..Default::default()
            },
        );
        objects.insert(
            "deals".to_owned(),
            ObjectType {
                type_id: "0-3".into(),
                properties: std_props(vec![
                    prop("dealname", "string"),
                    prop("amount", "number"),
                    prop("dealstage", "string"),
                ]),
                ..Default::default()
            },
        );
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            objects,
            next_id: 1001,
            limit: 100,
            window: Duration::from_secs(10),
            daily_limit: 250_000,
            daily_used: 0,
            arrivals: VecDeque::new(),
            seen: Vec::new(),
            fail_after_commit_every: None,
            drop_after_commit_every: None,
            writes_applied: 0,
        }));
        let server = Webhook::start();
        let shared = Arc::clone(&state);
        server.respond_with(move |_, request| {
            let mut state = shared.lock().expect("hubspot fake state");
            state.handle(request)
        });
        Self { server, state }
    }

    /// `http://127.0.0.1:<port>`, for `base_url`.
    pub fn base_url(&self) -> String {
        let url = self.server.url();
        let end = url["http://".len()..]
            .find('/')
            .map_or(url.len(), |i| i + "http://".len());
        url[..end].to_owned()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("hubspot fake state"))
    }

    /// The rolling window: at most `requests` per `window`.
    pub fn set_rate_limit(&self, requests: usize, window: Duration) {
        self.with(|s| {
            s.limit = requests;
            s.window = window;
        });
    }

    /// Fault: every `n`-th batch write (upsert, create, update, archive) is applied and then
    /// answered `503`, as when HubSpot commits and the answer is lost on the way.
    pub fn fail_after_commit_every(&self, n: usize) {
        self.with(|s| s.fail_after_commit_every = Some(n.max(1)));
    }

    /// Fault: every `n`-th batch write is applied and then the connection is dropped without
    /// an answer (the client sees a connection error), as when HubSpot commits and the
    /// connection breaks before the answer is written.
    pub fn drop_after_commit_every(&self, n: usize) {
        self.with(|s| s.drop_after_commit_every = Some(n.max(1)));
    }

    /// Adds a custom object type (`fully_qualified_name` like `p_segments`).
    pub fn define_object(&self, fully_qualified_name: &str, type_id: &str) {
        self.with(|s| {
            s.objects.insert(
                fully_qualified_name.to_owned(),
                ObjectType {
                    type_id: type_id.to_owned(),
                    properties: vec![prop("hs_object_id", "number")],
                    ..Default::default()
                },
            );
        });
    }

    /// Adds (or replaces) a property of an object type.
    pub fn define_property(
        &self,
        object: &str,
        name: &str,
        kind: &str,
        unique: bool,
        options: &[&str],
    ) {
        self.with(|s| {
            let o = s.objects.get_mut(object).expect("a known object type");
            o.properties.retain(|p| p.name != name);
            o.properties.push(Property {
                name: name.to_owned(),
                kind: kind.to_owned(),
                options: options.iter().map(|o| (*o).to_owned()).collect(),
                unique,
            });
        });
    }

    /// Adds a record directly (as if created in HubSpot's UI); returns its id.
    pub fn insert_record(&self, object: &str, properties: &[(&str, &str)]) -> u64 {
        self.with(|s| {
            let id = s.next_id;
            s.next_id += 1;
            let props = properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            s.objects
                .get_mut(object)
                .expect("a known object type")
                .records
                .insert(id, props);
            id
        })
    }

    /// What the account holds: every record of an object type, its properties by name.
    pub fn records(&self, object: &str) -> Vec<BTreeMap<String, String>> {
        self.with(|s| {
            s.objects
                .get(object)
                .map(|o| o.records.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Every request, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.with(|s| s.seen.clone())
    }

    /// Write requests (batch upsert/create/update/archive) answered 2xx.
    pub fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|r| {
                (200..300).contains(&r.status)
                    && ["upsert", "create", "update", "archive"]
                        .iter()
                        .any(|w| r.path.ends_with(&format!("/batch/{w}")))
            })
            .collect()
    }

    /// The raw requests (headers and bodies), from the underlying server.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// The most requests that arrived within any span of `window`.
    pub fn peak_in_window(&self, window: Duration) -> usize {
        let times: Vec<Instant> = self.seen().iter().map(|r| r.at).collect();
        let mut peak = 0;
        for (i, start) in times.iter().enumerate() {
            let n = times[i..]
                .iter()
                .take_while(|t| t.duration_since(*start) < window)
                .count();
            peak = peak.max(n);
        }
        peak
    }
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Reply::status(status)
        .header("Content-Type", "application/json;charset=utf-8")
        .body(&body.to_string())
}

fn error_body(category: &str, message: &str) -> Value {
    json!({
        "status": "error",
        "message": message,
        "correlationId": "00000000-0000-4000-8000-000000000000",
        "category": category,
    })
}

impl State {
    fn handle(&mut self, request: &Request) -> Reply {
        let now = Instant::now();
        let inputs = serde_json::from_slice::<Value>(&request.body)
            .ok()
            .and_then(|b| b["inputs"].as_array().map(Vec::len))
            .unwrap_or(0);
        let reply = self.route(request, now);
        self.seen.push(Seen {
            at: now,
            method: request.method.clone(),
            path: request.path.clone(),
            inputs,
            status: reply.status,
        });
        reply
    }

    fn route(&mut self, request: &Request, now: Instant) -> Reply {
        let expected = format!("Bearer {}", self.token);
        if request.header("authorization") != Some(expected.as_str()) {
            return json_reply(
                401,
                &error_body(
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                ),
            );
        }
        // The rolling window: requests answered 429 do not count against it.
        while self
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.arrivals.pop_front();
        }
        if self.arrivals.len() >= self.limit {
            let oldest = self.arrivals.front().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            let secs = wait.as_secs_f64().ceil().max(1.0);
            return json_reply(
                429,
                &json!({
                    "status": "error",
                    "message": "You have reached your ten_secondly_rolling limit.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": "00000000-0000-4000-8000-000000000000",
                    "policyName": "TEN_SECONDLY_ROLLING",
                }),
            )
            .header("Retry-After", &format!("{secs}"))
            .header("X-HubSpot-RateLimit-Max", &self.limit.to_string())
            .header("X-HubSpot-RateLimit-Remaining", "0");
        }
        self.arrivals.push_back(now);
        self.daily_used += 1;
        let reply = self.serve(request);
        let remaining = self.limit.saturating_sub(self.arrivals.len());
        reply
            .header("X-HubSpot-RateLimit-Max", &self.limit.to_string())
            .header("X-HubSpot-RateLimit-Remaining", &remaining.to_string())
            .header(
                "X-HubSpot-RateLimit-Interval-Milliseconds",
                &self.window.as_millis().to_string(),
            )
            .header("X-HubSpot-RateLimit-Daily", &self.daily_limit.to_string())
            .header(
                "X-HubSpot-RateLimit-Daily-Remaining",
                &self.daily_limit.saturating_sub(self.daily_used).to_string(),
            )
    }

    fn object_name(&self, segment: &str) -> Option<String> {
        self.objects
            .iter()
            .find(|(name, o)| *name == segment || o.type_id == segment)
            .map(|(name, _)| name.clone())
    }

    fn serve(&mut self, request: &Request) -> Reply {
        let path = request.path.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (request.method.as_str(), parts.as_slice()) {
            ("GET", ["account-info", "v3", "details"]) => json_reply(
                200,
                &json!({"portalId": 62515, "accountType": "STANDARD", "timeZone": "UTC",
                        "companyCurrency": "USD", "uiDomain": "app.hubspot.com"}),
            ),
            ("GET", ["crm", "v3", "properties", object]) => match self.object_name(object) {
                Some(name) => {
                    let results: Vec<Value> = self.objects[&name]
                        .properties
                        .iter()
                        .map(|p| {
                            json!({
                                "name": p.name, "label": p.name, "type": p.kind,
                                "fieldType": if p.kind == "enumeration" { "select" } else { "text" },
                                "hasUniqueValue": p.unique,
                                "options": p.options.iter().map(|o| json!({"label": o, "value": o})).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    json_reply(200, &json!({ "results": results }))
                }
                None => unknown_object(object),
            },
            ("POST", ["crm", "v3", "objects", object, "batch", action]) => {
                let Some(name) = self.object_name(object) else {
                    return unknown_object(object);
                };
                let body: Value = match serde_json::from_slice(&request.body) {
                    Ok(b) => b,
                    Err(e) => {
                        return json_reply(
                            400,
                            &error_body("VALIDATION_ERROR", &format!("Invalid input JSON: {e}")),
                        );
                    }
                };
                let Some(inputs) = body["inputs"].as_array().cloned() else {
                    return json_reply(
                        400,
                        &error_body(
                            "VALIDATION_ERROR",
                            "Invalid input JSON: `inputs` is required",
                        ),
                    );
                };
                if inputs.len() > MAX_INPUTS {
                    return json_reply(
                        400,
                        &error_body(
                            "VALIDATION_ERROR",
                            &format!(
                                "Invalid input: batch of {} inputs exceeds the limit of {MAX_INPUTS} inputs",
                                inputs.len()
                            ),
                        ),
                    );
                }
                let reply = match *action {
                    "read" => return self.read(&name, &body, &inputs),
                    "upsert" => self.upsert(&name, &inputs),
                    "create" => self.create(&name, &inputs),
                    "update" => self.update(&name, &inputs),
                    "archive" => self.archive(&name, &inputs),
                    _ => return json_reply(404, &error_body("OBJECT_NOT_FOUND", "Not found")),
                };
                if (200..300).contains(&reply.status) {
                    self.writes_applied += 1;
                    if self
                        .fail_after_commit_every
                        .is_some_and(|n| self.writes_applied.is_multiple_of(n))
                    {
                        return json_reply(
                            503,
                            &error_body("SERVICE_UNAVAILABLE", "Service Unavailable"),
                        );
                    }
                    if self
                        .drop_after_commit_every
                        .is_some_and(|n| self.writes_applied.is_multiple_of(n))
                    {
                        return reply.then_drop();
                    }
                }
                reply
            }
            _ => json_reply(
                404,
                &error_body(
                    "OBJECT_NOT_FOUND",
                    &format!("No route for {} {path}", request.method),
                ),
            ),
        }
    }

    fn property(&self, object: &str, name: &str) -> Option<&Property> {
        self.objects[object]
            .properties
            .iter()
            .find(|p| p.name == name)
    }

    /// `Err(message)` in HubSpot's "Property values were not valid" form.
    fn validate(
        &self,
        object: &str,
        props: &serde_json::Map<String, Value>,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, value) in props {
            let text = match value {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let invalid = |error: &str, message: String| json!({"isValid": false, "message": message, "error": error, "name": name});
            match self.property(object, name) {
                None => problems.push(invalid(
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{name}\" does not exist"),
                )),
                Some(_) if text.is_empty() => {}
                Some(p) if p.kind == "number" && text.parse::<f64>().is_err() => problems.push(
                    invalid("INVALID_FLOAT", format!("{text} was not a valid number.")),
                ),
                Some(p) if p.kind == "enumeration" && !p.options.contains(&text) => {
                    problems.push(invalid(
                        "INVALID_OPTION",
                        format!(
                            "{text} was not one of the allowed options: [{}]",
                            p.options.join(", ")
                        ),
                    ))
                }
                Some(p)
                    if object == "contacts"
                        && p.name == "email"
                        && !text
                            .split_once('@')
                            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.')) =>
                {
                    problems.push(invalid(
                        "INVALID_EMAIL",
                        format!("Email address {text} is invalid"),
                    ))
                }
                Some(_) => {}
            }
            let stored = if object == "contacts" && name == "email" {
                text.to_lowercase()
            } else {
                text
            };
            out.insert(name.clone(), stored);
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(format!(
                "Property values were not valid: {}",
                Value::Array(problems)
            ))
        }
    }

    fn find_by(&self, object: &str, id_property: &str, value: &str) -> Option<u64> {
        self.objects[object]
            .records
            .iter()
            .find(|(_, props)| {
                props
                    .get(id_property)
                    .is_some_and(|v| v.eq_ignore_ascii_case(value))
            })
            .map(|(id, _)| *id)
    }

    fn check_id_property(&self, object: &str, id_property: &str) -> Result<(), Reply> {
        match self.property(object, id_property) {
            Some(p) if p.unique => Ok(()),
            Some(_) => Err(json_reply(
                400,
                &error_body(
                    "VALIDATION_ERROR",
                    &format!(
                        "{id_property} is not a unique property of {object}; idProperty must have unique values"
                    ),
                ),
            )),
            None => Err(json_reply(
                400,
                &error_body(
                    "VALIDATION_ERROR",
                    &format!("Property \"{id_property}\" does not exist"),
                ),
            )),
        }
    }

    fn result(&self, object: &str, id: u64, new: Option<bool>) -> Value {
        let mut props: serde_json::Map<String, Value> = self.objects[object].records[&id]
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        props.insert("hs_object_id".into(), Value::String(id.to_string()));
        let mut r = json!({"id": id.to_string(), "properties": props, "archived": false,
                           "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"});
        if let Some(new) = new {
            r["new"] = Value::Bool(new);
        }
        r
    }

    fn batch_reply(results: Vec<Value>, errors: Vec<Value>) -> Reply {
        let mut body = json!({
            "status": "COMPLETE",
            "results": results,
            "startedAt": "2026-01-01T00:00:00Z",
            "completedAt": "2026-01-01T00:00:00Z",
        });
        if errors.is_empty() {
            json_reply(200, &body)
        } else {
            body["numErrors"] = json!(errors.len());
            body["errors"] = Value::Array(errors);
            json_reply(207, &body)
        }
    }

    fn read(&mut self, object: &str, body: &Value, inputs: &[Value]) -> Reply {
        let id_property = body["idProperty"]
            .as_str()
            .unwrap_or("hs_object_id")
            .to_owned();
        if id_property != "hs_object_id"
            && let Err(reply) = self.check_id_property(object, &id_property)
        {
            return reply;
        }
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for input in inputs {
            let key = input["id"].as_str().unwrap_or_default().to_owned();
            let found = if id_property == "hs_object_id" {
                key.parse::<u64>()
                    .ok()
                    .filter(|id| self.objects[object].records.contains_key(id))
            } else {
                self.find_by(object, &id_property, &key)
            };
            match found {
                Some(id) => results.push(self.result(object, id, None)),
                None => missing.push(Value::String(key)),
            }
        }
        let errors = if missing.is_empty() {
            Vec::new()
        } else {
            vec![json!({
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some CRM objects, they may be deleted or not exist. Check that ids are valid.",
                "context": {"ids": missing},
            })]
        };
        Self::batch_reply(results, errors)
    }

    fn upsert(&mut self, object: &str, inputs: &[Value]) -> Reply {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in inputs {
            let key = input["id"].as_str().unwrap_or_default().to_owned();
            let id_property = input["idProperty"].as_str().unwrap_or_default().to_owned();
            if let Err(reply) = self.check_id_property(object, &id_property) {
                return reply;
            }
            let empty = serde_json::Map::new();
            let props = input["properties"].as_object().unwrap_or(&empty);
            match self.validate(object, props) {
                Err(message) => errors.push(json!({
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": message,
                    "context": {"ids": [key]},
                })),
                Ok(mut values) => {
                    values.insert(id_property.clone(), key.clone());
                    let (id, new) = match self.find_by(object, &id_property, &key) {
                        Some(id) => (id, false),
                        None => {
                            let id = self.next_id;
                            self.next_id += 1;
                            (id, true)
                        }
                    };
                    let record = self
                        .objects
                        .get_mut(object)
                        .expect("object")
                        .records
                        .entry(id)
                        .or_default();
                    record.extend(values);
                    if object == "contacts"
                        && let Some(email) = record.get_mut("email")
                    {
                        *email = email.to_lowercase();
                    }
                    results.push(self.result(object, id, Some(new)));
                }
            }
        }
        Self::batch_reply(results, errors)
    }

    /// Validates every input before writing any: one bad input refuses the batch.
    fn validated(
        &self,
        object: &str,
        inputs: &[Value],
    ) -> Result<Vec<BTreeMap<String, String>>, Reply> {
        let empty = serde_json::Map::new();
        inputs
            .iter()
            .map(|input| {
                self.validate(object, input["properties"].as_object().unwrap_or(&empty))
                    .map_err(|m| json_reply(400, &error_body("VALIDATION_ERROR", &m)))
            })
            .collect()
    }

    fn create(&mut self, object: &str, inputs: &[Value]) -> Reply {
        let all = match self.validated(object, inputs) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        // Unique properties stay unique.
        for values in &all {
            for p in self.objects[object].properties.iter().filter(|p| p.unique) {
                if let Some(v) = values.get(&p.name).filter(|v| !v.is_empty())
                    && let Some(existing) = self.find_by(object, &p.name, v)
                {
                    return json_reply(
                        409,
                        &error_body(
                            "CONFLICT",
                            &format!(
                                "A {object} record with {} {v} already exists. Existing ID: {existing}",
                                p.name
                            ),
                        ),
                    );
                }
            }
        }
        let mut results = Vec::new();
        for values in all {
            let id = self.next_id;
            self.next_id += 1;
            self.objects
                .get_mut(object)
                .expect("object")
                .records
                .insert(id, values);
            results.push(self.result(object, id, None));
        }
        let mut reply = Self::batch_reply(results, Vec::new());
        reply.status = 201;
        reply
    }

    fn update(&mut self, object: &str, inputs: &[Value]) -> Reply {
        let all = match self.validated(object, inputs) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let mut ids = Vec::new();
        for input in inputs {
            let id = input["id"].as_str().and_then(|s| s.parse::<u64>().ok());
            match id.filter(|id| self.objects[object].records.contains_key(id)) {
                Some(id) => ids.push(id),
                None => {
                    return json_reply(
                        404,
                        &error_body(
                            "OBJECT_NOT_FOUND",
                            &format!("resource not found: {}", input["id"]),
                        ),
                    );
                }
            }
        }
        let mut results = Vec::new();
        for (id, values) in ids.into_iter().zip(all) {
            let record = self
                .objects
                .get_mut(object)
                .expect("object")
                .records
                .entry(id)
                .or_default();
            for (k, v) in values {
                if v.is_empty() {
                    record.remove(&k);
                } else {
                    record.insert(k, v);
                }
            }
            results.push(self.result(object, id, None));
        }
        Self::batch_reply(results, Vec::new())
    }

    fn archive(&mut self, object: &str, inputs: &[Value]) -> Reply {
        for input in inputs {
            if let Some(id) = input["id"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                self.objects
                    .get_mut(object)
                    .expect("object")
                    .records
                    .remove(&id);
            }
        }
        Reply::status(204)
    }
}

fn unknown_object(object: &str) -> Reply {
    json_reply(
        400,
        &error_body(
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {object}"),
        ),
    )
}
