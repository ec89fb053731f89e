//! What the benches share (`mod common;`): criterion's settings. Their corpus is
//! `test_support::corpus`, which the load-test harness uses too.

/// Criterion's warm-up and measurement time for every bench. 1 s and 3 s keep all of
/// `cargo bench` (16 benches) under two minutes on the project's 2-core machine, and are the
/// times the figures in `loadtest/RESULTS.md` were taken with. Command-line flags
/// (`-- --measurement-time 10`) still override them.
pub const WARM_UP: std::time::Duration = std::time::Duration::from_secs(1);
pub const MEASUREMENT: std::time::Duration = std::time::Duration::from_secs(3);

/// Criterion with [`WARM_UP`] and [`MEASUREMENT`]: the `config` of every `criterion_group!`.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
}
