//! Property tests of `activate.yml` reading: arbitrary YAML, mutations of the example's file,
//! and hostile shapes (100,000 levels of nesting, alias bombs, deeply nested templates) give
//! a configuration error naming the file, never a panic, a stack overflow or a hang.

use proptest::prelude::*;

use super::render::{RenderContext, render_str};
use super::*;

const DEEP: usize = 100_000;

const EXAMPLE: &str = include_str!("../../../../dbt_project_example/activate.yml");

/// Loads `text` as a project's activate.yml (target `ci`): `Ok` or a `ConfigError`.
fn load(text: &[u8]) -> Result<ActivateConfig, ConfigError> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("activate.yml"), text).expect("write activate.yml");
    load_activate_yml(dir.path(), "ci", "activate_example")
}

#[track_caller]
fn assert_refused(text: &str, needle: &str) {
    let err = match load(text.as_bytes()) {
        Ok(_) => panic!("accepted: {:.200}", text),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("activate.yml"),
        "the error names the file: {err}"
    );
    assert!(err.contains(needle), "the error says {needle:?}: {err}");
}

fn yaml_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "destinations",
            "targets",
            "syncs",
            "type",
            "postgres",
            "webhook",
            "file",
            "url",
            "schema",
            "path",
            "format",
            "jsonl",
            "batch_size",
            "query",
            "ci",
            "crm",
            "\"{{ env_var('X') }}\"",
            "\"{{ env_var('HOME', 'd') }}\"",
            "\"{{ target.name }}\"",
            "\"{{\"",
            "\"{% if %}\"",
            "~",
            "null",
            "true",
            "1e400",
            "-0",
            "0x1F",
            "!!binary AAAA",
            "&a x",
            "*a",
            "*undefined",
            "? complex",
            "'quoted''s'",
            "\"\\u0000\"",
            "|",
            ">",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
        any::<String>().prop_map(|s| format!("{s:?}")),
    ]
}

/// YAML text built from flow and block pieces, often malformed.
fn yaml_text() -> impl Strategy<Value = String> {
    let leaf = yaml_scalar();
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((yaml_scalar(), inner.clone()), 0..5).prop_map(|kv| {
                let items: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", items.join(", "))
            }),
            prop::collection::vec((yaml_scalar(), inner), 0..5).prop_map(|kv| {
                kv.iter()
                    .map(|(k, v)| format!("{k}:\n  {}\n", v.replace('\n', "\n  ")))
                    .collect::<String>()
            }),
        ]
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b" \n\t:-{}[],&*!|>'\"#%@`".to_vec())
    ];
    let edit = prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_yaml_never_panics(text in yaml_text()) {
        let _ = load(text.as_bytes());
        let _ = load(format!("destinations:\n  crm: {text}\n").as_bytes());
        let _ = load(format!("destinations: {{}}\nsyncs:\n  s: {text}\n").as_bytes());
    }

    #[test]
    fn mutated_example_never_panics(edits in edits()) {
        let _ = load(&mutate(EXAMPLE.as_bytes().to_vec(), &edits));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = load(&bytes);
    }

    #[test]
    fn arbitrary_templates_never_panic(template in "[{}%()a-z'\" |.,0-9_]{0,64}") {
        let _ = render_str(&template, &RenderContext::default(), "activate.yml", "destinations.x.url");
    }
}

#[test]
fn the_example_loads() {
    // env_var() without a default must be set: give those two values directly.
    let text = EXAMPLE
        .replace("{{ env_var('ACTIVATE_PG_URL') }}", "postgres://localhost/x")
        .replace(
            "{{ env_var('ACTIVATE_WEBHOOK_URL') }}",
            "http://localhost/x",
        );
    let config = load(text.as_bytes()).expect("the example's activate.yml loads");
    assert!(config.names().contains("crm"));
}

#[test]
fn deeply_nested_flow_sequences_are_refused_with_an_error() {
    let flow = format!("destinations: {}{}", "[".repeat(DEEP), "]".repeat(DEEP));
    assert_refused(&flow, "levels deep at line 1");
    // Brackets inside quotes and comments are text, not nesting.
    let quoted = format!(
        "destinations: {{crm: {{type: file, path: \"{}\"}}}} # {}\n",
        "[".repeat(DEEP),
        "{".repeat(DEEP)
    );
    let err = load(quoted.as_bytes())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(!err.contains("levels deep"), "{err}");
}

#[test]
fn deeply_nested_flow_mappings_are_refused_with_an_error() {
    let flow_maps = format!("destinations: {}1{}", "{a: ".repeat(DEEP), "}".repeat(DEEP));
    assert_refused(&flow_maps, "levels deep at line 1");
}

#[test]
fn deeply_nested_block_mappings_are_refused_with_an_error() {
    let mut block = String::from("destinations:\n");
    for depth in 1..2_000 {
        block.push_str(&" ".repeat(depth));
        block.push_str("a:\n");
    }
    assert_refused(&block, "recursion limit");
}

#[test]
fn alias_bombs_are_refused_with_an_error() {
    // "Billion laughs": each level repeats the previous one 9 times.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text.push_str("destinations: {crm: {type: file, path: *a11}}\n");
    let err = load(text.as_bytes()).expect_err("an alias bomb is refused");
    assert!(err.to_string().contains("activate.yml"), "{err}");
}

#[test]
fn deeply_nested_templates_are_refused_with_an_error() {
    let template = format!("{{{{ {}1{} }}}}", "(".repeat(DEEP), ")".repeat(DEEP));
    let err = render_str(
        &template,
        &RenderContext::default(),
        "activate.yml",
        "destinations.crm.url",
    )
    .expect_err("a template nested 100,000 deep is refused");
    assert!(err.to_string().contains("destinations.crm.url"), "{err}");
    let text = format!("destinations:\n  crm: {{type: file, path: \"{template}\"}}\n");
    assert!(load(text.as_bytes()).is_err());
}
