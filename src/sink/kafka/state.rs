//! Whether the Kafka sink produces directly, spills to the WAL or replays it: a pure function of
//! what the sink observes at one instant ([`Observation`]), with no I/O and no librdkafka, so
//! that every transition is unit-tested here. It decides whether records are only in memory
//! (produced directly) or on disk first, and the order they reach Kafka in.
//!
//! ```text
//!             lag or brokers down                    lag gone, WAL has a backlog
//!   direct ───────────────────────► spilling ──────────────────────────────► replaying
//!     ▲                                ▲                                         │
//!     │                                └──────────── lag or brokers down ────────┤
//!     └──────────────────────────── WAL backlog all handed to the producer ──────┘
//! ```
//!
//! # Invariants (each checked over every combination of inputs by the tests)
//! - A batch from the rings goes straight to the producer only in [`State::Direct`] with no
//!   failed records waiting for the WAL: never while the WAL holds older batches, so no record
//!   overtakes an older one.
//! - The WAL is replayed only while Kafka does not lag, nothing failed waits for the WAL, and
//!   the sink is not stopping.
//! - While every broker is down and nothing is in flight, one WAL batch may go as a probe (the
//!   first acknowledgement after an outage ends it); with anything in flight, none.

use std::time::{Duration, Instant};

/// The state of the Kafka sink, exported as `logtail_kafka_state{state="..."}` (1 for the
/// current one, 0 for the others; see [`State::metric_value`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Batches from the rings go straight to the producer; nothing is written to disk.
    Direct,
    /// Kafka lags ([`Lag`]) or every broker is down: new batches go to the WAL.
    Spilling,
    /// Kafka keeps up and the WAL holds batches not yet handed over: they are produced in
    /// order, and new batches go to the WAL behind them.
    Replaying,
}

impl State {
    /// Every state, in the order of [`State::metric_value`].
    pub const ALL: [State; 3] = [State::Direct, State::Spilling, State::Replaying];

    /// The `state` label of `logtail_kafka_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Direct => "direct",
            State::Spilling => "spilling",
            State::Replaying => "replaying",
        }
    }

    /// The value of the `KafkaMetrics::state` gauge, which the metrics endpoint renders as
    /// one `logtail_kafka_state{state="..."}` line per state (a test below holds the two
    /// together).
    pub fn metric_value(self) -> i64 {
        match self {
            State::Direct => 0,
            State::Spilling => 1,
            State::Replaying => 2,
        }
    }
}

/// Why the sink spills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// Too many records or bytes in flight.
    InFlight,
    /// The oldest batch in flight is too old.
    Latency,
    /// librdkafka reported every broker down.
    BrokersDown,
    /// Deliveries failed a moment ago: replay waits out a backoff, so that a broker that
    /// refuses every record is not sent the same records in a tight loop.
    Failing,
}

impl Lag {
    pub fn describe(self) -> &'static str {
        match self {
            Lag::InFlight => "too many records in flight",
            Lag::Latency => "deliveries are slow",
            Lag::BrokersDown => "every broker is down",
            Lag::Failing => "deliveries failed; backing off",
        }
    }
}

/// `[sink.kafka.spill]`, as durations and counts: Kafka lags once any is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpillLimits {
    /// Records in flight.
    pub records: u64,
    /// Bytes of record values in flight.
    pub bytes: u64,
    /// Age of the oldest batch in flight.
    pub latency: Duration,
}

/// What the sink knows at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub now: Instant,
    /// Replay waits until then after failed deliveries.
    pub failing_until: Option<Instant>,
    /// librdkafka reported every broker down, and no acknowledgement came since.
    pub brokers_down: bool,
    /// Records and value bytes handed to the producer and not yet reported.
    pub in_flight_records: u64,
    pub in_flight_bytes: u64,
    /// When the oldest batch in flight was produced; `None` exactly when nothing is in flight.
    pub oldest_in_flight: Option<Instant>,
    /// The WAL holds batches not yet handed to the producer.
    pub wal_backlog: bool,
    /// Records whose delivery failed wait in memory for the WAL (which refused them so far).
    pub retry_waiting: bool,
    /// The sink is closing: replay has stopped.
    pub stopping: bool,
}

/// Where a new batch from the rings goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTo {
    Producer,
    Wal,
}

impl SpillLimits {
    /// Whether Kafka lags, and why (the first that holds, in the order of [`Lag`]'s precedence:
    /// failing, brokers down, in flight, latency).
    pub fn lag(&self, seen: &Observation) -> Option<Lag> {
        if seen.failing_until.is_some_and(|t| seen.now < t) {
            return Some(Lag::Failing);
        }
        if seen.brokers_down && seen.oldest_in_flight.is_some() {
            // With nothing in flight, one batch may go as a probe.
            return Some(Lag::BrokersDown);
        }
        if seen.in_flight_records >= self.records || seen.in_flight_bytes >= self.bytes {
            return Some(Lag::InFlight);
        }
        if seen
            .oldest_in_flight
            .is_some_and(|t| seen.now.saturating_duration_since(t) >= self.latency)
        {
            return Some(Lag::Latency);
        }
        None
    }

    /// The state, and why the sink spills when it does ([`Lag::BrokersDown`] also while
    /// nothing is in flight, when [`SpillLimits::lag`] lets a probe through).
    pub fn state(&self, seen: &Observation) -> (State, Option<Lag>) {
        let lag = self
            .lag(seen)
            .or(seen.brokers_down.then_some(Lag::BrokersDown));
        let state = match lag {
            Some(_) => State::Spilling,
            None if seen.wal_backlog => State::Replaying,
            None => State::Direct,
        };
        (state, lag)
    }

    /// Where a new batch from the rings goes: behind the WAL's backlog, behind failed records
    /// waiting for the WAL, and while Kafka lags or its brokers are down, to the WAL.
    pub fn write_to(&self, seen: &Observation) -> WriteTo {
        if seen.wal_backlog || seen.retry_waiting || seen.brokers_down || self.lag(seen).is_some() {
            WriteTo::Wal
        } else {
            WriteTo::Producer
        }
    }

    /// Whether the next WAL batch may be handed to the producer now.
    pub fn may_replay(&self, seen: &Observation) -> bool {
        seen.wal_backlog && !seen.stopping && !seen.retry_waiting && self.lag(seen).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SpillLimits = SpillLimits {
        records: 100,
        bytes: 1000,
        latency: Duration::from_secs(2),
    };

    /// Nothing in flight, nothing in the WAL, brokers up: the healthy idle sink.
    fn idle(now: Instant) -> Observation {
        Observation {
            now,
            failing_until: None,
            brokers_down: false,
            in_flight_records: 0,
            in_flight_bytes: 0,
            oldest_in_flight: None,
            wal_backlog: false,
            retry_waiting: false,
            stopping: false,
        }
    }

    /// `records` in flight (10 bytes each), the oldest produced `age` ago.
    fn in_flight(now: Instant, records: u64, age: Duration) -> Observation {
        Observation {
            in_flight_records: records,
            in_flight_bytes: records * 10,
            oldest_in_flight: Some(now - age),
            ..idle(now)
        }
    }

    fn now() -> Instant {
        // Far enough from the clock's origin for `now - age` with the ages below.
        Instant::now() + Duration::from_secs(3600)
    }

    #[test]
    fn healthy_sink_produces_directly_and_does_not_replay() {
        let t = now();
        for seen in [idle(t), in_flight(t, 99, Duration::from_millis(1999))] {
            assert_eq!(LIMITS.state(&seen), (State::Direct, None));
            assert_eq!(LIMITS.write_to(&seen), WriteTo::Producer);
            assert!(!LIMITS.may_replay(&seen));
        }
    }

    #[test]
    fn direct_to_spilling_when_records_or_bytes_in_flight_reach_their_limit() {
        let t = now();
        let records = in_flight(t, 100, Duration::ZERO);
        let bytes = Observation {
            in_flight_records: 1,
            in_flight_bytes: 1000,
            ..in_flight(t, 1, Duration::ZERO)
        };
        for seen in [records, bytes] {
            assert_eq!(LIMITS.state(&seen), (State::Spilling, Some(Lag::InFlight)));
            assert_eq!(LIMITS.write_to(&seen), WriteTo::Wal);
        }
        let below = Observation {
            in_flight_bytes: 999,
            ..in_flight(t, 99, Duration::ZERO)
        };
        assert_eq!(LIMITS.state(&below), (State::Direct, None));
    }

    #[test]
    fn direct_to_spilling_when_the_oldest_batch_in_flight_reaches_the_latency_limit() {
        let t = now();
        let late = in_flight(t, 1, Duration::from_secs(2));
        assert_eq!(LIMITS.state(&late), (State::Spilling, Some(Lag::Latency)));
        assert_eq!(LIMITS.write_to(&late), WriteTo::Wal);
    }

    #[test]
    fn brokers_down_spill_but_let_one_probe_through_when_nothing_is_in_flight() {
        let t = now();
        let probe = Observation {
            brokers_down: true,
            wal_backlog: true,
            ..idle(t)
        };
        assert_eq!(LIMITS.lag(&probe), None);
        assert_eq!(
            LIMITS.state(&probe),
            (State::Spilling, Some(Lag::BrokersDown))
        );
        assert_eq!(LIMITS.write_to(&probe), WriteTo::Wal);
        assert!(LIMITS.may_replay(&probe), "the probe");

        let probing = Observation {
            brokers_down: true,
            wal_backlog: true,
            ..in_flight(t, 1, Duration::ZERO)
        };
        assert_eq!(LIMITS.lag(&probing), Some(Lag::BrokersDown));
        assert!(!LIMITS.may_replay(&probing), "one probe at a time");
    }

    #[test]
    fn spilling_to_replaying_once_the_lag_is_gone_and_back_when_it_returns() {
        let t = now();
        let caught_up = Observation {
            wal_backlog: true,
            ..in_flight(t, 10, Duration::from_millis(5))
        };
        assert_eq!(LIMITS.state(&caught_up), (State::Replaying, None));
        assert!(LIMITS.may_replay(&caught_up));
        // New batches queue behind the backlog, even though Kafka keeps up.
        assert_eq!(LIMITS.write_to(&caught_up), WriteTo::Wal);

        let full = Observation {
            wal_backlog: true,
            ..in_flight(t, 100, Duration::ZERO)
        };
        assert_eq!(LIMITS.state(&full), (State::Spilling, Some(Lag::InFlight)));
        assert!(!LIMITS.may_replay(&full));
    }

    #[test]
    fn replaying_to_direct_once_the_backlog_is_handed_over() {
        let t = now();
        let handed_over = in_flight(t, 10, Duration::ZERO);
        assert_eq!(LIMITS.state(&handed_over), (State::Direct, None));
        assert_eq!(LIMITS.write_to(&handed_over), WriteTo::Producer);
    }

    #[test]
    fn failed_deliveries_back_off_replay_until_their_deadline() {
        let t = now();
        let backing_off = Observation {
            failing_until: Some(t + Duration::from_millis(1)),
            brokers_down: true,
            wal_backlog: true,
            ..in_flight(t, 100, Duration::from_secs(9))
        };
        // Failing takes precedence over every other reason.
        assert_eq!(LIMITS.lag(&backing_off), Some(Lag::Failing));
        assert!(!LIMITS.may_replay(&backing_off));
        let over = Observation {
            failing_until: Some(t),
            wal_backlog: true,
            ..idle(t)
        };
        assert_eq!(LIMITS.lag(&over), None);
        assert!(LIMITS.may_replay(&over));
    }

    #[test]
    fn failed_records_waiting_for_the_wal_keep_new_batches_and_replay_behind_them() {
        let t = now();
        let waiting = Observation {
            retry_waiting: true,
            ..idle(t)
        };
        assert_eq!(LIMITS.write_to(&waiting), WriteTo::Wal);
        assert!(!LIMITS.may_replay(&Observation {
            wal_backlog: true,
            ..waiting
        }));
    }

    #[test]
    fn a_stopping_sink_does_not_replay() {
        let t = now();
        let stopping = Observation {
            wal_backlog: true,
            stopping: true,
            ..idle(t)
        };
        assert!(!LIMITS.may_replay(&stopping));
        assert_eq!(LIMITS.state(&stopping), (State::Replaying, None));
    }

    /// Every combination of inputs, each at, below and above its limit, against the
    /// invariants of the module docs.
    #[test]
    fn every_combination_of_inputs_keeps_the_invariants() {
        let t = now();
        let failing = [
            None,
            Some(t - Duration::from_millis(1)),
            Some(t),
            Some(t + Duration::from_millis(1)),
        ];
        let records = [0, 1, 99, 100, 101];
        let bytes = [0, 999, 1000, 1001];
        let ages = [
            None,
            Some(Duration::ZERO),
            Some(Duration::from_millis(1999)),
            Some(Duration::from_secs(2)),
            Some(Duration::from_secs(3)),
        ];
        let mut cases = 0;
        for failing_until in failing {
            for in_flight_records in records {
                for in_flight_bytes in bytes {
                    for age in ages {
                        for flags in 0..16u8 {
                            let seen = Observation {
                                now: t,
                                failing_until,
                                brokers_down: flags & 1 != 0,
                                in_flight_records,
                                in_flight_bytes,
                                oldest_in_flight: age.map(|age| t - age),
                                wal_backlog: flags & 2 != 0,
                                retry_waiting: flags & 4 != 0,
                                stopping: flags & 8 != 0,
                            };
                            check_invariants(&seen, age);
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 4 * 5 * 4 * 5 * 16);
    }

    fn check_invariants(seen: &Observation, age: Option<Duration>) {
        let (state, lag) = LIMITS.state(seen);
        let write = LIMITS.write_to(seen);
        let replay = LIMITS.may_replay(seen);
        let failing = seen.failing_until.is_some_and(|t| seen.now < t);
        let over_limits = seen.in_flight_records >= LIMITS.records
            || seen.in_flight_bytes >= LIMITS.bytes
            || age.is_some_and(|age| age >= LIMITS.latency);
        let expected_lag = if failing {
            Some(Lag::Failing)
        } else if seen.brokers_down && age.is_some() {
            Some(Lag::BrokersDown)
        } else if seen.in_flight_records >= LIMITS.records || seen.in_flight_bytes >= LIMITS.bytes {
            Some(Lag::InFlight)
        } else if age.is_some_and(|age| age >= LIMITS.latency) {
            Some(Lag::Latency)
        } else {
            None
        };
        let context = format!("{seen:?}");
        assert_eq!(LIMITS.lag(seen), expected_lag, "{context}");
        // Spilling exactly while Kafka lags or its brokers are down.
        assert_eq!(
            state == State::Spilling,
            failing || seen.brokers_down || over_limits,
            "{context}"
        );
        assert_eq!(lag.is_some(), state == State::Spilling, "{context}");
        assert_eq!(
            state == State::Replaying,
            state != State::Spilling && seen.wal_backlog,
            "{context}"
        );
        // Straight to the producer only when nothing older waits and Kafka keeps up.
        assert_eq!(
            write == WriteTo::Producer,
            state == State::Direct && !seen.retry_waiting,
            "{context}"
        );
        // Replay only with a backlog, while Kafka keeps up (a lone probe while the brokers
        // are down), with nothing failed waiting, and not while stopping.
        let probe = seen.brokers_down && age.is_none() && !failing;
        assert_eq!(
            replay,
            seen.wal_backlog
                && !seen.stopping
                && !seen.retry_waiting
                && (state == State::Replaying || probe && !over_limits),
            "{context}"
        );
    }

    #[test]
    fn every_state_has_its_line_in_the_metrics() {
        use crate::metrics::{KafkaMetrics, Metrics, SinkMetrics};
        use std::sync::Arc;

        for state in State::ALL {
            let kafka = Arc::new(KafkaMetrics::default());
            kafka.state.set(state.metric_value());
            let sink = Arc::new(SinkMetrics::new("kafka"));
            let text = Metrics::new(vec![], vec![], sink, Some(kafka)).render();
            for other in State::ALL {
                let line = format!(
                    "logtail_kafka_state{{state=\"{}\"}} {}",
                    other.as_str(),
                    i64::from(other == state)
                );
                assert!(
                    text.lines().any(|l| l == line),
                    "missing {line:?} in\n{text}"
                );
            }
        }
    }
}
