//! SQL injection: a model alias, column names, an object (table) name, values and a cursor
//! value made of quotes, semicolons and comments are only ever identifiers and data. Sentinel
//! tables in DuckDB and PostgreSQL survive two runs (the second one filters by the stored
//! cursor), and every name and value lands verbatim.
//!
//! (The model is built once: rebuilding a relation whose alias holds a single quote makes
//! dbt-duckdb 1.x itself run the text after the quote, which is dbt's to fix, not ours.)

use dbt_activate_e2e::Project;

use crate::common::*;

/// The alias of the model: its DuckDB relation name. (dbt-duckdb itself does not escape a
/// double quote in an alias, so the alias breaks out with a single quote and a semicolon.)
const ALIAS: &str = "inj'; drop table main.injection_sentinel; --";
/// A column name, and the PostgreSQL column it maps to by default.
const EVIL_COLUMN: &str = r#"a"; drop table inj.sentinel; --"#;
/// A column whose name closes a string literal instead.
const QUOTE_COLUMN: &str = "b'); drop table inj.sentinel; --";
/// The PostgreSQL table (the sync's object is `inj.<this>`: schema, then table).
const OBJECT: &str = r#"t"; drop table inj.sentinel; --"#;

/// (id, value of EVIL_COLUMN, value of QUOTE_COLUMN, cursor)
const ROWS: [(&str, &str, &str, &str); 3] = [
    (
        "1'; drop table inj.sentinel; --",
        "x'); drop table inj.sentinel; --",
        r#"" or 1=1 --"#,
        "2025-01-01 a'; drop table main.injection_sentinel; --",
    ),
    (
        r#"2"; delete from inj.sentinel; --"#,
        "$$; drop table inj.sentinel; $$",
        r"\'; select pg_sleep(10); --",
        "2025-01-02 b'' or ''1''=''1",
    ),
    (
        "3; truncate inj.sentinel",
        "E'\\x27; drop table inj.sentinel; --",
        "/* */; drop schema inj cascade; --",
        "2025-01-03 c\\'; drop table main.injection_sentinel; --",
    ),
];

/// `'...'` with quotes doubled (DuckDB, no backslash escapes), with `{`/`}` kept away from Jinja.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn model_sql(rows: &[(&str, &str, &str, &str)]) -> String {
    let selects: Vec<String> = rows
        .iter()
        .map(|(id, a, b, cur)| {
            format!(
                "select {} as id, {} as {}, {} as {}, {} as cur",
                lit(id),
                lit(a),
                ident(EVIL_COLUMN),
                lit(b),
                ident(QUOTE_COLUMN),
                lit(cur)
            )
        })
        .collect();
    format!(
        "{{{{ config(alias=\"{}\") }}}}\n{}\n",
        ALIAS,
        selects.join("\nunion all\n")
    )
}

fn setup(p: &Project) {
    p.replace_in_file(
        "activate.yml",
        "destinations:\n  crm:",
        "destinations:\n  inj_pg: {type: postgres, url: \"{{ env_var('ACTIVATE_PG_URL') }}\", schema: inj}\n  crm:",
    );
    p.write_file(
        "models/marts/injection_sentinel.sql",
        "select 42 as still_here\n",
    );
    p.write_file("models/marts/injection_values.sql", &model_sql(&ROWS));
    p.write_file(
        "models/marts/injection_values.yml",
        &format!(
            "version: 2\nmodels:\n  - name: injection_values\n    config:\n      meta:\n        activate:\n          \
             destination: inj_pg\n          object: '{}'\n          sync_mode: incremental\n          \
             primary_key: id\n          cursor: cur\n",
            format!("inj.{OBJECT}").replace('\'', "''")
        ),
    );
    p.pg.execute(&format!(
        "CREATE SCHEMA inj;
         CREATE TABLE inj.sentinel (x int); INSERT INTO inj.sentinel VALUES (42);
         CREATE TABLE inj.{} (id text PRIMARY KEY, {} text, {} text, cur text)",
        ident(OBJECT),
        ident(EVIL_COLUMN),
        ident(QUOTE_COLUMN)
    ));
    p.dbt(&[
        "build",
        "--target",
        "ci",
        "--select",
        "injection_sentinel",
        "injection_values",
    ])
    .assert_success();
}

#[track_caller]
fn assert_sentinels(p: &Project) {
    assert_eq!(
        p.pg.rows("SELECT x::text FROM inj.sentinel"),
        vec![vec![Some("42".to_owned())]],
        "the PostgreSQL sentinel table is intact"
    );
    assert_eq!(
        p.duck("select still_here::varchar from main.injection_sentinel"),
        vec![vec![Some("42".to_owned())]],
        "the DuckDB sentinel table is intact"
    );
}

fn in_postgres(p: &Project) -> Rows {
    p.pg.rows(&format!(
        "SELECT id, {}, {}, cur FROM inj.{} ORDER BY id",
        ident(EVIL_COLUMN),
        ident(QUOTE_COLUMN),
        ident(OBJECT)
    ))
}

fn expected(rows: &[(&str, &str, &str, &str)]) -> Rows {
    let mut out: Rows = rows
        .iter()
        .map(|(id, a, b, c)| {
            [id, a, b, c]
                .iter()
                .map(|s| Some((**s).to_owned()))
                .collect()
        })
        .collect();
    out.sort();
    out
}

const SYNC: &str = "injection_values__inj_pg__inj_t___drop_table_inj_sentinel____";

#[test]
fn names_and_values_with_quotes_and_semicolons_are_never_executed() {
    let p = Project::new();
    setup(&p);
    assert_sentinels(&p);
    // dbt created the relation under the hostile alias.
    assert_eq!(
        p.duck(&format!(
            "select count(*)::varchar from main.{}",
            ident(ALIAS)
        )),
        vec![vec![Some("3".to_owned())]]
    );

    let first = p.activate(&["run", "--target", "ci", "--select", "injection_values"]);
    first.assert_success();
    let names = p.result_names();
    assert_eq!(
        names,
        vec![SYNC.to_owned()],
        "the default sync name is cleaned"
    );
    assert_counts(&p.result(SYNC), 3, 0, 0);
    assert_eq!(in_postgres(&p), expected(&ROWS), "values land verbatim");
    assert_sentinels(&p);

    // The second run reads `cur >= <stored cursor>`, and the stored cursor is itself hostile:
    // only the row at the cursor comes back, unchanged.
    let second = p.activate(&["run", "--target", "ci", "--select", "injection_values"]);
    second.assert_success();
    let r = p.result(SYNC);
    assert_counts(&r, 0, 0, 0);
    assert_eq!(
        [count(&r, "rows_read"), count(&r, "unchanged")],
        [1, 1],
        "the cursor filter read from the stored cursor on: {r:#}"
    );
    assert_eq!(in_postgres(&p), expected(&ROWS));
    assert_sentinels(&p);

    // The read-only commands on the same names.
    for args in [
        &["plan", "--target", "ci", "--select", "injection_values"][..],
        &["ls", "--target", "ci"][..],
        &["history", "--target", "ci"][..],
        &["validate", "--target", "ci"][..],
    ] {
        let out = p.activate(args);
        assert!(!out.text().contains("panicked"), "{out}");
    }
    assert_sentinels(&p);
}
