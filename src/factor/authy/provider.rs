//! Authy as a `SecondFactor`: OneTouch pushes, SMS codes and Authy app
//! codes, through the REST client.

use super::client::{ApprovalRequest, ApprovalStatus, AuthyClient, AuthyError, TokenCheck};
use crate::factor::{CodeCheck, FactorError, FactorUser, PushRequest, PushStatus, SecondFactor};

pub struct AuthyFactor {
    client: AuthyClient,
    /// Authy's own default texts every new user an app link; ours is off.
    send_install_link: bool,
}

impl AuthyFactor {
    pub fn new(client: AuthyClient, send_install_link: bool) -> Self {
        AuthyFactor {
            client,
            send_install_link,
        }
    }
}

#[async_trait::async_trait]
impl SecondFactor for AuthyFactor {
    fn method(&self) -> &'static str {
        "authy"
    }

    async fn enroll(&self, user: &FactorUser<'_>) -> Result<String, FactorError> {
        let id = self
            .client
            .register_user(
                user.email,
                user.phone,
                user.country_code,
                self.send_install_link,
            )
            .await
            .map_err(factor_error)?;
        Ok(id.to_string())
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
        let uuid = self
            .client
            .create_approval_request(authy_id(subject)?, &request)
            .await
            .map_err(factor_error)?;
        Ok(Some(uuid))
    }

    async fn push_status(&self, push_id: &str) -> Result<PushStatus, FactorError> {
        let status = self
            .client
            .approval_status(push_id)
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
        self.client
            .request_sms(authy_id(subject)?)
            .await
            .map(|_| ())
            .map_err(factor_error)
    }

    async fn check_code(&self, subject: &str, code: &str) -> Result<CodeCheck, FactorError> {
        match self.client.verify_token(authy_id(subject)?, code).await {
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

fn factor_error(err: AuthyError) -> FactorError {
    if err.is_unavailable() {
        FactorError::Unavailable(err.to_string())
    } else {
        FactorError::Rejected(err.to_string())
    }
}
