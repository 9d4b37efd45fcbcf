//! The rustls client configuration: system roots plus an optional extra CA,
//! ALPN h2, TLS 1.2+, and the client certificate when the service wants one.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

use super::config::{ClientCertificate, ClientError};

pub(crate) fn client_config(
    ca_file: Option<&Path>,
    client_certificate: Option<&ClientCertificate>,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A malformed system certificate must not stop us using the others.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = read_certs(path).map_err(ClientError::Ca)?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ClientError::Ca(format!("{}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(ClientError::Ca(
            "no trusted CA certificates (none in the system store and no CA file)".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client_certificate {
        None => builder.with_no_client_auth(),
        Some(ClientCertificate { cert_pem, key_pem }) => {
            let chain = pem_certs(cert_pem.as_bytes())
                .map_err(|_| ClientError::Certificate("the certificate is not valid PEM".into()))?;
            if chain.is_empty() {
                return Err(ClientError::Certificate(
                    "no CERTIFICATE block in the certificate PEM".into(),
                ));
            }
            let key = pem_key(key_pem)?;
            builder.with_client_auth_cert(chain, key).map_err(|_| {
                ClientError::Certificate(
                    "the private key does not fit the certificate or is not supported".into(),
                )
            })?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = pem_certs(&pem)
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE block found", path.display()));
    }
    Ok(certs)
}

fn pem_certs(mut pem: &[u8]) -> std::io::Result<Vec<CertificateDer<'static>>> {
    rustls_pemfile::certs(&mut pem).collect()
}

/// Errors say nothing about the key's content: it is secret.
fn pem_key(pem: &str) -> Result<PrivateKeyDer<'static>, ClientError> {
    match rustls_pemfile::private_key(&mut pem.as_bytes()) {
        Ok(Some(key)) => Ok(key),
        _ => Err(ClientError::Certificate(
            "the private key is not a PEM PKCS#8, PKCS#1 or SEC1 key".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bad_ca_files_are_explained() {
        let missing = Path::new("/nonexistent/ca.pem");
        let err = client_config(Some(missing), None).unwrap_err();
        assert!(
            matches!(&err, ClientError::Ca(m) if m.contains("cannot read")),
            "{err}"
        );

        let mut junk = tempfile::NamedTempFile::new().unwrap();
        junk.write_all(b"this is not PEM").unwrap();
        let err = client_config(Some(junk.path()), None).unwrap_err();
        assert!(
            matches!(&err, ClientError::Ca(m) if m.contains("no CERTIFICATE")),
            "{err}"
        );
    }

    #[test]
    fn a_generated_ca_and_client_cert_are_accepted() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut ca = tempfile::NamedTempFile::new().unwrap();
        ca.write_all(cert.pem().as_bytes()).unwrap();
        let client_cert = ClientCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let cfg = client_config(Some(ca.path()), Some(&client_cert)).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec()]);

        let wrong = ClientCertificate {
            cert_pem: cert.pem(),
            key_pem: "SECRET".into(),
        };
        let err = client_config(Some(ca.path()), Some(&wrong)).unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
    }
}
