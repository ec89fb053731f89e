//! The WAL's config section (`[sink.kafka.wal]`, for the Kafka sink's WAL), typed: the policies
//! deserialize straight into [`FsyncPolicy`] and [`FullPolicy`], the interval into a
//! [`Duration`]; [`WalConfig::check`] reports what serde cannot see.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{FsyncPolicy, FullPolicy, WalOptions};
use crate::segments;
use crate::setting::InvalidSetting;

/// `[sink.kafka.wal]`: the write-ahead log that holds batches while Kafka lags.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// Directory of the WAL. Default: `DATA_DIR/wal`.
    pub dir: Option<PathBuf>,
    /// Size of one segment file, in bytes; at least 4096. Default: 67108864 (64 MiB).
    pub max_segment_bytes: u64,
    /// The WAL never takes more than this on disk, in bytes; at least `max_segment_bytes`.
    /// Default: 4294967296 (4 GiB).
    pub max_total_bytes: u64,
    /// `never`, `interval` or `every_batch`. Default: `interval`.
    pub fsync: FsyncPolicy,
    /// `fsync_interval_ms`: the interval of `fsync = "interval"`, in milliseconds.
    /// Default: 1000.
    #[serde(
        rename = "fsync_interval_ms",
        deserialize_with = "crate::setting::millis",
        serialize_with = "crate::setting::as_millis"
    )]
    pub fsync_interval: Duration,
    /// `block`, `drop_oldest` or `drop_newest`: what happens when the WAL is full or the disk
    /// is. Default: `block`.
    pub full_policy: FullPolicy,
}

impl Default for WalConfig {
    fn default() -> Self {
        let options = WalOptions::default();
        WalConfig {
            dir: None,
            max_segment_bytes: options.max_segment_bytes,
            max_total_bytes: options.max_total_bytes,
            fsync: options.fsync,
            fsync_interval: options.fsync_interval,
            full_policy: options.full,
        }
    }
}

impl WalConfig {
    /// Checks what serde cannot: the sizes' bounds.
    ///
    /// # Errors
    /// The key (relative to the section) and what is wrong with it.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        segments::check_max_segment_bytes(self.max_segment_bytes)?;
        if self.max_total_bytes < self.max_segment_bytes {
            return Err(InvalidSetting::new(
                "max_total_bytes",
                format!(
                    "{} is below wal.max_segment_bytes ({})",
                    self.max_total_bytes, self.max_segment_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The WAL's directory: `dir`, or `wal` under the gateway's data directory.
    pub fn dir_under(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("wal"))
    }

    /// What [`super::Wal::open`] takes, for the WAL in `dir`.
    pub fn options(&self, dir: PathBuf) -> WalOptions {
        WalOptions {
            dir,
            max_segment_bytes: self.max_segment_bytes,
            max_total_bytes: self.max_total_bytes,
            fsync: self.fsync,
            fsync_interval: self.fsync_interval,
            full: self.full_policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_interval_are_read_typed_and_defaults_match_the_wal() {
        let c: WalConfig = toml::from_str(
            "fsync = \"interval\"\nfsync_interval_ms = 250\nfull_policy = \"drop_newest\"\n",
        )
        .expect("valid section");
        assert_eq!(c.fsync, FsyncPolicy::Interval);
        assert_eq!(c.fsync_interval, Duration::from_millis(250));
        assert_eq!(c.full_policy, FullPolicy::DropNewest);
        let c: WalConfig = toml::from_str("fsync = \"every_batch\"\n").expect("valid section");
        assert_eq!(c.fsync, FsyncPolicy::EveryAppend);
        assert_eq!(
            toml::from_str::<WalConfig>("").expect("empty section"),
            WalConfig::default()
        );
        let defaults = WalConfig::default().options(PathBuf::from("w"));
        assert_eq!(
            defaults,
            WalOptions {
                dir: PathBuf::from("w"),
                ..WalOptions::default()
            }
        );

        let err = toml::from_str::<WalConfig>("fsync = \"always\"\n")
            .expect_err("unknown policy")
            .to_string();
        assert!(
            err.contains("`never`") && err.contains("`interval`") && err.contains("`every_batch`"),
            "{err}"
        );
    }

    #[test]
    fn check_bounds_the_sizes() {
        let small = WalConfig {
            max_segment_bytes: 4095,
            ..WalConfig::default()
        };
        assert_eq!(
            small.check().map_err(|e| e.key),
            Err("max_segment_bytes".into())
        );
        let below = WalConfig {
            max_segment_bytes: 8192,
            max_total_bytes: 4096,
            ..WalConfig::default()
        };
        assert_eq!(
            below.check().expect_err("total below segment").to_string(),
            "max_total_bytes: 4096 is below wal.max_segment_bytes (8192)"
        );
        assert_eq!(WalConfig::default().check(), Ok(()));
    }
}
