//! A `type: postgres` output of `profiles.yml`, read with the keys, aliases, defaults and
//! required fields of dbt-postgres's `PostgresCredentials`, so one profile serves dbt and us.

use std::fmt;

use crate::error::ConfigError;
use crate::secrets;

/// The keys dbt-postgres requires (with their aliases).
const REQUIRED: &str = "host, port, user, password (or pass), dbname (or database) and schema";

#[derive(Clone)]
pub struct PostgresProfile {
    /// `profile `x` target `y` in <file>`: named in every error about this connection.
    pub site: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// `dbname`, or its alias `database`.
    pub database: String,
    /// dbt's target schema; relations come fully qualified from the manifest, so it is
    /// only the default for warehouse state.
    pub schema: String,
    /// Seconds; dbt-postgres's default is 10.
    pub connect_timeout: u64,
    /// `SET ROLE` after connecting, as dbt does.
    pub role: Option<String>,
    /// Sent as the session's `search_path`, as dbt does through `options`.
    pub search_path: Option<String>,
    /// Seconds; 0 (dbt's default) keeps the system's default.
    pub keepalives_idle: u64,
    /// libpq's `sslmode`; unset means `prefer`.
    pub sslmode: Option<String>,
    /// CA certificate(s), PEM, for `verify-ca` / `verify-full`.
    pub sslrootcert: Option<String>,
    /// A client certificate and its key, PEM.
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub application_name: String,
    /// Further connection attempts after a failed one (not after a refused login); dbt's default is 1.
    pub retries: u32,
}

impl fmt::Debug for PostgresProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresProfile")
            .field("site", &self.site)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"****")
            .field("database", &self.database)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresProfile {
    /// Reads a rendered output. `site` names the profile, target and file.
    pub fn from_output(output: &serde_json::Value, site: &str) -> Result<Self, ConfigError> {
        let read = Reader { output, site };
        let password = read.string_of(&["password", "pass"])?;
        if let Some(pw) = &password {
            secrets::register(pw);
        }
        let mut missing: Vec<&str> = Vec::new();
        let host = read.string("host")?;
        let port = read.number("port")?;
        let user = read.string("user")?;
        let database = read.string_of(&["dbname", "database"])?;
        let schema = read.string("schema")?;
        for (key, absent) in [
            ("host", host.is_none()),
            ("port", port.is_none()),
            ("user", user.is_none()),
            ("password", password.is_none()),
            ("dbname", database.is_none()),
            ("schema", schema.is_none()),
        ] {
            if absent {
                missing.push(key);
            }
        }
        if !missing.is_empty() {
            return Err(ConfigError::new(format!(
                "{site} (type: postgres) is missing `{}`",
                missing.join("`, `")
            ))
            .with_hint(format!(
                "dbt-postgres requires {REQUIRED}; add the missing key{} to that output (secrets as \"{{{{ env_var('...') }}}}\")",
                if missing.len() == 1 { "" } else { "s" }
            )));
        }
        let port = port.unwrap_or_default();
        let port = u16::try_from(port).map_err(|_| {
            ConfigError::new(format!(
                "{site}: `port: {port}` is not a TCP port (0-65535)"
            ))
        })?;
        let sslmode = read.string("sslmode")?;
        match sslmode.as_deref() {
            None
            | Some("disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full") => {}
            Some(other) => {
                return Err(ConfigError::new(format!(
                    "{site}: `sslmode: {other}` is not a libpq sslmode"
                ))
                .with_hint("one of: disable, allow, prefer, require, verify-ca, verify-full"));
            }
        }
        Ok(Self {
            site: site.to_owned(),
            host: host.unwrap_or_default(),
            port,
            user: user.unwrap_or_default(),
            password: password.unwrap_or_default(),
            database: database.unwrap_or_default(),
            schema: schema.unwrap_or_default(),
            connect_timeout: read.number("connect_timeout")?.unwrap_or(10),
            role: read.string("role")?.filter(|r| !r.is_empty()),
            search_path: read.string("search_path")?.filter(|s| !s.is_empty()),
            keepalives_idle: read.number("keepalives_idle")?.unwrap_or(0),
            sslmode,
            sslrootcert: read.string("sslrootcert")?,
            sslcert: read.string("sslcert")?,
            sslkey: read.string("sslkey")?,
            application_name: read
                .string("application_name")?
                .unwrap_or_else(|| "dbt-activate".to_owned()),
            retries: u32::try_from(read.number("retries")?.unwrap_or(1)).unwrap_or(u32::MAX),
        })
    }

    /// `host:port/database as user`, for messages (never the password).
    pub fn location(&self) -> String {
        format!(
            "postgres {}:{}/{} as {}",
            self.host, self.port, self.database, self.user
        )
    }
}

struct Reader<'a> {
    output: &'a serde_json::Value,
    site: &'a str,
}

impl Reader<'_> {
    /// A text key; numbers are taken as their text (a YAML `user: 1234` is still a name).
    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.output.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ConfigError::new(format!(
                "{}: `{key}` must be a string",
                self.site
            ))),
        }
    }

    /// The first of several alias keys that is set.
    fn string_of(&self, keys: &[&str]) -> Result<Option<String>, ConfigError> {
        for key in keys {
            if let Some(v) = self.string(key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// A whole number, given as a YAML number or as text (what `env_var()` renders to).
    fn number(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.output.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(serde_json::Value::String(s)) if s.trim().parse::<u64>().is_ok() => {
                Ok(s.trim().parse().ok())
            }
            Some(other) => Err(ConfigError::new(format!(
                "{}: `{key}` must be a whole number, found `{}`",
                self.site,
                secrets::redact(&other.to_string())
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "profile `p` target `pg` in profiles.yml";

    #[test]
    fn reads_dbt_postgres_keys_and_aliases() {
        let output = serde_json::json!({
            "type": "postgres", "host": "db.internal", "port": "6543", "user": "analyst",
            "pass": "s3cret-pw", "database": "analytics", "schema": "dbt_ana",
            "connect_timeout": 3, "role": "reporter", "search_path": "a, b",
            "keepalives_idle": 30, "sslmode": "prefer", "retries": 0, "threads": 4
        });
        let p = PostgresProfile::from_output(&output, SITE).unwrap();
        assert_eq!(
            (
                p.host.as_str(),
                p.port,
                p.user.as_str(),
                p.password.as_str(),
                p.database.as_str()
            ),
            ("db.internal", 6543, "analyst", "s3cret-pw", "analytics")
        );
        assert_eq!(p.schema, "dbt_ana");
        assert_eq!(p.connect_timeout, 3);
        assert_eq!(p.role.as_deref(), Some("reporter"));
        assert_eq!(p.search_path.as_deref(), Some("a, b"));
        assert_eq!((p.keepalives_idle, p.retries), (30, 0));
        assert!(!format!("{p:?}").contains("s3cret-pw"));
        assert_eq!(crate::secrets::redact("x s3cret-pw y"), "x **** y");
    }

    #[test]
    fn dbt_defaults() {
        let output = serde_json::json!({
            "host": "h", "port": 5432, "user": "u", "password": "pw12", "dbname": "d", "schema": "s"
        });
        let p = PostgresProfile::from_output(&output, SITE).unwrap();
        assert_eq!(
            (p.connect_timeout, p.keepalives_idle, p.retries),
            (10, 0, 1)
        );
        assert_eq!(p.role, None);
        assert_eq!(p.location(), "postgres h:5432/d as u");
    }

    #[test]
    fn names_every_missing_required_key() {
        let output = serde_json::json!({"host": "h", "user": "u", "dbname": "d"});
        let err = PostgresProfile::from_output(&output, SITE).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("profile `p` target `pg` in profiles.yml (type: postgres) is missing `port`, `password`, `schema`"),
            "{text}"
        );
        assert!(text.contains("hint: dbt-postgres requires"), "{text}");
    }

    #[test]
    fn bad_sslmode_and_port_are_named() {
        let output = serde_json::json!({
            "host": "h", "port": 5432, "user": "u", "password": "pw12", "dbname": "d", "schema": "s",
            "sslmode": "verify_full"
        });
        let text = PostgresProfile::from_output(&output, SITE)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("`sslmode: verify_full` is not a libpq sslmode"),
            "{text}"
        );
        let bad_port = serde_json::json!({
            "host": "h", "port": 70000, "user": "u", "password": "pw12", "dbname": "d", "schema": "s"
        });
        let text = PostgresProfile::from_output(&bad_port, SITE)
            .unwrap_err()
            .to_string();
        assert!(text.contains("`port: 70000` is not a TCP port"), "{text}");
    }
}
