//! The audit trail (docs/audit.md): one JSON line per security event,
//! apart from the debug log. [`Audit::emit`] never blocks: it puts the
//! event on a bounded queue, or counts it in `authgate_audit_dropped_total`
//! and drops it when the queue is full. [`writer::run`] (a task `app`
//! spawns) writes the lines and reopens the file on SIGHUP.

mod event;
pub mod writer;

pub use event::{Context, Entry, Event, LoginFailure, Record, SessionRef, request_id};

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// The emitting side; cheap to clone. Off, it holds no queue and every
/// call returns at once.
#[derive(Clone)]
pub struct Audit {
    queue: Option<mpsc::Sender<Record>>,
    replica: Arc<str>,
    dropped: Counter,
}

impl Audit {
    /// No audit trail: `audit.output = "off"`.
    pub fn off() -> Self {
        Audit {
            queue: None,
            replica: Arc::from(""),
            dropped: Counter::default(),
        }
    }

    /// An audit trail of at most `bound` waiting events, and the receiving
    /// end for [`writer::run`].
    pub fn bounded(
        bound: usize,
        replica: &str,
        dropped: Counter,
    ) -> (Self, mpsc::Receiver<Record>) {
        let (queue, records) = mpsc::channel(bound);
        let audit = Audit {
            queue: Some(queue),
            replica: Arc::from(replica),
            dropped,
        };
        (audit, records)
    }

    /// The trail of one operator command that works on the store itself
    /// (no gateway answers on the admin socket): its queue takes every
    /// event of the command, none is dropped, and the command waits for
    /// the writer before it exits (`writer::start`, then the task's end).
    pub fn for_command(replica: &str) -> (Self, mpsc::Receiver<Record>) {
        Self::bounded(
            tokio::sync::Semaphore::MAX_PERMITS,
            replica,
            Counter::default(),
        )
    }

    /// Whether events are written at all: callers skip building an
    /// [`Entry`] (reading headers, hashing) when not.
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues the event, stamped with the time and the replica; drops and
    /// counts it when the queue is full (or the writer is gone).
    pub fn emit(&self, entry: Entry) {
        let Some(queue) = &self.queue else {
            return;
        };
        let record = Record::new(entry, std::time::SystemTime::now(), self.replica.clone());
        if queue.try_send(record).is_err() {
            self.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests;
