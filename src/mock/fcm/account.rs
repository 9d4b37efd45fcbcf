//! The service account a Firebase project hands out as a JSON key file,
//! generated once per state dir. Its URLs name the mock's own address, so a
//! client following `token_uri` talks to the mock, never to Google.

use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::Path;

use crate::mock::certs::{cert_err, write_file};

pub const SERVICE_ACCOUNT: &str = "service-account.json";

/// The fields of Google's service-account key files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    #[serde(rename = "type")]
    pub kind: String,
    pub project_id: String,
    pub private_key_id: String,
    pub private_key: String,
    pub client_email: String,
    pub client_id: String,
    pub auth_uri: String,
    pub token_uri: String,
    pub auth_provider_x509_cert_url: String,
    pub client_x509_cert_url: String,
    pub universe_domain: String,
}

/// The account and the public half of its key, as ring verifies with it.
pub struct Account {
    pub json: ServiceAccount,
    pub public_key_pkcs1: Vec<u8>,
}

/// Loads `dir/service-account.json` or creates it (a 2048-bit RSA key takes
/// about a second), pointing its URLs at `addr` and naming `project_id`.
pub fn ensure(dir: &Path, addr: SocketAddr, project_id: &str) -> io::Result<Account> {
    let path = dir.join(SERVICE_ACCOUNT);
    let stored = match fs::read(&path) {
        Ok(text) => Some(
            serde_json::from_slice::<ServiceAccount>(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let key = match &stored {
        Some(account) => RsaPrivateKey::from_pkcs8_pem(&account.private_key).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds no usable RSA key", path.display()),
            )
        })?,
        None => RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(cert_err)?,
    };
    let json = describe(&key, stored.as_ref(), addr, project_id)?;
    if stored.as_ref() != Some(&json) {
        let text = serde_json::to_vec_pretty(&json).map_err(io::Error::other)?;
        write_file(&path, &text, true)?;
    }
    let public_key_pkcs1 = key
        .to_public_key()
        .to_pkcs1_der()
        .map_err(cert_err)?
        .into_vec();
    Ok(Account {
        json,
        public_key_pkcs1,
    })
}

fn describe(
    key: &RsaPrivateKey,
    stored: Option<&ServiceAccount>,
    addr: SocketAddr,
    project_id: &str,
) -> io::Result<ServiceAccount> {
    let base = format!("https://{addr}");
    let email = format!("pushpark-mock@{project_id}.iam.gserviceaccount.com");
    // The ids stay as generated: a client may cache credentials by key id.
    let (key_id, client_id) = match stored {
        Some(account) => (account.private_key_id.clone(), account.client_id.clone()),
        None => {
            let id: [u8; 20] = rand::random();
            let key_id = id.iter().map(|b| format!("{b:02x}")).collect();
            let client_id = format!("1{:020}", rand::random::<u64>());
            (key_id, client_id)
        }
    };
    Ok(ServiceAccount {
        kind: "service_account".into(),
        project_id: project_id.into(),
        private_key_id: key_id,
        private_key: key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(cert_err)?
            .to_string(),
        client_x509_cert_url: format!("{base}/robot/v1/metadata/x509/{email}"),
        client_email: email,
        client_id,
        auth_uri: format!("{base}/o/oauth2/auth"),
        token_uri: format!("{base}/token"),
        auth_provider_x509_cert_url: format!("{base}/oauth2/v1/certs"),
        universe_domain: "googleapis.com".into(),
    })
}
