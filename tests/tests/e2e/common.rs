//! What the example's models hold and what each destination ended up holding,
//! in comparable form, plus assertions shared by the tests.

use dbt_activate_e2e::{Project, RunOutput, compact_json, json_text, num, sorted};
use serde_json::Value;

pub type Rows = Vec<Vec<Option<String>>>;

/// `dbt-activate run --target ci`.
pub fn run_ci(p: &Project) -> RunOutput {
    p.activate(&["run", "--target", "ci"])
}

fn map_col(rows: Rows, col: usize, f: impl Fn(&str) -> String) -> Rows {
    rows.into_iter()
        .map(|mut r| {
            r[col] = r[col].as_deref().map(&f);
            r
        })
        .collect()
}

// ---- enriched_leads -> crm."Lead" (PostgreSQL) ----

pub fn leads_in_postgres(p: &Project) -> Rows {
    let rows = p.pg_rows(
        r#"select "Email", "Company", "Lead_Score__c", "Features_Used__c"::text,
                  to_char("Last_Product_Activity__c" at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "LeadSource"
           from crm."Lead""#,
    );
    sorted(map_col(rows, 3, compact_json))
}

pub fn leads_in_model(p: &Project) -> Rows {
    let rows = p.duck(
        "select email, company, lead_score, to_json(features_used)::varchar,
                strftime(timezone('UTC', last_active_at), '%Y-%m-%d %H:%M:%S'), 'dbt-activate'
         from main.enriched_leads",
    );
    sorted(map_col(rows, 3, compact_json))
}

// ---- high_value_at_risk -> marketing.high_value_at_risk (PostgreSQL) ----

pub fn segment_in_postgres(p: &Project) -> Rows {
    sorted(p.pg_rows(
        "select account_id, email, account_name, mrr::text from marketing.high_value_at_risk",
    ))
}

pub fn segment_in_model(p: &Project) -> Rows {
    sorted(p.duck("select account_id, owner_email, account_name, cast(mrr as varchar) from main.high_value_at_risk"))
}

// ---- churn_alerts -> the webhook ----

pub fn alerts_in_model(p: &Project) -> Rows {
    let rows = p.duck("select alert_id, message, account_name, cast(churn_risk_score as varchar) from main.churn_alerts");
    sorted(map_col(rows, 3, num))
}

/// Webhook records `{alert_id, text, account, score}` as rows.
pub fn alerts_from_records(records: &[Value]) -> Rows {
    sorted(
        records
            .iter()
            .map(|r| {
                ["alert_id", "text", "account", "score"]
                    .iter()
                    .map(|k| json_text(&r[*k]))
                    .collect()
            })
            .collect(),
    )
}

// ---- churn_risk -> synced/cs_tool/companies.jsonl ----

pub fn companies_in_model(p: &Project) -> Rows {
    let rows = p.duck(
        "select account_id, account_name, cast(churn_risk_score as varchar), risk_band, cast(mrr as varchar)
         from main.churn_risk",
    );
    sorted(map_col(map_col(rows, 2, num), 4, num))
}

pub fn companies_in_file(p: &Project) -> Rows {
    sorted(
        p.synced_jsonl("cs_tool", "companies")
            .iter()
            .map(|r| {
                [
                    "company_id",
                    "name",
                    "churn_risk_score",
                    "risk_band",
                    "monthly_spend",
                ]
                .iter()
                .map(|k| json_text(&r[*k]))
                .collect()
            })
            .collect(),
    )
}

// ---- billing_usage -> synced/billing/usage_records.jsonl ----

pub fn usage_in_model(p: &Project) -> Rows {
    sorted(p.duck(
        "select usage_id, account_id, cast(quantity as varchar), strftime(period_start, '%Y-%m-%d') from main.billing_usage",
    ))
}

pub fn usage_in_file(p: &Project) -> Rows {
    sorted(
        p.synced_jsonl("billing", "usage_records")
            .iter()
            .map(|r| {
                ["usage_id", "customer", "quantity", "timestamp"]
                    .iter()
                    .map(|k| json_text(&r[*k]))
                    .collect()
            })
            .collect(),
    )
}

// ---- results ----

/// A count field of a result (`inserted`, `updated`, ...).
#[track_caller]
pub fn count(result: &Value, field: &str) -> u64 {
    result[field]
        .as_u64()
        .unwrap_or_else(|| panic!("result has no numeric `{field}`: {result:#}"))
}

/// Asserts `[inserted, updated, deleted]` of a result.
#[track_caller]
pub fn assert_counts(result: &Value, inserted: u64, updated: u64, deleted: u64) {
    let got = [
        count(result, "inserted"),
        count(result, "updated"),
        count(result, "deleted"),
    ];
    assert_eq!(
        got,
        [inserted, updated, deleted],
        "[inserted, updated, deleted] of {}:\n{result:#}",
        result["name"]
    );
}

#[track_caller]
pub fn assert_status(result: &Value, status: &str) {
    assert_eq!(
        result["status"], status,
        "status of {}:\n{result:#}",
        result["name"]
    );
}

/// The `message` of a result, lower-cased.
pub fn message(result: &Value) -> String {
    result["message"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase()
}

/// A rejection's key as JSON (the contract: a JSON array of the key values,
/// which may be serialised as a string holding that array).
pub fn rejection_key(rejection: &Value) -> Value {
    match &rejection["key"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    }
}

/// The log line of a run about `model` (its OK / ERROR / SKIP line, not START). Logs go to
/// stderr.
#[track_caller]
pub fn sync_line<'a>(out: &'a RunOutput, needle: &str) -> &'a str {
    out.stderr
        .lines()
        .find(|l| l.contains(needle) && !l.contains(" START "))
        .unwrap_or_else(|| panic!("no output line with {needle:?}\n{out}"))
}

/// Nothing reached any destination: the PostgreSQL tables are empty, the
/// webhook got no request, and no file was written under `synced/`.
#[track_caller]
pub fn assert_nothing_sent(p: &Project) {
    assert_eq!(p.pg.count(r#"crm."Lead""#), 0, "crm.\"Lead\" must be empty");
    assert_eq!(
        p.pg.count("marketing.high_value_at_risk"),
        0,
        "marketing.high_value_at_risk must be empty"
    );
    let posts: Vec<_> = p
        .webhook
        .requests()
        .into_iter()
        .filter(|r| r.method != "HEAD")
        .collect();
    assert!(
        posts.is_empty(),
        "the webhook must have received nothing: {posts:?}"
    );
    assert_eq!(
        p.synced_files(),
        Vec::<String>::new(),
        "nothing may be written under synced/"
    );
}

/// A configuration error: exit code 2, the message names every `needle`, no
/// panic, and nothing was sent anywhere.
#[track_caller]
pub fn assert_config_error(p: &Project, out: &RunOutput, needles: &[&str]) {
    out.assert_code(2);
    let text = out.text();
    assert!(
        !text.contains("panicked"),
        "a configuration error must not be a panic\n{out}"
    );
    for needle in needles {
        assert!(
            text.contains(needle),
            "the error should mention {needle:?}\n{out}"
        );
    }
    assert_nothing_sent(p);
}

/// Paths, URLs, timings and timestamps replaced by placeholders.
pub fn normalised(p: &Project, text: &str) -> String {
    text.replace(&p.path().display().to_string(), "[PROJECT]")
        .replace(p.pg.url(), "[PG_URL]")
        .replace(p.webhook.url(), "[WEBHOOK_URL]")
}

/// `insta::assert_snapshot!` with timings, timestamps, clock prefixes and UUIDs normalised.
macro_rules! snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({
            prepend_module_to_snapshot => false,
            filters => vec![
                (r"(?m)^\d{2}:\d{2}:\d{2}  ", "[HH:MM:SS]  "),
                (r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?", "[TIMESTAMP]"),
                (r"\bin \d+(\.\d+)?(ms|s)\b", "in [TIME]"),
                (r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "[UUID]"),
            ],
        }, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

/// Every file below `dir`, recursively.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// No secret appears in any output, nor in any file under `target/`, `.dbt-activate/` or
/// `logs/` (results, state, history).
#[track_caller]
pub fn assert_secrets_never_written(p: &Project, outputs: &[&RunOutput], secrets: &[&str]) {
    for out in outputs {
        for s in secrets {
            assert!(!out.text().contains(s), "a secret was printed\n{out}");
        }
    }
    let mut files = files_under(&p.file("target"));
    files.extend(files_under(&p.file(".dbt-activate")));
    files.extend(files_under(&p.file("logs")));
    assert!(files.iter().any(|f| f.ends_with("activate_results.json")));
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for s in secrets {
            assert!(!text.contains(s), "{} contains a secret", f.display());
        }
    }
}
