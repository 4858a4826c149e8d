//! TLS to PostgreSQL as libpq's `sslmode` asks: `disable` (never), `prefer` (the default:
//! TLS when the server offers it) and `require` (always) encrypt without checking the server's
//! certificate, as libpq does; `verify-ca` checks it was issued by a trusted authority, and
//! `verify-full` also that it names the host. Trusted authorities are `sslrootcert` (a PEM
//! file) when given, else the system's.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a connection is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// `sslmode=disable`.
    Off,
    /// `prefer` or `require`: encrypted, the certificate unchecked.
    Unverified,
    /// `verify-ca` (`full: false`) or `verify-full`, against `root` (or the system's roots).
    Verified { full: bool, root: Option<PathBuf> },
}

/// A connector for `tls` (not `Tls::Off`).
pub fn connector(tls: &Tls) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous();
    let verifier: Arc<dyn ServerCertVerifier> = match tls {
        Tls::Off | Tls::Unverified => Arc::new(Unchecked(provider)),
        Tls::Verified { full, root } => {
            let mut roots = RootCertStore::empty();
            match root {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
                    for cert in certs {
                        let cert = cert.map_err(|e| {
                            format!("cannot read sslrootcert {}: {e}", path.display())
                        })?;
                        roots.add(cert).map_err(|e| {
                            format!(
                                "sslrootcert {} holds a bad certificate: {e}",
                                path.display()
                            )
                        })?;
                    }
                }
                None => {
                    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                }
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| {
                    format!("TLS: no trusted certificate authority ({e}); set sslrootcert")
                })?;
            match full {
                true => webpki,
                false => Arc::new(AnyName(webpki)),
            }
        }
    };
    let config = builder
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Accepts any certificate (libpq's `require`): the connection is encrypted, not
/// authenticated.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A trusted chain, whatever host the certificate names (libpq's `verify-ca`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The TLS settings of a PostgreSQL url, taken out of it: `sslmode` (libpq's six modes) and
/// `sslrootcert`, which the url parser does not know all of. Returns the url left, the TLS
/// mode, and the `sslmode` the parser is to see.
pub fn from_url(url: &str) -> Result<(String, Option<String>, Option<PathBuf>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, None));
    };
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", m)) => mode = Some(m.to_string()),
            Some(("sslrootcert", r)) => root = Some(PathBuf::from(r)),
            _ => kept.push(pair),
        }
    }
    let url = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((url, mode, root))
}

/// libpq's `sslmode` as a [`Tls`] and the mode tokio-postgres runs (`disable`, `prefer` or
/// `require`).
pub fn mode(sslmode: Option<&str>, root: Option<PathBuf>) -> Result<(Tls, &'static str), String> {
    Ok(match sslmode.unwrap_or("prefer") {
        "disable" => (Tls::Off, "disable"),
        "allow" | "prefer" => (Tls::Unverified, "prefer"),
        "require" => (Tls::Unverified, "require"),
        "verify-ca" => (Tls::Verified { full: false, root }, "require"),
        "verify-full" => (Tls::Verified { full: true, root }, "require"),
        other => {
            return Err(format!(
                "`sslmode={other}` is not an sslmode (disable, allow, prefer, require, verify-ca, verify-full)"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_settings() {
        let (url, mode, root) = from_url(
            "postgresql://u@h:5/db?sslmode=verify-full&sslrootcert=/a/ca.pem&connect_timeout=3",
        )
        .expect("url");
        assert_eq!(url, "postgresql://u@h:5/db?connect_timeout=3");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root, Some(PathBuf::from("/a/ca.pem")));
        assert!(matches!(
            super::mode(Some("verify-ca"), None),
            Ok((Tls::Verified { full: false, .. }, "require"))
        ));
        assert!(super::mode(Some("sometimes"), None).is_err());
    }
}
