//! Reading DuckDB's result chunks column by column: each chunk arrives as Arrow arrays, so a
//! column's type is matched and its array downcast once per chunk, not once per cell.
//! Converts exactly as the cell-by-cell [`super::convert`] does (a test compares them).

use duckdb::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float32Array, Float64Array,
    LargeBinaryArray, PrimitiveArray, StructArray,
};
use duckdb::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit as ArrowUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

use super::ReadAs;
use crate::value::{self, Value};

/// Whether every column's Arrow type is one [`append_rows`] converts.
pub(super) fn supported(types: &[DataType]) -> bool {
    types.iter().all(|t| {
        matches!(
            t,
            DataType::Boolean
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float32
                | DataType::Float64
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Date32
                | DataType::Timestamp(_, _)
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::Null
        )
    })
}

/// Appends the chunk's rows to `rows`, converted column by column.
pub(super) fn append_rows(chunk: &StructArray, how: &[ReadAs], rows: &mut Vec<Vec<Value>>) {
    let first = rows.len();
    let n = chunk.len();
    rows.extend((0..n).map(|_| Vec::with_capacity(how.len())));
    let rows = &mut rows[first..];
    for (column, how) in chunk.columns().iter().zip(how) {
        append_column(column, *how, rows);
    }
}

/// Pushes each value of `column` (converted with `convert`, NULL as [`Value::Null`]) onto
/// its row.
fn push_each<A: Array>(
    column: &A,
    rows: &mut [Vec<Value>],
    mut convert: impl FnMut(&A, usize) -> Value,
) {
    for (i, row) in rows.iter_mut().enumerate() {
        row.push(if column.is_null(i) {
            Value::Null
        } else {
            convert(column, i)
        });
    }
}

fn push_ints<T: ArrowPrimitiveType>(column: &ArrayRef, rows: &mut [Vec<Value>])
where
    T::Native: Into<i64>,
{
    let column: &PrimitiveArray<T> = column.as_primitive();
    push_each(column, rows, |c, i| Value::Int(c.value(i).into()));
}

fn push_timestamps<T: ArrowPrimitiveType<Native = i64>>(
    column: &ArrayRef,
    unit: ArrowUnit,
    with_zone: bool,
    rows: &mut [Vec<Value>],
) {
    let column: &PrimitiveArray<T> = column.as_primitive();
    push_each(column, rows, |c, i| {
        let micros = super::micros(super::unit_of(unit), c.value(i));
        let text = value::format_timestamp_micros(micros, with_zone);
        if with_zone {
            Value::TimestampTz(text)
        } else {
            Value::Timestamp(text)
        }
    });
}

fn text_value(text: &str, how: ReadAs) -> Value {
    match how {
        ReadAs::NumberText => Value::Number(text.to_owned()),
        ReadAs::JsonText => match serde_json::from_str(text) {
            Ok(json) => Value::json(json),
            Err(_) => Value::Text(text.to_owned()),
        },
        _ => Value::Text(text.to_owned()),
    }
}

fn append_column(column: &ArrayRef, how: ReadAs, rows: &mut [Vec<Value>]) {
    match column.data_type() {
        DataType::Boolean => {
            let c: &BooleanArray = column.as_boolean();
            push_each(c, rows, |c, i| Value::Bool(c.value(i)));
        }
        DataType::Int8 => push_ints::<Int8Type>(column, rows),
        DataType::Int16 => push_ints::<Int16Type>(column, rows),
        DataType::Int32 => push_ints::<Int32Type>(column, rows),
        DataType::Int64 => push_ints::<Int64Type>(column, rows),
        DataType::UInt8 => push_ints::<UInt8Type>(column, rows),
        DataType::UInt16 => push_ints::<UInt16Type>(column, rows),
        DataType::UInt32 => push_ints::<UInt32Type>(column, rows),
        DataType::UInt64 => {
            let c: &PrimitiveArray<UInt64Type> = column.as_primitive();
            push_each(c, rows, |c, i| Value::Number(c.value(i).to_string()));
        }
        DataType::Float32 => {
            let c: &Float32Array = column.as_primitive();
            push_each(c, rows, |c, i| {
                let f = c.value(i);
                Value::Float(f.to_string().parse().unwrap_or(f64::from(f)))
            });
        }
        DataType::Float64 => {
            let c: &Float64Array = column.as_primitive();
            push_each(c, rows, |c, i| Value::Float(c.value(i)));
        }
        DataType::Utf8 => {
            push_each(column.as_string::<i32>(), rows, |c, i| {
                text_value(c.value(i), how)
            });
        }
        DataType::LargeUtf8 => {
            push_each(column.as_string::<i64>(), rows, |c, i| {
                text_value(c.value(i), how)
            });
        }
        DataType::Utf8View => {
            push_each(column.as_string_view(), rows, |c, i| {
                text_value(c.value(i), how)
            });
        }
        DataType::Date32 => {
            let c: &PrimitiveArray<Date32Type> = column.as_primitive();
            push_each(c, rows, |c, i| {
                Value::Date(value::format_date_days(c.value(i)))
            });
        }
        DataType::Timestamp(unit, _) => {
            let with_zone = matches!(how, ReadAs::TimestampTz);
            match unit {
                ArrowUnit::Second => {
                    push_timestamps::<TimestampSecondType>(column, *unit, with_zone, rows)
                }
                ArrowUnit::Millisecond => {
                    push_timestamps::<TimestampMillisecondType>(column, *unit, with_zone, rows)
                }
                ArrowUnit::Microsecond => {
                    push_timestamps::<TimestampMicrosecondType>(column, *unit, with_zone, rows)
                }
                ArrowUnit::Nanosecond => {
                    push_timestamps::<TimestampNanosecondType>(column, *unit, with_zone, rows)
                }
            }
        }
        DataType::Binary => {
            let c: &BinaryArray = column.as_binary();
            push_each(c, rows, |c, i| Value::Blob(c.value(i).to_vec()));
        }
        DataType::LargeBinary => {
            let c: &LargeBinaryArray = column.as_binary();
            push_each(c, rows, |c, i| Value::Blob(c.value(i).to_vec()));
        }
        // `supported` admits no other type; a NULL-typed column is all NULL.
        _ => {
            for row in rows.iter_mut() {
                row.push(Value::Null);
            }
        }
    }
}
