//! TLS on the proxy listener (`[proxy] tls`): rustls over aws-lc-rs (baton's one crypto
//! backend), TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`.
//!
//! The certificate is chosen per handshake by a resolver that holds the pair in force in an
//! [`ArcSwap`], so a new pair is swapped in without touching open connections: a connection
//! keeps the keys its handshake agreed on, and only new handshakes see the new certificate.
//! [`ServerTls::watch`] polls the two files (cert-manager rewrites them in place) and swaps in
//! a new pair only once it is whole: readable, parsed, and the key matching the certificate.
//! Anything else is an error log naming the file, and the old pair keeps serving.
//!
//! The private key is never logged: errors about it say what is wrong, never what the file
//! holds, and every `Debug` here leaves the key out.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject as _};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate and key files are checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// The application protocols offered, in the server's order of preference (RFC 7301).
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// `[proxy] tls`: where the certificate chain and its private key are (both PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The leaf's private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: PathBuf,
}

/// Which of the two files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairFile {
    /// `cert_file`.
    Certificate,
    /// `key_file`.
    PrivateKey,
}

/// A certificate chain and its private key, checked to belong together. `Debug` shows the
/// chain's length only.
#[derive(Clone)]
pub struct CertificatePair(Arc<CertifiedKey>);

/// A certificate pair that cannot be served. The messages never quote the key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PairError {
    /// The certificate file holds no usable certificate chain.
    #[error("{}: {reason}", file.display())]
    Certificate {
        /// The certificate file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key is not the one the certificate certifies.
    #[error(
        "the private key in {} does not match the certificate in {}",
        key_file.display(),
        cert_file.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
    },
    /// The key file holds no usable private key.
    #[error("{}: {reason}", file.display())]
    PrivateKey {
        /// The key file.
        file: PathBuf,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// A file cannot be read.
    #[error("cannot read {}: {source}", file.display())]
    Unreadable {
        /// Which file.
        which: PairFile,
        /// Its path.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The proxy listener's TLS: the rustls config and the certificate pair in force.
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<CurrentCertificate>,
    provider: Arc<CryptoProvider>,
}

/// A TLS handshake that did not complete (a debug log: clients do that).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The handshake failed: not TLS, no common version or cipher suite, a client that
    /// distrusts the certificate and says so, a dropped connection.
    #[error("the TLS handshake failed: {0}")]
    Failed(#[source] io::Error),
    /// The client did not finish within [`HANDSHAKE_TIMEOUT`].
    #[error("the TLS handshake did not finish within {0:?}")]
    TimedOut(Duration),
}

/// Hands every handshake the pair in force.
struct CurrentCertificate(ArcSwap<CertifiedKey>);

/// What the watcher last saw of the files: their paths and a digest of each one's content
/// (`None` when unreadable). Digests rather than the bytes, so the key does not sit in
/// memory a second time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    files: TlsFiles,
    cert: Option<[u8; 32]>,
    key: Option<[u8; 32]>,
}

// === impl TlsFiles ===

impl TlsFiles {
    fn path(&self, which: PairFile) -> &Path {
        match which {
            PairFile::Certificate => &self.cert_file,
            PairFile::PrivateKey => &self.key_file,
        }
    }
}

// === impl PairFile ===

impl PairFile {
    /// The field of `[proxy] tls` that names this file.
    pub fn config_field(self) -> &'static str {
        match self {
            Self::Certificate => "cert_file",
            Self::PrivateKey => "key_file",
        }
    }
}

// === impl CertificatePair ===

impl CertificatePair {
    /// Reads and checks the pair at `files` with aws-lc-rs's key loader.
    pub fn load(files: &TlsFiles) -> Result<Self, PairError> {
        let provider = crypto_provider();
        let cert_pem = read(files, PairFile::Certificate)?;
        let key_pem = read(files, PairFile::PrivateKey)?;
        Self::from_pem(files, &cert_pem, &key_pem, &provider)
    }

    /// Parses a pair from the files' content (`files` names them in errors): the chain must
    /// hold at least one certificate, the key must load, and the key's public half must be
    /// the one in the leaf certificate.
    fn from_pem(
        files: &TlsFiles,
        cert_pem: &[u8],
        key_pem: &[u8],
        provider: &CryptoProvider,
    ) -> Result<Self, PairError> {
        let certificate_error = |reason: String| PairError::Certificate {
            file: files.cert_file.clone(),
            reason,
        };
        let key_error = |reason: String| PairError::PrivateKey {
            file: files.key_file.clone(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                certificate_error(format!("not a PEM certificate chain: {}", describe(&e)))
            })?;
        if chain.is_empty() {
            return Err(certificate_error(
                "no certificate (-----BEGIN CERTIFICATE-----) in the file".to_owned(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => key_error(
                "no unencrypted private key (PKCS#8, PKCS#1 RSA or SEC1 EC, PEM) in the file"
                    .to_owned(),
            ),
            other => key_error(format!("not a PEM private key: {}", describe(&other))),
        })?;
        // rustls's own messages here name the key types it tried, never the key's bytes.
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| key_error(format!("the key cannot be used: {e}")))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => Ok(Self(Arc::new(certified))),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(PairError::KeyMismatch {
                    cert_file: files.cert_file.clone(),
                    key_file: files.key_file.clone(),
                })
            }
            // A pair baton cannot check is refused rather than served on trust.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Err(
                key_error("cannot tell whether this key matches the certificate".to_owned()),
            ),
            Err(e) => Err(certificate_error(format!(
                "the first certificate cannot be read: {e}"
            ))),
        }
    }

    /// The leaf certificate, DER.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `from_pem` refuses an empty chain, so the leaf is always there.
        &self.0.cert[0]
    }
}

impl fmt::Debug for CertificatePair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificatePair")
            .field("chain_length", &self.0.cert.len())
            .finish_non_exhaustive()
    }
}

// === impl PairError ===

impl PairError {
    /// The file the error is about (the key file for a mismatch: the key is what does not
    /// fit the certificate).
    pub fn file(&self) -> PairFile {
        match self {
            Self::Certificate { .. } => PairFile::Certificate,
            Self::KeyMismatch { .. } | Self::PrivateKey { .. } => PairFile::PrivateKey,
            Self::Unreadable { which, .. } => *which,
        }
    }
}

// === impl ServerTls ===

impl ServerTls {
    /// TLS with `pair`: TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`, no client certificates.
    pub fn new(pair: &CertificatePair) -> Result<Self, rustls::Error> {
        let provider = Arc::new(crypto_provider());
        let current = Arc::new(CurrentCertificate(ArcSwap::new(Arc::clone(&pair.0))));
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
            provider,
        })
    }

    /// Runs the server side of a handshake on `io`, within [`HANDSHAKE_TIMEOUT`]. Call it
    /// in the connection's own task: a slow client must not hold up the accept loop.
    pub async fn accept<I>(&self, io: I) -> Result<TlsStream<I>, HandshakeError>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_) => Err(HandshakeError::TimedOut(HANDSHAKE_TIMEOUT)),
        }
    }

    /// Serves `pair` to every handshake from now on; open connections are not touched.
    pub fn install(&self, pair: &CertificatePair) {
        self.current.0.store(Arc::clone(&pair.0));
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> CertificatePair {
        CertificatePair(self.current.0.load_full())
    }

    /// Every [`WATCH_INTERVAL`], reads the files `files` names (the running config's `[proxy]
    /// tls`, so a reload that points elsewhere is followed; `None` keeps the last ones) and,
    /// when their paths or content changed, installs the new pair. A pair that cannot be
    /// served is an error log naming the file, once per change, and the old pair stays.
    /// Content, not mtime, is compared: Kubernetes swaps a symlink and keeps old mtimes.
    pub async fn watch(self: Arc<Self>, initial: TlsFiles, files: impl Fn() -> Option<TlsFiles>) {
        let mut seen = Seen::read(initial).await.0;
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let wanted = files().unwrap_or_else(|| seen.files.clone());
            let (now, contents) = Seen::read(wanted).await;
            if now == seen {
                continue;
            }
            let loaded = match contents {
                Ok((cert_pem, key_pem)) => {
                    CertificatePair::from_pem(&now.files, &cert_pem, &key_pem, &self.provider)
                }
                Err(e) => Err(e),
            };
            match loaded {
                Ok(pair) => {
                    self.install(&pair);
                    tracing::info!(
                        cert_file = %now.files.cert_file.display(),
                        key_file = %now.files.key_file.display(),
                        "the TLS certificate changed; new connections get the new one"
                    );
                }
                Err(e) => tracing::error!(
                    error = %e,
                    file = %now.files.path(e.file()).display(),
                    "the new TLS certificate or key cannot be served; the old pair keeps serving"
                ),
            }
            seen = now;
        }
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

// === impl CurrentCertificate ===

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentCertificate([redacted])")
    }
}

// === impl Seen ===

impl Seen {
    /// Reads both files: what was seen, and their content (or the first read error).
    async fn read(files: TlsFiles) -> (Self, Result<(Vec<u8>, Vec<u8>), PairError>) {
        let read_one = |which: PairFile| {
            let path = files.path(which).to_owned();
            async move {
                tokio::fs::read(&path)
                    .await
                    .map_err(|source| PairError::Unreadable {
                        which,
                        file: path,
                        source,
                    })
            }
        };
        let cert = read_one(PairFile::Certificate).await;
        let key = read_one(PairFile::PrivateKey).await;
        let digest = |content: &Result<Vec<u8>, PairError>| {
            content
                .as_ref()
                .ok()
                .map(|bytes| Sha256::digest(bytes).into())
        };
        let seen = Self {
            cert: digest(&cert),
            key: digest(&key),
            files,
        };
        (seen, cert.and_then(|cert| Ok((cert, key?))))
    }
}

/// rustls with aws-lc-rs: the crypto library the rest of baton uses (ring stays out).
fn crypto_provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

fn read(files: &TlsFiles, which: PairFile) -> Result<Vec<u8>, PairError> {
    let file = files.path(which);
    std::fs::read(file).map_err(|source| PairError::Unreadable {
        which,
        file: file.to_owned(),
        source,
    })
}

/// What is wrong with a PEM file, without quoting it (the library's messages quote lines,
/// which in a key file could be key material).
fn describe(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::NoItemsFound => "nothing of the expected kind in the file",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "the file is not valid PEM",
    }
}
