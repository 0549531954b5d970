//! seed-sessions: writes N confirmed (`two_factor`) sessions for one user
//! into the store named by an authgate config (`store.backend`: sled or
//! Redis), through the store API the gateway opens it with
//! (`authgate::store::Backend`; on sled the gateway must not be running on
//! that store: sled holds a file lock), and writes the `Cookie` header value
//! (`authgate_session=…`, signed as the gateway signs it) of the first K
//! sessions to a file, one a line.
//!
//! Usage: seed-sessions --config FILE --user EMAIL --count N
//!                      [--cookies K] [--cookies-out FILE] [--seen-ahead SECS]
//!
//! Each session has the client address a login notes: half an IPv4
//! address, a quarter an IPv6 one, a quarter none (stored before the
//! address was kept), so the live map holds each layout.
//!
//! `--seen-ahead SECS` (a diagnostic) dates `last_seen` SECS into the
//! future, so no request refreshes the idle timer (a store write) for that
//! long: it separates the cost of the map lookup from that of the writes.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use authgate::config::{self, ConfigSource, StoreBackend};
use authgate::gateway::cookies::Cookies;
use authgate::store::{AuthLevel, Backend, SessionId, SessionRecord};

/// Writers on Redis: each `put` is a round trip, and the link multiplexes
/// the writers' commands on its one connection, so a few writers keep
/// Redis busy where one would mostly wait.
const REDIS_WRITERS: u64 = 16;

struct Args {
    config: PathBuf,
    user: String,
    count: u64,
    cookies: u64,
    cookies_out: Option<PathBuf>,
    seen_ahead: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut config = None;
    let mut user = None;
    let mut count = None;
    let mut cookies = 1;
    let mut cookies_out = None;
    let mut seen_ahead = 0;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--user" => user = Some(value()?),
            "--count" => count = Some(value()?.parse().map_err(|e| format!("--count: {e}"))?),
            "--cookies" => cookies = value()?.parse().map_err(|e| format!("--cookies: {e}"))?,
            "--cookies-out" => cookies_out = Some(PathBuf::from(value()?)),
            "--seen-ahead" => {
                seen_ahead = value()?.parse().map_err(|e| format!("--seen-ahead: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config is required")?,
        user: user.ok_or("--user is required")?,
        count: count.ok_or("--count is required")?,
        cookies,
        cookies_out,
        seen_ahead,
    })
}

/// Session `n`'s client: IPv4 for even `n` (198.18.0.0/15, the
/// benchmarking range), IPv6 (2001:db8::/32) for every fourth, else none.
fn client_of(n: u64) -> Option<IpAddr> {
    let low = n as u32;
    match n % 4 {
        0 | 2 => Some(IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (low & 0x1_ffff)))),
        1 => Some(IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            (low >> 16) as u16,
            low as u16,
        ))),
        _ => None,
    }
}

fn run(args: Args) -> Result<(), String> {
    let config =
        config::load(&ConfigSource::Explicit(args.config.clone())).map_err(|e| e.to_string())?;
    let (writers, place) = match &config.store.backend {
        StoreBackend::Sled => (1, config.store.path.display().to_string()),
        StoreBackend::Redis(redis) => (REDIS_WRITERS, format!("Redis under {}", redis.key_prefix)),
    };
    let backend = Backend::open(&config.store, &config.session).map_err(|e| e.to_string())?;
    let store = backend.sessions.as_ref();
    let secure = config.server.public_url.scheme() == "https";
    let cookies = Cookies::new(&config.session, secure);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let record = SessionRecord {
        user: args.user.as_str().into(),
        level: AuthLevel::TwoFactor,
        auth_time: now,
        second_factor_time: Some(now),
        created_at: now,
        last_seen: now + args.seen_ahead,
        challenge: None,
        device: None,
        second_factor_method: None,
        client: None,
    };
    let mut out: Box<dyn Write> = match &args.cookies_out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let started = Instant::now();
    let written = AtomicU64::new(0);
    // Writer w writes sessions w, w + writers, …: the cookies of the first
    // K come from every writer, and are put back in order below.
    let per_writer: Vec<Result<Vec<(u64, String)>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|first| {
                let (record, cookies, written) = (&record, &cookies, &written);
                scope.spawn(move || {
                    let mut lines = Vec::new();
                    for n in (first..args.count).step_by(writers as usize) {
                        let id = SessionId::generate().map_err(|e| e.to_string())?;
                        let record = SessionRecord {
                            client: client_of(n),
                            ..record.clone()
                        };
                        store.put(&id.key(), &record).map_err(|e| e.to_string())?;
                        if n < args.cookies {
                            let set_cookie = cookies.set_session(&id);
                            let pair = set_cookie.split(';').next().unwrap_or_default();
                            lines.push((n, pair.to_owned()));
                        }
                        let total = written.fetch_add(1, Ordering::Relaxed) + 1;
                        if total % 100_000 == 0 {
                            eprintln!("seed-sessions: {total} sessions written");
                        }
                    }
                    Ok(lines)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a writer panicked".into())))
            .collect()
    });
    let mut lines = Vec::new();
    for writer in per_writer {
        lines.extend(writer?);
    }
    lines.sort_unstable_by_key(|(n, _)| *n);
    for (_, pair) in lines {
        writeln!(out, "{pair}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    store.flush().map_err(|e| e.to_string())?;
    eprintln!(
        "seed-sessions: {} sessions for {} in {place} in {:.1}s",
        args.count,
        args.user,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("seed-sessions: {err}");
            ExitCode::FAILURE
        }
    }
}
