//! Generates Rust declarations from the hand-written C header, so the Rust side of the C ABI
//! is checked against the contract the host compiles with (see `src/ffi/sys.rs`).

use std::{env, path::PathBuf};

fn main() {
    // Versioned SONAME so the packaged library (libpushpark1) and programs linked against it
    // agree on the ABI; bump together with the package name when the C ABI breaks.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpushpark.so.1");

    let header = "c-include/pushpark.h";
    println!("cargo:rerun-if-changed={header}");
    let bindings = bindgen::Builder::default()
        .header(header)
        .allowlist_item("(pushpark|PUSHPARK)_.*")
        .prepend_enum_name(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on {header}: {e}"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    bindings
        .write_to_file(out.join("pushpark_sys.rs"))
        .expect("writing the bindings to OUT_DIR");
}
