//! Datagram listeners (UDP, Unix datagram): one message per datagram, received in batches.
//!
//! A reader takes up to [`DATAGRAMS_PER_CALL`] datagrams per `recvmmsg(2)` call, so a busy
//! socket costs one syscall per batch of messages, not one per message. The same code serves UDP
//! and Unix datagram sockets: tokio's `AsyncFd` waits for readiness on the raw descriptor.
//!
//! A datagram is one message; a trailing LF or CRLF (which many senders add) is stripped. A
//! datagram longer than `max_message_bytes` arrives cut by the kernel (`MSG_TRUNC`) and is kept
//! truncated or dropped per the oversize policy, and counted.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::ListenerContext;
use super::framing::OversizePolicy;
use super::intake::{Intake, Receive, Sender};

/// Datagrams taken per `recvmmsg` call.
pub const DATAGRAMS_PER_CALL: usize = 64;

/// The buffers of one `recvmmsg` call, reused for every call.
///
/// The `mmsghdr`s point into `payload`, `iovecs` and `addresses`; none of those vectors is ever
/// resized after construction, so the pointers stay valid for the life of the struct.
pub struct DatagramBuffers {
    slot_size: usize,
    payload: Vec<u8>,
    /// Only referenced through `headers`; kept here so it lives as long as they do.
    _iovecs: Vec<libc::iovec>,
    addresses: Vec<MaybeUninit<libc::sockaddr_storage>>,
    /// Each datagram's ancillary data: room for one `SO_RXQ_OVFL` counter (u64 words, for the
    /// alignment `cmsghdr` needs).
    _controls: Vec<u64>,
    control_words: usize,
    headers: Vec<libc::mmsghdr>,
    received: usize,
}

/// One received datagram.
pub struct Datagram<'a> {
    /// The payload (at most the slot size).
    pub payload: &'a [u8],
    /// True when the datagram was longer than the slot and the kernel cut it.
    pub truncated: bool,
    /// The sender, for UDP.
    pub peer: Option<SocketAddr>,
}

impl DatagramBuffers {
    /// Room for `count` datagrams of up to `slot_size` bytes each.
    pub fn new(count: usize, slot_size: usize) -> Self {
        let mut payload = vec![0u8; count * slot_size];
        let mut addresses = vec![MaybeUninit::<libc::sockaddr_storage>::zeroed(); count];
        let mut iovecs: Vec<libc::iovec> = (0..count)
            .map(|i| libc::iovec {
                iov_base: payload[i * slot_size..].as_mut_ptr().cast(),
                iov_len: slot_size,
            })
            .collect();
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        let control_bytes = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u32>() as u32) } as usize;
        let control_words = control_bytes.div_ceil(8);
        let mut controls = vec![0u64; count * control_words];
        let headers = (0..count)
            .map(|i| {
                // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_name = addresses[i].as_mut_ptr().cast();
                hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                hdr.msg_iov = &mut iovecs[i];
                hdr.msg_iovlen = 1;
                hdr.msg_control = controls[i * control_words..].as_mut_ptr().cast();
                hdr.msg_controllen = control_words * 8;
                libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                }
            })
            .collect();
        DatagramBuffers {
            slot_size,
            payload,
            _iovecs: iovecs,
            addresses,
            _controls: controls,
            control_words,
            headers,
            received: 0,
        }
    }

    /// Receives up to the buffer count of datagrams without blocking; returns how many.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is waiting, or the socket's error.
    pub fn receive(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        for hdr in &mut self.headers {
            // The kernel overwrites these on every call.
            hdr.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_hdr.msg_controllen = self.control_words * 8;
        }
        // SAFETY: every header points at live buffers owned by `self` (see the type's doc), and
        // `headers.len()` headers are passed.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last call (`i` < what [`receive`](Self::receive) returned).
    pub fn get(&self, i: usize) -> Datagram<'_> {
        let hdr = &self.headers[i];
        let len = (hdr.msg_len as usize).min(self.slot_size);
        let start = i * self.slot_size;
        let peer = if hdr.msg_hdr.msg_namelen > 0 {
            // SAFETY: the storage is initialized (zeroed at construction, then written by the
            // kernel), and sockaddr_storage is large and aligned enough for every address type.
            socket_addr(unsafe { self.addresses[i].assume_init_ref() })
        } else {
            None
        };
        Datagram {
            payload: &self.payload[start..start + len],
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            peer,
        }
    }
}

impl DatagramBuffers {
    /// The socket's count of datagrams the kernel dropped for a full receive buffer, as the
    /// last call's datagrams carry it (`SO_RXQ_OVFL`, once [`count_kernel_drops`] is set);
    /// `None` when none carried it (nothing dropped yet).
    pub fn kernel_drops(&self) -> Option<u32> {
        let mut most = None;
        for hdr in &self.headers[..self.received] {
            let msg = &hdr.msg_hdr;
            // SAFETY: `msg` is a header the kernel filled: msg_control points at our buffer
            // and msg_controllen says how much of it holds complete cmsghdrs.
            let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
            while !cmsg.is_null() {
                // SAFETY: a non-null cmsg from CMSG_FIRSTHDR/NXTHDR lies within the buffer.
                let c = unsafe { &*cmsg };
                if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SO_RXQ_OVFL {
                    // SAFETY: an SO_RXQ_OVFL message carries one u32, maybe unaligned.
                    let drops =
                        unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<u32>()) };
                    most = Some(most.map_or(drops, |m: u32| m.max(drops)));
                }
                // SAFETY: as above.
                cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
            }
        }
        most
    }
}

/// Asks the kernel to attach its drop count to received datagrams (`SO_RXQ_OVFL`).
///
/// # Errors
/// The `setsockopt` error (a socket type without the option).
pub fn count_kernel_drops(fd: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a valid descriptor and a pointer to a c_int of the given size.
    let set = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Adds to `dropped_total{reason="kernel"}` what a socket's kernel drop count grew by.
#[derive(Debug, Default)]
struct KernelDrops {
    seen: u32,
}

impl KernelDrops {
    fn update(&mut self, buffers: &DatagramBuffers, listener: &ListenerContext) {
        if let Some(total) = buffers.kernel_drops()
            && total != self.seen
        {
            // The kernel's counter is a u32 that wraps.
            let new = total.wrapping_sub(self.seen);
            self.seen = total;
            listener.metrics.dropped_kernel.add(u64::from(new));
            listener.warning.warn(|| {
                format!(
                    "listener {}: the kernel dropped {new} datagrams for a full receive buffer (raise receive_buffer_bytes; counted in logtail_dropped_total{{reason=\"kernel\"}})",
                    listener.name
                )
            });
        }
    }
}

/// The IPv4 or IPv6 address in `storage`, if it holds one.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Formats a peer address once and reuses the text while the next datagrams come from the same
/// peer (the common case: a burst from one device), so the hot path does not format per line.
#[derive(Default)]
struct PeerText {
    peer: Option<SocketAddr>,
    text: String,
}

impl PeerText {
    fn get(&mut self, peer: SocketAddr) -> &str {
        if self.peer != Some(peer) {
            use std::fmt::Write as _;
            self.text.clear();
            let _ = write!(self.text, "{peer}");
            self.peer = Some(peer);
        }
        &self.text
    }
}

/// Reads `socket` until `shutdown` resolves, then takes what is already queued and returns.
pub async fn run<I: Intake>(
    shard: &I,
    listener: &ListenerContext,
    socket: OwnedFd,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // SAFETY: an OwnedFd is a valid descriptor that stays open, and always the same one, until
    // the AsyncFd that owns it is dropped.
    let socket = match unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(listener = %listener.name, "cannot watch socket: {e}");
            return;
        }
    };
    let mut buffers = DatagramBuffers::new(DATAGRAMS_PER_CALL, listener.max_message_bytes);
    let mut peer_text = PeerText::default();
    let mut drops = KernelDrops::default();
    if let Err(e) = count_kernel_drops(socket.get_ref()) {
        tracing::info!(listener = %listener.name, "kernel drops will not be counted: {e}");
    }
    tokio::pin!(shutdown);
    loop {
        let mut ready = tokio::select! {
            _ = &mut shutdown => break,
            ready = socket.readable() => match ready {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::error!(listener = %listener.name, "socket failed: {e}");
                    return;
                }
            },
        };
        // Drain what is queued, up to a bound so the shard's other tasks get their turn.
        for _ in 0..16 {
            match ready.try_io(|fd| buffers.receive(fd)) {
                Ok(Ok(n)) => {
                    drops.update(&buffers, listener);
                    deliver(shard, listener, &buffers, n, &mut peer_text);
                }
                Ok(Err(e)) => {
                    listener
                        .warning
                        .warn(|| format!("listener {}: receive failed: {e}", listener.name));
                    break;
                }
                Err(_would_block) => break,
            }
        }
    }
    // Datagrams the kernel already accepted are ours to keep: take them before closing.
    loop {
        match buffers.receive(socket.get_ref()) {
            Ok(n) if n > 0 => {
                drops.update(&buffers, listener);
                deliver(shard, listener, &buffers, n, &mut peer_text);
            }
            _ => break,
        }
    }
}

fn deliver<I: Intake>(
    shard: &I,
    listener: &ListenerContext,
    buffers: &DatagramBuffers,
    count: usize,
    peer_text: &mut PeerText,
) {
    let metrics = &*listener.metrics;
    // Which datagrams their peers' rates let in, decided under the rate table's lock, which
    // is let go before any of them is parsed.
    let mut over_rate = [false; DATAGRAMS_PER_CALL];
    if let Some(rates) = &listener.peer_rates {
        let mut dropped = 0;
        rates.gate(std::time::Instant::now(), |gate| {
            for (i, over) in over_rate.iter_mut().enumerate().take(count) {
                let datagram = buffers.get(i);
                if let Some(peer) = datagram.peer {
                    *over = !gate.admit(peer.ip(), datagram.payload.len());
                    dropped += u64::from(*over);
                }
            }
        });
        if dropped > 0 {
            metrics.received_lines.add(dropped);
            metrics.dropped_rate_limit.add(dropped);
            listener.warning.warn(|| {
                format!(
                    "listener {}: datagrams over their address's rate, dropped (counted in logtail_dropped_total{{reason=\"rate_limit\"}})",
                    listener.name
                )
            });
        }
    }
    shard.receive(metrics, |receive| {
        if receive.is_blocked() {
            // Received, then dropped: both counts, so received = stored + dropped holds.
            metrics.received_lines.add(count as u64);
            metrics.dropped_ring_full.add(count as u64);
            listener.warning.warn(|| {
                format!(
                    "listener {}: the sink is behind, dropping datagrams (counted in logtail_dropped_total{{reason=\"ring_full\"}})",
                    listener.name
                )
            });
            return;
        }
        for (i, _) in over_rate.iter().enumerate().take(count).filter(|(_, over)| !**over) {
            let datagram = buffers.get(i);
            let mut message = datagram.payload;
            if datagram.truncated {
                match listener.oversize {
                    OversizePolicy::Truncate => metrics.truncated.add(1),
                    OversizePolicy::Drop => {
                        metrics.dropped_oversize.add(1);
                        continue;
                    }
                }
            } else {
                message = strip_line_end(message);
            }
            if message.is_empty() {
                continue;
            }
            let source = match datagram.peer {
                Some(peer) => peer_text.get(peer),
                None => &listener.source,
            };
            let sender = Sender::at(source).with_host_if_missing(listener.host_if_missing.as_deref());
            receive.message(message, listener.format, &sender);
        }
    });
}

/// Strips one trailing LF or CRLF.
fn strip_line_end(message: &[u8]) -> &[u8] {
    let message = message.strip_suffix(b"\n").unwrap_or(message);
    message.strip_suffix(b"\r").unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_the_kernel_dropped_are_counted_exactly() {
        let receiver =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        receiver.set_recv_buffer_size(4096).unwrap();
        receiver
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        receiver.set_nonblocking(true).unwrap();
        let receiver: std::net::UdpSocket = receiver.into();
        count_kernel_drops(&receiver).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let mut buffers = DatagramBuffers::new(64, 64);
        let drain = |buffers: &mut DatagramBuffers| {
            let (mut count, mut drops) = (0, None);
            while let Ok(n) = buffers.receive(&receiver) {
                count += n;
                drops = buffers.kernel_drops().or(drops);
            }
            (count, drops)
        };
        for _ in 0..1000 {
            sender.send_to(b"<13>flood", to).unwrap();
        }
        let (received, _) = drain(&mut buffers);
        assert!(received > 0 && received < 1000, "{received} received");
        // The next datagram carries the socket's drop count.
        sender.send_to(b"<13>after", to).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(drain(&mut buffers), (1, Some(1000 - received as u32)));
    }

    #[test]
    fn receives_a_batch_of_datagrams_with_peers_and_truncation() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        sender.send_to(b"<13>one\n", to).unwrap();
        sender.send_to(b"<13>two", to).unwrap();
        sender.send_to(b"<13>a long one", to).unwrap();
        let mut buffers = DatagramBuffers::new(8, 8);
        receiver.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        for _ in 0..100 {
            match buffers.receive(&receiver) {
                Ok(n) => {
                    for i in 0..n {
                        let d = buffers.get(i);
                        got.push((d.payload.to_vec(), d.truncated, d.peer));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() == 3 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        }
        let peer = Some(sender.local_addr().unwrap());
        assert_eq!(
            got,
            vec![
                (b"<13>one\n".to_vec(), false, peer),
                (b"<13>two".to_vec(), false, peer),
                (b"<13>a lo".to_vec(), true, peer),
            ]
        );
    }

    #[test]
    fn one_line_end_is_stripped() {
        assert_eq!(strip_line_end(b"a\r\n"), b"a");
        assert_eq!(strip_line_end(b"a\n\n"), b"a\n");
        assert_eq!(strip_line_end(b"a"), b"a");
    }
}
