//! The background writer: one line per record, flushed, to stdout or to
//! `audit.file`, which SIGHUP reopens (after a rotation has renamed it).

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::Record;
use crate::config::AuditOutput;

/// Where the lines go.
#[derive(Debug, Clone)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

impl Sink {
    /// Where `audit.output` sends the lines; none when it is off.
    pub fn of(output: &AuditOutput) -> Option<Sink> {
        match output {
            AuditOutput::Off => None,
            AuditOutput::Stdout => Some(Sink::Stdout),
            AuditOutput::File(path) => Some(Sink::File(path.clone())),
        }
    }
}

/// Opens the sink (so a bad `audit.file` fails at start), then returns
/// the task's future: it writes until every [`super::Audit`] is dropped.
pub async fn start(
    sink: Sink,
    records: mpsc::Receiver<Record>,
) -> io::Result<impl Future<Output = ()>> {
    let out = open(&sink).await?;
    let hangups = match sink {
        Sink::File(_) => Some(signal(SignalKind::hangup())?),
        Sink::Stdout => None,
    };
    Ok(run(sink, out, records, hangups))
}

async fn run(
    sink: Sink,
    mut out: Box<dyn AsyncWrite + Send + Unpin>,
    mut records: mpsc::Receiver<Record>,
    mut hangups: Option<tokio::signal::unix::Signal>,
) {
    loop {
        tokio::select! {
            record = records.recv() => {
                let Some(record) = record else { return };
                if let Err(err) = write(&mut out, &record).await {
                    tracing::error!(error = %err, "cannot write the audit trail");
                }
            }
            Some(()) = hangup(&mut hangups) => match open(&sink).await {
                Ok(reopened) => out = reopened,
                Err(err) => tracing::error!(error = %err, "cannot reopen audit.file; writing on to the old one"),
            },
        }
    }
}

async fn hangup(hangups: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

async fn write(out: &mut (dyn AsyncWrite + Send + Unpin), record: &Record) -> io::Result<()> {
    let mut line = record.to_line();
    line.push('\n');
    out.write_all(line.as_bytes()).await?;
    out.flush().await
}

async fn open(sink: &Sink) -> io::Result<Box<dyn AsyncWrite + Send + Unpin>> {
    match sink {
        Sink::Stdout => Ok(Box::new(tokio::io::stdout())),
        Sink::File(path) => Ok(Box::new(append(path).await?)),
    }
}

async fn append(path: &Path) -> io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|err| io::Error::new(err.kind(), format!("audit.file {}: {err}", path.display())))
}
