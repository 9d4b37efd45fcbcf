//! What ships holds no test tooling: the mocks, their key generators (rcgen, rsa), the JWT
//! verifier and the command's argument parser stay behind the `mock` and `cli` features, on for
//! the `pushpark` command and the tests, off for the library hosts load.

use std::path::Path;
use std::process::Command;

mod built_lib;

/// Demangled symbol names that only the tooling defines.
const TOOLING: &[&str] = &[
    "pushpark::mock::",
    "rcgen::",
    "RsaPrivateKey",
    "JwtVerifier",
    "clap_builder::",
];

/// The defined symbols of `file` whose demangled name mentions the tooling.
fn tooling_symbols(file: &Path) -> Vec<String> {
    assert!(file.exists(), "{} is not built", file.display());
    let out = Command::new("nm")
        .args(["-C", "--defined-only"])
        .arg(file)
        .output()
        .expect("running nm");
    assert!(out.status.success(), "nm {} failed", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| TOOLING.iter().any(|t| l.contains(t)))
        .map(str::to_string)
        .collect()
}

fn assert_no_tooling(file: &Path) {
    let found = tooling_symbols(file);
    assert!(
        found.is_empty(),
        "{} holds {} symbols of the test tooling, e.g.:\n{}",
        file.display(),
        found.len(),
        found[..found.len().min(10)].join("\n")
    );
}

#[test]
fn the_shared_library_has_no_tooling() {
    assert_no_tooling(&built_lib::lib_dir().join("libpushpark.so"));
}

/// The static library holds all the code built into it, linked or not: what the module links.
#[test]
fn the_static_library_has_no_tooling() {
    assert_no_tooling(&built_lib::lib_dir().join("libpushpark.a"));
}

/// Built by `make -C adapters/kamailio` (scripts/test runs it before the tests).
#[test]
fn the_kamailio_module_has_no_tooling() {
    assert_no_tooling(&Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kamailio/pushpark.so"));
}

/// Built by `make -C adapters/opensips` (scripts/test runs it before the tests).
#[test]
fn the_opensips_module_has_no_tooling() {
    assert_no_tooling(&Path::new(env!("CARGO_MANIFEST_DIR")).join("target/opensips/pushpark.so"));
}
