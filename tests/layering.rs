//! The dependency rule of `src/lib.rs`, checked: data flows one way, so a module only imports
//! modules of an earlier layer (leaves before stages, stages in data-flow order, programs
//! last), and nothing imports in a cycle. The layers below are the ones `src/lib.rs` draws; a
//! new top-level module must be placed in one, or this test fails and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `src/` and its layer. A module may import modules of a lower
/// layer; within layer 0 (leaves) and the last layer (programs) modules may also import each
/// other, as long as there is no cycle.
const LAYERS: &[(&str, u8)] = &[
    // Leaves: shared vocabulary and plumbing, no stage.
    ("runtime", 0),
    ("setting", 0),
    ("time", 0),
    ("log_limit", 0),
    ("metrics", 0),
    ("ack", 0),
    ("agent_protocol", 0),
    ("segments", 0),
    ("pem", 0),
    ("http_serve", 0),
    // Stages, in data-flow order.
    ("source", 1),
    ("parse", 2),
    ("encode", 3),
    ("kafka", 4),
    ("pipeline", 5),
    ("store", 6),
    ("wal", 6),
    ("sink", 7),
    // Reading back.
    ("query", 8),
    ("search", 9),
    // Programs and composition roots.
    ("http", 10),
    ("config", 10),
    ("server", 10),
    ("agent", 10),
    ("validate", 10),
];

const LEAVES: u8 = 0;
const PROGRAMS: u8 = 10;

/// The top-level modules each module of `src/` names as `crate::NAME`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let first = relative.components().next().expect("a first component");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file is UTF-8");
            let targets = edges.entry(module.clone()).or_default();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for target in names_after_crate(code) {
                    if target != module {
                        targets.insert(target);
                    }
                }
            }
        }
    }
    edges
}

/// `crate::a::b` gives `a`; `crate::{a, b::c}` gives `a` and `b`.
fn names_after_crate(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    names.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.push(name);
            }
        }
    }
    names
}

#[test]
fn no_module_imports_a_later_layer() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let edges = imports();
    let mut wrong = Vec::new();
    for (module, targets) in &edges {
        let Some(&from) = layers.get(module.as_str()) else {
            wrong.push(format!("{module}: not in LAYERS (place it in a layer)"));
            continue;
        };
        for target in targets {
            let Some(&to) = layers.get(target.as_str()) else {
                wrong.push(format!("{module} -> {target}: {target} is not in LAYERS"));
                continue;
            };
            let same_layer_allowed = from == to && (from == LEAVES || from == PROGRAMS);
            if to > from || (to == from && !same_layer_allowed) {
                wrong.push(format!(
                    "{module} (layer {from}) imports {target} (layer {to})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the data flow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycle_between_modules() {
    let edges = imports();
    // Depth-first search for a back edge.
    fn visit<'a>(
        module: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module);
            return Some(cycle.join(" -> "));
        }
        if done.contains(module) {
            return None;
        }
        path.push(module);
        for target in edges.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(target, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module);
        None
    }
    let mut done = BTreeSet::new();
    for module in edges.keys() {
        let cycle = visit(module, &edges, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "import cycle: {}",
            cycle.unwrap_or_default()
        );
    }
}

#[test]
fn the_scanner_sees_plain_and_grouped_imports() {
    assert_eq!(
        names_after_crate("use crate::{ack::AckToken, self, metrics};"),
        ["ack", "metrics"]
    );
    assert_eq!(
        names_after_crate("let x = crate::time::now(); crate::runtime::spawn()"),
        ["time", "runtime"]
    );
}
