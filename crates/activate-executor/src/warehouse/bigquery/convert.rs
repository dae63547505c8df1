//! BigQuery REST result cells (`{"v": ...}` in `rows[].f[]`) to our `Value`, with the meaning
//! DuckDB gives the same data: INT64 integers, NUMERIC/BIGNUMERIC exact, TIMESTAMP in UTC,
//! DATETIME without zone, STRUCT/ARRAY/JSON as JSON.

use base64::Engine as _;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;

use crate::value::{self, Value};

pub fn type_name(field: &TableFieldSchema) -> String {
    let base = match &field.r#type {
        FieldType::Record | FieldType::Struct => "STRUCT".to_owned(),
        other => format!("{other:?}").to_ascii_uppercase(),
    };
    if field.mode.as_deref() == Some("REPEATED") {
        format!("ARRAY<{base}>")
    } else {
        base
    }
}

/// `2024-01-01T10:00:00.5` to six fraction digits, as DuckDB prints timestamps.
fn datetime(text: &str) -> String {
    let text = text.replace(' ', "T");
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut frac: String = frac.chars().take(6).collect();
    while frac.len() < 6 {
        frac.push('0');
    }
    format!("{whole}.{frac}")
}

fn timestamp(text: &str) -> Option<Value> {
    // Microseconds since the epoch (formatOptions.useInt64Timestamp), else float seconds.
    let micros = match text.parse::<i64>() {
        Ok(m) => m,
        Err(_) => (text.parse::<f64>().ok()? * 1_000_000.0).round() as i64,
    };
    Some(Value::TimestampTz(value::format_timestamp_micros(
        micros, true,
    )))
}

fn scalar(field: &TableFieldSchema, cell: &serde_json::Value) -> Value {
    let text = match cell {
        serde_json::Value::Null => return Value::Null,
        serde_json::Value::String(s) => s.as_str(),
        other => return value::from_json(other),
    };
    let parsed = match field.r#type {
        FieldType::Integer | FieldType::Int64 => match text.parse::<i64>() {
            Ok(i) => Some(Value::Int(i)),
            Err(_) => Some(Value::Number(text.to_owned())),
        },
        FieldType::Float | FieldType::Float64 => text.parse::<f64>().ok().map(Value::Float),
        FieldType::Numeric | FieldType::Bignumeric => Some(Value::Number(text.to_owned())),
        FieldType::Boolean | FieldType::Bool => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        FieldType::Date => Some(Value::Date(text.to_owned())),
        FieldType::Datetime => Some(Value::Timestamp(datetime(text))),
        FieldType::Timestamp => timestamp(text),
        FieldType::Json => serde_json::from_str(text).ok().map(Value::json),
        FieldType::Bytes => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .map(Value::Blob),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::Text(text.to_owned()))
}

fn record(field: &TableFieldSchema, cell: &serde_json::Value) -> Value {
    let (Some(children), Some(cells)) = (
        field.fields.as_ref(),
        cell.get("f").and_then(|f| f.as_array()),
    ) else {
        return value::from_json(cell);
    };
    let object: serde_json::Map<String, serde_json::Value> = children
        .iter()
        .zip(cells)
        .map(|(child, c)| {
            let inner = c.get("v").unwrap_or(&serde_json::Value::Null);
            (child.name.clone(), from_cell(child, inner).to_json())
        })
        .collect();
    Value::json(serde_json::Value::Object(object))
}

fn single(field: &TableFieldSchema, cell: &serde_json::Value) -> Value {
    match field.r#type {
        FieldType::Record | FieldType::Struct if !cell.is_null() => record(field, cell),
        _ => scalar(field, cell),
    }
}

/// The value of one cell (`v` of a `{"v": ...}`) of a column described by `field`.
pub fn from_cell(field: &TableFieldSchema, cell: &serde_json::Value) -> Value {
    if field.mode.as_deref() == Some("REPEATED") {
        let items = match cell.as_array() {
            Some(items) => items,
            None if cell.is_null() => return Value::json(serde_json::Value::Array(Vec::new())),
            None => return value::from_json(cell),
        };
        let values = items
            .iter()
            .map(|item| single(field, item.get("v").unwrap_or(item)).to_json())
            .collect();
        return Value::json(serde_json::Value::Array(values));
    }
    single(field, cell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(kind: FieldType) -> TableFieldSchema {
        TableFieldSchema::new("c", kind)
    }

    #[test]
    fn cells_keep_their_meaning() {
        assert_eq!(
            from_cell(&field(FieldType::Int64), &json!("42")),
            Value::Int(42)
        );
        assert_eq!(
            from_cell(&field(FieldType::Numeric), &json!("1250.50")),
            Value::Number("1250.50".into())
        );
        assert_eq!(
            from_cell(&field(FieldType::Float64), &json!("1.5")),
            Value::Float(1.5)
        );
        assert_eq!(
            from_cell(&field(FieldType::Bool), &json!("true")),
            Value::Bool(true)
        );
        assert_eq!(
            from_cell(&field(FieldType::Timestamp), &json!("1704096000000000")),
            Value::TimestampTz("2024-01-01T08:00:00.000000Z".into())
        );
        assert_eq!(
            from_cell(&field(FieldType::Timestamp), &json!("1.7040960E9")),
            Value::TimestampTz("2024-01-01T08:00:00.000000Z".into())
        );
        assert_eq!(
            from_cell(&field(FieldType::Datetime), &json!("2024-01-01T10:00:00.5")),
            Value::Timestamp("2024-01-01T10:00:00.500000".into())
        );
        assert_eq!(
            from_cell(&field(FieldType::String), &json!(null)),
            Value::Null
        );
        let mut list = field(FieldType::String);
        list.mode = Some("REPEATED".into());
        assert_eq!(
            from_cell(&list, &json!([{"v": "a"}, {"v": "b"}])),
            Value::json(json!(["a", "b"]))
        );
        let record_field = TableFieldSchema::record(
            "r",
            vec![
                TableFieldSchema::integer("n"),
                TableFieldSchema::string("s"),
            ],
        );
        assert_eq!(
            from_cell(&record_field, &json!({"f": [{"v": "1"}, {"v": "x"}]})),
            Value::json(json!({"n": 1, "s": "x"}))
        );
    }
}
