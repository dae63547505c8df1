//! A sync resolved against the warehouse: which columns to read, which destination fields
//! they become, where the key and the cursor are. Built by the zero-row probe before anything
//! is sent anywhere.

use activate_manifest::{ActivationSpec, MappingSource, did_you_mean};

use crate::value::Value;
use crate::warehouse::ColumnDesc;

/// Where one destination field's value comes from.
#[derive(Debug, Clone)]
pub enum FieldSource {
    /// Index into the columns read.
    Column(usize),
    Literal(Value),
    /// A per-row template over the row's columns.
    Template(String),
}

#[derive(Debug, Clone)]
pub struct SyncDefinition {
    pub spec: ActivationSpec,
    /// `sync.<project>.<name>`
    pub unique_id: String,
    /// The model's relation, as dbt named it in the manifest.
    pub relation: String,
    pub read_columns: Vec<ColumnDesc>,
    /// Positions of `primary_key` in `read_columns`.
    pub key_columns: Vec<usize>,
    pub cursor_column: Option<usize>,
    /// Destination fields in order; always includes the `match_on` fields.
    pub fields: Vec<String>,
    pub field_sources: Vec<FieldSource>,
    /// Positions of `match_on` in `fields`.
    pub key_positions: Vec<usize>,
}

impl SyncDefinition {
    /// Resolves a spec against the relation's actual columns. Errors name the model, the
    /// schema file and the missing column, with the closest column as a hint.
    pub fn resolve(
        spec: &ActivationSpec,
        unique_id: String,
        relation: String,
        columns: &[ColumnDesc],
    ) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let find = |name: &str| -> Option<usize> {
            columns.iter().position(|c| c.name == name).or_else(|| {
                columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(name))
            })
        };
        let missing = |what: &str, name: &str| -> String {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            let hint = match did_you_mean(name, names.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("the model returns: {}", names.join(", ")),
            };
            match spec.query {
                Some(_) => format!(
                    "sync `{}` (activate.yml), {what}: column `{name}` is not returned by its query\n  hint: {hint}",
                    spec.name
                ),
                None => format!(
                    "model `{}` ({}), meta.activate.{what}: column `{name}` is not returned by {relation}\n  hint: {hint}",
                    spec.model_name, spec.defined_in
                ),
            }
        };

        let mut read_columns: Vec<ColumnDesc> = Vec::new();
        let read = |index: usize, read_columns: &mut Vec<ColumnDesc>| -> usize {
            match read_columns
                .iter()
                .position(|c| c.name == columns[index].name)
            {
                Some(i) => i,
                None => {
                    read_columns.push(columns[index].clone());
                    read_columns.len() - 1
                }
            }
        };

        let mut fields = Vec::new();
        let mut field_sources = Vec::new();
        let has_template = spec
            .mapping
            .iter()
            .flatten()
            .any(|m| matches!(m.source, MappingSource::Template(_)));
        if has_template {
            // Templates may use any column: read them all.
            for i in 0..columns.len() {
                read(i, &mut read_columns);
            }
        }
        match &spec.mapping {
            None => {
                for (i, c) in columns.iter().enumerate() {
                    let at = read(i, &mut read_columns);
                    fields.push(c.name.clone());
                    field_sources.push(FieldSource::Column(at));
                }
            }
            Some(mapping) => {
                for m in mapping {
                    let source = match &m.source {
                        MappingSource::Column(name) => match find(name) {
                            Some(i) => FieldSource::Column(read(i, &mut read_columns)),
                            None => {
                                errors.push(missing(&format!("mapping.{name}"), name));
                                continue;
                            }
                        },
                        MappingSource::Literal(text) => {
                            FieldSource::Literal(Value::Text(text.clone()))
                        }
                        MappingSource::Template(t) => {
                            if let Err(e) = minijinja::Environment::new().template_from_str(t) {
                                errors.push(format!(
                                    "{} `{}` ({}), mapping: the template `{t}` for field `{}` does not parse: {e}",
                                    if spec.query.is_some() { "sync" } else { "model" },
                                    spec.model_name,
                                    spec.defined_in,
                                    m.field
                                ));
                                continue;
                            }
                            FieldSource::Template(t.clone())
                        }
                    };
                    fields.push(m.field.clone());
                    field_sources.push(source);
                }
            }
        }

        let mut key_columns = Vec::new();
        for pk in &spec.primary_key {
            match find(pk) {
                Some(i) => key_columns.push(read(i, &mut read_columns)),
                None => errors.push(missing("primary_key", pk)),
            }
        }
        let cursor_column = match &spec.cursor {
            Some(c) => match find(c) {
                Some(i) => Some(read(i, &mut read_columns)),
                None => {
                    errors.push(missing("cursor", c));
                    None
                }
            },
            None => None,
        };

        // The key fields are always sent, from the key columns, even when the mapping omits them.
        let mut key_positions = Vec::new();
        // Without a mapping the fields are the column names, which a key names as a column
        // would be found: exactly, else but for case (`primary_key: ID` on Snowflake's `id`).
        for (n, field) in spec.match_on.iter().enumerate() {
            let position = fields.iter().position(|f| f == field).or_else(|| {
                spec.mapping
                    .is_none()
                    .then(|| fields.iter().position(|f| f.eq_ignore_ascii_case(field)))
                    .flatten()
            });
            match position {
                Some(p) => key_positions.push(p),
                None => {
                    if let Some(&col) = key_columns.get(n) {
                        fields.push(field.clone());
                        field_sources.push(FieldSource::Column(col));
                        key_positions.push(fields.len() - 1);
                    }
                }
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            spec: spec.clone(),
            unique_id,
            relation,
            read_columns,
            key_columns,
            cursor_column,
            fields,
            field_sources,
            key_positions,
        })
    }

    /// Fields that are not part of the key (what `on_delete: clear` nulls).
    pub fn non_key_positions(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.fields.len()).filter(|i| !self.key_positions.contains(i))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::test_support::activation_spec as spec;

    fn columns(names: &[&str]) -> Vec<ColumnDesc> {
        let typed: Vec<(&str, &str)> = names.iter().map(|n| (*n, "VARCHAR")).collect();
        crate::test_support::columns(&typed)
    }

    #[test]
    fn without_a_mapping_a_key_named_in_another_case_is_the_column_field_not_a_second_one() {
        let spec = spec(json!({"destination": "d", "object": "o", "primary_key": "ID"}));
        let def =
            SyncDefinition::resolve(&spec, "s".into(), "m".into(), &columns(&["id", "email"]))
                .unwrap();
        assert_eq!(def.fields, ["id", "email"]);
        assert_eq!(def.key_positions, [0]);
    }

    #[test]
    fn with_a_mapping_the_key_field_is_added_as_named() {
        let spec = spec(
            json!({"destination": "d", "object": "o", "primary_key": "id",
            "mapping": {"email": "Email"}}),
        );
        let def =
            SyncDefinition::resolve(&spec, "s".into(), "m".into(), &columns(&["id", "email"]))
                .unwrap();
        assert_eq!(def.fields, ["Email", "id"]);
        assert_eq!(def.key_positions, [1]);
    }
}
