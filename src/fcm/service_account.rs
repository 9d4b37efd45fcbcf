//! Google's service-account JSON key file: who signs the OAuth2 assertion,
//! with which key, for which Firebase project.

use ring::signature::RsaKeyPair;
use serde_json::Value;
use std::fmt;

use super::message::valid_project_id;

/// Why a key file was refused; never carries the private key or any part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    /// Not a JSON object.
    NotJson,
    /// A field Google puts in every key file is absent, empty or not a string.
    Missing(&'static str),
    /// `type` is not `service_account` (the value, cut short, for the operator).
    NotServiceAccount(String),
    /// A field is there but unusable; the text says why.
    Bad(&'static str, &'static str),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::NotJson => {
                f.write_str("the service-account key file is not a JSON object")
            }
            AccountError::Missing(field) => {
                write!(
                    f,
                    "the service-account key file has no string field {field:?}"
                )
            }
            AccountError::NotServiceAccount(t) => write!(
                f,
                "the key file's \"type\" is {t:?}, not \"service_account\" \
                 (download a key from the project's Service accounts page)"
            ),
            AccountError::Bad(field, why) => {
                write!(f, "the service-account key file's {field:?} {why}")
            }
        }
    }
}

impl std::error::Error for AccountError {}

/// A parsed key file. `Debug` shows everything but the private key.
pub struct ServiceAccount {
    /// The Firebase project the messages are sent in (`/v1/projects/{project_id}/...`).
    pub project_id: String,
    /// Names the signing key: the assertion's `kid`.
    pub private_key_id: String,
    /// The account's address: the assertion's `iss`.
    pub client_email: String,
    /// Where the assertion is exchanged for an access token, and its `aud`.
    pub token_uri: String,
    key: RsaKeyPair,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("private_key_id", &self.private_key_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

fn field<'a>(v: &'a Value, name: &'static str) -> Result<&'a str, AccountError> {
    match v.get(name).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(AccountError::Missing(name)),
    }
}

/// The assertion is a bearer credential for an hour: it only travels over TLS,
/// or in clear to this machine (a mock token server in tests).
fn safe_token_uri(uri: &str) -> bool {
    if uri.starts_with("https://") {
        return true;
    }
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ServiceAccount {
    /// Parses a key file as the Firebase console downloads it; other fields are ignored.
    pub fn from_json(text: &[u8]) -> Result<ServiceAccount, AccountError> {
        // Through Value, not a typed struct: serde's type errors quote the value they
        // met, and that value could be the private key.
        let v: Value = serde_json::from_slice(text).map_err(|_| AccountError::NotJson)?;
        if !v.is_object() {
            return Err(AccountError::NotJson);
        }
        let kind = field(&v, "type")?;
        if kind != "service_account" {
            return Err(AccountError::NotServiceAccount(
                kind.chars().take(40).collect(),
            ));
        }
        let project_id = field(&v, "project_id")?;
        if !valid_project_id(project_id) {
            return Err(AccountError::Bad(
                "project_id",
                "is not a Google Cloud project id (6-30 lowercase letters, digits, hyphens)",
            ));
        }
        let private_key_id = field(&v, "private_key_id")?;
        let client_email = field(&v, "client_email")?;
        if !client_email.contains('@') {
            return Err(AccountError::Bad("client_email", "is not an email address"));
        }
        let token_uri = field(&v, "token_uri")?;
        if !safe_token_uri(token_uri) {
            return Err(AccountError::Bad(
                "token_uri",
                "must be an https:// URL (http:// only to this machine)",
            ));
        }
        let key = rsa_key(field(&v, "private_key")?)?;
        Ok(ServiceAccount {
            project_id: project_id.into(),
            private_key_id: private_key_id.into(),
            client_email: client_email.into(),
            token_uri: token_uri.into(),
            key,
        })
    }

    /// The key that signs the assertion (RS256).
    pub(crate) fn key(&self) -> &RsaKeyPair {
        &self.key
    }
}

fn rsa_key(pem: &str) -> Result<RsaKeyPair, AccountError> {
    const NOT_RSA: AccountError = AccountError::Bad(
        "private_key",
        "is not a PEM PKCS#8 RSA private key of 2048 to 8192 bits",
    );
    let der = rustls_pemfile::pkcs8_private_keys(&mut pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or(NOT_RSA)?;
    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|_| NOT_RSA)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A throwaway key made for these tests with `openssl genpkey`; it signs nothing real.
    pub(crate) const TEST_KEY_PEM: &str = include_str!("testdata/test-only-rsa-2048.pem");

    /// A key file shaped like the ones the Firebase console hands out.
    pub(crate) fn key_file_json() -> serde_json::Value {
        serde_json::json!({
            "type": "service_account",
            "project_id": "pushpark-test",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": TEST_KEY_PEM,
            "client_email": "firebase-adminsdk-x1@pushpark-test.iam.gserviceaccount.com",
            "client_id": "112233445566778899001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/x",
            "universe_domain": "googleapis.com"
        })
    }

    pub(crate) fn test_account() -> ServiceAccount {
        ServiceAccount::from_json(key_file_json().to_string().as_bytes()).unwrap()
    }

    fn parse_with(
        change: impl FnOnce(&mut serde_json::Value),
    ) -> Result<ServiceAccount, AccountError> {
        let mut v = key_file_json();
        change(&mut v);
        ServiceAccount::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn a_console_key_file_parses_and_debug_hides_the_key() {
        let account = test_account();
        assert_eq!(account.project_id, "pushpark-test");
        assert_eq!(account.token_uri, "https://oauth2.googleapis.com/token");
        let debug = format!("{account:?}");
        assert!(debug.contains("pushpark-test"), "{debug}");
        assert!(
            !debug.contains("PRIVATE") && !debug.contains("MII"),
            "{debug}"
        );
    }

    #[test]
    fn each_missing_field_is_named() {
        for name in [
            "type",
            "project_id",
            "private_key_id",
            "private_key",
            "client_email",
            "token_uri",
        ] {
            let err = parse_with(|v| {
                v.as_object_mut().unwrap().remove(name);
            })
            .unwrap_err();
            assert_eq!(err, AccountError::Missing(name));
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = parse_with(|v| v["token_uri"] = 5.into()).unwrap_err();
        assert_eq!(err, AccountError::Missing("token_uri"));
    }

    #[test]
    fn bad_values_are_refused_without_quoting_the_key() {
        assert_eq!(
            ServiceAccount::from_json(b"[1]").unwrap_err(),
            AccountError::NotJson
        );
        assert_eq!(
            ServiceAccount::from_json(b"{\"type\":").unwrap_err(),
            AccountError::NotJson
        );
        assert!(matches!(
            parse_with(|v| v["type"] = "authorized_user".into()).unwrap_err(),
            AccountError::NotServiceAccount(t) if t == "authorized_user"
        ));
        assert!(matches!(
            parse_with(|v| v["project_id"] = "Pushpark_Test".into()).unwrap_err(),
            AccountError::Bad("project_id", _)
        ));
        assert!(matches!(
            parse_with(|v| v["client_email"] = "nobody".into()).unwrap_err(),
            AccountError::Bad("client_email", _)
        ));
        for uri in [
            "http://oauth2.googleapis.com/token",
            "ftp://x",
            "http://127.0.0.1.example.com/t",
        ] {
            assert!(
                matches!(
                    parse_with(|v| v["token_uri"] = uri.into()).unwrap_err(),
                    AccountError::Bad("token_uri", _)
                ),
                "{uri}"
            );
        }
        for uri in [
            "http://127.0.0.1:8080/token",
            "http://[::1]:9/t",
            "http://localhost/t",
        ] {
            assert!(parse_with(|v| v["token_uri"] = uri.into()).is_ok(), "{uri}");
        }
        // A damaged key: the error names the field, never its contents.
        let damaged = TEST_KEY_PEM.replace("MII", "MIJ");
        let err = parse_with(|v| v["private_key"] = damaged.into()).unwrap_err();
        assert!(matches!(err, AccountError::Bad("private_key", _)));
        let text = format!("{err} {err:?}");
        assert!(!text.contains("MI") && !text.contains("BEGIN"), "{text}");
        // An EC key is PKCS#8 too, but not RSA.
        let ec = {
            use p256::pkcs8::{EncodePrivateKey, LineEnding};
            let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
            key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
        };
        assert!(matches!(
            parse_with(|v| v["private_key"] = ec.into()).unwrap_err(),
            AccountError::Bad("private_key", _)
        ));
    }
}
