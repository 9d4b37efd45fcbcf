//! pushpark.h compiles on its own, warning-free, for the C and C++ standards hosts use.

use std::path::Path;
use std::process::Command;

fn compiles(compiler: &str, args: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("only_the_header.c");
    std::fs::write(
        &source,
        "#include \"pushpark.h\"\nint main(void) { return pushpark_version() == 0; }\n",
    )
    .unwrap();
    let status = Command::new(compiler)
        .args(args)
        .args([
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(root.join("c-include"))
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(status.success(), "{compiler} {args:?} rejects pushpark.h");
}

#[test]
fn c99() {
    compiles("cc", &["-std=c99"]);
}

#[test]
fn c11() {
    compiles("cc", &["-std=c11"]);
}

#[test]
fn cxx11() {
    compiles("c++", &["-x", "c++", "-std=c++11"]);
}
