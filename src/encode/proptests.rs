//! Property tests of the parsers together with the JSON encoder: no input makes them panic or
//! lose bytes, and generated RFC 5424 / RFC 3164 messages come back field for field.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Encoding, Envelope, encode};
use crate::parse::timestamp::{CivilTime, Offset, Timestamp, days_in_month};
use crate::parse::{Format, LegacyZone, ParseContext, Record, parse, structured_data};

/// 2026-06-15T12:00:00Z
const RECEIVED_US: i64 = 1_781_524_800_000_000;

const ENVELOPE: Envelope<'static> = Envelope::new(b"2026-06-15T12:00:00.000000Z", "test");

fn encode_json(input: &[u8], record: &Record) -> Value {
    let mut out = Vec::new();
    encode(Encoding::Json, input, record, &ENVELOPE, &mut out);
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(&out));
    })
}

/// What the JSON `message` should decode to: valid UTF-8 as is, each invalid byte as `\xNN`.
/// Written with `Utf8Error` (not the encoder's per-sequence check) to compare two methods.
fn expected_json_text(mut bytes: &[u8]) -> String {
    let mut text = String::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                text.push_str(valid);
                return text;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                text.push_str(std::str::from_utf8(valid).expect("valid prefix"));
                let bad = e.error_len().unwrap_or(rest.len());
                for b in &rest[..bad] {
                    text.push_str(&format!("\\x{b:02x}"));
                }
                bytes = &rest[bad..];
            }
        }
    }
}

/// Bytes that look like the start of a syslog message, to reach past the first check.
fn syslogish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let prefixes = prop::sample::select(vec![
        &b""[..],
        b"<13>",
        b"<13>1 ",
        b"<165>1 2003-10-11T22:14:15.003Z host app - ID - ",
        b"<13>1 - - - - - [a x=\"",
        b"<13>Nov 21 02:53:47 ",
        b"<13>Nov  1 02:53:47 host app[",
        b"<38>2026-11-21T02:53:47.123456+01:00 ",
        b"<189>123: *Nov 21 02:53:47.123: %",
        b"<189>12: host: ",
        b"Nov 21 02:53:47 ",
        b"<",
    ]);
    let tail = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        "[ -~]{0,120}".prop_map(String::into_bytes),
        "[\\[\\]\"\\\\=: a%0-9-]{0,60}".prop_map(String::into_bytes),
    ];
    (prefixes, tail).prop_map(|(prefix, tail)| [prefix, &tail[..]].concat())
}

fn format() -> impl Strategy<Value = Format> {
    prop::sample::select(vec![Format::Auto, Format::Rfc5424, Format::Rfc3164])
}

fn sd_name() -> impl Strategy<Value = String> {
    let byte = (33u8..=126).prop_filter("SD-NAME", |b| !matches!(b, b'=' | b']' | b'"'));
    prop::collection::vec(byte, 1..=32).prop_map(|b| String::from_utf8(b).expect("ASCII"))
}

fn header_field(max: usize) -> impl Strategy<Value = Option<String>> {
    let field = prop::collection::vec(33u8..=126, 1..=max)
        .prop_map(|b| String::from_utf8(b).expect("ASCII"))
        .prop_filter("not NILVALUE", |s| s != "-");
    prop::option::of(field)
}

#[derive(Debug, Clone)]
struct CivilParts {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

fn civil(years: std::ops::RangeInclusive<u16>) -> impl Strategy<Value = CivilParts> {
    (years, 1u8..=12, 1u8..=31, 0u8..24, 0u8..60, 0u8..60).prop_map(
        |(year, month, day, hour, minute, second)| CivilParts {
            year,
            month,
            day: day.min(days_in_month(year, month)),
            hour,
            minute,
            second,
        },
    )
}

fn rfc5424_timestamp() -> impl Strategy<Value = Timestamp> {
    let offset = prop_oneof![
        Just(Offset::Z),
        (prop::sample::select(vec![-1i32, 1]), 0i32..24, 0i32..60)
            .prop_map(|(sign, h, m)| Offset::Seconds(sign * (h * 3600 + m * 60))),
    ];
    (civil(0..=9999), 0u8..=9, 0u32..1_000_000_000, offset).prop_map(
        |(c, digits, nanos, offset)| {
            let unit = 10u32.pow(9 - u32::from(digits));
            Timestamp {
                civil: CivilTime {
                    year: c.year,
                    month: c.month,
                    day: c.day,
                    hour: c.hour,
                    minute: c.minute,
                    second: c.second,
                    nanos: if digits == 0 { 0 } else { nanos / unit * unit },
                    fraction_digits: digits,
                },
                offset,
            }
        },
    )
}

fn escape_sd_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

type Sd = BTreeMap<String, BTreeMap<String, String>>;

#[derive(Debug, Clone)]
struct Rfc5424Message {
    pri: u8,
    timestamp: Option<Timestamp>,
    host: Option<String>,
    app: Option<String>,
    procid: Option<String>,
    msgid: Option<String>,
    sd: Option<Sd>,
    msg: Option<String>,
    bom: bool,
}

impl Rfc5424Message {
    fn to_bytes(&self) -> Vec<u8> {
        let nil = |f: &Option<String>| f.clone().unwrap_or_else(|| "-".to_owned());
        let timestamp = self.timestamp.map_or_else(
            || "-".to_owned(),
            |t| {
                let mut out = Vec::new();
                t.write_rfc3339(&mut out);
                String::from_utf8(out).expect("ASCII")
            },
        );
        let mut text = format!(
            "<{}>1 {timestamp} {} {} {} {} ",
            self.pri,
            nil(&self.host),
            nil(&self.app),
            nil(&self.procid),
            nil(&self.msgid)
        );
        match &self.sd {
            None => text.push('-'),
            Some(sd) => {
                for (id, params) in sd {
                    text.push('[');
                    text.push_str(id);
                    for (name, value) in params {
                        text.push_str(&format!(" {name}=\"{}\"", escape_sd_value(value)));
                    }
                    text.push(']');
                }
            }
        }
        if let Some(msg) = &self.msg {
            text.push(' ');
            if self.bom {
                text.push('\u{feff}');
            }
            text.push_str(msg);
        }
        text.into_bytes()
    }
}

fn rfc5424_message() -> impl Strategy<Value = Rfc5424Message> {
    let sd = prop::collection::btree_map(
        sd_name(),
        prop::collection::btree_map(sd_name(), any::<String>(), 0..4),
        1..4,
    );
    let msg = any::<String>().prop_filter("no BOM of its own", |m| !m.starts_with('\u{feff}'));
    (
        (0u8..=191, prop::option::of(rfc5424_timestamp())),
        (
            header_field(255),
            header_field(48),
            header_field(128),
            header_field(32),
        ),
        (prop::option::of(sd), prop::option::of(msg), any::<bool>()),
    )
        .prop_map(
            |((pri, timestamp), (host, app, procid, msgid), (sd, msg, bom))| Rfc5424Message {
                pri,
                timestamp,
                host,
                app,
                procid,
                msgid,
                sd,
                msg,
                bom,
            },
        )
}

fn sd_of(record: &Record) -> Option<Sd> {
    let sd = record.structured_data?;
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("generated UTF-8");
    let elements = sd.elements().map(|e| {
        let params = e.params().map(|(name, value)| {
            let unescaped: Vec<u8> = structured_data::unescape(value)
                .flatten()
                .copied()
                .collect();
            (text(name), text(&unescaped))
        });
        (text(e.id()), params.collect())
    });
    Some(elements.collect())
}

#[derive(Debug, Clone)]
struct Rfc3164Message {
    pri: u8,
    when: CivilParts,
    host: String,
    tag: String,
    pid: Option<String>,
    msg: String,
    zone_offset: i32,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Rfc3164Message {
    fn to_bytes(&self) -> Vec<u8> {
        let w = &self.when;
        let pid = self
            .pid
            .as_ref()
            .map(|p| format!("[{p}]"))
            .unwrap_or_default();
        format!(
            "<{}>{} {:>2} {:02}:{:02}:{:02} {} {}{pid}: {}",
            self.pri,
            MONTHS[usize::from(w.month - 1)],
            w.day,
            w.hour,
            w.minute,
            w.second,
            self.host,
            self.tag,
            self.msg
        )
        .into_bytes()
    }

    /// The year the receive time implies, computed with chrono rather than the parser's code.
    fn expected_year(&self) -> u16 {
        let received = chrono::DateTime::from_timestamp_micros(RECEIVED_US)
            .expect("valid")
            .naive_utc()
            + chrono::Duration::seconds(i64::from(self.zone_offset));
        let w = &self.when;
        let candidate = |year: i32| {
            NaiveDate::from_ymd_opt(year, u32::from(w.month), u32::from(w.day)).and_then(|d| {
                d.and_hms_opt(u32::from(w.hour), u32::from(w.minute), u32::from(w.second))
            })
        };
        let year = received.year();
        let latest = received + chrono::Duration::days(31);
        match candidate(year) {
            Some(t) if t <= latest => year as u16,
            _ => (year - 1) as u16,
        }
    }
}

fn rfc3164_message() -> impl Strategy<Value = Rfc3164Message> {
    (
        (0u8..=191, civil(2025..=2025)),
        (
            // A 4-digit hostname 1970-2099 right after the time is read as the year
            // (ArubaOS writes `Nov 20 10:00:16 2026 host`): see `timestamp::parse_bsd`.
            "[a-z0-9][a-z0-9.-]{0,62}".prop_filter("a 4-digit year", |h| {
                !(h.len() == 4 && h.bytes().all(|b| b.is_ascii_digit()))
            }),
            "[A-Za-z0-9_/.-]{1,32}",
            prop::option::of("[0-9]{1,10}"),
        ),
        (any::<String>(), -50_400i32..=50_400),
    )
        .prop_map(
            |((pri, when), (host, tag, pid), (msg, zone))| Rfc3164Message {
                pri,
                when,
                host,
                tag,
                pid,
                msg,
                zone_offset: zone / 60 * 60,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_bytes_parse_without_panic_and_encode_to_valid_json(
        input in prop_oneof![prop::collection::vec(any::<u8>(), 0..300), syslogish_bytes()],
        format in format(),
    ) {
        let mut ctx = ParseContext::new(RECEIVED_US, LegacyZone::Local);
        let record = parse(&input, format, &mut ctx);
        // Zero-copy and lossless: the message is the input's tail, all of it on error.
        prop_assert!(input.ends_with(record.message));
        if !record.message.is_empty() {
            let end = record.message.as_ptr() as usize + record.message.len();
            prop_assert_eq!(end, input.as_ptr() as usize + input.len());
        }
        if record.parse_error.is_some() {
            prop_assert_eq!(record.message, &input[..]);
        }
        if !input.is_empty() && record.message.is_empty() {
            // Only a header that used up the whole input leaves an empty message.
            prop_assert_eq!(record.parse_error, None);
        }
        let json = encode_json(&input, &record);
        let message = json["message"].as_str().expect("message is a string");
        prop_assert_eq!(message, expected_json_text(record.message));
        if !input.is_empty() && record.parse_error.is_some() {
            prop_assert!(!message.is_empty());
        }
        prop_assert_eq!(json.get("parse_error").is_some(), record.parse_error.is_some());
    }

    #[test]
    fn generated_rfc5424_messages_round_trip(generated in rfc5424_message(), format in prop::sample::select(vec![Format::Auto, Format::Rfc5424])) {
        let input = generated.to_bytes();
        let mut ctx = ParseContext::new(RECEIVED_US, LegacyZone::Local);
        let record = parse(&input, format, &mut ctx);
        let field = |f: &Option<String>| f.as_ref().map(|s| s.as_bytes().to_vec());
        prop_assert_eq!(record.parse_error, None);
        prop_assert_eq!(record.facility, Some(generated.pri >> 3));
        prop_assert_eq!(record.severity, Some(generated.pri & 7));
        prop_assert_eq!(record.version, Some(1));
        prop_assert_eq!(record.timestamp, generated.timestamp);
        prop_assert_eq!(record.host.map(<[u8]>::to_vec), field(&generated.host));
        prop_assert_eq!(record.app.map(<[u8]>::to_vec), field(&generated.app));
        prop_assert_eq!(record.procid.map(<[u8]>::to_vec), field(&generated.procid));
        prop_assert_eq!(record.msgid.map(<[u8]>::to_vec), field(&generated.msgid));
        prop_assert_eq!(sd_of(&record), generated.sd.clone());
        let msg = generated.msg.clone().unwrap_or_default();
        prop_assert_eq!(record.message, msg.as_bytes());

        let json = encode_json(&input, &record);
        prop_assert_eq!(&json["message"], &json!(msg));
        let expected_sd = generated.sd.map(|sd| json!(sd));
        prop_assert_eq!(json.get("structured_data"), expected_sd.as_ref());
        if let Some(t) = generated.timestamp {
            let mut text = Vec::new();
            t.write_rfc3339(&mut text);
            prop_assert_eq!(&json["timestamp"], &json!(String::from_utf8(text).expect("ASCII")));
        }
    }

    #[test]
    fn generated_rfc3164_messages_round_trip(generated in rfc3164_message()) {
        let input = generated.to_bytes();
        let mut ctx = ParseContext::new(RECEIVED_US, LegacyZone::Fixed(generated.zone_offset));
        let record = parse(&input, Format::Auto, &mut ctx);
        prop_assert_eq!(parse(&input, Format::Rfc3164, &mut ctx), record);
        let w = &generated.when;
        let offset = match generated.zone_offset {
            0 => Offset::Z,
            s => Offset::Seconds(s),
        };
        let expected_timestamp = Timestamp {
            civil: CivilTime {
                year: generated.expected_year(),
                month: w.month,
                day: w.day,
                hour: w.hour,
                minute: w.minute,
                second: w.second,
                nanos: 0,
                fraction_digits: 0,
            },
            offset,
        };
        prop_assert_eq!(record.parse_error, None);
        prop_assert_eq!(record.facility, Some(generated.pri >> 3));
        prop_assert_eq!(record.severity, Some(generated.pri & 7));
        prop_assert_eq!(record.version, None);
        prop_assert_eq!(record.timestamp, Some(expected_timestamp));
        prop_assert_eq!(record.host, Some(generated.host.as_bytes()));
        prop_assert_eq!(record.app, Some(generated.tag.as_bytes()));
        prop_assert_eq!(record.procid, generated.pid.as_ref().map(|p| p.as_bytes()));
        prop_assert_eq!(record.msgid, None);
        prop_assert_eq!(record.message, generated.msg.as_bytes());
        let json = encode_json(&input, &record);
        prop_assert_eq!(&json["message"], &json!(generated.msg));
        prop_assert_eq!(&json["host"], &json!(generated.host));
    }

    /// Issue 14: a timestamp the parser cannot read is never taken apart into host and app
    /// (`2026-03-04T05` as an app name). Timestamps in every form senders use, well-formed or
    /// damaged after their first five bytes (which are what mark text as a timestamp), then
    /// ` core1 app: m`: when no timestamp was taken, no host or app starts inside it.
    #[test]
    fn unreadable_timestamps_are_never_split_into_host_or_app(
        (pri, blank, timestamp) in (
            prop::sample::select(vec!["<13>", "<190>", ""]),
            prop::sample::select(vec!["", " "]),
            damaged_timestamp(),
        ),
    ) {
        let prefix = format!("{pri}{blank}");
        let input = format!("{prefix}{timestamp} core1 app: m").into_bytes();
        let mut ctx = ParseContext::new(RECEIVED_US, LegacyZone::Fixed(0));
        let record = parse(&input, Format::Auto, &mut ctx);
        if record.timestamp.is_none() {
            let inside = prefix.len()..prefix.len() + timestamp.len();
            let start = |field: &[u8]| field.as_ptr() as usize - input.as_ptr() as usize;
            for field in [record.host, record.app].into_iter().flatten() {
                prop_assert!(
                    !inside.contains(&start(field)),
                    "{:?} split into {:?}",
                    timestamp,
                    String::from_utf8_lossy(field)
                );
            }
        }
    }
}

/// A timestamp in one of the forms of [`timestamp`](super::timestamp) (with digits out of
/// range too), then cut short, or with a byte replaced or inserted after its fifth.
fn damaged_timestamp() -> impl Strategy<Value = String> {
    let two = || (0u8..=39).prop_map(|v| format!("{v:02}"));
    let fields = (1900u16..2100, 0u8..=14, two(), two(), two(), two());
    let form = (
        fields,
        0usize..9,
        "[0-9]{0,12}",
        prop::sample::select(vec!["", "Z", "+01:00", "-0700", "-07", "Z+01:00", "+1"]),
    );
    let text = form.prop_map(|((y, mo, d, h, mi, s), shape, frac, off)| {
        let month = MONTHS[usize::from(mo % 12)];
        let frac = if frac.is_empty() {
            String::new()
        } else {
            format!(".{frac}")
        };
        match shape {
            0 => format!("{y}-{mo:02}-{d}T{h}:{mi}:{s}{frac}{off}"),
            1 => format!("{y}-{mo:02}-{d} {h}:{mi}:{s}{off}"),
            2 => format!("{month} {d} {h}:{mi}:{s}{frac}"),
            3 => format!("{month} {:>2} {h}:{mi}:{s}", d.trim_start_matches('0')),
            4 => format!("{month} {d} {y} {h}:{mi}:{s}{frac}"),
            5 => format!("{month} {d} {h}:{mi}:{s} {y}"),
            6 => format!("{month} {d} {h}:{mi}:{s} {y}:"),
            7 => format!("{y} {month} {d} {h}:{mi}:{s}"),
            _ => format!("{month} {d} {h}:{mi}:{s}:"),
        }
    });
    let damage = prop_oneof![
        Just(None),
        (5usize..40).prop_map(|at| Some((at, None))),
        (
            5usize..40,
            prop::sample::select(b"0123456789:-.T Zx+*".to_vec())
        )
            .prop_map(|(at, byte)| Some((at, Some(byte)))),
    ];
    (text, damage, any::<bool>()).prop_map(|(text, damage, insert)| {
        let mut bytes = text.into_bytes();
        match damage {
            None => {}
            Some((at, None)) => bytes.truncate(at.max(5)),
            Some((at, Some(byte))) if at < bytes.len() => {
                if insert {
                    bytes.insert(at, byte);
                } else {
                    bytes[at] = byte;
                }
            }
            Some(_) => {}
        }
        String::from_utf8(bytes).expect("ASCII")
    })
}
