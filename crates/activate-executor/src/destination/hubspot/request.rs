//! Request bodies of HubSpot's CRM v3 batch endpoints, property values, and the reading of
//! batch responses (`results` and `errors`, HTTP 200 or 207 Multi-Status).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json, json};

use crate::destination::{Record, WriteBatch};
use crate::value::Value;

/// A value as a HubSpot property value. HubSpot property values travel as strings:
/// null clears the property (`""`); booleans are `true`/`false`; numbers keep their exact
/// digits; dates are ISO 8601 `YYYY-MM-DD` and timestamps ISO 8601 in UTC with milliseconds
/// (`2024-03-01T12:30:00.000Z`; a timestamp without a zone is taken as UTC); a list of
/// scalars becomes the `;`-separated form of multiple-checkbox properties; other JSON is sent
/// as compact JSON text; bytes as base64.
pub fn property_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Number(n) => n.clone(),
        Value::Float(f) => f.to_string(),
        Value::Text(s) | Value::Date(s) => s.clone(),
        Value::Timestamp(s) | Value::TimestampTz(s) => iso_millis(s),
        Value::Json(json) => match json.as_array() {
            Some(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => items
                .iter()
                .filter(|i| !i.is_null())
                .map(|i| match i {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(";"),
            _ => json.to_string(),
        },
        Value::Blob(bytes) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff][Z]` → `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn iso_millis(text: &str) -> String {
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .map(|d| d.naive_utc())
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"));
    match parsed {
        Ok(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => text.to_owned(),
    }
}

/// The value of a record's key (the `idProperty` value), or `None` when it is null or empty.
pub fn key_value(batch: &WriteBatch<'_>, record: &Record) -> Option<String> {
    let position = *batch.key_positions.first()?;
    let value = property_value(record.values.get(position)?);
    (!value.is_empty()).then_some(value)
}

/// `{"<field>": "<value>", ...}` of a record; `clear` sends every non-key field empty.
pub fn properties(batch: &WriteBatch<'_>, record: &Record, clear: bool) -> Json {
    let mut map = Map::new();
    for (i, (field, value)) in batch.fields.iter().zip(&record.values).enumerate() {
        let key = batch.key_positions.contains(&i);
        let text = if clear && !key {
            String::new()
        } else {
            property_value(value)
        };
        map.insert(field.clone(), Json::String(text));
    }
    Json::Object(map)
}

pub fn upsert_body(id_property: &str, inputs: &[(String, Json)]) -> Json {
    let inputs: Vec<Json> = inputs
        .iter()
        .map(|(id, props)| json!({"idProperty": id_property, "id": id, "properties": props}))
        .collect();
    json!({ "inputs": inputs })
}

/// `batch/read` by `idProperty`, returning `properties` (the id property is always read).
pub fn read_body(id_property: &str, ids: &[&str], properties: &[String]) -> Json {
    let inputs: Vec<Json> = ids.iter().map(|id| json!({ "id": id })).collect();
    let mut read: Vec<&str> = vec![id_property];
    read.extend(
        properties
            .iter()
            .map(String::as_str)
            .filter(|p| *p != id_property),
    );
    json!({ "idProperty": id_property, "properties": read, "inputs": inputs })
}

pub fn update_body(inputs: &[(String, Json)]) -> Json {
    let inputs: Vec<Json> = inputs
        .iter()
        .map(|(id, props)| json!({"id": id, "properties": props}))
        .collect();
    json!({ "inputs": inputs })
}

pub fn create_body(properties: &[Json]) -> Json {
    let inputs: Vec<Json> = properties
        .iter()
        .map(|props| json!({ "properties": props }))
        .collect();
    json!({ "inputs": inputs })
}

pub fn archive_body(record_ids: &[&str]) -> Json {
    let inputs: Vec<Json> = record_ids.iter().map(|id| json!({ "id": id })).collect();
    json!({ "inputs": inputs })
}

/// One entry of a batch response's `errors`: its message and every value its `context`
/// names (HubSpot puts the affected ids there, e.g. `{"ids": ["a@x.com"]}`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchError {
    pub message: String,
    pub names: BTreeSet<String>,
}

/// A batch response: the records it returned (HubSpot record id, properties) and its errors.
#[derive(Debug, Default)]
pub struct BatchResponse {
    pub results: Vec<(String, BTreeMap<String, String>)>,
    pub errors: Vec<BatchError>,
}

impl BatchResponse {
    pub fn parse(body: &str) -> Result<Self, String> {
        if body.trim().is_empty() {
            return Ok(Self::default());
        }
        let json: Json = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
        let mut out = Self::default();
        for r in json["results"].as_array().into_iter().flatten() {
            let id = match &r["id"] {
                Json::String(s) => s.clone(),
                Json::Number(n) => n.to_string(),
                _ => continue,
            };
            let props = r["properties"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| match v {
                            Json::String(s) => Some((k.clone(), s.clone())),
                            Json::Null => None,
                            other => Some((k.clone(), other.to_string())),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.results.push((id, props));
        }
        for e in json["errors"].as_array().into_iter().flatten() {
            out.errors.push(batch_error(e));
        }
        Ok(out)
    }

    /// The HubSpot record id of each `idProperty` value found (values compared without case,
    /// as HubSpot stores emails lower-cased).
    /// Each record found, by its `idProperty` value (lower-cased): (record id, properties).
    pub fn records_by(
        &self,
        id_property: &str,
    ) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
        self.results
            .iter()
            .filter_map(|(id, props)| {
                props
                    .get(id_property)
                    .map(|v| (v.to_lowercase(), (id.clone(), props.clone())))
            })
            .collect()
    }

    pub fn ids_by(&self, id_property: &str) -> BTreeMap<String, String> {
        self.results
            .iter()
            .filter_map(|(id, props)| {
                props
                    .get(id_property)
                    .map(|v| (v.to_lowercase(), id.clone()))
            })
            .collect()
    }
}

fn batch_error(e: &Json) -> BatchError {
    let mut message = e["message"].as_str().unwrap_or("error").to_owned();
    if let Some(category) = e["category"].as_str()
        && !message.contains(category)
    {
        message = format!("{category}: {message}");
    }
    let mut names = BTreeSet::new();
    if let Some(context) = e["context"].as_object() {
        for v in context.values() {
            match v {
                Json::Array(items) => names.extend(items.iter().filter_map(|i| match i {
                    Json::String(s) => Some(s.to_lowercase()),
                    Json::Number(n) => Some(n.to_string()),
                    _ => None,
                })),
                Json::String(s) => {
                    names.insert(s.to_lowercase());
                }
                _ => {}
            }
        }
    }
    if let Some(id) = e["id"].as_str() {
        names.insert(id.to_lowercase());
    }
    BatchError {
        message: crate::destination::http::excerpt(&message),
        names,
    }
}

/// The reason for each input a batch response failed, by index. `ids[i]` is what the
/// response would name input `i` by (its `idProperty` value, or its record id); `confirmed[i]`
/// says whether a result was seen for it. Errors that name no input fail every input without
/// a result, so nothing is counted delivered that HubSpot did not confirm.
pub fn failures(ids: &[String], confirmed: &[bool], errors: &[BatchError]) -> Vec<(usize, String)> {
    let mut failed: BTreeMap<usize, String> = BTreeMap::new();
    let mut unattributed: Option<&str> = None;
    for error in errors {
        let mut named = false;
        for (i, id) in ids.iter().enumerate() {
            if error.names.contains(&id.to_lowercase()) {
                named = true;
                failed.entry(i).or_insert_with(|| error.message.clone());
            }
        }
        if !named && unattributed.is_none() {
            unattributed = Some(&error.message);
        }
    }
    if let Some(message) = unattributed {
        for (i, ok) in confirmed.iter().enumerate() {
            if !ok {
                failed.entry(i).or_insert_with(|| message.to_owned());
            }
        }
    }
    failed.into_iter().collect()
}
