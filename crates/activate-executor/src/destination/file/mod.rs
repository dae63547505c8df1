//! `file`: JSONL or CSV files, for local runs and debugging.
//!
//! Keeps `<path>/<object>.<format>` equal to what was synced (rewritten atomically after every
//! batch) and appends every delete to `<path>/<object>.deletes.jsonl`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::connections::DestinationConfig;
use crate::destination::{
    BatchOutcome, Capabilities, Destination, ObjectSchema, WriteBatch, WriteOp, check_keys,
    setting_str,
};
use crate::error::{ConfigError, DestinationError};
use crate::value::Value;

const KEYS: &[&str] = &["path", "format"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// One field of a stored record: its JSON text exactly as written (decimals keep their digits).
type Field = (String, String);

/// One object's records: key (JSON of the key values as text) -> fields in order.
#[derive(Default)]
struct ObjectFile {
    records: BTreeMap<String, Vec<Field>>,
}

/// The CSV cell for a field's JSON text: strings unquoted, null empty, the rest as written.
fn cell_text(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => String::new(),
        _ => json.to_owned(),
    }
}

pub struct FileDestination {
    dir: PathBuf,
    format: Format,
    objects: Mutex<BTreeMap<String, ObjectFile>>,
}

impl FileDestination {
    pub fn from_config(
        config: &DestinationConfig,
        project_dir: &Path,
    ) -> Result<Self, ConfigError> {
        check_keys(config, KEYS)?;
        let path = setting_str(config, "path")?.ok_or_else(|| {
            ConfigError::new(format!("{}: `path` (a folder) is required", config.site()))
        })?;
        let format = match setting_str(config, "format")?.unwrap_or("jsonl") {
            "jsonl" => Format::Jsonl,
            "csv" => Format::Csv,
            other => {
                return Err(ConfigError::new(format!(
                    "{}: unknown format `{other}`",
                    config.site()
                ))
                .with_hint("format: jsonl or csv"));
            }
        };
        let dir = PathBuf::from(path);
        let dir = if dir.is_absolute() {
            dir
        } else {
            project_dir.join(dir)
        };
        Ok(Self {
            dir,
            format,
            objects: Mutex::new(BTreeMap::new()),
        })
    }

    fn file_of(&self, object: &str) -> PathBuf {
        self.dir.join(format!(
            "{}.{}",
            safe_file_name(object),
            self.format.extension()
        ))
    }

    fn load(&self, object: &str, key_fields: &[String]) -> Result<ObjectFile, DestinationError> {
        let path = self.file_of(object);
        let mut file = ObjectFile::default();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(file),
            Err(e) => {
                return Err(DestinationError::new(format!(
                    "could not read {}: {e}",
                    path.display()
                )));
            }
        };
        let bad = |why: String| {
            DestinationError::new(format!(
                "{} is not a file this destination wrote: {why}",
                path.display()
            ))
        };
        match self.format {
            Format::Jsonl => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let map: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
                    let raw: BTreeMap<String, Box<serde_json::value::RawValue>> =
                        serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
                    let fields: Vec<Field> = map
                        .keys()
                        .map(|k| {
                            (
                                k.clone(),
                                raw.get(k)
                                    .map(|r| r.get().to_owned())
                                    .unwrap_or_else(|| "null".into()),
                            )
                        })
                        .collect();
                    file.records.insert(key_text(key_fields, &fields), fields);
                }
            }
            Format::Csv => {
                let mut reader = csv::Reader::from_reader(text.as_bytes());
                let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
                for row in reader.records() {
                    let row = row.map_err(|e| bad(e.to_string()))?;
                    let fields: Vec<Field> = headers
                        .iter()
                        .zip(row.iter())
                        .map(|(h, v)| {
                            let json = if v.is_empty() {
                                "null".to_owned()
                            } else {
                                serde_json::Value::String(v.to_owned()).to_string()
                            };
                            (h.to_owned(), json)
                        })
                        .collect();
                    file.records.insert(key_text(key_fields, &fields), fields);
                }
            }
        }
        Ok(file)
    }

    fn save(&self, object: &str, file: &ObjectFile) -> Result<(), DestinationError> {
        let path = self.file_of(object);
        let mut out = Vec::new();
        match self.format {
            Format::Jsonl => {
                for fields in file.records.values() {
                    let mut line = String::from("{");
                    for (i, (k, v)) in fields.iter().enumerate() {
                        if i > 0 {
                            line.push(',');
                        }
                        crate::value::write_json_string(&mut line, k);
                        line.push(':');
                        line.push_str(v);
                    }
                    line.push_str("}\n");
                    out.extend_from_slice(line.as_bytes());
                }
            }
            Format::Csv => {
                let mut header: Vec<String> = Vec::new();
                for fields in file.records.values() {
                    for (k, _) in fields {
                        if !header.contains(k) {
                            header.push(k.clone());
                        }
                    }
                }
                let mut writer = csv::Writer::from_writer(&mut out);
                writer
                    .write_record(&header)
                    .map_err(|e| DestinationError::new(e.to_string()))?;
                for fields in file.records.values() {
                    let row: Vec<String> = header
                        .iter()
                        .map(|h| {
                            fields
                                .iter()
                                .find(|(k, _)| k == h)
                                .map(|(_, v)| cell_text(v))
                                .unwrap_or_default()
                        })
                        .collect();
                    writer
                        .write_record(&row)
                        .map_err(|e| DestinationError::new(e.to_string()))?;
                }
                writer
                    .flush()
                    .map_err(|e| DestinationError::new(e.to_string()))?;
            }
        }
        write_atomically(&path, &out)
            .map_err(|e| DestinationError::new(format!("could not write {}: {e}", path.display())))
    }

    fn log_deletes(&self, object: &str, keys: &[String]) -> Result<(), DestinationError> {
        let path = self
            .dir
            .join(format!("{}.deletes.jsonl", safe_file_name(object)));
        let now = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let mut text = String::new();
        for key in keys {
            text.push_str(&format!("{{\"key\":{key},\"deleted_at\":\"{now}\"}}\n"));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                DestinationError::new(format!("could not open {}: {e}", path.display()))
            })?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| {
                DestinationError::new(format!("could not append to {}: {e}", path.display()))
            })
    }
}

/// Keys compare as text (CSV reads every value back as text), so both formats agree.
fn key_text(key_fields: &[String], fields: &[Field]) -> String {
    let values: Vec<serde_json::Value> = key_fields
        .iter()
        .map(|k| match fields.iter().find(|(f, _)| f == k) {
            Some((_, json)) => serde_json::Value::String(cell_text(json)),
            None => serde_json::Value::Null,
        })
        .collect();
    serde_json::Value::Array(values).to_string()
}

fn safe_file_name(object: &str) -> String {
    object
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Write to a temporary file in the same folder, fsync, rename over the target.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |out| out.write_all(bytes))
}

/// [`write_atomically`], with the content written by `write` through a buffer (a large file
/// is never held whole in memory).
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp).and_then(|f| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
        write(&mut out)?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // Disk full, quota: the old file stays whole; no half-written temporary is left.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[async_trait]
impl Destination for FileDestination {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn identity(&self) -> String {
        format!("{} ({})", self.dir.display(), self.format.extension())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_rows: 50_000,
        }
    }

    async fn health_check(&self) -> Result<(), DestinationError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            DestinationError::new(format!("cannot create {}: {e}", self.dir.display()))
        })
    }

    async fn describe(&self, _object: &str) -> Result<Option<ObjectSchema>, DestinationError> {
        Ok(None)
    }

    async fn write(&self, batch: &WriteBatch<'_>) -> Result<BatchOutcome, DestinationError> {
        let key_fields: Vec<String> = batch
            .key_positions
            .iter()
            .map(|&i| batch.fields[i].clone())
            .collect();
        let mut objects = self.objects.lock().await;
        if !objects.contains_key(batch.object) {
            let loaded = self.load(batch.object, &key_fields)?;
            objects.insert(batch.object.to_owned(), loaded);
        }
        let Some(file) = objects.get_mut(batch.object) else {
            return Err(DestinationError::new("file state vanished"));
        };
        let mut outcome = BatchOutcome::default();
        let mut deleted = Vec::new();
        for (i, record) in batch.records.iter().enumerate() {
            let fields: Vec<Field> = batch
                .fields
                .iter()
                .zip(&record.values)
                .map(|(f, v)| (f.clone(), v.to_json_string()))
                .collect();
            let key = key_text(&key_fields, &fields);
            let exists = file.records.contains_key(&key);
            match batch.op {
                WriteOp::Upsert => {
                    file.records.insert(key, fields);
                }
                WriteOp::Insert if exists => outcome
                    .rejected
                    .push((i, "a record with this key already exists".into())),
                WriteOp::Insert => {
                    file.records.insert(key, fields);
                }
                WriteOp::Update | WriteOp::Clear if !exists => {
                    if batch.op == WriteOp::Update {
                        outcome
                            .rejected
                            .push((i, "no record with this key exists".into()));
                    }
                }
                WriteOp::Update | WriteOp::Clear => {
                    if let Some(existing) = file.records.get_mut(&key) {
                        for (f, v) in fields {
                            match existing.iter_mut().find(|(k, _)| *k == f) {
                                Some(slot) => slot.1 = v,
                                None => existing.push((f, v)),
                            }
                        }
                    }
                }
                WriteOp::Delete => {
                    if file.records.remove(&key).is_some() || !exists {
                        let values: Vec<String> =
                            record.values.iter().map(Value::to_json_string).collect();
                        deleted.push(format!("[{}]", values.join(",")));
                    }
                }
            }
        }
        self.save(batch.object, file)?;
        if !deleted.is_empty() {
            self.log_deletes(batch.object, &deleted)?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::Record;

    fn dest(dir: &Path, format: &str) -> FileDestination {
        FileDestination::from_config(
            &DestinationConfig {
                name: "f".into(),
                kind: "file".into(),
                settings: serde_json::json!({"path": "out", "format": format})
                    .as_object()
                    .unwrap()
                    .clone(),
                file: "activate.yml".into(),
            },
            dir,
        )
        .unwrap()
    }

    async fn write(
        d: &FileDestination,
        op: WriteOp,
        fields: &[String],
        rows: Vec<Vec<Value>>,
    ) -> BatchOutcome {
        let records: Vec<Record> = rows.into_iter().map(|values| Record { values }).collect();
        d.write(&WriteBatch {
            sync: "s",
            object: "obj",
            op,
            fields,
            key_positions: &[0],
            records: &records,
            keys_new_to_state: false,
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn file_equals_what_was_synced_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let fields = vec!["id".to_owned(), "mrr".to_owned()];
        for format in ["jsonl", "csv"] {
            let d = dest(dir.path(), format);
            write(
                &d,
                WriteOp::Upsert,
                &fields,
                vec![
                    vec![Value::Text("a".into()), Value::Number("10.50".into())],
                    vec![Value::Text("b".into()), Value::Null],
                ],
            )
            .await;
            // A new run (a new destination value) loads what is there.
            let d = dest(dir.path(), format);
            let out = write(
                &d,
                WriteOp::Insert,
                &fields,
                vec![vec![Value::Text("a".into()), Value::Int(1)]],
            )
            .await;
            assert_eq!(
                out.rejected.len(),
                1,
                "insert of an existing key is rejected"
            );
            let out = write(
                &d,
                WriteOp::Update,
                &fields,
                vec![vec![Value::Text("zz".into()), Value::Int(1)]],
            )
            .await;
            assert_eq!(out.rejected.len(), 1, "update of a missing key is rejected");
            write(
                &d,
                WriteOp::Delete,
                &fields[..1],
                vec![vec![Value::Text("b".into())]],
            )
            .await;
            let text =
                std::fs::read_to_string(dir.path().join(format!("out/obj.{format}"))).unwrap();
            match format {
                "jsonl" => assert_eq!(text, "{\"id\":\"a\",\"mrr\":10.50}\n"),
                _ => assert_eq!(text, "id,mrr\na,10.50\n"),
            }
            let deletes =
                std::fs::read_to_string(dir.path().join("out/obj.deletes.jsonl")).unwrap();
            assert!(
                deletes
                    .lines()
                    .last()
                    .unwrap()
                    .starts_with("{\"key\":[\"b\"]"),
                "{deletes}"
            );
        }
    }
}
