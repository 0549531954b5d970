//! What can go wrong between the gateway and the upstream.

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream connection failed: {0}")]
    Connect(String),
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream request failed: {0}")]
    Request(String),
    #[error("upstream.url: {0}")]
    Config(String),
}
