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
//! - Lists API v3 (static lists of records):
//!   - `POST /crm/v3/lists` `{name, objectTypeId, processingType}` creates a list (`MANUAL`,
//!     `SNAPSHOT` or `DYNAMIC`; names are unique without case, a second one is a 400);
//!     answers `{"list": {listId, name, objectTypeId, processingType, ...}}`.
//!   - `GET /crm/v3/lists/object-type-id/{objectTypeId}/name/{listName}` (name not case
//!     sensitive; 404 when none) and `GET /crm/v3/lists/{listId}`.
//!   - `PUT /crm/v3/lists/{listId}/memberships/add` and `/remove`, a JSON array of record ids:
//!     only for `MANUAL` and `SNAPSHOT` lists (a `DYNAMIC` list is a 400); ids of records that
//!     do not exist come back in `recordIdsMissing`, members already in (or not in) the list
//!     are ignored; answers `{recordIdsAdded | recordIdsRemoved, recordIdsMissing}`. The v3
//!     reference states no maximum of ids per call; the fake refuses more than
//!     [`MAX_MEMBERSHIP_IDS`] (the documented maximum of the v1 endpoint it replaces), so a
//!     client sending unbounded calls is caught.
//!   - `GET /crm/v3/lists/{listId}/memberships?limit=&after=` pages the members by record id
//!     (`limit` at most 250, default 100).
//!   - archiving a record drops it from every list.
//!
//! Object types: `contacts` (`0-1`), `companies` (`0-2`), `deals` (`0-3`), and custom objects
//! added with [`HubSpotFake::define_object`], addressed by fullyQualifiedName or objectTypeId.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::webhook::{Reply, Request, Webhook};

pub const MAX_INPUTS: usize = 100;
/// Record ids per membership call the fake accepts (see the module documentation).
pub const MAX_MEMBERSHIP_IDS: usize = 500;
/// Members per page of `GET /crm/v3/lists/{listId}/memberships`.
pub const MAX_MEMBERSHIP_PAGE: usize = 250;

/// A list of the account.
#[derive(Debug, Clone)]
pub struct List {
    pub id: u64,
    pub name: String,
    pub object_type_id: String,
    /// `MANUAL`, `SNAPSHOT` or `DYNAMIC`.
    pub processing_type: String,
    /// Record ids.
    pub members: BTreeSet<u64>,
}

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
    lists: BTreeMap<u64, List>,
    next_list_id: u64,
    /// Every n-th request is answered 429 (`Retry-After: 1`) before anything is done, as
    /// when another integration spends the account's budget.
    throttle_every: Option<usize>,
    arrived: usize,
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
            lists: BTreeMap::new(),
            next_list_id: 1,
            throttle_every: None,
            arrived: 0,
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

    /// Fault: every `n`-th request is answered `429` with `Retry-After: 1` and not carried
    /// out, as when another integration has used the account's budget.
    pub fn throttle_every(&self, n: usize) {
        self.with(|s| s.throttle_every = Some(n.max(1)));
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

    /// Adds a list directly (as if made in HubSpot's UI); returns its id.
    pub fn create_list(&self, name: &str, object_type_id: &str, processing_type: &str) -> u64 {
        self.with(|s| s.new_list(name, object_type_id, processing_type))
    }

    /// Every list of the account.
    pub fn lists(&self) -> Vec<List> {
        self.with(|s| s.lists.values().cloned().collect())
    }

    /// Adds records to a list directly (as a HubSpot user would).
    pub fn add_members(&self, list_id: u64, record_ids: &[u64]) {
        self.with(|s| {
            s.lists
                .get_mut(&list_id)
                .expect("a known list")
                .members
                .extend(record_ids);
        });
    }

    /// The members of the list with this name (not case sensitive), each as the value of
    /// `property` of the member record (e.g. `email`), sorted; `None` when no list has it.
    pub fn list_members(&self, name: &str, property: &str) -> Option<Vec<String>> {
        self.with(|s| {
            let list = s
                .lists
                .values()
                .find(|l| l.name.eq_ignore_ascii_case(name))?;
            let object = s
                .objects
                .values()
                .find(|o| o.type_id == list.object_type_id)?;
            let mut members: Vec<String> = list
                .members
                .iter()
                .map(|id| {
                    object
                        .records
                        .get(id)
                        .and_then(|r| r.get(property).cloned())
                        .unwrap_or_else(|| format!("<record {id} without {property}>"))
                })
                .collect();
            members.sort();
            Some(members)
        })
    }

    /// Membership changes (`PUT .../memberships/add|remove`) answered 2xx.
    pub fn membership_writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|r| {
                (200..300).contains(&r.status)
                    && r.method == "PUT"
                    && r.path.contains("/memberships/")
            })
            .collect()
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
            .and_then(|b| match &b {
                Value::Array(ids) => Some(ids.len()),
                _ => b["inputs"].as_array().map(Vec::len),
            })
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
        self.arrived += 1;
        if self
            .throttle_every
            .is_some_and(|n| self.arrived.is_multiple_of(n))
        {
            return json_reply(
                429,
                &json!({
                    "status": "error",
                    "message": "You have reached your secondly limit.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": "00000000-0000-4000-8000-000000000000",
                    "policyName": "SECONDLY",
                }),
            )
            .header("Retry-After", "1");
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
            ("POST", ["crm", "v3", "lists"]) => self.create_list_request(request),
            (
                "GET",
                [
                    "crm",
                    "v3",
                    "lists",
                    "object-type-id",
                    type_id,
                    "name",
                    name,
                ],
            ) => {
                let name = percent_decode(name);
                match self
                    .lists
                    .values()
                    .find(|l| l.object_type_id == *type_id && l.name.eq_ignore_ascii_case(&name))
                {
                    Some(list) => json_reply(200, &json!({ "list": list_json(list) })),
                    None => json_reply(
                        404,
                        &error_body(
                            "OBJECT_NOT_FOUND",
                            &format!(
                                "List does not exist with name {name} and object type {type_id}."
                            ),
                        ),
                    ),
                }
            }
            ("GET", ["crm", "v3", "lists", list_id]) => match self.list(list_id) {
                Ok(list) => json_reply(200, &json!({ "list": list_json(list) })),
                Err(reply) => reply,
            },
            ("GET", ["crm", "v3", "lists", list_id, "memberships"]) => {
                self.memberships(list_id, request.path.split_once('?').map_or("", |(_, q)| q))
            }
            (
                "PUT",
                [
                    "crm",
                    "v3",
                    "lists",
                    list_id,
                    "memberships",
                    action @ ("add" | "remove"),
                ],
            ) => self.change_memberships(list_id, action, &request.body),
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
                for list in self.lists.values_mut() {
                    list.members.remove(&id);
                }
            }
        }
        Reply::status(204)
    }

    fn new_list(&mut self, name: &str, object_type_id: &str, processing_type: &str) -> u64 {
        let id = self.next_list_id;
        self.next_list_id += 1;
        self.lists.insert(
            id,
            List {
                id,
                name: name.to_owned(),
                object_type_id: object_type_id.to_owned(),
                processing_type: processing_type.to_owned(),
                members: BTreeSet::new(),
            },
        );
        id
    }

    fn list(&self, list_id: &str) -> Result<&List, Reply> {
        list_id
            .parse::<u64>()
            .ok()
            .and_then(|id| self.lists.get(&id))
            .ok_or_else(|| {
                json_reply(
                    404,
                    &error_body(
                        "OBJECT_NOT_FOUND",
                        &format!("List does not exist with ID {list_id}."),
                    ),
                )
            })
    }

    fn create_list_request(&mut self, request: &Request) -> Reply {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let name = body["name"].as_str().unwrap_or("").trim().to_owned();
        let type_id = body["objectTypeId"].as_str().unwrap_or("").to_owned();
        let processing = body["processingType"].as_str().unwrap_or("").to_owned();
        if name.is_empty() || type_id.is_empty() {
            return json_reply(
                400,
                &error_body("VALIDATION_ERROR", "name and objectTypeId are required"),
            );
        }
        if !matches!(processing.as_str(), "MANUAL" | "SNAPSHOT" | "DYNAMIC") {
            return json_reply(
                400,
                &error_body(
                    "VALIDATION_ERROR",
                    &format!(
                        "processingType must be one of MANUAL, SNAPSHOT, DYNAMIC, found {processing:?}"
                    ),
                ),
            );
        }
        if !self.objects.values().any(|o| o.type_id == type_id) {
            return unknown_object(&type_id);
        }
        if self
            .lists
            .values()
            .any(|l| l.name.eq_ignore_ascii_case(&name))
        {
            return json_reply(
                400,
                &error_body(
                    "VALIDATION_ERROR",
                    &format!("A list with the name {name} already exists."),
                ),
            );
        }
        let id = self.new_list(&name, &type_id, &processing);
        json_reply(200, &json!({ "list": list_json(&self.lists[&id]) }))
    }

    fn memberships(&self, list_id: &str, query: &str) -> Reply {
        let list = match self.list(list_id) {
            Ok(l) => l,
            Err(reply) => return reply,
        };
        let param = |name: &str| {
            query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == name).then(|| v.to_owned())
            })
        };
        let limit = param("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(100);
        if limit == 0 || limit > MAX_MEMBERSHIP_PAGE {
            return json_reply(
                400,
                &error_body(
                    "VALIDATION_ERROR",
                    &format!("limit must be between 1 and {MAX_MEMBERSHIP_PAGE}"),
                ),
            );
        }
        let after = param("after")
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(0);
        let page: Vec<u64> = list
            .members
            .iter()
            .copied()
            .filter(|id| *id > after)
            .take(limit)
            .collect();
        let mut body = json!({
            "results": page
                .iter()
                .map(|id| json!({"recordId": id.to_string(), "membershipTimestamp": "2026-01-01T00:00:00Z"}))
                .collect::<Vec<_>>(),
            "total": list.members.len(),
        });
        if let Some(last) = page.last()
            && list.members.iter().any(|id| id > last)
        {
            body["paging"] = json!({"next": {"after": last.to_string()}});
        }
        json_reply(200, &body)
    }

    fn change_memberships(&mut self, list_id: &str, action: &str, body: &[u8]) -> Reply {
        let list = match self.list(list_id) {
            Ok(l) => l.clone(),
            Err(reply) => return reply,
        };
        let Ok(Value::Array(ids)) = serde_json::from_slice::<Value>(body) else {
            return json_reply(
                400,
                &error_body(
                    "VALIDATION_ERROR",
                    "Invalid input JSON: the body must be an array of record ids",
                ),
            );
        };
        if ids.len() > MAX_MEMBERSHIP_IDS {
            return json_reply(
                400,
                &error_body(
                    "VALIDATION_ERROR",
                    &format!(
                        "Invalid input: {} record ids exceed the limit of {MAX_MEMBERSHIP_IDS} per request",
                        ids.len()
                    ),
                ),
            );
        }
        if list.processing_type == "DYNAMIC" {
            return json_reply(
                400,
                &error_body(
                    "VALIDATION_ERROR",
                    &format!(
                        "List {list_id} has processingType DYNAMIC; memberships can only be changed for MANUAL or SNAPSHOT lists."
                    ),
                ),
            );
        }
        let records = self
            .objects
            .values()
            .find(|o| o.type_id == list.object_type_id)
            .map(|o| o.records.keys().copied().collect::<BTreeSet<u64>>())
            .unwrap_or_default();
        let mut changed = Vec::new();
        let mut missing = Vec::new();
        let members = &mut self.lists.get_mut(&list.id).expect("the list").members;
        for v in &ids {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match text.parse::<u64>().ok().filter(|id| records.contains(id)) {
                None => missing.push(text),
                Some(id) if action == "add" => {
                    if members.insert(id) {
                        changed.push(text);
                    }
                }
                Some(id) => {
                    if members.remove(&id) {
                        changed.push(text);
                    }
                }
            }
        }
        let key = if action == "add" {
            "recordIdsAdded"
        } else {
            "recordIdsRemoved"
        };
        json_reply(200, &json!({ key: changed, "recordIdsMissing": missing }))
    }
}

fn list_json(list: &List) -> Value {
    json!({
        "listId": list.id.to_string(),
        "name": list.name,
        "objectTypeId": list.object_type_id,
        "processingType": list.processing_type,
        "processingStatus": "COMPLETE",
        "listVersion": 1,
        "size": list.members.len(),
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    })
}

/// `%20` and friends in a path segment.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
