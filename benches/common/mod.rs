//! What the benchmarks share.

use std::time::Duration;

/// p50 and p99 of the samples, and how many.
pub fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    format!("p50 {:?}  p99 {:?}  (n={})", at(0.5), at(0.99), v.len())
}

/// Blocks until `fd` is readable, at most 10 s.
pub fn wait_readable(fd: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 10_000) };
}
