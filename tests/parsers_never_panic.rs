//! Property tests: the parsers that read what a pull request or a webhook sends never
//! panic, whatever the input; a bad input is a diagnostic naming the file. The inputs are
//! built from the characters that matter to YAML's structure (quotes, escapes, colons,
//! dashes, flow brackets, comments) mixed with multi-byte characters, because a byte
//! index that lands inside a character is what made the line scanner panic.
//!
//! Inputs the fuzzers (`fuzz/`, see the README) found are kept in
//! `tests/fixtures/fuzz/<target>/` and replayed here too.

use paved::intake::classify;
use paved::manifest::yaml::{self, FieldPath};
use paved::manifest::{environment, platform};
use proptest::prelude::*;
use std::path::Path;

const FILE: &str = "environments/payments/x.yaml";

/// A character YAML's structure cares about, or a multi-byte one.
fn yaml_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            ' ', ' ', '\n', '\t', ':', '-', '"', '\'', '\\', '#', '{', '}', '[', ']', ',',
            '&', '*', '!', '|', '>', '?', '%', '@', '`', '=',
        ]),
        2 => prop::sample::select(vec!['é', '€', 'ß', '日', '🚀', '\u{0301}', '\u{feff}', 'ÿ']),
        3 => prop::char::range('a', 'z'),
        1 => prop::char::range('0', '9'),
    ]
}

fn yamlish() -> impl Strategy<Value = String> {
    prop::collection::vec(yaml_char(), 0..200).prop_map(|v| v.into_iter().collect())
}

/// A real manifest with a run of yaml-ish characters spliced in at some point.
fn spliced_manifest() -> impl Strategy<Value = String> {
    let base = paved_testkit::manifest("checkout", "payments", "small");
    (0..base.len(), yamlish()).prop_map(move |(at, junk)| {
        let at = (0..=at)
            .rev()
            .find(|i| base.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}{}{}", &base[..at], junk, &base[at..])
    })
}

fn field_path() -> impl Strategy<Value = FieldPath> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "metadata",
                "spec",
                "name",
                "parameters",
                "tags",
                "é",
                "\\"
            ])
            .prop_map(|k| yaml::Seg::Key(k.to_string())),
            (0usize..4).prop_map(yaml::Seg::Index),
        ],
        0..5,
    )
    .prop_map(FieldPath)
}

fn parse_everything(text: &str, path: &FieldPath) {
    if let Err(d) = environment::parse_manifest(FILE, text) {
        assert_eq!(d.file, FILE, "diagnostics name the file");
    } else if let Ok(m) = environment::parse_manifest(FILE, text) {
        let _ = environment::check_manifest(&m, None);
    }
    if let Err(ds) = platform::parse_platform(".paved/platform.yaml", text) {
        assert!(
            ds.iter().all(|d| d.file == ".paved/platform.yaml"),
            "{ds:?}"
        );
    }
    let _ = yaml::locate(text, path);
    let _ = yaml::scan(FILE, text);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn yamlish_text_never_panics(text in yamlish(), path in field_path()) {
        parse_everything(&text, &path);
    }

    #[test]
    fn spliced_manifests_never_panic(text in spliced_manifest(), path in field_path()) {
        parse_everything(&text, &path);
    }

    #[test]
    fn webhook_bodies_never_panic(
        event in prop::sample::select(vec![
            "pull_request", "push", "pull_request_review", "issue_comment", "check_run", "ping",
        ]),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = classify(event, &body);
    }
}

/// The input that made the line scanner panic (issue 9, item 6): an escape before a
/// multi-byte character in a quoted key.
#[test]
fn an_escaped_multibyte_key_is_a_diagnostic_not_a_panic() {
    let text = "apiVersion: paved/v1\n\"\\é\": x\n";
    let err = environment::parse_manifest(FILE, text).expect_err("unknown field");
    assert_eq!(err.file, FILE);
    assert!(err.line.is_some(), "{err:?}");
    let _ = yaml::locate(text, &FieldPath::parse("\\é"));
}

/// Every input a fuzzer found, replayed through its target's code.
#[test]
fn the_fuzz_corpus_of_findings_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut replayed = 0;
    for target in ["manifest", "platform", "webhook"] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).expect("read");
            match target {
                "webhook" => {
                    for event in ["pull_request", "push", "issue_comment", "check_run"] {
                        let _ = classify(event, &data);
                    }
                }
                _ => parse_everything(&String::from_utf8_lossy(&data), &FieldPath::root()),
            }
            replayed += 1;
        }
    }
    assert!(
        replayed > 0,
        "no fuzz findings found under {}",
        root.display()
    );
}
