//! The Kafka-compatible broker of a run: tansu, started by the harness, optionally behind a TCP
//! proxy so that it can be taken away and brought back.
//!
//! Why a proxy: tansu binds without `SO_REUSEADDR`, so it cannot listen on the same port again
//! for about a minute after it stopped. Clients are told (advertised listener) to use the
//! proxy's port, which never changes; the broker behind it can be cut off (a network outage) or
//! stopped and started again on a new port (a broker outage). A broker that must come back with
//! its data uses tansu's SQLite storage instead of memory.
//!
//! The command lines and the proxy are `test_support`'s, shared with the integration tests
//! (`test-fixtures/src/tansu.rs`, `tests/kafka_broker.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use test_support::net::listening;
use test_support::proxy::Proxy;
use test_support::tansu;

use crate::cost::CostMeter;
use crate::process::{Service, free_port};

/// A running broker with one topic.
pub struct Broker {
    binary: PathBuf,
    dir: PathBuf,
    durable: bool,
    /// The port clients use: the proxy's, or tansu's own when not fronted.
    pub client_port: u16,
    proxy: Option<Proxy>,
    tansu: Option<Service>,
    incarnation: u32,
    pub cost: CostMeter,
}

impl Broker {
    /// Starts tansu in `dir` and creates `topic` with `partitions` partitions. `fronted` puts
    /// the proxy in front; `durable` keeps the data in SQLite (it survives a restart).
    ///
    /// # Errors
    /// When tansu is missing, does not start, or the topic cannot be created.
    pub fn start(
        dir: &Path,
        topic: &str,
        partitions: u32,
        fronted: bool,
        durable: bool,
    ) -> anyhow::Result<Broker> {
        let binary = tansu::binary().with_context(|| {
            format!(
                "tansu is not installed: `{}` (tests/run.sh does it), or set \
                 TANSU=/path/to/tansu",
                tansu::INSTALL
            )
        })?;
        let proxy_port = if fronted { Some(free_port()?) } else { None };
        let mut broker = Broker {
            binary,
            dir: dir.to_path_buf(),
            durable,
            client_port: proxy_port.unwrap_or(0),
            proxy: None,
            tansu: None,
            incarnation: 0,
            cost: CostMeter::default(),
        };
        let port = broker.spawn_tansu(proxy_port)?;
        if let Some(proxy_port) = proxy_port {
            let upstream = SocketAddr::from(([127, 0, 0, 1], port));
            broker.proxy = Some(
                Proxy::start_fixing_api_versions(proxy_port, upstream)
                    .with_context(|| format!("binding the broker proxy on port {proxy_port}"))?,
            );
        } else {
            broker.client_port = port;
        }
        let status = tansu::create_topic_command(&broker.binary, port, topic, partitions)
            .stderr(Stdio::null())
            .status()
            .context("running `tansu topic create`")?;
        if !status.success() {
            bail!("`tansu topic create {topic}` failed ({status})");
        }
        if let Some(t) = &broker.tansu {
            broker.cost.start(t.pid());
        }
        Ok(broker)
    }

    /// Starts a tansu on a new port, advertising `advertised` (or itself); returns its port.
    fn spawn_tansu(&mut self, advertised: Option<u16>) -> anyhow::Result<u16> {
        let port = free_port()?;
        // tansu takes the SQLite path relative to its working directory, `self.dir`.
        let storage = if self.durable {
            "sqlite://tansu.db".to_string()
        } else {
            "memory://tansu/".to_string()
        };
        let command = tansu::broker_command(&self.binary, &self.dir, port, advertised, &storage);
        self.incarnation += 1;
        let log = self.dir.join(format!("tansu-{}.log", self.incarnation));
        let mut tansu = Service::spawn("tansu", command, &log)?;
        tansu.wait_ready(Duration::from_secs(30), |_| listening(port))?;
        self.tansu = Some(tansu);
        Ok(port)
    }

    /// `HOST:PORT` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Cuts every connection to the broker and refuses new ones (the broker keeps running).
    pub fn cut_network(&mut self) {
        if let Some(p) = &mut self.proxy {
            p.cut();
        }
    }

    /// Forwards connections to the broker again.
    ///
    /// # Errors
    /// When the proxy port cannot be bound again.
    pub fn restore_network(&mut self) -> anyhow::Result<()> {
        match &mut self.proxy {
            Some(p) => p
                .restore(None)
                .with_context(|| format!("binding the broker proxy on port {}", p.port)),
            None => Ok(()),
        }
    }

    /// Stops the broker process (SIGTERM) behind a cut proxy.
    pub fn stop(&mut self) {
        self.cut_network();
        if let Some(t) = self.tansu.take() {
            let ended = t.stop(libc::SIGTERM, Duration::from_secs(10));
            self.cost.ended(ended.cpu_seconds);
        }
    }

    /// Starts the broker again on a new port, with the same storage, and points the proxy at
    /// it.
    ///
    /// # Errors
    /// When the broker is not fronted, or does not start.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let Some(proxy_port) = self.proxy.as_ref().map(|p| p.port) else {
            bail!("a broker without a proxy in front cannot be restarted on the same address");
        };
        let port = self.spawn_tansu(Some(proxy_port))?;
        if let Some(t) = &self.tansu {
            self.cost.restarted(t.pid());
        }
        if let Some(p) = &mut self.proxy {
            p.restore(Some(SocketAddr::from(([127, 0, 0, 1], port))))
                .with_context(|| format!("binding the broker proxy on port {}", p.port))?;
        }
        Ok(())
    }

    /// Sends `signal` to the broker process (SIGSTOP, SIGCONT).
    pub fn signal(&self, signal: i32) {
        if let Some(t) = &self.tansu {
            // SAFETY: signalling our own child, not yet reaped (we hold its Service).
            unsafe { libc::kill(t.pid() as i32, signal) };
        }
    }

    /// Samples the broker's peak RSS.
    pub fn sample(&mut self) {
        self.cost.sample();
    }
}
