//! A TCP proxy the tests can cut: a network outage between the gateway and a real broker.
//! (Restarting tansu itself on the same port is not possible within a minute: it binds
//! without SO_REUSEADDR, so its own TIME_WAIT sockets make the new one fail.)

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Forwards connections from `127.0.0.1:port` to an upstream address while up.
pub struct Proxy {
    pub port: u16,
    upstream: SocketAddr,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    accepting: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Proxy {
    /// A proxy on `port`, up.
    pub fn start(port: u16, upstream: SocketAddr) -> Proxy {
        let mut proxy = Proxy {
            port,
            upstream,
            connections: Arc::default(),
            accepting: None,
        };
        proxy.restore();
        proxy
    }

    /// Closes every connection and refuses new ones (the port is closed).
    pub fn cut(&mut self) {
        if let Some((stop, thread)) = self.accepting.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
        for conn in self.connections.lock().expect("lock").drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    /// Accepts and forwards connections again.
    pub fn restore(&mut self) {
        // std sets SO_REUSEADDR, so the port can be bound again at once.
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("proxy port");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, connections, stopping) =
            (self.upstream, self.connections.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                forward(&client, &server, &connections);
            }
        });
        self.accepting = Some((stop, thread));
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
    let mut list = connections.lock().expect("lock");
    list.extend(
        [client, server]
            .into_iter()
            .filter_map(|s| s.try_clone().ok()),
    );
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
