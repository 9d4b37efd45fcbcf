//! The engine authenticating to APNs with a PKCS#12 file named in its configuration.

mod engine_common;

use engine_common::*;
use pushpark::mock::{MockApns, MockConfig};
use pushpark::{EngineConfig, ParkRequest};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// A mock that takes certificate auth, and the engine's config using the
/// mock's client certificate as a .p12 file with `password_file`.
fn cert_auth_setup(dirs: &tempfile::TempDir, password: &str) -> (MockApns, serde_json::Value) {
    let mut cfg = MockConfig::new(dirs.path().join("mock"));
    cfg.require_client_cert = Some(cfg.state_dir.join("ca.pem"));
    let mock = MockApns::start(cfg).unwrap();
    let p12 = dirs.path().join("voip.p12");
    std::fs::write(&p12, mock.client_p12(PASSWORD).unwrap()).unwrap();
    let password_file = dirs.path().join("voip.pass");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let mut config = base_config(&mock, &dirs.path().join("store"));
    config["apns"]["auth"] = json!({ "p12_file": p12, "password_file": password_file });
    (mock, config)
}

#[test]
fn a_p12_file_authenticates_the_engines_pushes() {
    let dirs = tempfile::tempdir().unwrap();
    let (mock, config) = cert_auth_setup(&dirs, PASSWORD);
    let engine = engine_from(&config);
    let (aor, tok) = ("sip:carol@example.com", token(3));
    let contact = push_contact(aor, &tok);
    assert!(
        engine
            .register(&register(aor, &contact, None))
            .unwrap()
            .stored
    );
    engine
        .park(&ParkRequest {
            call_id: "p12-call@example.com",
            aor,
            caller_uri: "sip:dave@example.com",
            caller_name: "Dave",
            host_ref: 1,
            host_data: 0,
            timeout: None,
        })
        .unwrap();
    let push = mock
        .wait_for_push(&tok, PATIENCE)
        .expect("the push reached APNs");
    assert_eq!(
        push.header("authorization"),
        None,
        "certificate auth, no JWT"
    );
}

#[test]
fn a_wrong_p12_password_is_a_configuration_error_naming_the_key() {
    let dirs = tempfile::tempdir().unwrap();
    let (_mock, config) = cert_auth_setup(&dirs, "Not-The-Password");
    let cfg = EngineConfig::from_json(&config.to_string()).unwrap();
    let err = pushpark::Engine::new(cfg)
        .err()
        .expect("the engine refuses to start");
    let text = err.to_string();
    assert!(text.contains("apns.auth.p12_file: "), "{text}");
    assert!(text.contains("PKCS#12: wrong password"), "{text}");
    assert!(!text.contains("Not-The-Password") && !format!("{err:?}").contains("Not-The-Password"));
}
