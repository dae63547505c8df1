//! What a destination object holds, as `describe` reports it, and the check `validate` and
//! every run's preflight make before anything is sent: each mapped field exists and can take
//! the kind of value its column yields.
//!
//! Types are compared by kind, not by name: a warehouse's `DECIMAL(18,2)` and Salesforce's
//! `currency` are both numbers. The kinds are deliberately coarse so that only a mapping the
//! destination would refuse for every row (text into a number field, a timestamp into a
//! boolean) is reported; anything the destination converts itself (a number into a text field)
//! passes.

use crate::value::Value;

/// The coarse kind of a destination field or a warehouse column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    /// Decimal or floating point.
    Number,
    Boolean,
    Date,
    DateTime,
    /// Objects, arrays, structs, maps.
    Json,
    /// Unknown or accepting anything (the destination converts).
    Any,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
            Kind::Date => "date",
            Kind::DateTime => "timestamp",
            Kind::Json => "JSON",
            Kind::Any => "any",
        }
    }

    /// Whether a field of this kind takes every value a column of kind `column` yields.
    pub fn accepts(self, column: Kind) -> bool {
        use Kind::*;
        match (self, column) {
            (Any, _) | (_, Any) => true,
            // Text fields take any scalar's text; JSON would arrive as its serialization,
            // which is what a data team storing a struct in a text field usually wants.
            (Text, _) => true,
            (Integer, Integer) => true,
            (Number, Integer | Number) => true,
            (Boolean, Boolean) => true,
            // ISO 8601 text is how dates travel in JSON APIs and parses into date columns.
            (Date, Date | Text) => true,
            (DateTime, DateTime | Date | Text) => true,
            (Json, Json | Text) => true,
            _ => false,
        }
    }

    /// The kind of a warehouse column from the type name the warehouse reports (DuckDB,
    /// PostgreSQL, Snowflake and BigQuery spellings).
    pub fn of_column_type(data_type: &str) -> Kind {
        let t = data_type.trim().to_ascii_uppercase();
        // Parameterised types: DECIMAL(18,2), VARCHAR(255), TIMESTAMP(6) WITH TIME ZONE ...
        let base: String = {
            let mut s = String::with_capacity(t.len());
            let mut depth = 0;
            for c in t.chars() {
                match c {
                    '(' | '<' => depth += 1,
                    ')' | '>' => depth -= 1,
                    _ if depth == 0 => s.push(c),
                    _ => {}
                }
            }
            s.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        if base.ends_with("[]") || t.starts_with("STRUCT") || t.starts_with("MAP") {
            return Kind::Json;
        }
        match base.as_str() {
            "TINYINT" | "SMALLINT" | "INTEGER" | "INT" | "BIGINT" | "HUGEINT" | "UTINYINT"
            | "USMALLINT" | "UINTEGER" | "UBIGINT" | "UHUGEINT" | "INT2" | "INT4" | "INT8"
            | "INT64" | "BYTEINT" | "SERIAL" | "BIGSERIAL" | "SMALLSERIAL" => Kind::Integer,
            "DECIMAL" | "NUMERIC" | "NUMBER" | "BIGNUMERIC" | "BIGDECIMAL" | "REAL" | "FLOAT"
            | "FLOAT4" | "FLOAT8" | "FLOAT64" | "DOUBLE" | "DOUBLE PRECISION" => Kind::Number,
            "BOOLEAN" | "BOOL" => Kind::Boolean,
            "DATE" => Kind::Date,
            "TIMESTAMP"
            | "DATETIME"
            | "TIMESTAMPTZ"
            | "TIMESTAMP WITH TIME ZONE"
            | "TIMESTAMP WITHOUT TIME ZONE"
            | "TIMESTAMP_NTZ"
            | "TIMESTAMP_LTZ"
            | "TIMESTAMP_TZ"
            | "TIMESTAMP_S"
            | "TIMESTAMP_MS"
            | "TIMESTAMP_NS" => Kind::DateTime,
            "VARCHAR" | "TEXT" | "STRING" | "CHAR" | "CHARACTER" | "CHARACTER VARYING"
            | "BPCHAR" | "UUID" | "ENUM" | "NAME" | "CITEXT" => Kind::Text,
            "JSON" | "JSONB" | "VARIANT" | "OBJECT" | "ARRAY" | "LIST" | "STRUCT" | "MAP"
            | "UNION" => Kind::Json,
            _ => Kind::Any,
        }
    }

    /// The kind of a literal value mapped in `meta.activate`.
    pub fn of_value(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Any,
            Value::Bool(_) => Kind::Boolean,
            Value::Int(_) => Kind::Integer,
            Value::Number(_) | Value::Float(_) => Kind::Number,
            Value::Text(_) => Kind::Text,
            Value::Date(_) => Kind::Date,
            Value::Timestamp(_) | Value::TimestampTz(_) => Kind::DateTime,
            Value::Json(_) => Kind::Json,
            Value::Blob(_) => Kind::Any,
        }
    }
}

/// One field of a destination object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSchema {
    pub name: String,
    pub kind: Kind,
    /// The destination's own name for the type (`double`, `enumeration`, `timestamptz`),
    /// for messages.
    pub native_type: String,
}

impl FieldSchema {
    pub fn new(name: impl Into<String>, kind: Kind, native_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            native_type: native_type.into(),
        }
    }

    /// A field whose type the destination does not tell.
    pub fn untyped(name: impl Into<String>) -> Self {
        Self::new(name, Kind::Any, "")
    }
}

/// The fields an object has, when the destination can tell.
#[derive(Debug, Clone, Default)]
pub struct ObjectSchema {
    pub fields: Vec<FieldSchema>,
}

impl ObjectSchema {
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }
}

/// One way a mapped field does not fit its destination object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldMismatch {
    Missing {
        field: String,
        closest: Option<String>,
    },
    WrongType {
        field: String,
        field_kind: Kind,
        native_type: String,
        column_kind: Kind,
    },
}

/// Checks mapped fields, each with the kind of value that feeds it, against an object.
pub fn check_fields<'a>(
    schema: &ObjectSchema,
    mapped: impl IntoIterator<Item = (&'a str, Kind)>,
) -> Vec<FieldMismatch> {
    let mut out = Vec::new();
    for (field, column_kind) in mapped {
        match schema.field(field) {
            None => out.push(FieldMismatch::Missing {
                field: field.to_owned(),
                closest: activate_manifest::did_you_mean(field, schema.names()).map(str::to_owned),
            }),
            Some(f) if !f.kind.accepts(column_kind) => out.push(FieldMismatch::WrongType {
                field: field.to_owned(),
                field_kind: f.kind,
                native_type: f.native_type.clone(),
                column_kind,
            }),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_of_every_warehouse_map_to_kinds() {
        for (t, k) in [
            ("BIGINT", Kind::Integer),
            ("HUGEINT", Kind::Integer),
            ("integer", Kind::Integer),
            ("INT64", Kind::Integer),
            ("DECIMAL(18,2)", Kind::Number),
            ("NUMBER(38,0)", Kind::Number),
            ("numeric", Kind::Number),
            ("double precision", Kind::Number),
            ("FLOAT64", Kind::Number),
            ("BOOLEAN", Kind::Boolean),
            ("DATE", Kind::Date),
            ("TIMESTAMP WITH TIME ZONE", Kind::DateTime),
            ("timestamp without time zone", Kind::DateTime),
            ("TIMESTAMP_NTZ(9)", Kind::DateTime),
            ("VARCHAR", Kind::Text),
            ("character varying(255)", Kind::Text),
            ("STRING", Kind::Text),
            ("UUID", Kind::Text),
            ("JSON", Kind::Json),
            ("jsonb", Kind::Json),
            ("VARIANT", Kind::Json),
            ("INTEGER[]", Kind::Json),
            ("STRUCT(a INTEGER, b VARCHAR)", Kind::Json),
            ("ARRAY<STRING>", Kind::Json),
            ("MAP(VARCHAR, INTEGER)", Kind::Json),
            ("GEOGRAPHY", Kind::Any),
        ] {
            assert_eq!(Kind::of_column_type(t), k, "{t}");
        }
    }

    #[test]
    fn a_field_takes_what_it_can_hold_and_refuses_what_it_cannot() {
        assert!(Kind::Text.accepts(Kind::Number));
        assert!(Kind::Number.accepts(Kind::Integer));
        assert!(Kind::DateTime.accepts(Kind::Date));
        assert!(Kind::Any.accepts(Kind::Json));
        assert!(Kind::Boolean.accepts(Kind::Any));
        assert!(!Kind::Number.accepts(Kind::Text));
        assert!(!Kind::Integer.accepts(Kind::Number));
        assert!(!Kind::Boolean.accepts(Kind::Text));
        assert!(!Kind::Date.accepts(Kind::DateTime));
        assert!(Kind::DateTime.accepts(Kind::Text));
        assert!(!Kind::Json.accepts(Kind::Number));
    }

    #[test]
    fn mismatches_name_the_field_and_both_kinds() {
        let schema = ObjectSchema {
            fields: vec![
                FieldSchema::new("Email", Kind::Text, "email"),
                FieldSchema::new("Score__c", Kind::Number, "double"),
            ],
        };
        let found = check_fields(
            &schema,
            [
                ("Email", Kind::Text),
                ("Score__c", Kind::Text),
                ("Emial", Kind::Text),
            ],
        );
        assert_eq!(
            found,
            vec![
                FieldMismatch::WrongType {
                    field: "Score__c".into(),
                    field_kind: Kind::Number,
                    native_type: "double".into(),
                    column_kind: Kind::Text,
                },
                FieldMismatch::Missing {
                    field: "Emial".into(),
                    closest: Some("Email".into()),
                },
            ]
        );
    }
}
