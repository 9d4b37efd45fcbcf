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

#[cfg(test)]
mod tests {
    use crate::mock::{MockApns, MockConfig};
    use crate::{ApnsClient, Auth, ClientConfig, Endpoint};

    /// SIGPIPE at its default, as a C host may leave it: in a child process, a blocked
    /// SIGPIPE turns a write to a pipe nobody reads into EPIPE instead of death.
    #[test]
    fn a_write_to_a_closed_pipe_is_epipe_not_death() {
        // SAFETY: the child only makes async-signal-safe calls and leaves with _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork");
            if pid == 0 {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                super::block();
                let mut fds = [0; 2];
                libc::pipe(fds.as_mut_ptr());
                libc::close(fds[0]);
                let byte = [0u8; 1];
                let iov = libc::iovec {
                    iov_base: byte.as_ptr() as *mut _,
                    iov_len: 1,
                };
                let n = libc::writev(fds[1], &iov, 1);
                let epipe = n == -1 && *libc::__errno_location() == libc::EPIPE;
                libc::_exit(if epipe { 0 } else { 1 });
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the writer died or saw no EPIPE (status {status:#x})"
            );
        }
    }

    /// Every thread the APNs client runs (`pushpark-apns`) has SIGPIPE in its blocked set
    /// (SigBlk in /proc), once it has connected.
    #[test]
    fn the_apns_client_threads_block_sigpipe() {
        let dir = tempfile::tempdir().unwrap();
        let mock = MockApns::start(MockConfig::new(dir.path())).unwrap();
        let endpoint = Endpoint::Custom {
            host: "127.0.0.1".into(),
            port: mock.addr().port(),
        };
        let auth = Auth::Token {
            key_pem: std::fs::read_to_string(mock.key_path()).unwrap(),
            key_id: crate::mock::KEY_ID.into(),
            team_id: crate::mock::TEAM_ID.into(),
        };
        let mut cfg = ClientConfig::new(endpoint, auth);
        cfg.ca_file = Some(mock.ca_pem_path());
        cfg.worker_threads = 2;
        let client = ApnsClient::new(cfg).unwrap();
        client
            .wait_connected(std::time::Duration::from_secs(30))
            .expect("connected to the mock");
        let mut seen = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if name.trim() != "pushpark-apns" {
                continue;
            }
            let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
            let Some(mask) = status.lines().find_map(|l| l.strip_prefix("SigBlk:")) else {
                continue;
            };
            let mask = u64::from_str_radix(mask.trim(), 16).unwrap();
            assert_ne!(
                mask & (1 << (libc::SIGPIPE - 1)),
                0,
                "{task:?}: SigBlk {mask:x}"
            );
            seen += 1;
        }
        assert!(seen >= 2, "{seen} pushpark-apns threads");
        drop(client);
    }
}
