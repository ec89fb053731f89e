//! The agents an agent listener has seen: who is connected now, from where, how many lines each
//! sent, and when each was last heard from (the HTTP API's `GET /api/v1/status`).
//!
//! An agent connection registers itself once its HELLO is accepted ([`ConnectedAgents::connect`])
//! and holds the returned [`AgentConnection`]; each batch it takes adds to its counters with
//! relaxed atomics (no lock per batch); dropping the connection marks the agent disconnected.
//! Disconnected agents stay listed for [`KEEP_DISCONNECTED`] (at most [`MAX_DISCONNECTED`] of
//! them, and only the last connection of each host), so a console shows an agent that went
//! away, not only the ones still there.
//!
//! Lock: `entries` is taken on connect, disconnect and snapshot, never per batch.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::time::now_unix_micros;

/// How long a disconnected agent stays listed.
pub const KEEP_DISCONNECTED: Duration = Duration::from_secs(3600);
/// The most disconnected agents listed (the most recently seen are kept).
pub const MAX_DISCONNECTED: usize = 1000;

/// The agents of one listener.
#[derive(Debug, Default)]
pub struct ConnectedAgents {
    entries: Mutex<Vec<Arc<AgentPresence>>>,
}

/// One agent connection's counters.
#[derive(Debug)]
struct AgentPresence {
    host: String,
    address: String,
    connected_at_us: i64,
    lines: AtomicU64,
    last_seen_us: AtomicI64,
    /// 0 while connected.
    disconnected_at_us: AtomicI64,
}

/// What [`ConnectedAgents::snapshot`] tells of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSeen {
    /// The host it authenticated as (its HELLO).
    pub host: String,
    /// Its address, `IP:PORT`.
    pub address: String,
    pub connected: bool,
    /// When this connection was accepted (unix µs).
    pub connected_at_us: i64,
    /// Its last batch, or when it connected or disconnected, whichever is latest (unix µs).
    pub last_seen_us: i64,
    /// Lines taken from this connection.
    pub lines: u64,
}

/// Held by an agent connection while it lasts; dropping it marks the agent disconnected.
#[derive(Debug)]
pub struct AgentConnection {
    presence: Arc<AgentPresence>,
}

impl AgentConnection {
    /// Counts a batch of `lines` taken from the agent.
    pub fn batch(&self, lines: u64) {
        self.presence.lines.fetch_add(lines, Ordering::Relaxed);
        self.presence
            .last_seen_us
            .store(now_unix_micros(), Ordering::Relaxed);
    }
}

impl Drop for AgentConnection {
    fn drop(&mut self) {
        let now = now_unix_micros();
        self.presence.last_seen_us.store(now, Ordering::Relaxed);
        self.presence
            .disconnected_at_us
            .store(now.max(1), Ordering::Relaxed);
    }
}

impl ConnectedAgents {
    /// Registers a connection from `address` authenticated as `host`.
    pub fn connect(&self, host: &str, address: &str) -> AgentConnection {
        let now = now_unix_micros();
        let presence = Arc::new(AgentPresence {
            host: host.to_string(),
            address: address.to_string(),
            connected_at_us: now,
            lines: AtomicU64::new(0),
            last_seen_us: AtomicI64::new(now),
            disconnected_at_us: AtomicI64::new(0),
        });
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // The host's earlier connections that ended are replaced by this one.
        entries.retain(|e| !(e.host == host && e.disconnected_at_us.load(Ordering::Relaxed) > 0));
        prune(&mut entries, now);
        entries.push(presence.clone());
        AgentConnection { presence }
    }

    /// Every agent listed now: connected ones, and those that left within
    /// [`KEEP_DISCONNECTED`], in the order they connected.
    pub fn snapshot(&self) -> Vec<AgentSeen> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut entries, now_unix_micros());
        entries
            .iter()
            .map(|e| AgentSeen {
                host: e.host.clone(),
                address: e.address.clone(),
                connected: e.disconnected_at_us.load(Ordering::Relaxed) == 0,
                connected_at_us: e.connected_at_us,
                last_seen_us: e.last_seen_us.load(Ordering::Relaxed),
                lines: e.lines.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Forgets disconnected agents gone for longer than [`KEEP_DISCONNECTED`], and the longest
/// gone beyond [`MAX_DISCONNECTED`].
fn prune(entries: &mut Vec<Arc<AgentPresence>>, now_us: i64) {
    let keep_us = KEEP_DISCONNECTED.as_micros() as i64;
    entries.retain(|e| {
        let gone = e.disconnected_at_us.load(Ordering::Relaxed);
        gone == 0 || now_us.saturating_sub(gone) <= keep_us
    });
    let disconnected = entries
        .iter()
        .filter(|e| e.disconnected_at_us.load(Ordering::Relaxed) > 0)
        .count();
    if disconnected > MAX_DISCONNECTED {
        let mut gone: Vec<i64> = entries
            .iter()
            .map(|e| e.disconnected_at_us.load(Ordering::Relaxed))
            .filter(|&t| t > 0)
            .collect();
        gone.sort_unstable();
        let cutoff = gone[disconnected - MAX_DISCONNECTED - 1];
        entries.retain(|e| {
            let t = e.disconnected_at_us.load(Ordering::Relaxed);
            t == 0 || t > cutoff
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_listed_while_connected_and_after_they_leave_once_per_host() {
        let agents = ConnectedAgents::default();
        let web = agents.connect("web-01", "10.0.0.1:40000");
        web.batch(10);
        web.batch(5);
        let db = agents.connect("db-01", "10.0.0.2:40000");
        let seen = agents.snapshot();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (
                seen[0].host.as_str(),
                seen[0].address.as_str(),
                seen[0].lines,
                seen[0].connected
            ),
            ("web-01", "10.0.0.1:40000", 15, true)
        );
        assert!(seen[0].last_seen_us >= seen[0].connected_at_us);
        drop(web);
        let seen = agents.snapshot();
        assert_eq!(
            (seen[0].host.as_str(), seen[0].connected),
            ("web-01", false)
        );
        assert_eq!(seen[0].lines, 15);
        let again = agents.connect("web-01", "10.0.0.1:40001");
        let seen = agents.snapshot();
        let hosts: Vec<_> = seen
            .iter()
            .map(|s| (s.host.as_str(), s.address.as_str(), s.connected))
            .collect();
        assert_eq!(
            hosts,
            [
                ("db-01", "10.0.0.2:40000", true),
                ("web-01", "10.0.0.1:40001", true)
            ]
        );
        drop((again, db));
    }

    #[test]
    fn disconnected_agents_are_bounded() {
        let agents = ConnectedAgents::default();
        for i in 0..MAX_DISCONNECTED + 5 {
            drop(agents.connect(&format!("h{i}"), "10.0.0.1:1"));
        }
        let _live = agents.connect("live", "10.0.0.2:1");
        let seen = agents.snapshot();
        assert!(seen.len() <= MAX_DISCONNECTED + 1, "{}", seen.len());
        assert!(seen.iter().any(|s| s.host == "live" && s.connected));
    }
}
