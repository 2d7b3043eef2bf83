//! What makes the reloader look again: file system events in the watched
//! directories (debounced), SIGHUP, the poll, SIGUSR1 (reopen logs), and
//! SIGUSR2 (replace the binary, [`crate::upgrade`]).
//!
//! The watcher watches directories, never files: editors save by writing a
//! temporary file and renaming it over the old one, and Kubernetes swaps a
//! ConfigMap by renaming a symlink, both of which kill a watch on the file
//! itself. An event only says "look again"; whether anything changed is
//! decided by [`super::Reloader`] comparing texts. The poll catches what
//! produces no event at all (network filesystems, single-file bind mounts).
//!
//! This module only wakes the reloader; it reads no configuration file.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant, Interval, MissedTickBehavior};

use crate::admin::Trigger;
use crate::config::Config;

/// How often files are re-read when no event arrives.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Quiet time after the last event before reloading.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(100);
/// Longest delay between the first event of a burst and the reload.
const DEBOUNCE_MAX: Duration = Duration::from_millis(500);

/// Why the reloader woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// Look at the files again.
    Reload(Trigger),
    /// SIGUSR1: reopen log files (logrotate's convention, as nginx's).
    ReopenLogs,
    /// SIGUSR2: start the binary again and hand over to it (nginx's
    /// convention).
    Upgrade,
}

/// Every source of [`Wake`]s.
pub(super) struct Triggers {
    events: mpsc::Receiver<()>,
    watcher: DirWatcher,
    hangup: Option<Signal>,
    reopen: Option<Signal>,
    upgrade: Option<Signal>,
    poll: Interval,
}

impl Triggers {
    /// Watch the directories of `config`, and listen for signals.
    pub(super) fn new(config: &Config) -> Self {
        let (events_tx, events) = mpsc::channel(1);
        let mut watcher = DirWatcher::new(events_tx);
        watcher.follow(config);
        let hangup = match signal(SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reload by editing files");
                None
            }
        };
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        poll.reset();
        Triggers {
            events,
            watcher,
            hangup,
            reopen: signal(SignalKind::user_defined1()).ok(),
            upgrade: signal(SignalKind::user_defined2()).ok(),
            poll,
        }
    }

    /// The next reason to wake; `poll` says whether the poll runs (it is
    /// off with `watch = false`). Cancel-safe: nothing is lost when another
    /// branch of a `select!` wins. After a file event, wait out the rest of
    /// its burst with [`Triggers::settle`].
    pub(super) async fn next(&mut self, poll: bool) -> Wake {
        tokio::select! {
            Some(()) = self.events.recv() => Wake::Reload(Trigger::FileEvent),
            Some(()) = async { self.hangup.as_mut()?.recv().await } => Wake::Reload(Trigger::Signal),
            Some(()) = async { self.reopen.as_mut()?.recv().await } => Wake::ReopenLogs,
            Some(()) = async { self.upgrade.as_mut()?.recv().await } => Wake::Upgrade,
            _ = self.poll.tick(), if poll => Wake::Reload(Trigger::Poll),
        }
    }

    /// The next SIGUSR2 (never, if it cannot be listened for): while an
    /// upgrade is under way, another is refused.
    pub(super) async fn next_upgrade(&mut self) {
        match self.upgrade.as_mut() {
            Some(upgrade) => {
                upgrade.recv().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Wait until file events stop for [`DEBOUNCE_QUIET`], at most
    /// [`DEBOUNCE_MAX`]: an editor's save is several events.
    pub(super) async fn settle(&mut self) {
        let deadline = Instant::now() + DEBOUNCE_MAX;
        loop {
            tokio::select! {
                Some(()) = self.events.recv() => continue,
                () = sleep(DEBOUNCE_QUIET) => return,
                () = sleep_until(deadline) => return,
            }
        }
    }

    /// Watch the directories `config` needs (after a reload).
    pub(super) fn follow(&mut self, config: &Config) {
        self.watcher.follow(config);
    }
}

/// Watches configuration directories; each relevant event becomes one
/// (coalesced) message on the channel.
struct DirWatcher {
    watcher: Option<notify::RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
}

impl DirWatcher {
    fn new(tx: mpsc::Sender<()>) -> Self {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Our own reads show up as access events; they change nothing.
            if matches!(&event, Ok(e) if e.kind.is_access()) {
                return;
            }
            let _ = tx.try_send(());
        });
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(%error, "cannot watch files; changes are picked up by polling every {POLL_INTERVAL:?}");
                None
            }
        };
        DirWatcher {
            watcher,
            watched: BTreeSet::new(),
        }
    }

    /// Watch the directories of `config` (none when it turns watching off),
    /// and stop watching directories no longer needed. Directories that do
    /// not exist yet are left to the poll until a later reload finds them.
    fn follow(&mut self, config: &Config) {
        let Some(watcher) = &mut self.watcher else { return };
        let wanted: BTreeSet<PathBuf> = match config.global.watch {
            true => config.watch_dirs.iter().cloned().collect(),
            false => BTreeSet::new(),
        };
        for gone in self.watched.difference(&wanted) {
            let _ = watcher.unwatch(gone);
        }
        self.watched.retain(|d| wanted.contains(d));
        for dir in wanted {
            if self.watched.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching");
                    self.watched.insert(dir);
                }
                Err(error) => tracing::debug!(dir = %dir.display(), %error, "cannot watch yet"),
            }
        }
    }
}

/// What the poll compares instead of reading and parsing every file: each
/// file's size, modification time and inode, and each watched directory's
/// modification time (a file added to, removed from or renamed into
/// `conf.d/`, or a ConfigMap's `..data` swap, changes its directory's). A
/// large configuration then costs one `stat` per file every poll while it
/// is unchanged.
///
/// A change these facts miss (same size, same time, in place, on a file
/// system with coarse times) is still seen by the directory watcher's
/// events and by SIGHUP, which always read the files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Fingerprint(Vec<(PathBuf, Option<FileFacts>)>);

/// The facts of one file or directory that change when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileFacts {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl Fingerprint {
    /// The facts of `paths` (files and directories) as they are now; a
    /// missing one counts as missing, which a later appearance changes.
    pub(super) fn of<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) -> Self {
        let mut paths: Vec<&PathBuf> = paths.into_iter().collect();
        paths.sort();
        paths.dedup();
        Fingerprint(paths.into_iter().map(|p| (p.clone(), facts(p))).collect())
    }

    /// The same paths, looked at again.
    pub(super) fn again(&self) -> Self {
        Fingerprint(self.0.iter().map(|(p, _)| (p.clone(), facts(p))).collect())
    }
}

fn facts(path: &PathBuf) -> Option<FileFacts> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileFacts {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_sees_edits_new_files_and_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let (root, file) = (dir.path().to_path_buf(), dir.path().join("ginx.toml"));
        std::fs::write(&file, "a = 1\n").unwrap();
        let seen = Fingerprint::of([&file, &root]);
        assert_eq!(seen.again(), seen, "nothing changed");

        std::fs::write(&file, "a = 12\n").unwrap();
        let edited = seen.again();
        assert_ne!(edited, seen, "an edit in place");

        std::fs::write(root.join("b.toml"), "").unwrap();
        assert_ne!(edited.again(), edited, "a new file in a watched directory");

        let swapped = edited.again();
        let temp = root.join(".ginx.toml.tmp");
        std::fs::write(&temp, "a = 13\n").unwrap();
        std::fs::rename(&temp, &file).unwrap();
        assert_ne!(swapped.again(), swapped, "an editor's rename over the file");
    }
}
