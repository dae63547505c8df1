//! The postgres destination against the real server that scripts/test.sh starts
//! (`ACTIVATE_TEST_PG_URL`).

use super::*;
use crate::destination::Record;

async fn fresh_database() -> (String, Client) {
    let base = std::env::var("ACTIVATE_TEST_PG_URL")
        .expect("ACTIVATE_TEST_PG_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL");
    let (admin, conn) = tokio_postgres::connect(&base, NoTls).await.unwrap();
    tokio::spawn(conn);
    let name = format!("unit_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = match base.rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/{name}"),
        None => unreachable!(),
    };
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE SCHEMA crm; CREATE TABLE crm.\"Lead\" (\"Email\" text PRIMARY KEY, \"Score\" numeric(5,2) CHECK (\"Score\" < 100), \
             \"Tags\" text[], \"Extra\" jsonb, \"Seen\" timestamptz, \"Note\" text)",
        )
        .await
        .unwrap();
    (url, client)
}

fn dest(url: &str) -> PostgresDestination {
    PostgresDestination::from_config(&DestinationConfig {
        name: "pg".into(),
        kind: "postgres".into(),
        settings: serde_json::json!({"url": url, "schema": "crm"})
            .as_object()
            .unwrap()
            .clone(),
        file: "activate.yml".into(),
    })
    .unwrap()
}

fn fields() -> Vec<String> {
    ["Email", "Score", "Tags", "Extra", "Seen", "Note"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn lead(email: &str, score: &str, note: &str) -> Record {
    Record {
        values: vec![
            Value::Text(email.into()),
            Value::Number(score.into()),
            Value::json(serde_json::json!(["a", "b\"c"])),
            Value::json(serde_json::json!({"k": [1, 2]})),
            Value::TimestampTz("2024-05-01T10:00:00.000000Z".into()),
            Value::Text(note.into()),
        ],
    }
}

/// An upsert of `records` into `object`, keyed on the first field.
fn upsert<'a>(
    object: &'a str,
    fields: &'a [String],
    records: &'a [Record],
    keys_new_to_state: bool,
) -> WriteBatch<'a> {
    WriteBatch {
        sync: "s",
        object,
        op: WriteOp::Upsert,
        fields,
        key_positions: &[0],
        records,
        keys_new_to_state,
    }
}

/// The batch's only rejected row is `row`, for a reason that mentions `why`.
fn assert_only_rejected(out: &BatchOutcome, row: usize, why: &str) {
    let rejected: Vec<usize> = out.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, vec![row], "{:?}", out.rejected);
    assert!(out.rejected[0].1.contains(why), "{:?}", out.rejected);
}

async fn rows(client: &Client) -> Vec<(String, String, String)> {
    client
        .query(
            "SELECT \"Email\", coalesce(\"Score\"::text, '<null>'), coalesce(\"Note\", '<null>') FROM crm.\"Lead\" ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn bad_rows_are_isolated_and_good_rows_land() {
    let (url, client) = fresh_database().await;
    let d = dest(&url);
    let fields = fields();
    let records = vec![
        lead("a@x", "1.50", "tab\there\nnewline \\ back"),
        lead("b@x", "150", "violates the check"),
        lead("c@x", "3", "ok"),
        lead("d@x", "not a number", "bad input"),
        lead("e@x", "5", "ok"),
    ];
    let batch = upsert("Lead", &fields, &records, false);
    let outcome = d.write(&batch).await.unwrap();
    let rejected: Vec<usize> = outcome.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, vec![1, 3]);
    assert!(
        outcome.rejected[0].1.contains("check constraint"),
        "{:?}",
        outcome.rejected
    );
    assert!(
        outcome.rejected[1].1.contains("invalid input syntax"),
        "{:?}",
        outcome.rejected
    );
    let landed = rows(&client).await;
    assert_eq!(landed.len(), 3);
    assert_eq!(
        landed[0],
        (
            "a@x".into(),
            "1.50".into(),
            "tab\there\nnewline \\ back".into()
        )
    );
    let tags: Vec<String> = client
        .query_one(
            "SELECT \"Tags\" FROM crm.\"Lead\" WHERE \"Email\" = 'a@x'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tags, vec!["a".to_owned(), "b\"c".to_owned()]);

    // Upsert again: updates in place.
    let records = vec![lead("a@x", "2", "changed")];
    d.write(&WriteBatch {
        records: &records,
        keys_new_to_state: false,
        ..batch.clone()
    })
    .await
    .unwrap();
    assert_eq!(rows(&client).await[0].1, "2.00");

    // Update never creates; insert never overwrites.
    let records = vec![lead("zz@x", "1", "missing"), lead("c@x", "4", "updated")];
    let out = d
        .write(&WriteBatch {
            op: WriteOp::Update,
            records: &records,
            keys_new_to_state: false,
            ..batch.clone()
        })
        .await
        .unwrap();
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].0, 0);
    assert!(
        out.rejected[0].1.contains("no row in Lead matches"),
        "{:?}",
        out.rejected
    );
    let records = vec![lead("c@x", "9", "insert again")];
    let out = d
        .write(&WriteBatch {
            op: WriteOp::Insert,
            records: &records,
            keys_new_to_state: false,
            ..batch.clone()
        })
        .await
        .unwrap();
    assert_eq!(out.rejected.len(), 1);
    assert!(
        out.rejected[0].1.contains("duplicate key"),
        "{:?}",
        out.rejected
    );

    // Clear keeps the record with null non-key fields; delete removes it.
    let mut cleared = lead("c@x", "0", "");
    for v in cleared.values.iter_mut().skip(1) {
        *v = Value::Null;
    }
    let records = vec![cleared];
    d.write(&WriteBatch {
        op: WriteOp::Clear,
        records: &records,
        keys_new_to_state: false,
        ..batch.clone()
    })
    .await
    .unwrap();
    let key_field = vec!["Email".to_owned()];
    let records = vec![Record {
        values: vec![Value::Text("e@x".into())],
    }];
    d.write(&WriteBatch {
        op: WriteOp::Delete,
        fields: &key_field,
        key_positions: &[0],
        records: &records,
        keys_new_to_state: false,
        ..batch.clone()
    })
    .await
    .unwrap();
    let landed = rows(&client).await;
    let want: Vec<(String, String, String)> = vec![
        ("a@x".into(), "2.00".into(), "changed".into()),
        ("c@x".into(), "<null>".into(), "<null>".into()),
    ];
    assert_eq!(landed, want);
}

#[tokio::test]
async fn describe_names_a_missing_table() {
    let (url, _client) = fresh_database().await;
    let err = dest(&url).describe("Nope").await.unwrap_err();
    assert!(
        err.message.contains("table crm.Nope does not exist"),
        "{}",
        err.message
    );
    let schema = dest(&url).describe("Lead").await.unwrap().unwrap();
    let described: Vec<(String, Kind, String)> = schema
        .fields
        .into_iter()
        .map(|f| (f.name, f.kind, f.native_type))
        .collect();
    let want: Vec<(String, Kind, String)> = fields()
        .into_iter()
        .zip([
            (Kind::Text, "text"),
            (Kind::Number, "numeric"),
            (Kind::Json, "ARRAY"),
            (Kind::Json, "jsonb"),
            (Kind::DateTime, "timestamp with time zone"),
            (Kind::Text, "text"),
        ])
        .map(|(name, (kind, native))| (name, kind, native.to_owned()))
        .collect();
    assert_eq!(described, want);
}

/// Keys new to the state are COPYed straight into the table; a key that already exists or a
/// bad row makes the batch go through the staging table, so it still upserts and isolates.
#[tokio::test]
async fn keys_new_to_state_load_directly_and_still_upsert_and_isolate_bad_rows() {
    let (url, client) = fresh_database().await;
    let d = dest(&url);
    let fields = fields();
    let new_batch = |records| upsert("Lead", &fields, records, true);
    let records = vec![
        lead("a@x", "1.50", "tab\there\nnewline \\ back"),
        lead("b@x", "2", "ok"),
    ];
    let out = d.write(&new_batch(&records)).await.unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(
        rows(&client).await,
        vec![
            (
                "a@x".to_owned(),
                "1.50".to_owned(),
                "tab\there\nnewline \\ back".to_owned()
            ),
            ("b@x".into(), "2.00".into(), "ok".into()),
        ]
    );
    let tags: Vec<String> = client
        .query_one(
            "SELECT \"Tags\" FROM crm.\"Lead\" WHERE \"Email\" = 'a@x'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tags, vec!["a".to_owned(), "b\"c".to_owned()]);

    // The state says new, but the table holds b@x (e.g. after a reset): upserted, no reject.
    let records = vec![lead("b@x", "7", "updated"), lead("c@x", "3", "new")];
    let out = d.write(&new_batch(&records)).await.unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let landed = rows(&client).await;
    assert_eq!(landed.len(), 3);
    assert_eq!(landed[1], ("b@x".into(), "7.00".into(), "updated".into()));

    // A bad row among new keys: only it is rejected.
    let records = vec![
        lead("d@x", "150", "violates the check"),
        lead("e@x", "5", "ok"),
    ];
    let out = d.write(&new_batch(&records)).await.unwrap();
    let rejected: Vec<usize> = out.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, vec![0], "{:?}", out.rejected);
    let emails: Vec<String> = rows(&client).await.into_iter().map(|r| r.0).collect();
    assert_eq!(emails, vec!["a@x", "b@x", "c@x", "e@x"]);
}

/// A batch longer than a COPY piece: every piece lands, and a bad row in a later piece (a
/// check violation the server finds after earlier pieces were sent) rejects only its row, on
/// both paths (straight COPY of new keys, and the staging table's upsert).
#[tokio::test]
async fn a_batch_sent_in_pieces_lands_whole_and_a_bad_row_in_a_later_piece_is_isolated() {
    let (url, client) = fresh_database().await;
    let d = dest(&url);
    let fields = fields();
    let n = 2 * COPY_PIECE_ROWS + COPY_PIECE_ROWS / 2;
    let bad = 2 * COPY_PIECE_ROWS + 7;
    let batch = |records, keys_new_to_state| upsert("Lead", &fields, records, keys_new_to_state);
    // `n` leads, each with `score` and a note `{round} {i}`, but the one at `bad` over the check.
    let leads = |bad: usize, score: &str, round: &str| -> Vec<Record> {
        (0..n)
            .map(|i| {
                let score = if i == bad { "150" } else { score };
                lead(&format!("{i:05}@x"), score, &format!("{round} {i}"))
            })
            .collect()
    };
    let records = leads(bad, "1", "first");
    let out = d.write(&batch(&records, true)).await.unwrap();
    assert_only_rejected(&out, bad, "check constraint");
    let landed = rows(&client).await;
    assert_eq!(landed.len(), n - 1);
    assert_eq!(
        landed[n - 2],
        (
            format!("{:05}@x", n - 1),
            "1.00".into(),
            format!("first {}", n - 1)
        )
    );

    // The same keys again through the staging table, a bad row in the second piece.
    let bad = COPY_PIECE_ROWS + 3;
    let records = leads(bad, "2", "second");
    let out = d.write(&batch(&records, false)).await.unwrap();
    assert_only_rejected(&out, bad, "check constraint");
    let landed = rows(&client).await;
    assert_eq!(landed.len(), n, "the row rejected first lands now");
    for (i, (email, score, note)) in landed.iter().enumerate() {
        assert_eq!(email, &format!("{i:05}@x"));
        if i == bad {
            assert_eq!(
                (score.as_str(), note.as_str()),
                ("1.00", format!("first {i}").as_str())
            );
        } else {
            assert_eq!(
                (score.as_str(), note.as_str()),
                ("2.00", format!("second {i}").as_str())
            );
        }
    }
}

/// A table of every column type with a binary encoder, and rows of edge values for each.
async fn typed_tables(client: &Client, names: &[&str]) {
    for name in names {
        client
            .batch_execute(&format!(
                "CREATE TABLE crm.{name} (id bigint PRIMARY KEY, i4 integer, i2 smallint, \
                 f8 double precision, n numeric, n2 numeric(12, 2), t text, vc varchar(20), \
                 c char(3), b boolean, d date, ts timestamp, tz timestamptz, ts_of_tz timestamp, \
                 j json, jb jsonb)"
            ))
            .await
            .unwrap();
    }
}

fn typed_fields() -> Vec<String> {
    [
        "id", "i4", "i2", "f8", "n", "n2", "t", "vc", "c", "b", "d", "ts", "tz", "ts_of_tz", "j",
        "jb",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn typed_record(i: usize) -> Record {
    let pick = |options: &[Value]| options[i % options.len()].clone();
    let text = |s: &str| Value::Text(s.into());
    let number = |s: &str| Value::Number(s.into());
    Record {
        values: vec![
            Value::Int(i as i64),
            pick(&[
                Value::Int(0),
                Value::Int(i32::MIN.into()),
                Value::Int(i32::MAX.into()),
                Value::Null,
            ]),
            pick(&[Value::Int(-7), Value::Int(i16::MAX.into()), Value::Null]),
            pick(&[
                Value::Float(0.1),
                Value::Float(-0.0),
                Value::Float(f64::NAN),
                Value::Float(f64::INFINITY),
                Value::Float(f64::NEG_INFINITY),
                Value::Float(1e300),
                Value::Float(5e-324),
                Value::Float(i as f64 / 7.0),
            ]),
            pick(&[
                number("0"),
                number("-0.00"),
                number("12345678901234567890.123456789"),
                number("0.0001"),
                number("1000"),
                number("-99990000.00010"),
                Value::Int(i64::MIN),
                Value::Int(i as i64 * 10_001),
                number(&format!("{}.{:02}", i * 7919 % 1_000_000 / 100, i % 100)),
            ]),
            pick(&[
                number("1.005"),
                number("-1.004"),
                number("99999.999"),
                number("7"),
                Value::Int(-3),
            ]),
            pick(&[
                text("tab\there\nnewline \\ back"),
                text("é"),
                text(""),
                text(&format!("Customer {i}")),
            ]),
            pick(&[text("short"), text("exactly twenty chars"), Value::Null]),
            pick(&[text("ab"), text("abc")]),
            pick(&[Value::Bool(true), Value::Bool(false), Value::Null]),
            pick(&[
                Value::Date("2024-02-29".into()),
                Value::Date("0001-01-01".into()),
                Value::Date("1999-12-31".into()),
            ]),
            pick(&[
                Value::Timestamp("1970-01-01T00:00:00.000000".into()),
                Value::Timestamp("2024-02-29T23:59:59.999999".into()),
            ]),
            pick(&[
                Value::TimestampTz("2024-05-01T10:00:00.000000Z".into()),
                Value::TimestampTz("1900-01-01T00:00:00.123456Z".into()),
                Value::TimestampTz(crate::value::format_timestamp_micros(
                    1_735_689_600_000_000 + i as i64 * 1_000_001,
                    true,
                )),
            ]),
            pick(&[
                Value::TimestampTz("2024-05-01T10:00:00.000000Z".into()),
                Value::Null,
            ]),
            pick(&[
                Value::json(serde_json::json!({"k": [1, 2.5, "x\"y"]})),
                text("[1, 2]"),
                Value::json(serde_json::json!("é\n")),
            ]),
            pick(&[
                Value::json(serde_json::json!({"b": 1, "a": [null, true]})),
                text("{\"z\": 1, \"a\": 2}"),
                Value::json(serde_json::json!(1e-7)),
            ]),
        ],
    }
}

/// Every column of a table as PostgreSQL prints it, row by row.
async fn printed(client: &Client, table: &str) -> Vec<String> {
    client
        .query(
            &format!("SELECT r::text FROM crm.{table} r ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The binary COPY lands exactly what the text COPY lands, value for value, for edge values of
/// every column type it encodes, over more rows than a COPY piece (the header in the first
/// piece, the trailer in the last), on both paths.
#[tokio::test]
async fn binary_copy_lands_what_text_copy_lands() {
    let (url, client) = fresh_database().await;
    typed_tables(&client, &["as_binary", "as_text", "staged"]).await;
    let d = dest(&url);
    let fields = typed_fields();
    let records: Vec<Record> = (0..2 * COPY_PIECE_ROWS + 17).map(typed_record).collect();
    let batch = |object, keys_new_to_state| upsert(object, &fields, &records, keys_new_to_state);
    let mut client_b = d.client().await.unwrap();
    let types: Vec<String> = d
        .columns(&client_b, "as_binary")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.data_type)
        .collect();
    let columns = CopyColumns::new(types);
    let binary = columns
        .binary
        .as_deref()
        .expect("every column has a binary encoder");
    let as_binary = batch("as_binary", true);
    assert!(matches!(
        d.copy_new_keys_as(&mut client_b, &as_binary, CopyFormat::Binary(binary),)
            .await,
        Ok(())
    ));
    let as_text = batch("as_text", true);
    assert!(matches!(
        d.copy_new_keys_as(&mut client_b, &as_text, CopyFormat::Text(&columns.types))
            .await,
        Ok(())
    ));
    // Through the staging table (binary, as `write` picks it), upserting over other rows.
    client
        .batch_execute(
            "INSERT INTO crm.staged (id, t) SELECT g, 'old' FROM generate_series(0, 99) g",
        )
        .await
        .unwrap();
    let out = d.write(&batch("staged", false)).await.unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);

    let text = printed(&client, "as_text").await;
    assert_eq!(text.len(), records.len());
    assert_eq!(printed(&client, "as_binary").await, text);
    assert_eq!(printed(&client, "staged").await, text);
    // Spot checks of what the server made of the values (both formats alike).
    let row = |i: usize| text[i].clone();
    assert!(
        row(0).contains(",1.01,"),
        "numeric(12,2) rounds 1.005: {}",
        row(0)
    );
    assert!(row(2).contains("NaN"), "{}", row(2));
}

/// Values without a binary encoding here send the batch as text: the server converts them (an
/// exponent into `numeric`) or refuses their row (an integer too large for `integer`), as
/// before.
#[tokio::test]
async fn values_without_a_binary_form_go_as_text_and_bad_rows_are_still_isolated() {
    let (url, client) = fresh_database().await;
    typed_tables(&client, &["typed"]).await;
    let d = dest(&url);
    let fields = typed_fields();
    // The first value without a binary form comes after a piece was already sent in binary.
    let (exponent, too_large) = (COPY_PIECE_ROWS + 1, COPY_PIECE_ROWS + 3);
    let mut records: Vec<Record> = (0..COPY_PIECE_ROWS + 5).map(typed_record).collect();
    records[exponent].values[4] = Value::Number("1e5".into());
    records[too_large].values[1] = Value::Int(3_000_000_000);
    for keys_new_to_state in [true, false] {
        let out = d
            .write(&upsert("typed", &fields, &records, keys_new_to_state))
            .await
            .unwrap();
        assert_only_rejected(&out, too_large, "out of range");
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM crm.typed", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count as usize, records.len() - 1);
    let n: String = client
        .query_one(
            "SELECT n::text FROM crm.typed WHERE id = $1",
            &[&(exponent as i64)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, "100000");
}
