//! Running the agent: its configuration sources, watched while it runs.
//!
//! The collect entries in force are those of the TOML file plus those of the etcd key; names
//! must be distinct across both. Each source keeps its last good value:
//!
//! - **The file** is read again on SIGHUP and when it changes (its modification time, size or
//!   inode, checked every second, so an editor's write-and-rename is seen too). Only its
//!   `[[collect]]` entries change live; other changes are logged and wait for a restart.
//! - **etcd** is watched ([`super::etcd`]). Each accepted value is also saved as
//!   `DATA_DIR/etcd-config.json`, which is used at start until etcd answers, so an agent that
//!   restarts while etcd is down keeps collecting what it collected.
//!
//! A value that does not parse or validate, or whose names clash with the other source's, is
//! rejected: the error is logged (origin, key, what is allowed), counted
//! (`config_rejected`), and the last good value of that source stays in force.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::config::{AgentConfig, CollectEntry, ConfigOrigin, entries_from_json};
use super::etcd::{self, EtcdSource, EtcdUpdate};
use super::{Agent, AgentError};
use crate::agent::checkpoint::replace_file;

/// The cached etcd configuration, in the data directory.
pub const ETCD_CACHE_FILE: &str = "etcd-config.json";

/// What the command line gives.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--config`: the TOML file.
    pub config: Option<PathBuf>,
    /// `--etcd`: endpoints, overriding `[etcd] endpoints`.
    pub etcd: Vec<String>,
    /// `--host`: overrides `host`.
    pub host: Option<String>,
    /// `--etcd-key`: overrides `[etcd] key`.
    pub etcd_key: Option<String>,
}

/// The configuration of `options`, command-line overrides applied, validated.
///
/// # Errors
/// What [`AgentConfig::load`] reports, or a bad override (named as from the command line).
pub fn load_config(options: &RunOptions) -> Result<AgentConfig, AgentError> {
    let mut config = AgentConfig::load(options.config.as_deref())?;
    if !options.etcd.is_empty() || options.host.is_some() || options.etcd_key.is_some() {
        if !options.etcd.is_empty() {
            config.etcd.endpoints = options.etcd.clone();
        }
        if options.host.is_some() {
            config.host = options.host.clone();
        }
        if options.etcd_key.is_some() {
            config.etcd.key = options.etcd_key.clone();
        }
        config.validate(&ConfigOrigin::CommandLine)?;
    }
    Ok(config)
}

/// The entries of both sources, with their last good values.
struct Sources {
    file: Vec<CollectEntry>,
    file_origin: ConfigOrigin,
    etcd: Vec<CollectEntry>,
    etcd_origin: ConfigOrigin,
}

impl Sources {
    /// Puts the file's entries in force, unless a name is also an etcd entry's.
    fn set_file(&mut self, entries: Vec<CollectEntry>) -> Result<(), String> {
        clash(&entries, &self.file_origin, &self.etcd, &self.etcd_origin)?;
        self.file = entries;
        Ok(())
    }

    /// Puts etcd's entries in force, unless a name is also an entry of the file.
    fn set_etcd(&mut self, entries: Vec<CollectEntry>, origin: ConfigOrigin) -> Result<(), String> {
        clash(&self.file, &self.file_origin, &entries, &origin)?;
        self.etcd = entries;
        self.etcd_origin = origin;
        Ok(())
    }

    fn all(&self) -> Vec<CollectEntry> {
        self.file.iter().chain(&self.etcd).cloned().collect()
    }
}

/// An error naming the first etcd entry whose name is also an entry of the file.
fn clash(
    file: &[CollectEntry],
    file_origin: &ConfigOrigin,
    etcd: &[CollectEntry],
    etcd_origin: &ConfigOrigin,
) -> Result<(), String> {
    match etcd
        .iter()
        .enumerate()
        .find(|(_, e)| file.iter().any(|f| f.name == e.name))
    {
        Some((i, entry)) => Err(format!(
            "{etcd_origin}: collect[{i}].name: {:?} is also an entry of {file_origin}; names \
             must be distinct",
            entry.name
        )),
        None => Ok(()),
    }
}

/// Runs the agent until SIGTERM or SIGINT. See the [module docs](self).
///
/// # Errors
/// A configuration or start-up error (see [`Agent::start`]); nothing after start is fatal.
pub fn run(options: RunOptions) -> Result<(), AgentError> {
    // The file's stamp before it is read: a change made while the agent starts is then seen
    // by the watch below (the metrics endpoint answers before the watch begins).
    let mut stamp = options
        .config
        .as_deref()
        .and_then(crate::setting::file_stamp);
    let mut config = load_config(&options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    // Signal handlers go in first, so that an early SIGTERM is a clean stop too.
    let (mut terminate, mut interrupt, mut hangup) = {
        let _guard = runtime.enter();
        (
            signal(SignalKind::terminate()).map_err(AgentError::Runtime)?,
            signal(SignalKind::interrupt()).map_err(AgentError::Runtime)?,
            signal(SignalKind::hangup()).map_err(AgentError::Runtime)?,
        )
    };
    let file_origin = options
        .config
        .clone()
        .map_or(ConfigOrigin::Defaults, ConfigOrigin::File);
    let use_etcd = !config.etcd.endpoints.is_empty();
    let etcd_key = config.etcd_key();
    let mut sources = Sources {
        file: config.collect.clone(),
        file_origin,
        etcd: Vec::new(),
        etcd_origin: ConfigOrigin::Etcd {
            key: etcd_key.clone(),
            revision: 0,
        },
    };
    let cache_path = config.data_dir.join(ETCD_CACHE_FILE);
    if use_etcd && let Some((entries, origin)) = read_cache(&cache_path) {
        let count = entries.len();
        match sources.set_etcd(entries, origin) {
            Ok(()) => tracing::info!(
                "until etcd answers: {count} collect entries from {}",
                sources.etcd_origin
            ),
            Err(e) => tracing::warn!("not using the cached etcd configuration: {e}"),
        }
    }
    config.collect = sources.all();
    if !use_etcd && config.collect.is_empty() {
        tracing::warn!(
            "no collect entries: give [[collect]] tables in the config file, or etcd endpoints \
             (--etcd); nothing is collected until then"
        );
    }
    let agent = Agent::start(&config)?;
    tracing::info!(
        "agent running: host {}, {} collect entries{}",
        config.host_name(),
        config.collect.len(),
        if use_etcd {
            format!(", etcd key {etcd_key}")
        } else {
            String::new()
        }
    );
    let ended = runtime.block_on(async {
        let (etcd_tx, mut etcd_rx) = tokio::sync::mpsc::unbounded_channel();
        if use_etcd {
            let source = EtcdSource {
                endpoints: config.etcd.endpoints.clone(),
                key: etcd_key.clone(),
                connect_timeout: Duration::from_millis(config.etcd.connect_timeout_ms),
            };
            tokio::spawn(etcd::watch(source, etcd_tx, agent.metrics().clone()));
        } else {
            drop(etcd_tx);
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break None; }
                _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break None; }
                _ = hangup.recv() => {
                    if let Some(path) = &options.config {
                        tracing::info!("SIGHUP: reading {} again", path.display());
                        stamp = crate::setting::file_stamp(path);
                        reload_file(path, &config, &mut sources, &agent);
                    }
                }
                _ = tick.tick() => {
                    if let Some(thread) = agent.ended_thread() {
                        break Some(thread);
                    }
                    if let Some(path) = &options.config {
                        let now = crate::setting::file_stamp(path);
                        if now.is_some() && now != stamp {
                            stamp = now;
                            tracing::info!("{} changed: reading it again", path.display());
                            reload_file(path, &config, &mut sources, &agent);
                        }
                    }
                }
                Some(update) = etcd_rx.recv() => apply_etcd(update, &config, &mut sources, &agent),
            }
        }
    });
    let metrics = agent.metrics().clone();
    let summary = agent.shutdown();
    tracing::info!(
        "stopped: {} lines read, {} acknowledged, {} batches left unacknowledged (sent again at \
         the next start)",
        metrics.lines_read.get(),
        metrics.lines_acked.get(),
        summary.unacknowledged_batches
    );
    match ended {
        Some(thread) => Err(AgentError::ThreadEnded(thread)),
        None => Ok(()),
    }
}

fn reload_file(path: &Path, running: &AgentConfig, sources: &mut Sources, agent: &Agent) {
    let metrics = agent.metrics();
    let new = match AgentConfig::load(Some(path)) {
        Ok(new) => new,
        Err(e) => {
            metrics.config_rejected.add(1);
            tracing::error!("{e}; keeping the last good configuration");
            return;
        }
    };
    let mut outside_collect = new.clone();
    outside_collect.collect.clear();
    outside_collect.host = running.host.clone().or(outside_collect.host);
    outside_collect.etcd = running.etcd.clone();
    let mut running_outside = running.clone();
    running_outside.collect.clear();
    if outside_collect != running_outside {
        tracing::warn!(
            "{}: settings outside [[collect]] changed; they take effect at the next start",
            path.display()
        );
    }
    if let Err(e) = sources.set_file(new.collect) {
        metrics.config_rejected.add(1);
        tracing::error!("{e}; keeping the last good configuration");
        return;
    }
    metrics.config_applied.add(1);
    agent.set_entries(sources.all());
}

fn apply_etcd(update: EtcdUpdate, config: &AgentConfig, sources: &mut Sources, agent: &Agent) {
    let metrics = agent.metrics();
    let (entries, origin, raw) = match update {
        EtcdUpdate::Entries {
            entries,
            origin,
            raw,
        } => (entries, origin, raw),
        EtcdUpdate::Rejected(message) => {
            metrics.config_rejected.add(1);
            tracing::error!("{message}; keeping the last good configuration");
            return;
        }
    };
    let count = entries.len();
    if let Err(e) = sources.set_etcd(entries, origin) {
        metrics.config_rejected.add(1);
        tracing::error!("{e}; keeping the last good configuration");
        return;
    }
    let origin = &sources.etcd_origin;
    if raw.is_none() {
        tracing::warn!("{origin}: no such key: no collect entries from etcd");
    }
    tracing::info!("{origin}: {count} collect entries");
    let cache = raw.unwrap_or_else(|| "{\"collect\": []}".to_string());
    if let Err(e) = replace_file(
        &config.data_dir,
        ETCD_CACHE_FILE,
        "etcd-config.json.tmp",
        cache.as_bytes(),
    ) {
        let path = config.data_dir.join(ETCD_CACHE_FILE);
        tracing::warn!("cannot save {}: {e}", path.display());
    }
    metrics.config_applied.add(1);
    agent.set_entries(sources.all());
}

/// The cached etcd entries, if the cache is there and valid.
fn read_cache(path: &Path) -> Option<(Vec<CollectEntry>, ConfigOrigin)> {
    let text = std::fs::read_to_string(path).ok()?;
    let origin = ConfigOrigin::File(path.to_path_buf());
    match entries_from_json(&text, &origin) {
        Ok(entries) => Some((entries, origin)),
        Err(e) => {
            tracing::warn!("ignoring the cached etcd configuration: {e}");
            None
        }
    }
}
