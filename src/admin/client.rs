//! The CLI's end of the socket: one request, one reply, blocking.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Reply, Request};

/// How long the CLI waits for a reply (a revoke of many sessions on a
/// slow store).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there: no gateway runs (or it runs without the
    /// socket); the CLI then works on the store directly.
    #[error("no gateway listens on {0}")]
    NotRunning(String),
    #[error("admin socket {path}: {reason}")]
    Failed { path: String, reason: String },
}

/// Sends `request` to the gateway listening at `path`.
pub fn ask(path: &Path, request: &Request) -> Result<Reply, ClientError> {
    let failed = |err: io::Error| ClientError::Failed {
        path: path.display().to_string(),
        reason: match err.kind() {
            // The gateway closes on a peer it refuses before reading.
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof => {
                "the gateway closed the connection (is this the gateway's user, or root?)"
                    .to_owned()
            }
            _ => err.to_string(),
        },
    };
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotRunning(path.display().to_string()));
        }
        Err(err) => return Err(failed(err)),
    };
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(failed)?;
    let mut line = serde_json::to_vec(request).expect("a request always encodes");
    line.push(b'\n');
    stream.write_all(&line).map_err(failed)?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(failed)?;
    if reply.is_empty() {
        return Err(failed(io::ErrorKind::UnexpectedEof.into()));
    }
    serde_json::from_str(&reply).map_err(|e| failed(io::Error::other(e)))
}
