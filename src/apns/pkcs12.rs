//! Certificate auth from a PKCS#12 (.p12) file, the form in which Keychain
//! exports the app's VoIP Services certificate with its private key. Legacy
//! files (3DES keys, RC2-40 certificates, SHA-1 MAC) read as well as AES ones.

use p12_keystore::error::Error as P12Error;
use p12_keystore::KeyStore;
use p256::pkcs8::der::pem::{self, LineEnding};

use super::config::{Auth, ClientError};
use crate::push_client;

impl Auth {
    /// The certificate chain and private key of a .p12 file's first key
    /// entry. Errors name the problem, never the password or key material.
    pub fn from_pkcs12(p12: &[u8], password: &str) -> Result<Auth, ClientError> {
        let bad = |why: &str| {
            ClientError::from(push_client::ClientError::Certificate(format!(
                "PKCS#12: {why}"
            )))
        };
        let store = KeyStore::from_pkcs12(p12, password).map_err(|e| match e {
            // A wrong password fails the MAC check, or the decryption when
            // the file has no MAC.
            P12Error::MacError(_)
            | P12Error::UnpadError
            | P12Error::InvalidData
            | P12Error::Pkcs5Error(_) => bad("wrong password, or a damaged file"),
            P12Error::UnsupportedEncryptionScheme | P12Error::UnsupportedMacAlgorithm => {
                bad(&format!("{e} (re-export it with AES or 3DES)"))
            }
            _ => bad("not a PKCS#12 file"),
        })?;
        let (_, entry) = store
            .private_key_chain()
            .ok_or_else(|| bad("holds no private key with its certificate"))?;
        let to_pem = |label, der| {
            pem::encode_string(label, LineEnding::LF, der)
                .map_err(|_| bad("a certificate or key is too large"))
        };
        let cert_pem = entry
            .chain()
            .iter()
            .map(|cert| to_pem("CERTIFICATE", cert.as_der()))
            .collect::<Result<String, _>>()?;
        let key_pem = to_pem("PRIVATE KEY", entry.key())?;
        Ok(Auth::Certificate { cert_pem, key_pem })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p12_keystore::{
        Certificate, EncryptionAlgorithm, KeyStoreEntry, MacAlgorithm, PrivateKeyChain,
    };

    const PASSWORD: &str = "s3cret-Passw0rd";

    /// A self-signed certificate and its key, written into a .p12 file.
    fn p12(encryption: EncryptionAlgorithm, mac: MacAlgorithm) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["VoIP Services: com.example.phone".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let chain = [Certificate::from_der(cert.der()).unwrap()];
        let mut store = KeyStore::new();
        let entry = PrivateKeyChain::new(key.serialize_der(), [1u8; 20], chain);
        store.add_entry("voip", KeyStoreEntry::PrivateKeyChain(entry));
        let file = store
            .writer(PASSWORD)
            .encryption_algorithm(encryption)
            .mac_algorithm(mac)
            .write()
            .unwrap();
        (file, cert.der().to_vec(), key.serialize_der())
    }

    fn der_of(pem_text: &str) -> Vec<u8> {
        pem::decode_vec(pem_text.as_bytes()).unwrap().1
    }

    #[test]
    fn legacy_and_modern_files_give_the_certificate_and_key() {
        for (encryption, mac) in [
            (
                EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
                MacAlgorithm::HmacSha1,
            ),
            (
                EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
                MacAlgorithm::HmacSha256,
            ),
        ] {
            let (file, cert, key) = p12(encryption, mac);
            let Auth::Certificate { cert_pem, key_pem } = Auth::from_pkcs12(&file, PASSWORD)
                .unwrap_or_else(|e| panic!("{encryption:?}: {e}"))
            else {
                panic!("certificate auth expected");
            };
            assert_eq!(der_of(&cert_pem), cert, "{encryption:?}");
            assert_eq!(der_of(&key_pem), key, "{encryption:?}");
            assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        }
    }

    #[test]
    fn a_wrong_password_or_a_non_p12_file_is_a_clear_error_without_secrets() {
        let (file, _, _) = p12(
            EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            MacAlgorithm::HmacSha1,
        );
        let wrong = Auth::from_pkcs12(&file, "not-the-password").unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "client certificate: PKCS#12: wrong password, or a damaged file"
        );
        let garbage = Auth::from_pkcs12(b"-----BEGIN CERTIFICATE-----", PASSWORD).unwrap_err();
        assert_eq!(
            garbage.to_string(),
            "client certificate: PKCS#12: not a PKCS#12 file"
        );
        for e in [wrong, garbage] {
            assert!(!format!("{e:?}").contains(PASSWORD));
        }
    }
}
