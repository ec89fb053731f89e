//! A realistic corpus of syslog lines, for the benchmarks (`benches/common`) and the load-test
//! harness (`loadtest/`).
//!
//! The mix follows what a gateway in front of a Linux fleet and some network gear sees:
//! about 50% RFC 5424 (a third of them with STRUCTURED-DATA), 40% RFC 3164 BSD lines (with and
//! without hostname, with and without `[pid]`), 10% Cisco IOS and ISO-timestamp variants.
//! Lines are about 200 bytes, mostly ASCII with the occasional quote, tab or UTF-8 word.
//! The same `(n, seed)` always gives the same lines.
//! [`json_record`] makes the encoded records the store and WAL benches move.

/// 2026-11-21T02:53:47Z: the corpus' timestamps lie in the ten minutes before it; use it as
/// the receive time.
pub const CORPUS_RECEIVED_AT_US: i64 = 1_795_229_627_000_000;

/// `n` syslog lines (without terminator) drawn from the mix described in the module docs.
pub fn realistic_mix(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64(seed);
    (0..n).map(|_| line(&mut rng)).collect()
}

/// SplitMix64: tiny, fast and good enough to vary a corpus (no `rand` dependency).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Appends one JSON record of about 300 bytes, like what the gateway stores for a parsed
/// access-log line (for the store and WAL benches, which move encoded records, not syslog).
pub fn json_record(rng: &mut SplitMix64, buf: &mut Vec<u8>) {
    use std::io::Write;
    let host = rng.pick(&["web-01", "web-02", "db-primary", "cache-7", "edge-fra-3"]);
    let app = rng.pick(&["nginx", "sshd", "postgres", "kernel", "cron"]);
    let path = rng.pick(&[
        "/api/v1/users",
        "/api/v1/orders",
        "/healthz",
        "/static/app.js",
    ]);
    let status = rng.pick(&["200", "200", "200", "304", "404", "500"]);
    let _ = write!(
        buf,
        r#"{{"timestamp":"2025-03-14T09:{:02}:{:02}.{:06}Z","host":"{host}","app":"{app}","pid":{},"severity":"info","facility":"daemon","msg":"GET {path}/{} HTTP/1.1 {status} {} {}.{:03} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"","region":"eu-central-1","env":"production","request_id":"{:016x}"}}"#,
        rng.next_u64() % 60,
        rng.next_u64() % 60,
        rng.next_u64() % 1_000_000,
        rng.next_u64() % 65536,
        rng.next_u64() % 100_000,
        rng.next_u64() % 50_000,
        rng.next_u64() % 3,
        rng.next_u64() % 1000,
        rng.next_u64(),
    );
}

const HOSTS: &[&str] = &[
    "web-01",
    "web-02",
    "web-03.prod.example.com",
    "db-primary",
    "db-replica-2",
    "cache-7",
    "lb-edge-1",
    "k8s-node-14.cluster.local",
    "build-agent-3",
    "10.20.30.40",
    "mail.example.org",
    "vpn-gw",
    "fw-core-1",
    "storage-nas-2",
    "monitor",
    "bastion",
];
const APPS: &[&str] = &[
    "sshd",
    "nginx",
    "postgres",
    "kernel",
    "systemd",
    "cron",
    "postfix/smtpd",
    "dockerd",
    "kubelet",
    "haproxy",
    "sudo",
    "CRON",
    "containerd",
    "redis-server",
    "app-api",
    "auditd",
];
const MSGIDS: &[&str] = &["-", "ID47", "REQ", "AUDIT", "CONN", "-", "-", "TXN"];
const MNEMONICS: &[&str] = &[
    "LINK-3-UPDOWN",
    "LINEPROTO-5-UPDOWN",
    "SYS-5-CONFIG_I",
    "SEC-6-IPACCESSLOGP",
    "DUAL-5-NBRCHANGE",
    "OSPF-5-ADJCHG",
];
const WORDS: &[&str] = &[
    "connection",
    "from",
    "accepted",
    "closed",
    "user",
    "request",
    "GET",
    "/api/v1/items",
    "status=200",
    "latency_ms=12",
    "failed",
    "password",
    "for",
    "invalid",
    "port",
    "session",
    "opened",
    "by",
    "uid=0",
    "timeout",
    "retrying",
    "backend",
    "upstream",
    "\"quoted\"",
    "path=C:\\temp",
    "tab\there",
    "caf\u{e9}",
    "\u{2713}",
    "error",
    "warning",
    "disk",
    "92%",
];

fn line(rng: &mut SplitMix64) -> Vec<u8> {
    let pri = rng.below(24) * 8 + rng.below(8);
    let mut out = match rng.below(10) {
        0..=4 => rfc5424_header(rng, pri),
        5..=8 => rfc3164_header(rng, pri),
        _ if rng.below(2) == 0 => cisco_header(rng, pri),
        _ => iso_header(rng, pri),
    };
    let target = 180 + rng.below(41);
    while out.len() < target {
        if !out.ends_with(b" ") {
            out.push(b' ');
        }
        out.extend_from_slice(rng.pick(WORDS).as_bytes());
    }
    out
}

/// A time of day on 2026-11-21 within the ten minutes before [`CORPUS_RECEIVED_AT_US`], as
/// live traffic has (hour, minute, second, microsecond).
fn clock(rng: &mut SplitMix64) -> (usize, usize, usize, usize) {
    let second_of_day = 2 * 3600 + 53 * 60 + 47 - rng.below(600);
    (
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        rng.below(1_000_000),
    )
}

fn rfc5424_header(rng: &mut SplitMix64, pri: usize) -> Vec<u8> {
    let (h, m, s, us) = clock(rng);
    let mut line = format!(
        "<{pri}>1 2026-11-21T{h:02}:{m:02}:{s:02}.{us:06}Z {} {} {} {} ",
        rng.pick(HOSTS),
        rng.pick(APPS),
        1000 + rng.below(60_000),
        rng.pick(MSGIDS),
    );
    if rng.below(3) == 0 {
        line.push_str(&format!(
            "[meta@32473 requestId=\"{:08x}\" user=\"u{}\" path=\"/a/b\\]c\"][origin ip=\"10.0.{}.{}\"]",
            rng.next_u64() as u32,
            rng.below(1000),
            rng.below(256),
            rng.below(256)
        ));
    } else {
        line.push('-');
    }
    line.push(' ');
    line.into_bytes()
}

fn rfc3164_header(rng: &mut SplitMix64, pri: usize) -> Vec<u8> {
    let (h, m, s, _) = clock(rng);
    let host = if rng.below(4) == 0 {
        String::new()
    } else {
        format!("{} ", rng.pick(HOSTS))
    };
    let pid = if rng.below(3) == 0 {
        String::new()
    } else {
        format!("[{}]", 100 + rng.below(60_000))
    };
    format!(
        "<{pri}>Nov 21 {h:02}:{m:02}:{s:02} {host}{}{pid}: ",
        rng.pick(APPS)
    )
    .into_bytes()
}

fn cisco_header(rng: &mut SplitMix64, pri: usize) -> Vec<u8> {
    let (h, m, s, us) = clock(rng);
    let host = if rng.below(2) == 0 {
        format!("{}: ", rng.pick(HOSTS))
    } else {
        String::new()
    };
    format!(
        "<{pri}>{}: {host}*Nov 21 {h:02}:{m:02}:{s:02}.{:03}: %{}: Interface Gi0/{}, changed state to up",
        rng.below(100_000),
        us / 1000,
        rng.pick(MNEMONICS),
        rng.below(48)
    )
    .into_bytes()
}

fn iso_header(rng: &mut SplitMix64, pri: usize) -> Vec<u8> {
    let (h, m, s, us) = clock(rng);
    format!(
        "<{pri}>2026-11-21T{h:02}:{m:02}:{s:02}.{us:06}+01:00 {} {}[{}]: ",
        rng.pick(HOSTS),
        rng.pick(APPS),
        100 + rng.below(60_000)
    )
    .into_bytes()
}
