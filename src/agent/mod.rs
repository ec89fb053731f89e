//! `logtail agent`: tails files on a host and ships their lines, resuming exactly where it left
//! off after any restart, configured from a file and live from etcd.
//!
//! ```text
//! config file ─┐
//!   (SIGHUP,   ├─► live ──► collect entries ──► tail ──► batches ──► ship ──► gateway / Kafka
//!   change)    │   (last good                  (files,   (LineBatch)  (thread)      │
//! etcd key ────┘    of each)                    lines)                              │
//!                                                 ▲                                  │
//!                     checkpoint ◄── acknowledged offsets ◄──── acknowledgements ◄───┘
//!                     (thread: temp + fsync + rename)
//! ```
//!
//! - [`config`]: the TOML file and the collect entries (TOML or etcd JSON), validated with
//!   errors that name their origin and key.
//! - [`live`]: runs the agent from the command line: loads the file, watches it (SIGHUP and
//!   changes) and the etcd key ([`etcd`]), and keeps the last good configuration of each.
//! - [`tail`]: one thread that finds files by glob, tells them apart by inode and
//!   [`fingerprint`], follows rename and copytruncate rotation, cuts lines ([`lines`]) into
//!   [`batch`]es, and keeps the checkpoint table.
//! - [`ship`]: the [`ship::Shipper`] trait and its implementations, on their own thread; their
//!   acknowledgements flow back to the tailer.
//! - [`checkpoint`]: the checkpoint file (format and invariants in its docs) and the thread
//!   that writes it.
//!
//! # Invariants
//!
//! - **No line lost across restarts.** A checkpoint only moves past lines the shipper
//!   acknowledged; a restart, clean or `kill -9`, resumes there. Lines are duplicated only when
//!   they were sent and not yet acknowledged (or acknowledged while the last checkpoint write was
//!   under way). Lines are lost only where the file itself lost them: a copytruncate without a
//!   copy beside the file, a file deleted or rotated away for good while the agent was stopped,
//!   and whatever the shipper acknowledged without having it durable: the `gateway` and `kafka`
//!   shippers acknowledge only what their destination made durable, the `syslog-tcp` shipper
//!   acknowledges on `write(2)` (see [`ship::syslog_tcp`]).
//! - **Bounded memory.** Reading stops while `max_unacked_batches` batches wait for their
//!   acknowledgement: a slow or absent destination leaves the data in the files.
//! - **Configuration changes disturb nothing else.** Added entries start, removed ones stop
//!   (their checkpoints stay), changed ones restart from where they were; the others keep
//!   reading. A bad configuration is rejected with a message naming its origin and key, and the
//!   last good one stays in force.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod etcd;
pub mod exposition;
pub mod fingerprint;
pub mod lines;
pub mod live;
pub mod ship;
pub mod tail;
pub mod wake;

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::metrics::{Counter, Gauge, LatencySummary};
use crate::segments::{LockFailure, lock_dir};
use checkpoint::{CheckpointError, CheckpointWriter};
use config::{AgentConfig, AgentConfigError, CollectEntry};
use tail::{Control, TailSummary, Tailer};

/// What the agent counts.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    /// Lines (or multiline events) read into batches.
    pub lines_read: Counter,
    /// Bytes of files consumed.
    pub bytes_read: Counter,
    /// Lines or events cut to `max_line_bytes`.
    pub lines_truncated: Counter,
    /// Lines in acknowledged batches.
    pub lines_acked: Counter,
    pub batches_sent: Counter,
    pub batches_acked: Counter,
    /// Files opened for reading (new, resumed, or after a truncation).
    pub files_opened: Counter,
    /// Files released after rotation or deletion, read to their end.
    pub files_released: Counter,
    /// Truncations whose content was found in a copy and read there.
    pub copytruncates_followed: Counter,
    /// Truncations without a copy: lines between the last read and the truncation are lost.
    pub truncations_without_copy: Counter,
    /// Reads of idle files brought forward because inotify saw them change.
    pub files_woken: Counter,
    /// Files tracked now.
    pub files_open: Gauge,
    /// Collect entries in force.
    pub entries: Gauge,
    /// Configurations applied (file or etcd).
    pub config_applied: Counter,
    /// Configurations rejected (the last good one stayed).
    pub config_rejected: Counter,
    /// Multiline events emitted (each joined from one line or more).
    pub multiline_events: Counter,
    /// Connection attempts to the destination after the first (`gateway`, `syslog-tcp`).
    pub reconnects: Counter,
    /// From a batch handed to the shipper to its acknowledgement.
    pub ack_latency: LatencySummary,
    /// When the checkpoint file was last written (unix microseconds; 0: not yet).
    pub checkpoint_written_at_us: Gauge,
    /// [`EtcdState`] as a number.
    pub etcd_state: Gauge,
    /// The revision of the etcd value last read.
    pub etcd_revision: Gauge,
    /// Each tracked file's lag, as of the last scan.
    pub file_lag: Mutex<Vec<FileLag>>,
}

/// A tracked file's lag behind its acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLag {
    /// Its collect entry.
    pub entry: String,
    pub path: String,
    /// The file's size minus its checkpoint: bytes written and not yet acknowledged.
    pub bytes: u64,
}

/// Where the etcd watch stands (`logtail_agent_etcd_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdState {
    /// No endpoints: etcd is not used.
    Off = 0,
    /// Connecting, or waiting to retry after a failure.
    Connecting = 1,
    /// The key was read and is watched.
    Watching = 2,
}

impl EtcdState {
    pub const ALL: [EtcdState; 3] = [EtcdState::Off, EtcdState::Connecting, EtcdState::Watching];

    pub fn as_str(self) -> &'static str {
        match self {
            EtcdState::Off => "off",
            EtcdState::Connecting => "connecting",
            EtcdState::Watching => "watching",
        }
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] AgentConfigError),
    #[error("agent data directory {dir}: {source}")]
    DataDir { dir: PathBuf, source: io::Error },
    #[error(
        "agent data directory {dir} is in use by another agent{holder}: give each agent its own \
         data_dir"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("cannot open the output of the {kind} shipper: {source}")]
    Shipper { kind: String, source: io::Error },
    #[error("cannot start the agent: {0}")]
    Runtime(io::Error),
    /// A thread of the agent ended on its own (a bug): exit, so that a supervisor restarts it
    /// from the checkpoints.
    #[error(
        "the agent's {0} thread ended unexpectedly; restart it (it resumes from its checkpoints)"
    )]
    ThreadEnded(&'static str),
}

/// A running agent: the tailer, shipping and checkpoint threads.
pub struct Agent {
    control: Sender<Control>,
    tailer: Option<JoinHandle<TailSummary>>,
    shipping: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    metrics: Arc<AgentMetrics>,
    shutdown_timeout: Duration,
    /// The metrics endpoint, and its address.
    endpoint: Option<Endpoint>,
    metrics_address: Option<SocketAddr>,
    _lock: File,
}

impl Agent {
    /// Locks the data directory, loads the checkpoints, opens the shipper, and starts collecting
    /// `config.collect`.
    ///
    /// # Errors
    /// A data directory that cannot be created or is locked by another agent, a damaged
    /// checkpoint file, a shipper output that cannot be opened.
    pub fn start(config: &AgentConfig) -> Result<Agent, AgentError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| AgentError::DataDir {
            dir: dir.clone(),
            source,
        })?;
        let lock = lock_dir(&dir, "agent data").map_err(|failure| match failure {
            LockFailure::Held(locked) => AgentError::Locked {
                dir: dir.clone(),
                holder: locked.holder,
            },
            LockFailure::Io(e) => AgentError::DataDir {
                dir: dir.clone(),
                source: e.source,
            },
        })?;
        let loaded = checkpoint::load(&dir)?;
        let metrics = Arc::new(AgentMetrics::default());
        let (acks_tx, acks_rx) = ship::ack_channel();
        let host = config.host_name();
        let shipper = ship::build(&config.ship, &host, acks_tx, &metrics).map_err(|source| {
            AgentError::Shipper {
                kind: config.ship.kind.as_str().to_string(),
                source,
            }
        })?;
        tracing::info!("shipping to {}", shipper.describe());
        let (batches_tx, batches_rx) = crossbeam_channel::unbounded();
        let (recycle_tx, recycle_rx) =
            crossbeam_channel::bounded(config.tail.max_unacked_batches + 1);
        let stop = Arc::new(AtomicBool::new(false));
        let shipping =
            ship::spawn_shipping_thread(shipper, batches_rx, recycle_tx, Arc::clone(&stop))
                .map_err(AgentError::Runtime)?;
        let writer = CheckpointWriter::start(dir.clone(), Arc::clone(&metrics))
            .map_err(AgentError::Runtime)?;
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let tailer = Tailer::new(
            config.tail.clone(),
            loaded,
            writer,
            batches_tx,
            recycle_rx,
            Arc::clone(&metrics),
        );
        let tailer = std::thread::Builder::new()
            .name("agent-tail".into())
            .spawn(move || tailer.run(&control_rx, &acks_rx))
            .map_err(AgentError::Runtime)?;
        let (endpoint, metrics_address) =
            start_endpoint(&config.metrics, &metrics, config.ship.kind.as_str());
        let agent = Agent {
            control: control_tx,
            tailer: Some(tailer),
            shipping: Some(shipping),
            stop,
            metrics,
            shutdown_timeout: Duration::from_millis(config.ship.shutdown_timeout_ms),
            endpoint,
            metrics_address,
            _lock: lock,
        };
        agent.set_entries(config.collect.clone());
        Ok(agent)
    }

    /// Puts `entries` in force (all of them: entries not listed stop).
    pub fn set_entries(&self, entries: Vec<CollectEntry>) {
        let _ = self.control.send(Control::SetEntries(entries));
    }

    pub fn metrics(&self) -> &Arc<AgentMetrics> {
        &self.metrics
    }

    /// Where the metrics endpoint listens, when it runs.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// The thread that ended on its own, if one did.
    pub fn ended_thread(&self) -> Option<&'static str> {
        if self.tailer.as_ref().is_some_and(JoinHandle::is_finished) {
            Some("tail")
        } else if self.shipping.as_ref().is_some_and(JoinHandle::is_finished) {
            Some("ship")
        } else {
            None
        }
    }

    /// Stops reading, waits up to `ship.shutdown_timeout_ms` for batches in flight to be
    /// acknowledged, writes the last checkpoint, and stops every thread.
    pub fn shutdown(mut self) -> TailSummary {
        self.stop_threads()
    }

    fn stop_threads(&mut self) -> TailSummary {
        let _ = self.control.send(Control::Shutdown(self.shutdown_timeout));
        let summary = self
            .tailer
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        // The last checkpoint is written: whatever the shipper still holds is read again at the
        // next start, so it need not be sent now.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(shipping) = self.shipping.take() {
            let _ = shipping.join();
        }
        // Last, so that the final counts can be scraped until the end.
        if let Some((thread, stop)) = self.endpoint.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
        summary
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.tailer.is_some() {
            self.stop_threads();
        }
    }
}

use crate::http_serve::Endpoint;

/// Binds and serves the metrics endpoint `config` asks for. A failure is logged and the agent
/// runs without it: a port taken by another program must not stop a host's logs.
fn start_endpoint(
    config: &exposition::AgentMetricsConfig,
    metrics: &Arc<AgentMetrics>,
    shipper: &'static str,
) -> (Option<Endpoint>, Option<SocketAddr>) {
    if !config.enabled {
        return (None, None);
    }
    let started = std::time::Instant::now();
    let bound = std::net::TcpListener::bind(config.address).and_then(|listener| {
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        Ok((listener, address))
    });
    let (listener, address) = match bound {
        Ok(bound) => bound,
        Err(e) => {
            tracing::warn!(
                "metrics endpoint: cannot listen on {}: {e}; collecting without metrics",
                config.address
            );
            return (None, None);
        }
    };
    let metrics = Arc::clone(metrics);
    let exposition = move || exposition::render(&metrics, started, shipper);
    match crate::http_serve::spawn_exposition(listener, exposition) {
        Ok(endpoint) => {
            tracing::info!("metrics at http://{address}/metrics");
            (Some(endpoint), Some(address))
        }
        Err(e) => {
            tracing::warn!("metrics endpoint: {e:#}; collecting without metrics");
            (None, None)
        }
    }
}
