//! The block index built from what the JSON encoder says it wrote
//! ([`IndexedFields`], [`IndexBuilder::add_indexed`]) must be the index built by reading each
//! record's JSON ([`IndexBuilder::add`]), byte for byte: the index may only ever say "may
//! match" where the query, which reads the JSON, could find a match.

use proptest::prelude::*;

use super::index::{IndexBuilder, rfc3339_micros};
use crate::encode::json::{IndexedFields, StringSpan, encode, written_unix_micros};
use crate::encode::{Envelope, format_rfc3339_micros};
use crate::parse::{self, CivilTime, Format, LegacyZone, Offset, ParseContext, Timestamp};

/// One syslog line parsed and encoded as a shard does it.
fn encoded(
    line: &[u8],
    received_at_us: i64,
    zone: LegacyZone,
    host_if_missing: Option<&[u8]>,
) -> (Vec<u8>, Option<IndexedFields>) {
    let mut received_at = Vec::new();
    format_rfc3339_micros(received_at_us, &mut received_at);
    let envelope = Envelope::new(&received_at, "tcp:5514");
    let mut context = ParseContext::new(received_at_us, zone);
    let mut record = parse::parse(line, Format::Auto, &mut context);
    record.host = record.host.or(host_if_missing);
    let mut out = b"previous record".to_vec();
    let fields = encode(&record, &envelope, &mut out);
    (out.split_off(b"previous record".len()), fields)
}

/// The index of `records` built both ways: from the fields where there are some, and by
/// reading every record's JSON.
fn both_indexes(records: &[(Vec<u8>, Option<IndexedFields>)]) -> (Vec<u8>, Vec<u8>) {
    let (mut from_fields, mut from_json) = (IndexBuilder::default(), IndexBuilder::default());
    for (value, fields) in records {
        match fields {
            Some(fields) => from_fields.add_indexed(value, fields),
            None => from_fields.add(value),
        }
        from_json.add(value);
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    from_fields.finish_into(1 << 20, &mut a);
    from_json.finish_into(1 << 20, &mut b);
    (a, b)
}

/// Each record on its own, then all of them in one block.
fn assert_same_index(records: &[(Vec<u8>, Option<IndexedFields>)]) {
    for record in records {
        let (a, b) = both_indexes(std::slice::from_ref(record));
        assert_eq!(a, b, "{}", String::from_utf8_lossy(&record.0));
    }
    let (a, b) = both_indexes(records);
    assert_eq!(a, b);
}

#[test]
fn the_realistic_mix_indexes_the_same_from_fields_as_from_json() {
    let zones = [
        LegacyZone::Fixed(0),
        LegacyZone::Fixed(-37),
        LegacyZone::Local,
    ];
    let records: Vec<_> = test_support::corpus::realistic_mix(3_000, 5)
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let received_at = test_support::corpus::CORPUS_RECEIVED_AT_US + i as i64 * 7_919;
            encoded(line, received_at, zones[i % 3], None)
        })
        .collect();
    let with_fields = records.iter().filter(|(_, f)| f.is_some()).count();
    assert_eq!(with_fields, 3_000);
    let escaped = records
        .iter()
        .filter(|(_, f)| f.is_some_and(|f| f.message.escaped))
        .count();
    assert!(escaped > 1_000, "{escaped} messages with escapes");
    assert_same_index(&records);
}

#[test]
fn fields_say_where_each_member_is_and_whether_it_needs_unescaping() {
    let at = 1_795_229_627_123_456;
    let zone = LegacyZone::Fixed(0);
    let (value, Some(f)) = encoded(
        b"<165>1 2003-08-24T05:14:15.5-07:00 Web-01 myproc - - - An event",
        at,
        zone,
        None,
    ) else {
        panic!("fields expected");
    };
    let text = |s: StringSpan| (&value[s.start as usize..s.end as usize], s.escaped);
    assert_eq!(f.timestamp_us, Some(1_061_727_255_500_000));
    assert_eq!((f.facility, f.severity), (Some(20), Some(5)));
    assert_eq!(f.host.map(text), Some((&b"Web-01"[..], false)));
    assert_eq!(f.app.map(text), Some((&b"myproc"[..], false)));
    assert_eq!(text(f.message), (&b"An event"[..], false));
    assert_eq!(
        text(f.received_at),
        (&b"2026-11-21T02:53:47.123456Z"[..], false)
    );

    let line = [&br#"<14>1 - we"b ap"#[..], b"\xff", br#"p - - - say "hi""#].concat();
    let (value, Some(f)) = encoded(&line, at, zone, None) else {
        panic!("fields expected");
    };
    let text = |s: StringSpan| (&value[s.start as usize..s.end as usize], s.escaped);
    assert_eq!(f.timestamp_us, None);
    assert_eq!(f.host.map(text), Some((&br#"we\"b"#[..], true)));
    assert_eq!(f.app.map(text), Some((&br"ap\\xffp"[..], true)));
    assert_eq!(text(f.message), (&br#"say \"hi\""#[..], true));

    // A leap second (chrono reads its text, to the next second): not known to the encoder,
    // so such a record's JSON is read.
    let mut leap = Timestamp::from_unix_micros(1_483_228_799_000_000);
    assert_eq!(written_unix_micros(&leap), Some(1_483_228_799_000_000));
    leap.civil.second = 60;
    assert_eq!(written_unix_micros(&leap), None);
    assert_eq!(
        encoded(b"no pri at all", at, zone, None).1.map(|f| f.host),
        Some(None)
    );
}

#[test]
fn a_span_outside_the_record_is_read_from_the_json() {
    let (value, Some(mut fields)) = encoded(
        b"<13>Nov 21 02:53:47 web-01 sshd: hello",
        0,
        LegacyZone::Fixed(0),
        None,
    ) else {
        panic!("fields expected");
    };
    fields.message.end = value.len() as u32 + 1;
    let mut from_fields = IndexBuilder::default();
    from_fields.add_indexed(&value, &fields);
    let mut from_json = IndexBuilder::default();
    from_json.add(&value);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    from_fields.finish_into(1000, &mut a);
    from_json.finish_into(1000, &mut b);
    assert_eq!(a, b);
}

/// Bytes that exercise escaping and tokenizing: quotes, backslashes, control bytes, UTF-8,
/// invalid UTF-8, capitals, digits, separators.
fn text(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(b"abcXYZ_09 -.:=/[]".to_vec()),
            1 => proptest::sample::select(b"\"\\\t\n\x01\x7f".to_vec()),
            1 => proptest::sample::select(vec![0xC3u8, 0xBC, 0x9F, 0xE2, 0x82, 0xAC, 0xFF, 0x80]),
        ],
        0..max,
    )
}

fn word(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(
            proptest::sample::select(b"abWEB01-._".to_vec()), 1..max),
        1 => text(max).prop_filter("no space", |t| !t.is_empty() && !t.contains(&b' ')),
        1 => Just(b"-".to_vec()),
    ]
}

fn timestamp_5424() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-".to_owned()),
        (
            1990u32..2100,
            1u32..13,
            1u32..32,
            0u32..24,
            0u32..61,
            "(\\.[0-9]{1,9})?",
            "(Z|[+-][01][0-9]:[0-5][0-9])"
        )
            .prop_map(|(y, mo, d, h, mi, frac, zone)| format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{mi:02}{frac}{zone}"
            )),
        Just("2024-02-29T12:00:00Z".to_owned()),
        Just("2023-02-29T12:00:00Z".to_owned()),
        Just("not-a-time".to_owned()),
    ]
}

/// A syslog line in one of the formats the parser reads, or bytes it does not.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let pri = prop_oneof![
        4 => (0u32..192).prop_map(|p| format!("<{p}>")),
        1 => Just("<999>".to_owned()),
        1 => Just(String::new()),
    ];
    prop_oneof![
        (
            pri.clone(),
            timestamp_5424(),
            word(12),
            word(12),
            word(6),
            word(6),
            text(80)
        )
            .prop_map(|(pri, ts, host, app, procid, msgid, msg)| {
                let mut l = format!("{pri}1 {ts} ").into_bytes();
                for part in [&host, &app, &procid, &msgid] {
                    l.extend_from_slice(part);
                    l.push(b' ');
                }
                l.extend_from_slice(b"[origin ip=\"10.0.0.1\" x=\"a\\\"b\"] ");
                l.extend_from_slice(&msg);
                l
            }),
        (
            pri.clone(),
            1u32..29,
            0u32..24,
            word(12),
            word(12),
            text(80)
        )
            .prop_map(|(pri, day, hour, host, app, msg)| {
                let mut l = format!("{pri}Nov {day:2} {hour:02}:53:47 ").into_bytes();
                l.extend_from_slice(&host);
                l.push(b' ');
                l.extend_from_slice(&app);
                l.extend_from_slice(b"[42]: ");
                l.extend_from_slice(&msg);
                l
            }),
        (pri, text(60)).prop_map(|(pri, msg)| {
            let mut l = format!("{pri}123: *Nov 21 02:53:47.123: %LINK-3-UPDOWN: ").into_bytes();
            l.extend_from_slice(&msg);
            l
        }),
        text(100),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_record_indexes_the_same_from_fields_as_from_json(
        lines in proptest::collection::vec(
            (line(), -100_000_000_000_000i64..300_000_000_000_000_000, -50_000i32..50_000,
                proptest::option::of(word(10))),
            1..12,
        ),
    ) {
        let records: Vec<_> = lines
            .iter()
            .map(|(line, received_at, zone, host)| {
                encoded(line, *received_at, LegacyZone::Fixed(*zone), host.as_deref())
            })
            .collect();
        assert_same_index(&records);
    }

    #[test]
    fn written_micros_are_what_the_text_reads_back(
        year in 0u16..10_002, month in 0u8..14, day in 0u8..33, hour in 0u8..25,
        minute in 0u8..61, second in 0u8..62, nanos in 0u32..1_000_000_002,
        fraction_digits in 0u8..11, offset in prop_oneof![
            Just(None), (-90_000i32..90_000).prop_map(Some)],
    ) {
        let timestamp = Timestamp {
            civil: CivilTime { year, month, day, hour, minute, second, nanos, fraction_digits },
            offset: offset.map_or(Offset::Z, Offset::Seconds),
        };
        let mut text = Vec::new();
        timestamp.write_rfc3339(&mut text);
        if let Some(us) = written_unix_micros(&timestamp) {
            prop_assert_eq!(Some(us), rfc3339_micros(&text), "{}", String::from_utf8_lossy(&text));
        }
    }
}

#[test]
fn written_micros_of_valid_timestamps_are_known() {
    for (text, us) in [
        ("2003-08-24T05:14:15.000003-07:00", 1_061_727_255_000_003),
        ("2026-11-21T02:53:47Z", 1_795_229_627_000_000),
        ("2024-02-29T23:59:59.123456789+05:30", 1_709_231_399_123_456),
    ] {
        let mut context = ParseContext::new(0, LegacyZone::Fixed(0));
        let line = format!("<14>1 {text} h a - - - m");
        let record = parse::parse(line.as_bytes(), Format::Auto, &mut context);
        let timestamp = record.timestamp.expect("parses");
        assert_eq!(written_unix_micros(&timestamp), Some(us), "{text}");
        assert_eq!(rfc3339_micros(text.as_bytes()), Some(us), "{text}");
    }
}
