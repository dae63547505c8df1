//! The one internal value type every warehouse produces and every destination consumes,
//! and its encodings (JSON, CSV/COPY text, hashing). See docs/values.md for the table.

use std::cmp::Ordering;
use std::fmt::Write as _;

use base64::Engine as _;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Exact decimal or out-of-range integer digits, e.g. `1250.50` or a HUGEINT: never a float.
    Number(String),
    Float(f64),
    Text(String),
    /// `YYYY-MM-DD`
    Date(String),
    /// `YYYY-MM-DDTHH:MM:SS.ffffff`, no zone.
    Timestamp(String),
    /// RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    TimestampTz(String),
    /// Lists, structs and maps, as JSON.
    Json(serde_json::Value),
    Blob(Vec<u8>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Appends the JSON encoding of the value.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Number(digits) => out.push_str(digits),
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f}");
            }
            Value::Float(_) => out.push_str("null"),
            Value::Text(s) | Value::Date(s) | Value::Timestamp(s) | Value::TimestampTz(s) => {
                write_json_string(out, s)
            }
            Value::Json(v) => out.push_str(&v.to_string()),
            Value::Blob(b) => {
                write_json_string(out, &base64::engine::general_purpose::STANDARD.encode(b))
            }
        }
    }

    pub fn to_json_string(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    /// The value as `serde_json::Value` (decimals keep their digits through a string parse).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Number(digits) => serde_json::from_str(digits)
                .unwrap_or_else(|_| serde_json::Value::String(digits.clone())),
            Value::Json(v) => v.clone(),
            other => {
                serde_json::from_str(&other.to_json_string()).unwrap_or(serde_json::Value::Null)
            }
        }
    }

    /// Text form for CSV cells and PostgreSQL COPY; `None` is NULL.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Number(d) => Some(d.clone()),
            Value::Float(f) if f.is_nan() => Some("NaN".into()),
            Value::Float(f) if f.is_infinite() => {
                Some(if *f > 0.0 { "Infinity" } else { "-Infinity" }.into())
            }
            Value::Float(f) => Some(f.to_string()),
            Value::Text(s) | Value::Date(s) | Value::Timestamp(s) | Value::TimestampTz(s) => {
                Some(s.clone())
            }
            Value::Json(v) => Some(v.to_string()),
            Value::Blob(b) => Some(base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }

    /// Feeds a type-tagged, unambiguous encoding into a hasher.
    pub fn hash_into(&self, h: &mut xxhash_rust::xxh3::Xxh3) {
        let tag: u8 = match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Number(_) => 3,
            Value::Float(_) => 4,
            Value::Text(_) => 5,
            Value::Date(_) => 6,
            Value::Timestamp(_) => 7,
            Value::TimestampTz(_) => 8,
            Value::Json(_) => 9,
            Value::Blob(_) => 10,
        };
        h.update(&[tag]);
        match self {
            Value::Null => {}
            Value::Bool(b) => h.update(&[*b as u8]),
            Value::Int(i) => h.update(&i.to_le_bytes()),
            Value::Float(f) => h.update(&f.to_bits().to_le_bytes()),
            Value::Number(s)
            | Value::Text(s)
            | Value::Date(s)
            | Value::Timestamp(s)
            | Value::TimestampTz(s) => {
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Value::Json(v) => {
                let s = v.to_string();
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Value::Blob(b) => {
                h.update(&(b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
    }

    /// Order for cursor values of one column: numbers numerically, text-like values by their
    /// (ISO 8601) text. Values of different kinds compare as equal (never mixed in one column).
    pub fn cursor_cmp(&self, other: &Value) -> Ordering {
        fn numeric(v: &Value) -> Option<f64> {
            match v {
                Value::Int(i) => Some(*i as f64),
                Value::Number(d) => d.parse().ok(),
                Value::Float(f) => Some(*f),
                _ => None,
            }
        }
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (a, b) if numeric(a).is_some() && numeric(b).is_some() => numeric(a)
                .partial_cmp(&numeric(b))
                .unwrap_or(Ordering::Equal),
            (Value::Text(a), Value::Text(b))
            | (Value::Date(a), Value::Date(b))
            | (Value::Timestamp(a), Value::Timestamp(b))
            | (Value::TimestampTz(a), Value::TimestampTz(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }
}

pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses a JSON value (as stored in state for keys) back into a `Value`.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Number(n.to_string()),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Json(other.clone()),
    }
}

/// Formats microseconds since the Unix epoch.
pub fn format_timestamp_micros(micros: i64, with_zone: bool) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(dt) if with_zone => dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Some(dt) => dt.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        None => micros.to_string(),
    }
}

/// Formats days since the Unix epoch.
pub fn format_date_days(days: i32) -> String {
    chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| days.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_encoding() {
        let cases = [
            (Value::Null, "null"),
            (Value::Bool(true), "true"),
            (Value::Int(-5), "-5"),
            (
                Value::Number("12345678901234567890.123456789".into()),
                "12345678901234567890.123456789",
            ),
            (Value::Float(f64::NAN), "null"),
            (Value::Float(1.5), "1.5"),
            (
                Value::Text("a\"b\\c\nd\u{1}é".into()),
                "\"a\\\"b\\\\c\\nd\\u0001é\"",
            ),
            (Value::Blob(vec![0, 1, 2]), "\"AAEC\""),
        ];
        for (v, want) in cases {
            assert_eq!(v.to_json_string(), want, "{v:?}");
        }
    }

    #[test]
    fn text_encoding() {
        assert_eq!(Value::Null.to_text(), None);
        assert_eq!(Value::Float(f64::INFINITY).to_text().unwrap(), "Infinity");
        assert_eq!(
            Value::Json(serde_json::json!([1, "a"])).to_text().unwrap(),
            "[1,\"a\"]"
        );
    }

    #[test]
    fn time_formats() {
        assert_eq!(format_date_days(0), "1970-01-01");
        assert_eq!(format_date_days(19_723), "2024-01-01");
        assert_eq!(
            format_timestamp_micros(1_704_067_200_000_001, true),
            "2024-01-01T00:00:00.000001Z"
        );
        assert_eq!(
            format_timestamp_micros(0, false),
            "1970-01-01T00:00:00.000000"
        );
    }

    #[test]
    fn hashing_distinguishes_types() {
        let hash = |v: &Value| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            v.hash_into(&mut h);
            h.digest()
        };
        assert_ne!(hash(&Value::Int(1)), hash(&Value::Text("1".into())));
        assert_ne!(hash(&Value::Null), hash(&Value::Text(String::new())));
    }

    #[test]
    fn cursor_order() {
        assert_eq!(Value::Int(2).cursor_cmp(&Value::Int(10)), Ordering::Less);
        assert_eq!(
            Value::Number("10.5".into()).cursor_cmp(&Value::Int(10)),
            Ordering::Greater
        );
        assert_eq!(
            Value::TimestampTz("2024-01-02T00:00:00.000000Z".into())
                .cursor_cmp(&Value::TimestampTz("2024-01-01T23:59:59.999999Z".into())),
            Ordering::Greater
        );
    }
}
