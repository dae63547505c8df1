//! A fake Intercom REST API, written from Intercom's API reference (developers.intercom.com):
//!
//! - auth: `Authorization: Bearer <access token>`; anything else is `401` with
//!   `{"type":"error.list","errors":[{"code":"unauthorized","message":"Access Token Invalid"}]}`.
//! - `GET /me`; `GET /data_attributes?model=contact|company` (standard and custom attributes,
//!   with `api_writable` and `custom`).
//! - contacts: `POST /contacts` (role `user` needs `email` or `external_id`; a duplicate
//!   `external_id` or `email` is `409 conflict` "A contact matching those details already
//!   exists with id=..."), `PUT /contacts/{id}`, `DELETE /contacts/{id}`,
//!   `POST /contacts/search` (`{query: {field, operator, value}}` or nested `AND`/`OR`,
//!   `pagination.per_page` at most 150).
//! - companies: `POST /companies` (create or update by `company_id`),
//!   `GET /companies?company_id=`, `PUT /companies/{id}`, `DELETE /companies/{id}`.
//! - tags: `GET /tags` lists them; `POST /tags {"name"}` creates a tag, or answers the existing
//!   tag of that name (names are case insensitive: sending a name again creates no second
//!   tag); a tag is `{"type": "tag", "id", "name"}`. `POST /contacts/{contact_id}/tags
//!   {"id": <tag id>}` tags a contact and `DELETE /contacts/{contact_id}/tags/{tag_id}`
//!   untags it, both answering the tag; an unknown contact is `404 not_found` "Contact Not
//!   Found", an unknown tag `404 tag_not_found`. `GET /contacts/{id}/tags` lists a contact's
//!   tags. Deleting a contact drops its tags.
//! - custom attributes must exist as data attributes of the model and carry values of their
//!   type, else `400 parameter_invalid`; errors are `{"type":"error.list","errors":[{code,
//!   message}]}`.
//! - rate limit: a number of requests per fixed window (Intercom: 10,000 a minute per app,
//!   counted in 10-second windows). Every answer carries `X-RateLimit-Limit`,
//!   `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds); over the limit the answer is
//!   `429` (with `Retry-After` too) and nothing is done.
//!
//! Tests read what the workspace finally holds ([`FakeIntercom::companies`],
//! [`FakeIntercom::contacts`]) and the traffic it saw (throttled requests, the busiest window).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json, json};

use crate::webhook::{Reply, Request, Webhook};

/// Answers of the fake that tests inject: deterministic faults by request number.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every n-th write request (POST/PUT/DELETE) is carried out, then answered `500`, as if
    /// the answer was lost: the client retries a request that already took effect.
    pub fail_after_commit_every: Option<usize>,
    /// Every n-th request is answered `429` (with `Retry-After: 0`) before doing anything.
    pub throttle_every: Option<usize>,
}

/// A record the workspace refuses: requests writing `value` to `attribute` of `model`
/// (`contact` or `company`) get `400` with this code and message.
#[derive(Debug, Clone)]
struct Refusal {
    model: String,
    attribute: String,
    value: Json,
    code: String,
    message: String,
}

#[derive(Debug, Clone)]
struct Attribute {
    name: String,
    data_type: String,
}

struct State {
    token: String,
    contacts: BTreeMap<String, Json>,
    companies: BTreeMap<String, Json>,
    custom: BTreeMap<String, Vec<Attribute>>,
    limit: u64,
    window_seconds: u64,
    /// Requests counted per window (window start, Unix seconds).
    windows: BTreeMap<u64, u64>,
    throttled: usize,
    next_id: u64,
    faults: Faults,
    /// Every n-th write is carried out, then the connection is dropped without an answer.
    drop_after_commit_every: Option<usize>,
    writes_seen: usize,
    refusals: Vec<Refusal>,
    /// Tag id -> name.
    tags: BTreeMap<String, String>,
    /// Contact id -> the ids of its tags.
    tagged: BTreeMap<String, BTreeSet<String>>,
    next_tag_id: u64,
}

/// The fake. Stops when dropped.
pub struct FakeIntercom {
    server: Webhook,
    state: Arc<Mutex<State>>,
}

const CONTACT_STANDARD: &[(&str, &str)] = &[
    ("role", "string"),
    ("external_id", "string"),
    ("email", "string"),
    ("phone", "string"),
    ("name", "string"),
    ("avatar", "string"),
    ("signed_up_at", "date"),
    ("last_seen_at", "date"),
    ("owner_id", "integer"),
    ("unsubscribed_from_emails", "boolean"),
];

const COMPANY_STANDARD: &[(&str, &str)] = &[
    ("company_id", "string"),
    ("name", "string"),
    ("monthly_spend", "float"),
    ("plan", "string"),
    ("size", "integer"),
    ("website", "string"),
    ("industry", "string"),
    ("remote_created_at", "date"),
];

fn standard(model: &str) -> &'static [(&'static str, &'static str)] {
    if model == "contact" {
        CONTACT_STANDARD
    } else {
        COMPANY_STANDARD
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::status(status)
        .header("Content-Type", "application/json")
        .body(
            &json!({
                "type": "error.list",
                "request_id": "fake-request",
                "errors": [{"code": code, "message": message}]
            })
            .to_string(),
        )
}

fn ok(status: u16, body: &Json) -> Reply {
    Reply::status(status)
        .header("Content-Type", "application/json")
        .body(&body.to_string())
}

impl FakeIntercom {
    /// A workspace that accepts `token`, with Intercom's default limit (1,666 requests per
    /// 10-second window) and no custom data attributes.
    pub fn start(token: &str) -> Self {
        let server = Webhook::start();
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            contacts: BTreeMap::new(),
            companies: BTreeMap::new(),
            custom: BTreeMap::new(),
            limit: 1_666,
            window_seconds: 10,
            windows: BTreeMap::new(),
            throttled: 0,
            next_id: 0,
            faults: Faults::default(),
            drop_after_commit_every: None,
            writes_seen: 0,
            refusals: Vec::new(),
            tags: BTreeMap::new(),
            tagged: BTreeMap::new(),
            next_tag_id: 17_513,
        }));
        let handler_state = Arc::clone(&state);
        server.respond_with(move |_, request| {
            let mut state = handler_state.lock().unwrap_or_else(|p| p.into_inner());
            state.answer(request)
        });
        Self { server, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://127.0.0.1:<port>`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        let url = self.server.url();
        let host_end = url["http://".len()..]
            .find('/')
            .map_or(url.len(), |i| i + "http://".len());
        url[..host_end].to_owned()
    }

    /// Allows `limit` requests per window of `window_seconds` (windows start at multiples of it).
    pub fn set_rate_limit(&self, limit: u64, window_seconds: u64) {
        let mut s = self.state();
        s.limit = limit;
        s.window_seconds = window_seconds.max(1);
    }

    /// Defines a custom data attribute (`model`: `contact` or `company`; `data_type`: string,
    /// integer, float, boolean or date).
    pub fn define_attribute(&self, model: &str, name: &str, data_type: &str) {
        self.state()
            .custom
            .entry(model.to_owned())
            .or_default()
            .push(Attribute {
                name: name.to_owned(),
                data_type: data_type.to_owned(),
            });
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Fault: every `n`-th write request (POST/PUT/DELETE) is carried out, then the connection
    /// is dropped without an answer (the client sees a connection error, not a status), as when
    /// Intercom commits and the connection breaks before the answer.
    pub fn drop_after_commit_every(&self, n: usize) {
        self.state().drop_after_commit_every = Some(n.max(1));
    }

    /// Makes the workspace refuse writes of `value` to `attribute` (as a validation rule of the
    /// account would), with Intercom's error shape.
    pub fn refuse(&self, model: &str, attribute: &str, value: Json, code: &str, message: &str) {
        self.state().refusals.push(Refusal {
            model: model.to_owned(),
            attribute: attribute.to_owned(),
            value,
            code: code.to_owned(),
            message: message.to_owned(),
        });
    }

    pub fn clear_refusals(&self) {
        self.state().refusals.clear();
    }

    /// Every company the workspace holds.
    pub fn companies(&self) -> Vec<Json> {
        self.state().companies.values().cloned().collect()
    }

    /// Every contact the workspace holds.
    pub fn contacts(&self) -> Vec<Json> {
        self.state().contacts.values().cloned().collect()
    }

    /// Every tag of the workspace, by name.
    pub fn tags(&self) -> Vec<String> {
        self.state().tags.values().cloned().collect()
    }

    /// The contacts holding the tag `name` (not case sensitive), each as its `field`
    /// (`email`, `external_id`), sorted; `None` when the workspace has no such tag.
    pub fn tagged(&self, name: &str, field: &str) -> Option<Vec<String>> {
        let s = self.state();
        let tag_id = s
            .tags
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(id, _)| id.clone())?;
        let mut out: Vec<String> = s
            .tagged
            .iter()
            .filter(|(_, tags)| tags.contains(&tag_id))
            .map(|(contact, _)| {
                s.contacts
                    .get(contact)
                    .and_then(|c| c.get(field))
                    .and_then(Json::as_str)
                    .map_or_else(
                        || format!("<contact {contact} without {field}>"),
                        str::to_owned,
                    )
            })
            .collect();
        out.sort();
        Some(out)
    }

    /// Tags a contact directly (as an Intercom user would), creating the tag if needed.
    pub fn tag_contact(&self, contact_id: &str, name: &str) {
        let mut s = self.state();
        let tag_id = s.find_or_create_tag(name);
        s.tagged
            .entry(contact_id.to_owned())
            .or_default()
            .insert(tag_id);
    }

    /// Adds a contact directly (as if created in Intercom's UI); returns its id.
    pub fn seed_contact(&self, contact: Json) -> String {
        let mut s = self.state();
        let id = s.new_id();
        let mut contact = contact;
        if let Some(map) = contact.as_object_mut() {
            map.insert("type".into(), json!("contact"));
            map.insert("id".into(), json!(id));
        }
        s.contacts.insert(id.clone(), contact);
        id
    }

    /// Adds a company directly (as if created in Intercom's UI); returns its id.
    pub fn seed_company(&self, company: Json) -> String {
        let mut s = self.state();
        let id = s.new_id();
        let mut company = company;
        if let Some(map) = company.as_object_mut() {
            map.insert("type".into(), json!("company"));
            map.insert("id".into(), json!(id));
        }
        s.companies.insert(id.clone(), company);
        id
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Requests answered `429`.
    pub fn throttled(&self) -> usize {
        self.state().throttled
    }

    /// The most requests counted in one window.
    pub fn busiest_window(&self) -> u64 {
        self.state().windows.values().copied().max().unwrap_or(0)
    }

    /// The limit per window.
    pub fn limit(&self) -> u64 {
        self.state().limit
    }
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:024x}", 0x6762_f0dd_0000_u64 + self.next_id)
    }

    fn answer(&mut self, request: &Request) -> Reply {
        let expected = format!("Bearer {}", self.token);
        if request.header("authorization") != Some(expected.as_str()) {
            return error(401, "unauthorized", "Access Token Invalid");
        }
        // The rate limit: fixed windows aligned to multiples of `window_seconds`.
        let now = now_secs();
        let start = (now as u64 / self.window_seconds) * self.window_seconds;
        let reset = start + self.window_seconds;
        let used = *self.windows.entry(start).or_insert(0);
        let limit = self.limit;
        let limit_headers = |reply: Reply, remaining: u64| {
            reply
                .header("X-RateLimit-Limit", &limit.to_string())
                .header("X-RateLimit-Remaining", &remaining.to_string())
                .header("X-RateLimit-Reset", &reset.to_string())
        };
        if used >= limit {
            self.throttled += 1;
            let wait = (reset as f64 - now).ceil().max(1.0) as u64;
            let reply = error(429, "rate_limit_exceeded", "Exceeded rate limit")
                .header("Retry-After", &wait.to_string());
            return limit_headers(reply, 0);
        }
        self.windows.insert(start, used + 1);
        let remaining = limit - (used + 1);
        let n = self.windows.values().sum::<u64>() as usize;
        if let Some(every) = self.faults.throttle_every
            && every > 0
            && n.is_multiple_of(every)
        {
            self.throttled += 1;
            return error(429, "rate_limit_exceeded", "Exceeded rate limit")
                .header("Retry-After", "0");
        }
        let reply = self.route(request);
        let is_write = matches!(request.method.as_str(), "POST" | "PUT" | "DELETE")
            && !request.path.starts_with("/contacts/search");
        if is_write && reply.status < 300 {
            self.writes_seen += 1;
            if let Some(every) = self.faults.fail_after_commit_every
                && every > 0
                && self.writes_seen.is_multiple_of(every)
            {
                // Done, but the answer is lost.
                return limit_headers(error(500, "server_error", "Server Error"), remaining);
            }
            if let Some(every) = self.drop_after_commit_every
                && self.writes_seen.is_multiple_of(every)
            {
                // Done, but the connection drops before the answer.
                return reply.then_drop();
            }
        }
        limit_headers(reply, remaining)
    }

    fn route(&mut self, request: &Request) -> Reply {
        let (path, query) = request
            .path
            .split_once('?')
            .unwrap_or((request.path.as_str(), ""));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body = || -> Result<Map<String, Json>, Reply> {
            match serde_json::from_slice::<Json>(&request.body) {
                Ok(Json::Object(map)) => Ok(map),
                _ => Err(error(400, "parameter_invalid", "Invalid JSON body")),
            }
        };
        let param = |name: &str| {
            query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == name).then(|| percent_decode(v))
            })
        };
        let result = match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["me"]) => Ok(ok(
                200,
                &json!({"type": "admin", "id": "1", "email": "owner@example.com"}),
            )),
            ("GET", ["data_attributes"]) => match param("model").as_deref() {
                Some(model @ ("contact" | "company")) => Ok(self.data_attributes(model)),
                _ => Err(error(
                    400,
                    "parameter_invalid",
                    "model must be one of contact, company, conversation",
                )),
            },
            ("POST", ["contacts", "search"]) => body().and_then(|b| self.search(&b)),
            ("POST", ["contacts"]) => body().and_then(|b| self.create_contact(b)),
            ("PUT", ["contacts", id]) => body().and_then(|b| self.update_contact(id, b)),
            ("GET", ["tags"]) => Ok(ok(
                200,
                &json!({"type": "list", "data": self.tags.iter().map(|(id, name)| tag_json(id, name)).collect::<Vec<_>>()}),
            )),
            ("POST", ["tags"]) => body().and_then(|b| self.create_tag(&b)),
            ("GET", ["contacts", id, "tags"]) => self.contact_tags(id),
            ("POST", ["contacts", id, "tags"]) => body().and_then(|b| self.tag(id, &b)),
            ("DELETE", ["contacts", id, "tags", tag_id]) => self.untag(id, tag_id),
            ("DELETE", ["contacts", id]) => match self.contacts.remove(*id) {
                Some(c) => {
                    self.tagged.remove(*id);
                    Ok(ok(
                        200,
                        &json!({"id": id, "external_id": c.get("external_id"), "type": "contact", "deleted": true}),
                    ))
                }
                None => Err(error(404, "not_found", "User Not Found")),
            },
            ("POST", ["companies"]) => body().and_then(|b| self.upsert_company(b)),
            ("GET", ["companies"]) => match param("company_id") {
                Some(company_id) => self
                    .companies
                    .values()
                    .find(|c| c["company_id"] == json!(company_id))
                    .map(|c| ok(200, c))
                    .ok_or_else(|| error(404, "company_not_found", "Company Not Found")),
                None => Ok(ok(
                    200,
                    &json!({"type": "list", "data": self.companies.values().collect::<Vec<_>>()}),
                )),
            },
            ("PUT", ["companies", id]) => body().and_then(|b| self.update_company(id, b)),
            ("DELETE", ["companies", id]) => match self.companies.remove(*id) {
                Some(_) => Ok(ok(
                    200,
                    &json!({"id": id, "object": "company", "deleted": true}),
                )),
                None => Err(error(404, "company_not_found", "Company Not Found")),
            },
            _ => Err(error(404, "not_found", "Resource Not Found")),
        };
        result.unwrap_or_else(|reply| reply)
    }

    fn find_or_create_tag(&mut self, name: &str) -> String {
        if let Some((id, _)) = self.tags.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)) {
            return id.clone();
        }
        let id = self.next_tag_id.to_string();
        self.next_tag_id += 1;
        self.tags.insert(id.clone(), name.to_owned());
        id
    }

    fn create_tag(&mut self, body: &Map<String, Json>) -> Result<Reply, Reply> {
        let name = body
            .get("name")
            .and_then(Json::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| error(400, "parameter_not_found", "name is required"))?
            .to_owned();
        let id = match body.get("id").and_then(Json::as_str) {
            // An update renames the tag with this id.
            Some(id) => {
                let Some(tag) = self.tags.get_mut(id) else {
                    return Err(error(404, "tag_not_found", "Tag not found"));
                };
                *tag = name.clone();
                id.to_owned()
            }
            None => self.find_or_create_tag(&name),
        };
        Ok(ok(200, &tag_json(&id, &self.tags[&id])))
    }

    fn contact_tags(&self, contact_id: &str) -> Result<Reply, Reply> {
        if !self.contacts.contains_key(contact_id) {
            return Err(error(404, "not_found", "Contact Not Found"));
        }
        let data: Vec<Json> = self
            .tagged
            .get(contact_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tags.get(id).map(|name| tag_json(id, name)))
            .collect();
        Ok(ok(200, &json!({"type": "list", "data": data})))
    }

    fn tag(&mut self, contact_id: &str, body: &Map<String, Json>) -> Result<Reply, Reply> {
        if !self.contacts.contains_key(contact_id) {
            return Err(error(404, "not_found", "Contact Not Found"));
        }
        let tag_id = match body.get("id") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(n)) => n.to_string(),
            _ => return Err(error(400, "parameter_not_found", "id is required")),
        };
        let Some(name) = self.tags.get(&tag_id).cloned() else {
            return Err(error(404, "tag_not_found", "Tag not found"));
        };
        self.tagged
            .entry(contact_id.to_owned())
            .or_default()
            .insert(tag_id.clone());
        Ok(ok(200, &tag_json(&tag_id, &name)))
    }

    fn untag(&mut self, contact_id: &str, tag_id: &str) -> Result<Reply, Reply> {
        if !self.contacts.contains_key(contact_id) {
            return Err(error(404, "not_found", "Contact Not Found"));
        }
        let Some(name) = self.tags.get(tag_id).cloned() else {
            return Err(error(404, "tag_not_found", "Tag not found"));
        };
        if let Some(tags) = self.tagged.get_mut(contact_id) {
            tags.remove(tag_id);
        }
        Ok(ok(200, &tag_json(tag_id, &name)))
    }

    fn data_attributes(&self, model: &str) -> Reply {
        let mut data: Vec<Json> = vec![
            json!({"type": "data_attribute", "name": "id", "full_name": "id", "data_type": "string", "api_writable": false, "custom": false, "model": model}),
            json!({"type": "data_attribute", "name": "created_at", "full_name": "created_at", "data_type": "date", "api_writable": false, "custom": false, "model": model}),
        ];
        for (name, data_type) in standard(model) {
            data.push(json!({"type": "data_attribute", "name": name, "full_name": name, "data_type": data_type, "api_writable": true, "custom": false, "model": model}));
        }
        for a in self.custom.get(model).into_iter().flatten() {
            data.push(json!({"type": "data_attribute", "name": a.name, "full_name": format!("custom_attributes.{}", a.name), "data_type": a.data_type, "api_writable": true, "custom": true, "model": model}));
        }
        ok(200, &json!({"type": "list", "data": data}))
    }

    /// Checks the attributes of a create or update: standard ones known, custom ones defined
    /// and of their type, and the workspace's refusal rules.
    fn validate(&self, model: &str, body: &Map<String, Json>) -> Result<(), Reply> {
        for (name, value) in body {
            if name == "custom_attributes" {
                let Some(custom) = value.as_object() else {
                    return Err(error(
                        400,
                        "parameter_invalid",
                        "custom_attributes must be an object",
                    ));
                };
                for (name, value) in custom {
                    let Some(a) = self
                        .custom
                        .get(model)
                        .and_then(|v| v.iter().find(|a| &a.name == name))
                    else {
                        return Err(error(
                            400,
                            "parameter_invalid",
                            &format!("Custom attribute '{name}' does not exist"),
                        ));
                    };
                    if !of_type(value, &a.data_type) {
                        return Err(error(
                            400,
                            "parameter_invalid",
                            &format!("Custom attribute '{name}' must be of type {}", a.data_type),
                        ));
                    }
                }
            } else if let Some((_, data_type)) = standard(model).iter().find(|(n, _)| n == name) {
                if !of_type(value, data_type) {
                    return Err(error(
                        400,
                        "parameter_invalid",
                        &format!("{name} must be of type {data_type}"),
                    ));
                }
            } else {
                return Err(error(
                    400,
                    "parameter_invalid",
                    &format!("{name} is not a valid attribute of a {model}"),
                ));
            }
        }
        for r in self.refusals.iter().filter(|r| r.model == model) {
            let value = body.get(&r.attribute).or_else(|| {
                body.get("custom_attributes")
                    .and_then(|c| c.get(&r.attribute))
            });
            if value == Some(&r.value) {
                return Err(error(400, &r.code, &r.message));
            }
        }
        Ok(())
    }

    fn conflicting_contact(
        &self,
        body: &Map<String, Json>,
        except: Option<&str>,
    ) -> Option<String> {
        self.contacts.iter().find_map(|(id, c)| {
            if Some(id.as_str()) == except {
                return None;
            }
            let same = |field: &str| {
                body.get(field)
                    .is_some_and(|v| !v.is_null() && c.get(field) == Some(v))
            };
            (same("external_id") || same("email")).then(|| id.clone())
        })
    }

    fn create_contact(&mut self, body: Map<String, Json>) -> Result<Reply, Reply> {
        self.validate("contact", &body)?;
        let role = body.get("role").and_then(Json::as_str).unwrap_or("user");
        if !matches!(role, "user" | "lead") {
            return Err(error(400, "parameter_invalid", "role must be user or lead"));
        }
        let has = |f: &str| body.get(f).is_some_and(|v| !v.is_null());
        if role == "user" && !has("email") && !has("external_id") {
            return Err(error(
                400,
                "parameter_invalid",
                "A contact with role user needs an email or an external_id",
            ));
        }
        if let Some(id) = self.conflicting_contact(&body, None) {
            return Err(error(
                409,
                "conflict",
                &format!("A contact matching those details already exists with id={id}"),
            ));
        }
        let id = self.new_id();
        let mut contact = Map::new();
        contact.insert("type".into(), json!("contact"));
        contact.insert("id".into(), json!(id));
        contact.insert("role".into(), json!(role));
        contact.insert("custom_attributes".into(), json!({}));
        merge(&mut contact, body);
        let contact = Json::Object(contact);
        self.contacts.insert(id, contact.clone());
        Ok(ok(200, &contact))
    }

    fn update_contact(&mut self, id: &str, body: Map<String, Json>) -> Result<Reply, Reply> {
        if !self.contacts.contains_key(id) {
            return Err(error(404, "not_found", "User Not Found"));
        }
        self.validate("contact", &body)?;
        if let Some(other) = self.conflicting_contact(&body, Some(id)) {
            return Err(error(
                409,
                "conflict",
                &format!("A contact matching those details already exists with id={other}"),
            ));
        }
        let Some(Json::Object(contact)) = self.contacts.get_mut(id) else {
            return Err(error(404, "not_found", "User Not Found"));
        };
        merge(contact, body);
        Ok(ok(200, &Json::Object(contact.clone())))
    }

    fn search(&self, body: &Map<String, Json>) -> Result<Reply, Reply> {
        let Some(query) = body.get("query") else {
            return Err(error(400, "parameter_invalid", "query is required"));
        };
        let per_page = body
            .get("pagination")
            .and_then(|p| p.get("per_page"))
            .and_then(Json::as_u64)
            .unwrap_or(50);
        if per_page > 150 {
            return Err(error(
                400,
                "parameter_invalid",
                "per_page must be 150 or less",
            ));
        }
        let mut data = Vec::new();
        for c in self.contacts.values() {
            if matches(c, query)? {
                data.push(c.clone());
            }
        }
        let total = data.len();
        data.truncate(per_page as usize);
        Ok(ok(
            200,
            &json!({
                "type": "list",
                "data": data,
                "total_count": total,
                "pages": {"type": "pages", "page": 1, "per_page": per_page,
                          "total_pages": total.div_ceil(per_page.max(1) as usize).max(1)}
            }),
        ))
    }

    fn upsert_company(&mut self, body: Map<String, Json>) -> Result<Reply, Reply> {
        self.validate("company", &body)?;
        let Some(company_id) = body.get("company_id").filter(|v| !v.is_null()).cloned() else {
            return Err(error(400, "parameter_not_found", "company_id is required"));
        };
        let existing = self
            .companies
            .iter()
            .find(|(_, c)| c.get("company_id") == Some(&company_id))
            .map(|(id, _)| id.clone());
        let id = match existing {
            Some(id) => id,
            None => {
                let id = self.new_id();
                self.companies.insert(
                    id.clone(),
                    json!({"type": "company", "id": id, "custom_attributes": {}}),
                );
                id
            }
        };
        let Some(Json::Object(company)) = self.companies.get_mut(&id) else {
            return Err(error(500, "server_error", "Server Error"));
        };
        merge(company, body);
        Ok(ok(200, &Json::Object(company.clone())))
    }

    fn update_company(&mut self, id: &str, body: Map<String, Json>) -> Result<Reply, Reply> {
        if !self.companies.contains_key(id) {
            return Err(error(404, "company_not_found", "Company Not Found"));
        }
        self.validate("company", &body)?;
        if body.contains_key("company_id") {
            return Err(error(
                400,
                "parameter_invalid",
                "company_id cannot be updated",
            ));
        }
        let Some(Json::Object(company)) = self.companies.get_mut(id) else {
            return Err(error(404, "company_not_found", "Company Not Found"));
        };
        merge(company, body);
        Ok(ok(200, &Json::Object(company.clone())))
    }
}

fn tag_json(id: &str, name: &str) -> Json {
    json!({"type": "tag", "id": id, "name": name})
}

/// Top-level attributes replace; `custom_attributes` are merged key by key.
fn merge(target: &mut Map<String, Json>, body: Map<String, Json>) {
    for (k, v) in body {
        if k == "custom_attributes" {
            let entry = target.entry(k).or_insert_with(|| json!({}));
            if let (Some(into), Json::Object(from)) = (entry.as_object_mut(), v) {
                into.extend(from);
            }
        } else {
            target.insert(k, v);
        }
    }
}

fn of_type(value: &Json, data_type: &str) -> bool {
    match (data_type, value) {
        (_, Json::Null) => true,
        ("string", Json::String(_)) => true,
        ("integer" | "date", Json::Number(n)) => n.is_i64() || n.is_u64(),
        ("float", Json::Number(_)) => true,
        ("boolean", Json::Bool(_)) => true,
        _ => false,
    }
}

/// Whether a contact matches a search query (`{field, operator, value}` or
/// `{operator: AND|OR, value: [queries]}`).
fn matches(contact: &Json, query: &Json) -> Result<bool, Reply> {
    let operator = query.get("operator").and_then(Json::as_str).unwrap_or("");
    if matches!(operator, "AND" | "OR") {
        let Some(parts) = query.get("value").and_then(Json::as_array) else {
            return Err(error(400, "parameter_invalid", "AND/OR take a list"));
        };
        let mut results = Vec::new();
        for p in parts {
            results.push(matches(contact, p)?);
        }
        return Ok(if operator == "AND" {
            results.iter().all(|r| *r)
        } else {
            results.iter().any(|r| *r)
        });
    }
    let Some(field) = query.get("field").and_then(Json::as_str) else {
        return Err(error(400, "parameter_invalid", "field is required"));
    };
    let value = query.get("value").cloned().unwrap_or(Json::Null);
    let actual = match field.strip_prefix("custom_attributes.") {
        Some(name) => contact.get("custom_attributes").and_then(|c| c.get(name)),
        None => contact.get(field),
    }
    .cloned()
    .unwrap_or(Json::Null);
    match operator {
        "=" => Ok(actual == value),
        "!=" => Ok(actual != value),
        other => Err(error(
            400,
            "parameter_invalid",
            &format!("operator {other} is not supported for {field}"),
        )),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
