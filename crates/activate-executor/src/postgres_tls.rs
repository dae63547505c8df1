//! TLS to PostgreSQL with rustls, following libpq's `sslmode`, for the postgres warehouse
//! and the postgres destination alike:
//!
//! - `prefer` / `require`: encrypted, the server's certificate not checked (libpq's meaning);
//! - `verify-ca`: the certificate must chain to `sslrootcert`;
//! - `verify-full`: and must name the host.
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt`, as in libpq; `sslcert` + `sslkey`
//! present a client certificate.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::connections::PostgresProfile;
use crate::error::ConfigError;

/// The TLS settings of one connection, as libpq names them; `site` names it in errors.
#[derive(Debug, Clone, Copy)]
pub struct TlsSettings<'a> {
    pub site: &'a str,
    pub sslmode: Option<&'a str>,
    pub sslrootcert: Option<&'a str>,
    pub sslcert: Option<&'a str>,
    pub sslkey: Option<&'a str>,
}

impl<'a> TlsSettings<'a> {
    pub fn of_profile(profile: &'a PostgresProfile) -> Self {
        Self {
            site: &profile.site,
            sslmode: profile.sslmode.as_deref(),
            sslrootcert: profile.sslrootcert.as_deref(),
            sslcert: profile.sslcert.as_deref(),
            sslkey: profile.sslkey.as_deref(),
        }
    }
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// Builds the connector for settings whose `sslmode` uses TLS.
pub fn connector(profile: &TlsSettings<'_>) -> Result<RustlsConnect, ConfigError> {
    let verify = match profile.sslmode {
        Some("verify-full") => Verify::ChainAndName,
        Some("verify-ca") => Verify::Chain,
        _ => Verify::Nothing,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let site = profile.site;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("{site}: TLS setup: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        }),
        Verify::Chain | Verify::ChainAndName => {
            let roots = root_store(profile)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigError::new(format!("{site}: `sslrootcert`: {e}")))?;
            Arc::new(ChainVerifier {
                webpki,
                check_name: verify == Verify::ChainAndName,
            })
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (profile.sslcert, profile.sslkey) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates(Path::new(cert), site, "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(cert_path(key)).map_err(|e| {
                ConfigError::new(format!("{site}: `sslkey` {key}: {e}"))
                    .with_hint("a PEM private key (PKCS#8, PKCS#1 or SEC1)")
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConfigError::new(format!("{site}: `sslcert`/`sslkey`: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ConfigError::new(format!(
                "{site}: `sslcert` and `sslkey` go together; one of them is missing"
            )));
        }
    };
    Ok(RustlsConnect {
        config: Arc::new(config),
    })
}

fn cert_path(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(rest))
            .unwrap_or_else(|| PathBuf::from(path)),
        None => PathBuf::from(path),
    }
}

fn read_certificates(
    path: &Path,
    site: &str,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let path = cert_path(&path.to_string_lossy());
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConfigError::new(format!("{site}: `{key}` {}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(ConfigError::new(format!(
            "{site}: `{key}` {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

fn root_store(profile: &TlsSettings<'_>) -> Result<RootCertStore, ConfigError> {
    let site = profile.site;
    let path = match profile.sslrootcert {
        Some(p) => PathBuf::from(p),
        None => cert_path("~/.postgresql/root.crt"),
    };
    if !cert_path(&path.to_string_lossy()).is_file() {
        return Err(ConfigError::new(format!(
            "{site}: `sslmode: {}` checks the server's certificate, but the root certificate file {} does not exist",
            profile.sslmode.unwrap_or_default(),
            path.display()
        ))
        .with_hint("set `sslrootcert:` to the CA certificate (PEM) that signed the server's certificate"));
    }
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(&path, site, "sslrootcert")? {
        roots.add(certificate).map_err(|e| {
            ConfigError::new(format!("{site}: `sslrootcert` {}: {e}", path.display()))
        })?;
    }
    Ok(roots)
}

/// `verify-ca` and `verify-full`: rustls's WebPKI checks; `verify-ca` forgives the name.
#[derive(Debug)]
struct ChainVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `prefer` and `require`: libpq encrypts without checking who answers. The handshake's
/// signatures are still verified, so the session key belongs to the certificate shown.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// tokio-postgres's `MakeTlsConnect` over rustls.
#[derive(Clone)]
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnector;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnector, io::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnector {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            name,
        })
    }
}

pub struct RustlsConnector {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // No SCRAM channel binding: the client never asks for SCRAM-SHA-256-PLUS.
        ChannelBinding::none()
    }
}
