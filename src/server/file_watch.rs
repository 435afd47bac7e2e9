//! Reloading when the config file changes: an edit, a `mv` over it, a Kubernetes ConfigMap
//! update.
//!
//! The directories that hold the file are watched (inotify, through `notify`): a ConfigMap
//! volume is `baton.toml -> ..data/baton.toml` with `..data` a symlink that the kubelet
//! swaps atomically (a rename in the mount directory), which a watch on the file itself would
//! miss — it follows the old inode. An event only says "look": the file's content is read and
//! compared with what was last loaded, so events for other files and a rewrite with the same
//! content cost a read, not a reload. A content poll every [`POLL_INTERVAL`] stays as the
//! fallback (a filesystem without inotify, a watch that could not be set up, events lost to
//! an overflowing queue).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::control::Control;

/// How often the config file's content is compared even without an event.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How long after an event the file is read: editors and `kubectl` write in several steps,
/// and reading after the burst reloads once instead of once per step (or on a half-written
/// file).
const SETTLE: Duration = Duration::from_millis(20);

/// Reloads whenever the config file's content changes, until the task is aborted.
pub(super) async fn config_file(control: Arc<Control>) {
    let path = control.config_path().to_owned();
    let (changed, mut events) = mpsc::channel::<()>(1);
    // Kept for the task's life: dropping the watcher ends the watch.
    let mut watch = DirectoryWatch::new(changed);
    watch.follow(&path);
    let mut seen = std::fs::read(&path).ok();
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.tick().await;
    loop {
        tokio::select! {
            _ = poll.tick() => {}
            Some(()) = events.recv() => {
                tokio::time::sleep(SETTLE).await;
                // The burst's other events are covered by the read below.
                while events.try_recv().is_ok() {}
            }
        }
        // A swap may have moved the file behind the symlinks to another directory.
        watch.follow(&path);
        let current = std::fs::read(&path).ok();
        if current.is_some() && current != seen {
            tracing::info!(path = %path.display(), "the config file changed; reloading");
            super::reload(&control).await;
            seen = current;
        }
    }
}

/// An inotify watch on the directories a config file depends on; each event sends on the
/// channel (dropped when one is already waiting).
struct DirectoryWatch {
    /// `None` when no watcher could be made: the poll still runs.
    watcher: Option<notify::RecommendedWatcher>,
    /// The directories asked for last (a watch that failed is not retried, nor warned
    /// about, until they change).
    wanted: Vec<PathBuf>,
    watched: Vec<PathBuf>,
}

impl DirectoryWatch {
    fn new(changed: mpsc::Sender<()>) -> Self {
        let handler = move |event: notify::Result<notify::Event>| {
            // An error (a queue overflow) is a reason to look too.
            if event.is_ok_and(|event| event.kind.is_access()) {
                return;
            }
            let _ = changed.try_send(());
        };
        let watcher = notify::recommended_watcher(handler)
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot watch the config file; polling it every 2 s");
            })
            .ok();
        Self {
            watcher,
            wanted: Vec::new(),
            watched: Vec::new(),
        }
    }

    /// Watches the directories `path` depends on now, and no others.
    fn follow(&mut self, path: &Path) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        let wanted = directories(path);
        if wanted == self.wanted {
            return;
        }
        for gone in self.watched.iter().filter(|d| !wanted.contains(d)) {
            // A directory that was removed took its watch with it.
            let _ = watcher.unwatch(gone);
        }
        let mut watched = Vec::new();
        for directory in wanted.iter().cloned() {
            if self.watched.contains(&directory) {
                watched.push(directory);
                continue;
            }
            match watcher.watch(&directory, RecursiveMode::NonRecursive) {
                Ok(()) => watched.push(directory),
                Err(e) => tracing::warn!(
                    directory = %directory.display(),
                    error = %e,
                    "cannot watch a directory of the config file; polling it every 2 s"
                ),
            }
        }
        self.watched = watched;
        self.wanted = wanted;
    }
}

/// The directories whose changes can change what `path` reads: its own, and the resolved
/// file's when that is elsewhere (a symlink into another mount).
fn directories(path: &Path) -> Vec<PathBuf> {
    let parent = |path: &Path| match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut directories = vec![parent(path)];
    if let Ok(resolved) = std::fs::canonicalize(path) {
        let resolved_parent = parent(&resolved);
        let same = std::fs::canonicalize(&directories[0]).is_ok_and(|own| own == resolved_parent);
        if !same {
            directories.push(resolved_parent);
        }
    }
    directories
}
