//! The `hostile` scenario (issue 11): a good TCP sender at a steady rate while each attack of
//! the issue runs against the same gateway, then the checks that matter: every good line
//! stored, the gateway's memory bounded by its budget, every attack refused or closed and
//! counted by reason, and a shutdown that exits 0.
//!
//! The attacks, all from 127.0.0.1, all at once:
//! - **huge headers**: agent connections that send a HELLO and a BATCH header announcing
//!   18,454,976 bytes, then one byte of it, and hold the connection;
//! - **amplification**: every second, a valid 64 KiB lz4 batch of 4,194,304 empty messages;
//! - **slowloris**: connections that send one byte of a line every --trickle-every,
//!   reconnecting when closed;
//! - **partial lines**: connections holding a partial 60 KiB line;
//! - **garbage**: one connection sending random bytes (--garbage-bytes in all) to a second TCP
//!   listener (`flood`, with `store_quota_bytes` = --flood-quota);
//! - **store flood**: one connection to `flood` sending lines of random hex as fast as it can;
//! - **fast sender**: one connection from 127.0.0.1 to the good sender's TCP listener sending
//!   valid lines as fast as it can, against the listener's `max_bytes_per_sec_per_ip`
//!   (--per-ip-bytes): paced by TCP backpressure, none of its lines dropped;
//! - **UDP flood**: datagrams as fast as one thread sends them, against the UDP listener's
//!   `max_lines_per_sec_per_ip` (--udp-lines-per-ip).
//!
//! The store is kept to --store-bytes, so that a flood let through would make size retention
//! delete the good sender's lines. The good sender connects from 127.0.0.2 (its own address
//! for the per-IP rates); its lines are `good-N`; nothing an attacker sends contains `good-`,
//! so the store is read back and its `good-` lines counted exactly.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use logtail::agent_protocol::{self as protocol, BatchEncoder, Kind};

use crate::gateway::{Gateway, GatewayOptions, Product, Sink};

/// The `hostile` scenario's options.
#[derive(clap::Args)]
pub struct HostileArgs {
    /// How long the good sender sends.
    #[arg(long, default_value = "30s", value_parser = logtail::time::parse_duration)]
    pub duration: Duration,
    /// Good lines per second.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Agent connections sending a HELLO and an 18 MiB BATCH header.
    #[arg(long, default_value_t = 200)]
    pub huge_headers: usize,
    /// Connections sending one byte every --trickle-every.
    #[arg(long, default_value_t = 500)]
    pub slowloris: usize,
    #[arg(long, default_value = "2s", value_parser = logtail::time::parse_duration)]
    pub trickle_every: Duration,
    /// Connections holding a partial 60 KiB line.
    #[arg(long, default_value_t = 2000)]
    pub partial_lines: usize,
    /// Random bytes one connection sends.
    #[arg(long, default_value_t = 200 << 20)]
    pub garbage_bytes: u64,
    /// The gateway's `[ingest.limits] memory_budget_bytes`.
    #[arg(long, default_value_t = 64 << 20)]
    pub memory_budget: u64,
    /// The gateway's `[ingest.limits] frame_timeout_secs`.
    #[arg(long, default_value_t = 5)]
    pub frame_timeout_secs: u64,
    /// The store's `max_total_bytes`.
    #[arg(long, default_value_t = 512 << 20)]
    pub store_bytes: u64,
    /// The `flood` listener's `store_quota_bytes`.
    #[arg(long, default_value_t = 32 << 20)]
    pub flood_quota: u64,
    /// The TCP listener's `max_bytes_per_sec_per_ip` (the good sender sends about 1 MB/s).
    #[arg(long, default_value_t = 2_000_000)]
    pub per_ip_bytes: u64,
    /// The UDP listener's `max_lines_per_sec_per_ip`.
    #[arg(long, default_value_t = 1000)]
    pub udp_lines_per_ip: u64,
    /// Fail when the gateway's peak RSS is above this.
    #[arg(long, default_value_t = 512)]
    pub max_rss_mib: u64,
    /// The logtail binary [default: `logtail` beside this program].
    #[arg(long)]
    pub gateway_bin: Option<std::path::PathBuf>,
    /// Work directory [default: a new one under $TMPDIR, removed afterwards].
    #[arg(long)]
    pub work_dir: Option<std::path::PathBuf>,
}

/// Runs the scenario with `gateway_binary` and prints its figures; true when every check
/// passed (every good line stored, a clean shutdown, RSS under the limit).
///
/// # Errors
/// When the gateway cannot be started or its store read.
pub fn run_and_print(
    args: &HostileArgs,
    gateway_binary: std::path::PathBuf,
    date: &str,
    command: &str,
) -> anyhow::Result<bool> {
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("logtail-hostile-{}", std::process::id()))
    });
    let outcome = run(args, &gateway_binary, &work_dir);
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    let outcome = outcome?;
    println!("hostile ({date}): {command}");
    println!(
        "good lines: {} sent, {} stored; gateway peak RSS {} MiB; peak budget held {} bytes of {}",
        outcome.good_sent,
        outcome.good_stored,
        outcome.peak_rss_kib / 1024,
        outcome.peak_budget_bytes,
        args.memory_budget
    );
    println!(
        "amplification batches refused: {}; slowloris connections made: {}; garbage sent: {} bytes; shutdown exit 0: {}",
        outcome.amplification_refused,
        outcome.slowloris_connections,
        outcome.garbage_sent,
        outcome.exit_ok
    );
    println!(
        "store flood: {} lines sent, flood listener holds {} bytes of its {}-byte quota at the end; UDP flood: {} datagrams sent; fast sender: {} lines sent",
        outcome.flood_sent,
        outcome.flood_held_bytes,
        args.flood_quota,
        outcome.udp_sent,
        outcome.fast_sent
    );
    for counter in &outcome.counters {
        println!("  {counter}");
    }
    Ok(outcome.good_stored == outcome.good_sent
        && outcome.exit_ok
        && outcome.peak_rss_kib <= args.max_rss_mib * 1024)
}

/// What came of it.
#[derive(Debug, Default)]
struct HostileOutcome {
    good_sent: u64,
    good_stored: u64,
    peak_rss_kib: u64,
    peak_budget_bytes: i64,
    amplification_refused: u64,
    slowloris_connections: u64,
    garbage_sent: u64,
    flood_sent: u64,
    flood_held_bytes: i64,
    udp_sent: u64,
    fast_sent: u64,
    exit_ok: bool,
    /// The gateway's closing counters, `name{labels} value`.
    counters: Vec<String>,
}

/// Runs the scenario in `work_dir`.
fn run(
    s: &HostileArgs,
    gateway_binary: &std::path::Path,
    work_dir: &std::path::Path,
) -> anyhow::Result<HostileOutcome> {
    std::fs::create_dir_all(work_dir)?;
    let mut gateway = Gateway::prepare(
        work_dir,
        GatewayOptions {
            product: Product::Logtail,
            sink: Sink::Local,
            binary: gateway_binary,
            kafka: None,
            elasticsearch: None,
            threads: 0,
        },
    )?;
    let flood = SocketAddr::from((
        [127, 0, 0, 1],
        test_support::net::free_port().context("a port for the flood listener")?,
    ));
    let (tcp, udp) = (gateway.tcp, gateway.udp);
    gateway.replace_in_config(
        &format!("type = \"tcp\"\naddress = \"{tcp}\"\n"),
        &format!(
            "type = \"tcp\"\naddress = \"{tcp}\"\nmax_bytes_per_sec_per_ip = {}\n",
            s.per_ip_bytes
        ),
    )?;
    gateway.replace_in_config(
        &format!("type = \"udp\"\naddress = \"{udp}\"\n"),
        &format!(
            "type = \"udp\"\naddress = \"{udp}\"\nmax_lines_per_sec_per_ip = {}\n",
            s.udp_lines_per_ip
        ),
    )?;
    gateway.replace_in_config(
        "max_total_bytes = 50000000000\n",
        &format!("max_total_bytes = {}\n", s.store_bytes),
    )?;
    gateway.append_config(&format!(
        "[ingest.limits]\nmemory_budget_bytes = {}\nframe_timeout_secs = {}\n\
         [[listen]]\nname = \"flood\"\ntype = \"tcp\"\naddress = \"{flood}\"\nstore_quota_bytes = {}\n",
        s.memory_budget, s.frame_timeout_secs, s.flood_quota
    ))?;
    gateway.start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut outcome = HostileOutcome::default();
    let counts = Arc::new(Counts::default());
    let agent = gateway.agent;

    let mut threads = Vec::new();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .context("starting an attacker thread")
    };
    {
        let (stop, n) = (stop.clone(), s.huge_headers);
        threads.push(spawn(
            "huge-headers",
            Box::new(move || huge_headers(agent, n, &stop)),
        )?);
    }
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        threads.push(spawn(
            "amplify",
            Box::new(move || amplify(agent, &counts, &stop)),
        )?);
    }
    {
        let (stop, counts, n, every) = (stop.clone(), counts.clone(), s.slowloris, s.trickle_every);
        threads.push(spawn(
            "slowloris",
            Box::new(move || slowloris(tcp, n, every, &counts, &stop)),
        )?);
    }
    {
        let (stop, n) = (stop.clone(), s.partial_lines);
        threads.push(spawn(
            "partial-lines",
            Box::new(move || partial_lines(tcp, n, &stop)),
        )?);
    }
    {
        let (stop, counts, bytes) = (stop.clone(), counts.clone(), s.garbage_bytes);
        threads.push(spawn(
            "garbage",
            Box::new(move || garbage(flood, bytes, &counts, &stop)),
        )?);
    }
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        threads.push(spawn(
            "fast-sender",
            Box::new(move || fast_sender(tcp, &counts, &stop)),
        )?);
    }

    {
        let (stop, counts) = (stop.clone(), counts.clone());
        threads.push(spawn(
            "store-flood",
            Box::new(move || store_flood(flood, &counts, &stop)),
        )?);
    }
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        threads.push(spawn(
            "udp-flood",
            Box::new(move || udp_flood(udp, &counts, &stop)),
        )?);
    }

    // The good sender, paced, while everything above runs.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut good = connect_from([127, 0, 0, 2], tcp).context("the good sender connects")?;
    let mut line = Vec::with_capacity(128);
    let mut sent = 0u64;
    while started.elapsed() < s.duration {
        let due = (started.elapsed().as_secs_f64() * s.rate as f64) as u64;
        while sent < due {
            line.clear();
            let _ = writeln!(line, "<13>Nov 30 10:00:00 good app: good-{sent}");
            good.write_all(&line)
                .context("the good sender was cut off")?;
            sent += 1;
        }
        gateway.sample();
        if let Some(text) = gateway.scrape() {
            outcome.peak_budget_bytes = outcome
                .peak_budget_bytes
                .max(metric(&text, "logtail_source_memory_bytes ").unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(good);
    outcome.good_sent = sent;
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    // Let the last good lines reach the store, then stop cleanly.
    std::thread::sleep(Duration::from_secs(2));
    gateway.sample();
    if let Some(text) = gateway.scrape() {
        outcome.counters = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                [
                    "connections_closed_total",
                    "connections_rejected_total",
                    "source_memory",
                    "dropped_total",
                    "framing_errors_total",
                    "sink_records_total",
                    "store_bytes",
                    "throttled_total",
                    "received_lines_total",
                ]
                .iter()
                .any(|name| l.contains(name))
            })
            .filter(|l| !l.ends_with(" 0"))
            .map(str::to_owned)
            .collect();
        outcome.flood_held_bytes = metric(
            &text,
            "logtail_store_bytes{listener=\"flood\",transport=\"tcp\"} ",
        )
        .unwrap_or(0);
    }
    let ended = gateway.stop(libc::SIGTERM);
    outcome.exit_ok = ended.is_some_and(|e| e.status.success());
    outcome.peak_rss_kib = gateway.cost.peak_rss_kib();
    outcome.amplification_refused = counts.amplification_refused.load(Ordering::Relaxed);
    outcome.slowloris_connections = counts.slowloris_connections.load(Ordering::Relaxed);
    outcome.garbage_sent = counts.garbage_sent.load(Ordering::Relaxed);
    outcome.flood_sent = counts.flood_sent.load(Ordering::Relaxed);
    outcome.udp_sent = counts.udp_sent.load(Ordering::Relaxed);
    outcome.fast_sent = counts.fast_sent.load(Ordering::Relaxed);
    outcome.good_stored = count_good(&work_dir.join("data/store"))?;
    Ok(outcome)
}

#[derive(Default)]
struct Counts {
    amplification_refused: AtomicU64,
    slowloris_connections: AtomicU64,
    garbage_sent: AtomicU64,
    flood_sent: AtomicU64,
    udp_sent: AtomicU64,
    fast_sent: AtomicU64,
}

/// A TCP connection from `local` (another loopback address) to `to`.
fn connect_from(local: [u8; 4], to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((local, 0)).into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// Lines of random hex, as fast as the connection takes them.
fn store_flood(flood: SocketAddr, counts: &Counts, stop: &AtomicBool) {
    let Ok(mut stream) = TcpStream::connect(flood) else {
        return;
    };
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut chunk = Vec::with_capacity(64 * 1024);
    while !stop.load(Ordering::Relaxed) {
        chunk.clear();
        for _ in 0..256 {
            chunk.extend_from_slice(b"<13>Nov 30 10:00:00 flood app: ");
            for _ in 0..24 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let _ = write!(chunk, "{:08x}", state as u32);
            }
            chunk.push(b'\n');
        }
        if stream.write_all(&chunk).is_err() {
            break;
        }
        counts.flood_sent.fetch_add(256, Ordering::Relaxed);
    }
}

/// Valid lines from 127.0.0.1, as fast as the gateway takes them.
fn fast_sender(tcp: SocketAddr, counts: &Counts, stop: &AtomicBool) {
    let Ok(mut stream) = connect_from([127, 0, 0, 1], tcp) else {
        return;
    };
    let mut chunk = Vec::with_capacity(64 * 1024);
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        chunk.clear();
        for _ in 0..1000 {
            let _ = writeln!(chunk, "<13>Nov 30 10:00:00 fast app: fast-{sent}");
            sent += 1;
        }
        if stream.write_all(&chunk).is_err() {
            break;
        }
        counts.fast_sent.store(sent, Ordering::Relaxed);
    }
}

/// Datagrams as fast as one thread sends them.
fn udp_flood(udp: SocketAddr, counts: &Counts, stop: &AtomicBool) {
    let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return;
    };
    let mut sent = 0u64;
    let mut line = Vec::with_capacity(128);
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            line.clear();
            let _ = write!(line, "<13>Nov 30 10:00:00 udpflood app: datagram {sent}");
            if socket.send_to(&line, udp).is_ok() {
                sent += 1;
            }
        }
        counts.udp_sent.store(sent, Ordering::Relaxed);
    }
}

/// The value of the first sample that starts with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

fn agent_hello(agent: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(agent).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut hello = Vec::new();
    protocol::agent_hello("attacker", &mut hello);
    stream.write_all(&hello).ok()?;
    let mut body = Vec::new();
    (protocol::read_frame(&mut stream, &mut body).ok()? == Kind::Hello).then_some(stream)
}

fn huge_headers(agent: SocketAddr, n: usize, stop: &AtomicBool) {
    let mut header = 18_454_977u32.to_be_bytes().to_vec();
    header.extend_from_slice(&[Kind::Batch as u8, 0]);
    let mut held = Vec::new();
    for _ in 0..n {
        if let Some(mut stream) = agent_hello(agent) {
            let _ = stream.write_all(&header);
            held.push(stream);
        }
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn amplify(agent: SocketAddr, counts: &Counts, stop: &AtomicBool) {
    let mut encoder = BatchEncoder::default();
    for _ in 0..4_194_304 {
        encoder.message(|_| {});
    }
    let mut frame = Vec::new();
    encoder.finish(1, &mut frame);
    while !stop.load(Ordering::Relaxed) {
        if let Some(mut stream) = agent_hello(agent) {
            let mut body = Vec::new();
            if stream.write_all(&frame).is_ok()
                && protocol::read_frame(&mut stream, &mut body).ok() == Some(Kind::Error)
            {
                counts.amplification_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn slowloris(tcp: SocketAddr, n: usize, every: Duration, counts: &Counts, stop: &AtomicBool) {
    let mut streams: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    while !stop.load(Ordering::Relaxed) {
        for slot in &mut streams {
            if slot.is_none() {
                *slot = TcpStream::connect(tcp).ok();
                counts.slowloris_connections.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(stream) = slot
                && stream.write_all(b"<").is_err()
            {
                *slot = None;
            }
        }
        let until = Instant::now() + every;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn partial_lines(tcp: SocketAddr, n: usize, stop: &AtomicBool) {
    let mut line = b"<13>Nov 30 10:00:00 h app: ".to_vec();
    line.resize(60 * 1024, b'x');
    let mut held = Vec::new();
    for _ in 0..n {
        if let Ok(mut stream) = TcpStream::connect(tcp) {
            let _ = stream.write_all(&line);
            held.push(stream);
        }
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn garbage(tcp: SocketAddr, bytes: u64, counts: &Counts, stop: &AtomicBool) {
    let Ok(mut stream) = TcpStream::connect(tcp) else {
        return;
    };
    // xorshift: random enough to never contain "good-" in practice, and cheap.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < bytes && !stop.load(Ordering::Relaxed) {
        for byte in chunk.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = (state as u8) | 0x80;
        }
        if stream.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len() as u64;
        counts.garbage_sent.store(sent, Ordering::Relaxed);
    }
}

/// Counts the stored records whose message is a good sender's line.
fn count_good(store: &std::path::Path) -> anyhow::Result<u64> {
    struct Counter {
        partial: Vec<u8>,
        good: u64,
    }
    impl Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.partial.extend_from_slice(bytes);
            let mut start = 0;
            while let Some(lf) = memchr::memchr(b'\n', &self.partial[start..]) {
                let line = &self.partial[start..start + lf];
                if memchr::memmem::find(line, b"\"good-").is_some() {
                    self.good += 1;
                }
                start += lf + 1;
            }
            self.partial.drain(..start);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter {
        partial: Vec::new(),
        good: 0,
    };
    let options = logtail::store::ReadOptions {
        since_us: None,
        grep: None,
        follow: false,
    };
    logtail::store::read(store, &options, &mut counter, &AtomicBool::new(false))
        .with_context(|| format!("reading the store in {}", store.display()))?;
    Ok(counter.good)
}
