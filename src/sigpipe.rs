//! SIGPIPE in the library's own threads.
//!
//! A write to a socket whose peer has closed raises SIGPIPE unless the write says
//! MSG_NOSIGNAL, and the TLS stack's vectored writes (`writev`) cannot. A host that leaves
//! SIGPIPE at its default would die of an APNs server closing a connection, so every thread
//! that writes to the network blocks it: the write then fails with EPIPE, which the
//! connection handles as a closed connection.

/// Blocks SIGPIPE for the calling thread (threads it starts inherit the mask).
pub(crate) fn block() {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only changes
    // this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
