//! Threads that each run one single-threaded tokio runtime: the shards and the metrics
//! endpoint. A runtime per thread keeps every task, and everything it touches, on that thread.

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
