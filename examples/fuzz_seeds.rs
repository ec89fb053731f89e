//! Writes the seed corpora of the fuzz targets (`fuzz/`) into `DIR/<target>/`, built from the
//! test messages (`tests/data/vendor-formats`) and the commented configs with logtail's own
//! encoders, so a seed is valid by construction and the fuzzer starts from real formats.
//! `fuzz/run.sh` runs it; the corpora are not committed.
//!
//! ```text
//! cargo run --example fuzz_seeds -- fuzz/corpus
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use logtail::agent::checkpoint::{self, CheckpointEntry};
use logtail::agent::fingerprint::Fingerprint;
use logtail::agent_protocol::{self as protocol, BatchEncoder, Kind};
use logtail::store::{ReadOptions, StoreBatch, StoreOptions, StoreWriter};
use logtail::wal::{FsyncPolicy, Wal, WalOptions};

/// Queries from the grammar's table (`src/query/mod.rs`), each a seed with a message.
const QUERIES: &[&str] = &[
    "timeout",
    "time* err?r",
    "\"connection reset\"",
    r"/err(or)? \d+/",
    "message:timeout",
    "host:web-01 app:\"postfix/smtpd\"",
    "host:web-* OR host:db-?",
    r"host:/^web-\d+$/",
    "host:*",
    "severity:err",
    "severity:<=warning AND facility:>=16",
    "facility:local0",
    "sd.origin.ip:10.0.0.1",
    "entry:nginx file:/var/log/* topic:security",
    "tags:prod",
    "status:>=500 user:alice",
    "_exists_:procid",
    "host:(web-01 OR db-*)",
    "severity:(<=crit OR debug)",
    "-host:web-01 NOT app:sshd",
    "(a OR b) AND NOT c",
];

fn main() -> Result<()> {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        bail!("usage: fuzz_seeds DIR");
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let messages = test_messages(&root.join("tests/data/vendor-formats"))?;
    let seeds = Seeds { out: &out };

    for (i, m) in messages.iter().enumerate() {
        seeds.write("parse", i, m)?;
    }
    for (i, chunk) in messages.chunks(8).enumerate() {
        // framing: 3 set-up bytes (framing, policy, maximum size), then a stream.
        let mut newline = vec![1, 0, 1];
        let mut counted = vec![2, 0xff, 0];
        let mut auto = vec![0x80, 64, 0];
        for m in chunk {
            newline.extend_from_slice(m);
            newline.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
            counted.extend_from_slice(format!("{} ", m.len()).as_bytes());
            counted.extend_from_slice(m);
            auto.extend_from_slice(format!("{} ", m.len()).as_bytes());
            auto.extend_from_slice(m);
            auto.extend_from_slice(m);
            auto.push(b'\n');
        }
        seeds.write("framing", 3 * i, &newline)?;
        seeds.write("framing", 3 * i + 1, &counted)?;
        seeds.write("framing", 3 * i + 2, &auto)?;

        // agent_protocol: HELLO (with and without a token), BATCH, ACK.
        let mut stream = Vec::new();
        protocol::agent_hello_with_token("web-1", (i % 2 == 0).then_some("s3cret"), &mut stream);
        let mut batch = BatchEncoder::default();
        for m in chunk {
            batch.message(|out| out.extend_from_slice(m));
        }
        batch.finish(i as u64 + 1, &mut stream);
        protocol::ack(i as u64 + 1, &mut stream);
        protocol::write_frame(&mut stream, Kind::Error, |b| b.extend_from_slice(b"bad"));
        seeds.write("agent_protocol", i, &stream)?;
    }
    for (i, query) in QUERIES.iter().enumerate() {
        let message = &messages[i % messages.len()];
        let mut seed = query.as_bytes().to_vec();
        seed.push(b'\n');
        seed.extend_from_slice(message);
        seeds.write("query", i, &seed)?;
    }
    for (i, name) in ["logtail.toml", "agent.toml"].iter().enumerate() {
        let text = std::fs::read(root.join("config").join(name)).context(*name)?;
        seeds.write("config", i, &text)?;
    }
    seeds.write(
        "config",
        2,
        b"[[listen]]\ntype = \"udp\"\naddress = \"127.0.0.1:5514\"\n",
    )?;

    let entries: Vec<CheckpointEntry> = (0..3)
        .map(|i| CheckpointEntry {
            dev: 2049,
            ino: 1000 + i,
            fingerprint: Fingerprint {
                len: 256,
                hash: 0xcbf2_9ce4_8422_2325 ^ i,
            },
            offset: 4096 * i,
            path: PathBuf::from(format!("/var/log/app {i}%.log")),
        })
        .collect();
    for n in 0..=entries.len() {
        let mut file = Vec::new();
        checkpoint::encode(&entries[..n], &mut file);
        seeds.write("checkpoint", n, &file)?;
    }

    store_seeds(&seeds, &messages)?;
    wal_seeds(&seeds, &messages)?;
    Ok(())
}

struct Seeds<'a> {
    out: &'a Path,
}

impl Seeds<'_> {
    fn write(&self, target: &str, index: usize, bytes: &[u8]) -> Result<()> {
        let dir = self.out.join(target);
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        let path = dir.join(format!("seed-{index:03}"));
        std::fs::write(&path, bytes).with_context(|| path.display().to_string())
    }
}

/// The messages of the vendor-format test files: every line that is not a comment (`#`) or
/// an expected record (`=`).
fn test_messages(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut messages = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .collect::<Result<_, _>>()?;
    files.sort_by_key(|e| e.file_name());
    for file in files {
        if file.path().extension().is_none_or(|e| e != "txt") {
            continue;
        }
        let text = std::fs::read(file.path())?;
        for line in text.split(|&b| b == b'\n') {
            if !line.is_empty() && !line.starts_with(b"#") && !line.starts_with(b"=") {
                messages.push(line.to_vec());
            }
        }
    }
    if messages.is_empty() {
        bail!("no test messages in {}", dir.display());
    }
    Ok(messages)
}

struct Lines<'a>(&'a [Vec<u8>]);

impl StoreBatch for Lines<'_> {
    fn shard(&self) -> u16 {
        1
    }
    fn records(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, m)| (1_795_229_627_000_000 + i as i64, m.as_slice()))
    }
}

/// Store segments of two and of four blocks, and one cut inside its last block.
fn store_seeds(seeds: &Seeds, messages: &[Vec<u8>]) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    for (i, blocks) in [2usize, 4].iter().enumerate() {
        let dir = scratch.path().join(format!("store{i}"));
        let mut writer = StoreWriter::open(StoreOptions {
            dir: dir.clone(),
            ..StoreOptions::default()
        })?;
        for chunk in messages.chunks(3).take(*blocks) {
            writer.append(&Lines(chunk))?;
        }
        drop(writer);
        let segment = std::fs::read(dir.join("00000000000000000001.seg"))?;
        seeds.write("store_recovery", 2 * i, &segment)?;
        seeds.write("store_recovery", 2 * i + 1, &segment[..segment.len() - 7])?;
        // The writer's own segment must read back: a seed that does not would mislead.
        let mut out = Vec::new();
        logtail::store::read(
            &dir,
            &ReadOptions::default(),
            &mut out,
            &AtomicBool::new(false),
        )?;
        if out.is_empty() {
            bail!("seed store {} reads back empty", dir.display());
        }
    }
    Ok(())
}

/// A WAL segment of four batches, with and without its LEDGER (one batch acknowledged).
fn wal_seeds(seeds: &Seeds, messages: &[Vec<u8>]) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("wal");
    let (mut wal, _) = Wal::open(WalOptions {
        dir: dir.clone(),
        fsync: FsyncPolicy::Never,
        ..WalOptions::default()
    })?;
    for (shard, chunk) in messages.chunks(4).take(4).enumerate() {
        wal.append(shard as u16, chunk.len() as u32, &chunk.concat())?;
    }
    wal.acknowledge(1);
    wal.flush()?;
    drop(wal);
    let segment = std::fs::read(dir.join("00000000000000000001.seg"))?;
    let ledger = std::fs::read(dir.join("LEDGER"))?;
    if ledger.len() != 128 {
        bail!(
            "LEDGER is {} bytes, the fuzz target expects 128",
            ledger.len()
        );
    }
    let mut without = vec![0];
    without.extend_from_slice(&segment);
    seeds.write("wal_recovery", 0, &without)?;
    let mut with = vec![1];
    with.extend_from_slice(&ledger);
    with.extend_from_slice(&segment);
    seeds.write("wal_recovery", 1, &with)?;
    Ok(())
}
