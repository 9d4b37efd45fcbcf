//! The mocks' state directory: a CA, a server certificate for `localhost` and
//! 127.0.0.1 signed by it, and for the mock APNs a client certificate (for
//! certificate auth) and the team's ES256 key. Everything is created once and
//! reused, so a client that trusts `ca.pem` keeps trusting the mock across
//! restarts.

use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::{KEY_ID, TEAM_ID};

pub const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
const SERVER_CERT: &str = "server-cert.pem";
const SERVER_KEY: &str = "server-key.pem";
pub const CLIENT_CERT: &str = "client-cert.pem";
pub const CLIENT_KEY: &str = "client-key.pem";

/// The name of the team key file Apple would hand out for `KEY_ID`.
pub fn auth_key_file() -> String {
    format!("AuthKey_{KEY_ID}.p8")
}

/// A server's TLS certificate and key, as PEM.
pub struct TlsIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The PEM texts the mock APNs needs, after making sure every file exists.
pub struct StateFiles {
    pub server: TlsIdentity,
    pub auth_key_pem: String,
}

/// The mock APNs's state: the CA, server and client certificates, team key.
pub fn ensure(dir: &Path) -> io::Result<StateFiles> {
    in_state_dir(dir, |dir| {
        let ca = Ca::load_or_create(dir)?;
        let server = ca.server_identity(dir)?;
        ca.ensure_leaf(dir, CLIENT_CERT, CLIENT_KEY, Leaf::Client)?;
        let auth_key = dir.join(auth_key_file());
        if !auth_key.exists() {
            let key = SigningKey::random(&mut rand::rngs::OsRng);
            let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(cert_err)?;
            write_file(&auth_key, pem.as_bytes(), true)?;
        }
        Ok(StateFiles {
            server,
            auth_key_pem: fs::read_to_string(auth_key)?,
        })
    })
}

/// Only the CA and the server certificate: what every mock serves with, so a
/// client trusting one state dir's `ca.pem` trusts each mock using that dir.
pub fn ensure_server(dir: &Path) -> io::Result<TlsIdentity> {
    in_state_dir(dir, |dir| Ca::load_or_create(dir)?.server_identity(dir))
}

/// Runs `f` on the created `dir`, naming the directory in its errors.
pub fn in_state_dir<T>(dir: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    fs::create_dir_all(dir)
        .and_then(|()| f(dir))
        .map_err(|e| io::Error::new(e.kind(), format!("state dir {}: {e}", dir.display())))
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn load_or_create(dir: &Path) -> io::Result<Ca> {
        let key = load_or_create_key(&dir.join(CA_KEY))?;
        // The CA is rebuilt from its key and fixed name so it can sign; only the
        // stored ca.pem is ever handed out, and it is written once.
        let cert = ca_params().self_signed(&key).map_err(cert_err)?;
        if !dir.join(CA_CERT).exists() {
            write_file(&dir.join(CA_CERT), cert.pem().as_bytes(), false)?;
        }
        Ok(Ca { cert, key })
    }

    fn server_identity(&self, dir: &Path) -> io::Result<TlsIdentity> {
        self.ensure_leaf(dir, SERVER_CERT, SERVER_KEY, Leaf::Server)?;
        Ok(TlsIdentity {
            cert_pem: fs::read_to_string(dir.join(SERVER_CERT))?,
            key_pem: fs::read_to_string(dir.join(SERVER_KEY))?,
        })
    }

    fn ensure_leaf(
        &self,
        dir: &Path,
        cert_file: &str,
        key_file: &str,
        leaf: Leaf,
    ) -> io::Result<()> {
        if dir.join(cert_file).exists() && dir.join(key_file).exists() {
            return Ok(());
        }
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = leaf_params(leaf)?
            .signed_by(&key, &self.cert, &self.key)
            .map_err(cert_err)?;
        write_file(&dir.join(key_file), key.serialize_pem().as_bytes(), true)?;
        write_file(&dir.join(cert_file), cert.pem().as_bytes(), false)
    }
}

#[derive(Clone, Copy)]
enum Leaf {
    Server,
    Client,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = name("pushpark mock APNs CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn leaf_params(leaf: Leaf) -> io::Result<CertificateParams> {
    let (sans, cn, eku) = match leaf {
        Leaf::Server => (
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        // Named like the certificates Apple issues for VoIP pushes.
        Leaf::Client => (
            vec![],
            "VoIP Services: com.example.pushpark",
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    };
    let mut params = CertificateParams::new(sans).map_err(cert_err)?;
    params.distinguished_name = name(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, TEAM_ID);
    dn
}

fn load_or_create_key(path: &Path) -> io::Result<KeyPair> {
    if path.exists() {
        return KeyPair::from_pem(&fs::read_to_string(path)?).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a usable key", path.display()),
            )
        });
    }
    let key = KeyPair::generate().map_err(cert_err)?;
    write_file(path, key.serialize_pem().as_bytes(), true)?;
    Ok(key)
}

/// Writes through a temporary file so a crash never leaves half a key behind.
pub fn write_file(path: &Path, data: &[u8], secret: bool) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    fs::rename(tmp, path)
}

pub fn cert_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("cannot generate the mock's certificates: {e}"))
}

/// The client certificate and key as a PKCS#12 file encrypted the way Keychain
/// exports one (3DES, SHA-1 MAC), for testing `.p12` certificate auth.
pub fn client_p12(dir: &Path, password: &str) -> io::Result<Vec<u8>> {
    use p12_keystore::{
        Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKeyChain,
    };
    let invalid =
        |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let cert = rustls_pemfile::certs(&mut fs::read(dir.join(CLIENT_CERT))?.as_slice())
        .next()
        .ok_or_else(|| invalid(&"no client certificate"))??;
    let key = rustls_pemfile::private_key(&mut fs::read(dir.join(CLIENT_KEY))?.as_slice())?
        .ok_or_else(|| invalid(&"no client key"))?;
    let chain = [Certificate::from_der(&cert).map_err(|e| invalid(&e))?];
    let mut store = KeyStore::new();
    let entry = PrivateKeyChain::new(key.secret_der(), [1u8; 20], chain);
    store.add_entry("voip", KeyStoreEntry::PrivateKeyChain(entry));
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
        .mac_algorithm(MacAlgorithm::HmacSha1)
        .write()
        .map_err(|e| invalid(&e))
}
