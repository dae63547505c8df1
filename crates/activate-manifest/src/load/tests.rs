use super::*;

/// A manifest as dbt writes it (`", "` and `": "` separators), `models` models with a long
/// description and `columns`, two tests each (every node with its own `refs` and `sources`
/// keys, as dbt writes them), a source, macros and the parent and child maps after the
/// nodes; `extra_meta` goes into the meta of the model in the middle.
fn manifest_json(models: usize, extra_meta: &str) -> String {
    let description = "A documented column: what it holds and who owns it. ".repeat(8);
    let mut nodes = Vec::new();
    let mut parent_map = Vec::new();
    for i in 0..models {
        let id = format!("model.p.m{i:05}");
        let meta = if i == models / 2 {
            extra_meta.to_owned()
        } else if i % 10 == 0 {
            r#"{"activate": {"destination": "crm", "object": "Lead", "primary_key": "id"}}"#
                .to_owned()
        } else {
            "{}".to_owned()
        };
        let columns: Vec<String> = (0..5)
            .map(|c| format!(r#""c{c}": {{"name": "c{c}", "description": "{description}", "meta": {{}}, "constraints": []}}"#))
            .collect();
        let pk = if i % 7 == 0 {
            r#", "id": {"name": "id", "constraints": [{"type": "primary_key"}]}"#
        } else {
            ""
        };
        nodes.push(format!(
            r#""{id}": {{"database": "db", "schema": "main", "name": "m{i:05}", "resource_type": "model", "package_name": "p", "path": "m{i:05}.sql", "original_file_path": "models/m{i:05}.sql", "unique_id": "{id}", "fqn": ["p", "m{i:05}"], "alias": "m{i:05}", "checksum": {{"name": "sha256", "checksum": "{i:x}"}}, "config": {{"enabled": true, "materialized": "table", "meta": {meta}, "tags": ["t{}"], "unique_key": null}}, "tags": ["t{}"], "description": "{description}", "columns": {{{}{pk}}}, "meta": {meta}, "raw_code": "select 1 as id -- \"quoted\" }}, \"model.x\": {{", "refs": [], "sources": [], "depends_on": {{"macros": [], "nodes": [{}]}}, "primary_key": ["id"]}}"#,
            i % 3,
            i % 3,
            columns.join(", "),
            if i > 0 { format!(r#""model.p.m{:05}""#, i - 1) } else { String::new() },
        ));
        for test in ["unique", "not_null"] {
            let tid = format!("test.p.{test}_m{i:05}_id.{i:08x}");
            nodes.push(format!(
                r#""{tid}": {{"name": "{test}_m{i:05}_id", "resource_type": "test", "unique_id": "{tid}", "config": {{"enabled": true, "severity": "ERROR", "meta": {{}}, "tags": []}}, "attached_node": "{id}", "test_metadata": {{"name": "{test}", "kwargs": {{"column_name": "id"}}}}, "refs": [{{"name": "m{i:05}"}}], "sources": [], "depends_on": {{"macros": [], "nodes": ["{id}"]}}}}"#
            ));
            parent_map.push(format!(r#""{tid}": ["{id}"]"#));
        }
    }
    format!(
        r#"{{"metadata": {{"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "project_name": "p"}}, "nodes": {{{}}}, "sources": {{"source.p.raw.t": {{"unique_id": "source.p.raw.t", "name": "t", "source_name": "raw", "relation_name": "\"db\".\"raw\".\"t\""}}}}, "macros": {{"macro.p.m": {{"macro_sql": "{{% macro m() %}}}}, \"model.y\": {{{{% endmacro %}}"}}}}, "parent_map": {{{}}}, "child_map": {{}}}}"#,
        nodes.join(", "),
        parent_map.join(", ")
    )
}

/// The manifest as one plain parse reads it, in a form to compare (`Node` has no `PartialEq`).
fn plain(json: &str) -> String {
    let manifest: Manifest = serde_json::from_slice(json.as_bytes()).expect("a manifest");
    format!("{manifest:?}")
}

/// The pieces' parse with these guesses, through windows of the size used and of sizes that
/// refill many times a piece and grow for every node (a model here is about 3 KiB); all
/// must agree, to the byte.
fn pieces(bytes: &[u8], guess: PieceStarts<'_>) -> Option<Manifest> {
    let [first, rest @ ..] = [WINDOW_BYTES, 64 << 10, 700]
        .map(|window_bytes| parse_top_level(&bytes, guess, window_bytes));
    let shown = |m: &Option<Manifest>| m.as_ref().map(|m| format!("{m:?}"));
    for other in &rest {
        assert_eq!(
            shown(other),
            shown(&first),
            "windows of different sizes disagree"
        );
    }
    first
}

#[test]
fn two_threads_read_what_one_plain_parse_reads() {
    let json = manifest_json(1000, "{}");
    assert!(json.len() >= PIECES_FROM, "{} bytes", json.len());
    let bytes = json.as_bytes();
    // The guess is an entry boundary of the `nodes` map, so the split is taken.
    let start = json.find(r#""nodes": {"#).expect("nodes") + r#""nodes": {"#.len();
    let starts = piece_starts(&bytes, start);
    assert!(starts.len() >= 12, "{starts:?}");
    assert!(starts.is_sorted() && starts[0] > start, "{starts:?}");
    for &guess in &starts {
        assert!(json[..guess].trim_end().ends_with("},"), "{guess}");
    }
    let split = pieces(bytes, &piece_starts).expect("the two-thread parse");
    assert_eq!(split.nodes.len(), 3000);
    assert_eq!(format!("{split:?}"), plain(&json));
    let manifest = parse_manifest(bytes).expect("a manifest");
    assert_eq!(format!("{manifest:?}"), plain(&json));
    // Columns with a primary key constraint were read, others skipped, on both threads.
    assert_eq!(manifest.nodes["model.p.m00994"].key_candidates(), ["id"]);
    assert!(manifest.nodes["model.p.m00995"].columns.is_empty());
}

/// A guess that looks like an entry boundary but is inside a node (a meta key shaped like a
/// node id) cuts that node in two: the parts around the cut are not valid JSON, the pieces'
/// map is not taken, and the plain parse decides.
#[test]
fn a_guess_inside_a_node_leaves_it_to_the_plain_parse() {
    let meta = r#"{"owner": {}, "model.p.fake": {"unique_id": "model.p.fake", "resource_type": "model", "name": "fake"}}"#;
    let json = manifest_json(40, meta);
    let fake = json
        .find(r#""model.p.fake": {"unique_id""#)
        .expect("the fake key");
    assert!(pieces(json.as_bytes(), &|_, _| vec![fake]).is_none());
    // With the true boundaries around it, the same: the fake piece read an entry.
    let start = json.find(r#""model.p.m00019""#).expect("a node");
    let end = json.find(r#""model.p.m00021""#).expect("a node");
    assert!(pieces(json.as_bytes(), &|_, _| vec![start, fake, end]).is_none());
    let manifest = pieces(json.as_bytes(), &|_, _| vec![start, end]).expect("taken");
    assert!(!manifest.nodes.contains_key("model.p.fake"));
    assert_eq!(format!("{manifest:?}"), plain(&json));
}

/// Whatever byte a piece is told to start at, the pieces' parse is the plain parse's or is
/// left to it (a piece started elsewhere than at an entry leaves a part that is not valid).
#[test]
fn a_guess_at_any_quote_gives_the_plain_result_or_leaves_it_to_the_plain_parse() {
    let json = manifest_json(6, r#"{"x": {}, "model.p.m00004": {"name": "not a node"}}"#);
    let expected = plain(&json);
    let shown = |m: Option<Manifest>| m.map(|m| format!("{m:?}"));
    let quotes: Vec<usize> = json.match_indices('"').map(|(i, _)| i).step_by(7).collect();
    let mut taken = 0;
    for &guess in &quotes {
        if let Some(manifest) = shown(pieces(json.as_bytes(), &|_, _| vec![guess])) {
            assert_eq!(manifest, expected, "guess at byte {guess}");
            taken += 1;
        }
    }
    assert!(taken > 0, "no guess was an entry's start");
    // All of them at once: many pieces, most started inside a node or outside the map.
    assert_eq!(shown(pieces(json.as_bytes(), &|_, _| quotes.clone())), None);
    // Every entry's start at once: the pieces' parse.
    let entries: Vec<usize> = (1..6)
        .map(|i| json.find(&format!(r#""model.p.m{i:05}": {{"database""#)))
        .collect::<Option<_>>()
        .expect("the models");
    let manifest = pieces(json.as_bytes(), &|_, _| entries.clone());
    assert_eq!(shown(manifest), Some(expected));
}

/// Entry boundaries of the map, then guesses past its end (in the lineage maps, where keys
/// look like node ids): the map's last piece is then cut at a start outside it, which is not
/// valid, and the plain parse decides.
#[test]
fn guesses_past_the_nodes_map_leave_it_to_the_plain_parse() {
    let json = manifest_json(200, "{}");
    let bytes = json.as_bytes();
    let start = json.find(r#""nodes": {"#).expect("nodes") + r#""nodes": {"#.len();
    let map_end = json.find(r#", "sources": {"#).expect("sources");
    let mut starts: Vec<usize> = piece_starts(&bytes, start)
        .into_iter()
        .filter(|&s| s < map_end)
        .collect();
    assert!(starts.len() >= 4, "{starts:?}");
    assert!(pieces(bytes, &|_, _| starts.clone()).is_some());
    starts.extend(
        json.match_indices(r#""test.p."#)
            .map(|(i, _)| i)
            .filter(|&i| i > map_end)
            .step_by(50),
    );
    assert!(pieces(bytes, &|_, _| starts.clone()).is_none());
    let manifest = parse_manifest(bytes).expect("a manifest");
    assert_eq!(format!("{manifest:?}"), plain(&json));
}

/// A key given twice (in one piece or two) leaves it to the plain parse, which keeps its
/// last value.
#[test]
fn a_node_given_twice_leaves_it_to_the_plain_parse() {
    let json = manifest_json(50, "{}");
    let first = json.find(r#""model.p.m00010": {"#).expect("a node");
    let twice = format!(
        "{}\"model.p.m00010\": {{\"unique_id\": \"model.p.m00010\", \"resource_type\": \"model\", \"name\": \"again\"}}, {}",
        &json[..first],
        &json[first..]
    );
    let bytes = twice.as_bytes();
    let second = twice.rfind(r#""model.p.m00010": {"#).expect("the second");
    assert!(second > first);
    for starts in [vec![], vec![first], vec![first, second], vec![second]] {
        assert!(
            pieces(bytes, &|_, _| starts.clone()).is_none(),
            "{starts:?}"
        );
    }
    let manifest = parse_manifest(bytes).expect("a manifest");
    assert_eq!(manifest.nodes["model.p.m00010"].name, "m00010");
}

#[test]
fn errors_and_duplicate_keys_read_as_the_plain_parse_says() {
    let json = manifest_json(1000, "{}");
    // A stray byte between two entries in the second half of the nodes map.
    let at = json.len() / 2
        + json[json.len() / 2..]
            .find(r#", "test."#)
            .expect("an entry");
    let broken = format!("{}@{}", &json[..at], &json[at..]);
    let twice = json.replacen(r#""sources": {"#, r#""nodes": {}, "sources": {"#, 1);
    // Form feed is not JSON whitespace.
    let form_feed = format!("{json}\u{c}");
    let form_feed_inside = json.replacen(r#""nodes": {"#, "\"nodes\"\u{c}: {", 1);
    for bad in [broken, twice, form_feed, form_feed_inside] {
        let plain = serde_json::from_slice::<Manifest>(bad.as_bytes()).expect_err("invalid");
        let ours = parse_manifest(bad.as_bytes()).expect_err("invalid");
        assert_eq!(ours.to_string(), plain.to_string());
    }
}

#[test]
fn an_empty_nodes_map_and_no_nodes_key_parse() {
    let padding = format!(
        r#""macros": {{"macro.p.m": {{"macro_sql": "{}"}}}}"#,
        "x".repeat(PIECES_FROM)
    );
    for nodes in [r#""nodes": {}, "#, ""] {
        let json = format!(
            r#"{{"metadata": {{"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"}}, {nodes}{padding}}}"#
        );
        let manifest = parse_manifest(json.as_bytes()).expect("a manifest");
        assert!(manifest.nodes.is_empty());
        assert_eq!(format!("{manifest:?}"), plain(&json));
    }
}

#[cfg(unix)]
#[test]
fn a_large_file_is_loaded_in_pieces_and_a_broken_one_reads_as_the_plain_parse_says() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = manifest_json(1000, "{}");
    assert!(json.len() >= PIECES_FROM, "{} bytes", json.len());
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, &json).expect("written");
    let Ok(manifest) = load_manifest(&path) else {
        panic!("not loaded");
    };
    assert_eq!(format!("{manifest:?}"), plain(&json));
    // The file's bytes read by offset, in windows: the same bytes as the text.
    let file = ManifestFile {
        file: File::open(&path).expect("opened"),
        size: json.len(),
    };
    let mut window = Window::new(&file, 1000);
    window.seek(json.len() - 10);
    assert!(window.fill(5).is_some());
    assert_eq!(
        &window.buf[..window.filled],
        &json.as_bytes()[json.len() - 10..]
    );
    assert!(window.ended);
    // A file that is not as it was when it was opened (here: the stamp of another file of the
    // same length) is handed back, to be read again whole.
    let other = dir.path().join("other.json");
    std::fs::write(&other, &json).expect("written");
    let opened = File::open(&path).expect("opened");
    let other_stamp = std::fs::metadata(&other).expect("metadata");
    assert!(load_in_pieces(opened, &other_stamp).is_err());
    let opened = File::open(&path).expect("opened");
    let stamp = std::fs::metadata(&path).expect("metadata");
    assert!(load_in_pieces(opened, &stamp).is_ok());
    // Cut short: the error is serde_json's, from the whole file.
    let cut = &json[..json.len() / 2];
    std::fs::write(&path, cut).expect("written");
    let plain_error = serde_json::from_str::<Manifest>(cut).expect_err("cut short");
    match load_manifest(&path) {
        Err(ManifestError::Json { source, .. }) => {
            assert_eq!(source.to_string(), plain_error.to_string())
        }
        _ => panic!("not the plain parse's error"),
    }
    assert!(matches!(
        load_manifest(&dir.path().join("missing.json")),
        Err(ManifestError::Read { .. })
    ));
}

/// The rest of the file after the `nodes` map is parsed from where the map probably ends,
/// while the pieces are parsed. A wrong guess (an object in a node shaped like the map's end)
/// is found out by where the pieces end the map, and the rest is then parsed from there.
#[test]
fn the_rest_after_the_map_is_parsed_from_its_guessed_end() {
    let fake_meta = r#"{"x": {"y": {}}, "sources": {"source.p.fake": {"unique_id": "source.p.fake", "name": "fake", "source_name": "f"}}}"#;
    let json = manifest_json(1000, fake_meta);
    let bytes = json.as_bytes();
    let map_end = json
        .find(r#", "sources": {"source.p.raw.t""#)
        .expect("the map's end");
    // In the node's config and its own meta.
    let fakes: Vec<usize> = json
        .match_indices(r#", "sources": {"source.p.fake""#)
        .map(|(i, _)| i)
        .collect();
    let [fake, last_fake] = fakes[..] else {
        panic!("{fakes:?}")
    };
    let nodes_map = json.find(r#""nodes": {"#).expect("nodes") + r#""nodes": "#.len();
    let mut window = Window::new(&bytes, 700);
    assert_eq!(guess_map_end(&mut window, nodes_map), Some(fake));
    assert_eq!(guess_map_end(&mut window, fake + 1), Some(last_fake));
    assert_eq!(guess_map_end(&mut window, last_fake + 1), Some(map_end));
    assert_eq!(guess_map_end(&mut window, map_end + 1), None);

    // The pieces' last start after the fake end: the rest was parsed with the pieces.
    let parse = |guess: PieceStarts<'_>| {
        let mut at = Window::new(&bytes, WINDOW_BYTES);
        at.seek(nodes_map);
        let (nodes, end, tail) = parse_nodes(&mut at, guess, WINDOW_BYTES).expect("the map");
        assert_eq!((nodes.len(), end), (3000, map_end));
        tail.map(|tail| {
            tail.sources
                .unwrap_or_default()
                .into_keys()
                .collect::<Vec<_>>()
        })
    };
    assert!(piece_starts(&bytes, nodes_map + 1).last() > Some(&last_fake));
    assert_eq!(
        parse(&piece_starts),
        Some(vec!["source.p.raw.t".to_owned()])
    );
    // The last start before it: the guess was the fake end, and the rest is left to the caller.
    let before_fake = json.find(r#""model.p.m00499""#).expect("a node");
    assert!(before_fake < fake);
    assert_eq!(parse(&|_, _| vec![before_fake]), None);
    let manifest = pieces(bytes, &|_, _| vec![before_fake]).expect("the pieces' parse");
    assert_eq!(
        manifest.sources.keys().collect::<Vec<_>>(),
        ["source.p.raw.t"]
    );
    assert_eq!(format!("{manifest:?}"), plain(&json));
}

/// The pieces are read by sonic-rs, the plain parse is serde_json's: values of every kind in a
/// node's meta (which is kept as it is read; sonic-rs alone would read `-0.0` as `0.0` and the
/// long decimal here one float away) read the same, and what the plain parse refuses
/// (or accepts) in a node, read or skipped, is refused (or accepted) the same, and what it
/// accepts is read by the pieces.
#[test]
fn the_pieces_read_values_and_refuse_input_as_the_plain_parse_does() {
    let meta = r#"{"floats": [0.1, -0.0, -0, -0e0, 1e300, 2.5E-10, 1796600288.7331052, 2.2250738585072011e-308, 123456789012345678901234567890], "ints": [0, -1, 18446744073709551615, -9223372036854775808], "text": "caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t é 😀", "nested": [[], {}, [{"a": null, "b": true, "c": false}]]}"#;
    let json = manifest_json(1000, meta);
    let manifest = parse_manifest(json.as_bytes()).expect("a manifest");
    assert_eq!(format!("{manifest:?}"), plain(&json));
    assert!(pieces(json.as_bytes(), &piece_starts).is_some());

    let middle = json.find(r#""model.p.m00500": {"#).expect("a node");
    let raw_code = middle + json[middle..].find(r#""raw_code": ""#).expect("raw_code") + 12;
    let meta = middle + json[middle..].find(r#""meta": {}"#).expect("meta") + 9;
    let columns = middle + json[middle..].find(r#""columns": {"#).expect("columns") + 12;
    let with = |at: usize, inserted: &[u8]| {
        [&json.as_bytes()[..at], inserted, &json.as_bytes()[at..]].concat()
    };
    for (what, bytes) in [
        ("a lone surrogate, skipped", with(raw_code, br"\ud800")),
        ("a lone surrogate, read", with(meta, br#""s": "\udc00""#)),
        ("a control character, skipped", with(raw_code, b"\x01")),
        ("a control character, read", with(meta, b"\"s\": \"\x1f\"")),
        ("a bad escape, skipped", with(raw_code, br"\x")),
        ("invalid UTF-8, skipped", with(raw_code, b"\xff\xfe")),
        ("invalid UTF-8, read", with(meta, b"\"s\": \"\xc3\x28\"")),
        ("a number cut short, read", with(meta, br#""n": 1."#)),
        ("a leading zero, read", with(meta, br#""n": 01"#)),
        (
            "a \\u escape without hex digits, skipped",
            with(raw_code, br"\uZZZZ"),
        ),
        (
            "a \\u escape with one bad digit, skipped",
            with(raw_code, br"\u00g1"),
        ),
        (
            "a \\u escape over the closing quote, skipped",
            with(raw_code, br#"\u\"ab"#),
        ),
        (
            "a bad \\u escape in a skipped key",
            with(meta, br#""x": {"\uQQQQ": 1}"#),
        ),
        (
            "a bad \\u escape in columns",
            with(columns, br#""q": {"description": "\uZZZZ"}, "#),
        ),
        (
            "escaped backslashes before a u, skipped",
            with(raw_code, br"C:\\\\users\\u"),
        ),
        (
            "an escaped backslash and a \\u escape, skipped",
            with(raw_code, br"\\\\\u00e9"),
        ),
    ] {
        let plain = serde_json::from_slice::<Manifest>(&bytes).map(|m| format!("{m:?}"));
        let ours = parse_manifest(&bytes).map(|m| format!("{m:?}"));
        match (&ours, &plain) {
            (Ok(ours), Ok(plain)) => {
                assert_eq!(ours, plain, "{what}");
                // Read by the pieces, not left to the plain parse (but for bytes that are not
                // UTF-8, which serde_json reads in a string it skips).
                if std::str::from_utf8(&bytes).is_ok() {
                    let pieces = pieces(&bytes, &piece_starts).map(|m| format!("{m:?}"));
                    assert_eq!(pieces.as_ref(), Some(plain), "{what}");
                }
            }
            (Err(ours), Err(plain)) => assert_eq!(ours.to_string(), plain.to_string(), "{what}"),
            _ => panic!(
                "{what}: ours {:?}, plain {:?}",
                ours.as_ref().map(|_| "a manifest"),
                plain.as_ref().map(|_| "a manifest")
            ),
        }
    }
}
