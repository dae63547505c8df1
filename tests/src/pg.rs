//! One PostgreSQL database per test, on the server of `ACTIVATE_TEST_PG_URL`.

use std::time::Duration;

use tokio_postgres::{NoTls, SimpleQueryMessage};

const PG_TIMEOUT: Duration = Duration::from_secs(60);

/// The admin URL of the test server.
pub fn admin_url() -> String {
    match std::env::var("ACTIVATE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "ACTIVATE_TEST_PG_URL is not set: the end-to-end tests need a PostgreSQL server; \
             run scripts/test.sh (it starts a private cluster and sets it)"
        ),
    }
}

/// `url` with its database name replaced by `dbname`.
pub fn with_dbname(url: &str, dbname: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (head, rest) = url.split_at(scheme_end);
    let (authority, query) = match rest.find('/') {
        Some(slash) => {
            let after = &rest[slash..];
            let query = after.find('?').map(|q| &after[q..]).unwrap_or("");
            (&rest[..slash], query)
        }
        None => match rest.find('?') {
            Some(q) => (&rest[..q], &rest[q..]),
            None => (rest, ""),
        },
    };
    format!("{head}{authority}/{dbname}{query}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Runs `sql` (one or more statements) with the simple query protocol and
/// returns every row of the results as text (`None` for NULL).
pub fn query(url: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    runtime().block_on(async {
        let work = async {
            let client = connect(url).await?;
            let messages = client.simple_query(sql).await.map_err(|e| {
                let detail = e
                    .as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_default();
                format!("{e} {detail}\nin: {sql}")
            })?;
            let mut rows = Vec::new();
            for m in messages {
                if let SimpleQueryMessage::Row(row) = m {
                    rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect(),
                    );
                }
            }
            Ok(rows)
        };
        tokio::time::timeout(PG_TIMEOUT, work)
            .await
            .map_err(|_| format!("timed out: {sql}"))?
    })
}

/// A database created for one test, dropped at the end of it.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    url: String,
    admin: String,
}

impl PgDatabase {
    /// Creates `t_<unique>` and runs `dbt_project_example/ops/postgres_tables.sql` in it.
    pub fn create() -> Self {
        let admin = admin_url();
        let name = format!("t_{}", crate::unique_suffix());
        query(&admin, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating the test database: {e}"));
        let db = Self {
            url: with_dbname(&admin, &name),
            name,
            admin,
        };
        let ddl_path = crate::repo_root().join("dbt_project_example/ops/postgres_tables.sql");
        let ddl = std::fs::read_to_string(&ddl_path)
            .unwrap_or_else(|e| panic!("{}: {e}", ddl_path.display()));
        db.execute(&ddl);
        db
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://...` of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every row of `sql`, as text.
    #[track_caller]
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        query(&self.url, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs statements, panicking on error.
    #[track_caller]
    pub fn execute(&self, sql: &str) {
        query(&self.url, sql).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `select count(*) from <table>`.
    #[track_caller]
    pub fn count(&self, table: &str) -> i64 {
        let rows = self.rows(&format!("select count(*) from {table}"));
        rows[0][0]
            .as_deref()
            .and_then(|s| s.parse().ok())
            .expect("a count")
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if crate::keep() {
            eprintln!("kept database {} ({})", self.name, self.url);
            return;
        }
        let _ = query(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_dbname("postgres://postgres@127.0.0.1:5/postgres", "t_1"),
            "postgres://postgres@127.0.0.1:5/t_1"
        );
        assert_eq!(
            with_dbname("postgres://u:p@h:5/db?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_dbname("postgres://h:5", "x"), "postgres://h:5/x");
    }
}
