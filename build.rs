fn main() {
    // Versioned SONAME so the packaged library (libpushpark1) and programs linked against it
    // agree on the ABI; bump together with the package name when the C ABI breaks.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpushpark.so.1");
}
