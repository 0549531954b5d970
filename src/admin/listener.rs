//! The socket: created 0600 (the umask is narrowed around `bind`, so the
//! file never exists with wider permissions), a stale file from a crash
//! removed first, every peer's uid checked with `SO_PEERCRED` before a
//! byte is read. Each connection is served by its own task, a request at
//! a time, with bounded lines and an idle timeout.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::protocol::{Reply, Request};
use super::service::AdminService;

/// The longest request line: a command and an email.
const MAX_LINE: usize = 4096;

/// A connection with no request for this long is closed.
const IDLE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    #[error("server.admin_socket {path}: {reason}")]
    Open { path: String, reason: String },
}

fn open_error(path: &Path, reason: impl std::fmt::Display) -> AdminSocketError {
    AdminSocketError::Open {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The running socket; `stop` ends it and removes the file.
pub struct AdminSocket {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl AdminSocket {
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket at `path` and serves `service` on it.
pub fn start(path: &Path, service: Arc<AdminService>) -> Result<AdminSocket, AdminSocketError> {
    remove_stale(path)?;
    let listener = bind_private(path).map_err(|e| open_error(path, e))?;
    let task = tokio::spawn(accept_loop(listener, service));
    tracing::info!(path = %path.display(), "admin socket listening");
    Ok(AdminSocket {
        path: path.to_owned(),
        task,
    })
}

/// A socket file left by a gateway that did not stop cleanly goes; one a
/// running gateway answers on, or a file that is no socket, stays.
fn remove_stale(path: &Path) -> Result<(), AdminSocketError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(open_error(path, "exists and is not a socket"));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(open_error(path, "another gateway is listening on it"));
    }
    std::fs::remove_file(path).map_err(|e| open_error(path, e))
}

/// `bind` under umask 077 (the process's umask is put back at once;
/// another thread creating a file meanwhile gets narrower permissions,
/// never wider), then 0600 set explicitly.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    // SAFETY: umask only swaps the process's file-mode mask.
    let before = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, putting back the mask of before.
    unsafe { libc::umask(before) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn accept_loop(listener: UnixListener, service: Arc<AdminService>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, service.clone()));
            }
            Err(err) => {
                tracing::warn!(error = %err, "admin socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The gateway's own uid and root may talk to it; anyone else is closed
/// on before a byte is read (the file's mode keeps them out already: this
/// holds also if the file is made wider by hand).
fn is_allowed(peer_uid: u32) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own = unsafe { libc::geteuid() };
    peer_uid == own || peer_uid == 0
}

async fn serve(stream: UnixStream, service: Arc<AdminService>) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(err) => {
            tracing::warn!(error = %err, "admin socket: no peer credentials; closed");
            return;
        }
    };
    if !is_allowed(uid) {
        tracing::warn!(uid, "admin socket: refused a connection from another user");
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let read = tokio::time::timeout(IDLE, read_line(&mut lines, &mut line)).await;
        // A line over the limit is answered, then the connection closed:
        // the rest of it cannot be told from the next request.
        let (reply, then_close) = match read {
            Ok(Ok(0)) | Err(_) => return,
            Ok(Ok(_)) => (answer(&service, &line).await, false),
            Ok(Err(err)) => (
                Reply::Error {
                    message: err.to_string(),
                },
                true,
            ),
        };
        let mut out = serde_json::to_vec(&reply).expect("a reply always encodes");
        out.push(b'\n');
        if write.write_all(&out).await.is_err() || then_close {
            return;
        }
    }
}

/// One line, at most `MAX_LINE` bytes; 0 at the end of the stream.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut limited = (&mut *reader).take(MAX_LINE as u64 + 1);
    let n = limited.read_until(b'\n', line).await?;
    if n > MAX_LINE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a request line is at most {MAX_LINE} bytes"),
        ));
    }
    Ok(n)
}

async fn answer(service: &Arc<AdminService>, line: &[u8]) -> Reply {
    let request: Request = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(err) => {
            return Reply::Error {
                message: format!("not a request: {err}"),
            };
        }
    };
    tracing::info!(?request, "admin socket request");
    let service = service.clone();
    // The store may block (a sled flush, a Redis round trip).
    tokio::task::spawn_blocking(move || service.handle(request))
        .await
        .unwrap_or_else(|err| Reply::Error {
            message: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_own_uid_and_root_are_allowed() {
        let own = unsafe { libc::geteuid() };
        assert!(is_allowed(own));
        assert!(is_allowed(0));
        assert!(!is_allowed(own.wrapping_add(1).max(1)));
    }
}
