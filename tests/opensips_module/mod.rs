//! The OpenSIPS module the tests load, built from the vendored source.

use crate::built_lib;
use crate::rig::opensips::{module_path, opensips_tree, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds, once per test process, OpenSIPS (adapters/opensips/opensips-source: a no-op when
/// target/ has it) and the module against it with the library the tests built (make, which
/// rebuilds only what changed); returns the module's path.
pub fn build() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let adapter = Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/opensips");
        run(
            Command::new(adapter.join("opensips-source")).arg(opensips_tree()),
            "building OpenSIPS (adapters/opensips/opensips-source)",
        )?;
        let lib = built_lib::lib_dir().join("libpushpark.a");
        run(
            Command::new("make")
                .arg("-s")
                .arg("-C")
                .arg(&adapter)
                .arg(format!("RUSTLIB={}", lib.display())),
            "make -C adapters/opensips",
        )?;
        Ok(module_path())
    });
    built.clone().unwrap_or_else(|e| panic!("{e}"))
}
