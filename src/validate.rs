//! `logtail validate`: a gateway or agent config file checked without starting anything, every
//! problem reported at once.
//!
//! `serve` and `agent` stop at the first mistake; an operator about to deploy a file wants all
//! of them, each as `FILE:LINE: KEY: MESSAGE` (the line when the key is written in the file; a
//! key left to its default has none). The passes, in order:
//! 1. **TOML syntax**: every error the parser recovers from. Nothing else is checked then: the
//!    values are unknown.
//! 2. **The schema** (unknown keys, wrong types, values a typed setting refuses): serde stops at
//!    the first, so the key at fault is taken out of the document and the document read again,
//!    until it reads. A key taken out falls back to its default, so the passes after this one
//!    still run; an array element taken out shifts the later ones, which [`Renumbering`] undoes
//!    so that keys name the file's indices.
//! 3. **Each section's `check()`** ([`Config::problems`], [`AgentConfig::problems`]), which
//!    also reads the certificate, key and token files and checks Kafka and etcd addresses.
//! 4. **The host**: directories the program will write (data, store, WAL, socket files) must be
//!    directories this user can write, or creatable under one.
//!
//! A problem of passes 3 and 4 on a key that pass 2 already reported, or inside it, is left out:
//! it is the default standing in for the refused value, not a second mistake.
//!
//! On success the effective configuration (every default filled in) is printed as TOML that
//! reads back as the same configuration: a file an operator can diff against the one deployed,
//! or deploy. Secrets written inline (an Elasticsearch password) are printed as they are in
//! the file; keys that name secret files print the path only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::agent::config::{AgentConfig, ShipKind};
use crate::config::{Config, SinkKind};
use crate::setting::InvalidSetting;

/// Most schema errors reported from one file: each costs a full deserialization.
const MAX_SCHEMA_PROBLEMS: usize = 200;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the key in the file, when it is written there.
    pub line: Option<usize>,
    /// The key's path, e.g. `listen[1].tls.cert_file`; empty for the whole file.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// The outcome of validating one file.
#[derive(Debug)]
pub struct Validation {
    pub path: PathBuf,
    /// Every problem found, in pass order (syntax, schema, checks, host).
    pub problems: Vec<Problem>,
    /// The configuration in force, defaults filled in, when there is no problem.
    pub effective: Option<String>,
}

impl fmt::Display for Validation {
    /// One line per problem: `FILE:LINE: KEY: MESSAGE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            write!(f, "{}", self.path.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if !p.key.is_empty() {
                write!(f, ": {}", p.key)?;
            }
            writeln!(f, ": {}", p.message)?;
        }
        Ok(())
    }
}

/// Validates a gateway config file (`logtail serve --config PATH`).
pub fn gateway(path: &Path) -> Validation {
    validate(path, |config: &Config| {
        let mut problems = config.problems();
        problems.extend(gateway_host_problems(config));
        problems
    })
}

/// Validates an agent config file (`logtail agent --config PATH`).
pub fn agent(path: &Path) -> Validation {
    validate(path, |config: &AgentConfig| {
        let mut problems = config.problems();
        problems.extend(agent_host_problems(config));
        problems
    })
}

fn validate<T: serde::de::DeserializeOwned + serde::Serialize>(
    path: &Path,
    checks: impl FnOnce(&T) -> Vec<InvalidSetting>,
) -> Validation {
    let (mut problems, config) = match std::fs::read_to_string(path) {
        Ok(text) => problems_of(&text, checks),
        Err(e) => {
            let message = format!("cannot read: {e}");
            let whole = Problem {
                line: None,
                key: String::new(),
                message,
            };
            (vec![whole], None)
        }
    };
    // File order; problems of keys left to their defaults last. The sort is stable: a line's
    // problems stay in pass order.
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    let effective = match config {
        Some(config) if problems.is_empty() => match toml::to_string_pretty(&config) {
            Ok(text) => Some(text),
            Err(e) => {
                // A value TOML cannot hold would be a bug of ours, not of the file: say so
                // rather than print half a configuration.
                problems.push(Problem {
                    line: None,
                    key: String::new(),
                    message: format!("valid, but cannot be printed as TOML (a bug): {e}"),
                });
                None
            }
        },
        _ => None,
    };
    Validation {
        path: path.to_path_buf(),
        problems,
        effective,
    }
}

/// The passes of the module doc over `text`; the configuration when the schema let it be read.
fn problems_of<T: serde::de::DeserializeOwned>(
    text: &str,
    checks: impl FnOnce(&T) -> Vec<InvalidSetting>,
) -> (Vec<Problem>, Option<T>) {
    let whole_file = |span: Option<std::ops::Range<usize>>, message: &str| Problem {
        line: span.map(|s| line_at(text, s.start)),
        key: String::new(),
        message: message.trim_end().to_owned(),
    };
    let (spans, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let problems = syntax
            .iter()
            .map(|e| whole_file(e.span(), e.message()))
            .collect();
        return (problems, None);
    }
    let document = match toml::from_str::<toml::Table>(text) {
        Ok(table) => toml::Value::Table(table),
        Err(e) => return (vec![whole_file(e.span(), e.message())], None),
    };
    let lines = Lines {
        text,
        root: spans.get_ref(),
    };
    let (config, schema, renumbering) = read_schema::<T>(document);
    let mut problems: Vec<Problem> = schema
        .iter()
        .map(|(key, message)| lines.problem(key, message.clone()))
        .collect();
    let Some(config) = config else {
        return (problems, None);
    };
    for e in checks(&config) {
        let key = renumbering.original(&e.key);
        // The default standing in for a refused value is not a second mistake.
        if !schema.iter().any(|(k, _)| related(k, &key)) {
            problems.push(lines.problem(&key, e.message));
        }
    }
    (problems, Some(config))
}

/// Reads `document` into `T`, taking each key serde refuses out and reading again. Returns the
/// configuration (unless a refusal could not be taken out), the refused keys (the file's
/// indices) with their messages, and how array indices moved.
fn read_schema<T: serde::de::DeserializeOwned>(
    mut document: toml::Value,
) -> (Option<T>, Vec<(String, String)>, Renumbering) {
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut renumbering = Renumbering::default();
    for _ in 0..MAX_SCHEMA_PROBLEMS {
        let error = match serde_path_to_error::deserialize::<_, T>(document.clone()) {
            Ok(config) => return (Some(config), problems, renumbering),
            Err(error) => error,
        };
        let mut at = Vec::new();
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => at.push(Step::Index(*index)),
                serde_path_to_error::Segment::Map { key } => at.push(Step::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. } => {}
                serde_path_to_error::Segment::Unknown => break,
            }
        }
        let original = renumbering.original_steps(&at);
        let key = render(&original);
        let message = crate::setting::unmarked(error.inner().message())
            .trim_end()
            .to_owned();
        // A required key taken out makes its table incomplete: that table is taken out too,
        // without a second report.
        if !problems.iter().any(|(k, _)| related(k, &key)) {
            problems.push((key, message));
        }
        if !take_out(&mut document, &at) {
            return (None, problems, renumbering);
        }
        if let Some(Step::Index(_)) = at.last() {
            renumbering.removed(&original);
        }
    }
    (None, problems, renumbering)
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `listen[1].tls.cert_file` from its steps.
fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The steps of a key as the checks write it (`listen[1].tls.cert_file`). A part that is not a
/// plain key (`(pipeline.batch_max_bytes)`) is kept as written: it only stops the line lookup.
fn parse_key(key: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            steps.push(Step::Key(name.to_owned()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            match index.parse() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => steps.push(Step::Key(format!("[{index}]"))),
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    steps
}

/// True when one key is the other or inside it (`listen[0]` and `listen[0].address`).
fn related(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner.strip_prefix(outer).is_some_and(|rest| {
            rest.is_empty() || rest.starts_with('.') || rest.starts_with('[') || outer.is_empty()
        })
    };
    inside(a, b) || inside(b, a)
}

/// Takes the value at `at` out of `document`: a key out of its table, an element out of its
/// array. False when there is nothing to take (the root).
fn take_out(document: &mut toml::Value, at: &[Step]) -> bool {
    let Some((last, parents)) = at.split_last() else {
        return false;
    };
    let mut node = document;
    for step in parents {
        let next = match (step, node) {
            (Step::Key(key), toml::Value::Table(table)) => table.get_mut(key),
            (Step::Index(i), toml::Value::Array(array)) => array.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match (last, node) {
        (Step::Key(key), toml::Value::Table(table)) => table.remove(key).is_some(),
        (Step::Index(i), toml::Value::Array(array)) if *i < array.len() => {
            array.remove(*i);
            true
        }
        _ => false,
    }
}

/// The array elements taken out of the document, so that an index of the reduced document can
/// be told as the file's.
#[derive(Debug, Default)]
struct Renumbering {
    /// For each array (its key path, in the file's indices), the file's indices taken out,
    /// ascending.
    removed: BTreeMap<String, Vec<usize>>,
}

impl Renumbering {
    /// Records that the element at `original` (the file's indices) was taken out.
    fn removed(&mut self, original: &[Step]) {
        if let Some((Step::Index(i), array)) = original.split_last() {
            let list = self.removed.entry(render(array)).or_default();
            list.push(*i);
            list.sort_unstable();
        }
    }

    /// The steps of the reduced document's `at`, with the file's indices.
    fn original_steps(&self, at: &[Step]) -> Vec<Step> {
        let mut out: Vec<Step> = Vec::with_capacity(at.len());
        for step in at {
            let step = match step {
                Step::Index(current) => {
                    let mut index = *current;
                    for &gone in self.removed.get(&render(&out)).into_iter().flatten() {
                        if gone <= index {
                            index += 1;
                        }
                    }
                    Step::Index(index)
                }
                key => key.clone(),
            };
            out.push(step);
        }
        out
    }

    /// A check's key (reduced document's indices) with the file's indices.
    fn original(&self, key: &str) -> String {
        if self.removed.is_empty() {
            return key.to_owned();
        }
        render(&self.original_steps(&parse_key(key)))
    }
}

/// Finds where keys are written in the file.
struct Lines<'a> {
    text: &'a str,
    root: &'a toml::de::DeTable<'a>,
}

impl Lines<'_> {
    fn problem(&self, key: &str, message: String) -> Problem {
        Problem {
            line: self.line_of(&parse_key(key)),
            key: key.to_owned(),
            message,
        }
    }

    /// The line of the deepest part of `steps` written in the file: the key itself, else the
    /// table that would hold it.
    fn line_of(&self, steps: &[Step]) -> Option<usize> {
        let mut table = Some(self.root);
        let mut array: Option<&toml::de::DeArray<'_>> = None;
        let mut found = None;
        for step in steps {
            let value = match step {
                Step::Key(key) => {
                    let (k, v) = table?.iter().find(|(k, _)| k.get_ref() == key)?;
                    found = Some(k.span().start);
                    v
                }
                Step::Index(i) => {
                    let v = array?.get(*i)?;
                    found = Some(v.span().start);
                    v
                }
            };
            table = None;
            array = None;
            match value.get_ref() {
                toml::de::DeValue::Table(t) => table = Some(t),
                toml::de::DeValue::Array(a) => array = Some(a),
                _ => {}
            }
        }
        found.map(|offset| line_at(self.text, offset))
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The gateway's directories: data, the store or the WAL, each Unix socket's.
fn gateway_host_problems(config: &Config) -> Vec<InvalidSetting> {
    let mut dirs: Vec<(String, PathBuf)> = vec![("data_dir".into(), config.data_dir.clone())];
    match config.sink.kind {
        SinkKind::Store if config.sink.store.dir.is_some() => {
            dirs.push(("sink.store.dir".into(), config.store_dir()));
        }
        SinkKind::Kafka if config.sink.kafka.wal.dir.is_some() => {
            dirs.push(("sink.kafka.wal.dir".into(), config.wal_dir()));
        }
        _ => {}
    }
    for (i, listener) in config.listen.iter().enumerate() {
        if let Some(parent) = listener.path.as_deref().and_then(Path::parent) {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            dirs.push((format!("listen[{i}].path"), parent.to_path_buf()));
        }
    }
    dirs.into_iter()
        .filter_map(|(key, dir)| {
            writable_dir(&dir)
                .err()
                .map(|m| InvalidSetting::new(key, m))
        })
        .collect()
}

/// The agent's directories: its state, and the file a `file` shipper appends to.
fn agent_host_problems(config: &AgentConfig) -> Vec<InvalidSetting> {
    let mut problems = Vec::new();
    if let Err(m) = writable_dir(&config.data_dir) {
        problems.push(InvalidSetting::new("data_dir", m));
    }
    if config.ship.kind == ShipKind::File && config.ship.path != Path::new("-") {
        let parent = config.ship.path.parent().unwrap_or(Path::new("."));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Err(m) = writable_dir(parent) {
            problems.push(InvalidSetting::new("ship.path", m));
        }
    }
    problems
}

/// `dir` is a directory this user can write, or does not exist yet and its nearest existing
/// ancestor is one (the program creates it).
fn writable_dir(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(meta) if !meta.is_dir() => {
                return Err(format!("{} is not a directory", at.display()));
            }
            Ok(_) if !can_write(at) => {
                let whose = if at == dir {
                    String::new()
                } else {
                    format!(" (to create {})", dir.display())
                };
                return Err(format!(
                    "{} is not writable by this user (uid {}){whose}",
                    at.display(),
                    unsafe { libc::geteuid() }
                ));
            }
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match at.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                    _ => at = Path::new("."),
                }
            }
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
}

/// What `access(2)` says about writing (and entering) `dir` as this process's user.
fn can_write(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(key: &str) -> Vec<Step> {
        parse_key(key)
    }

    #[test]
    fn keys_parse_and_render_back() {
        for key in ["listen[1].tls.cert_file", "collect[0].tags[2]", "data_dir"] {
            assert_eq!(render(&steps(key)), key);
        }
    }

    #[test]
    fn related_keys_are_a_key_and_what_is_inside_it() {
        assert!(related("listen[0]", "listen[0].address"));
        assert!(related("listen[0].address", "listen[0]"));
        assert!(related("listen", "listen[3].path"));
        assert!(!related("listen[0]", "listen[0]x"));
        assert!(!related("listen[1]", "listen[10].path"));
    }

    #[test]
    fn renumbering_gives_the_files_indices_after_elements_are_taken_out() {
        let mut r = Renumbering::default();
        r.removed(&steps("listen[1]"));
        r.removed(&r.original_steps(&steps("listen[1]")));
        // Elements 1 and 2 of the file are gone: the reduced document's 1 is the file's 3.
        assert_eq!(r.original("listen[0].address"), "listen[0].address");
        assert_eq!(r.original("listen[1].address"), "listen[3].address");
        assert_eq!(r.original("collect[1]"), "collect[1]");
    }

    #[test]
    fn a_missing_directory_is_fine_under_a_writable_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(writable_dir(&dir.path().join("a/b")), Ok(()));
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            writable_dir(&file.join("sub")),
            Err(format!("{} is not a directory", file.display()))
        );
    }
}
