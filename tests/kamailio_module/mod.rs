//! The Kamailio module the end-to-end tests load: built, and not stale.

use std::fs;
use std::path::Path;
use std::process::Command;

/// The module must be built (scripts/test runs `make -C adapters/kamailio` before the tests;
/// building it from here would nest cargo in cargo) and not older than its C sources, with the
/// library as it is now. The library is compared by content: cargo rewrites an identical one
/// whenever a build with the `mock` feature (the tests') ran in between.
pub fn check() {
    let module = crate::rig::module_path();
    let built = fs::metadata(&module)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "no Kamailio module at {}: {e}; build it with make -C adapters/kamailio",
                module.display()
            )
        });
    if std::env::var_os("PUSHPARK_KAMAILIO_MODULE").is_some() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = ["adapters/kamailio", "adapters/common"]
        .iter()
        .flat_map(|dir| fs::read_dir(root.join(dir)).unwrap())
        .map(|e| e.unwrap().path());
    for source in sources {
        let changed = fs::metadata(&source).and_then(|m| m.modified());
        assert!(
            changed.map_or(true, |t| t <= built),
            "{} is newer than the module: rebuild it with make -C adapters/kamailio",
            source.display()
        );
    }
    let lib = crate::built_lib::lib_dir().join("libpushpark.a");
    let linked = fs::read_to_string(module.with_file_name("libpushpark.a.sha256"));
    assert!(
        linked.is_ok_and(|linked| linked == sha256(&lib)),
        "{} is not the library the module linked: rebuild it with make -C adapters/kamailio",
        lib.display()
    );
}

/// What `sha256sum <file` prints, as the module's Makefile records it.
fn sha256(file: &Path) -> String {
    let out = Command::new("sha256sum")
        .stdin(fs::File::open(file).unwrap())
        .output()
        .expect("running sha256sum");
    assert!(out.status.success(), "sha256sum {}", file.display());
    String::from_utf8(out.stdout).unwrap()
}
