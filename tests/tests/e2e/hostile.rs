//! Values that break naive code — quotes, backslashes, control characters, unicode, a 1 MB
//! string, NaN/±Infinity, HUGEINT and DECIMAL(38,10) extremes, timestamps with zones, a NULL
//! primary key, keys that differ only in case or a trailing space — through PostgreSQL, the
//! webhook, JSON-lines and CSV files, and HubSpot. Each value arrives exactly (the test reads
//! what each destination holds) or its row is rejected with a reason; none is dropped silently.

use std::collections::BTreeMap;

use dbt_activate_e2e::fakes::hubspot::HubSpotFake;
use dbt_activate_e2e::{Project, RunOutput, sorted};
use serde_json::value::RawValue;

use crate::common::*;

const HUBSPOT_TOKEN: &str = "pat-na1-0badc0de-1111-2222-3333-444455556666";

/// `DOUBLE` values of the model, by name (the text DuckDB casts from).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dbl {
    Finite(f64),
    NaN,
    PosInf,
    NegInf,
}

impl Dbl {
    fn sql(self) -> String {
        match self {
            Dbl::Finite(f) => format!("'{f:e}'"),
            Dbl::NaN => "'NaN'".into(),
            Dbl::PosInf => "'Infinity'".into(),
            Dbl::NegInf => "'-Infinity'".into(),
        }
    }
    fn is_finite(self) -> bool {
        matches!(self, Dbl::Finite(_))
    }
    /// Same value as `f` (bit for bit for finite values).
    fn matches(self, f: f64) -> bool {
        match self {
            Dbl::Finite(x) => x.to_bits() == f.to_bits(),
            Dbl::NaN => f.is_nan(),
            Dbl::PosInf => f == f64::INFINITY,
            Dbl::NegInf => f == f64::NEG_INFINITY,
        }
    }
}

/// One row of the `hostile_values` model and what every destination must end up holding.
#[derive(Debug, Clone)]
struct Row {
    /// `None`: a NULL primary key.
    id: Option<String>,
    /// The exact text; `txt_sql` builds it in SQL when set (the 1 MB string).
    txt: String,
    txt_sql: Option<String>,
    big: &'static str,
    dec: &'static str,
    dbl: Dbl,
    /// The DuckDB literal, with its zone.
    ts_in: &'static str,
    /// The same instant in UTC, microseconds.
    ts_utc: &'static str,
}

fn row(id: &str, txt: &str) -> Row {
    Row {
        id: Some(id.to_owned()),
        txt: txt.to_owned(),
        txt_sql: None,
        big: "1",
        dec: "0.0000000000",
        dbl: Dbl::Finite(0.5),
        ts_in: "2025-01-01 00:00:00+00",
        ts_utc: "2025-01-01T00:00:00.000000Z",
    }
}

fn hostile_rows() -> Vec<Row> {
    let long_unit = "0123456789abcdé";
    vec![
        row("quotes", r#"it's "quoted"; `tick` '' -- /* c */ $$ $tag$"#),
        row("backslash", r"C:\temp\new \\ \' \x00 \n \u0000 \N end\"),
        row("control", "a\nb\r\nc\td\u{7}e\u{1b}[31m\u{8}f"),
        row(
            "unicode",
            "café ü 日本語 🚀 \u{202e}rtl\u{202c} zero\u{200b}width \u{feff}bom \u{10ffff}",
        ),
        row(
            "template",
            "{{ 7*7 }} {% if true %}x{% endif %} ${HOME} %s %n",
        ),
        row("json_lookalike", r#"{"records":[1]}, "]"#),
        Row {
            txt: long_unit.repeat(70_000),
            txt_sql: Some(format!("repeat('{long_unit}', 70000)")),
            ..row("long_1mb", "")
        },
        row("nul_byte", "before\u{0}after"),
        Row {
            dbl: Dbl::NaN,
            ..row("nan", "not a number")
        },
        Row {
            dbl: Dbl::PosInf,
            ..row("pos_inf", "infinity")
        },
        Row {
            dbl: Dbl::NegInf,
            ..row("neg_inf", "minus infinity")
        },
        Row {
            dbl: Dbl::Finite(f64::MAX),
            ..row("max_double", "largest double")
        },
        Row {
            dbl: Dbl::Finite(5e-324),
            ..row("min_subnormal", "smallest double")
        },
        Row {
            big: "170141183460469231731687303715884105727",
            dec: "1234567890123456789012345678.9012345678",
            ..row("huge_pos", "HUGEINT max, 38 digits")
        },
        Row {
            big: "-170141183460469231731687303715884105727",
            dec: "-9999999999999999999999999999.9999999999",
            ..row("huge_neg", "HUGEINT min + 1, 38 nines")
        },
        Row {
            ts_in: "2025-03-01 14:26:58.123456+05:30",
            ts_utc: "2025-03-01T08:56:58.123456Z",
            ..row("tz_plus", "India")
        },
        Row {
            ts_in: "1969-12-31 23:59:59.999999-08:00",
            ts_utc: "1970-01-01T07:59:59.999999Z",
            ..row("tz_minus", "before the epoch in UTC-8")
        },
        row("Key", "upper case key"),
        row("key", "lower case key"),
        row("key ", "key with a trailing space"),
        row(" key", "key with a leading space"),
        Row {
            id: None,
            ..row("", "a NULL primary key")
        },
    ]
}

/// A DuckDB SQL expression for `s`: quotes doubled, control characters and braces (which
/// dbt's Jinja would read) through `chr()`.
fn sql_text(s: &str) -> String {
    let mut parts = Vec::new();
    let mut literal = String::new();
    for c in s.chars() {
        if c.is_control() || matches!(c, '{' | '}' | '%' | '#') {
            if !literal.is_empty() {
                parts.push(format!("'{}'", literal.replace('\'', "''")));
                literal.clear();
            }
            parts.push(format!("chr({})", c as u32));
        } else {
            literal.push(c);
        }
    }
    if !literal.is_empty() || parts.is_empty() {
        parts.push(format!("'{}'", literal.replace('\'', "''")));
    }
    parts.join(" || ")
}

fn model_sql(rows: &[Row]) -> String {
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "({}, {}, '{}', '{}', {}, '{}')",
                r.id.as_deref().map_or("NULL".into(), sql_text),
                r.txt_sql.clone().unwrap_or_else(|| sql_text(&r.txt)),
                r.big,
                r.dec,
                r.dbl.sql(),
                r.ts_in
            )
        })
        .collect();
    format!(
        "select cast(id as varchar) as id, cast(txt as varchar) as txt, cast(big as hugeint) as big,\n\
         cast(dec as decimal(38,10)) as dec, cast(dbl as double) as dbl, cast(ts as timestamptz) as ts\n\
         from (values\n{}\n) as t(id, txt, big, dec, dbl, ts)\n",
        values.join(",\n")
    )
}

const DESTINATIONS: &str = "destinations:
  hostile_pg: {type: postgres, url: \"{{ env_var('ACTIVATE_PG_URL') }}\", schema: hostile}
  hostile_hook: {type: webhook, url: \"{{ env_var('ACTIVATE_WEBHOOK_URL') }}\", batch_size: 5}
  hostile_jsonl: {type: file, path: \"synced/hostile_jsonl\", format: jsonl}
  hostile_csv: {type: file, path: \"synced/hostile_csv\", format: csv}
  hostile_hub: {type: hubspot, access_token: \"{{ env_var('HUBSPOT_ACCESS_TOKEN') }}\", base_url: \"{{ env_var('HUBSPOT_BASE_URL') }}\"}
";

const SCHEMA_YML: &str = "version: 2
models:
  - name: hostile_values
    config:
      meta:
        activate:
          - {destination: hostile_pg, object: hostile_values, sync_mode: incremental, primary_key: id}
          - {destination: hostile_hook, object: hostile_values, sync_mode: incremental, primary_key: id}
          - {destination: hostile_jsonl, object: hostile_values, sync_mode: incremental, primary_key: id}
          - {destination: hostile_csv, object: hostile_values, sync_mode: incremental, primary_key: id}
          - destination: hostile_hub
            object: companies
            sync_mode: incremental
            primary_key: id
            match_on: hostile_id
            mapping: {id: hostile_id, txt: hostile_txt, big: hostile_big, dec: hostile_dec, dbl: hostile_dbl, ts: hostile_ts}
";

const PG_SYNC: &str = "hostile_values__hostile_pg__hostile_values";
const HOOK_SYNC: &str = "hostile_values__hostile_hook__hostile_values";
const JSONL_SYNC: &str = "hostile_values__hostile_jsonl__hostile_values";
const CSV_SYNC: &str = "hostile_values__hostile_csv__hostile_values";
const HUB_SYNC: &str = "hostile_values__hostile_hub__companies";

fn setup(p: &Project, rows: &[Row]) {
    p.replace_in_file(
        "activate.yml",
        "destinations:\n  crm:",
        &format!("{DESTINATIONS}  crm:"),
    );
    p.write_file("models/marts/hostile_values.sql", &model_sql(rows));
    p.write_file("models/marts/hostile_values.yml", SCHEMA_YML);
    p.pg.execute(
        "CREATE SCHEMA hostile;
         CREATE TABLE hostile.hostile_values (id text PRIMARY KEY, txt text, big numeric,
             dec numeric(38,10), dbl double precision, ts timestamptz)",
    );
    p.dbt(&["build", "--target", "ci", "--select", "hostile_values"])
        .assert_success();
}

fn hubspot_account() -> HubSpotFake {
    let fake = HubSpotFake::start(HUBSPOT_TOKEN);
    fake.define_property("companies", "hostile_id", "string", true, &[]);
    fake.define_property("companies", "hostile_txt", "string", false, &[]);
    fake.define_property("companies", "hostile_big", "number", false, &[]);
    fake.define_property("companies", "hostile_dec", "number", false, &[]);
    fake.define_property("companies", "hostile_dbl", "number", false, &[]);
    fake.define_property("companies", "hostile_ts", "datetime", false, &[]);
    fake
}

fn run(p: &Project, fake: &HubSpotFake) -> RunOutput {
    p.activate_cmd(&["run", "--target", "ci", "--select", "hostile_values"])
        .env("HUBSPOT_ACCESS_TOKEN", HUBSPOT_TOKEN)
        .env("HUBSPOT_BASE_URL", &fake.base_url())
        .run()
}

/// The rejections of a result, as (key JSON, reason).
fn rejections(result: &serde_json::Value) -> Vec<(serde_json::Value, String)> {
    result["rejections"]
        .as_array()
        .unwrap_or_else(|| panic!("no rejections array: {result:#}"))
        .iter()
        .map(|r| {
            (
                rejection_key(r),
                r["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// What a destination must hold and reject: every row with a key arrives unless `refused`
/// says it is rejected (with a reason containing the returned text); the NULL key is always
/// rejected with a reason that says so.
#[track_caller]
fn assert_rejections(
    result: &serde_json::Value,
    rows: &[Row],
    refused: impl Fn(&Row) -> Option<&'static str>,
) -> Vec<Row> {
    let mut expected_rejected: BTreeMap<String, String> = BTreeMap::new();
    let mut landed = Vec::new();
    for r in rows {
        let key = serde_json::json!([r.id]).to_string();
        match (&r.id, refused(r)) {
            (None, _) => {
                expected_rejected.insert(key, "NULL".into());
            }
            (Some(_), Some(reason)) => {
                expected_rejected.insert(key, reason.into());
            }
            (Some(_), None) => landed.push(r.clone()),
        }
    }
    let got = rejections(result);
    let got_keys: BTreeMap<String, String> = got
        .iter()
        .map(|(k, reason)| (k.to_string(), reason.clone()))
        .collect();
    assert_eq!(
        got_keys.keys().collect::<Vec<_>>(),
        expected_rejected.keys().collect::<Vec<_>>(),
        "rejected keys of {}:\n{result:#}",
        result["name"]
    );
    for (key, needle) in &expected_rejected {
        let reason = &got_keys[key];
        assert!(
            reason.contains(needle.as_str()),
            "the rejection of {key} in {} must say {needle:?}: {reason}",
            result["name"]
        );
    }
    assert_eq!(count(result, "rejected"), expected_rejected.len() as u64);
    assert_eq!(count(result, "inserted"), landed.len() as u64, "{result:#}");
    assert_eq!(count(result, "rows_read"), rows.len() as u64);
    assert_status(result, "warn");
    landed
}

/// A JSON object as raw field texts (numbers keep every digit).
fn raw_object(text: &str) -> BTreeMap<String, Box<RawValue>> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not a JSON object ({e}): {text:.200}"))
}

fn raw_str(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<Option<String>>(raw.get())
        .unwrap_or_else(|e| panic!("not a JSON string ({e}): {:.200}", raw.get()))
}

/// Asserts that JSON records hold exactly the rows (HUGEINT and DECIMAL digits compared as
/// raw JSON number text).
#[track_caller]
fn assert_json_records(what: &str, records: &[BTreeMap<String, Box<RawValue>>], rows: &[Row]) {
    let mut by_id: BTreeMap<String, &BTreeMap<String, Box<RawValue>>> = BTreeMap::new();
    for r in records {
        let id = raw_str(&r["id"]).expect("an id");
        assert!(
            by_id.insert(id.clone(), r).is_none(),
            "{what}: {id:?} arrived twice"
        );
    }
    assert_eq!(
        by_id.keys().collect::<Vec<_>>(),
        sorted(rows.iter().map(|r| r.id.as_ref().expect("a key")).collect()),
        "{what}: the keys that arrived"
    );
    for r in rows {
        let got = by_id[r.id.as_deref().expect("a key")];
        let id = r.id.as_deref().unwrap_or_default();
        assert!(
            raw_str(&got["txt"]).as_deref() == Some(r.txt.as_str()),
            "{what}: txt of {id:?} differs: {:.300}",
            got["txt"].get()
        );
        assert_eq!(got["big"].get(), r.big, "{what}: big of {id:?}");
        assert_eq!(got["dec"].get(), r.dec, "{what}: dec of {id:?}");
        // Parsed exactly (serde_json's default float parsing may round the last digit).
        let dbl: f64 = got["dbl"].get().parse().expect("a JSON number");
        assert!(
            r.dbl.matches(dbl),
            "{what}: dbl of {id:?}: {}",
            got["dbl"].get()
        );
        assert_eq!(
            raw_str(&got["ts"]).as_deref(),
            Some(r.ts_utc),
            "{what}: ts of {id:?}"
        );
    }
}

/// Non-finite doubles have no JSON (or HubSpot number) form: the row is refused, named.
fn refused_without_non_finite(r: &Row) -> Option<&'static str> {
    (!r.dbl.is_finite()).then_some("cannot carry")
}

#[test]
fn hostile_values_arrive_exactly_or_are_rejected_with_a_reason() {
    let p = Project::new();
    let rows = hostile_rows();
    setup(&p, &rows);
    let fake = hubspot_account();

    let out = run(&p, &fake);
    // Rows were rejected (the NULL key, the destinations' refusals): exit code 1, not a crash.
    assert!(!out.text().contains("panicked"), "{out}");
    let results = p.results();

    // PostgreSQL holds every row bit for bit, NaN and ±Infinity included; a NUL byte, which
    // PostgreSQL text cannot hold, is refused with PostgreSQL's reason.
    let landed = assert_rejections(&results[PG_SYNC], &rows, |r| {
        r.txt.contains('\u{0}').then_some("0x00")
    });
    let pg = p.pg.rows(
        r#"SELECT id, txt, big::text, dec::text, dbl::text,
                  to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
           FROM hostile.hostile_values ORDER BY id"#,
    );
    let mut expected = landed.clone();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(pg.len(), expected.len(), "rows in postgres");
    for (got, r) in pg.iter().zip(&expected) {
        assert_eq!(got[0], r.id, "postgres ids (in byte order)");
        let id = r.id.as_deref().unwrap_or_default();
        assert!(
            got[1].as_deref() == Some(r.txt.as_str()),
            "postgres txt of {id:?} differs: {:.300?}",
            got[1]
        );
        assert_eq!(got[2].as_deref(), Some(r.big), "postgres big of {id:?}");
        assert_eq!(got[3].as_deref(), Some(r.dec), "postgres dec of {id:?}");
        let dbl: f64 = got[4].as_deref().expect("a double").parse().expect("f64");
        assert!(r.dbl.matches(dbl), "postgres dbl of {id:?}: {:?}", got[4]);
        assert_eq!(got[5].as_deref(), Some(r.ts_utc), "postgres ts of {id:?}");
    }

    // The webhook: JSON bodies; NaN/±Infinity rows refused, every other row exact.
    let landed = assert_rejections(&results[HOOK_SYNC], &rows, refused_without_non_finite);
    let records: Vec<BTreeMap<String, Box<RawValue>>> = p
        .webhook
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.accepted())
        .flat_map(|r| {
            let body: BTreeMap<String, Box<RawValue>> =
                serde_json::from_slice(&r.body).expect("a webhook body");
            let records: Vec<BTreeMap<String, Box<RawValue>>> =
                serde_json::from_str(body["records"].get()).expect("a records array");
            records
        })
        .collect();
    assert_json_records("webhook", &records, &landed);

    // JSON lines file.
    let landed = assert_rejections(&results[JSONL_SYNC], &rows, refused_without_non_finite);
    let text = p.read_file("synced/hostile_jsonl/hostile_values.jsonl");
    assert_eq!(
        text.lines().count(),
        landed.len(),
        "one line per record: control characters are escaped"
    );
    let records: Vec<_> = text.lines().map(raw_object).collect();
    assert_json_records("jsonl file", &records, &landed);

    // CSV file: quotes, commas and newlines survive RFC 4180 quoting.
    let landed = assert_rejections(&results[CSV_SYNC], &rows, refused_without_non_finite);
    let csv = p.synced_csv("hostile_csv", "hostile_values");
    assert_eq!(csv.len(), landed.len(), "CSV records");
    let by_id: BTreeMap<&str, &BTreeMap<String, String>> =
        csv.iter().map(|r| (r["id"].as_str(), r)).collect();
    for r in &landed {
        let id = r.id.as_deref().expect("a key");
        let got = by_id
            .get(id)
            .unwrap_or_else(|| panic!("csv: {id:?} missing"));
        assert!(got["txt"] == r.txt, "csv txt of {id:?} differs");
        assert_eq!(got["big"], r.big, "csv big of {id:?}");
        assert_eq!(got["dec"], r.dec, "csv dec of {id:?}");
        assert!(
            r.dbl.matches(got["dbl"].parse().expect("f64")),
            "csv dbl of {id:?}"
        );
        assert_eq!(got["ts"], r.ts_utc, "csv ts of {id:?}");
    }

    // HubSpot: property values are strings; datetimes carry milliseconds (HubSpot's
    // precision); HubSpot treats an empty key as no key.
    // HubSpot matches unique property values without case: `Key` and `key` would be one
    // record, so both rows are refused rather than overwriting each other.
    let landed = assert_rejections(&results[HUB_SYNC], &rows, |r| match r.id.as_deref() {
        Some("Key" | "key") => Some("only in letter case"),
        _ => refused_without_non_finite(r),
    });
    let held = fake.records("companies");
    let by_id: BTreeMap<&str, &BTreeMap<String, String>> = held
        .iter()
        .filter_map(|r| Some((r.get("hostile_id")?.as_str(), r)))
        .collect();
    assert_eq!(by_id.len(), landed.len(), "hubspot records");
    for r in &landed {
        let id = r.id.as_deref().expect("a key");
        let got = by_id
            .get(id)
            .unwrap_or_else(|| panic!("hubspot: {id:?} missing"));
        assert!(got["hostile_txt"] == r.txt, "hubspot txt of {id:?} differs");
        assert_eq!(got["hostile_big"], r.big, "hubspot big of {id:?}");
        assert_eq!(got["hostile_dec"], r.dec, "hubspot dec of {id:?}");
        assert!(
            r.dbl.matches(got["hostile_dbl"].parse().expect("f64")),
            "hubspot dbl of {id:?}"
        );
        let millis = format!("{}Z", &r.ts_utc[..23]);
        assert_eq!(got["hostile_ts"], millis, "hubspot ts of {id:?}");
    }

    // A rerun sends nothing new and rejects the same rows again, each with its reason.
    let again = run(&p, &fake);
    assert!(!again.text().contains("panicked"), "{again}");
    for sync in [PG_SYNC, HOOK_SYNC, JSONL_SYNC, CSV_SYNC, HUB_SYNC] {
        let r = p.result(sync);
        assert_eq!(count(&r, "inserted") + count(&r, "updated"), 0, "{r:#}");
        assert!(count(&r, "rejected") > 0, "{r:#}");
    }
}
