//! Snowflake result cells (JSON rowsets and Arrow record batches) to our `Value`, with the same
//! meaning DuckDB gives the same data: exact decimals, integers as integers, timestamps without
//! zone as `Timestamp`, LTZ/TZ as UTC `TimestampTz`, VARIANT/OBJECT/ARRAY as JSON.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
};
use arrow_array::{Array, ArrayRef, StructArray};
use arrow_schema::DataType;

use crate::value::{self, Value};

/// One column of a result as the `rowtype` of the response describes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RowType {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub precision: Option<u32>,
    #[serde(default)]
    pub scale: Option<u32>,
}

impl RowType {
    fn scale(&self) -> u32 {
        self.scale.unwrap_or(0)
    }

    /// The column's type as Snowflake's DESCRIBE spells it (for messages and field typing).
    pub fn type_name(&self) -> String {
        match self.kind.to_ascii_lowercase().as_str() {
            "fixed" => format!("NUMBER({},{})", self.precision.unwrap_or(38), self.scale()),
            "real" => "FLOAT".into(),
            other => other.to_ascii_uppercase(),
        }
    }
}

fn scaled_digits(unscaled: i128, scale: u32) -> String {
    if scale == 0 {
        return unscaled.to_string();
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (whole, frac) = padded.split_at(padded.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{whole}.{frac}")
}

fn fixed(unscaled: i128, scale: u32) -> Value {
    if scale == 0
        && let Ok(i) = i64::try_from(unscaled)
    {
        return Value::Int(i);
    }
    Value::Number(scaled_digits(unscaled, scale))
}

/// Seconds and nanoseconds since the epoch to microseconds (truncating below a microsecond).
fn epoch_micros(seconds: i64, nanos: i64) -> i64 {
    seconds
        .saturating_mul(1_000_000)
        .saturating_add(nanos / 1_000)
}

fn timestamp(kind: &str, micros: i64) -> Value {
    if kind == "timestamp_ntz" {
        Value::Timestamp(value::format_timestamp_micros(micros, false))
    } else {
        Value::TimestampTz(value::format_timestamp_micros(micros, true))
    }
}

fn time_of_day(nanos: i64) -> Value {
    let micros = nanos / 1_000;
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let text = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    Value::Text(if frac == 0 {
        text
    } else {
        format!("{text}.{frac:06}")
    })
}

fn json_or_text(text: &str) -> Value {
    match serde_json::from_str(text) {
        Ok(json) => Value::json(json),
        Err(_) => Value::Text(text.to_owned()),
    }
}

/// `"1700000000.123456789"` to (seconds, nanoseconds).
fn split_epoch(text: &str) -> Option<(i64, i64)> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = whole.parse().ok()?;
    let mut nanos_text = frac.chars().take(9).collect::<String>();
    while nanos_text.len() < 9 {
        nanos_text.push('0');
    }
    let nanos: i64 = nanos_text.parse().ok()?;
    Some(if seconds < 0 || whole.starts_with('-') {
        (seconds, -nanos)
    } else {
        (seconds, nanos)
    })
}

/// A cell of a JSON rowset: Snowflake sends every value as a string (or null).
pub fn from_json_cell(column: &RowType, cell: &serde_json::Value) -> Value {
    let text = match cell {
        serde_json::Value::Null => return Value::Null,
        serde_json::Value::String(s) => s.as_str(),
        other => return value::from_json(other),
    };
    let kind = column.kind.to_ascii_lowercase();
    let parsed = match kind.as_str() {
        "fixed" => {
            if column.scale() == 0
                && let Ok(i) = text.parse::<i64>()
            {
                Some(Value::Int(i))
            } else {
                Some(Value::Number(text.to_owned()))
            }
        }
        "real" => text.parse::<f64>().ok().map(Value::Float),
        "boolean" => match text {
            "1" | "true" | "TRUE" => Some(Value::Bool(true)),
            "0" | "false" | "FALSE" => Some(Value::Bool(false)),
            _ => None,
        },
        "date" => text
            .parse::<i32>()
            .ok()
            .map(|days| Value::Date(value::format_date_days(days))),
        // TIMESTAMP_TZ is "epoch.fraction offset"; the epoch is UTC already.
        "timestamp_ntz" | "timestamp_ltz" | "timestamp_tz" => {
            let epoch = text.split(' ').next().unwrap_or(text);
            split_epoch(epoch).map(|(s, n)| timestamp(&kind, epoch_micros(s, n)))
        }
        "time" => split_epoch(text).map(|(s, n)| time_of_day(s * 1_000_000_000 + n)),
        "variant" | "object" | "array" => Some(json_or_text(text)),
        "binary" => hex::decode(text).ok().map(Value::Blob),
        _ => Some(Value::Text(text.to_owned())),
    };
    parsed.unwrap_or_else(|| Value::Text(text.to_owned()))
}

fn int_at(array: &ArrayRef, row: usize) -> Option<i128> {
    Some(match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::Decimal128(_, _) => array.as_primitive::<Decimal128Type>().value(row),
        _ => return None,
    })
}

fn string_at(array: &ArrayRef, row: usize) -> Option<&str> {
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Some(array.as_string_view().value(row)),
        _ => None,
    }
}

/// Snowflake's Arrow timestamps: a struct (epoch seconds, fraction nanoseconds[, timezone]) or,
/// for small scales, one integer scaled by 10^scale; TIMESTAMP_TZ may be (scaled epoch, timezone).
fn timestamp_micros(array: &ArrayRef, row: usize, scale: u32) -> Option<i64> {
    let from_scaled = |v: i128| {
        let v = i64::try_from(v).ok()?;
        let per_second = 10_i64.checked_pow(scale)?;
        Some(epoch_micros(
            v.div_euclid(per_second),
            v.rem_euclid(per_second) * 10_i64.pow(9 - scale.min(9)),
        ))
    };
    if let Some(v) = int_at(array, row) {
        return from_scaled(v);
    }
    let parts: &StructArray = array.as_struct_opt()?;
    let epoch = int_at(parts.column(0), row)?;
    match parts.column_by_name("fraction") {
        Some(fraction) => {
            let nanos = int_at(fraction, row)?;
            Some(epoch_micros(
                i64::try_from(epoch).ok()?,
                i64::try_from(nanos).ok()?,
            ))
        }
        None => from_scaled(epoch),
    }
}

/// A cell of an Arrow result chunk.
pub fn from_arrow(column: &RowType, array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    let kind = column.kind.to_ascii_lowercase();
    let converted = match kind.as_str() {
        "fixed" => match array.data_type() {
            DataType::Decimal128(_, scale) => {
                int_at(array, row).map(|v| fixed(v, u32::try_from(*scale).unwrap_or(0)))
            }
            DataType::Float64 => Some(Value::Float(array.as_primitive::<Float64Type>().value(row))),
            _ => int_at(array, row).map(|v| fixed(v, column.scale())),
        },
        "real" => match array.data_type() {
            DataType::Float64 => Some(Value::Float(array.as_primitive::<Float64Type>().value(row))),
            DataType::Float32 => {
                let f = array.as_primitive::<Float32Type>().value(row);
                Some(Value::Float(f.to_string().parse().unwrap_or(f64::from(f))))
            }
            _ => None,
        },
        "boolean" => array.as_boolean_opt().map(|a| Value::Bool(a.value(row))),
        "date" => match array.data_type() {
            DataType::Date32 => Some(Value::Date(value::format_date_days(
                array.as_primitive::<Date32Type>().value(row),
            ))),
            _ => None,
        },
        "timestamp_ntz" | "timestamp_ltz" | "timestamp_tz" => {
            // A null may be marked on the epoch child only, not on the struct.
            if array
                .as_struct_opt()
                .is_some_and(|parts| parts.column(0).is_null(row))
            {
                return Value::Null;
            }
            timestamp_micros(array, row, column.scale()).map(|m| timestamp(&kind, m))
        }
        "time" => int_at(array, row).and_then(|v| {
            let v = i64::try_from(v).ok()?;
            let to_nanos = 10_i64.checked_pow(9 - column.scale().min(9))?;
            Some(time_of_day(v.saturating_mul(to_nanos)))
        }),
        "variant" | "object" | "array" => string_at(array, row).map(json_or_text),
        "binary" => match array.data_type() {
            DataType::Binary => Some(Value::Blob(array.as_binary::<i32>().value(row).to_vec())),
            DataType::LargeBinary => {
                Some(Value::Blob(array.as_binary::<i64>().value(row).to_vec()))
            }
            _ => None,
        },
        _ => None,
    };
    converted
        .or_else(|| string_at(array, row).map(|s| Value::Text(s.to_owned())))
        .unwrap_or_else(|| {
            Value::Text(format!(
                "<unsupported {} value of {}>",
                column.type_name(),
                array.data_type()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(kind: &str, scale: u32) -> RowType {
        RowType {
            name: "c".into(),
            kind: kind.into(),
            precision: Some(38),
            scale: Some(scale),
        }
    }

    #[test]
    fn json_cells_keep_their_meaning() {
        assert_eq!(
            from_json_cell(&col("fixed", 0), &json!("42")),
            Value::Int(42)
        );
        assert_eq!(
            from_json_cell(&col("fixed", 0), &json!("123456789012345678901234")),
            Value::Number("123456789012345678901234".into())
        );
        assert_eq!(
            from_json_cell(&col("fixed", 2), &json!("1250.50")),
            Value::Number("1250.50".into())
        );
        assert_eq!(
            from_json_cell(&col("real", 0), &json!("1.5")),
            Value::Float(1.5)
        );
        assert_eq!(
            from_json_cell(&col("boolean", 0), &json!("1")),
            Value::Bool(true)
        );
        assert_eq!(
            from_json_cell(&col("date", 0), &json!("19782")),
            Value::Date("2024-02-29".into())
        );
        assert_eq!(
            from_json_cell(&col("timestamp_ntz", 9), &json!("1704103200.500000000")),
            Value::Timestamp("2024-01-01T10:00:00.500000".into())
        );
        assert_eq!(
            from_json_cell(&col("timestamp_tz", 9), &json!("1704096000.000000000 1560")),
            Value::TimestampTz("2024-01-01T08:00:00.000000Z".into())
        );
        assert_eq!(
            from_json_cell(&col("variant", 0), &json!("{\n  \"a\": 1\n}")),
            Value::json(json!({"a": 1}))
        );
        assert_eq!(from_json_cell(&col("text", 0), &json!(null)), Value::Null);
        assert_eq!(
            from_json_cell(&col("time", 9), &json!("36000.250000000")),
            Value::Text("10:00:00.250000".into())
        );
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(scaled_digits(125050, 2), "1250.50");
        assert_eq!(scaled_digits(-5, 3), "-0.005");
        assert_eq!(fixed(7, 0), Value::Int(7));
    }
}
