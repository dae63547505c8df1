//! What a message says: per-row text and Block Kit from templates, or a digest of a batch.

use minijinja::{Environment, UndefinedBehavior};

use super::config::{MAX_DIGEST_ROWS, Settings};
use crate::destination::{Record, WriteBatch};
use crate::error::ConfigError;

/// Slack truncates `text` above 40,000 characters.
pub(super) const MAX_TEXT_CHARS: usize = 40_000;
/// A section block's text holds at most 3,000 characters.
const MAX_SECTION_CHARS: usize = 3_000;
/// A header block's text holds at most 150 characters.
const MAX_HEADER_CHARS: usize = 150;

/// One message to post.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Message {
    pub text: String,
    pub blocks: Option<serde_json::Value>,
    /// The batch rows this message carries (indices into the batch's records).
    pub rows: Vec<usize>,
}

/// The templates of a destination, checked when `activate.yml` is read.
pub(super) struct Templates {
    env: Environment<'static>,
    text: Option<String>,
    blocks: Option<serde_json::Value>,
    digest_title: Option<String>,
}

impl Templates {
    pub fn new(settings: &Settings, site: &str) -> Result<Self, ConfigError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("tojson", |v: minijinja::Value| {
            serde_json::to_string(&v).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })
        });
        let check = |key: &str, source: &str| -> Result<(), ConfigError> {
            env.template_from_str(source).map(|_| ()).map_err(|e| {
                ConfigError::new(format!("{site}: `{key}` is not a valid template: {e}"))
                    .with_hint("in activate.yml, wrap row templates in {% raw %}...{% endraw %} so they are kept for each row instead of being rendered when the file is read")
            })
        };
        if let Some(t) = &settings.text_template {
            check("text_template", t)?;
        }
        if let Some(t) = &settings.digest_title {
            check("digest_title", t)?;
        }
        if let Some(blocks) = &settings.blocks_template {
            let mut problem = None;
            visit_strings(blocks, &mut |s| {
                if problem.is_none() {
                    problem = check("blocks_template", s).err();
                }
            });
            if let Some(p) = problem {
                return Err(p);
            }
        }
        Ok(Self {
            text: settings.text_template.clone(),
            blocks: settings.blocks_template.clone(),
            digest_title: settings.digest_title.clone(),
            env,
        })
    }

    /// The message of one row, or why it cannot be made.
    pub fn per_row(
        &self,
        batch: &WriteBatch<'_>,
        index: usize,
        record: &Record,
    ) -> Result<Message, String> {
        let ctx = row_context(batch.fields, record);
        let text = self.row_text(batch.fields, record, &ctx)?;
        let blocks = match &self.blocks {
            None => None,
            Some(serde_json::Value::String(source)) => {
                let json = self.render("blocks_template", source, &ctx)?;
                let parsed: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
                    format!(
                        "blocks_template did not produce JSON ({e}): {}",
                        excerpt(&json)
                    )
                })?;
                Some(match parsed {
                    serde_json::Value::Object(mut o) if o.contains_key("blocks") => {
                        o.remove("blocks").unwrap_or_default()
                    }
                    other => other,
                })
            }
            Some(tree) => Some(self.render_tree(tree, &ctx)?),
        };
        Ok(Message {
            text,
            blocks,
            rows: vec![index],
        })
    }

    /// Digest messages for a batch: a header, one line per row and a count, split so that
    /// no message passes Slack's 50 blocks or 40,000 characters.
    pub fn digest(&self, batch: &WriteBatch<'_>) -> Vec<Result<Message, (Vec<usize>, String)>> {
        let mut out = Vec::new();
        let mut lines: Vec<(usize, String)> = Vec::with_capacity(batch.records.len());
        for (i, record) in batch.records.iter().enumerate() {
            let ctx = row_context(batch.fields, record);
            match self.row_text(batch.fields, record, &ctx) {
                Ok(text) => lines.push((i, truncate(&text, MAX_SECTION_CHARS))),
                Err(e) => out.push(Err((vec![i], e))),
            }
        }
        // Group rows so that each message stays within the limits, with room for the title.
        let mut groups: Vec<Vec<(usize, String)>> = Vec::new();
        let mut size = 0usize;
        for line in lines {
            let len = line.1.chars().count() + 3;
            let full = groups.last().is_none_or(|g| {
                g.len() >= MAX_DIGEST_ROWS || size + len > MAX_TEXT_CHARS - MAX_HEADER_CHARS - 200
            });
            if full {
                groups.push(Vec::new());
                size = 0;
            }
            size += len;
            if let Some(g) = groups.last_mut() {
                g.push(line);
            }
        }
        for group in groups {
            let rows: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
            match self.digest_message(batch, &group) {
                Ok(m) => out.push(Ok(m)),
                Err(e) => out.push(Err((rows, e))),
            }
        }
        out
    }

    fn digest_message(
        &self,
        batch: &WriteBatch<'_>,
        group: &[(usize, String)],
    ) -> Result<Message, String> {
        let count = group.len();
        let title = match &self.digest_title {
            Some(t) => self.render(
                "digest_title",
                t,
                &minijinja::context! { count => count, object => batch.object, sync => batch.sync },
            )?,
            None => format!(
                "{count} new {} for {}",
                if count == 1 { "row" } else { "rows" },
                batch.object
            ),
        };
        let title = truncate(&title, MAX_HEADER_CHARS);
        let mut text = title.clone();
        let mut blocks = vec![serde_json::json!({
            "type": "header",
            "text": {"type": "plain_text", "text": title},
        })];
        for (_, line) in group {
            text.push_str("\n• ");
            text.push_str(line);
            blocks.push(serde_json::json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": if line.is_empty() { " " } else { line.as_str() }},
            }));
        }
        blocks.push(serde_json::json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("{count} {} · {}", if count == 1 { "row" } else { "rows" }, batch.sync)}],
        }));
        Ok(Message {
            text,
            blocks: Some(serde_json::Value::Array(blocks)),
            rows: group.iter().map(|(i, _)| *i).collect(),
        })
    }

    /// `text_template`, else the `text` field, else `field: value` lines.
    fn row_text(
        &self,
        fields: &[String],
        record: &Record,
        ctx: &minijinja::Value,
    ) -> Result<String, String> {
        if let Some(t) = &self.text {
            return self.render("text_template", t, ctx);
        }
        if let Some(i) = fields.iter().position(|f| f == "text") {
            return Ok(record.values[i].to_text().unwrap_or_default());
        }
        Ok(fields
            .iter()
            .zip(&record.values)
            .map(|(f, v)| format!("{f}: {}", v.to_text().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    fn render(&self, key: &str, source: &str, ctx: &minijinja::Value) -> Result<String, String> {
        self.env.render_str(source, ctx.clone()).map_err(|e| {
            format!(
                "{key}: {}",
                e.detail()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.to_string())
            )
        })
    }

    /// Renders every string of a Block Kit tree as a template.
    fn render_tree(
        &self,
        tree: &serde_json::Value,
        ctx: &minijinja::Value,
    ) -> Result<serde_json::Value, String> {
        Ok(match tree {
            serde_json::Value::String(s) => {
                serde_json::Value::String(self.render("blocks_template", s, ctx)?)
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|v| self.render_tree(v, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (k, v) in map {
                    out.insert(k.clone(), self.render_tree(v, ctx)?);
                }
                serde_json::Value::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// A row as a template context: each mapped field by name, and all of them as `fields`.
fn row_context(fields: &[String], record: &Record) -> minijinja::Value {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .zip(&record.values)
        .map(|(f, v)| (f.clone(), v.to_json()))
        .collect();
    let mut ctx = map.clone();
    ctx.insert("fields".to_owned(), serde_json::Value::Object(map));
    minijinja::Value::from_serialize(&ctx)
}

fn visit_strings(value: &serde_json::Value, f: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| visit_strings(v, f)),
        serde_json::Value::Object(map) => map.values().for_each(|v| visit_strings(v, f)),
        _ => {}
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn excerpt(text: &str) -> String {
    crate::destination::http::excerpt(text)
}
