//! What logtail's integration tests (`tests/`), benches (`benches/`) and load-test harness
//! (`loadtest/`) share, so that each exists once: the syslog corpus, the tansu broker's command
//! lines, a TCP proxy that can cut the network to a broker, free ports, reading Prometheus text,
//! and the rule that a test which cannot run here fails under `CI=true` instead of passing.
//!
//! Dev-only (`publish = false`): it depends on nothing of the gateway, and the gateway does not
//! depend on it. Helpers report errors (`io::Result`, `Option`); the tests turn them into
//! panics with `expect`, the harness into its own errors.

pub mod ci;
pub mod corpus;
pub mod net;
pub mod osmem;
pub mod prometheus_text;
pub mod proxy;
pub mod tansu;
