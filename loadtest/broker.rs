//! The Kafka-compatible broker of a run: tansu, started by the harness, optionally behind a TCP
//! proxy so that it can be taken away and brought back.
//!
//! Why a proxy: tansu binds without `SO_REUSEADDR`, so it cannot listen on the same port again
//! for about a minute after it stopped. Clients are told (advertised listener) to use the
//! proxy's port, which never changes; the broker behind it can be cut off (a network outage) or
//! stopped and started again on a new port (a broker outage). A broker that must come back with
//! its data uses tansu's SQLite storage instead of memory.
//!
//! (`tests/common/{tansu,proxy}.rs` are the integration tests' twins of this: they panic where
//! the harness reports an error, and their proxy cannot move to a new upstream.)

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cost::CostMeter;
use crate::process::{Service, free_port, listening};

/// The tansu binary: `$TANSU`, else `tansu` on the PATH, else `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let path = Path::new(&std::env::var_os("HOME")?).join(".cargo/bin/tansu");
        path.is_file().then_some(path)
    })
}

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
        let binary = tansu_binary().context(
            "tansu is not installed: `cargo install --locked tansu --version 0.6.0 --features \
             dynostore,libsql` (tests/run.sh does it), or set TANSU=/path/to/tansu",
        )?;
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
            broker.proxy = Some(Proxy::start(
                proxy_port,
                SocketAddr::from(([127, 0, 0, 1], port)),
            )?);
        } else {
            broker.client_port = port;
        }
        let status = Command::new(&broker.binary)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{port}")])
            .stdout(Stdio::null())
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
        let mut command = Command::new(&self.binary);
        command
            .current_dir(&self.dir)
            .args(["broker", "--storage-engine", &storage])
            .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port)),
            ]);
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
            Some(p) => p.restore(None),
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
            p.restore(Some(SocketAddr::from(([127, 0, 0, 1], port))))?;
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

/// Forwards connections from `127.0.0.1:port` to an upstream address while up.
struct Proxy {
    port: u16,
    upstream: SocketAddr,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    accepting: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Proxy {
    fn start(port: u16, upstream: SocketAddr) -> anyhow::Result<Proxy> {
        let mut proxy = Proxy {
            port,
            upstream,
            connections: Arc::default(),
            accepting: None,
        };
        proxy.restore(None)?;
        Ok(proxy)
    }

    /// Closes every connection and refuses new ones (the port is closed).
    fn cut(&mut self) {
        if let Some((stop, thread)) = self.accepting.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
        if let Ok(mut list) = self.connections.lock() {
            for conn in list.drain(..) {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }

    /// Accepts and forwards connections again, to `upstream` when given.
    fn restore(&mut self, upstream: Option<SocketAddr>) -> anyhow::Result<()> {
        self.cut();
        if let Some(u) = upstream {
            self.upstream = u;
        }
        // std sets SO_REUSEADDR, so the port can be bound again at once.
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .with_context(|| format!("binding the broker proxy on port {}", self.port))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, connections, stopping) =
            (self.upstream, self.connections.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("broker-proxy".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    forward(&client, &server, &connections);
                }
            })?;
        self.accepting = Some((stop, thread));
        Ok(())
    }
}

fn forward(client: &TcpStream, server: &TcpStream, connections: &Mutex<Vec<TcpStream>>) {
    let pipe = |from: &TcpStream, to: &TcpStream| {
        let (mut from, mut to) = (from.try_clone()?, to.try_clone()?);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
        std::io::Result::Ok(())
    };
    if pipe(client, server)
        .and_then(|()| pipe(server, client))
        .is_err()
    {
        return;
    }
    if let Ok(mut list) = connections.lock() {
        list.extend(
            [client, server]
                .into_iter()
                .filter_map(|s| s.try_clone().ok()),
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
