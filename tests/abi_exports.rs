//! Every function pushpark.h declares is exported by libpushpark.so and checked against its
//! Rust definition at compile time (listed in src/ffi/sys.rs's `same_signature!`), and the
//! library exports no other symbol (nothing a host could bind to by accident or clash with).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

mod built_lib;

fn without_comments(mut text: &str) -> String {
    let mut out = String::new();
    while let Some(start) = text.find("/*") {
        out.push_str(&text[..start]);
        let end = text[start..].find("*/").expect("unterminated comment") + start + 2;
        text = &text[end..];
    }
    out + text
}

/// Names `pushpark_...` immediately followed by `(`: the declared functions.
fn called_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("pushpark_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if tail[len..].starts_with('(') {
            names.insert(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    names
}

fn header_functions() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("c-include/pushpark.h")).unwrap();
    let names = called_names(&without_comments(&header));
    assert!(
        names.len() > 20,
        "too few functions found in the header: {names:?}"
    );
    names
}

#[test]
fn the_library_exports_exactly_the_header_functions() {
    let lib = built_lib::lib_dir().join("libpushpark.so");
    let out = Command::new("nm")
        .args(["-D", "--defined-only", "--format=posix"])
        .arg(&lib)
        .output()
        .expect("running nm");
    assert!(out.status.success(), "nm {} failed", lib.display());
    let exported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert_eq!(exported, header_functions());
}

#[test]
fn every_header_function_has_its_signature_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sys = std::fs::read_to_string(root.join("src/ffi/sys.rs")).unwrap();
    let list = sys
        .split("same_signature!(")
        .nth(1)
        .and_then(|s| s.split(");").next())
        .expect("the same_signature! invocation in src/ffi/sys.rs");
    let checked: BTreeSet<String> = list
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(checked, header_functions());
}
