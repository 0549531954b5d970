//! The invalidation feed: every replica announces each session it writes
//! or ends on one pub/sub channel, and every other replica drops its
//! cached copy. The cache is only used while the feed is known to work:
//! until the subscription stands it is empty and unused, and whenever the
//! subscription breaks, a ping goes unanswered, or the command link made
//! a new connection (perhaps to a new master), it is emptied again. A
//! revocation can be missed only by a cache that no longer answers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::link::{Link, LinkHandle};
use super::unhex;
use crate::store::SessionCache;

/// How often the subscriber proves its connection alive, and the longest
/// a ping may take: a broken feed is noticed within their sum (well
/// inside the 1 s a revocation may take to reach every replica).
const PING_EVERY: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(500);

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_LAST: Duration = Duration::from_secs(2);

pub fn start(link: &Link, channel: &str, origin: &str, cache: Arc<dyn SessionCache>) {
    let handle = link.handle();
    let (channel, origin) = (channel.to_owned(), origin.to_owned());
    link.spawn(async move { run(handle, channel, origin, cache).await });
}

async fn run(handle: LinkHandle, channel: String, origin: String, cache: Arc<dyn SessionCache>) {
    let mut wait = BACKOFF_FIRST;
    loop {
        cache.set_usable(false);
        let subscribed = async {
            // The command connection first: the feed then knows which
            // connection it was made beside, and drops the cache when that
            // one is made again (perhaps to a new master).
            handle.connect().await?;
            let mut pubsub = Link::pubsub(&handle).await?;
            tokio::time::timeout(handle.timeout(), pubsub.subscribe(&channel))
                .await
                .map_err(|_| "subscribing timed out".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map_err(crate::store::StoreError::Unavailable)?;
            Ok::<_, crate::store::StoreError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(pubsub) => {
                wait = BACKOFF_FIRST;
                listen(pubsub, &handle, &origin, cache.as_ref()).await;
                tracing::warn!("the session invalidation feed broke; the cache is dropped");
            }
            Err(err) => {
                tracing::debug!(error = %err, "subscribing to the invalidation feed failed");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKOFF_LAST);
            }
        }
    }
}

/// Applies messages until the subscription can no longer be trusted.
async fn listen(
    pubsub: redis::aio::PubSub,
    handle: &LinkHandle,
    origin: &str,
    cache: &dyn SessionCache,
) {
    let (mut sink, mut stream) = pubsub.split();
    let generation = handle.generation();
    // From here on every write is announced to us; what was cached before
    // may have missed one.
    cache.evict_all();
    cache.set_usable(true);
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => apply(&message, origin, cache),
                None => break,
            },
            _ = ping.tick() => {
                if handle.generation() != generation {
                    break;
                }
                let pong = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    break;
                }
            }
        }
    }
    cache.set_usable(false);
    cache.evict_all();
}

fn apply(message: &redis::Msg, origin: &str, cache: &dyn SessionCache) {
    let Ok(payload) = message.get_payload::<String>() else {
        return;
    };
    let Some((sender, what)) = payload.split_once(':') else {
        return;
    };
    if sender == origin {
        return;
    }
    match unhex(what) {
        Some(key) => cache.evict(&key),
        // Not a key we can read: drop everything rather than guess.
        None => cache.evict_all(),
    }
}
