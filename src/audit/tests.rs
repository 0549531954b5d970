use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::model::Method;
use crate::store::SessionKey;

fn entry(event: Event) -> Entry {
    Entry {
        event,
        user: Some("alice@example.com".into()),
        session: Some(SessionRef::of(&SessionKey([0xab; 32]))),
        context: Context {
            client: Some(IpAddr::from([192, 0, 2, 7])),
            user_agent: Some("curl/8".into()),
            request_id: Some("r-1".into()),
        },
    }
}

fn line(entry: Entry) -> serde_json::Value {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    serde_json::from_str(&Record::new(entry, at, "gw-1".into()).to_line()).unwrap()
}

#[test]
fn a_record_is_one_flat_object_with_every_field() {
    let json = line(entry(Event::SecondFactorFailed {
        method: Method::Totp,
    }));
    assert_eq!(
        json,
        serde_json::json!({
            "time": "2023-11-14T22:13:20.123Z",
            "event": "second_factor_failed",
            "method": "totp",
            "user": "alice@example.com",
            "client": "192.0.2.7",
            "user_agent": "curl/8",
            "session": "abababababab",
            "request_id": "r-1",
            "replica": "gw-1",
        })
    );
}

#[test]
fn events_without_a_request_carry_nulls() {
    let json = line(Entry {
        event: Event::LoginFailed {
            reason: LoginFailure::InvalidCredentials,
        },
        user: None,
        session: None,
        context: Context::default(),
    });
    assert_eq!(json["event"], "login_failed");
    assert_eq!(json["reason"], "invalid_credentials");
    for field in ["user", "client", "user_agent", "session", "request_id"] {
        assert!(json[field].is_null(), "{field}: {json}");
    }
}

#[test]
fn the_session_reference_is_a_prefix_of_the_key() {
    let key = SessionKey(std::array::from_fn(|i| i as u8));
    let json = serde_json::to_value(SessionRef::of(&key)).unwrap();
    assert_eq!(json, "000102030405");
}

#[test]
fn a_request_id_is_taken_only_from_a_trusted_proxy_and_only_when_printable() {
    assert_eq!(request_id(Some(b"abc-123"), true), "abc-123");
    for (sent, trusted) in [
        (Some(&b"abc-123"[..]), false),
        (Some(&b"has space"[..]), true),
        (Some(&[b'x'; 65][..]), true),
        (Some(&b""[..]), true),
        (None, true),
    ] {
        let id = request_id(sent, trusted);
        assert_eq!(id.len(), 16, "{sent:?}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(request_id(None, false), request_id(None, false));
}

#[test]
fn off_emits_nothing() {
    let audit = Audit::off();
    assert!(!audit.is_on());
    audit.emit(entry(Event::Logout));
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting() {
    let dropped = Counter::default();
    let (audit, mut records) = Audit::bounded(2, "gw-1", dropped.clone());
    let started = Instant::now();
    for _ in 0..1000 {
        audit.emit(entry(Event::Logout));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "emit waited: {:?}",
        started.elapsed()
    );
    assert_eq!(dropped.get(), 998);
    assert!(records.try_recv().is_ok());
    assert!(records.try_recv().is_ok());
    assert!(records.try_recv().is_err(), "only the bound was queued");
    audit.emit(entry(Event::Logout));
    assert_eq!(dropped.get(), 998, "room again: queued, not dropped");
}
