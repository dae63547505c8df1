//! `postgres`: an operational PostgreSQL table.
//!
//! Each batch is loaded with COPY into a temporary staging table, then applied with one
//! statement (`INSERT ... ON CONFLICT (match_on) DO UPDATE`, `UPDATE ... FROM`, `DELETE ...
//! USING`) in one transaction. A batch that fails on its data is split in halves until the bad
//! rows are found: the good rows land and each bad row is rejected with the database's error.
//! A COPY's rows are sent in pieces, so the server parses one piece while the next is encoded,
//! in the binary format where every column's type and value has an exact binary form
//! ([`binary`]), else as text.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::SinkExt;
use tokio::sync::Mutex;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use crate::connections::DestinationConfig;
use crate::destination::{
    BatchOutcome, Capabilities, Destination, FieldSchema, Kind, ObjectSchema, WriteBatch, WriteOp,
    check_keys, setting_str, setting_u64,
};
use crate::error::{ConfigError, DestinationError};
use crate::secrets;
use crate::value::Value;
use crate::warehouse::quote_ident;

mod binary;

const KEYS: &[&str] = &[
    "url",
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "database",
    "schema",
    "batch_size",
    "connect_timeout_seconds",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
];

#[derive(Debug, Clone)]
struct Column {
    name: String,
    data_type: String,
}

pub struct PostgresDestination {
    config: tokio_postgres::Config,
    /// `None` for `sslmode: disable` / `allow`.
    tls: Option<crate::postgres_tls::RustlsConnect>,
    location: String,
    schema: String,
    batch_size: usize,
    idle: Mutex<Vec<Client>>,
    tables: Mutex<BTreeMap<String, Vec<Column>>>,
}

/// A failure of one attempt: row data (split and retry), the connection/statement as a whole,
/// or a value the binary COPY format does not encode (the same rows again, as text).
enum Failure {
    Data(String),
    Fatal(String),
    NotBinary,
}

/// The destination columns a batch's fields go to: their types (`information_schema`), and
/// their binary encoders when every one has one.
struct CopyColumns {
    types: Vec<String>,
    binary: Option<Vec<binary::ColumnType>>,
}

impl CopyColumns {
    fn new(types: Vec<String>) -> Self {
        let binary = types.iter().map(|t| binary::ColumnType::of(t)).collect();
        CopyColumns { types, binary }
    }

    /// The formats to try in turn: binary first when every column has an encoder.
    fn formats(&self) -> impl Iterator<Item = CopyFormat<'_>> {
        let binary = self.binary.as_deref().map(CopyFormat::Binary);
        binary
            .into_iter()
            .chain(std::iter::once(CopyFormat::Text(&self.types)))
    }
}

/// How a COPY's rows are encoded.
#[derive(Clone, Copy)]
enum CopyFormat<'a> {
    Binary(&'a [binary::ColumnType]),
    Text(&'a [String]),
}

impl CopyFormat<'_> {
    /// The COPY statement's option for this format.
    fn option(&self) -> &'static str {
        match self {
            CopyFormat::Binary(_) => " (FORMAT binary)",
            CopyFormat::Text(_) => "",
        }
    }
}

/// Loopback addresses and Unix sockets, where traffic never leaves the machine.
fn is_local(host: &str) -> bool {
    host.starts_with('/')
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl PostgresDestination {
    pub fn from_config(config: &DestinationConfig) -> Result<Self, ConfigError> {
        check_keys(config, KEYS)?;
        let mut pg = match setting_str(config, "url")? {
            Some(url) if !url.is_empty() => url.parse::<tokio_postgres::Config>().map_err(|e| {
                ConfigError::new(format!(
                    "{}: `url` is not a valid postgres:// URI: {}",
                    config.site(),
                    secrets::redact(&e.to_string())
                ))
            })?,
            _ => {
                let mut c = tokio_postgres::Config::new();
                c.host(setting_str(config, "host")?.unwrap_or("localhost"));
                c.port(setting_u64(config, "port")?.unwrap_or(5432) as u16);
                if let Some(user) = setting_str(config, "user")? {
                    c.user(user);
                } else {
                    return Err(ConfigError::new(format!(
                        "{}: give `url`, or `host`, `user`, `password` and `dbname`",
                        config.site()
                    )));
                }
                if let Some(pw) = setting_str(config, "password")? {
                    c.password(pw);
                }
                if let Some(db) =
                    setting_str(config, "dbname")?.or(setting_str(config, "database")?)
                {
                    c.dbname(db);
                }
                c
            }
        };
        // libpq's sslmode, as for the postgres warehouse (`prefer` when unset); `allow` starts
        // without TLS, as tokio-postgres cannot fall back to it.
        let site = config.site();
        let sslmode = setting_str(config, "sslmode")?;
        let settings = crate::postgres_tls::TlsSettings {
            site: &site,
            sslmode,
            sslrootcert: setting_str(config, "sslrootcert")?,
            sslcert: setting_str(config, "sslcert")?,
            sslkey: setting_str(config, "sslkey")?,
        };
        let tls = match sslmode {
            Some("disable" | "allow") => {
                pg.ssl_mode(SslMode::Disable);
                None
            }
            None | Some("prefer") => {
                pg.ssl_mode(SslMode::Prefer);
                Some(crate::postgres_tls::connector(&settings)?)
            }
            Some("require" | "verify-ca" | "verify-full") => {
                pg.ssl_mode(SslMode::Require);
                Some(crate::postgres_tls::connector(&settings)?)
            }
            Some(other) => {
                return Err(ConfigError::new(format!("{site}: unknown sslmode `{other}`"))
                    .with_hint("one of disable, allow, prefer (the default), require, verify-ca, verify-full"));
            }
        };
        pg.connect_timeout(Duration::from_secs(
            setting_u64(config, "connect_timeout_seconds")?.unwrap_or(10),
        ));
        let host = pg
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let location = format!("postgres {host}:{port}/{}", pg.get_dbname().unwrap_or(""));
        let verified = matches!(sslmode, Some("verify-ca" | "verify-full"));
        if !is_local(&host) && !verified {
            tracing::warn!(
                "{}: {location} is not on this machine and `sslmode: {}` does not verify the server's certificate{}; set `sslmode: verify-full` with `sslrootcert` (docs/security.md)",
                config.site(),
                sslmode.unwrap_or("prefer"),
                if tls.is_none() {
                    ": the password and the rows travel unencrypted"
                } else {
                    ", so a machine in the middle could read the password and the rows"
                }
            );
        }
        Ok(Self {
            config: pg,
            tls,
            location,
            schema: setting_str(config, "schema")?
                .unwrap_or("public")
                .to_owned(),
            batch_size: setting_u64(config, "batch_size")?.unwrap_or(10_000).max(1) as usize,
            idle: Mutex::new(Vec::new()),
            tables: Mutex::new(BTreeMap::new()),
        })
    }

    async fn client(&self) -> Result<Client, DestinationError> {
        if let Some(client) = self.idle.lock().await.pop()
            && !client.is_closed()
        {
            return Ok(client);
        }
        let connected = match &self.tls {
            Some(tls) => self
                .config
                .connect(tls.clone())
                .await
                .map(|(client, connection)| {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    client
                }),
            None => self
                .config
                .connect(NoTls)
                .await
                .map(|(client, connection)| {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    client
                }),
        };
        connected.map_err(|e| {
            // tokio-postgres keeps the cause (a refused certificate, a refused login) in the
            // error's sources.
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                why.push_str(": ");
                why.push_str(&cause.to_string());
                source = cause.source();
            }
            let hint = if why.contains("TLS handshake") {
                "\n  hint: check `sslrootcert` (the CA that signed the server's certificate) and that the host is a name the certificate holds, or relax `sslmode`"
            } else {
                ""
            };
            DestinationError::new(format!(
                "could not connect to {}: {}{hint}",
                self.location,
                secrets::redact(&why)
            ))
        })
    }

    async fn give_back(&self, client: Client) {
        if !client.is_closed() {
            self.idle.lock().await.push(client);
        }
    }

    /// (schema, table) for an object: `table` in the configured schema, or `schema.table`.
    fn table_of(&self, object: &str) -> (String, String) {
        match object.split_once('.') {
            Some((s, t)) => (s.to_owned(), t.to_owned()),
            None => (self.schema.clone(), object.to_owned()),
        }
    }

    fn qualified(&self, object: &str) -> String {
        let (s, t) = self.table_of(object);
        format!("{}.{}", quote_ident(&s), quote_ident(&t))
    }

    async fn columns(
        &self,
        client: &Client,
        object: &str,
    ) -> Result<Vec<Column>, DestinationError> {
        if let Some(cols) = self.tables.lock().await.get(object) {
            return Ok(cols.clone());
        }
        let (schema, table) = self.table_of(object);
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&schema, &table],
            )
            .await
            .map_err(|e| {
                DestinationError::new(format!(
                    "{}: could not describe {schema}.{table}: {e}",
                    self.location
                ))
            })?;
        let cols: Vec<Column> = rows
            .iter()
            .map(|r| Column {
                name: r.get(0),
                data_type: r.get(1),
            })
            .collect();
        if cols.is_empty() {
            return Err(DestinationError::new(format!(
                "table {schema}.{table} does not exist in {} (the postgres destination writes to existing tables; create it first)",
                self.location
            )));
        }
        self.tables
            .lock()
            .await
            .insert(object.to_owned(), cols.clone());
        Ok(cols)
    }

    fn write_range<'a>(
        &'a self,
        client: &'a mut Client,
        batch: &'a WriteBatch<'a>,
        columns: &'a CopyColumns,
        range: std::ops::Range<usize>,
        rejected: &'a mut Vec<(usize, String)>,
    ) -> BoxFuture<'a, Result<(), DestinationError>> {
        Box::pin(async move {
            let mut applied = Err(Failure::NotBinary);
            for format in columns.formats() {
                applied = self.apply(client, batch, format, range.clone()).await;
                if !matches!(applied, Err(Failure::NotBinary)) {
                    break;
                }
            }
            match applied {
                Ok(missing) => {
                    rejected.extend(missing);
                    Ok(())
                }
                Err(Failure::Fatal(why)) => Err(DestinationError::new(why)),
                Err(Failure::NotBinary) => Err(DestinationError::new(
                    "internal error: a COPY in text format asked for the text format".to_owned(),
                )),
                Err(Failure::Data(why)) if range.len() == 1 => {
                    rejected.push((range.start, why));
                    Ok(())
                }
                Err(Failure::Data(_)) => {
                    let mid = range.start + range.len() / 2;
                    self.write_range(client, batch, columns, range.start..mid, rejected)
                        .await?;
                    self.write_range(client, batch, columns, mid..range.end, rejected)
                        .await
                }
            }
        })
    }

    /// Keys new to the sync's state: COPY straight into the table, in one transaction (about
    /// 2.5x faster than staging and `INSERT ... ON CONFLICT` on PostgreSQL 15 here). `false`
    /// when a row did not fit or a key already exists: nothing was written, and the caller
    /// applies the batch through the staging table (which upserts and isolates bad rows).
    async fn copy_new_keys(
        &self,
        client: &mut Client,
        batch: &WriteBatch<'_>,
        columns: &CopyColumns,
    ) -> Result<bool, DestinationError> {
        for format in columns.formats() {
            match self.copy_new_keys_as(client, batch, format).await {
                Ok(()) => return Ok(true),
                Err(Failure::NotBinary) => continue,
                Err(Failure::Data(_)) => return Ok(false),
                Err(Failure::Fatal(why)) => return Err(DestinationError::new(why)),
            }
        }
        Ok(false)
    }

    /// One attempt of [`Self::copy_new_keys`] in `format`; an error rolls it back.
    async fn copy_new_keys_as(
        &self,
        client: &mut Client,
        batch: &WriteBatch<'_>,
        format: CopyFormat<'_>,
    ) -> Result<(), Failure> {
        let table = self.qualified(batch.object);
        let cols: Vec<String> = batch.fields.iter().map(|f| quote_ident(f)).collect();
        let tx = client.transaction().await.map_err(fatal)?;
        let sink = tx
            .copy_in(&format!(
                "COPY {table} ({}) FROM STDIN{}",
                cols.join(", "),
                format.option()
            ))
            .await
            .map_err(classify)?;
        futures_util::pin_mut!(sink);
        send_copy_rows(sink.as_mut(), batch, format, 0..batch.records.len(), false).await?;
        sink.finish().await.map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    /// One transaction for `range` of the batch. Returns per-row rejects for `update` rows that
    /// matched nothing.
    async fn apply(
        &self,
        client: &mut Client,
        batch: &WriteBatch<'_>,
        format: CopyFormat<'_>,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<(usize, String)>, Failure> {
        let table = self.qualified(batch.object);
        let cols: Vec<String> = batch.fields.iter().map(|f| quote_ident(f)).collect();
        let keys: Vec<String> = batch
            .key_positions
            .iter()
            .map(|&i| cols[i].clone())
            .collect();
        let tx = client.transaction().await.map_err(fatal)?;
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE \"__activate_stage\" ON COMMIT DROP AS SELECT 0::bigint AS \"__activate_row\", {} FROM {table} WITH NO DATA",
            cols.join(", ")
        ))
        .await
        .map_err(classify)?;
        let sink = tx
            .copy_in(&format!(
                "COPY \"__activate_stage\" (\"__activate_row\", {}) FROM STDIN{}",
                cols.join(", "),
                format.option()
            ))
            .await
            .map_err(classify)?;
        futures_util::pin_mut!(sink);
        send_copy_rows(sink.as_mut(), batch, format, range.clone(), true).await?;
        sink.finish().await.map_err(classify)?;

        let join: Vec<String> = keys.iter().map(|k| format!("t.{k} = s.{k}")).collect();
        let non_key: Vec<&String> = cols
            .iter()
            .enumerate()
            .filter(|(i, _)| !batch.key_positions.contains(i))
            .map(|(_, c)| c)
            .collect();
        let set: Vec<String> = non_key.iter().map(|c| format!("{c} = s.{c}")).collect();
        let mut missing = Vec::new();
        match batch.op {
            WriteOp::Upsert => {
                let action = if non_key.is_empty() {
                    "DO NOTHING".to_owned()
                } else {
                    format!(
                        "DO UPDATE SET {}",
                        non_key
                            .iter()
                            .map(|c| format!("{c} = EXCLUDED.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                tx.execute(
                    &format!(
                        "INSERT INTO {table} ({cols}) SELECT {cols} FROM \"__activate_stage\" ORDER BY \"__activate_row\" ON CONFLICT ({keys}) {action}",
                        cols = cols.join(", "),
                        keys = keys.join(", ")
                    ),
                    &[],
                )
                .await
                .map_err(classify)?;
            }
            WriteOp::Insert => {
                tx.execute(
                    &format!("INSERT INTO {table} ({cols}) SELECT {cols} FROM \"__activate_stage\" ORDER BY \"__activate_row\"", cols = cols.join(", ")),
                    &[],
                )
                .await
                .map_err(classify)?;
            }
            WriteOp::Update | WriteOp::Clear => {
                let sql = if set.is_empty() {
                    format!(
                        "SELECT s.\"__activate_row\" FROM \"__activate_stage\" s JOIN {table} t ON {}",
                        join.join(" AND ")
                    )
                } else {
                    format!(
                        "UPDATE {table} t SET {} FROM \"__activate_stage\" s WHERE {} RETURNING s.\"__activate_row\"",
                        set.join(", "),
                        join.join(" AND ")
                    )
                };
                let rows = tx.query(&sql, &[]).await.map_err(classify)?;
                if batch.op == WriteOp::Update {
                    let found: HashSet<i64> = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
                    for i in range.clone() {
                        if !found.contains(&(i as i64)) {
                            missing.push((i, format!("no row in {} matches this key (operation: update never creates rows)", batch.object)));
                        }
                    }
                }
            }
            WriteOp::Delete => {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} t USING \"__activate_stage\" s WHERE {}",
                        join.join(" AND ")
                    ),
                    &[],
                )
                .await
                .map_err(classify)?;
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(missing)
    }
}

fn fatal(e: tokio_postgres::Error) -> Failure {
    Failure::Fatal(secrets::redact(&e.to_string()))
}

/// Data exceptions (class 22) and integrity violations (class 23) belong to rows.
fn classify(e: tokio_postgres::Error) -> Failure {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let message = match db.detail() {
                Some(detail) => format!("{} ({detail}) [SQLSTATE {code}]", db.message()),
                None => format!("{} [SQLSTATE {code}]", db.message()),
            };
            if code.starts_with("22") || code.starts_with("23") {
                Failure::Data(secrets::redact(&message))
            } else {
                Failure::Fatal(secrets::redact(&message))
            }
        }
        None => fatal(e),
    }
}

/// Rows sent at a time in a COPY: the server parses a piece while the next is encoded, instead
/// of waiting for the whole batch's text.
const COPY_PIECE_ROWS: usize = 1_000;

/// Sends rows `range` of the batch into a COPY in progress, in pieces of [`COPY_PIECE_ROWS`],
/// each row led by its position in the batch when `numbered` (the staging table's
/// `__activate_row`). [`Failure::NotBinary`] when a value has no binary encoding here: the
/// caller rolls back and sends the rows again as text.
async fn send_copy_rows(
    mut sink: Pin<&mut tokio_postgres::CopyInSink<bytes::Bytes>>,
    batch: &WriteBatch<'_>,
    format: CopyFormat<'_>,
    range: std::ops::Range<usize>,
    numbered: bool,
) -> Result<(), Failure> {
    for start in range.clone().step_by(COPY_PIECE_ROWS) {
        let piece = start..(start + COPY_PIECE_ROWS).min(range.end);
        let data = match format {
            CopyFormat::Text(types) => bytes::Bytes::from(copy_rows(batch, types, piece, numbered)),
            CopyFormat::Binary(types) => {
                let mut data = Vec::with_capacity(piece.len() * 128);
                if start == range.start {
                    binary::push_header(&mut data);
                }
                for i in piece {
                    let number = numbered.then_some(i as i64);
                    binary::push_row(&mut data, number, &batch.records[i].values, types)
                        .map_err(|binary::NotBinary| Failure::NotBinary)?;
                }
                if start + COPY_PIECE_ROWS >= range.end {
                    binary::push_trailer(&mut data);
                }
                bytes::Bytes::from(data)
            }
        };
        sink.send(data).await.map_err(classify)?;
    }
    Ok(())
}

/// Rows `range` of the batch in COPY text format, each led by its position in the batch when
/// `numbered` (the staging table's `__activate_row`).
fn copy_rows(
    batch: &WriteBatch<'_>,
    types: &[String],
    range: std::ops::Range<usize>,
    numbered: bool,
) -> String {
    let mut data = String::with_capacity(range.len() * 64);
    for i in range {
        let mut values = batch.records[i].values.iter().zip(types);
        if numbered {
            data.push_str(&i.to_string());
        } else if let Some((value, ty)) = values.next() {
            copy_text(&mut data, value, ty);
        }
        for (value, ty) in values {
            data.push('\t');
            copy_text(&mut data, value, ty);
        }
        data.push('\n');
    }
    data
}

/// Appends a value in COPY text format for a column of type `ty`.
fn copy_text(out: &mut String, value: &Value, ty: &str) {
    let text = match (value, ty) {
        (Value::Null, _) => {
            out.push_str("\\N");
            return;
        }
        // Text as it is (no copy); integers need no escaping.
        (
            Value::Text(s)
            | Value::Number(s)
            | Value::Date(s)
            | Value::Timestamp(s)
            | Value::TimestampTz(s),
            _,
        ) => {
            push_copy_escaped(out, s);
            return;
        }
        (Value::Int(i), _) => {
            crate::value::push_int(out, *i);
            return;
        }
        (Value::Json(json), "ARRAY") => match json.as_array() {
            Some(items) => array_literal(items),
            None => json.to_string(),
        },
        (Value::Blob(b), "bytea") => format!("\\x{}", hex::encode(b)),
        (v, _) => v.to_text().unwrap_or_default(),
    };
    push_copy_escaped(out, &text);
}

/// Appends text escaped for COPY text format (backslash, newline, carriage return, tab).
pub(crate) fn push_copy_escaped(out: &mut String, text: &str) {
    crate::value::push_escaped(out, text, |byte| match byte {
        b'\\' => Some("\\\\"),
        b'\n' => Some("\\n"),
        b'\r' => Some("\\r"),
        b'\t' => Some("\\t"),
        _ => None,
    });
}

/// A PostgreSQL array literal (`{"a","b"}`) from a JSON array.
fn array_literal(items: &[serde_json::Value]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|v| match v {
            serde_json::Value::Null => "NULL".to_owned(),
            serde_json::Value::Array(inner) => array_literal(inner),
            serde_json::Value::String(s) => {
                format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
            }
            other => format!(
                "\"{}\"",
                other.to_string().replace('\\', "\\\\").replace('"', "\\\"")
            ),
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[async_trait]
impl Destination for PostgresDestination {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn identity(&self) -> String {
        format!("{}/{}", self.location, self.schema)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch_rows: self.batch_size,
        }
    }

    /// COPY text has `NaN`, `Infinity` and `-Infinity`; a column that cannot hold them
    /// rejects the row with PostgreSQL's reason.
    fn carries_non_finite_floats(&self) -> bool {
        true
    }

    async fn health_check(&self) -> Result<(), DestinationError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(|e| {
            DestinationError::new(format!(
                "{}: {}",
                self.location,
                secrets::redact(&e.to_string())
            ))
        })?;
        self.give_back(client).await;
        Ok(())
    }

    async fn describe(&self, object: &str) -> Result<Option<ObjectSchema>, DestinationError> {
        let client = self.client().await?;
        let cols = self.columns(&client, object).await;
        self.give_back(client).await;
        Ok(Some(ObjectSchema {
            fields: cols?
                .into_iter()
                .map(|c| FieldSchema::new(c.name, Kind::of_column_type(&c.data_type), c.data_type))
                .collect(),
        }))
    }

    async fn write(&self, batch: &WriteBatch<'_>) -> Result<BatchOutcome, DestinationError> {
        if batch.records.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let mut client = self.client().await?;
        let columns = self.columns(&client, batch.object).await?;
        let types: Vec<String> = batch
            .fields
            .iter()
            .map(|f| {
                columns
                    .iter()
                    .find(|c| &c.name == f)
                    .map(|c| c.data_type.clone())
                    .unwrap_or_default()
            })
            .collect();
        let columns = CopyColumns::new(types);
        if batch.keys_new_to_state && batch.op == WriteOp::Upsert {
            let loaded = self.copy_new_keys(&mut client, batch, &columns).await;
            if matches!(loaded, Ok(true)) {
                self.give_back(client).await;
                return Ok(BatchOutcome::default());
            }
            if let Err(e) = loaded {
                self.give_back(client).await;
                return Err(e);
            }
        }
        let mut rejected = Vec::new();
        let result = self
            .write_range(
                &mut client,
                batch,
                &columns,
                0..batch.records.len(),
                &mut rejected,
            )
            .await;
        self.give_back(client).await;
        result?;
        rejected.sort_by_key(|(i, _)| *i);
        Ok(BatchOutcome { rejected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_escapes() {
        let mut out = String::new();
        copy_text(&mut out, &Value::Text("a\tb\\c\nd".into()), "text");
        assert_eq!(out, "a\\tb\\\\c\\nd");
        let mut out = String::new();
        copy_text(&mut out, &Value::Null, "text");
        assert_eq!(out, "\\N");
        let mut out = String::new();
        copy_text(
            &mut out,
            &Value::json(serde_json::json!(["x\"y", null])),
            "ARRAY",
        );
        assert_eq!(out, "{\"x\\\\\"y\",NULL}");
    }
    /// Every value kind as the COPY text of its `to_text`, escaped: the fast paths for text
    /// and integers write the same bytes as the general one.
    #[test]
    fn copy_text_is_the_escaped_text_of_every_value() {
        let values = [
            Value::Text("plain é".into()),
            Value::Text("\\\t\n\r x \\".into()),
            Value::Text(String::new()),
            Value::Int(-9_223_372_036_854_775_808),
            Value::Int(0),
            Value::Int(42),
            Value::Number("12.50".into()),
            Value::Date("2024-02-29".into()),
            Value::Timestamp("2024-01-01T10:00:00.500000".into()),
            Value::TimestampTz("2024-01-01T08:00:00.000000Z".into()),
            Value::Bool(true),
            Value::Float(0.1),
            Value::json(serde_json::json!({"a": "b\tc"})),
        ];
        for v in values {
            let mut fast = String::new();
            copy_text(&mut fast, &v, "text");
            let mut general = String::new();
            for c in v.to_text().unwrap().chars() {
                match c {
                    '\\' => general.push_str("\\\\"),
                    '\n' => general.push_str("\\n"),
                    '\r' => general.push_str("\\r"),
                    '\t' => general.push_str("\\t"),
                    c => general.push(c),
                }
            }
            assert_eq!(fast, general, "{v:?}");
        }
    }
}

#[cfg(test)]
mod tests_against_postgres;
