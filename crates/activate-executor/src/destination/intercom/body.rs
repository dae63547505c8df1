//! Request building: which Intercom object an activation writes, which of its mapped fields are
//! standard attributes and which are custom data attributes, and the JSON of one record.

use serde_json::{Map, Value as Json};

use crate::destination::{Record, WriteBatch, WriteOp};
use crate::value::Value;

/// The Intercom objects this destination writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Contacts,
    Companies,
}

/// Contact attributes the Contacts API takes at the top level of a create or update.
const CONTACT_STANDARD: &[&str] = &[
    "role",
    "external_id",
    "email",
    "phone",
    "name",
    "avatar",
    "signed_up_at",
    "last_seen_at",
    "owner_id",
    "unsubscribed_from_emails",
];

/// Company attributes `POST /companies` takes at the top level.
const COMPANY_STANDARD: &[&str] = &[
    "company_id",
    "name",
    "monthly_spend",
    "plan",
    "size",
    "website",
    "industry",
    "remote_created_at",
];

/// Prefix of a custom data attribute written explicitly (`custom_attributes.churn_risk`).
pub const CUSTOM_PREFIX: &str = "custom_attributes.";

impl Object {
    pub fn parse(object: &str) -> Option<Self> {
        match object {
            "contacts" | "contact" => Some(Object::Contacts),
            "companies" | "company" => Some(Object::Companies),
            _ => None,
        }
    }

    /// The `model` of `GET /data_attributes?model=...`.
    pub fn model(self) -> &'static str {
        match self {
            Object::Contacts => "contact",
            Object::Companies => "company",
        }
    }

    /// The path segment of the object's endpoints.
    pub fn path(self) -> &'static str {
        match self {
            Object::Contacts => "contacts",
            Object::Companies => "companies",
        }
    }

    fn standard(self) -> &'static [&'static str] {
        match self {
            Object::Contacts => CONTACT_STANDARD,
            Object::Companies => COMPANY_STANDARD,
        }
    }

    /// Where a mapped field goes: `(false, name)` for a standard attribute, `(true, name)` for a
    /// custom data attribute. A field that is not a standard attribute is a custom one.
    pub fn route(self, field: &str) -> (bool, &str) {
        if let Some(custom) = field.strip_prefix(CUSTOM_PREFIX) {
            (true, custom)
        } else if self.standard().contains(&field) {
            (false, field)
        } else {
            (true, field)
        }
    }

    /// The field of `POST /contacts/search` that matches a key field.
    pub fn search_field(self, field: &str) -> String {
        match self.route(field) {
            (false, name) => name.to_owned(),
            (true, name) => format!("{CUSTOM_PREFIX}{name}"),
        }
    }
}

/// A value as Intercom takes it: dates and timestamps as Unix seconds (Intercom's date
/// attributes, standard and custom, are Unix timestamps); everything else as its JSON.
pub fn json_value(value: &Value) -> Json {
    let seconds = match value {
        Value::Date(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp()),
        Value::Timestamp(t) => chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc().timestamp()),
        Value::TimestampTz(t) => chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.timestamp()),
        _ => return value.to_json(),
    };
    match seconds {
        Some(s) => Json::from(s),
        None => value.to_json(),
    }
}

/// The body of a create or update of one record: standard attributes at the top level,
/// the rest under `custom_attributes`. A `clear` sends null for every field but the key.
pub fn record_body(object: Object, batch: &WriteBatch<'_>, record: &Record) -> Map<String, Json> {
    let mut body = Map::new();
    let mut custom = Map::new();
    for (i, (field, value)) in batch.fields.iter().zip(&record.values).enumerate() {
        let json = if batch.op == WriteOp::Clear && !batch.key_positions.contains(&i) {
            Json::Null
        } else {
            json_value(value)
        };
        match object.route(field) {
            (false, name) => {
                body.insert(name.to_owned(), json);
            }
            (true, name) => {
                custom.insert(name.to_owned(), json);
            }
        }
    }
    if !custom.is_empty() {
        body.insert("custom_attributes".to_owned(), Json::Object(custom));
    }
    body
}

/// The text of a key value for messages (`acc_001`, `42`).
pub fn key_text(value: &Value) -> String {
    value.to_text().unwrap_or_else(|| "null".to_owned())
}

/// The reason of an Intercom error body (`{"type":"error.list","errors":[{code, message}]}`),
/// or the body itself when it is not one.
pub fn error_reason(status: u16, body: &str) -> String {
    let parsed: Option<Json> = serde_json::from_str(body).ok();
    let errors = parsed
        .as_ref()
        .and_then(|b| b.get("errors"))
        .and_then(Json::as_array);
    match errors {
        Some(errors) if !errors.is_empty() => {
            let parts: Vec<String> = errors
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(Json::as_str).unwrap_or("error");
                    let message = e.get("message").and_then(Json::as_str).unwrap_or_default();
                    format!("{code}: {message}")
                })
                .collect();
            format!("HTTP {status} {}", parts.join("; "))
        }
        _ if body.trim().is_empty() => format!("HTTP {status}"),
        _ => format!("HTTP {status}: {}", body.trim()),
    }
}

/// The Intercom id in a 409 `conflict` message ("... already exists with id=6762f0dd...").
pub fn conflict_id(reason: &str) -> Option<String> {
    let start = reason.find("id=")? + 3;
    let id: String = reason[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    (!id.is_empty()).then_some(id)
}
