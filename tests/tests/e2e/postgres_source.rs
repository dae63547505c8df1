//! PostgreSQL as the warehouse: real `dbt build` with dbt-postgres into the test server, then
//! `dbt-activate run` reading the same profile output and syncing from it; and the ways such a
//! profile goes wrong (each a clear error, exit 2, nothing sent).

use dbt_activate_e2e::{Project, RunOutput, compact_json, num, sorted, syncs};

use crate::common::*;

/// The password of the login role each test creates (a member of activate_password_auth,
/// which scripts/postgres.sh makes log in with its password).
pub(crate) const PASSWORD: &str = "pg-source-horse-battery";

/// A login role with a real password, owning a schema in the test's database.
pub(crate) struct PgLogin {
    user: String,
    host: String,
    port: String,
}

impl PgLogin {
    pub(crate) fn create(p: &Project) -> Self {
        let url = p.pg.url();
        let authority = url
            .split_once('@')
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(authority, _)| authority)
            .expect("postgres://user@host:port/db");
        let (host, port) = authority.rsplit_once(':').expect("host:port");
        let user = format!("dbt_{}", p.pg.name());
        p.pg.execute(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}' IN ROLE activate_password_auth; \
             GRANT CREATE, CONNECT ON DATABASE {db} TO {user}",
            db = p.pg.name()
        ));
        Self {
            user,
            host: host.to_owned(),
            port: port.to_owned(),
        }
    }

    /// The environment dbt and dbt-activate both read the profile from.
    pub(crate) fn env(&self, password: &str) -> Vec<(&'static str, String)> {
        vec![
            ("DBT_ENV_SECRET_PG_PASSWORD", password.to_owned()),
            ("ACTIVATE_TEST_PG_PORT", self.port.clone()),
        ]
    }

    /// A `type: postgres` output named `target` in the project's profiles.yml, as dbt-postgres
    /// documents it; `drop` leaves keys out, `extra` adds lines.
    pub(crate) fn add_output(
        &self,
        p: &Project,
        target: &str,
        drop: &[&str],
        extra: &[(&str, &str)],
    ) {
        let mut keys: Vec<(&str, String)> = vec![
            ("type", "postgres".into()),
            ("host", self.host.clone()),
            (
                "port",
                "\"{{ env_var('ACTIVATE_TEST_PG_PORT') | as_number }}\"".into(),
            ),
            ("user", self.user.clone()),
            (
                "password",
                "\"{{ env_var('DBT_ENV_SECRET_PG_PASSWORD') }}\"".into(),
            ),
            ("dbname", p.pg.name().to_owned()),
            ("schema", "analytics".into()),
            ("threads", "2".into()),
        ];
        keys.retain(|(k, _)| !drop.contains(k));
        for (k, v) in extra {
            match keys.iter_mut().find(|(key, _)| key == k) {
                Some(entry) => entry.1 = (*v).to_owned(),
                None => keys.push((k, (*v).to_owned())),
            }
        }
        let mut yaml = format!("    {target}:\n");
        for (k, v) in keys {
            yaml.push_str(&format!("      {k}: {v}\n"));
        }
        p.edit_file("profiles.yml", |s| s + &yaml);
    }

    pub(crate) fn dbt_build(&self, p: &Project, target: &str) {
        let env = self.env(PASSWORD);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        p.dbt_with_env(&["build", "--target", target], &env)
            .assert_success();
    }

    pub(crate) fn activate(&self, p: &Project, args: &[&str], password: &str) -> RunOutput {
        let mut cmd = p.activate_cmd(args);
        for (k, v) in self.env(password) {
            cmd = cmd.env(k, &v);
        }
        cmd.run()
    }
}

/// On target `pg`, crm goes to the test's PostgreSQL destination; the other destinations
/// write files under synced/.
pub(crate) fn route_crm_to_postgres(p: &Project) {
    p.replace_in_file(
        "activate.yml",
        "\ntargets:\n",
        "\ntargets:\n  pg:\n    destinations:\n      crm: {type: postgres, url: \"{{ env_var('ACTIVATE_PG_URL') }}\", schema: crm}\n",
    );
}

fn leads_in_warehouse(p: &Project) -> Rows {
    let rows = p.pg_rows(
        "select email, company, lead_score, to_json(features_used)::text,
                to_char(last_active_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'dbt-activate'
         from analytics.enriched_leads",
    );
    sorted(
        rows.into_iter()
            .map(|mut r| {
                r[3] = r[3].as_deref().map(compact_json);
                r
            })
            .collect(),
    )
}

fn segment_in_warehouse(p: &Project) -> Rows {
    sorted(p.pg_rows(
        "select account_id, owner_email, account_name, mrr::text from analytics.high_value_at_risk",
    ))
}

fn segment_in_csv(p: &Project) -> Rows {
    sorted(
        p.synced_csv("marketing", "high_value_at_risk")
            .into_iter()
            .map(|r| {
                ["account_id", "email", "account_name", "mrr"]
                    .iter()
                    .map(|k| r.get(*k).cloned())
                    .collect()
            })
            .collect(),
    )
}

fn companies_in_warehouse(p: &Project) -> Rows {
    let rows = p.pg_rows(
        "select account_id, account_name, churn_risk_score::text, risk_band, mrr::text
         from analytics.churn_risk",
    );
    sorted(
        rows.into_iter()
            .map(|mut r| {
                r[2] = r[2].as_deref().map(num);
                r[4] = r[4].as_deref().map(num);
                r
            })
            .collect(),
    )
}

fn usage_in_warehouse(p: &Project) -> Rows {
    sorted(p.pg_rows(
        "select usage_id, account_id, quantity::text, to_char(period_start, 'YYYY-MM-DD')
         from analytics.billing_usage",
    ))
}

#[test]
fn dbt_postgres_build_then_sync_from_postgres() {
    let p = Project::new();
    let login = PgLogin::create(&p);
    login.add_output(&p, "pg", &[], &[]);
    route_crm_to_postgres(&p);
    login.dbt_build(&p, "pg");
    // dbt-postgres names relations "database"."schema"."table" in the manifest.
    let manifest = p.read_file("target/manifest.json");
    assert!(
        manifest.contains(&format!(
            r#"\"{}\".\"analytics\".\"enriched_leads\""#,
            p.pg.name()
        )),
        "the manifest has no three-part relation name for enriched_leads"
    );

    let out = login.activate(&p, &["run", "--target", "pg"], PASSWORD);
    out.assert_success();
    out.assert_contains("ERROR=0");
    assert!(!out.text().contains(PASSWORD), "{out}");

    // Every sync landed every row of its model, as PostgreSQL holds it...
    let leads = leads_in_warehouse(&p);
    assert_eq!(leads.len(), 30);
    assert_eq!(leads_in_postgres(&p), leads);
    assert_eq!(segment_in_csv(&p), segment_in_warehouse(&p));
    assert_eq!(companies_in_file(&p), companies_in_warehouse(&p));
    assert_eq!(usage_in_file(&p), usage_in_warehouse(&p));
    // ...and exactly what the same project built on DuckDB gives (the template's build).
    assert_eq!(leads, leads_in_model(&p));
    assert_eq!(companies_in_warehouse(&p), companies_in_model(&p));
    assert_eq!(usage_in_warehouse(&p), usage_in_model(&p));
    assert_counts(&p.result(syncs::LEADS), 30, 0, 0);

    // The model changes in the warehouse: the mirror follows, the rest sends nothing.
    let ids: Vec<String> = segment_in_warehouse(&p)
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    assert!(ids.len() >= 2, "the segment has at least two accounts");
    p.pg.execute(&format!(
        "update analytics.high_value_at_risk set account_name = account_name || ' (renamed)' where account_id = '{}';
         delete from analytics.high_value_at_risk where account_id = '{}'",
        ids[0],
        ids[ids.len() - 1]
    ));
    let again = login.activate(&p, &["run", "--target", "pg"], PASSWORD);
    again.assert_success();
    assert_counts(&p.result(syncs::HIGH_VALUE), 0, 1, 1);
    assert_counts(&p.result(syncs::LEADS), 0, 0, 0);
    assert_counts(&p.result(syncs::BILLING), 0, 0, 0);
    assert_eq!(segment_in_csv(&p), segment_in_warehouse(&p));
    assert_eq!(segment_in_csv(&p).len(), ids.len() - 1);
}

#[test]
fn a_relation_dropped_since_the_manifest_is_named_and_nothing_is_sent() {
    let p = Project::new();
    let login = PgLogin::create(&p);
    login.add_output(&p, "pg", &[], &[]);
    route_crm_to_postgres(&p);
    login.dbt_build(&p, "pg");
    p.pg.execute("drop table analytics.churn_risk");
    let out = login.activate(&p, &["run", "--target", "pg"], PASSWORD);
    assert_config_error(
        &p,
        &out,
        &[
            "model `churn_risk`",
            &format!(r#""{}"."analytics"."churn_risk""#, p.pg.name()),
            "does not exist",
            "hint: run `dbt build`",
        ],
    );
}

#[test]
fn a_profile_missing_a_required_key_names_profile_target_and_key() {
    let p = Project::new();
    let login = PgLogin::create(&p);
    login.add_output(&p, "pg", &["port", "schema"], &[]);
    let out = login.activate(&p, &["run", "--target", "pg"], PASSWORD);
    assert_config_error(
        &p,
        &out,
        &[
            "profile `activate_example` target `pg`",
            "profiles.yml",
            "missing `port`, `schema`",
            "hint: dbt-postgres requires",
        ],
    );
}

#[test]
fn a_wrong_password_is_a_clear_error_without_the_password() {
    let p = Project::new();
    let login = PgLogin::create(&p);
    login.add_output(&p, "pg", &[], &[]);
    let wrong = "not-the-pg-password-1234";
    let out = login.activate(&p, &["run", "--target", "pg"], wrong);
    assert_config_error(
        &p,
        &out,
        &[
            "could not connect to the PostgreSQL warehouse of profile `activate_example` target `pg`",
            "password authentication failed",
            "hint: check `password`",
        ],
    );
    assert!(!out.text().contains(wrong), "the password leaked:\n{out}");
    // `debug` says the same.
    let debug = login.activate(&p, &["debug", "--target", "pg"], wrong);
    assert!(
        debug.text().contains("password authentication failed") && !debug.text().contains(wrong),
        "{debug}"
    );
}

#[test]
fn an_unreachable_host_fails_within_connect_timeout() {
    let p = Project::new();
    let login = PgLogin::create(&p);
    // A server that accepts the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let silent_port = silent.local_addr().expect("an address").port().to_string();
    login.add_output(
        &p,
        "pg",
        &[],
        &[
            ("port", &silent_port),
            ("connect_timeout", "1"),
            ("retries", "0"),
        ],
    );
    let out = login.activate(&p, &["run", "--target", "pg"], PASSWORD);
    assert_config_error(
        &p,
        &out,
        &[
            "profile `activate_example` target `pg`",
            &format!("127.0.0.1:{silent_port}"),
            "no answer within connect_timeout (1 s)",
        ],
    );
    drop(silent);

    // Nothing listening at all: refused at once.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        l.local_addr().expect("an address").port().to_string()
    };
    p.edit_file("profiles.yml", |s| s.replace(&silent_port, &closed_port));
    let out = login.activate(&p, &["run", "--target", "pg"], PASSWORD);
    assert_config_error(
        &p,
        &out,
        &[
            "profile `activate_example` target `pg`",
            "hint: is PostgreSQL running on 127.0.0.1:",
        ],
    );
}

#[test]
fn tls_verify_full_connects_and_a_certificate_from_another_ca_is_refused() {
    // The test server's certificate (scripts/postgres.sh) names `localhost`.
    let p = Project::new();
    let login = PgLogin::create(&p);
    let ca = std::env::var("ACTIVATE_TEST_PG_CA").expect("ACTIVATE_TEST_PG_CA (scripts/test.sh)");
    let other = std::env::var("ACTIVATE_TEST_PG_OTHER_CA")
        .expect("ACTIVATE_TEST_PG_OTHER_CA (scripts/test.sh)");
    login.add_output(
        &p,
        "pg",
        &[],
        &[
            ("host", "localhost"),
            ("sslmode", "verify-full"),
            ("sslrootcert", &ca),
        ],
    );
    let debug = login.activate(&p, &["debug", "--target", "pg"], PASSWORD);
    debug.assert_contains(&format!(
        "warehouse: OK (postgres localhost:{}/{} as {})",
        login.port,
        p.pg.name(),
        login.user
    ));

    p.edit_file("profiles.yml", |s| s.replace(&ca, &other));
    let out = login.activate(&p, &["run", "--target", "pg"], PASSWORD);
    assert_config_error(
        &p,
        &out,
        &[
            "profile `activate_example` target `pg`",
            "certificate",
            "hint: the TLS handshake failed under `sslmode: verify-full`",
        ],
    );
}

/// The warehouse connection dropped in the middle of the read (the server ends the backend):
/// the sync fails naming the model and the cause, nothing is sent and the state keeps what it
/// had; the next run sends every row exactly once.
#[test]
fn a_warehouse_connection_dropped_mid_stream_fails_the_sync_and_the_next_run_sends_everything() {
    let p = Project::new();
    let login = PgLogin::create(&p);
    login.add_output(&p, "pg", &[], &[]);
    // A view that takes about 5 s to read: 100,000 rows, a pause every 1,000. The pause's
    // subquery refers to `i`, so PostgreSQL runs it for each such row (an uncorrelated one runs
    // once, and the read would end before the test sees it).
    p.write_file(
        "models/marts/slow_accounts.sql",
        "{{ config(materialized='view') }}\n\
         select 'acct-' || i::text as account_key, i as n\n\
         from generate_series(1, 100000) as t(i)\n\
         where case when i % 1000 = 0 then (select true from pg_sleep(0.05 + 0 * i)) else true end\n",
    );
    p.write_file(
        "models/marts/slow_accounts.yml",
        "version: 2\nmodels:\n  - name: slow_accounts\n    config:\n      meta:\n        activate:\n          \
         destination: hooked\n          object: slow_accounts\n          sync_mode: mirror\n          \
         primary_key: account_key\n",
    );
    p.replace_in_file(
        "activate.yml",
        "\ntargets:\n",
        "\n  hooked: {type: webhook, url: \"{{ env_var('ACTIVATE_WEBHOOK_URL') }}\", batch_size: 5000}\n\ntargets:\n",
    );
    let env = login.env(PASSWORD);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    p.dbt_with_env(
        &["build", "--target", "pg", "--select", "slow_accounts"],
        &env,
    )
    .assert_success();

    let mut cmd = p.activate_cmd(&["run", "--target", "pg", "--select", "slow_accounts"]);
    for (k, v) in login.env(PASSWORD) {
        cmd = cmd.env(k, &v);
    }
    let log = p.path().join("run.log");
    let mut child = cmd.spawn_logging(&log);
    // End the backend that is reading the view, once it is reading.
    let started = std::time::Instant::now();
    let mut terminated = false;
    while !terminated && started.elapsed() < std::time::Duration::from_secs(60) {
        let rows = p.pg_rows(&format!(
            "select count(*)::text from (select pg_terminate_backend(pid) from pg_stat_activity \
             where usename = '{}' and state = 'active' and query ilike '%slow_accounts%' \
             and query not ilike 'select * from%' and pid <> pg_backend_pid()) t",
            login.user
        ));
        terminated = rows[0][0].as_deref() != Some("0");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        terminated,
        "the read was seen and ended:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let status = child.wait().expect("wait");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "a failed sync:\n{text}");
    let r = p.result("slow_accounts__hooked__slow_accounts");
    assert_status(&r, "error");
    assert!(
        message(&r).contains("terminat") || message(&r).contains("connection"),
        "the cause is named: {r:#}"
    );
    assert_eq!(p.webhook.request_count(), 0, "nothing was sent");

    // The next run reads the whole view and sends every row once.
    let out = login.activate(
        &p,
        &["run", "--target", "pg", "--select", "slow_accounts"],
        PASSWORD,
    );
    out.assert_success();
    assert_counts(
        &p.result("slow_accounts__hooked__slow_accounts"),
        100_000,
        0,
        0,
    );
    let mut keys: Vec<String> = p
        .webhook
        .accepted_records()
        .iter()
        .map(|r| r["account_key"].as_str().unwrap_or_default().to_owned())
        .collect();
    keys.sort();
    let total = keys.len();
    keys.dedup();
    assert_eq!((total, keys.len()), (100_000, 100_000), "every row once");
}
