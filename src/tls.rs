//! TLS for both connections (rustls with ring, no OpenSSL): the client config built from `TlsFiles` and how much
//! of the server's certificate to check, and the PostgreSQL connector that uses it.
//!
//! Uses the config types.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::TlsFiles;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Nothing: encryption only (PostgreSQL `sslmode=prefer|require` without a CA file).
    Nothing,
    /// Signed by a trusted CA, any name (`verify-ca`).
    Chain,
    /// Signed by a trusted CA and naming the host we connect to, or `server_name` when set (`verify-full`).
    Full,
}

/// A rustls client config: trusted roots from `files.ca_file` (else the system's), the client certificate when
/// given, and the verification `verify` asks for. Errors name the file and the key it came from (`{key}.ca_file`).
pub fn client_config(files: &TlsFiles, verify: Verify, key: &str) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{key}: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(Checked { provider, check: Check::Nothing }),
        Verify::Chain => Arc::new(Checked { check: Check::Chain(Arc::new(roots(files, key)?)), provider }),
        Verify::Full => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(files, key)?), provider.clone())
                .build()
                .map_err(|e| format!("{key}.ca_file: {e}"))?;
            match &files.server_name {
                None => webpki,
                Some(name) => {
                    let name = ServerName::try_from(name.clone()).map_err(|e| format!("{key}.server_name: {e}"))?;
                    Arc::new(Checked { provider, check: Check::Named(webpki, name) })
                }
            }
        }
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    match &files.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key_file)) => {
            let chain = certificates(cert, &format!("{key}.cert_file"))?;
            let private = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| format!("{key}.key_file {}: {}", key_file.display(), pem_error(e)))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| format!("{key}.cert_file/key_file: {e}"))
        }
    }
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind in it".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} {}: {}", path.display(), pem_error(e)))?;
    if chain.is_empty() {
        return Err(format!("{key} {}: no certificate in it", path.display()));
    }
    Ok(chain)
}

fn roots(files: &TlsFiles, key: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match &files.ca_file {
        Some(ca) => {
            for cert in certificates(ca, &format!("{key}.ca_file"))? {
                store.add(cert).map_err(|e| format!("{key}.ca_file {}: {e}", ca.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(native.certs);
            if store.is_empty() {
                return Err(format!("{key}: no ca_file and no system CA certificates found"));
            }
        }
    }
    Ok(store)
}

/// A rustls server config for a listener: its certificate and key, and, when `client_ca` is given, client
/// certificates required and checked against it. Errors name the key of the file that is wrong.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    section: &str,
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{section}: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certificates(ca, &format!("{section}.client_ca_file"))? {
                roots.add(c).map_err(|e| format!("{section}.client_ca_file {}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{section}.client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = certificates(cert, &format!("{section}.cert_file"))?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{section}.key_file {}: {}", key.display(), pem_error(e)))?;
    let mut config =
        builder.with_single_cert(chain, private).map_err(|e| format!("{section}.cert_file/key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What [`Checked`] checks of the server's certificate.
#[derive(Debug)]
enum Check {
    /// Nothing: encryption without authentication (`sslmode=require` without a CA, as libpq).
    Nothing,
    /// The chain to these roots, any name (`verify-ca`).
    Chain(Arc<RootCertStore>),
    /// Chain and name, the name being the configured `server_name` instead of the host connected to.
    Named(Arc<WebPkiServerVerifier>, ServerName<'static>),
}

/// The verifications webpki's own verifier does not offer; the handshake signatures are always checked.
#[derive(Debug)]
struct Checked {
    provider: Arc<rustls::crypto::CryptoProvider>,
    check: Check,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.check {
            Check::Nothing => {}
            Check::Chain(roots) => {
                let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
                let algorithms = self.provider.signature_verification_algorithms.all;
                verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, algorithms)?;
            }
            Check::Named(webpki, name) => {
                webpki.verify_server_cert(end_entity, intermediates, name, ocsp, now)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres's TLS hook over rustls. Channel binding is not offered (SCRAM still authenticates; the server
/// would only insist with `channel_binding=require` on the client side, which we never set).
#[derive(Clone)]
pub struct MakeRustlsConnect {
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for MakeRustlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeRustlsConnect")
    }
}

impl MakeRustlsConnect {
    /// A connector using `config`.
    pub fn new(config: ClientConfig) -> Self {
        Self { connector: tokio_rustls::TlsConnector::from(Arc::new(config)) }
    }
}

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        let name = ServerName::try_from(domain)?.to_owned();
        Ok(RustlsConnect { connector: self.connector.clone(), name })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> tokio_postgres::tls::TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move { self.connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

/// A TLS connection to PostgreSQL.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}
