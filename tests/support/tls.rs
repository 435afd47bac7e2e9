//! A test certificate authority made at test time (rcgen over aws-lc-rs), leaf certificates
//! for 127.0.0.1 it signs, and TLS clients (rustls over aws-lc-rs) that trust it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A CA whose certificate the test clients trust.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM (for `curl --cacert`).
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
}

/// A leaf certificate for `localhost` and `127.0.0.1`, with its private key.
pub struct Leaf {
    /// The leaf, then the CA: the chain a server sends.
    pub chain_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf certificate, DER: what a client sees as the peer certificate.
    pub cert_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "baton test CA");
        let cert = params.self_signed(&key).unwrap();
        let cert_der = cert.der().clone();
        Self {
            issuer: Issuer::new(params, key),
            cert_pem: pem_block("CERTIFICATE", &cert_der),
            cert_der,
        }
    }

    /// A new leaf with its own key; `name` is its common name and `serial` its serial number.
    pub fn leaf(&self, name: &str, serial: u64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_der = cert.der().to_vec();
        Leaf {
            chain_pem: format!(
                "{}{}",
                pem_block("CERTIFICATE", &cert_der),
                pem_block("CERTIFICATE", &self.cert_der)
            ),
            key_pem: pem_block("PRIVATE KEY", &key.serialize_der()),
            cert_der,
        }
    }

    /// A client config trusting this CA only, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection to `addr` (verified for the name `localhost`), offering `alpn`.
    pub async fn connect(&self, addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        self.try_connect(addr, alpn)
            .await
            .unwrap_or_else(|e| panic!("a TLS handshake with {addr}: {e}"))
    }

    /// [`TestCa::connect`], returning the error of a failed handshake.
    pub async fn try_connect(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let stream = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(self.client_config(alpn));
        let name = ServerName::try_from("localhost").unwrap();
        connector.connect(name, stream).await
    }
}

impl Leaf {
    /// Writes the chain to `cert_file` and the key to `key_file`, in place (as cert-manager
    /// rewrites a mounted secret's files), certificate first.
    pub fn write(&self, cert_file: &Path, key_file: &Path) {
        std::fs::write(cert_file, &self.chain_pem).unwrap();
        std::fs::write(key_file, &self.key_pem).unwrap();
    }
}

/// The DER of the certificate the server presented on `stream`.
pub fn peer_certificate(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate")
        .to_vec()
}

/// The protocol ALPN chose on `stream`.
pub fn negotiated_protocol(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

fn pem_block(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}
