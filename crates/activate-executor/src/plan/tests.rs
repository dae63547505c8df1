use activate_manifest::ActivationSpec;
use serde_json::json;

use super::*;
use crate::state::{Confirmed, SyncState};
use crate::sync::SyncDefinition;
use crate::warehouse::ColumnDesc;

fn spec(activate: serde_json::Value) -> ActivationSpec {
    crate::test_support::activation_spec(activate)
}

fn def(activate: serde_json::Value) -> SyncDefinition {
    let columns =
        crate::test_support::columns(&[("id", "INTEGER"), ("name", "VARCHAR"), ("ts", "INTEGER")]);
    SyncDefinition::resolve(&spec(activate), "sync.p.s".into(), "m".into(), &columns).unwrap()
}

fn row(id: i64, name: &str, ts: i64) -> Vec<Value> {
    vec![Value::Int(id), Value::Text(name.into()), Value::Int(ts)]
}

/// Rows as the warehouse returns them: in the order of the columns the sync reads.
fn plan(def: &SyncDefinition, state: &SyncState, rows: Vec<Vec<Value>>) -> Plan {
    let position = |name: &str| {
        ["id", "name", "ts"]
            .iter()
            .position(|c| *c == name)
            .unwrap()
    };
    let rows = rows
        .into_iter()
        .map(|r| {
            def.read_columns
                .iter()
                .map(|c| r[position(&c.name)].clone())
                .collect()
        })
        .collect();
    let mut b = PlanBuilder::new(def, state, false);
    b.add_batch(rows);
    b.finish()
}

/// The state after the destination confirmed every change of a plan.
fn confirm(state: &mut SyncState, plan: &Plan) {
    for (r, key) in plan.upserts.iter().zip(plan.upsert_keys.iter()) {
        state.apply(&Confirmed::Upserted {
            key: key.into(),
            row_hash: r.row_hash,
        });
    }
    for key in plan.removals.iter() {
        state.apply(&Confirmed::Removed { key: key.into() });
    }
    for k in &plan.forgotten {
        state.apply(&Confirmed::Removed { key: k.clone() });
    }
}

#[test]
fn incremental_sends_only_changes() {
    let d =
        def(json!({"destination": "d", "object": "o", "mapping": {"id": "Id", "name": "Name"}}));
    let mut state = SyncState::default();
    let first = plan(&d, &state, vec![row(1, "a", 1), row(2, "b", 1)]);
    assert_eq!((first.inserts(), first.updates()), (2, 0));
    confirm(&mut state, &first);
    // ts is not mapped: changing it is not a change of the mapped output.
    let second = plan(
        &d,
        &state,
        vec![row(1, "a", 9), row(2, "B", 1), row(3, "c", 1)],
    );
    assert_eq!(
        (second.inserts(), second.updates(), second.unchanged),
        (1, 1, 1)
    );
    assert!(second.removals.is_empty());
    confirm(&mut state, &second);
    let third = plan(
        &d,
        &state,
        vec![row(1, "a", 9), row(2, "B", 1), row(3, "c", 1)],
    );
    assert!(third.upserts.is_empty());
}

#[test]
fn mirror_deletes_only_delivered_keys_that_left() {
    let d = def(
        json!({"destination": "d", "object": "o", "sync_mode": "mirror", "mapping": {"id": "Id", "name": "Name"}}),
    );
    let mut state = SyncState::default();
    let first = plan(&d, &state, vec![row(1, "a", 1), row(2, "b", 1)]);
    confirm(&mut state, &first);
    let second = plan(&d, &state, vec![row(2, "b", 1), row(3, "c", 1)]);
    assert_eq!(second.inserts(), 1);
    assert_eq!(second.removals.len(), 1);
    assert_eq!(second.removals.get(0), "[1]");
    assert_eq!(second.removal_records.get(0).values, vec![Value::Int(1)]);
}

#[test]
fn mirror_clear_nulls_non_key_fields() {
    let d = def(
        json!({"destination": "d", "object": "o", "sync_mode": "mirror", "on_delete": "clear", "mapping": {"id": "Id", "name": "Name"}}),
    );
    let mut state = SyncState::default();
    let p0 = plan(&d, &state, vec![row(1, "a", 1)]);
    confirm(&mut state, &p0);
    let p = plan(&d, &state, vec![]);
    assert_eq!(
        p.removal_records.get(0).values,
        vec![Value::Int(1), Value::Null]
    );
}

#[test]
fn mirror_ignore_forgets_without_sending() {
    let d = def(
        json!({"destination": "d", "object": "o", "sync_mode": "mirror", "on_delete": "ignore"}),
    );
    let mut state = SyncState::default();
    let p0 = plan(&d, &state, vec![row(1, "a", 1)]);
    confirm(&mut state, &p0);
    let p = plan(&d, &state, vec![]);
    assert!(p.removals.is_empty());
    assert_eq!(p.forgotten.len(), 1);
}

#[test]
fn duplicates_and_null_keys() {
    let d = def(json!({"destination": "d", "object": "o"}));
    let state = SyncState::default();
    let p = plan(
        &d,
        &state,
        vec![
            row(1, "a", 1),
            row(1, "b", 1),
            vec![Value::Null, Value::Text("x".into()), Value::Int(1)],
            row(1, "c", 1),
        ],
    );
    assert_eq!(p.duplicate_count, 2);
    assert_eq!(p.duplicate_keys, vec!["[1]".to_owned()]);
    assert_eq!(p.rejected.len(), 1);
    assert!(
        p.rejected[0].reason.contains("NULL"),
        "{}",
        p.rejected[0].reason
    );
}

#[test]
fn full_refresh_resends_everything_and_tracks_cursor() {
    let d = def(json!({"destination": "d", "object": "o", "sync_mode": "full_refresh"}));
    let mut state = SyncState::default();
    let p0 = plan(&d, &state, vec![row(1, "a", 1)]);
    confirm(&mut state, &p0);
    let p = plan(&d, &state, vec![row(1, "a", 1)]);
    assert_eq!(p.updates(), 1);
    let c = def(json!({"destination": "d", "object": "o", "cursor": "ts"}));
    let p = plan(
        &c,
        &SyncState::default(),
        vec![row(1, "a", 5), row(2, "b", 7), row(3, "c", 6)],
    );
    assert_eq!(p.max_cursor, Some(Value::Int(7)));
}

#[test]
fn insert_operation_never_touches_delivered_keys() {
    let d = def(json!({"destination": "d", "object": "o", "operation": "insert"}));
    let mut state = SyncState::default();
    let p0 = plan(&d, &state, vec![row(1, "a", 1)]);
    confirm(&mut state, &p0);
    let p = plan(&d, &state, vec![row(1, "changed", 1), row(2, "b", 1)]);
    assert_eq!((p.inserts(), p.updates(), p.skipped_rows), (1, 0, 1));
}

#[test]
fn hash_ignores_mapping_order_and_literals_are_sent() {
    let a = def(
        json!({"destination": "d", "object": "o", "mapping": {"id": "Id", "name": "Name", "'web'": "Source"}}),
    );
    let b = def(
        json!({"destination": "d", "object": "o", "mapping": {"'web'": "Source", "name": "Name", "id": "Id"}}),
    );
    let pa = plan(&a, &SyncState::default(), vec![row(1, "a", 1)]);
    let pb = plan(&b, &SyncState::default(), vec![row(1, "a", 1)]);
    assert_eq!(pa.upserts[0].row_hash, pb.upserts[0].row_hash);
    assert!(
        pa.upsert_records
            .get(0)
            .values
            .contains(&Value::Text("web".into()))
    );
}

#[test]
fn templates_render_per_row() {
    let d = def(
        json!({"destination": "d", "object": "o", "mapping": {"id": "Id", "{{ name }}-{{ id }}": "Label"}}),
    );
    let p = plan(&d, &SyncState::default(), vec![row(7, "x", 1)]);
    assert_eq!(p.upsert_records.get(0).values[1], Value::Text("x-7".into()));
}

#[test]
fn missing_columns_are_named_with_a_hint() {
    let columns = vec![ColumnDesc {
        name: "id".into(),
        data_type: "INTEGER".into(),
    }];
    let errs = SyncDefinition::resolve(
        &spec(json!({"destination": "d", "object": "o", "mapping": {"idd": "Id"}, "cursor": "ts"})),
        "sync.p.s".into(),
        "m".into(),
        &columns,
    )
    .unwrap_err();
    assert!(
        errs[0].contains("column `idd` is not returned by m"),
        "{errs:?}"
    );
    assert!(errs[0].contains("did you mean `id`"), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.contains("meta.activate.cursor")),
        "{errs:?}"
    );
}

#[test]
fn fingerprints_ignore_row_order_and_see_any_change() {
    let d = def(json!({"destination": "d", "object": "o", "sync_mode": "mirror"}));
    let empty = SyncState::default();
    let a = plan(&d, &empty, vec![row(1, "a", 1), row(2, "b", 2)]);
    let b = plan(&d, &empty, vec![row(2, "b", 2), row(1, "a", 1)]);
    let changed = plan(&d, &empty, vec![row(1, "a", 1), row(2, "B", 2)]);
    let fewer = plan(&d, &empty, vec![row(1, "a", 1)]);
    assert_eq!(a.data_fingerprint, b.data_fingerprint);
    assert_ne!(a.data_fingerprint, changed.data_fingerprint);
    assert_ne!(a.data_fingerprint, fewer.data_fingerprint);

    let mut state = SyncState::default();
    let before = state.fingerprint();
    confirm(&mut state, &a);
    let after = state.fingerprint();
    assert_ne!(before, after);
    let mut same = SyncState::default();
    confirm(&mut same, &b);
    assert_eq!(
        after,
        same.fingerprint(),
        "the same keys and rows, confirmed in another order"
    );
    state.cursor = Some(Value::Int(5));
    assert_ne!(
        after,
        state.fingerprint(),
        "the cursor is part of the state"
    );
}

fn plan_with(
    def: &SyncDefinition,
    state: &SyncState,
    rows: Vec<Vec<Value>>,
    refuse_non_finite: bool,
    refuse_case: bool,
) -> Plan {
    let mut b = PlanBuilder::new(def, state, false)
        .refuse_non_finite_floats(refuse_non_finite)
        .refuse_keys_differing_only_in_case(refuse_case);
    // Columns are read as id, name, ts (the definition's order for these tests).
    assert_eq!(
        def.read_columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["id", "name", "ts"]
    );
    b.add_batch(rows);
    b.finish()
}

#[test]
fn non_finite_floats_reject_their_row_only_where_the_destination_cannot_carry_them() {
    let d = def(
        json!({"destination": "d", "object": "o", "mapping": {"id": "id", "name": "name", "ts": "ts"}}),
    );
    let rows = || {
        vec![
            vec![
                Value::Int(1),
                Value::Text("a".into()),
                Value::Float(f64::NAN),
            ],
            vec![
                Value::Int(2),
                Value::Text("b".into()),
                Value::Float(f64::NEG_INFINITY),
            ],
            vec![Value::Int(3), Value::Text("c".into()), Value::Float(0.5)],
        ]
    };
    let refused = plan_with(&d, &SyncState::default(), rows(), true, false);
    assert_eq!(refused.inserts(), 1);
    let reasons: Vec<(&str, &str)> = refused
        .rejected
        .iter()
        .map(|r| (r.key.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].0 == "[1]" && reasons[0].1.contains("`ts` is NaN"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == "[2]" && reasons[1].1.contains("`ts` is -inf"),
        "{reasons:?}"
    );
    let carried = plan_with(&d, &SyncState::default(), rows(), false, false);
    assert_eq!(carried.inserts(), 3);
    assert!(carried.rejected.is_empty());
}

#[test]
fn keys_differing_only_in_case_are_all_rejected_where_keys_ignore_case() {
    let d = def(json!({"destination": "d", "object": "o", "primary_key": "name"}));
    let rows = |names: &[&str]| -> Vec<Vec<Value>> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                vec![
                    Value::Int(i as i64),
                    Value::Text((*n).into()),
                    Value::Int(1),
                ]
            })
            .collect()
    };
    let p = plan_with(
        &d,
        &SyncState::default(),
        rows(&["Key", "other", "key", "key "]),
        false,
        true,
    );
    assert_eq!(
        p.inserts(),
        2,
        "`other` and `key ` (a trailing space is another key)"
    );
    let mut rejected: Vec<&str> = p.rejected.iter().map(|r| r.key.as_str()).collect();
    rejected.sort();
    assert_eq!(rejected, ["[\"Key\"]", "[\"key\"]"]);
    assert!(
        p.rejected[0].reason.contains("only in letter case"),
        "{}",
        p.rejected[0].reason
    );
    assert_eq!(p.upserts.len(), p.upsert_records.len());

    // Exact-key destinations keep all four.
    let exact = plan_with(
        &d,
        &SyncState::default(),
        rows(&["Key", "other", "key", "key "]),
        false,
        false,
    );
    assert_eq!(exact.inserts(), 4);

    // A key delivered before, unchanged now, collides with a new one: both are reported.
    let mut state = SyncState::default();
    let first = plan_with(&d, &state, rows(&["Key"]), false, true);
    confirm(&mut state, &first);
    let p = plan_with(&d, &state, rows(&["Key", "key"]), false, true);
    assert_eq!(p.upserts.len(), 0);
    assert_eq!(p.unchanged, 0);
    assert_eq!(p.rejected.len(), 2);
    assert_eq!(p.rows_read, 2);
}

/// The same plan whatever order the model returns its rows in: the order the keys were
/// delivered (the state walked in order), reversed, or interleaved, with changes, new keys,
/// a duplicate, keys that left, and a state holding removed entries.
#[test]
fn the_plan_does_not_depend_on_the_order_rows_are_read_in() {
    let d = def(json!({"destination": "d", "object": "Lead", "sync_mode": "mirror"}));
    let mut state = SyncState::default();
    let first: Vec<Vec<Value>> = (0..200).map(|i| row(i, &format!("n{i}"), i)).collect();
    let p = plan(&d, &state, first);
    confirm(&mut state, &p);
    // Entries removed from the state stay in its arena, marked removed.
    for i in (0..200).step_by(7) {
        state.apply(&Confirmed::Removed {
            key: format!("[{i}]").into(),
        });
    }
    let summary = |p: &Plan| {
        let mut upserts: Vec<String> = p
            .upserts
            .iter()
            .zip(p.upsert_keys.iter())
            .map(|(r, k)| format!("{k} {:?} {:x}", r.kind, r.row_hash))
            .collect();
        upserts.sort();
        let removals: Vec<String> = p.removals.iter().map(str::to_owned).collect();
        (
            upserts,
            removals,
            p.unchanged,
            p.duplicate_count,
            p.rows_read,
        )
    };
    // 1% of 200 changed is 2: change 10 and 11, drop 20..30, add 500 and 501.
    let second: Vec<Vec<Value>> = (0..200)
        .filter(|i| !(20..30).contains(i))
        .map(|i| match i {
            10 | 11 => row(i, "changed", i),
            _ => row(i, &format!("n{i}"), i),
        })
        .chain([row(500, "new", 1), row(501, "new", 2)])
        .collect();
    let in_order = plan(&d, &state, second.clone());
    // 190 old keys read; 27 of them were removed from the state (29 multiples of 7, less
    // 21 and 28 that left) and are inserts; 2 changed.
    assert_eq!(in_order.unchanged, 190 - 27 - 2);
    let mut reversed = second.clone();
    reversed.reverse();
    let mut interleaved: Vec<Vec<Value>> = second.iter().step_by(2).cloned().collect();
    interleaved.extend(second.iter().skip(1).step_by(2).cloned());
    for other in [reversed, interleaved] {
        assert_eq!(summary(&plan(&d, &state, other)), summary(&in_order));
    }
    // A key read twice in a row is a duplicate, in order or not.
    let mut twice = second.clone();
    twice.insert(40, second[39].clone());
    assert_eq!(plan(&d, &state, twice).duplicate_count, 1);
}

/// A key written twice in a (hand-edited) snapshot file is two entries; a read marks one of
/// them, and the key, still in the model, is not removed. A key gone from the model is
/// removed once.
#[test]
fn a_key_twice_in_the_state_file_is_not_removed_while_in_the_model() {
    let d = def(json!({"destination": "d", "object": "Lead", "sync_mode": "mirror"}));
    let mut state = SyncState::default();
    let first = plan(
        &d,
        &state,
        vec![row(1, "a", 1), row(2, "b", 2), row(3, "c", 3)],
    );
    let hashes: Vec<u64> = first.upserts.iter().map(|r| r.row_hash).collect();
    for (key, hash) in [("[1]", 0), ("[2]", 1), ("[1]", 0), ("[3]", 2), ("[3]", 2)] {
        state.snapshot.push_new(key, hashes[hash]);
    }
    let p = plan(&d, &state, vec![row(1, "a", 1), row(2, "b", 2)]);
    assert_eq!(p.removals.iter().collect::<Vec<_>>(), vec!["[3]"]);
    assert_eq!(p.unchanged, 2);
}

/// Row hashes are stored in state: their bytes must never change (a changed encoding would
/// resend every row once). The bytes: per field in name order, its name, a zero byte and its
/// value's tagged encoding. Covers a name longer than 31 bytes and a literal field.
#[test]
fn the_row_hash_is_the_hash_of_the_documented_bytes() {
    let long = "a_destination_field_name_longer_than_31_bytes";
    let d = def(json!({"destination": "d", "object": "o",
        "mapping": {"id": "Id", "name": long, "'web'": "Source"}}));
    let p = plan(&d, &SyncState::default(), vec![row(7, "Ann", 1)]);
    let mut expected = Vec::new();
    for (name, value) in [
        ("Id", Value::Int(7)),
        ("Source", Value::Text("web".into())),
        (long, Value::Text("Ann".into())),
    ] {
        expected.extend_from_slice(name.as_bytes());
        expected.push(0);
        value.write_hash_bytes(&mut expected);
    }
    assert_eq!(expected[..3], *b"Id\0");
    assert_eq!(expected[3..12], [2, 7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(p.upserts[0].row_hash, xxh3_64(&expected));
}
