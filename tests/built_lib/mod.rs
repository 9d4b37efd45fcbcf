//! The library as C programs link it: target/<profile>/libpushpark.so and .a, built from
//! the current sources first, so a test never checks a stale one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// target/<profile> (this test runs from .../deps), with libpushpark.so and .a built from
/// the current sources.
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let lib = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/EXE");
    build_lib(lib);
    lib.to_path_buf()
}

/// Builds the library into `lib` with the cargo that runs this test, once per test process.
/// `cargo test` compiles it for the tests but copies the .so and .a to target/<profile>
/// only on `cargo build`, so without this a library change would be tested by the Rust
/// tests and not by what loads the library. A no-op when it is up to date.
fn build_lib(lib: &Path) {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let profile = match lib.file_name().and_then(|p| p.to_str()) {
            Some("debug") => "dev",
            Some(p) => p,
            None => return Err(format!("no profile in {}", lib.display())),
        };
        let target_dir = lib.parent().expect("target/<profile>");
        let mut build = Command::new(&cargo);
        build
            .args(["build", "--lib", "--profile", profile, "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        // Without the variables cargo set for this test: some dependencies' build scripts
        // track them, so seeing them would rebuild those crates here, and the next plain
        // `cargo build` would rebuild them back.
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if n.starts_with("CARGO_PKG_")
                || n.starts_with("CARGO_BIN_EXE_")
                || ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "OUT_DIR"].contains(&&*n)
            {
                build.env_remove(&name);
            }
        }
        let out = build
            .output()
            .map_err(|e| format!("running {}: {e}", cargo.to_string_lossy()))?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!(
                "cargo build --lib --profile {profile} failed:\n{log}"
            ));
        }
        eprint!("{log}");
        Ok(())
    });
    if let Err(e) = built {
        panic!("building libpushpark: {e}");
    }
}
