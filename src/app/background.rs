//! Periodic work beside the request path: flushing the store (a `kill -9`
//! loses at most `store.flush_interval`), sweeping expired sessions and
//! counters, and reloading the users file.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::store::LiveSessions;
use crate::users::{LiveUsers, watch_users_file};

const SWEEP_EVERY: Duration = Duration::from_secs(60);
const USERS_POLL_EVERY: Duration = Duration::from_secs(1);

pub struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    /// One more task to stop with the others.
    pub fn add(&mut self, task: Option<JoinHandle<()>>) {
        self.0.extend(task);
    }

    pub fn stop(self) {
        for task in self.0 {
            task.abort();
        }
    }
}

pub fn start(
    config: &Config,
    sessions: Arc<LiveSessions>,
    auth: Arc<Authenticator>,
    users: Arc<LiveUsers>,
) -> Tasks {
    let mut tasks = vec![
        tokio::spawn(flush_loop(sessions, config.store.flush_interval)),
        tokio::spawn(sweep_loop(auth.clone())),
        watch_users_file(config.users.file.clone(), users, USERS_POLL_EVERY),
    ];
    if let Some(authy) = &config.authy {
        // Held over a tick and a provider call, so the holder renews it.
        let lease = authy.poll_interval + authy.timeout;
        tasks.push(tokio::spawn(push_poll_loop(
            auth,
            authy.poll_interval,
            lease,
        )));
    }
    Tasks(tasks)
}

/// Server-side polling of pending pushes (`authy.poll_interval`): the push
/// works without any callback reaching the gateway.
async fn push_poll_loop(auth: Arc<Authenticator>, every: Duration, lease: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let moved = auth.poll_pushes(lease).await;
        if moved > 0 {
            tracing::info!(pushes = moved, "push answers found by polling");
        }
    }
}

async fn flush_loop(sessions: Arc<LiveSessions>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    let mut failing = false;
    loop {
        tick.tick().await;
        let store = sessions.clone();
        let result = tokio::task::spawn_blocking(move || store.flush()).await;
        match result {
            Ok(Ok(())) if failing => {
                tracing::info!("session store flush works again");
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                tracing::error!(error = %e, "session store flush failed");
                failing = true;
            }
            _ => {}
        }
    }
}

async fn sweep_loop(auth: Arc<Authenticator>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let swept = auth.sweep();
        if swept > 0 {
            tracing::info!(sessions = swept, "expired sessions removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SessionId;
    use crate::store::{AuthLevel, MemoryStore, SessionRecord, SessionStore};

    #[tokio::test]
    async fn the_flush_task_writes_the_refreshed_idle_timers() {
        let store = Arc::new(MemoryStore::default());
        let sessions = Arc::new(LiveSessions::load(store.clone()).unwrap());
        let key = SessionId::generate().unwrap().key();
        let record = SessionRecord {
            user: "a@example.com".into(),
            level: AuthLevel::TwoFactor,
            auth_time: 100,
            second_factor_time: Some(100),
            created_at: 100,
            last_seen: 100,
            challenge: None,
            device: None,
            second_factor_method: None,
            client: None,
        };
        sessions.insert(key, record).unwrap();
        sessions.touch(&key, 500, 60);
        let stored = || store.load_all().unwrap()[0].1.last_seen;
        assert_eq!(stored(), 100);

        let task = tokio::spawn(flush_loop(sessions, Duration::from_millis(10)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stored() != 500 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        assert_eq!(stored(), 500);
    }
}
