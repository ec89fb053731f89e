//! What the fuzz targets share.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A directory of this process's own named after `what`, emptied before each input (on tmpfs
/// when there is one, so a target that writes files stays fast).
pub fn scratch_dir(what: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("logtail-fuzz-{what}-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
    dir.clone()
}
