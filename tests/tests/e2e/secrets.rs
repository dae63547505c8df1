//! Secrets never leave the process: `DBT_ENV_SECRET_*` values wherever they are used (a URL
//! query, a plain header), and env_var() values of secret settings (`password`, `secret`,
//! `Authorization`), while every command runs with failures forced — a receiver answering
//! 401 with an echo of everything it got, a database that refuses connections — and the most
//! verbose diagnostics. No stdout, stderr, results, state, history or any other file of the
//! project holds any of the values.

use dbt_activate_e2e::{Project, Reply, RunOutput};

use crate::common::*;

const URL_TOKEN: &str = "urltok-6c1e7d0b5a";
const HEADER_VALUE: &str = "hdrval-91f3aa07c2";
const SIGNING_KEY: &str = "signkey-0d4b8e2f71";
const BEARER: &str = "bearer-5e9c13a8d6";
const PG_PASSWORD: &str = "pgpass-3a7f0c9e14";
const SECRETS: [&str; 5] = [URL_TOKEN, HEADER_VALUE, SIGNING_KEY, BEARER, PG_PASSWORD];

fn setup(p: &Project) {
    p.replace_in_file(
        "activate.yml",
        "alerts:    {type: webhook, url: \"{{ env_var('ACTIVATE_WEBHOOK_URL') }}\", secret: \"{{ env_var('ACTIVATE_WEBHOOK_SECRET', '') }}\", batch_size: 50}",
        "alerts:    {type: webhook, url: \"{{ env_var('ACTIVATE_WEBHOOK_URL') }}?token={{ env_var('DBT_ENV_SECRET_URL_TOKEN') }}\", \
         secret: \"{{ env_var('HOOK_SIGNING_KEY') }}\", max_retries: 1, \
         headers: {X-Custom: \"{{ env_var('DBT_ENV_SECRET_HEADER_VALUE') }}\", Authorization: \"Bearer {{ env_var('HOOK_BEARER') }}\"}}",
    );
    p.replace_in_file(
        "activate.yml",
        "crm:       {type: postgres, url: \"{{ env_var('ACTIVATE_PG_URL') }}\", schema: crm}",
        "crm:       {type: postgres, host: 127.0.0.1, port: 1, user: postgres, dbname: nowhere, \
         password: \"{{ env_var('DBT_ENV_SECRET_PG_PASSWORD') }}\", connect_timeout_seconds: 2, schema: crm}",
    );
}

fn activate(p: &Project, args: &[&str]) -> RunOutput {
    p.activate_cmd(args)
        .env("DBT_ENV_SECRET_URL_TOKEN", URL_TOKEN)
        .env("DBT_ENV_SECRET_HEADER_VALUE", HEADER_VALUE)
        .env("HOOK_SIGNING_KEY", SIGNING_KEY)
        .env("HOOK_BEARER", BEARER)
        .env("DBT_ENV_SECRET_PG_PASSWORD", PG_PASSWORD)
        .env(
            "PG_URL_WITH_PASSWORD",
            &p.pg.url().replacen(
                "postgres://postgres@",
                &format!("postgres://postgres:{PG_PASSWORD}@"),
                1,
            ),
        )
        .env("DBT_ACTIVATE_LOG", "trace")
        .run()
}

#[test]
fn secrets_stay_out_of_every_output_and_file_when_everything_fails() {
    let p = Project::new();
    setup(&p);
    // A receiver that refuses, quoting back its whole request: path, query and headers.
    p.webhook.respond_with(|_, r| {
        let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Reply::status(401).body(&format!(
            "401 Unauthorized: path={} headers={}",
            r.path,
            headers.join("; ")
        ))
    });

    // 1. The database refuses connections: every command stops before sending anything.
    let mut outputs = Vec::new();
    for args in [
        &["run", "--target", "ci"][..],
        &["plan", "--target", "ci"][..],
        &["validate", "--target", "ci"][..],
        &["debug", "--target", "ci"][..],
    ] {
        let out = activate(&p, args);
        assert!(!out.text().contains("panicked"), "{out}");
        outputs.push(out);
    }
    assert_eq!(outputs[0].code, 2, "{}", outputs[0]);
    assert!(
        outputs[0].text().contains("could not connect"),
        "{}",
        outputs[0]
    );

    // 2. The database works (its password travels in a URL), the receiver answers 401.
    p.replace_in_file(
        "activate.yml",
        "crm:       {type: postgres, host: 127.0.0.1, port: 1, user: postgres, dbname: nowhere, \
         password: \"{{ env_var('DBT_ENV_SECRET_PG_PASSWORD') }}\", connect_timeout_seconds: 2, schema: crm}",
        "crm:       {type: postgres, url: \"{{ env_var('PG_URL_WITH_PASSWORD') }}\", schema: crm}",
    );
    for args in [
        &["run", "--target", "ci"][..],
        &["run", "--target", "ci", "--log-format", "json"][..],
        &["plan", "--target", "ci"][..],
        &["debug", "--target", "ci"][..],
        &["history", "--target", "ci"][..],
        &["ls", "--target", "ci"][..],
    ] {
        let out = activate(&p, args);
        assert!(!out.text().contains("panicked"), "{out}");
        outputs.push(out);
    }
    let alerts = p.result(dbt_activate_e2e::syncs::ALERTS);
    assert_status(&alerts, "warn");
    assert_eq!(count(&alerts, "rejected"), 7, "{alerts:#}");
    assert!(
        alerts.to_string().contains("401"),
        "the webhook's 401 is reported: {alerts:#}"
    );
    assert!(
        alerts.to_string().to_lowercase().contains("x-custom=****"),
        "the echoed header is masked, not dropped: {alerts:#}"
    );
    assert!(
        p.pg.count(r#"crm."Lead""#) > 0,
        "the database took the leads"
    );
    // The receiver did see the real values: the test's secrets are the ones in use.
    let seen = p.webhook.requests();
    let first = seen
        .iter()
        .find(|r| r.method == "POST")
        .expect("a delivery");
    assert!(first.path.contains(URL_TOKEN));
    assert_eq!(first.header("x-custom"), Some(HEADER_VALUE));
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {BEARER}").as_str())
    );
    assert!(
        outputs
            .iter()
            .any(|o| o.stderr.contains("TRACE") || o.stderr.contains("DEBUG")),
        "the most verbose diagnostics were on"
    );

    let outputs: Vec<&RunOutput> = outputs.iter().collect();
    assert_secrets_never_written(&p, &outputs, &SECRETS);
    // And nowhere else in the project either (synced files, dbt's own logs, ...).
    for file in files_under(p.path()) {
        if file.extension().is_some_and(|e| e == "duckdb") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
        for s in SECRETS {
            assert!(!text.contains(s), "{} holds a secret", file.display());
        }
    }
}
