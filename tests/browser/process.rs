//! Child processes that never outlive a test: each runs in its own process
//! group, its output is kept for the failure report, and dropping the
//! handle ends the whole group (chromedriver's chromium included).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

/// How long a child gets to stop after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

pub struct Proc {
    name: String,
    child: Child,
    output: Arc<Mutex<String>>,
    /// Set once `try_wait` has reaped the child: from then on its id (and
    /// so its process group id) may belong to someone else.
    reaped: bool,
}

impl Proc {
    /// Starts `command` in a new process group with stdin closed and
    /// stdout/stderr collected.
    pub fn spawn(name: &str, mut command: Command) -> std::io::Result<Proc> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn()?;
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            collect(stdout, output.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            collect(stderr, output.clone());
        }
        Ok(Proc {
            name: name.to_owned(),
            child,
            output,
            reaped: false,
        })
    }

    /// `Some` once the child has ended (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped = true;
                Some(status)
            }
            _ => None,
        }
    }

    /// Everything the child printed so far (stdout and stderr, by lines).
    pub fn output(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn signal_group(&self, signal: libc::c_int) {
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) with a negative pid signals the process group we
        // created for this child; the group id cannot have been reused
        // because the leader has not been reaped yet (checked by callers).
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            // SIGTERM first so the gateway can remove its temporary
            // directory; the leader stays unreaped (a zombie at worst)
            // while we wait, so the group id stays ours.
            self.signal_group(libc::SIGTERM);
            let deadline = Instant::now() + GRACE;
            while Instant::now() < deadline && !leader_done(self.child.id()) {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Whatever is left in the group (chromium under chromedriver).
            self.signal_group(libc::SIGKILL);
            let _ = self.child.wait();
            self.reaped = true;
        }
        if std::thread::panicking() {
            eprintln!(
                "----- output of {} -----\n{}----- end of {} -----",
                self.name,
                self.output(),
                self.name
            );
        }
    }
}

/// True when the process `pid` has ended (is a zombie or gone), without
/// reaping it.
fn leader_done(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the ")" that closes the command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| state == 'Z' || state == 'X'),
        Err(_) => true,
    }
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut all) = into.lock() {
                all.push_str(&line);
                all.push('\n');
            }
        }
    });
}
