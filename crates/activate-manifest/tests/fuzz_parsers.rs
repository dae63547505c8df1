//! Property tests of the parsers of dbt's artifacts and of `meta.activate`: arbitrary bytes,
//! mutations of a valid file and arbitrary JSON in `meta.activate` give an `Ok` or an error,
//! never a panic; input nested 100,000 levels deep is refused with an error (no stack
//! overflow, no hang) however it is nested.

use std::collections::BTreeSet;
use std::path::Path;

use activate_manifest::spec::{KEYS, LIMIT_KEYS};
use activate_manifest::{Manifest, RunResults, extract_specs};
use proptest::prelude::*;
use serde_json::{Value, json};

const DEEP: usize = 100_000;

fn valid_manifest(activate: Value) -> Value {
    json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "project_name": "p",
        },
        "nodes": {
            "model.p.leads": {
                "unique_id": "model.p.leads", "resource_type": "model", "name": "leads",
                "original_file_path": "models/schema.yml", "primary_key": ["email"],
                "relation_name": "\"db\".\"main\".\"leads\"",
                "columns": {"email": {"name": "email"}, "score": {"name": "score"}},
                "config": {"enabled": true, "meta": {"activate": activate}},
                "depends_on": {"nodes": []},
            },
            "test.p.unique_leads_email": {
                "unique_id": "test.p.unique_leads_email", "resource_type": "test",
                "name": "unique_leads_email", "attached_node": "model.p.leads",
                "depends_on": {"nodes": ["model.p.leads"]},
            },
        },
        "sources": {},
    })
}

fn valid_activate() -> Value {
    json!({
        "destination": "crm", "object": "Lead", "sync_mode": "mirror", "primary_key": "email",
        "mapping": {"email": "Email", "score": "Score", "{{ score * 2 }}": "Double", "'x'": "Lit"},
        "limits": {"max_deletes": "5%", "max_rejected": 10}, "schedule": "every_hour",
    })
}

fn valid_run_results() -> Value {
    json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
                     "invocation_id": "x", "generated_at": "2025-01-01T00:00:00Z"},
        "results": [{"unique_id": "model.p.leads", "status": "success", "message": "OK"}],
        "args": {"which": "build"},
    })
}

fn destinations() -> BTreeSet<String> {
    ["crm".to_owned(), "files".to_owned()].into()
}

/// Strings that the spec parser gives meaning to, and arbitrary ones.
fn text() -> impl Strategy<Value = String> {
    let meaningful: Vec<String> = KEYS
        .iter()
        .chain(LIMIT_KEYS)
        .map(|s| (*s).to_owned())
        .chain(
            [
                "crm",
                "Lead",
                "email",
                "score",
                "incremental",
                "mirror",
                "full_refresh",
                "upsert",
                "insert",
                "update",
                "delete",
                "clear",
                "ignore",
                "every_hour",
                "cron \"0 * * * *\"",
                "5%",
                "150%",
                "-1",
                "'lit'",
                "{{ score }}",
                "{{",
                "}}",
                "{% for x in y %}",
                "{{ ((((( }}",
                "",
                " ",
                "\u{0}",
                "é🚀",
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        )
        .collect();
    prop_oneof![prop::sample::select(meaningful), any::<String>(),]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// One edit of a text: overwrite, insert or delete a byte at a position (modulo the length).
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let interesting = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"{}[]\",:\\0-9eE.+ nulltruefalse".to_vec()),
    ];
    let edit = prop_oneof![
        (any::<usize>(), interesting.clone()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ];
    prop::collection::vec(edit, 1..8)
}

fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len().max(1);
        match *e {
            Edit::Set(i, b) if !bytes.is_empty() => bytes[i % len] = b,
            Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Edit::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            _ => {}
        }
    }
    bytes
}

/// Parses a manifest and, when it parses, extracts its specs: `Ok` or `Err`, never a panic.
fn parse_manifest(bytes: &[u8]) {
    if let Ok(m) = Manifest::from_slice(bytes, Path::new("manifest.json")) {
        let _ = extract_specs(&m, &destinations());
        let _ = m.models().count();
        for model in m.models() {
            let _ = m.tests_of(&model.unique_id).count();
            let _ = model.key_candidates();
        }
    }
}

fn parse_run_results(bytes: &[u8]) {
    if let Ok(r) = RunResults::from_slice(bytes, Path::new("run_results.json")) {
        let _ = r.command();
        let _ = r.invocation();
        let _ = r.by_id();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_manifest(&bytes);
        parse_run_results(&bytes);
    }

    #[test]
    fn mutated_manifests_never_panic(edits in edits()) {
        let text = valid_manifest(valid_activate()).to_string().into_bytes();
        parse_manifest(&mutate(text, &edits));
    }

    #[test]
    fn mutated_run_results_never_panic(edits in edits()) {
        let text = valid_run_results().to_string().into_bytes();
        parse_run_results(&mutate(text, &edits));
    }

    #[test]
    fn arbitrary_meta_activate_never_panics(activate in json_value()) {
        parse_manifest(valid_manifest(activate).to_string().as_bytes());
    }

    /// A valid activation with one key replaced by an arbitrary value.
    #[test]
    fn arbitrary_value_of_a_known_key_never_panics(
        key in prop::sample::select(KEYS.to_vec()),
        value in json_value(),
    ) {
        let mut activate = valid_activate();
        activate[key] = value;
        parse_manifest(valid_manifest(activate).to_string().as_bytes());
    }

    /// The same, for a list of activations on the model.
    #[test]
    fn arbitrary_activation_lists_never_panic(items in prop::collection::vec(json_value(), 0..4)) {
        let mut list = vec![valid_activate()];
        list.extend(items);
        parse_manifest(valid_manifest(Value::Array(list)).to_string().as_bytes());
    }
}

fn nested(open: &str, inner: &str, close: &str) -> String {
    let mut s = String::with_capacity(DEEP * (open.len() + close.len()) + inner.len());
    for _ in 0..DEEP {
        s.push_str(open);
    }
    s.push_str(inner);
    for _ in 0..DEEP {
        s.push_str(close);
    }
    s
}

#[test]
fn deeply_nested_manifest_is_refused_with_an_error() {
    // The whole file, a meta value and an unknown field, each 100,000 arrays deep.
    let whole = nested("[", "", "]");
    let err = Manifest::from_slice(whole.as_bytes(), Path::new("manifest.json"))
        .expect_err("a 100,000-deep array is no manifest");
    assert!(err.to_string().contains("manifest.json"), "{err}");

    let template = valid_manifest(json!("HOLE")).to_string();
    for hole in [nested("[", "1", "]"), nested("{\"a\":", "1", "}")] {
        let text = template.replace("\"HOLE\"", &hole);
        let err = Manifest::from_slice(text.as_bytes(), Path::new("manifest.json"))
            .expect_err("nesting past the parser's depth limit is refused");
        let msg = err.to_string();
        assert!(msg.contains("recursion limit"), "{msg}");
        assert!(msg.contains("manifest.json"), "{msg}");
    }
    let text = template.replace(
        "\"sources\":{}",
        &format!("\"sources\":{{}},\"extra\":{}", nested("[", "", "]")),
    );
    // A field dbt-activate does not read is skipped without recursing: no overflow.
    let m = Manifest::from_slice(text.as_bytes(), Path::new("manifest.json"))
        .expect("an unread field is skipped");
    assert_eq!(m.models().count(), 1);
}

#[test]
fn deeply_nested_run_results_are_refused_with_an_error() {
    let template = valid_run_results().to_string();
    for text in [
        nested("[", "", "]"),
        template.replace("\"build\"", &nested("[", "\"build\"", "]")),
        template.replace("\"OK\"", &nested("{\"m\":", "\"OK\"", "}")),
    ] {
        let err = RunResults::from_slice(text.as_bytes(), Path::new("run_results.json"))
            .expect_err("nesting past the parser's depth limit is refused");
        assert!(err.to_string().contains("run_results.json"), "{err}");
    }
}

#[test]
fn huge_flat_input_is_parsed_or_refused_without_panicking() {
    // 1,000,000 activations in a list: parsed (each refused with an error), nothing panics.
    let list = format!(
        "[{}]",
        vec!["{\"destination\":\"nope\"}"; 1_000_000].join(",")
    );
    let text = valid_manifest(json!("HOLE"))
        .to_string()
        .replace("\"HOLE\"", &list);
    let m = Manifest::from_slice(text.as_bytes(), Path::new("manifest.json")).expect("valid JSON");
    let errors = extract_specs(&m, &destinations()).expect_err("unknown destinations");
    assert!(!errors.to_string().is_empty());
}
