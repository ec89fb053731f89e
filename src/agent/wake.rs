//! Wake-ups for idle files: inotify tells the tailer as soon as a file it is waiting on changes,
//! so a line appended to a quiet file is read within milliseconds rather than after the poll
//! backoff (up to `max_poll_interval_ms`).
//!
//! A wake-up is only a hint that moves a file's next read earlier. Polling stays, and nothing
//! depends on a wake-up for correctness: a file whose watch cannot be placed (the watch limit,
//! no `/proc`), a change inotify does not see (writes on another NFS client), or a watch left on
//! an inode the stream no longer reads are all caught by the next poll.
//!
//! Watches are one-shot (`IN_ONESHOT`) and armed only when a read found a file idle: a file
//! that keeps growing costs no inotify events, and a quiet one at most one each time it goes
//! quiet. A watch is placed on the open descriptor (through `/proc/self/fd`), so it follows the
//! inode being read, which its path may no longer name after a rotation. A thread waits on the
//! inotify descriptor and forwards the id of each watch that fired to the tailer, which waits
//! on that channel beside its others.
//!
//! # Directories
//! The directory of every glob is watched too (`IN_CREATE`, `IN_MOVED_FROM`, `IN_MOVED_TO`,
//! persistent), so that a file is opened as soon as it appears rather than at the next scan
//! (`scan_interval_ms`): with a glob that names only the live file (`/var/log/app.log`), a
//! file created and rotated away between two scans would otherwise never be read. A rename
//! within a watched directory arrives as one [`DirectoryEvent::Renamed`] (the kernel queues the
//! `IN_MOVED_FROM`/`IN_MOVED_TO` pair with one cookie, next to each other), so the tailer can
//! find a file renamed away before it was opened under its new name. The scan stays the
//! fallback: a directory that cannot be watched, a glob with wildcards above the file name
//! (only its deepest literal directory is watched), or lost events (queue overflow, reported as
//! [`DirectoryEvent::Overflowed`]) are caught by the next scan.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use crate::log_limit::RateLimitedWarning;

/// Content written or truncated, metadata changed (a deletion drops the link count), or the
/// file renamed: each is a reason to look at the file now.
const WAKE_ON: WatchMask = WatchMask::MODIFY
    .union(WatchMask::ATTRIB)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONESHOT);

/// A file appeared in, or was renamed within, a watched directory.
const DIRECTORY_EVENTS: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ONLYDIR);

/// Forwarded instead of a watch id when the kernel's event queue overflowed.
const QUEUE_OVERFLOWED: i32 = -1;

/// What happened in a watched directory (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryEvent {
    /// A file was created or moved in from elsewhere: scan now.
    Appeared,
    /// A file was renamed from `from` to `to` (full paths) within watched directories.
    Renamed { from: PathBuf, to: PathBuf },
    /// Events were lost: scan now.
    Overflowed,
}

static ARM_WARNING: RateLimitedWarning =
    RateLimitedWarning::new(std::time::Duration::from_secs(60));

/// One-shot watches on idle files, each armed for one stream (by its tailer key).
pub struct FileWakeups {
    watches: Watches,
    /// Watch id → (its descriptor, the stream it was armed for).
    armed: HashMap<i32, (WatchDescriptor, u64)>,
    /// Stream key → its armed watch id.
    by_key: HashMap<u64, i32>,
    /// Watched directories, by watch id (shared with the reader thread, which names paths).
    directories: Arc<Mutex<HashMap<i32, PathBuf>>>,
    /// Where the reader thread sends [`DirectoryEvent`]s.
    directory_events: Receiver<DirectoryEvent>,
    /// Closed on drop, which tells the reader thread to end.
    stop: Option<UnixStream>,
    reader: Option<JoinHandle<()>>,
}

impl FileWakeups {
    /// Starts the inotify instance and its reader thread; the ids of fired watches arrive on the
    /// returned channel, to be passed to [`FileWakeups::fired`].
    pub fn start() -> io::Result<(FileWakeups, Receiver<i32>)> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let (stop, stopped) = UnixStream::pair()?;
        let (fired_tx, fired_rx) = crossbeam_channel::unbounded();
        let (directory_tx, directory_rx) = crossbeam_channel::unbounded();
        let directories = Arc::new(Mutex::new(HashMap::new()));
        let names = Arc::clone(&directories);
        let reader = std::thread::Builder::new()
            .name("agent-wakeups".into())
            .spawn(move || forward(inotify, &stopped, &fired_tx, &directory_tx, &names))?;
        Ok((
            FileWakeups {
                watches,
                armed: HashMap::new(),
                by_key: HashMap::new(),
                directories,
                directory_events: directory_rx,
                stop: Some(stop),
                reader: Some(reader),
            },
            fired_rx,
        ))
    }

    /// Arms a one-shot watch on `file` for stream `key`, unless one is armed already. When it
    /// cannot be placed, the stream is just polled (logged at most once a minute).
    pub fn arm(&mut self, key: u64, file: &File) {
        if self.by_key.contains_key(&key) {
            return;
        }
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        match self.watches.add(&path, WAKE_ON) {
            Ok(wd) => {
                let id = wd.get_watch_descriptor_id();
                // The same inode gives the same id: a stream that read it before (a truncated
                // file now read by a new stream) is no longer armed, and re-arms when idle.
                if let Some((_, previous)) = self.armed.insert(id, (wd, key)) {
                    self.by_key.remove(&previous);
                }
                self.by_key.insert(key, id);
            }
            Err(e) => ARM_WARNING.warn(|| {
                format!(
                    "cannot watch an open file with inotify ({e}); it is polled instead \
                     (raise fs.inotify.max_user_watches if the limit was reached)"
                )
            }),
        }
    }

    /// The stream a fired watch was armed for, if it still is (the watch is gone: one-shot).
    pub fn fired(&mut self, id: i32) -> Option<u64> {
        if id == QUEUE_OVERFLOWED {
            // Events were lost: no stream may stay marked armed for a watch that fired
            // unseen. Each is armed again at its next idle read, and polled meanwhile.
            self.armed.clear();
            self.by_key.clear();
            return None;
        }
        let (_, key) = self.armed.remove(&id)?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// The channel of [`DirectoryEvent`]s from the directories [`FileWakeups::watch_directory`]
    /// watches.
    pub fn directory_events(&self) -> Receiver<DirectoryEvent> {
        self.directory_events.clone()
    }

    /// Watches `dir` for files appearing or renamed in it, unless it is watched already. When
    /// the watch cannot be placed, the scan finds its files (logged at most once a minute).
    pub fn watch_directory(&mut self, dir: &Path) {
        let Ok(mut directories) = self.directories.lock() else {
            return;
        };
        if directories.values().any(|watched| watched == dir) {
            return;
        }
        match self.watches.add(dir, DIRECTORY_EVENTS) {
            Ok(wd) => {
                directories.insert(wd.get_watch_descriptor_id(), dir.to_path_buf());
            }
            Err(e) => ARM_WARNING.warn(|| {
                format!(
                    "cannot watch directory {} with inotify ({e}); new files in it are found \
                     by the scan (raise fs.inotify.max_user_watches if the limit was reached)",
                    dir.display()
                )
            }),
        }
    }

    /// Removes the watch of a stream that is no longer tracked.
    pub fn disarm(&mut self, key: u64) {
        if let Some(id) = self.by_key.remove(&key)
            && let Some((wd, _)) = self.armed.remove(&id)
        {
            // Fails when it already fired, or the inode is gone: nothing left to remove.
            let _ = self.watches.remove(wd);
        }
    }
}

impl Drop for FileWakeups {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The reader thread: forwards the id of every file watch that fires, and every directory
/// event, until `stopped` becomes readable (its other end closed) or the tailer is gone.
fn forward(
    mut inotify: Inotify,
    stopped: &UnixStream,
    fired: &Sender<i32>,
    directory_events: &Sender<DirectoryEvent>,
    directories: &Mutex<HashMap<i32, PathBuf>>,
) {
    let mut buffer = [0u8; 4096];
    // The `IN_MOVED_FROM` half of a rename, waiting for its `IN_MOVED_TO` (same cookie).
    let mut moved_from: Option<(u32, PathBuf)> = None;
    let mut fds = [
        libc::pollfd {
            fd: inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stopped.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call, and both
        // descriptors stay open while this function runs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("inotify wake-ups end ({e}); idle files are polled");
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        match inotify.read_events(&mut buffer) {
            Ok(events) => {
                for event in events {
                    let in_directory = event.mask.intersects(
                        EventMask::CREATE | EventMask::MOVED_FROM | EventMask::MOVED_TO,
                    );
                    if in_directory {
                        let path = directories.lock().ok().and_then(|dirs| {
                            let dir = dirs.get(&event.wd.get_watch_descriptor_id())?;
                            Some(dir.join(event.name?))
                        });
                        let Some(path) = path else { continue };
                        let directory_event = if event.mask.contains(EventMask::MOVED_FROM) {
                            moved_from = Some((event.cookie, path));
                            continue;
                        } else if event.mask.contains(EventMask::MOVED_TO) {
                            match moved_from.take() {
                                Some((cookie, from)) if cookie == event.cookie => {
                                    DirectoryEvent::Renamed { from, to: path }
                                }
                                _ => DirectoryEvent::Appeared,
                            }
                        } else {
                            DirectoryEvent::Appeared
                        };
                        if directory_events.send(directory_event).is_err() {
                            return;
                        }
                        continue;
                    }
                    let id = if event.mask.contains(EventMask::Q_OVERFLOW) {
                        if directory_events.send(DirectoryEvent::Overflowed).is_err() {
                            return;
                        }
                        QUEUE_OVERFLOWED
                    } else if event.mask.contains(EventMask::IGNORED) {
                        // Follows every one-shot watch that fired, and says nothing new.
                        continue;
                    } else {
                        event.wd.get_watch_descriptor_id()
                    };
                    if fired.send(id).is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::warn!("inotify wake-ups end ({e}); idle files are polled");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;
    use std::time::Duration;

    const SOON: Duration = Duration::from_secs(5);

    /// A new file in a temporary directory, a writer appending to it, and started wake-ups.
    struct Fixture {
        dir: tempfile::TempDir,
        path: PathBuf,
        writer: File,
        wakeups: FileWakeups,
        fired: Receiver<i32>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.log");
            let writer = File::create(&path).unwrap();
            let (wakeups, fired) = FileWakeups::start().unwrap();
            Fixture {
                dir,
                path,
                writer,
                wakeups,
                fired,
            }
        }

        fn reader(&self) -> File {
            File::open(&self.path).unwrap()
        }

        fn append(&mut self, bytes: &[u8]) {
            self.writer.write_all(bytes).unwrap();
        }

        /// The stream the next fired watch wakes; panics when none fires.
        fn woken(&mut self, what: &str) -> Option<u64> {
            let id = self.fired.recv_timeout(SOON).expect(what);
            self.wakeups.fired(id)
        }

        fn nothing_fires(&self) -> bool {
            self.fired.recv_timeout(Duration::from_millis(200)).is_err()
        }
    }

    #[test]
    fn an_armed_file_fires_once_for_its_stream_on_append_and_rename() {
        let mut f = Fixture::new();
        let reader = f.reader();
        f.wakeups.arm(7, &reader);
        f.append(b"one\n");
        f.append(b"two\n");
        assert_eq!(f.woken("the append fires the watch"), Some(7));
        // One-shot: the writes after that fire nothing until it is armed again.
        f.append(b"three\n");
        assert!(f.nothing_fires());

        // Armed again, the watch follows the inode through a rename (rotation).
        f.wakeups.arm(7, &reader);
        std::fs::rename(&f.path, f.dir.path().join("a.log.1")).unwrap();
        assert_eq!(f.woken("the rename fires the watch"), Some(7));
        f.wakeups.arm(7, &reader);
        f.append(b"four\n");
        assert_eq!(f.woken("writes to the renamed file fire it"), Some(7));
    }

    #[test]
    fn a_disarmed_stream_is_not_woken_and_the_same_inode_moves_to_the_new_stream() {
        let mut f = Fixture::new();
        f.wakeups.arm(1, &f.reader());
        f.wakeups.disarm(1);
        f.append(b"x\n");
        assert!(f.nothing_fires());

        // Two streams on one inode: the watch belongs to the last one armed.
        f.wakeups.arm(1, &f.reader());
        f.wakeups.arm(2, &f.reader());
        f.append(b"y\n");
        assert_eq!(f.woken("fires"), Some(2));
        // Stream 1 lost its watch, so it can be armed again.
        f.wakeups.arm(1, &f.reader());
        f.append(b"z\n");
        assert_eq!(f.woken("fires"), Some(1));
    }

    #[test]
    fn after_a_queue_overflow_every_stream_can_be_armed_again() {
        let mut f = Fixture::new();
        f.wakeups.arm(3, &f.reader());
        // The watch fires, but its event is lost in the overflow.
        f.append(b"lost\n");
        f.fired.recv_timeout(SOON).expect("fires");
        assert_eq!(f.wakeups.fired(QUEUE_OVERFLOWED), None);
        f.wakeups.arm(3, &f.reader());
        f.append(b"x\n");
        assert_eq!(f.woken("fires"), Some(3));
    }

    #[test]
    fn a_watched_directory_reports_new_files_and_renames_with_both_paths() {
        let mut f = Fixture::new();
        let events = f.wakeups.directory_events();
        f.wakeups.watch_directory(f.dir.path());
        // Watching twice places one watch: each event comes once.
        f.wakeups.watch_directory(f.dir.path());
        let created = f.dir.path().join("b.log");
        File::create(&created).unwrap();
        assert_eq!(events.recv_timeout(SOON), Ok(DirectoryEvent::Appeared));
        let rotated = f.dir.path().join("b.log.1");
        std::fs::rename(&created, &rotated).unwrap();
        assert_eq!(
            events.recv_timeout(SOON),
            Ok(DirectoryEvent::Renamed {
                from: created,
                to: rotated
            })
        );
        assert!(events.recv_timeout(Duration::from_millis(200)).is_err());
        // Appending to a file in it is not a directory event, and arms no file watch.
        f.append(b"x\n");
        assert!(events.recv_timeout(Duration::from_millis(200)).is_err());
        assert!(f.nothing_fires());
    }

    #[test]
    fn dropping_the_wakeups_ends_the_reader_thread() {
        let f = Fixture::new();
        drop(f.wakeups);
        assert!(matches!(
            f.fired.recv_timeout(SOON),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ));
    }
}
