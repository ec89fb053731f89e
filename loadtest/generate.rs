//! The traffic: syslog lines that carry a [`Marker`], and the sender threads that put them on
//! sockets at a fixed rate or flat out.
//!
//! Lines come from the benches' corpus (`test_support::corpus`: about half RFC 5424, a third of those
//! with STRUCTURED-DATA, 40% RFC 3164 with and without hostname and `[pid]`, 10% Cisco and ISO
//! variants; 16 hosts, 16 apps, every facility and severity), or from a file to replay. Each
//! message is a line of that pool, a space, the marker, and padding up to a size drawn from a
//! [`SizeDistribution`]; the marker sits in MSG, so no parser moves it.
//!
//! A sender is one connection (TCP, Unix stream) or one socket (UDP, Unix datagram). It works
//! in ticks: every tick it sends the messages its schedule says are due, in one `write` for
//! streams and one `send` each for datagrams, all stamped with the tick's wall-clock time.
//! A sender that falls behind (backpressure) catches up in batches of at most
//! [`MAX_BATCH`] messages, so its timestamps stay within one write of the truth, and its
//! achieved rate shows how far behind it fell.
//!
//! A stream sender whose connection breaks (the gateway restarted) reconnects every 20 ms and
//! sends the failed write again whole: lines of it that did reach the gateway arrive twice and
//! are counted as duplicates; lines the kernel had accepted into a socket that was then reset
//! are lost, which is what plain TCP syslog does and what the report shows.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::marker::Marker;
use test_support::corpus::{self, SplitMix64};

/// The most messages a sender puts in one write.
pub const MAX_BATCH: u64 = 256;

/// How a sender reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    Udp,
    Tcp,
    UnixStream,
    UnixDatagram,
    /// Lines appended to a file per sender, tailed by a `logtail agent` that the harness
    /// starts and that ships them to the gateway's agent listener (acknowledged).
    Agent,
}

impl Transport {
    /// True when nothing may be lost on the way (no datagrams).
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Transport::Tcp | Transport::UnixStream | Transport::Agent
        )
    }
}

/// How stream messages are delimited (RFC 6587).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// `MSG\n`
    Newline,
    /// `LEN MSG`
    OctetCounting,
}

/// Where the senders send to.
#[derive(Debug, Clone)]
pub enum Destination {
    Inet(SocketAddr),
    Unix(PathBuf),
    /// A directory where each sender appends to `sender-ID.log`.
    Files(PathBuf),
}

/// Sizes of whole messages (before framing), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeDistribution {
    /// 70% a corpus line and the marker alone (~230–290 bytes), 20% padded to 300 B–1 KiB,
    /// 8% to 1–4 KiB, 2% to 4–16 KiB: a fleet's mix of short daemon lines and the odd stack
    /// trace or JSON blob. Mean about 700 bytes.
    Realistic,
    /// Every message padded to this size (never shorter than its line and marker).
    Fixed(usize),
}

impl std::str::FromStr for SizeDistribution {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "realistic" {
            return Ok(SizeDistribution::Realistic);
        }
        match text.parse::<usize>() {
            Ok(n) if (64..=60_000).contains(&n) => Ok(SizeDistribution::Fixed(n)),
            _ => Err(format!(
                "{text:?}: give `realistic` or a size in bytes from 64 to 60000"
            )),
        }
    }
}

impl SizeDistribution {
    /// The target size of the next message.
    fn draw(self, rng: &mut SplitMix64) -> usize {
        match self {
            SizeDistribution::Fixed(n) => n,
            SizeDistribution::Realistic => {
                let roll = rng.next_u64() % 100;
                let (low, high): (usize, usize) = match roll {
                    0..70 => return 0,
                    70..90 => (300, 1024),
                    90..98 => (1024, 4096),
                    _ => (4096, 16384),
                };
                low + (rng.next_u64() % (high - low) as u64) as usize
            }
        }
    }
}

/// The lines to send and how big to make them. Shared, read-only, by every sender.
pub struct Workload {
    lines: Vec<Vec<u8>>,
    sizes: SizeDistribution,
    /// ASCII words to cut padding from.
    padding: Vec<u8>,
}

impl Workload {
    /// The benches' realistic mix: 4096 lines drawn with `seed`.
    pub fn realistic(sizes: SizeDistribution, seed: u64) -> Workload {
        Workload::from_lines(corpus::realistic_mix(4096, seed), sizes)
    }

    /// Replays the lines of `path` (empty lines skipped), in order, round robin per sender.
    pub fn replay(path: &Path, sizes: SizeDistribution) -> anyhow::Result<Workload> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading the replay file {}", path.display()))?;
        let lines: Vec<Vec<u8>> = text
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if lines.is_empty() {
            bail!(
                "the replay file {} has no lines: give a file of syslog lines, one per line",
                path.display()
            );
        }
        Ok(Workload::from_lines(lines, sizes))
    }

    fn from_lines(lines: Vec<Vec<u8>>, sizes: SizeDistribution) -> Workload {
        let words = [
            "lorem",
            "ipsum",
            "dolor",
            "sit",
            "amet",
            "request",
            "id=42",
            "status=200",
            "user",
            "bytes=5120",
            "path=/api/v1/items",
            "upstream",
            "timeout",
            "retrying",
            "\"quoted\"",
        ];
        let mut rng = SplitMix64(0x9ad);
        let mut padding = Vec::with_capacity(70_000);
        while padding.len() < 64 * 1024 {
            padding.extend_from_slice(
                words[(rng.next_u64() % words.len() as u64) as usize].as_bytes(),
            );
            padding.push(b' ');
        }
        Workload {
            lines,
            sizes,
            padding,
        }
    }

    /// Appends message `index` of a sender (no framing): line, space, marker, padding.
    pub fn message(&self, index: u64, rng: &mut SplitMix64, marker: &Marker, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.lines[(index % self.lines.len() as u64) as usize]);
        out.push(b' ');
        marker.write(out);
        let target = self.sizes.draw(rng);
        let written = out.len() - start;
        if target > written + 1 {
            let len = (target - written - 1).min(self.padding.len());
            let from = (rng.next_u64() % (self.padding.len() - len + 1) as u64) as usize;
            out.push(b' ');
            out.extend_from_slice(&self.padding[from..from + len]);
        }
    }
}

/// Wall-clock microseconds since the Unix epoch: the clock of [`Marker::sent_us`].
pub fn now_us() -> u64 {
    u64::try_from(logtail::time::now_unix_micros()).unwrap_or(0)
}

/// What one sender did, read live by the progress line and the per-second timeline.
#[derive(Debug, Default)]
pub struct SenderStats {
    /// Messages the socket took (a stream's `write` or a datagram's `send` succeeded).
    pub sent: AtomicU64,
    /// Datagrams the socket refused (`send` failed): not sent, so never counted as lost.
    pub send_errors: AtomicU64,
    /// Stream reconnections after a broken connection.
    pub reconnects: AtomicU64,
    /// Messages written again after a broken connection.
    pub resent: AtomicU64,
    /// Connection attempts that failed.
    pub connect_failures: AtomicU64,
    /// Sequence numbers `[from, to)` written in the last [`AT_RISK`] before a stream
    /// connection broke: bytes the kernel took that the gateway may never have read.
    pub at_risk: Mutex<Vec<(u64, u64)>>,
}

/// How long before a connection broke its writes count as at risk. Plain TCP syslog has no
/// acknowledgements: a write succeeds once the local kernel has the bytes, and whatever the
/// gateway had not read when it closed the connection is reset with it. On loopback that is
/// the last few milliseconds of writes; 100 ms is a generous bound.
pub const AT_RISK: Duration = Duration::from_millis(100);

/// When a sender's messages are due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Evenly, this many per second.
    Rate(f64),
    /// As fast as the socket takes them.
    FlatOut,
    /// `per_burst` messages at once (as fast as the socket takes them) at the start of every
    /// period `every`.
    Bursts { per_burst: u64, every: Duration },
}

impl Schedule {
    /// How many messages should have been sent `elapsed` after the start, given `sent` were.
    pub fn due(&self, elapsed: Duration, sent: u64) -> u64 {
        match *self {
            Schedule::Rate(rate) => (elapsed.as_secs_f64() * rate) as u64,
            Schedule::FlatOut => sent + MAX_BATCH,
            Schedule::Bursts { per_burst, every } => {
                let period = (elapsed.as_secs_f64() / every.as_secs_f64().max(1e-6)) as u64;
                (period + 1) * per_burst
            }
        }
    }

    /// How long to sleep when nothing is due: until the next message, at most 1 ms.
    fn idle_wait(&self, elapsed: Duration, sent: u64) -> Duration {
        let until = match *self {
            Schedule::Rate(rate) => (sent + 1) as f64 / rate - elapsed.as_secs_f64(),
            Schedule::FlatOut => 0.0,
            Schedule::Bursts { every, .. } => {
                let e = every.as_secs_f64().max(1e-6);
                e - elapsed.as_secs_f64() % e
            }
        };
        Duration::from_secs_f64(until.clamp(0.000_05, 0.001))
    }
}

/// One sender's orders.
#[derive(Debug, Clone)]
pub struct SenderPlan {
    pub run: u32,
    pub id: u32,
    pub destination: Destination,
    pub transport: Transport,
    pub framing: Framing,
    pub schedule: Schedule,
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Stop at this time.
    pub until: Option<Instant>,
}

/// A socket of any transport.
enum Socket {
    Tcp(TcpStream),
    UnixStream(UnixStream),
    Udp(UdpSocket),
    UnixDatagram(UnixDatagram),
    File(std::fs::File),
}

impl Socket {
    fn connect(destination: &Destination, transport: Transport, sender: u32) -> io::Result<Socket> {
        match (destination, transport) {
            (Destination::Files(dir), Transport::Agent) => Ok(Socket::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("sender-{sender}.log")))?,
            )),
            (Destination::Inet(addr), Transport::Tcp) => {
                let stream = TcpStream::connect(addr)?;
                stream.set_nodelay(true)?;
                Ok(Socket::Tcp(stream))
            }
            (Destination::Inet(addr), Transport::Udp) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal address")
                } else {
                    "[::]:0".parse().expect("literal address")
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                Ok(Socket::Udp(socket))
            }
            (Destination::Unix(path), Transport::UnixStream) => {
                Ok(Socket::UnixStream(UnixStream::connect(path)?))
            }
            (Destination::Unix(path), Transport::UnixDatagram) => {
                let socket = UnixDatagram::unbound()?;
                socket.connect(path)?;
                Ok(Socket::UnixDatagram(socket))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{transport:?} cannot reach {destination:?}"),
            )),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.write_all(bytes),
            Socket::UnixStream(s) => s.write_all(bytes),
            Socket::File(f) => f.write_all(bytes),
            Socket::Udp(_) | Socket::UnixDatagram(_) => unreachable!("datagram sockets send"),
        }
    }

    fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Udp(s) => s.send(datagram),
            Socket::UnixDatagram(s) => s.send(datagram),
            Socket::Tcp(_) | Socket::UnixStream(_) | Socket::File(_) => {
                unreachable!("streams write")
            }
        }
    }
}

/// Messages of one tick: the bytes to write, and where each message ends in them.
struct Tick {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    scratch: Vec<u8>,
}

impl Tick {
    fn add(&mut self, workload: &Workload, index: u64, rng: &mut SplitMix64, marker: &Marker) {
        self.scratch.clear();
        workload.message(index, rng, marker, &mut self.scratch);
        self.bytes.extend_from_slice(&self.scratch);
        self.ends.push(self.bytes.len());
    }

    fn add_framed(
        &mut self,
        framing: Framing,
        workload: &Workload,
        index: u64,
        rng: &mut SplitMix64,
        marker: &Marker,
    ) {
        match framing {
            Framing::Newline => {
                workload.message(index, rng, marker, &mut self.bytes);
                self.bytes.push(b'\n');
            }
            Framing::OctetCounting => {
                self.scratch.clear();
                workload.message(index, rng, marker, &mut self.scratch);
                let _ = write!(self.bytes, "{} ", self.scratch.len());
                self.bytes.extend_from_slice(&self.scratch);
            }
        }
        self.ends.push(self.bytes.len());
    }
}

/// Starts a sender thread. It stops when its plan says so or when `stop` is set.
pub fn spawn_sender(
    plan: SenderPlan,
    workload: Arc<Workload>,
    stats: Arc<SenderStats>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("sender-{}", plan.id))
        .spawn(move || run_sender(&plan, &workload, &stats, &stop))
        .expect("spawning a sender thread")
}

fn run_sender(plan: &SenderPlan, workload: &Workload, stats: &SenderStats, stop: &AtomicBool) {
    let mut rng = SplitMix64(0x5eed ^ u64::from(plan.id).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut socket = None;
    let mut tick = Tick {
        bytes: Vec::with_capacity(256 * 1024),
        ends: Vec::with_capacity(MAX_BATCH as usize),
        scratch: Vec::with_capacity(64 * 1024),
    };
    let started = Instant::now();
    let mut seq = 0u64;
    // (when, first seq) of the stream writes of the last AT_RISK.
    let mut recent: VecDeque<(Instant, u64)> = VecDeque::new();
    let done = |seq: u64| {
        stop.load(Ordering::Relaxed)
            || plan.count.is_some_and(|c| seq >= c)
            || plan.until.is_some_and(|t| Instant::now() >= t)
    };
    while !done(seq) {
        let Some(conn) = connected(&mut socket, plan, stats, stop) else {
            break;
        };
        let elapsed = started.elapsed();
        let due = plan.schedule.due(elapsed, seq);
        let mut n = due.saturating_sub(seq).min(MAX_BATCH);
        if let Some(count) = plan.count {
            n = n.min(count - seq);
        }
        if n == 0 {
            std::thread::sleep(plan.schedule.idle_wait(elapsed, seq));
            continue;
        }
        tick.bytes.clear();
        tick.ends.clear();
        let sent_us = now_us();
        for i in 0..n {
            let marker = Marker {
                run: plan.run,
                sender: plan.id,
                seq: seq + i,
                sent_us,
            };
            if plan.transport.is_stream() {
                tick.add_framed(plan.framing, workload, seq + i, &mut rng, &marker);
            } else {
                tick.add(workload, seq + i, &mut rng, &marker);
            }
        }
        if plan.transport.is_stream() {
            let now = Instant::now();
            while recent.front().is_some_and(|(t, _)| now - *t > AT_RISK) {
                recent.pop_front();
            }
            if conn.write_all(&tick.bytes).is_err() {
                socket = None;
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                let from = recent.front().map_or(seq, |(_, s)| *s);
                if let Ok(mut at_risk) = stats.at_risk.lock() {
                    at_risk.push((from, seq));
                }
                recent.clear();
                // Resend the whole tick on the next connection (same seqs, same stamp).
                if !resend(&mut socket, plan, stats, stop, &tick.bytes, n) {
                    break;
                }
            }
            recent.push_back((now, seq));
            stats.sent.fetch_add(n, Ordering::Relaxed);
        } else {
            let mut start = 0;
            for &end in &tick.ends {
                match conn.send(&tick.bytes[start..end]) {
                    Ok(_) => stats.sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.send_errors.fetch_add(1, Ordering::Relaxed),
                };
                start = end;
            }
        }
        seq += n;
    }
}

/// The connected socket, connecting (again) as needed; `None` once `stop` is set before a
/// connection could be made.
fn connected<'s>(
    socket: &'s mut Option<Socket>,
    plan: &SenderPlan,
    stats: &SenderStats,
    stop: &AtomicBool,
) -> Option<&'s mut Socket> {
    while socket.is_none() {
        match Socket::connect(&plan.destination, plan.transport, plan.id) {
            Ok(s) => *socket = Some(s),
            Err(_) => {
                stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    socket.as_mut()
}

/// Writes `bytes` (`n` messages) on a new connection, retrying until it is taken; false if
/// `stop` came first.
fn resend(
    socket: &mut Option<Socket>,
    plan: &SenderPlan,
    stats: &SenderStats,
    stop: &AtomicBool,
    bytes: &[u8],
    n: u64,
) -> bool {
    loop {
        let Some(conn) = connected(socket, plan, stats, stop) else {
            return false;
        };
        if conn.write_all(bytes).is_ok() {
            stats.resent.fetch_add(n, Ordering::Relaxed);
            return true;
        }
        *socket = None;
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// Many stream connections that each send one message every `interval`, staggered, from one
/// thread: the idle part of `many-connections`. Each connection is a sender of its own (ids
/// from `first_id`), with its own stats.
pub struct IdleFleet {
    pub stats: Vec<Arc<SenderStats>>,
    /// Connections that could not be opened at the start.
    pub failed_to_open: Arc<AtomicU64>,
    pub thread: JoinHandle<()>,
}

impl IdleFleet {
    /// Opens `connections` connections (stops early when `stop` is set) and starts sending.
    pub fn start(
        template: &SenderPlan,
        connections: u32,
        interval: Duration,
        workload: Arc<Workload>,
        stop: Arc<AtomicBool>,
    ) -> IdleFleet {
        let stats: Vec<Arc<SenderStats>> = (0..connections).map(|_| Arc::default()).collect();
        let failed_to_open = Arc::new(AtomicU64::new(0));
        let (plan, fleet_stats, failed) = (template.clone(), stats.clone(), failed_to_open.clone());
        let thread = std::thread::Builder::new()
            .name("idle-fleet".into())
            .spawn(move || run_fleet(&plan, interval, &workload, &fleet_stats, &failed, &stop))
            .expect("spawning the idle fleet thread");
        IdleFleet {
            stats,
            failed_to_open,
            thread,
        }
    }
}

fn run_fleet(
    plan: &SenderPlan,
    interval: Duration,
    workload: &Workload,
    stats: &[Arc<SenderStats>],
    failed_to_open: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut sockets: Vec<Option<Socket>> = Vec::with_capacity(stats.len());
    for _ in 0..stats.len() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let socket = Socket::connect(&plan.destination, plan.transport, plan.id).ok();
        if socket.is_none() {
            failed_to_open.fetch_add(1, Ordering::Relaxed);
        }
        sockets.push(socket);
    }
    let mut rng = SplitMix64(0x1d1e);
    let mut tick = Tick {
        bytes: Vec::new(),
        ends: Vec::new(),
        scratch: Vec::new(),
    };
    let started = Instant::now();
    let n = stats.len().max(1) as f64;
    let mut seqs = vec![0u64; stats.len()];
    // Connection i sends at (i / n + k) * interval for k = 0, 1, 2, ...
    let due = |i: usize, k: u64| interval.mul_f64(i as f64 / n + k as f64);
    while !stop.load(Ordering::Relaxed) && plan.until.is_none_or(|t| Instant::now() < t) {
        let elapsed = started.elapsed();
        let mut sent_any = false;
        for (i, socket) in sockets.iter_mut().enumerate() {
            if due(i, seqs[i]) > elapsed {
                continue;
            }
            let Some(conn) = socket.as_mut() else {
                continue;
            };
            sent_any = true;
            tick.bytes.clear();
            tick.ends.clear();
            let marker = Marker {
                run: plan.run,
                sender: plan.id + i as u32,
                seq: seqs[i],
                sent_us: now_us(),
            };
            tick.add_framed(plan.framing, workload, seqs[i], &mut rng, &marker);
            if conn.write_all(&tick.bytes).is_ok() {
                stats[i].sent.fetch_add(1, Ordering::Relaxed);
            } else {
                // Reopen it for its next turn; this message is not counted as sent.
                stats[i].reconnects.fetch_add(1, Ordering::Relaxed);
                *socket = Socket::connect(&plan.destination, plan.transport, plan.id).ok();
                continue;
            }
            seqs[i] += 1;
        }
        if !sent_any {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker::{Found, MarkerFinder};

    fn marker(seq: u64) -> Marker {
        Marker {
            run: 0xabcd,
            sender: 3,
            seq,
            sent_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn fixed_size_messages_have_that_size_and_keep_their_marker() {
        let workload = Workload::realistic(SizeDistribution::Fixed(1000), 1);
        let mut rng = SplitMix64(2);
        for seq in 0..200 {
            let mut out = Vec::new();
            workload.message(seq, &mut rng, &marker(seq), &mut out);
            assert_eq!(out.len(), 1000);
            assert!(!out.contains(&b'\n'));
            assert_eq!(
                MarkerFinder::new(0xabcd).find(&out),
                Found::Ours(marker(seq))
            );
        }
    }

    #[test]
    fn realistic_sizes_follow_the_documented_mix() {
        let workload = Workload::realistic(SizeDistribution::Realistic, 1);
        let mut rng = SplitMix64(3);
        let sizes: Vec<usize> = (0..10_000)
            .map(|seq| {
                let mut out = Vec::new();
                workload.message(seq, &mut rng, &marker(seq), &mut out);
                out.len()
            })
            .collect();
        let share = |low: usize, high: usize| {
            sizes.iter().filter(|&&s| s >= low && s < high).count() as f64 / sizes.len() as f64
        };
        assert!(sizes.iter().all(|&s| (200..=16384).contains(&s)));
        assert!((0.65..0.80).contains(&share(0, 300)), "{}", share(0, 300));
        assert!((0.06..0.10).contains(&share(1024, 4096)));
        assert!((0.01..0.03).contains(&share(4096, 16385)));
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!((550.0..850.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn octet_counted_frames_state_their_length() {
        let workload = Workload::realistic(SizeDistribution::Realistic, 1);
        let mut rng = SplitMix64(4);
        let mut tick = Tick {
            bytes: Vec::new(),
            ends: Vec::new(),
            scratch: Vec::new(),
        };
        for seq in 0..50 {
            tick.add_framed(
                Framing::OctetCounting,
                &workload,
                seq,
                &mut rng,
                &marker(seq),
            );
        }
        let mut rest = &tick.bytes[..];
        let mut frames = 0;
        while !rest.is_empty() {
            let space = rest.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&rest[..space])
                .unwrap()
                .parse()
                .unwrap();
            let frame = &rest[space + 1..space + 1 + len];
            assert_eq!(
                MarkerFinder::new(0xabcd).find(frame),
                Found::Ours(marker(frames))
            );
            rest = &rest[space + 1 + len..];
            frames += 1;
        }
        assert_eq!(frames, 50);
    }

    #[test]
    fn schedules_say_what_is_due() {
        let s = |ms| Duration::from_millis(ms);
        let rate = Schedule::Rate(1000.0);
        assert_eq!(rate.due(s(0), 0), 0);
        assert_eq!(rate.due(s(1500), 700), 1500);
        assert_eq!(rate.idle_wait(s(0), 0), s(1));
        assert_eq!(Schedule::FlatOut.due(s(5), 10), 10 + MAX_BATCH);
        let bursts = Schedule::Bursts {
            per_burst: 500,
            every: s(1000),
        };
        assert_eq!(bursts.due(s(0), 0), 500);
        assert_eq!(bursts.due(s(999), 500), 500);
        assert_eq!(bursts.due(s(1000), 500), 1000);
        assert_eq!(bursts.due(s(2500), 0), 1500);
    }

    #[test]
    fn size_distribution_parses_realistic_or_bytes() {
        assert_eq!(
            "realistic".parse::<SizeDistribution>(),
            Ok(SizeDistribution::Realistic)
        );
        assert_eq!(
            "200".parse::<SizeDistribution>(),
            Ok(SizeDistribution::Fixed(200))
        );
        assert!("2".parse::<SizeDistribution>().is_err());
        assert!("big".parse::<SizeDistribution>().is_err());
    }
}
