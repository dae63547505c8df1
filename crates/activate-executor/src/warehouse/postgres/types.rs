//! How each PostgreSQL type is read so that it becomes the same `Value` DuckDB gives for the
//! same data (the table is in docs/warehouses.md). Every column is selected through a cast to
//! one of six wire types (bool, int8, float4, float8, bytea, text), so decoding never depends
//! on a type this client does not know.

use tokio_postgres::Row;
use tokio_postgres::types::{Kind, Type};

use crate::error::WarehouseError;
use crate::value::Value;
use crate::warehouse::quote_ident;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAs {
    Bool,
    /// int2, int4, int8, oid: `Value::Int`.
    Int,
    Float4,
    Float8,
    /// numeric, money: exact digits as `Value::Number` (NaN and ±Infinity as floats).
    Number,
    /// ISO `YYYY-MM-DD`; `infinity` stays text.
    Date,
    Timestamp,
    TimestampTz,
    /// json, jsonb, arrays and composite types: `Value::Json`.
    Json,
    Bytes,
    /// text, varchar, char, uuid, time, interval, enums and every other type: its text.
    Text,
}

pub fn read_as(ty: &Type) -> ReadAs {
    match ty.kind() {
        Kind::Array(_) | Kind::Composite(_) => return ReadAs::Json,
        Kind::Domain(inner) => return read_as(inner),
        Kind::Enum(_) => return ReadAs::Text,
        _ => {}
    }
    match *ty {
        Type::BOOL => ReadAs::Bool,
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => ReadAs::Int,
        Type::FLOAT4 => ReadAs::Float4,
        Type::FLOAT8 => ReadAs::Float8,
        Type::NUMERIC | Type::MONEY => ReadAs::Number,
        Type::DATE => ReadAs::Date,
        Type::TIMESTAMP => ReadAs::Timestamp,
        Type::TIMESTAMPTZ => ReadAs::TimestampTz,
        Type::JSON | Type::JSONB | Type::RECORD => ReadAs::Json,
        Type::BYTEA => ReadAs::Bytes,
        _ => ReadAs::Text,
    }
}

/// The type as PostgreSQL's `format_type` would roughly write it (`int4`, `text[]`), for
/// messages and `ColumnDesc::data_type`.
pub fn type_name(ty: &Type) -> String {
    match ty.kind() {
        Kind::Array(element) => format!("{}[]", element.name()),
        _ => ty.name().to_owned(),
    }
}

/// The select expression for one column.
pub fn select_expr(column: &str, how: ReadAs) -> String {
    let q = quote_ident(column);
    match how {
        ReadAs::Bool => format!("{q}::bool"),
        ReadAs::Int => format!("{q}::int8"),
        ReadAs::Float4 => format!("{q}::float4"),
        ReadAs::Float8 => format!("{q}::float8"),
        ReadAs::Bytes => format!("{q}::bytea"),
        // Through numeric: money's own text carries a currency symbol.
        ReadAs::Number => format!("{q}::numeric::text"),
        ReadAs::Json => format!("to_json({q})::text"),
        // The instant in UTC, whatever the session's TimeZone.
        ReadAs::TimestampTz => format!("({q} AT TIME ZONE 'UTC')::text"),
        ReadAs::Date | ReadAs::Timestamp | ReadAs::Text => {
            format!("{q}::text")
        }
    }
}

/// Converts column `i` of a fetched row.
pub fn convert(row: &Row, i: usize, how: ReadAs) -> Result<Value, WarehouseError> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a Row,
        i: usize,
    ) -> Result<Option<T>, WarehouseError> {
        row.try_get::<_, Option<T>>(i).map_err(|e| {
            WarehouseError::new(format!(
                "column `{}`: could not decode: {e}",
                row.columns()[i].name()
            ))
        })
    }
    Ok(match how {
        ReadAs::Bool => get::<bool>(row, i)?.map_or(Value::Null, Value::Bool),
        ReadAs::Int => get::<i64>(row, i)?.map_or(Value::Null, Value::Int),
        // The shortest decimal that reads back as the same float4, as DuckDB gives it.
        ReadAs::Float4 => get::<f32>(row, i)?.map_or(Value::Null, |f| {
            Value::Float(f.to_string().parse().unwrap_or(f64::from(f)))
        }),
        ReadAs::Float8 => get::<f64>(row, i)?.map_or(Value::Null, Value::Float),
        ReadAs::Bytes => get::<Vec<u8>>(row, i)?.map_or(Value::Null, Value::Blob),
        ReadAs::Number => get::<String>(row, i)?.map_or(Value::Null, number),
        ReadAs::Date => get::<String>(row, i)?.map_or(Value::Null, date),
        ReadAs::Timestamp => get::<String>(row, i)?.map_or(Value::Null, timestamp),
        ReadAs::TimestampTz => get::<String>(row, i)?.map_or(Value::Null, timestamp_tz),
        ReadAs::Json => {
            get::<String>(row, i)?.map_or(Value::Null, |text| match serde_json::from_str(&text) {
                Ok(json) => Value::json(json),
                Err(_) => Value::Text(text),
            })
        }
        ReadAs::Text => get::<String>(row, i)?.map_or(Value::Null, Value::Text),
    })
}

fn number(text: String) -> Value {
    match text.as_str() {
        "NaN" => Value::Float(f64::NAN),
        "Infinity" => Value::Float(f64::INFINITY),
        "-Infinity" => Value::Float(f64::NEG_INFINITY),
        _ => Value::Number(text),
    }
}

/// `2024-02-29` (DateStyle ISO); `infinity` and BC dates keep their text.
fn date(text: String) -> Value {
    match chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        Ok(_) => Value::Date(text),
        Err(_) => Value::Text(text),
    }
}

/// `2024-01-01 10:00:00.5` -> `2024-01-01T10:00:00.500000`.
fn timestamp(text: String) -> Value {
    match chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f") {
        Ok(t) => Value::Timestamp(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        Err(_) => Value::Text(text),
    }
}

/// `2024-01-01 08:00:00` (selected `AT TIME ZONE 'UTC'`) -> `2024-01-01T08:00:00.000000Z`.
fn timestamp_tz(text: String) -> Value {
    match chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f") {
        Ok(t) => Value::TimestampTz(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        Err(_) => Value::Text(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        assert_eq!(
            timestamp("2024-01-01 10:00:00.5".into()),
            Value::Timestamp("2024-01-01T10:00:00.500000".into())
        );
        assert_eq!(
            timestamp("2024-01-01 10:00:00".into()),
            Value::Timestamp("2024-01-01T10:00:00.000000".into())
        );
        assert_eq!(
            timestamp_tz("2024-01-01 08:00:00.25".into()),
            Value::TimestampTz("2024-01-01T08:00:00.250000Z".into())
        );
        assert_eq!(timestamp("infinity".into()), Value::Text("infinity".into()));
        assert_eq!(date("2024-02-29".into()), Value::Date("2024-02-29".into()));
        assert_eq!(number("1.50".into()), Value::Number("1.50".into()));
        assert!(matches!(number("NaN".into()), Value::Float(f) if f.is_nan()));
        assert_eq!(type_name(&Type::INT4_ARRAY), "int4[]");
        assert_eq!(read_as(&Type::TEXT_ARRAY), ReadAs::Json);
        assert_eq!(read_as(&Type::UUID), ReadAs::Text);
    }
}
