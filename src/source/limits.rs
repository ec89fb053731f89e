//! What a hostile client can make a source hold: the `[ingest.limits]` section, the one memory
//! budget shared by every connection, and the per-peer connection table.
//!
//! Invariants, whatever the clients send:
//! - **Memory follows arrival, under one budget.** A connection's buffer grows with the bytes
//!   that arrived, never with what a header announces; every byte held beyond a connection's
//!   first small read buffer (partial frames of the agent listener, partial lines of stream
//!   connections, decompressed batches) is taken from one [`MemoryBudget`] shared by all
//!   listeners and shards before it is allocated, and given back when the frame is done. When
//!   the budget is spent, a stream connection waits (its sender feels TCP backpressure) and an
//!   agent frame is refused (ERROR, the agent resends later): never an allocation past it.
//! - **Announced sizes are checked before anything is allocated**: an agent batch's `raw_len`
//!   against `max_batch_bytes` and against `max_expansion_ratio` times its compressed size
//!   (lz4 cannot expand more than 255:1), its `message_count` against `max_batch_records`.
//! - **Deadlines**: a HELLO must arrive within `hello_timeout_secs`; a frame or a line in
//!   progress must complete within `frame_timeout_secs` plus one second per
//!   `min_bytes_per_sec` of its bytes (a minimum data rate), so a client that trickles bytes
//!   cannot hold a slot; an agent silent for `agent_idle_timeout_secs` is closed.
//! - **No lockout**: a listener's last `reserved_connections` slots only go to peers that have
//!   no connection open, and `max_connections_per_ip` bounds any one peer ([`PeerTable`]).
//! - **Rates per peer address** (optional, `max_lines_per_sec_per_ip`,
//!   `max_bytes_per_sec_per_ip`): token buckets per IP ([`PeerRates`], at most
//!   [`MAX_RATE_PEERS`] of them per listener). A datagram over its peer's rate is dropped and
//!   counted; a stream connection over it waits before its next read, so its sender is slowed
//!   by TCP backpressure and loses nothing (all connections of one address share the bucket).
//!
//! Every refusal and closure is counted by reason in the listener's metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::metrics::MemoryBudgetMetrics;
use crate::setting::InvalidSetting;

/// `[ingest.limits]`: what any one client, and all of them together, can make the sources hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceLimits {
    /// Bytes all connections together may hold in partial frames, partial lines and undecoded
    /// batches. Default: 0, meaning an eighth of the machine's RAM (at least 64 MiB).
    pub memory_budget_bytes: usize,
    /// Most messages in one agent batch; a batch announcing more is refused before it is
    /// decompressed. Default: 65536 (the agent sends at most 4096 by default).
    pub max_batch_records: u32,
    /// Most bytes an agent batch may decompress to per compressed byte, checked before the
    /// batch is allocated: garbage announcing a huge `raw_len` costs at most this many times
    /// what arrived. Default: 255, lz4's own most. Log lines compress 5–20:1, but a batch of
    /// identical lines compresses up to 255:1, and a refused batch is resent by its agent
    /// forever: lower it only for agents whose lines are known not to repeat.
    pub max_expansion_ratio: u32,
    /// Seconds an agent has to send its HELLO after connecting. Default: 5.
    #[serde(
        rename = "hello_timeout_secs",
        deserialize_with = "seconds",
        serialize_with = "crate::setting::as_seconds"
    )]
    pub hello_timeout: Duration,
    /// Seconds a frame or line in progress may take, plus one second per `min_bytes_per_sec`
    /// of its bytes. Default: 30.
    #[serde(
        rename = "frame_timeout_secs",
        deserialize_with = "seconds",
        serialize_with = "crate::setting::as_seconds"
    )]
    pub frame_timeout: Duration,
    /// The slowest data rate a frame in progress may arrive at, beyond `frame_timeout_secs`.
    /// Default: 65536 (64 KiB/s).
    pub min_bytes_per_sec: usize,
    /// Seconds an agent connection may stay silent before it is closed (the agent reconnects
    /// when it has lines to send); 0: never. Default: 600.
    #[serde(
        rename = "agent_idle_timeout_secs",
        deserialize_with = "seconds",
        serialize_with = "crate::setting::as_seconds"
    )]
    pub agent_idle_timeout: Duration,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            memory_budget_bytes: 0,
            max_batch_records: 65_536,
            max_expansion_ratio: 255,
            hello_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(30),
            min_bytes_per_sec: 64 * 1024,
            agent_idle_timeout: Duration::from_secs(600),
        }
    }
}

fn seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_secs)
}

impl SourceLimits {
    /// # Errors
    /// A value out of range, relative to `[ingest.limits]`.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        if self.memory_budget_bytes != 0 && self.memory_budget_bytes < 1 << 20 {
            return Err(InvalidSetting::new(
                "memory_budget_bytes",
                format!(
                    "{} is too small: at least 1048576 (1 MiB), or 0 for an eighth of RAM",
                    self.memory_budget_bytes
                ),
            ));
        }
        let at_least_one = [
            ("max_batch_records", u64::from(self.max_batch_records)),
            ("min_bytes_per_sec", self.min_bytes_per_sec as u64),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(InvalidSetting::new(key, "must be at least 1"));
            }
        }
        InvalidSetting::check_range("max_expansion_ratio", self.max_expansion_ratio, 1, 255, "")?;
        InvalidSetting::check_range(
            "hello_timeout_secs",
            self.hello_timeout.as_secs(),
            1,
            3600,
            "seconds",
        )?;
        InvalidSetting::check_range(
            "frame_timeout_secs",
            self.frame_timeout.as_secs(),
            1,
            3600,
            "seconds",
        )
    }

    /// The memory budget in bytes: `memory_budget_bytes`, or an eighth of RAM.
    pub fn memory_budget(&self) -> usize {
        if self.memory_budget_bytes != 0 {
            return self.memory_budget_bytes;
        }
        // An eighth leaves the rest to the rings, the sink and the page cache; 64 MiB is
        // enough for a few hundred agents in mid-batch.
        (physical_memory() / 8).max(64 << 20)
    }

    /// How long a frame or line of `bytes` may take to arrive once it started.
    pub fn frame_deadline(&self, bytes: usize) -> Duration {
        let rate = self.min_bytes_per_sec.max(1) as f64;
        self.frame_timeout + Duration::from_secs_f64(bytes as f64 / rate)
    }

    /// `agent_idle_timeout_secs`, `None` when 0.
    pub fn agent_idle(&self) -> Option<Duration> {
        (!self.agent_idle_timeout.is_zero()).then_some(self.agent_idle_timeout)
    }
}

/// Physical memory in bytes (`sysconf`), 4 GiB when it cannot be read.
fn physical_memory() -> usize {
    // SAFETY: sysconf only reads system constants.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && page > 0 {
        (pages as usize).saturating_mul(page as usize)
    } else {
        4 << 30
    }
}

/// The bytes all connections may hold in partial frames and undecoded batches (see the
/// [module docs](self)). Shared by every listener and shard; taking and giving back are one
/// atomic each, once per frame or buffer growth, never per line.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    held: AtomicUsize,
    metrics: Arc<MemoryBudgetMetrics>,
    /// Woken whenever bytes are given back, for stream connections waiting for room.
    freed: tokio::sync::Notify,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, reported in `metrics`.
    pub fn new(limit: usize, metrics: Arc<MemoryBudgetMetrics>) -> Arc<Self> {
        metrics.limit_bytes.set(limit as i64);
        Arc::new(MemoryBudget {
            limit,
            held: AtomicUsize::new(0),
            metrics,
            freed: tokio::sync::Notify::new(),
        })
    }

    /// A budget nobody shares, for tests and tools: `limit` bytes, its own metrics.
    pub fn unshared(limit: usize) -> Arc<Self> {
        MemoryBudget::new(limit, Arc::new(MemoryBudgetMetrics::default()))
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The budget's metrics.
    pub fn metrics(&self) -> &Arc<MemoryBudgetMetrics> {
        &self.metrics
    }

    /// Takes `bytes` if they fit under the limit.
    fn try_take(&self, bytes: usize) -> bool {
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok();
        if taken {
            self.metrics.held_bytes.add(bytes as i64);
        }
        taken
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            self.metrics.held_bytes.add(-(bytes as i64));
            self.freed.notify_waiters();
        }
    }
}

/// Bytes one connection holds of a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub struct BudgetShare {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl BudgetShare {
    /// A share of `budget` holding nothing yet.
    pub fn new(budget: &Arc<MemoryBudget>) -> Self {
        BudgetShare {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `bytes` in all (more or fewer than now) if the budget has room; false, holding
    /// what it held, when it has not (the caller counts what it then refuses).
    pub fn try_resize(&mut self, bytes: usize) -> bool {
        if bytes <= self.bytes {
            self.budget.give_back(self.bytes - bytes);
            self.bytes = bytes;
            return true;
        }
        if self.budget.try_take(bytes - self.bytes) {
            self.bytes = bytes;
            true
        } else {
            false
        }
    }

    /// Holds `bytes` in all, waiting for room as long as it takes (counted once as a wait).
    /// `bytes` larger than the whole budget can never fit: false at once.
    pub async fn resize(&mut self, bytes: usize) -> bool {
        if bytes > self.budget.limit {
            return false;
        }
        let mut counted = false;
        loop {
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if bytes <= self.bytes || self.budget.try_take(bytes - self.bytes) {
                if bytes < self.bytes {
                    self.budget.give_back(self.bytes - bytes);
                }
                self.bytes = bytes;
                return true;
            }
            if !counted {
                counted = true;
                self.budget.metrics.waits.add(1);
            }
            freed.await;
        }
    }

    /// Gives everything back.
    pub fn release(&mut self) {
        self.budget.give_back(std::mem::take(&mut self.bytes));
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.release();
    }
}

/// Paces a flow (one connection's bytes, one peer's lines or bytes) to at most `per_sec`
/// units a second, with bursts of up to one second's worth: a token bucket kept as the time
/// until which what was taken is paid for. A pure clock-in, delay-out type, so the readers
/// only sleep on, or drop by, what it says.
///
/// A flood from one sender is what size retention turns into deleting everyone's logs; pacing
/// each connection (TCP backpressure, nothing dropped) bounds how fast one sender can cycle the
/// store (with `max_connections_per_ip`, how fast one address can).
#[derive(Debug, Clone, Copy)]
pub struct IngestPacer {
    per_sec: u64,
    /// When the units taken so far are paid for at the rate.
    paid_until: Option<Instant>,
}

/// The most a pacer lets accumulate: one second's worth.
const BURST: Duration = Duration::from_secs(1);

impl IngestPacer {
    /// A pacer for `per_sec` units a second (at least 1).
    pub fn new(per_sec: u64) -> Self {
        IngestPacer {
            per_sec: per_sec.max(1),
            paid_until: None,
        }
    }

    /// When taking `units` at `now` would be paid for.
    fn paid_after(&self, units: usize, now: Instant) -> Instant {
        // Unused allowance is kept for at most one second (the burst).
        let from = match self.paid_until {
            Some(paid) if paid + BURST > now => paid,
            _ => now.checked_sub(BURST).unwrap_or(now),
        };
        from + Duration::from_secs_f64(units as f64 / self.per_sec as f64)
    }

    /// Takes `units` read at `now`; returns how long to wait before reading again.
    pub fn took(&mut self, units: usize, now: Instant) -> Duration {
        let paid = self.paid_after(units, now);
        self.paid_until = Some(paid);
        paid.saturating_duration_since(now)
    }

    /// True when `units` fit in what the rate allows at `now` (no wait needed); only then
    /// are they taken.
    pub fn would_fit(&self, units: usize, now: Instant) -> bool {
        self.paid_after(units, now) <= now
    }

    /// True when the bucket is full again at `now`: the pacer is then as good as a new one.
    fn is_idle(&self, now: Instant) -> bool {
        self.paid_until.is_none_or(|paid| paid + BURST <= now)
    }
}

/// `max_lines_per_sec_per_ip` and `max_bytes_per_sec_per_ip` of a listener; 0: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerRateLimit {
    pub lines_per_sec: u64,
    pub bytes_per_sec: u64,
}

impl PeerRateLimit {
    /// True when either rate is limited.
    pub fn is_set(&self) -> bool {
        self.lines_per_sec > 0 || self.bytes_per_sec > 0
    }
}

/// Most peers a listener keeps a rate bucket for. Each costs about 100 bytes, so a table is
/// at most about 6.5 MiB however many addresses (spoofed UDP sources) a flood uses.
pub const MAX_RATE_PEERS: usize = 65_536;

/// The lines and bytes each peer address of one listener sent, as token buckets
/// ([`IngestPacer`]), shared by the listener's shards and locked once per receive (one
/// `recvmmsg`, one read of a connection), never per line.
///
/// Bounded: a peer whose buckets are full again is as good as unknown, so when the table is
/// at [`MAX_RATE_PEERS`] such peers are forgotten (at most one sweep a second); should every
/// entry still be in use, the peers not in the table share one overflow bucket, so a flood
/// from ever new addresses is held to the rate of one peer instead of growing the table.
#[derive(Debug)]
pub struct PeerRates {
    limit: PeerRateLimit,
    max_peers: usize,
    table: Mutex<RateTable>,
}

#[derive(Debug)]
struct RateTable {
    peers: HashMap<IpAddr, PeerBuckets>,
    /// For peers that found the table full.
    overflow: PeerBuckets,
    last_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct PeerBuckets {
    lines: Option<IngestPacer>,
    bytes: Option<IngestPacer>,
}

impl PeerBuckets {
    fn new(limit: PeerRateLimit) -> Self {
        let pacer = |rate| (rate > 0).then(|| IngestPacer::new(rate));
        PeerBuckets {
            lines: pacer(limit.lines_per_sec),
            bytes: pacer(limit.bytes_per_sec),
        }
    }

    fn is_idle(&self, now: Instant) -> bool {
        self.lines.is_none_or(|p| p.is_idle(now)) && self.bytes.is_none_or(|p| p.is_idle(now))
    }
}

impl PeerRates {
    /// The buckets of a listener limited to `limit`, for at most `max_peers` addresses.
    pub fn new(limit: PeerRateLimit, max_peers: usize) -> Self {
        PeerRates {
            limit,
            max_peers: max_peers.max(1),
            table: Mutex::new(RateTable {
                peers: HashMap::new(),
                overflow: PeerBuckets::new(limit),
                last_sweep: None,
            }),
        }
    }

    /// Runs `f` with the table locked, for one receive's worth of [`PeerRateGate`] calls at
    /// `now`.
    pub fn gate<R>(&self, now: Instant, f: impl FnOnce(&mut PeerRateGate<'_>) -> R) -> R {
        let mut table = match self.table.lock() {
            Ok(table) => table,
            // A panic while locked left at worst one bucket half-charged: keep going.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut PeerRateGate {
            rates: self,
            table: &mut table,
            now,
        })
    }

    /// The rates.
    pub fn limit(&self) -> PeerRateLimit {
        self.limit
    }

    /// Peers with a bucket now (the overflow bucket not counted).
    pub fn peers(&self) -> usize {
        self.table.lock().map_or(0, |t| t.peers.len())
    }
}

/// The rate table, locked for one receive.
pub struct PeerRateGate<'a> {
    rates: &'a PeerRates,
    table: &'a mut RateTable,
    now: Instant,
}

impl PeerRateGate<'_> {
    /// A datagram's admission: true (and charged) when one more line of `bytes` from `peer`
    /// fits both of its rates now; false means drop it.
    pub fn admit(&mut self, peer: IpAddr, bytes: usize) -> bool {
        let now = self.now;
        let buckets = self.buckets(peer);
        let fits = buckets.lines.is_none_or(|p| p.would_fit(1, now))
            && buckets.bytes.is_none_or(|p| p.would_fit(bytes, now));
        if fits {
            if let Some(p) = buckets.lines.as_mut() {
                p.took(1, now);
            }
            if let Some(p) = buckets.bytes.as_mut() {
                p.took(bytes, now);
            }
        }
        fits
    }

    /// A stream's read: charges `lines` and `bytes` to `peer` and returns how long the
    /// connection must wait before it reads again (TCP backpressure on the sender).
    pub fn pace(&mut self, peer: IpAddr, lines: usize, bytes: usize) -> Duration {
        let now = self.now;
        let buckets = self.buckets(peer);
        let lines = buckets
            .lines
            .as_mut()
            .map_or(Duration::ZERO, |p| p.took(lines, now));
        let bytes = buckets
            .bytes
            .as_mut()
            .map_or(Duration::ZERO, |p| p.took(bytes, now));
        lines.max(bytes)
    }

    fn buckets(&mut self, peer: IpAddr) -> &mut PeerBuckets {
        let (limit, max_peers, now) = (self.rates.limit, self.rates.max_peers, self.now);
        let table = &mut *self.table;
        if !table.peers.contains_key(&peer) && table.peers.len() >= max_peers {
            let swept_lately = table
                .last_sweep
                .is_some_and(|at| now.saturating_duration_since(at) < BURST);
            if !swept_lately {
                table.last_sweep = Some(now);
                table.peers.retain(|_, buckets| !buckets.is_idle(now));
            }
            if table.peers.len() >= max_peers {
                return &mut table.overflow;
            }
        }
        table
            .peers
            .entry(peer)
            .or_insert_with(|| PeerBuckets::new(limit))
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// The listener is at `max_connections`.
    Full,
    /// Only reserved slots are left, and this peer already has a connection.
    Reserved,
    /// The peer is at `max_connections_per_ip`.
    PerIp,
}

/// Connections open per peer address on one listener, shared by its shards; consulted once
/// per accept (a mutex is fine there, and never taken per read).
#[derive(Debug, Default)]
pub struct PeerTable {
    open: Mutex<(usize, HashMap<IpAddr, u32>)>,
}

/// Admission rules of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub max_connections: usize,
    /// 0: no per-peer limit.
    pub max_per_ip: usize,
    pub reserved: usize,
    /// Each connection's most bytes per second ([`IngestPacer`]); 0: no limit.
    pub max_bytes_per_sec: u64,
}

impl PeerTable {
    /// Admits a connection from `peer` (`None` for Unix sockets, which only count towards
    /// `max_connections`) or says why not. An admitted one is counted until its
    /// [`PeerSlot`] drops.
    pub fn admit(
        self: &Arc<Self>,
        peer: Option<IpAddr>,
        rules: Admission,
    ) -> Result<PeerSlot, NotAdmitted> {
        let Ok(mut guard) = self.open.lock() else {
            return Err(NotAdmitted::Full);
        };
        let (total, per_peer) = &mut *guard;
        if *total >= rules.max_connections {
            return Err(NotAdmitted::Full);
        }
        if let Some(ip) = peer {
            let mine = per_peer.get(&ip).copied().unwrap_or(0) as usize;
            if rules.max_per_ip > 0 && mine >= rules.max_per_ip {
                return Err(NotAdmitted::PerIp);
            }
            if mine > 0 && *total >= rules.max_connections.saturating_sub(rules.reserved) {
                return Err(NotAdmitted::Reserved);
            }
            *per_peer.entry(ip).or_default() += 1;
        }
        *total += 1;
        Ok(PeerSlot {
            table: self.clone(),
            peer,
        })
    }
}

/// One admitted connection, counted in its [`PeerTable`] while it lives.
#[derive(Debug)]
pub struct PeerSlot {
    table: Arc<PeerTable>,
    peer: Option<IpAddr>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let Ok(mut guard) = self.table.open.lock() else {
            return;
        };
        let (total, per_peer) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(ip) = self.peer
            && let Some(n) = per_peer.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    const LINES_10: PeerRateLimit = PeerRateLimit {
        lines_per_sec: 10,
        bytes_per_sec: 0,
    };

    #[test]
    fn a_peer_gets_its_rate_and_a_one_second_burst_and_others_their_own() {
        let rates = PeerRates::new(LINES_10, MAX_RATE_PEERS);
        let t0 = Instant::now();
        let admitted = rates.gate(t0, |g| (0..15).filter(|_| g.admit(ip(1), 100)).count());
        assert_eq!(admitted, 10);
        // A tenth of a second later, one more line's worth has accrued.
        let t1 = t0 + Duration::from_millis(100);
        let admitted = rates.gate(t1, |g| (0..5).filter(|_| g.admit(ip(1), 100)).count());
        assert_eq!(admitted, 1);
        let other = rates.gate(t1, |g| (0..15).filter(|_| g.admit(ip(2), 100)).count());
        assert_eq!(other, 10);
        assert_eq!(rates.peers(), 2);
    }

    #[test]
    fn a_datagram_over_the_byte_rate_is_refused_and_not_charged() {
        let limit = PeerRateLimit {
            lines_per_sec: 0,
            bytes_per_sec: 1000,
        };
        let rates = PeerRates::new(limit, MAX_RATE_PEERS);
        let t0 = Instant::now();
        rates.gate(t0, |g| {
            assert!((0..4).all(|_| g.admit(ip(1), 250)));
            assert!(!g.admit(ip(1), 250));
            // Refused ones cost nothing: a later small one still fits once paid for.
        });
        let t1 = t0 + Duration::from_millis(10);
        rates.gate(t1, |g| {
            assert!(g.admit(ip(1), 10));
            assert!(!g.admit(ip(1), 10));
        });
    }

    #[test]
    fn a_stream_over_its_rate_is_told_to_wait_for_what_it_took() {
        let limit = PeerRateLimit {
            lines_per_sec: 100,
            bytes_per_sec: 10_000,
        };
        let rates = PeerRates::new(limit, MAX_RATE_PEERS);
        let t0 = Instant::now();
        // 300 lines at 100/s with a one-second burst: paid for 2 s from now; the bytes (1 s
        // of the byte rate, within the burst) ask for nothing.
        let wait = rates.gate(t0, |g| g.pace(ip(1), 300, 10_000));
        assert_eq!(wait, Duration::from_secs(2));
        // A second connection of the same address shares the bucket.
        let wait = rates.gate(t0, |g| g.pace(ip(1), 100, 0));
        assert_eq!(wait, Duration::from_secs(3));
        assert_eq!(rates.gate(t0, |g| g.pace(ip(2), 100, 0)), Duration::ZERO);
    }

    #[test]
    fn the_table_is_bounded_and_new_peers_share_the_overflow_while_it_is_busy() {
        let rates = PeerRates::new(LINES_10, 4);
        let t0 = Instant::now();
        for n in 1..=4 {
            assert!(rates.gate(t0, |g| g.admit(ip(n), 1)));
        }
        // A full table of busy peers: peers 5 to 9 share one bucket of 10 lines a second.
        let shared = rates.gate(t0, |g| {
            (5..=9)
                .map(|n| (0..4).filter(|_| g.admit(ip(n), 1)).count())
                .sum::<usize>()
        });
        assert_eq!(shared, 10);
        assert_eq!(rates.peers(), 4);
        // Once their buckets are full again, idle peers are forgotten for new ones.
        let later = t0 + Duration::from_secs(2);
        assert!(rates.gate(later, |g| g.admit(ip(20), 1)));
        assert_eq!(rates.peers(), 1);
    }

    #[tokio::test]
    async fn a_share_never_takes_past_the_budget_and_gives_back_on_drop() {
        let budget = MemoryBudget::unshared(1000);
        let mut a = BudgetShare::new(&budget);
        let mut b = BudgetShare::new(&budget);
        assert!(a.try_resize(600));
        assert!(!b.try_resize(401));
        assert!(b.try_resize(400));
        assert_eq!(budget.held(), 1000);
        assert_eq!(budget.metrics().held_bytes.get(), 1000);
        assert!(a.try_resize(100));
        assert_eq!(budget.held(), 500);
        drop(a);
        drop(b);
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.metrics().held_bytes.get(), 0);
        assert!(!BudgetShare::new(&budget).resize(1001).await);
    }

    #[tokio::test]
    async fn a_waiting_share_gets_its_bytes_once_another_gives_them_back() {
        let budget = MemoryBudget::unshared(100);
        let mut first = BudgetShare::new(&budget);
        assert!(first.try_resize(80));
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut second = BudgetShare::new(&budget);
                second.resize(50).await;
                second.bytes()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        first.release();
        assert_eq!(waiter.await.ok(), Some(50));
        assert_eq!(budget.metrics().waits.get(), 1);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn the_last_slots_go_only_to_peers_without_a_connection() {
        let table = Arc::new(PeerTable::default());
        let rules = Admission {
            max_connections: 10,
            max_per_ip: 0,
            reserved: 3,
            max_bytes_per_sec: 0,
        };
        let attacker = Some(IpAddr::from([10, 0, 0, 1]));
        let mut held: Vec<PeerSlot> = (0..7)
            .map(|_| table.admit(attacker, rules).unwrap())
            .collect();
        assert_eq!(
            table.admit(attacker, rules).unwrap_err(),
            NotAdmitted::Reserved
        );
        for last in 2..=4 {
            held.push(
                table
                    .admit(Some(IpAddr::from([10, 0, 0, last])), rules)
                    .unwrap(),
            );
        }
        assert_eq!(
            table
                .admit(Some(IpAddr::from([10, 0, 0, 9])), rules)
                .unwrap_err(),
            NotAdmitted::Full
        );
        held.truncate(9);
        assert!(
            table
                .admit(Some(IpAddr::from([10, 0, 0, 9])), rules)
                .is_ok()
        );
    }

    #[test]
    fn a_peer_at_its_limit_is_refused_others_are_not() {
        let table = Arc::new(PeerTable::default());
        let rules = Admission {
            max_connections: 100,
            max_per_ip: 2,
            reserved: 0,
            max_bytes_per_sec: 0,
        };
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let _held = [
            table.admit(a, rules).unwrap(),
            table.admit(a, rules).unwrap(),
        ];
        assert_eq!(table.admit(a, rules).unwrap_err(), NotAdmitted::PerIp);
        assert!(
            table
                .admit(Some(IpAddr::from([10, 0, 0, 2])), rules)
                .is_ok()
        );
        // Unix peers only count towards the total.
        assert!(table.admit(None, rules).is_ok());
    }

    #[test]
    fn a_paced_connection_gets_one_second_of_burst_then_the_rate() {
        let start = std::time::Instant::now();
        let mut pacer = IngestPacer::new(1000);
        assert_eq!(pacer.took(1000, start), Duration::ZERO);
        assert_eq!(pacer.took(500, start), Duration::from_millis(500));
        let later = start + Duration::from_millis(500);
        assert_eq!(pacer.took(250, later), Duration::from_millis(250));
        // After a long pause only one second of allowance is left.
        let much_later = start + Duration::from_secs(60);
        assert_eq!(pacer.took(1000, much_later), Duration::ZERO);
        assert_eq!(pacer.took(1000, much_later), Duration::from_secs(1));
    }

    #[test]
    fn frame_deadlines_grow_with_the_bytes_at_the_minimum_rate() {
        let limits = SourceLimits::default();
        assert_eq!(limits.frame_deadline(0), Duration::from_secs(30));
        assert_eq!(
            limits.frame_deadline(64 * 1024 * 10),
            Duration::from_secs(40)
        );
        assert_eq!(SourceLimits::default().check(), Ok(()));
        let tiny = SourceLimits {
            memory_budget_bytes: 1000,
            ..SourceLimits::default()
        };
        assert_eq!(
            tiny.check().map_err(|e| e.to_string()),
            Err(
                "memory_budget_bytes: 1000 is too small: at least 1048576 (1 MiB), or 0 for an \
                 eighth of RAM"
                    .to_string()
            )
        );
    }
}
