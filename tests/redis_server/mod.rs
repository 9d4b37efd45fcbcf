//! A redis-server of a test's or benchmark's own (Debian package `redis-server`, scripts/deps):
//! a free loopback port, no persistence, killed on drop.

use serde_json::Value;
use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STARTS_WITHIN: Duration = Duration::from_secs(30);

/// The server; `restart` brings it back, empty, on the same port.
pub struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again, on the same port, empty) and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server not found: install the Debian package redis-server (scripts/deps)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + STARTS_WITHIN;
        loop {
            let pong = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start: {pong:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if self.child.is_some() {
            self.freeze(false);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (true) or SIGCONT: a server that accepts nothing and answers nothing.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    /// The bindings Redis holds for `aor`: device key → token.
    pub fn bindings(&self, aor: &str) -> HashMap<String, String> {
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("pushpark:aor:{aor}"))
            .query(&mut self.conn())
            .unwrap();
        // Removed ones are tombstones, without a token.
        all.into_iter()
            .filter_map(|(k, v)| {
                let d: Value = serde_json::from_str(&v).unwrap();
                Some((k, d["token"].as_str()?.to_string()))
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
