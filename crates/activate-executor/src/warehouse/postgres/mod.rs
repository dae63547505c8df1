//! PostgreSQL (what dbt-postgres builds), read with `tokio-postgres`.
//!
//! The `Warehouse` trait is synchronous (the runner calls it from `spawn_blocking`), so the
//! warehouse owns a small runtime of its own and blocks on it; the connection task runs on
//! that runtime's one worker. Rows stream through a portal in a read-only transaction,
//! `batch_rows` at a time, never gathered whole.

mod state;
mod types;

#[cfg(test)]
mod tests_against_postgres;

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use crate::connections::PostgresProfile;
use crate::error::{ConfigError, StateError, WarehouseError};
use crate::postgres_tls as tls;
use crate::secrets;
use crate::state::warehouse::StateBackend;
use crate::warehouse::{ColumnDesc, ReadRequest, RowBatch, Warehouse, quote_ident, sql_literal};

pub use state::PostgresStateBackend;
pub use types::{ReadAs, read_as};

pub struct PostgresWarehouse {
    profile: PostgresProfile,
    config: tokio_postgres::Config,
    /// `None` for `sslmode: disable` / `allow`.
    tls: Option<crate::postgres_tls::RustlsConnect>,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    /// Connections set up and idle, reused by the next call.
    idle: Mutex<Vec<Client>>,
}

impl Drop for PostgresWarehouse {
    fn drop(&mut self) {
        // The warehouse may be dropped on an async thread, where a blocking shutdown panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Why one connection attempt failed.
struct ConnectFailure {
    message: String,
    hint: String,
    /// A network failure may pass; a refused login or a missing database will not.
    retryable: bool,
}

impl PostgresWarehouse {
    /// Prepares the connection; nothing is dialled until the first call.
    pub fn open(profile: &PostgresProfile) -> Result<Self, ConfigError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&profile.host)
            .port(profile.port)
            .user(&profile.user)
            .password(profile.password.as_bytes())
            .dbname(&profile.database)
            .application_name(&profile.application_name);
        // libpq's sslmode; `allow` starts without TLS (and tokio-postgres cannot retry with it).
        let (ssl_mode, tls) = match profile.sslmode.as_deref() {
            Some("disable" | "allow") => (SslMode::Disable, None),
            Some("require" | "verify-ca" | "verify-full") => (
                SslMode::Require,
                Some(tls::connector(&tls::TlsSettings::of_profile(profile))?),
            ),
            _ => (
                SslMode::Prefer,
                Some(tls::connector(&tls::TlsSettings::of_profile(profile))?),
            ),
        };
        config.ssl_mode(ssl_mode);
        if profile.connect_timeout > 0 {
            config.connect_timeout(Duration::from_secs(profile.connect_timeout));
        }
        if profile.keepalives_idle > 0 {
            config.keepalives_idle(Duration::from_secs(profile.keepalives_idle));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("activate-postgres")
            .enable_all()
            .build()
            .map_err(|e| ConfigError::new(format!("could not start the PostgreSQL client: {e}")))?;
        Ok(Self {
            profile: profile.clone(),
            config,
            tls,
            runtime: Some(runtime),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn block_on<F: Future>(&self, future: F) -> Result<F::Output, WarehouseError> {
        match &self.runtime {
            Some(runtime) => Ok(runtime.block_on(future)),
            None => Err(WarehouseError::new("the PostgreSQL warehouse is closed")),
        }
    }

    /// An idle connection, or a new one.
    fn client(&self) -> Result<Client, WarehouseError> {
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            std::iter::from_fn(|| idle.pop()).find(|c| !c.is_closed())
        };
        match reused {
            Some(client) => Ok(client),
            None => self.block_on(self.connect())?,
        }
    }

    fn give_back(&self, client: Client) {
        if !client.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(client);
        }
    }

    /// Connects as dbt-postgres does: `retries` further attempts after a network failure,
    /// waiting 1, 4, 9 ... seconds between them; a refused login fails at once.
    async fn connect(&self) -> Result<Client, WarehouseError> {
        let attempts = self.profile.retries.saturating_add(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.connect_once().await {
                Ok(client) => return Ok(client),
                Err(failure) if failure.retryable && attempt < attempts => {
                    let wait = u64::from(attempt).saturating_mul(u64::from(attempt));
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                Err(failure) => {
                    let tries = if attempt > 1 {
                        format!(" (after {attempt} attempts)")
                    } else {
                        String::new()
                    };
                    return Err(WarehouseError::new(secrets::redact(&format!(
                        "could not connect to the PostgreSQL warehouse of {} ({}){tries}: {}\n  hint: {}",
                        self.profile.site,
                        self.profile.location(),
                        failure.message,
                        failure.hint
                    ))));
                }
            }
        }
    }

    /// Dials, with or without TLS; the connection task runs on the warehouse's runtime.
    async fn dial(&self) -> Result<Client, tokio_postgres::Error> {
        match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            }
        }
    }

    async fn connect_once(&self) -> Result<Client, ConnectFailure> {
        let connecting = self.dial();
        // connect_timeout bounds the whole handshake, not only the TCP connect.
        let connected = if self.profile.connect_timeout > 0 {
            match tokio::time::timeout(
                Duration::from_secs(self.profile.connect_timeout),
                connecting,
            )
            .await
            {
                Ok(result) => result,
                Err(_) => {
                    return Err(ConnectFailure {
                        message: format!(
                            "no answer within connect_timeout ({} s)",
                            self.profile.connect_timeout
                        ),
                        hint: "check `host` and `port`, and that the server accepts connections from here (firewall, VPN)".into(),
                        retryable: true,
                    });
                }
            }
        } else {
            connecting.await
        };
        let client = connected.map_err(|e| self.classify(&e))?;
        self.set_up_session(&client).await.map_err(|e| {
            let mut failure = self.classify(&e);
            failure.retryable = false;
            failure
        })?;
        Ok(client)
    }

    /// Output formats the conversions rely on, and the profile's `search_path` and `role`.
    async fn set_up_session(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        client
            .batch_execute("SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'")
            .await?;
        if let Some(search_path) = &self.profile.search_path {
            client
                .execute(
                    "SELECT set_config('search_path', $1, false)",
                    &[search_path],
                )
                .await?;
        }
        if let Some(role) = &self.profile.role {
            client
                .batch_execute(&format!("SET ROLE {}", quote_ident(role)))
                .await?;
        }
        Ok(())
    }

    fn classify(&self, e: &tokio_postgres::Error) -> ConnectFailure {
        let Some(db) = e.as_db_error() else {
            let text = e.to_string();
            let cause = std::error::Error::source(e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            let message = format!("{text}{cause}");
            let lower = message.to_ascii_lowercase();
            if lower.contains("certificate") || lower.contains("tls") || lower.contains("ssl") {
                return ConnectFailure {
                    hint: format!(
                        "the TLS handshake failed under `sslmode: {}`: check `sslrootcert` (the CA that signed the server's certificate) and that `host` is a name the certificate holds, or relax `sslmode`",
                        self.profile.sslmode.as_deref().unwrap_or("prefer")
                    ),
                    message,
                    retryable: false,
                };
            }
            return ConnectFailure {
                message,
                hint: format!(
                    "is PostgreSQL running on {}:{}? check `host` and `port` in that output of profiles.yml",
                    self.profile.host, self.profile.port
                ),
                retryable: true,
            };
        };
        let hint = match db.code().code() {
            "28P01" => "check `password` (or the environment variable it reads) in that output of profiles.yml; dbt connects with the same".to_owned(),
            "28000" => "check `user`, and that pg_hba.conf lets it connect from here".to_owned(),
            "3D000" => format!("database `{}` does not exist there: check `dbname`", self.profile.database),
            "22023" | "42704" => "check `role` (the user must be a member of it) and `search_path`".to_owned(),
            _ => "the server refused the connection; see its message above".to_owned(),
        };
        ConnectFailure {
            message: db.message().to_owned(),
            hint,
            retryable: false,
        }
    }

    fn query_error(&self, what: &str, e: &tokio_postgres::Error) -> WarehouseError {
        let message = match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        };
        WarehouseError::new(secrets::redact(&format!("{what}: {message}")))
    }
}

impl Warehouse for PostgresWarehouse {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn state_backend(&self, schema: &str, lock: bool) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(self.open_state_backend(schema, lock)?))
    }

    fn describe_location(&self) -> String {
        self.profile.location()
    }

    fn health_check(&self) -> Result<(), WarehouseError> {
        let client = self.client()?;
        self.block_on(client.simple_query("SELECT 1"))?
            .map_err(|e| self.query_error("PostgreSQL health check", &e))?;
        self.give_back(client);
        Ok(())
    }

    fn columns(&self, relation: &str) -> Result<Vec<ColumnDesc>, WarehouseError> {
        let client = self.client()?;
        // Preparing describes the result without running the query.
        let statement = self
            .block_on(client.prepare(&format!("SELECT * FROM {relation}")))?
            .map_err(|e| self.query_error("PostgreSQL", &e))?;
        let columns = statement
            .columns()
            .iter()
            .map(|c| ColumnDesc {
                name: c.name().to_owned(),
                data_type: types::type_name(c.type_()),
            })
            .collect();
        self.give_back(client);
        Ok(columns)
    }

    fn read(
        &self,
        request: &ReadRequest<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), WarehouseError>,
    ) -> Result<(), WarehouseError> {
        let relation = request.relation;
        let fail =
            |e: tokio_postgres::Error| self.query_error(&format!("query on {relation} failed"), &e);
        let mut client = self.client()?;
        let transaction = self
            .block_on(client.build_transaction().read_only(true).start())?
            .map_err(fail)?;

        // The columns' types, from the plain select, decide each column's cast.
        let plain: Vec<String> = request
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let probe = self
            .block_on(transaction.prepare(&format!("SELECT {} FROM {relation}", plain.join(", "))))?
            .map_err(fail)?;
        let how: Vec<ReadAs> = probe.columns().iter().map(|c| read_as(c.type_())).collect();
        let select: Vec<String> = request
            .columns
            .iter()
            .zip(&how)
            .map(|(c, h)| types::select_expr(&c.name, *h))
            .collect();
        let mut sql = format!("SELECT {} FROM {relation}", select.join(", "));
        if let Some((column, value)) = request.cursor_at_least {
            sql.push_str(&format!(
                " WHERE {} >= {}",
                quote_ident(column),
                sql_literal(value)
            ));
        }
        let statement = self.block_on(transaction.prepare(&sql))?.map_err(fail)?;
        let portal = self
            .block_on(transaction.bind(&statement, &[]))?
            .map_err(fail)?;
        let batch_rows = request.batch_rows.clamp(1, i32::MAX as usize);
        loop {
            let rows = self
                .block_on(transaction.query_portal(&portal, batch_rows as i32))?
                .map_err(fail)?;
            let last = rows.len() < batch_rows;
            let mut batch: RowBatch = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut values = Vec::with_capacity(how.len());
                for (i, h) in how.iter().enumerate() {
                    values.push(types::convert(row, i, *h).map_err(|e| {
                        WarehouseError::new(format!("reading {relation}: {}", e.message))
                    })?);
                }
                batch.push(values);
            }
            drop(rows);
            if !batch.is_empty() {
                on_batch(batch)?;
            }
            if last {
                break;
            }
        }
        self.block_on(transaction.commit())?.map_err(fail)?;
        self.give_back(client);
        Ok(())
    }
}
