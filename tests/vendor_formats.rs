//! The vendor-formats corpus (`tests/data/vendor-formats/`, format in its README): every line
//! through `logtail parse`, and every record compared field for field with its expectation.

use test_fixtures as common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::process::logtail;
use serde_json::Value;

/// One corpus message: where it is written, the bytes sent, and the record expected.
struct Case {
    at: String,
    input: String,
    expected: Value,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vendor-formats")
}

fn load_cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).expect("corpus file is UTF-8");
        let mut input: Option<(usize, &str)> = None;
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            if line.is_empty() || line.starts_with('#') {
                assert!(
                    input.is_none(),
                    "{name}:{line_no}: expectation missing above"
                );
            } else if let Some(json) = line.strip_prefix("= ") {
                let (input_line, sent) = input
                    .take()
                    .unwrap_or_else(|| panic!("{name}:{line_no}: expectation without input"));
                let expected = serde_json::from_str(json)
                    .unwrap_or_else(|e| panic!("{name}:{line_no}: bad JSON: {e}"));
                cases.push(Case {
                    at: format!("{name}:{input_line}"),
                    input: sent.to_owned(),
                    expected,
                });
            } else {
                assert!(
                    input.is_none(),
                    "{name}:{line_no}: expectation missing above"
                );
                input = Some((line_no, line));
            }
        }
        assert!(input.is_none(), "{name}: last message has no expectation");
    }
    cases
}

#[test]
fn every_vendor_line_parses_to_exactly_its_expected_fields() {
    let cases = load_cases();
    assert!(cases.len() >= 50, "corpus has {} messages", cases.len());
    let mut child = logtail()
        .args([
            "parse",
            "--legacy-timezone",
            "utc",
            "--received-at",
            "2026-11-21T02:53:47Z",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("logtail runs");
    {
        let mut stdin = child.stdin.take().unwrap();
        for case in &cases {
            writeln!(stdin, "{}", case.input).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let records: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), cases.len());
    let mut wrong = Vec::new();
    for (case, mut record) in cases.iter().zip(records) {
        let object = record.as_object_mut().unwrap();
        assert_eq!(
            object.remove("received_at"),
            Some("2026-11-21T02:53:47.000000Z".into())
        );
        assert_eq!(object.remove("source"), Some("stdin".into()));
        if record != case.expected {
            wrong.push(format!(
                "{}: {}\n  expected {}\n  got      {}",
                case.at, case.input, case.expected, record
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
