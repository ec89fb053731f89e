//! A shard: one thread, its sockets and connections, and the batch it fills.
//!
//! Each shard thread runs a single-threaded tokio runtime. Its tasks (datagram readers,
//! acceptors, one task per connection, and a ticker) share the shard's state through an `Rc`,
//! and never across an `.await` while borrowing it, so no lock is needed and nothing is shared
//! with other shards but the listener counters.
//!
//! Per receive (one read of a stream, one `recvmmsg` of datagrams) a task calls
//! [`Shard::receive`]: the receive is stamped with the time once, then every message in it is
//! parsed (zero-copy: the record borrows from the read buffer) and encoded straight into the
//! shard's current batch, together with its Kafka key and topic when the shard has a
//! [`Route`]. The batch is cut when it is full (records or bytes) at the end of the
//! receive, or by the ticker when its first record is `batch_max_age` old.
//!
//! Backpressure: when the ring refuses a cut batch, the batch is kept as `pending` and a new one
//! is started. Once that one is full too, the shard is *blocked*: stream tasks stop reading
//! (the kernel buffers fill and TCP flow control slows the senders) and datagram readers drop
//! what they receive, counting it. The ticker retries the pending batch each time the sink takes
//! a batch from the ring, and wakes the stream tasks when the shard is no longer blocked. Memory
//! per shard is bounded by the ring, two batches and one receive.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::ack::AckToken;
use crate::encode::{self, Encoding, Envelope};
use crate::kafka::route::Route;
use crate::log_limit::RateLimitedWarning;
use crate::metrics::ListenerMetrics;
use crate::parse::{self, Format, LegacyZone, ParseContext};
use crate::pipeline::batch::Batch;
use crate::pipeline::ring::{PushError, RingProducer};
use crate::source::intake::{Connections, Intake, Receive, Sender};
use crate::source::{self, ListenerContext, ShardSocket, Shutdown};

/// Said when a listener's messages are dropped for its spent store quota.
static STORE_QUOTA_SPENT: RateLimitedWarning = RateLimitedWarning::new(Duration::from_secs(10));

/// When to cut a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// Everything a shard needs to turn messages into batches.
#[derive(Debug, Clone)]
pub struct ShardSettings {
    pub id: u16,
    pub encoding: Encoding,
    pub legacy_zone: LegacyZone,
    pub limits: BatchLimits,
    /// How each record's Kafka key and topic are rendered; `None`: records get neither.
    pub route: Option<Arc<Route>>,
}

/// The state of one shard, shared by its tasks.
pub struct Shard {
    pub settings: ShardSettings,
    /// When to cut a batch: `settings.limits` at start, then what a live reload sets
    /// ([`ShardCommand::SetLimits`]). Read once per receive (a copy of three words).
    limits: Cell<BatchLimits>,
    producer: RingProducer,
    filling: RefCell<Filling>,
    /// Woken when the shard stops being blocked.
    unblocked: Notify,
    /// Woken when a record goes into an empty batch, so the ticker sleeps while the shard is
    /// idle instead of polling.
    batch_opened: Notify,
}

/// The batch being filled and what a receive stamps on its records.
struct Filling {
    batch: Batch,
    pending: Option<Batch>,
    parse_context: ParseContext,
    received_at_us: i64,
    /// `received_at_us` as RFC 3339 text, formatted once per receive.
    received_at_text: Vec<u8>,
}

/// One receive in progress: messages given to it go into the shard's batch.
pub struct ShardReceive<'s> {
    filling: &'s mut Filling,
    limits: &'s BatchLimits,
    encoding: Encoding,
    route: Option<&'s Route>,
    lines: u64,
    bytes: u64,
    parse_errors: u64,
    /// The listener's store quota was spent when the receive began: its messages are dropped.
    quota_spent: bool,
    dropped_quota: u64,
}

impl Receive for ShardReceive<'_> {
    /// Parses `message`, encodes it into the batch, and counts it.
    fn message(&mut self, message: &[u8], format: Format, sender: &Sender<'_>) {
        if self.quota_spent {
            // Received, then dropped: counted in both, as oversize messages are.
            self.lines += 1;
            self.bytes += message.len() as u64;
            self.dropped_quota += 1;
            return;
        }
        let source = sender.source;
        let f = &mut *self.filling;
        let mut record = parse::parse(message, format, &mut f.parse_context);
        record.host = record.host.or(sender.host_if_missing);
        self.parse_errors += u64::from(record.parse_error.is_some());
        self.lines += 1;
        self.bytes += message.len() as u64;
        let envelope = Envelope {
            received_at: &f.received_at_text,
            source,
            tls_peer: sender.tls_peer,
            agent_host: sender.agent_host,
        };
        let encoding = self.encoding;
        let mut indexed = None;
        let encode_value = |values: &mut Vec<u8>| {
            indexed = encode::encode(encoding, message, &record, &envelope, values);
        };
        match self.route {
            None => f.batch.push_with(f.received_at_us, encode_value),
            Some(route) => {
                // A route reads `[logtail@32473 topic=...]`: only an authenticated agent may
                // steer where its records go (anyone can write that element into a message).
                let routed = if sender.agent_host.is_some() {
                    record
                } else {
                    parse::Record {
                        structured_data: None,
                        ..record
                    }
                };
                f.batch.push_routed(
                    f.received_at_us,
                    |keys| route.render_key(&routed, source, keys),
                    |topics| {
                        route.render_topic(&routed, source, topics);
                    },
                    encode_value,
                )
            }
        }
        if let Some(fields) = indexed {
            f.batch.set_index_fields(fields);
        }
    }

    /// Pushes `value` into the batch as it is; with a route, to the fallback topic without a
    /// key (a route renders from parsed fields, which an encoded record does not carry).
    fn encoded(&mut self, value: &[u8]) {
        self.lines += 1;
        self.bytes += value.len() as u64;
        let f = &mut *self.filling;
        f.batch.push(f.received_at_us, value);
    }

    /// True when the shard cannot take more records until the sink catches up.
    fn is_blocked(&self) -> bool {
        self.filling.is_blocked(self.limits)
    }

    /// Has `token` released once the records of this receive are durable: it goes with the
    /// batch they are in (a receive never spans two batches). Released at once when the batch is
    /// empty, i.e. when the receive put nothing into it.
    fn acknowledge_when_durable(&mut self, token: AckToken) {
        if self.filling.batch.is_empty() {
            token.release();
        } else {
            self.filling.batch.attach_ack(token);
        }
    }
}

impl Filling {
    fn is_full(&self, limits: &BatchLimits) -> bool {
        let batch = &self.batch;
        // Keys and topics count too, so that a route cannot make a batch outgrow the limit.
        let bytes = batch.value_bytes() + batch.key_bytes() + batch.topic_bytes();
        batch.len() >= limits.max_records || bytes >= limits.max_bytes
    }

    fn is_blocked(&self, limits: &BatchLimits) -> bool {
        self.pending.is_some() && self.is_full(limits)
    }

    fn stamp(&mut self, now: SystemTime) {
        let us = crate::time::unix_micros(now);
        if us != self.received_at_us {
            self.received_at_us = us;
            self.received_at_text.clear();
            encode::format_rfc3339_micros(us, &mut self.received_at_text);
            self.parse_context.set_received_at(us);
        }
    }
}

impl Intake for Shard {
    type Receive<'a> = ShardReceive<'a>;

    /// Runs `f` for one receive stamped `at`, then adds its counts to `metrics` and cuts the
    /// batch if it is full.
    fn receive_at<R>(
        &self,
        metrics: &ListenerMetrics,
        at: SystemTime,
        f: impl FnOnce(&mut ShardReceive<'_>) -> R,
    ) -> R {
        let mut filling = self.filling.borrow_mut();
        filling.stamp(at);
        let was_empty = filling.batch.is_empty();
        let value_bytes_before = filling.batch.value_bytes();
        // Read once per receive: the quota moves per stored batch, not per message.
        let quota = metrics.store_quota.as_ref();
        let limits = self.limits.get();
        let mut receive = ShardReceive {
            filling: &mut filling,
            limits: &limits,
            encoding: self.settings.encoding,
            route: self.settings.route.as_deref(),
            lines: 0,
            bytes: 0,
            parse_errors: 0,
            // A listener that holds its senders back checked the quota before it read.
            quota_spent: quota.is_some_and(|q| !q.holds_senders_back && q.is_spent()),
            dropped_quota: 0,
        };
        let result = f(&mut receive);
        metrics.received_lines.add(receive.lines);
        metrics.received_bytes.add(receive.bytes);
        metrics.parse_errors.add(receive.parse_errors);
        if let Some(quota) = quota {
            let dropped = receive.dropped_quota;
            if dropped > 0 {
                metrics.dropped_store_quota.add(dropped);
                STORE_QUOTA_SPENT.warn(|| {
                    format!(
                        "listener {}: its records take {} bytes of the store, its whole \
                         store_quota_bytes = {}: dropping its messages until retention frees room",
                        metrics.name,
                        quota.held_bytes.get(),
                        quota.limit_bytes
                    )
                });
            }
            let added = filling.batch.value_bytes() - value_bytes_before;
            if added > 0 {
                quota.in_flight_bytes.add(added as i64);
                filling.batch.charge_store_quota(quota, added as u64);
            }
        }
        if was_empty && !filling.batch.is_empty() {
            self.batch_opened.notify_one();
        }
        if filling.is_full(&limits) {
            self.cut(&mut filling);
        }
        result
    }

    /// Resolves once the shard is not blocked (at once if it is not).
    async fn until_unblocked(&self) {
        loop {
            let notified = self.unblocked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_blocked() {
                return;
            }
            notified.await;
        }
    }
}

impl Shard {
    /// A shard that hands its batches to `producer`.
    pub fn new(settings: ShardSettings, producer: RingProducer) -> Self {
        Shard {
            filling: RefCell::new(Filling {
                batch: new_batch(settings.id, &settings.limits, None),
                pending: None,
                parse_context: ParseContext::new(0, settings.legacy_zone),
                received_at_us: 0,
                received_at_text: Vec::with_capacity(32),
            }),
            unblocked: Notify::new(),
            batch_opened: Notify::new(),
            limits: Cell::new(settings.limits),
            settings,
            producer,
        }
    }

    /// Cuts batches by `limits` from now on (a live reload of `[pipeline]`); the batch being
    /// filled is cut by them too.
    pub fn set_limits(&self, limits: BatchLimits) {
        self.limits.set(limits);
    }

    /// True when the shard cannot take more records until the sink catches up.
    pub fn is_blocked(&self) -> bool {
        self.filling.borrow().is_blocked(&self.limits.get())
    }

    /// Moves the current batch to the ring, or to `pending` when the ring is full. Does nothing
    /// when the batch is empty or a batch is already pending.
    fn cut(&self, filling: &mut Filling) {
        if filling.batch.is_empty() || filling.pending.is_some() {
            return;
        }
        let fresh = new_batch(self.settings.id, &self.limits.get(), Some(&filling.batch));
        let full = std::mem::replace(&mut filling.batch, fresh);
        filling.pending = self.push(full);
    }

    /// Hands `batch` to the ring; returns it when the ring is full. Should the sink thread be
    /// gone (it only ever is after a panic), the batch is dropped and said so: holding it would
    /// block the shard, and its shutdown, forever.
    fn push(&self, batch: Batch) -> Option<Batch> {
        match self.producer.try_push(batch) {
            Ok(()) => None,
            Err(PushError::Full(batch)) => Some(batch),
            Err(PushError::Closed(batch)) => {
                tracing::error!(
                    shard = self.settings.id,
                    "the sink thread is gone: dropping a batch of {} records",
                    batch.len()
                );
                None
            }
        }
    }

    /// Retries the pending batch, then cuts the current one if it is due (full, or older than
    /// the age limit, or `force`). Wakes blocked tasks when the shard gets unblocked.
    fn flush(&self, force: bool) {
        let mut filling = self.filling.borrow_mut();
        let limits = &self.limits.get();
        let was_blocked = filling.is_blocked(limits);
        if let Some(batch) = filling.pending.take() {
            filling.pending = self.push(batch);
        }
        let aged = filling
            .batch
            .opened_at()
            .is_some_and(|t| t.elapsed() >= limits.max_age);
        if force || aged || filling.is_full(limits) {
            self.cut(&mut filling);
        }
        if was_blocked && !filling.is_blocked(limits) {
            drop(filling);
            self.unblocked.notify_waiters();
        }
    }

    /// Cuts batches by age and retries pending ones until `stop` resolves. Sleeps until the open
    /// batch is due, or, while the shard is idle, until a record arrives: an idle gateway does
    /// not wake up.
    pub async fn run_ticker(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let (due, pending) = {
                let filling = self.filling.borrow();
                let due = filling.batch.opened_at().map(|opened| {
                    tokio::time::Instant::from_std(opened + self.limits.get().max_age)
                });
                (due, filling.pending.is_some())
            };
            // While a batch waits for ring space nothing else can be cut: wait for space only
            // (a due batch would otherwise wake this loop over and over).
            tokio::select! {
                _ = &mut stop => return,
                _ = self.producer.space(), if pending => {}
                _ = self.batch_opened.notified(), if !pending && due.is_none() => {}
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if !pending && due.is_some() => {}
            }
            self.flush(false);
        }
    }

    /// Hands every record still in the shard to the ring, waiting for space as needed.
    pub async fn drain(&self) {
        loop {
            self.flush(true);
            let done = {
                let filling = self.filling.borrow();
                filling.pending.is_none() && filling.batch.is_empty()
            };
            if done {
                return;
            }
            self.producer.space().await;
        }
    }
}

/// A new batch sized like the previous one, so a busy shard fills it without reallocating.
fn new_batch(shard: u16, limits: &BatchLimits, previous: Option<&Batch>) -> Batch {
    let previous_bytes = previous.map_or(0, Batch::value_bytes);
    let bytes = previous_bytes.clamp(4096, limits.max_bytes + limits.max_bytes / 8);
    let mut batch = Batch::with_capacity(shard, bytes, limits.max_records.min(bytes / 64 + 1));
    if let Some(previous) = previous {
        batch.reserve_keys_and_topics(previous.key_bytes(), previous.topic_bytes());
        batch.reserve_index_fields(previous.index_fields_len());
    }
    batch
}

/// Starts shard `settings.id` on its own thread, reading `sockets` until `shutdown`.
///
/// At shutdown the shard stops accepting, takes what its sockets already received, hands every
/// record to its ring (waiting for the sink as needed) and closes the ring by dropping
/// `producer`.
///
/// # Errors
/// When the thread cannot be spawned.
/// What the composition root asks of a running shard.
pub enum ShardCommand {
    /// Read these sockets (one listener's share for this shard) until `stop` fires: how
    /// listeners are opened at start and added by a live reload. Firing `stop` closes them
    /// again, without touching the shard's other listeners; their connections finish what they
    /// received.
    Listen {
        sockets: Vec<(ListenerContext, ShardSocket)>,
        stop: Shutdown,
    },
    /// Cut batches by these limits from now on ([`Shard::set_limits`]).
    SetLimits(BatchLimits),
}

/// Starts shard `settings.id` on a thread of its own. It reads the listeners that `commands`
/// hands it, each until its own stop; `shutdown` ends the shard once every listener's stop has
/// fired too (the server fires them together).
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn_shard(
    settings: ShardSettings,
    producer: RingProducer,
    commands: tokio::sync::mpsc::UnboundedReceiver<ShardCommand>,
    shutdown: Shutdown,
) -> io::Result<std::thread::JoinHandle<()>> {
    crate::runtime::spawn(format!("shard-{}", settings.id), move || {
        run_shard(settings, producer, commands, shutdown)
    })
}

async fn run_shard(
    settings: ShardSettings,
    producer: RingProducer,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<ShardCommand>,
    shutdown: Shutdown,
) {
    let shard = Rc::new(Shard::new(settings, producer));
    let connections = Rc::new(Connections::default());
    let mut readers = Vec::new();
    let (stop_ticker, ticker_stopped) = tokio::sync::oneshot::channel::<()>();
    let ticker = {
        let shard = shard.clone();
        tokio::task::spawn_local(async move {
            shard
                .run_ticker(async move {
                    let _ = ticker_stopped.await;
                })
                .await;
        })
    };
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    let mut carry_out = |command| match command {
        ShardCommand::Listen { sockets, stop } => {
            readers.retain(|r: &tokio::task::JoinHandle<()>| !r.is_finished());
            readers.extend(source::spawn_readers(&shard, &connections, sockets, &stop));
        }
        ShardCommand::SetLimits(limits) => {
            shard.set_limits(limits);
            // A batch already older than a shorter max_age is cut now.
            shard.flush(false);
        }
    };
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(command) => carry_out(command),
                None => {
                    (&mut stopped).await;
                    break;
                }
            },
            () = &mut stopped => break,
        }
    }
    // Commands sent before the shutdown are carried out even so: a listener handed over then
    // is opened (and closed again by its stop at once), so what its sockets hold is read.
    // `biased` alone does not promise it: under load (the bad-input tests, one gateway per
    // case, stopped a millisecond after start) `recv` was seen pending with three commands
    // queued when the shutdown won, and a whole shard's connections were lost.
    // `try_recv` takes what was sent.
    while let Ok(command) = commands.try_recv() {
        carry_out(command);
    }
    for reader in readers {
        let _ = reader.await;
    }
    connections.until_all_closed().await;
    shard.drain().await;
    let _ = stop_ticker.send(());
    let _ = ticker.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ring::ring;

    fn shard(ring_capacity: usize) -> (Rc<Shard>, crate::pipeline::ring::RingConsumer) {
        routed_shard(ring_capacity, None)
    }

    /// A shard cutting batches of two records, encoded raw.
    fn routed_shard(
        ring_capacity: usize,
        route: Option<Route>,
    ) -> (Rc<Shard>, crate::pipeline::ring::RingConsumer) {
        let (producer, consumer, _) = ring(0, ring_capacity);
        let settings = ShardSettings {
            id: 0,
            encoding: Encoding::Raw,
            legacy_zone: LegacyZone::Fixed(0),
            limits: BatchLimits {
                max_records: 2,
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(3600),
            },
            route: route.map(Arc::new),
        };
        (Rc::new(Shard::new(settings, producer)), consumer)
    }

    fn receive_two(shard: &Shard, metrics: &ListenerMetrics, blocked_before: bool) {
        shard.receive(metrics, |r| {
            assert_eq!(r.is_blocked(), blocked_before);
            r.message(b"<13>a", Format::Auto, &Sender::at("test"));
            r.message(b"<13>b", Format::Auto, &Sender::at("test"));
        });
    }

    #[test]
    fn routed_shard_puts_each_records_key_and_topic_in_the_batch() {
        let route = Route::new("{host}", Some("logs.{app}")).unwrap();
        let (shard, consumer) = routed_shard(1, Some(route));
        let metrics = ListenerMetrics::new("t", "tcp");
        shard.receive(&metrics, |r| {
            r.message(
                b"<13>Nov 21 02:53:47 web-1 postfix/smtpd[7]: a",
                Format::Auto,
                &Sender::at("tcp:1"),
            );
            // No host (null key), and no app: the fallback topic.
            r.message(b"<13>1 - - - - - - b", Format::Auto, &Sender::at("tcp:1"));
        });
        let batch = consumer.recv().expect("a full batch is cut");
        let entries: Vec<(&[u8], &[u8], &[u8])> =
            batch.iter().map(|e| (e.key, e.topic, e.value)).collect();
        assert_eq!(
            entries,
            vec![
                (
                    &b"web-1"[..],
                    &b"logs.postfix_smtpd"[..],
                    &b"<13>Nov 21 02:53:47 web-1 postfix/smtpd[7]: a"[..]
                ),
                (b"", b"", b"<13>1 - - - - - - b"),
            ]
        );
    }

    #[test]
    fn only_an_authenticated_agent_routes_by_its_logtail_sd_element() {
        let route = Route::new("", Some("{topic}")).unwrap();
        let (shard, consumer) = routed_shard(1, Some(route));
        let metrics = ListenerMetrics::new("t", "agent");
        let message = b"<13>1 - web1 - - - [logtail@32473 topic=\"security\"] m";
        shard.receive(&metrics, |r| {
            r.message(message, Format::Auto, &Sender::at("tcp:1"));
            let agent = Sender {
                agent_host: Some("web1"),
                ..Sender::at("tcp:2")
            };
            r.message(message, Format::Auto, &agent);
        });
        let batch = consumer.recv().expect("a full batch is cut");
        let topics: Vec<&[u8]> = batch.iter().map(|e| e.topic).collect();
        // The forged element falls back to the sink's topic; the agent's is used.
        assert_eq!(topics, vec![&b""[..], &b"security"[..]]);
    }

    #[test]
    fn unrouted_shard_leaves_keys_and_topics_empty() {
        let (shard, consumer) = shard(1);
        let metrics = ListenerMetrics::new("t", "tcp");
        receive_two(&shard, &metrics, false);
        let batch = consumer.recv().expect("a full batch is cut");
        assert_eq!(
            (batch.len(), batch.key_bytes(), batch.topic_bytes()),
            (2, 0, 0)
        );
    }

    #[test]
    fn full_ring_blocks_after_one_spare_batch_and_unblocks_when_the_sink_takes_one() {
        let (shard, consumer) = shard(1);
        let metrics = ListenerMetrics::new("t", "tcp");
        receive_two(&shard, &metrics, false); // cut into the ring
        receive_two(&shard, &metrics, false); // ring full: kept as pending
        assert!(!shard.is_blocked());
        receive_two(&shard, &metrics, false); // current batch full too
        assert!(shard.is_blocked());
        assert_eq!(metrics.received_lines.get(), 6);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let waiter = {
                let shard = shard.clone();
                tokio::task::spawn_local(async move { shard.until_unblocked().await })
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let ticker = {
                let shard = shard.clone();
                tokio::task::spawn_local(async move {
                    shard.run_ticker(async move { drop(stopped.await) }).await;
                })
            };
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished());
            // The sink takes one batch: the ticker moves pending into the ring and wakes us.
            assert_eq!(consumer.recv().map(|b| b.len()), Some(2));
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("unblocked")
                .unwrap();
            assert!(!shard.is_blocked());
            let _ = stop.send(());
            ticker.await.unwrap();
        });
        // What is left: one batch in the ring, one current. Draining hands over both.
        local.block_on(&runtime, async {
            let drain = {
                let shard = shard.clone();
                tokio::task::spawn_local(async move { shard.drain().await })
            };
            let mut taken = 0;
            while taken < 4 {
                tokio::task::yield_now().await;
                while let Ok(batch) = consumer.receiver().try_recv() {
                    consumer.taken(&batch);
                    taken += batch.len();
                }
            }
            drain.await.unwrap();
        });
        drop(shard);
        assert!(
            consumer.recv().is_none(),
            "ring closed once the shard is gone"
        );
    }

    /// A sender whose connection the kernel completed before the shutdown thinks its lines
    /// delivered: the shard reads them even when it was busy from the moment the connection
    /// arrived until the shutdown came (no turn of its runtime in between).
    #[test]
    fn connections_completed_before_the_shutdown_are_read_even_by_a_busy_shard() {
        use crate::source::config::{ListenerConfig, ListenerKind};
        use crate::source::framing::OversizePolicy;
        use crate::source::limits::{MemoryBudget, SourceLimits};
        use crate::source::{BoundListener, Format, ListenerDefaults};

        let (shard, consumer) = shard(64);
        let budget = MemoryBudget::new(1 << 20, Arc::default());
        let defaults = ListenerDefaults {
            format: Format::Auto,
            max_message_bytes: 64 * 1024,
            oversize: OversizePolicy::Truncate,
            limits: SourceLimits::default(),
            budget,
        };
        let config = ListenerConfig::inet(ListenerKind::Tcp, ([127, 0, 0, 1], 0).into());
        let bound = BoundListener::bind(&config, "tcp".into(), &defaults, 0, 1).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let (stop, shutdown) = Shutdown::new();
            let connections = Rc::new(Connections::default());
            let socket = bound.for_shard(0).unwrap().unwrap();
            let sockets = vec![(bound.context.clone(), socket)];
            let readers = source::spawn_readers(&shard, &connections, sockets, &shutdown);
            // The acceptor is now waiting for a connection.
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Busy (no await): a sender connects, sends and closes, and the shutdown comes.
            let mut client = std::net::TcpStream::connect(&bound.local).unwrap();
            let lines: String = (0..10).map(|i| format!("<13>line {i}\n")).collect();
            std::io::Write::write_all(&mut client, lines.as_bytes()).unwrap();
            drop(client);
            stop.send(true).unwrap();
            for reader in readers {
                reader.await.unwrap();
            }
            connections.until_all_closed().await;
            shard.drain().await;
        });
        let mut messages = Vec::new();
        while let Ok(batch) = consumer.receiver().try_recv() {
            consumer.taken(&batch);
            messages.extend(
                batch
                    .iter()
                    .map(|r| String::from_utf8_lossy(r.value).into_owned()),
            );
        }
        let expected: Vec<String> = (0..10).map(|i| format!("<13>line {i}")).collect();
        assert_eq!(messages, expected);
    }

    #[test]
    fn a_closed_ring_does_not_block_the_shard_or_its_drain() {
        let (shard, consumer) = shard(1);
        drop(consumer);
        let metrics = ListenerMetrics::new("t", "tcp");
        for _ in 0..3 {
            receive_two(&shard, &metrics, false);
        }
        assert!(!shard.is_blocked());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), shard.drain())
                .await
                .expect("drain ends even with the sink gone");
        });
    }
}
