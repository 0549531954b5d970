//! TLS termination: the PEM files of `server.tls_cert` / `server.tls_key`
//! into a rustls `ServerConfig` (ALPN `h2`, `http/1.1`), held behind an
//! `ArcSwap` so a reload changes what new connections get while open ones
//! keep their session. Reloads come from SIGHUP and from a poll of the
//! files' modification times; a bad new pair keeps the old one.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsFiles;

const CERT_KEY: &str = "server.tls_cert";
const KEY_KEY: &str = "server.tls_key";

/// A TLS file problem; `Display` starts with the config key to fix.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct TlsError {
    pub key: &'static str,
    pub problem: String,
}

impl TlsError {
    fn at(key: &'static str, problem: impl Into<String>) -> Self {
        TlsError {
            key,
            problem: problem.into(),
        }
    }
}

/// The one crypto provider of the process, named rather than inferred: with
/// two providers in the tree `ServerConfig::builder()` would panic.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads both files and checks that the key belongs to the certificate.
pub fn load(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::at(CERT_KEY, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| refused_pair(e, files))?;
    // Without h2 here browsers stay on HTTP/1.1; the auto builder serves
    // whichever protocol the client then speaks.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| TlsError::at(CERT_KEY, pem_problem(path, &e)))?;
    if certs.is_empty() {
        return Err(TlsError::at(
            CERT_KEY,
            format!(
                "no certificate (-----BEGIN CERTIFICATE-----) found in {}",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::at(
            KEY_KEY,
            format!(
                "no private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY) \
                 found in {}",
                path.display()
            ),
        ),
        e => TlsError::at(KEY_KEY, pem_problem(path, &e)),
    })
}

fn pem_problem(path: &Path, err: &pem::Error) -> String {
    match err {
        pem::Error::Io(e) => format!("cannot read {}: {e}", path.display()),
        e => format!("{} is not valid PEM: {e}", path.display()),
    }
}

/// rustls checks the key first, then that it matches the first certificate.
fn refused_pair(err: rustls::Error, files: &TlsFiles) -> TlsError {
    match err {
        rustls::Error::InconsistentKeys(_) => TlsError::at(
            KEY_KEY,
            format!(
                "{} does not match the certificate in {} (the first certificate must be the \
                 server's own)",
                files.key.display(),
                files.cert.display()
            ),
        ),
        rustls::Error::InvalidCertificate(e) => TlsError::at(
            CERT_KEY,
            format!(
                "the first certificate in {} is unusable: {e}",
                files.cert.display()
            ),
        ),
        e => TlsError::at(
            KEY_KEY,
            format!("{} is not a usable private key: {e}", files.key.display()),
        ),
    }
}

/// What was last tried: when either file's length or modification time
/// differs, the poll reloads.
type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let of = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    [of(&files.cert), of(&files.key)]
}

/// The TLS configuration new connections are accepted with.
pub struct LiveTls {
    files: TlsFiles,
    current: ArcSwap<rustls::ServerConfig>,
    tried: Mutex<Stamp>,
}

impl LiveTls {
    /// Loads the files once; at start-up a problem is fatal.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let tried = stamp(&files);
        let config = load(&files)?;
        Ok(LiveTls {
            files,
            current: ArcSwap::new(config),
            tried: Mutex::new(tried),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Builds a new configuration from the files; on error the current one
    /// stays. Open connections are not touched either way.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.tried.lock().unwrap_or_else(|p| p.into_inner()) = stamp(&self.files);
        let config = load(&self.files)?;
        self.current.store(config);
        Ok(())
    }

    /// Whether a file changed since the last load or reload attempt (a pair
    /// that failed is not retried until it changes again).
    fn changed(&self) -> bool {
        *self.tried.lock().unwrap_or_else(|p| p.into_inner()) != stamp(&self.files)
    }

    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(reason = why, "TLS certificate reloaded"),
            Err(e) => tracing::error!(
                reason = why,
                error = %e,
                "TLS reload failed; keeping the current certificate"
            ),
        }
    }
}

/// Reloads on SIGHUP and when the files change (checked every `every`).
/// The signal handler is installed before this returns, so a SIGHUP sent
/// once the gateway answers is never lost (nor fatal).
pub fn watch(live: Arc<LiveTls>, every: Duration) -> std::io::Result<JoinHandle<()>> {
    let mut hangup = Hangup::new()?;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = hangup.recv() => live.reload_logged("SIGHUP"),
                _ = tick.tick() => {
                    if live.changed() {
                        live.reload_logged("the files changed");
                    }
                }
            }
        }
    }))
}

#[cfg(unix)]
struct Hangup(tokio::signal::unix::Signal);

#[cfg(unix)]
impl Hangup {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup()).map(Hangup)
    }

    async fn recv(&mut self) {
        if self.0.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(unix))]
struct Hangup;

#[cfg(not(unix))]
impl Hangup {
    fn new() -> std::io::Result<Self> {
        Ok(Hangup)
    }

    async fn recv(&mut self) {
        std::future::pending::<()>().await;
    }
}

/// The handshake, bounded: runs in the connection's own task, never in the
/// accept loop, so a slow client holds up nobody else.
pub async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    limit: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        dir: tempfile::TempDir,
        files: TlsFiles,
    }

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn pair(cert: &str, key: &str) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        Pair { dir, files }
    }

    fn refused(cert: &str, key: &str) -> TlsError {
        load(&pair(cert, key).files).expect_err("should be refused")
    }

    #[test]
    fn a_matching_pair_loads_with_h2_and_http1() {
        let (cert, key) = self_signed("localhost");
        let config = load(&pair(&cert, &key).files).expect("loads");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn problems_name_the_key() {
        let (cert, key) = self_signed("localhost");
        let (_, other_key) = self_signed("other");
        let err = refused(&cert, &other_key);
        assert_eq!(err.key, KEY_KEY);
        assert!(err.to_string().starts_with("server.tls_key: "), "{err}");
        assert!(err.problem.contains("does not match"), "{err}");

        let err = refused(&key, &key);
        assert_eq!(err.key, CERT_KEY);
        assert!(err.problem.contains("no certificate"), "{err}");

        let err = refused(&cert, &cert);
        assert_eq!(err.key, KEY_KEY);
        assert!(err.problem.contains("no private key"), "{err}");

        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let err = refused(broken, &key);
        assert_eq!(err.key, CERT_KEY);
        assert!(err.problem.contains("not valid PEM"), "{err}");

        let pair = pair(&cert, &key);
        let mut files = pair.files.clone();
        files.key = files.key.with_file_name("gone.pem");
        let err = load(&files).expect_err("missing key");
        assert_eq!(err.key, KEY_KEY);
        assert!(err.problem.contains("cannot read"), "{err}");
    }

    #[test]
    fn a_bad_reload_keeps_the_current_config() {
        let (cert, key) = self_signed("localhost");
        let pair = pair(&cert, &key);
        let live = LiveTls::load(pair.files.clone()).unwrap();
        let before = live.current.load_full();
        assert!(!live.changed());

        std::fs::write(&pair.files.key, "garbage, and longer than before").unwrap();
        assert!(live.changed());
        assert!(live.reload().is_err());
        assert!(Arc::ptr_eq(&before, &live.current.load_full()));
        assert!(
            !live.changed(),
            "a failed pair is not retried until it changes"
        );

        let (cert, key) = self_signed("rotated");
        std::fs::write(pair.dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(pair.dir.path().join("key.pem"), key).unwrap();
        live.reload().expect("the new pair loads");
        assert!(!Arc::ptr_eq(&before, &live.current.load_full()));
    }
}
