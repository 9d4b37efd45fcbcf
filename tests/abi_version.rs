//! The header's version macros must match Cargo.toml, and the runtime version must too: a
//! release that bumps one without the other fails here.

use std::ffi::CStr;

fn header_define(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("#define ")?.trim_start();
            let value = rest.strip_prefix(name)?;
            value
                .starts_with(char::is_whitespace)
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("pushpark.h defines no {name}"))
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/c-include/pushpark.h"))
            .expect("reading c-include/pushpark.h");
    assert_eq!(
        header_define(&header, "PUSHPARK_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        header_define(&header, "PUSHPARK_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        header_define(&header, "PUSHPARK_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    assert_eq!(
        header_define(&header, "PUSHPARK_VERSION_STRING"),
        format!("\"{}\"", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn runtime_version_matches_cargo_toml() {
    let v = unsafe { CStr::from_ptr(pushpark::ffi::pushpark_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
