//! The `syslog-tcp` shipper: lines to the gateway's TCP syslog listener, one RFC 5424 message
//! each, framed by RFC 6587 octet counting (so multiline events and any byte travel intact).
//!
//! Each line is an RFC 5424 message as [`super::rfc5424`] formats it, preceded by its length
//! and a space.
//!
//! **Not end-to-end acknowledged.** A batch is acknowledged once `write(2)` accepted all of it,
//! i.e. once it is in the kernel's socket buffer. If the connection breaks, whatever the buffers
//! held is lost, and a gateway that crashes loses what it had not stored; and a batch whose write
//! failed halfway is sent again whole on the next connection, so the lines before the break
//! arrive twice. The `gateway` shipper ([`super::gateway`]) closes these gaps.
//! Reconnection waits with exponential backoff and jitter ([`Backoff`]).

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::rfc5424::MessageFormatter;
use super::{AckSender, Backoff, Shipper, Stopped, connect};
use crate::agent::batch::LineBatch;
use crate::log_limit::RateLimitedWarning;

/// See the [module docs](self).
pub struct SyslogTcpShipper {
    address: String,
    formatter: MessageFormatter,
    backoff: Backoff,
    acks: AckSender,
    connection: Option<TcpStream>,
    buf: Vec<u8>,
}

impl SyslogTcpShipper {
    pub fn new(address: String, host: String, backoff: Backoff, acks: AckSender) -> Self {
        SyslogTcpShipper {
            address,
            formatter: MessageFormatter::new(host),
            backoff,
            acks,
            connection: None,
            buf: Vec::with_capacity(1 << 20),
        }
    }

    /// Writes the batch's frames into `buf`.
    fn format_batch(&mut self, batch: &LineBatch) {
        self.formatter.start_batch(batch);
        self.buf.clear();
        for line in batch.lines() {
            let len = self.formatter.message_len(&line);
            self.buf.extend_from_slice(decimal(len, &mut [0; 20]));
            self.buf.push(b' ');
            self.formatter.write(&line, &mut self.buf);
        }
    }
}

/// False when the gateway closed the connection (it never sends anything, so a readable
/// socket means end of file or an error). Writes to such a connection would still succeed
/// until its reset arrives, and be lost: checking first, once per batch, narrows that window to
/// the batches sent while the gateway stops.
fn still_open(connection: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    if connection.set_nonblocking(true).is_err() {
        return false;
    }
    let open =
        matches!(connection.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    open && connection.set_nonblocking(false).is_ok()
}

/// `n`'s decimal digits, written into `scratch` (no allocation per line).
fn decimal(mut n: usize, scratch: &mut [u8; 20]) -> &[u8] {
    let mut at = scratch.len();
    loop {
        at -= 1;
        scratch[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &scratch[at..];
        }
    }
}

impl Shipper for SyslogTcpShipper {
    fn describe(&self) -> String {
        format!("syslog-tcp {}", self.address)
    }

    fn send(&mut self, batch: &LineBatch, stop: &AtomicBool) -> Result<(), Stopped> {
        static WARNING: RateLimitedWarning = RateLimitedWarning::new(Duration::from_secs(10));
        self.format_batch(batch);
        loop {
            let connection = match self.connection.take().filter(still_open) {
                Some(connection) => Ok(connection),
                None => connect(&self.address),
            };
            let result = connection.and_then(|mut c| c.write_all(&self.buf).map(|()| c));
            match result {
                Ok(connection) => {
                    self.connection = Some(connection);
                    self.backoff.reset();
                    break;
                }
                Err(e) => {
                    WARNING.warn(|| {
                        format!(
                            "cannot send to the gateway at {}: {e}; reconnecting with backoff \
                             (files are not read meanwhile)",
                            self.address
                        )
                    });
                    self.backoff.sleep(stop)?;
                }
            }
        }
        self.acks.acknowledge(batch.seq());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::batch::Source;
    use crate::agent::ship::ack_channel;
    use std::io::Read;
    use std::path::PathBuf;
    use std::sync::Arc;

    #[test]
    fn lines_go_out_octet_counted_with_the_entry_fields_as_structured_data() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (acks, acked) = ack_channel();
        let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(10));
        let mut shipper = SyslogTcpShipper::new(address, "web1".into(), backoff, acks);
        let source = Arc::new(Source {
            entry: "app".into(),
            path: PathBuf::from("/var/log/a]b.log"),
            topic: Some("logs".into()),
            app: "myapp".into(),
            tags: vec!["x".into(), "y".into()],
        });
        let mut batch = LineBatch::with_capacity(64, 2);
        batch.reset(1);
        batch.push(&source, b"hello", 6, false, || 1_795_229_627_000_001);
        batch.push(&source, b"two\nlines", 16, false, || 0);
        shipper.send(&batch, &AtomicBool::new(false)).unwrap();
        assert_eq!(acked.try_recv(), Ok(1));
        drop(shipper);
        let mut received = Vec::new();
        listener
            .accept()
            .unwrap()
            .0
            .read_to_end(&mut received)
            .unwrap();
        let message = "<14>1 2026-11-21T02:53:47.000001Z web1 myapp - - [logtail@32473 \
                       entry=\"app\" file=\"/var/log/a\\]b.log\" topic=\"logs\" tags=\"x,y\"] ";
        let first = format!("{message}hello");
        let second = format!("{message}two\nlines");
        assert_eq!(
            String::from_utf8(received).unwrap(),
            format!("{} {first}{} {second}", first.len(), second.len())
        );
    }

    #[test]
    fn decimal_digits() {
        for n in [0, 7, 10, 65536, usize::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}
