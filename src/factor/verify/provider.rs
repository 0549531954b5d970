//! Twilio Verify as a `SecondFactor`: Twilio sends a code when the
//! challenge starts, and checks the code the user types. The subject is the
//! recipient itself (an E.164 number or an email), so nothing is registered
//! with Twilio and nothing is cached.

use std::sync::Arc;
use std::time::Instant;

use super::Channel;
use super::client::{CheckOutcome, VerifyClient, VerifyError};
use crate::factor::{CodeCheck, FactorError, FactorUser, SecondFactor};
use crate::metrics::{CallError, Metrics};
use crate::model::{Delivery, Method};

/// E.164: at most 15 digits, country code included.
const E164_MAX_DIGITS: usize = 15;

pub struct VerifyFactor {
    client: VerifyClient,
    /// Latency and errors of every API call, by call.
    metrics: Arc<Metrics>,
}

impl VerifyFactor {
    pub fn new(client: VerifyClient, metrics: Arc<Metrics>) -> Self {
        VerifyFactor { client, metrics }
    }

    /// Times one API call and counts its failure. A code in the wrong
    /// shape is refused before any call and counts as neither.
    async fn call<T>(
        &self,
        name: &'static str,
        call: impl Future<Output = Result<T, VerifyError>>,
    ) -> Result<T, VerifyError> {
        let started = Instant::now();
        let result = call.await;
        let error = match &result {
            Err(VerifyError::InvalidCodeFormat) => return result,
            Ok(_) => None,
            Err(VerifyError::Unavailable(_)) => Some(CallError::Unavailable),
            Err(VerifyError::RateLimited { .. }) => Some(CallError::RateLimited),
            Err(VerifyError::NoPendingVerification) => Some(CallError::NotFound),
            Err(_) => Some(CallError::Rejected),
        };
        self.metrics.verify_call(name, started.elapsed(), error);
        result
    }
}

#[async_trait::async_trait]
impl SecondFactor for VerifyFactor {
    fn method(&self) -> Method {
        Method::Verify
    }

    fn delivery(&self) -> Delivery {
        Delivery::SentCode
    }

    fn is_enrolled(&self, user: &FactorUser<'_>) -> Result<bool, FactorError> {
        Ok(match self.client.channel() {
            Channel::Email => !user.email.trim().is_empty(),
            Channel::Sms | Channel::Call => {
                !user.country_code.trim().is_empty() && !user.phone.trim().is_empty()
            }
        })
    }

    async fn subject(&self, user: &FactorUser<'_>) -> Result<String, FactorError> {
        match self.client.channel() {
            Channel::Email => email_recipient(user.email),
            Channel::Sms | Channel::Call => e164(user.country_code, user.phone),
        }
    }

    async fn send_code(&self, subject: &str) -> Result<(), FactorError> {
        let start = self.client.start(subject, self.client.channel());
        self.call("start", start)
            .await
            .map(|_| ())
            .map_err(factor_error)
    }

    async fn check_code(&self, subject: &str, code: &str) -> Result<CodeCheck, FactorError> {
        match self.call("check", self.client.check(subject, code)).await {
            Ok(CheckOutcome::Approved) => Ok(CodeCheck::Valid),
            // A closed verification was closed by this very wrong code.
            Ok(CheckOutcome::Pending | CheckOutcome::Closed(_))
            | Err(VerifyError::InvalidCodeFormat) => Ok(CodeCheck::Invalid),
            Err(e) => Err(factor_error(e)),
        }
    }
}

/// `+{country_code}{phone}`, digits only: the users file holds them apart,
/// Twilio wants E.164. Anything else would be a different number than the
/// operator wrote, so it is refused rather than cleaned up.
fn e164(country_code: &str, phone: &str) -> Result<String, FactorError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let shaped = digits(country_code)
        && digits(phone)
        && country_code.len() <= 3
        && !country_code.starts_with('0')
        && country_code.len() + phone.len() <= E164_MAX_DIGITS;
    if shaped {
        Ok(format!("+{country_code}{phone}"))
    } else {
        Err(FactorError::Rejected(
            "the user's country code and phone must be digits only and at most 15 together".into(),
        ))
    }
}

fn email_recipient(email: &str) -> Result<String, FactorError> {
    let email = email.trim();
    let shaped = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if shaped {
        Ok(email.to_owned())
    } else {
        Err(FactorError::Rejected(
            "the user has no usable email address".into(),
        ))
    }
}

fn factor_error(err: VerifyError) -> FactorError {
    match err {
        VerifyError::NoPendingVerification => FactorError::Expired,
        VerifyError::RateLimited { retry_after, .. } => FactorError::RateLimited { retry_after },
        VerifyError::Unavailable(_) => FactorError::Unavailable(err.to_string()),
        _ => FactorError::Rejected(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    use serde_json::{Value, json};

    use crate::factor::verify::VerifySettings;
    use crate::sandbox::{
        DEFAULT_VERIFY_ACCOUNT_SID, DEFAULT_VERIFY_AUTH_TOKEN, DEFAULT_VERIFY_SERVICE_SID, Sandbox,
        SandboxConfig,
    };

    const TO: &str = "+15551234567";

    fn user<'a>(email: &'a str, country_code: &'a str, phone: &'a str) -> FactorUser<'a> {
        FactorUser {
            email,
            country_code,
            phone,
            reset_at: None,
        }
    }

    fn settings(api_url: &str, channel: Channel) -> VerifySettings {
        VerifySettings {
            api_url: api_url.parse().unwrap(),
            account_sid: DEFAULT_VERIFY_ACCOUNT_SID.into(),
            auth_token: DEFAULT_VERIFY_AUTH_TOKEN.into(),
            service_sid: DEFAULT_VERIFY_SERVICE_SID.into(),
            channel,
            timeout: Duration::from_secs(5),
        }
    }

    fn factor_with(settings: &VerifySettings) -> (VerifyFactor, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let client = VerifyClient::new(settings).unwrap();
        (VerifyFactor::new(client, metrics.clone()), metrics)
    }

    async fn sandbox() -> Sandbox {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Sandbox::start(loopback, SandboxConfig::new("authy-key"))
            .await
            .unwrap()
    }

    /// What the sandbox's control API says it sent to `to`.
    async fn sent(sandbox: &Sandbox, to: &str) -> Value {
        let mut url =
            url::Url::parse(&format!("{}/_sandbox/api/verify/codes", sandbox.url())).unwrap();
        url.query_pairs_mut().append_pair("to", to);
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn code(sandbox: &Sandbox, to: &str) -> String {
        sent(sandbox, to).await["code"].as_str().unwrap().to_owned()
    }

    fn wrong(code: &str) -> &'static str {
        if code == "000000" { "111111" } else { "000000" }
    }

    async fn set_fault(sandbox: &Sandbox, mode: &str) {
        let url = format!("{}/_sandbox/api/verify/fault", sandbox.url());
        let response = reqwest::Client::new()
            .post(url)
            .json(&json!({"mode": mode}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    fn has_line(metrics: &Metrics, line: &str) -> bool {
        metrics.encode_prometheus().lines().any(|l| l == line)
    }

    #[test]
    fn enrollment_depends_on_the_channel() {
        let sms = factor_with(&settings("https://verify.twilio.com", Channel::Sms)).0;
        let email = factor_with(&settings("https://verify.twilio.com", Channel::Email)).0;
        let full = user("a@example.com", "1", "5551234567");
        let no_phone = user("a@example.com", "1", "");
        let no_email = user(" ", "44", "7700900123");
        assert!(sms.is_enrolled(&full).unwrap());
        assert!(!sms.is_enrolled(&no_phone).unwrap());
        assert!(
            !sms.is_enrolled(&user("a@example.com", "", "5551234567"))
                .unwrap()
        );
        assert!(sms.is_enrolled(&no_email).unwrap());
        assert!(email.is_enrolled(&no_phone).unwrap());
        assert!(!email.is_enrolled(&no_email).unwrap());
        assert_eq!(
            (sms.method(), sms.delivery()),
            (Method::Verify, Delivery::SentCode)
        );
    }

    #[tokio::test]
    async fn subjects_are_e164_or_the_email() {
        let sms = factor_with(&settings("https://verify.twilio.com", Channel::Sms)).0;
        let call = factor_with(&settings("https://verify.twilio.com", Channel::Call)).0;
        let email = factor_with(&settings("https://verify.twilio.com", Channel::Email)).0;
        let ada = user(" ada@example.com ", "44", "7700900123");
        assert_eq!(sms.subject(&ada).await.unwrap(), "+447700900123");
        assert_eq!(call.subject(&ada).await.unwrap(), "+447700900123");
        assert_eq!(email.subject(&ada).await.unwrap(), "ada@example.com");
        for (cc, phone) in [
            ("+1", "5551234567"),
            ("1", "555-123-4567"),
            ("1", "555 1234567"),
            ("1", ""),
            ("", "5551234567"),
            ("1234", "5551234"),
            ("0", "5551234567"),
            ("1", "5551234567890123"),
            ("1", "５５５1234567"),
        ] {
            assert!(
                matches!(
                    sms.subject(&user("a@b.c", cc, phone)).await,
                    Err(FactorError::Rejected(_))
                ),
                "{cc:?} {phone:?}"
            );
        }
        for bad in ["", "no-at-sign", "a b@example.com", "@example.com", "a@"] {
            assert!(
                matches!(
                    email.subject(&user(bad, "1", "5551234567")).await,
                    Err(FactorError::Rejected(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_right_code_is_valid_once_then_expired() {
        let sandbox = sandbox().await;
        let (factor, metrics) = factor_with(&settings(&sandbox.url(), Channel::Sms));
        factor.send_code(TO).await.unwrap();
        let code = code(&sandbox, TO).await;
        assert_eq!(code.len(), 6);
        assert_eq!(
            factor.check_code(TO, &code).await.unwrap(),
            CodeCheck::Valid
        );
        assert_eq!(sent(&sandbox, TO).await["status"], "approved");
        assert!(matches!(
            factor.check_code(TO, &code).await,
            Err(FactorError::Expired)
        ));
        assert!(has_line(
            &metrics,
            "authgate_verify_request_seconds_count{call=\"start\"} 1"
        ));
        assert!(has_line(
            &metrics,
            "authgate_verify_request_seconds_count{call=\"check\"} 2"
        ));
        assert!(has_line(
            &metrics,
            "authgate_verify_errors_total{call=\"check\",kind=\"not_found\"} 1"
        ));
    }

    #[tokio::test]
    async fn a_wrong_code_is_invalid_and_five_end_the_verification() {
        let sandbox = sandbox().await;
        let (factor, _) = factor_with(&settings(&sandbox.url(), Channel::Sms));
        factor.send_code(TO).await.unwrap();
        let code = code(&sandbox, TO).await;
        for attempt in 1..=5 {
            assert_eq!(
                factor.check_code(TO, wrong(&code)).await.unwrap(),
                CodeCheck::Invalid,
                "attempt {attempt}"
            );
        }
        let seen = sent(&sandbox, TO).await;
        assert_eq!(
            (seen["status"].clone(), seen["attempts"].clone()),
            (json!("max_attempts_reached"), json!(5))
        );
        assert!(matches!(
            factor.check_code(TO, &code).await,
            Err(FactorError::Expired)
        ));
    }

    #[tokio::test]
    async fn the_sixth_start_within_ten_minutes_is_rate_limited() {
        let sandbox = sandbox().await;
        let (factor, metrics) = factor_with(&settings(&sandbox.url(), Channel::Sms));
        for _ in 0..5 {
            factor.send_code(TO).await.unwrap();
        }
        match factor.send_code(TO).await {
            Err(FactorError::RateLimited { retry_after }) => {
                assert!((1..=600).contains(&retry_after), "{retry_after}")
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
        // Another recipient is not throttled by the first one's sends.
        factor.send_code("+15557654321").await.unwrap();
        assert!(has_line(
            &metrics,
            "authgate_verify_errors_total{call=\"start\",kind=\"rate_limited\"} 1"
        ));
    }

    #[tokio::test]
    async fn wrong_credentials_are_rejected_not_unavailable() {
        let sandbox = sandbox().await;
        let mut wrong_token = settings(&sandbox.url(), Channel::Sms);
        wrong_token.auth_token = "not-the-token".into();
        let (factor, metrics) = factor_with(&wrong_token);
        assert!(matches!(
            factor.send_code(TO).await,
            Err(FactorError::Rejected(_))
        ));
        assert!(matches!(
            factor.check_code(TO, "123456").await,
            Err(FactorError::Rejected(_))
        ));
        assert!(has_line(
            &metrics,
            "authgate_verify_errors_total{call=\"start\",kind=\"rejected\"} 1"
        ));
        let mut other_service = settings(&sandbox.url(), Channel::Sms);
        other_service.service_sid = format!("VA{}", "f".repeat(32));
        let (factor, _) = factor_with(&other_service);
        assert!(matches!(
            factor.send_code(TO).await,
            Err(FactorError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let (factor, metrics) = factor_with(&settings(&url, Channel::Sms));
        assert!(matches!(
            factor.send_code(TO).await,
            Err(FactorError::Unavailable(_))
        ));
        assert!(matches!(
            factor.check_code(TO, "123456").await,
            Err(FactorError::Unavailable(_))
        ));
        assert!(has_line(
            &metrics,
            "authgate_verify_errors_total{call=\"check\",kind=\"unavailable\"} 1"
        ));
    }

    #[tokio::test]
    async fn a_malformed_code_never_reaches_the_server() {
        let sandbox = sandbox().await;
        let (factor, metrics) = factor_with(&settings(&sandbox.url(), Channel::Sms));
        factor.send_code(TO).await.unwrap();
        for code in ["12a456", "123", "12345678901", "../VerificationCheck", ""] {
            assert_eq!(
                factor.check_code(TO, code).await.unwrap(),
                CodeCheck::Invalid,
                "{code:?}"
            );
        }
        let verify = &sandbox.snapshot()["verify"];
        assert_eq!(verify["requests"]["check"], 0);
        assert_eq!(verify["requests"]["start"], 1);
        assert_eq!(verify["verifications"][0]["attempts"], 0);
        assert!(!metrics.encode_prometheus().contains("call=\"check\""));
    }

    #[tokio::test]
    async fn the_sandbox_fault_knob_makes_verify_unavailable() {
        let sandbox = sandbox().await;
        let mut quick = settings(&sandbox.url(), Channel::Sms);
        quick.timeout = Duration::from_millis(300);
        let (factor, _) = factor_with(&quick);
        set_fault(&sandbox, "error").await;
        assert!(matches!(
            factor.send_code(TO).await,
            Err(FactorError::Unavailable(_))
        ));
        set_fault(&sandbox, "hang").await;
        let started = Instant::now();
        assert!(matches!(
            factor.check_code(TO, "123456").await,
            Err(FactorError::Unavailable(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
        set_fault(&sandbox, "none").await;
        factor.send_code(TO).await.unwrap();
    }

    #[tokio::test]
    async fn email_codes_go_to_the_email() {
        let sandbox = sandbox().await;
        let (factor, _) = factor_with(&settings(&sandbox.url(), Channel::Email));
        let to = factor
            .subject(&user("ada@example.com", "", ""))
            .await
            .unwrap();
        factor.send_code(&to).await.unwrap();
        let seen = sent(&sandbox, "ada@example.com").await;
        assert_eq!(seen["channel"], "email");
        let code = seen["code"].as_str().unwrap();
        assert_eq!(
            factor.check_code(&to, code).await.unwrap(),
            CodeCheck::Valid
        );
    }
}
