//! Authy as a `SecondFactor`: OneTouch pushes, SMS codes and Authy app
//! codes, through the REST client.

use std::sync::Arc;
use std::time::Instant;

use super::client::{ApprovalRequest, ApprovalStatus, AuthyClient, AuthyError, TokenCheck};
use crate::factor::{CodeCheck, FactorError, FactorUser, PushRequest, SecondFactor};
use crate::metrics::{CallError, Metrics};
use crate::model::{Delivery, Method, PushStatus};
use crate::store::SubjectCache;

pub struct AuthyFactor {
    client: AuthyClient,
    /// Authy's own default texts every new user an app link; ours is off.
    send_install_link: bool,
    /// Latency and errors of every API call, by call.
    metrics: Arc<Metrics>,
    /// Authy ids by email: a user is registered once, not on every login.
    ids: Arc<dyn SubjectCache>,
}

impl AuthyFactor {
    pub fn new(
        client: AuthyClient,
        send_install_link: bool,
        metrics: Arc<Metrics>,
        ids: Arc<dyn SubjectCache>,
    ) -> Self {
        AuthyFactor {
            client,
            send_install_link,
            metrics,
            ids,
        }
    }

    /// Registers the user with Authy (idempotent on their phone there).
    async fn register(&self, user: &FactorUser<'_>) -> Result<String, FactorError> {
        let register = self.client.register_user(
            user.email,
            user.phone,
            user.country_code,
            self.send_install_link,
        );
        let id = self
            .call("register_user", register)
            .await
            .map_err(factor_error)?;
        Ok(id.to_string())
    }

    /// Times one API call and counts its failure. A code in the wrong
    /// shape is refused before any call and counts as neither.
    async fn call<T>(
        &self,
        name: &'static str,
        call: impl Future<Output = Result<T, AuthyError>>,
    ) -> Result<T, AuthyError> {
        let started = Instant::now();
        let result = call.await;
        let error = match &result {
            Err(AuthyError::InvalidTokenFormat) => return result,
            Ok(_) => None,
            Err(e) if e.is_unavailable() => Some(CallError::Unavailable),
            Err(_) => Some(CallError::Rejected),
        };
        self.metrics.authy_call(name, started.elapsed(), error);
        result
    }
}

#[async_trait::async_trait]
impl SecondFactor for AuthyFactor {
    fn method(&self) -> Method {
        Method::Authy
    }

    fn delivery(&self) -> Delivery {
        Delivery::Push
    }

    fn is_enrolled(&self, user: &FactorUser<'_>) -> Result<bool, FactorError> {
        Ok(!user.country_code.is_empty() && !user.phone.is_empty())
    }

    async fn subject(&self, user: &FactorUser<'_>) -> Result<String, FactorError> {
        let method = Method::Authy.as_str();
        if let Some(id) = self
            .ids
            .factor_subject(method, user.email)
            .map_err(store_error)?
        {
            return Ok(id);
        }
        let id = self.register(user).await?;
        self.ids
            .set_factor_subject(method, user.email, &id)
            .map_err(store_error)?;
        Ok(id)
    }

    async fn start_push(
        &self,
        subject: &str,
        request: &PushRequest,
    ) -> Result<Option<String>, FactorError> {
        let request = ApprovalRequest {
            message: request.message.clone(),
            details: request.details.clone(),
            hidden_details: request.hidden_details.clone(),
            seconds_to_expire: request.seconds_to_expire,
        };
        let create = self
            .client
            .create_approval_request(authy_id(subject)?, &request);
        let uuid = self
            .call("create_approval_request", create)
            .await
            .map_err(factor_error)?;
        Ok(Some(uuid))
    }

    async fn push_status(&self, push_id: &str) -> Result<PushStatus, FactorError> {
        let status = self
            .call("approval_status", self.client.approval_status(push_id))
            .await
            .map_err(factor_error)?;
        Ok(match status {
            ApprovalStatus::Pending => PushStatus::Pending,
            ApprovalStatus::Approved => PushStatus::Approved,
            ApprovalStatus::Denied => PushStatus::Denied,
            ApprovalStatus::Expired => PushStatus::Expired,
        })
    }

    async fn send_code(&self, subject: &str) -> Result<(), FactorError> {
        self.call("request_sms", self.client.request_sms(authy_id(subject)?))
            .await
            .map(|_| ())
            .map_err(factor_error)
    }

    async fn check_code(&self, subject: &str, code: &str) -> Result<CodeCheck, FactorError> {
        let verify = self.client.verify_token(authy_id(subject)?, code);
        match self.call("verify_token", verify).await {
            Ok(TokenCheck::Valid) => Ok(CodeCheck::Valid),
            Ok(TokenCheck::Invalid | TokenCheck::Reused) | Err(AuthyError::InvalidTokenFormat) => {
                Ok(CodeCheck::Invalid)
            }
            Err(e) => Err(factor_error(e)),
        }
    }
}

fn authy_id(subject: &str) -> Result<u64, FactorError> {
    subject
        .parse()
        .map_err(|_| FactorError::Rejected(format!("not an Authy id: {subject:?}")))
}

fn store_error(err: crate::store::StoreError) -> FactorError {
    FactorError::Unavailable(err.to_string())
}

fn factor_error(err: AuthyError) -> FactorError {
    if err.is_unavailable() {
        FactorError::Unavailable(err.to_string())
    } else {
        FactorError::Rejected(err.to_string())
    }
}
