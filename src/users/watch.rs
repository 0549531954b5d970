//! Keeps `LiveUsers` in step with the users file while the server runs.

use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{LiveUsers, UsersFile, UsersFileError};

/// A zero interval would make `tokio::time::interval` panic.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// A file modified this recently may change again within the same mtime
/// tick (1–2 s on some filesystems and bind mounts) without its stamp
/// changing, so its stamp is not trusted yet and it is re-read (the
/// content hash then skips the no-op).
const RACY_WINDOW: Duration = Duration::from_secs(3);

/// Polls `path` every `every` and, when it changed, loads it and swaps the
/// result into `users`. A file that fails to load leaves the previous
/// users in place and is logged once per distinct error.
///
/// Polling rather than inotify is deliberate: it works on every
/// filesystem, including NFS, Docker and Kubernetes bind mounts, and a
/// Kubernetes ConfigMap's symlink swap (the stamp follows the link, so
/// the new target's inode and times show up). Mount the directory rather
/// than the single file in a container: a single-file bind mount keeps
/// the old inode when the file is replaced by rename, as every editor and
/// `authgate user add` do.
///
/// The first poll loads the file too (logged at debug), so a change made
/// between the caller's own load and this task's start is not missed.
pub fn watch_users_file(path: PathBuf, users: Arc<LiveUsers>, every: Duration) -> JoinHandle<()> {
    let every = every.max(MIN_INTERVAL);
    tokio::spawn(async move {
        let mut snapshot = Snapshot::default();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            ticks.tick().await;
            let outcome;
            (snapshot, outcome) = poll(snapshot, path.clone(), users.clone()).await;
            log(&path, &outcome, first);
            first = false;
        }
    })
}

/// Runs one poll on the blocking pool: a stat on a hung network mount
/// must stall this watcher, not a runtime worker serving requests.
async fn poll(mut snapshot: Snapshot, path: PathBuf, users: Arc<LiveUsers>) -> (Snapshot, Reload) {
    let task = tokio::task::spawn_blocking(move || {
        let outcome = reload_if_changed(&mut snapshot, &path, &users);
        (snapshot, outcome)
    });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "users file watcher: poll failed; starting afresh");
        (Snapshot::default(), Reload::Unchanged)
    })
}

fn log(path: &Path, outcome: &Reload, first: bool) {
    let path = path.display();
    match outcome {
        Reload::Reloaded(n) if first => tracing::debug!(users = n, %path, "users file loaded"),
        Reload::Reloaded(n) => tracing::info!(users = n, %path, "users file reloaded"),
        Reload::Failed(e) => {
            tracing::warn!(error = %e, "users file not reloaded; keeping the previous users")
        }
        Reload::Unchanged | Reload::FailedAgain => {}
    }
}

/// What the watcher knows about the file it last looked at.
#[derive(Debug, Default)]
struct Snapshot {
    /// `None`: unknown or not yet trustworthy, so read the file.
    stamp: Option<Stamp>,
    /// Hash of the content now live in `LiveUsers`.
    hash: Option<[u8; 32]>,
    /// The last error logged, so a broken file is reported once.
    last_error: Option<String>,
}

#[derive(Debug)]
enum Reload {
    Unchanged,
    Reloaded(usize),
    Failed(UsersFileError),
    /// The same error as last time: not worth another log line.
    FailedAgain,
}

fn reload_if_changed(snapshot: &mut Snapshot, path: &Path, users: &LiveUsers) -> Reload {
    // Stamp before reading: a write in between is then seen next time.
    let stamp = Stamp::of(path);
    if snapshot.stamp.as_ref() == Some(&stamp) {
        return Reload::Unchanged;
    }
    snapshot.stamp = stamp.is_settled().then_some(stamp);
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            return snapshot.failed(UsersFileError::Read {
                path: path.into(),
                error,
            });
        }
    };
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    if snapshot.hash == Some(hash) {
        snapshot.last_error = None;
        return Reload::Unchanged;
    }
    match UsersFile::from_bytes(path, &bytes) {
        Ok(file) => {
            let loaded = file.into_users();
            let n = loaded.len();
            users.replace(loaded);
            snapshot.hash = Some(hash);
            snapshot.last_error = None;
            Reload::Reloaded(n)
        }
        Err(e) => snapshot.failed(e),
    }
}

impl Snapshot {
    fn failed(&mut self, error: UsersFileError) -> Reload {
        let message = error.to_string();
        if self.last_error.as_deref() == Some(message.as_str()) {
            return Reload::FailedAgain;
        }
        self.last_error = Some(message);
        Reload::Failed(error)
    }
}

/// Enough metadata to notice a change without reading the file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    Absent,
    File {
        modified: Option<SystemTime>,
        len: u64,
        id: FileId,
    },
}

impl Stamp {
    fn of(path: &Path) -> Stamp {
        match fs::metadata(path) {
            Ok(meta) => Stamp::File {
                modified: meta.modified().ok(),
                len: meta.len(),
                id: file_id(&meta),
            },
            Err(_) => Stamp::Absent,
        }
    }

    fn is_settled(&self) -> bool {
        match self {
            Stamp::Absent => true,
            Stamp::File { modified, .. } => modified
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > RACY_WINDOW),
        }
    }
}

/// Device, inode and change time: a rename-replace or a chmod shows even
/// when size and mtime are the same.
#[cfg(unix)]
type FileId = (u64, u64, i64, i64);

#[cfg(unix)]
fn file_id(meta: &Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

#[cfg(not(unix))]
type FileId = ();

#[cfg(not(unix))]
fn file_id(_meta: &Metadata) -> FileId {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use crate::users::UserDirectory;

    const PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaA";

    fn user(email: &str) -> User {
        User {
            email: email.to_owned(),
            name: String::new(),
            country_code: String::new(),
            phone: String::new(),
            password: PHC.to_owned(),
            groups: Vec::new(),
            second_factor: None,
            second_factor_reset: None,
            identity: Default::default(),
        }
    }

    fn write_users(path: &Path, emails: &[&str]) {
        let mut file = UsersFile::open_or_empty(path).unwrap();
        for email in file.users().to_vec() {
            file.remove(&email.email).unwrap();
        }
        for email in emails {
            file.add(user(email)).unwrap();
        }
        file.save().unwrap();
    }

    #[test]
    fn reload_picks_up_added_and_removed_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let live = LiveUsers::default();
        let mut snapshot = Snapshot::default();
        write_users(&path, &["alice@example.com"]);
        let outcome = reload_if_changed(&mut snapshot, &path, &live);
        assert!(matches!(outcome, Reload::Reloaded(1)), "{outcome:?}");
        assert!(live.find("alice@example.com").is_some());
        assert!(live.find("bob@example.com").is_none());

        write_users(&path, &["alice@example.com", "Bob@example.com"]);
        let outcome = reload_if_changed(&mut snapshot, &path, &live);
        assert!(matches!(outcome, Reload::Reloaded(2)), "{outcome:?}");
        assert!(live.find("bob@example.com").is_some());

        write_users(&path, &["Bob@example.com"]);
        reload_if_changed(&mut snapshot, &path, &live);
        assert!(live.find("alice@example.com").is_none());
        assert!(live.find("bob@example.com").is_some());
    }

    #[test]
    fn same_content_rewritten_is_not_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let live = LiveUsers::default();
        let mut snapshot = Snapshot::default();
        write_users(&path, &["alice@example.com"]);
        reload_if_changed(&mut snapshot, &path, &live);
        write_users(&path, &["alice@example.com"]);
        let outcome = reload_if_changed(&mut snapshot, &path, &live);
        assert!(matches!(outcome, Reload::Unchanged), "{outcome:?}");
    }

    #[test]
    fn broken_content_keeps_old_users_and_reports_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let live = LiveUsers::default();
        let mut snapshot = Snapshot::default();
        write_users(&path, &["alice@example.com"]);
        reload_if_changed(&mut snapshot, &path, &live);

        fs::write(&path, "[[user]\nemail = ").unwrap();
        let outcome = reload_if_changed(&mut snapshot, &path, &live);
        assert!(
            matches!(outcome, Reload::Failed(UsersFileError::Parse { .. })),
            "{outcome:?}"
        );
        assert!(live.find("alice@example.com").is_some());
        let outcome = reload_if_changed(&mut snapshot, &path, &live);
        assert!(
            matches!(outcome, Reload::FailedAgain | Reload::Unchanged),
            "{outcome:?}"
        );

        fs::remove_file(&path).unwrap();
        let outcome = reload_if_changed(&mut snapshot, &path, &live);
        assert!(
            matches!(outcome, Reload::Failed(UsersFileError::Read { .. })),
            "{outcome:?}"
        );
        assert!(live.find("alice@example.com").is_some());

        write_users(&path, &["bob@example.com"]);
        let outcome = reload_if_changed(&mut snapshot, &path, &live);
        assert!(matches!(outcome, Reload::Reloaded(1)), "{outcome:?}");
        assert!(live.find("alice@example.com").is_none());
    }

    #[test]
    fn settled_stamp_skips_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        write_users(&path, &["alice@example.com"]);
        let old = SystemTime::now() - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let live = LiveUsers::default();
        let mut snapshot = Snapshot::default();
        reload_if_changed(&mut snapshot, &path, &live);
        assert!(snapshot.stamp.is_some());
        let outcome = reload_if_changed(&mut snapshot, &path, &live);
        assert!(matches!(outcome, Reload::Unchanged), "{outcome:?}");
        // A replace by rename is seen even with the same size and mtime.
        write_users(&path, &["carol@example.com"]);
        let outcome = reload_if_changed(&mut snapshot, &path, &live);
        assert!(matches!(outcome, Reload::Reloaded(1)), "{outcome:?}");
    }

    async fn wait_for(live: &LiveUsers, email: &str) -> bool {
        for _ in 0..100 {
            if live.find(email).is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn watcher_sees_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        write_users(&path, &["alice@example.com"]);
        let live = Arc::new(LiveUsers::default());
        let task = watch_users_file(path.clone(), live.clone(), Duration::from_millis(50));
        assert!(wait_for(&live, "alice@example.com").await);
        write_users(&path, &["alice@example.com", "bob@example.com"]);
        assert!(wait_for(&live, "bob@example.com").await);
        task.abort();
    }
}
