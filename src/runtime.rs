//! Threads that each run one single-threaded tokio runtime: the shards and the metrics
//! endpoint. A runtime per thread keeps every task, and everything it touches, on that thread.
//! Also the process's open-files limit, which thousands of connections need raised, and the
//! machine's host name.

use std::future::Future;
use std::io;
use std::thread::JoinHandle;

/// `gethostname`, or `localhost` when it fails or is not a syslog HOSTNAME (1–255 bytes of
/// printable US-ASCII). The agent names its host with it; the gateway gives it to messages
/// from its Unix sockets that name no host.
pub fn machine_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = &buf[..len];
    if rc == 0 && !name.is_empty() && name.iter().all(|b| (33..=126).contains(b)) {
        String::from_utf8_lossy(name).into_owned()
    } else {
        "localhost".to_owned()
    }
}

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
