//! Values as Salesforce expects them: JSON types for REST, CSV text for Bulk API 2.0.
//! Date-times become `YYYY-MM-DDTHH:MM:SS.sssZ`, lists of scalars become multi-select picklist
//! text (`a;b;c`), other nested values their JSON text.

use crate::value::{Value, write_json_string};

/// `2024-05-01T12:30:00.123456Z` or `2024-05-01T12:30:00` → `2024-05-01T12:30:00.123Z` (UTC).
pub fn datetime(text: &str) -> String {
    let base = text.trim_end_matches('Z').replacen(' ', "T", 1);
    let (whole, frac) = base.split_once('.').unwrap_or((&base, ""));
    let mut millis: String = frac.chars().filter(char::is_ascii_digit).take(3).collect();
    while millis.len() < 3 {
        millis.push('0');
    }
    format!("{whole}.{millis}Z")
}

fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON value as Salesforce text: a list of scalars is `a;b`, anything else its JSON.
fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(scalar_text).collect();
            match parts {
                Some(p) if p.is_empty() => None,
                Some(p) => Some(p.join(";")),
                None => Some(v.to_string()),
            }
        }
        other => scalar_text(other).or_else(|| Some(other.to_string())),
    }
}

/// Appends the REST JSON form of a value.
pub fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Timestamp(s) | Value::TimestampTz(s) => write_json_string(out, &datetime(s)),
        Value::Json(v) => match json_text(v) {
            Some(text) => write_json_string(out, &text),
            None => out.push_str("null"),
        },
        other => other.write_json(out),
    }
}

/// The Bulk API 2.0 CSV cell of a value; `None` is an empty cell.
pub fn csv_text(value: &Value) -> Option<String> {
    match value {
        Value::Timestamp(s) | Value::TimestampTz(s) => Some(datetime(s)),
        Value::Json(v) => json_text(v),
        Value::Float(f) if !f.is_finite() => None,
        other => other.to_text(),
    }
}

/// A key value as the text Salesforce echoes back (query results, result files).
pub fn key_text(value: &Value) -> String {
    match value {
        Value::Text(s) => s.clone(),
        other => csv_text(other).unwrap_or_default(),
    }
}

/// The same for a JSON value of a query result (`42.0` and `42` are one key).
pub fn json_key_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => json_text(other).unwrap_or_default(),
    }
}

/// A SOQL literal of a key value: text quoted with `\` escapes, numbers bare.
pub fn soql_literal(value: &Value) -> String {
    match value {
        Value::Int(i) => i.to_string(),
        Value::Number(d) => d.clone(),
        Value::Bool(b) => b.to_string(),
        other => {
            let text = key_text(other);
            let mut out = String::with_capacity(text.len() + 2);
            out.push('\'');
            for c in text.chars() {
                match c {
                    '\'' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('\'');
            out
        }
    }
}

/// A per-record error list (`[{"statusCode", "message", "fields"}]`) as one reason.
pub fn record_errors(errors: &serde_json::Value) -> String {
    let Some(list) = errors.as_array().filter(|l| !l.is_empty()) else {
        return "UNKNOWN_ERROR: Salesforce reported a failure without a reason".to_owned();
    };
    list.iter()
        .map(|e| {
            let code = e["statusCode"].as_str().unwrap_or("ERROR");
            let message = e["message"].as_str().unwrap_or_default();
            let fields: Vec<&str> = e["fields"]
                .as_array()
                .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            if fields.is_empty() {
                format!("{code}: {message}")
            } else {
                format!("{code}: {message} (fields: {})", fields.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The REST JSON form of a value, as a JSON value.
pub fn json_value(value: &Value) -> serde_json::Value {
    let mut text = String::new();
    write_json(value, &mut text);
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// `2024-05-01T12:30:00.123Z`, `2024-05-01T12:30:00.123+0000` and `2024-05-01T12:30:00Z`
/// (what Salesforce answers for a datetime) as one text, `2024-05-01T12:30:00.123`; `None`
/// for anything that is not a UTC date-time.
fn utc_datetime(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let shaped = b.len() >= 19 && b[4] == b'-' && b[10] == b'T' && b[13] == b':';
    if !shaped {
        return None;
    }
    let base = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+0000"))
        .or_else(|| text.strip_suffix("+00:00"))?;
    Some(datetime(base).trim_end_matches('Z').to_owned())
}

/// Whether the value a record holds (from a SOQL query) is the value a row would write
/// (`want`, from [`json_value`]). Salesforce answers a number field as a JSON number (`12.5`
/// for `12.50`), a date-time with `+0000`, an empty field as `null`, and may order the values
/// of a multi-select picklist differently.
pub fn same_value(want: &serde_json::Value, have: Option<&serde_json::Value>) -> bool {
    use serde_json::Value as J;
    let have = have.unwrap_or(&J::Null);
    match (want, have) {
        (J::Null, J::Null) => true,
        (J::Null, J::String(s)) | (J::String(s), J::Null) => s.is_empty(),
        (J::Bool(a), J::Bool(b)) => a == b,
        (J::Bool(a), J::String(s)) | (J::String(s), J::Bool(a)) => {
            s.eq_ignore_ascii_case(&a.to_string())
        }
        (J::Number(_), J::Number(_) | J::String(_)) | (J::String(_), J::Number(_)) => {
            let (a, b) = (json_key_text(want), json_key_text(have));
            a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
        }
        (J::String(a), J::String(b)) => {
            if a == b {
                return true;
            }
            if let (Some(x), Some(y)) = (utc_datetime(a), utc_datetime(b)) {
                return x == y;
            }
            if a.contains(';') || b.contains(';') {
                let mut x: Vec<&str> = a.split(';').collect();
                let mut y: Vec<&str> = b.split(';').collect();
                x.sort_unstable();
                y.sort_unstable();
                return x == y;
            }
            false
        }
        _ => false,
    }
}
