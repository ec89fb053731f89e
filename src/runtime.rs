//! Threads that each run one single-threaded tokio runtime: the shards and the metrics
//! endpoint. A runtime per thread keeps every task, and everything it touches, on that thread.
//! Also the process's open-files limit, which thousands of connections need raised.

use std::future::Future;
use std::io;
use std::thread::JoinHandle;

/// Spawns thread `name` and runs the future `make` returns on a current-thread runtime there,
/// inside a `LocalSet` (so the future may spawn `!Send` tasks with `spawn_local`).
///
/// # Errors
/// When the thread cannot be spawned. A runtime that cannot start is logged and the thread ends.
pub fn spawn<F, Fut>(name: String, make: F) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!("thread {name}: cannot start its runtime: {e}");
                    return;
                }
            };
            tokio::task::LocalSet::new().block_on(&runtime, make());
        })
}

/// Raises the soft limit of open files towards `want` (at most the hard limit): thousands of
/// connections need more descriptors than the usual soft limit of 1024. Returns the soft limit
/// in force afterwards.
pub fn raise_open_files_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}
