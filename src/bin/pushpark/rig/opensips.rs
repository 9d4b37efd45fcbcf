//! The OpenSIPS side of the rig (beside rig.rs's Kamailio): OpenSIPS 3.6 as built from the
//! vendored source under target/ (adapters/opensips/opensips-source), in the foreground with
//! the pushpark module and rig/opensips-pushpark.cfg, and MI through mi_fifo.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, Kamailio, Mock, Proc, SOON};

/// The OpenSIPS release the module is built and tested against (the vendored tarball's).
pub const OPENSIPS_VERSION: &str = "3.6.8";

const PUSHPARK_CFG: &str = include_str!("opensips-pushpark.cfg");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// target/opensips/pushpark.so, the module `make -C adapters/opensips` builds.
pub fn module_path() -> PathBuf {
    root().join("target/opensips/pushpark.so")
}

/// target/opensips-3.6.8, the OpenSIPS tree the tests run.
pub fn opensips_tree() -> PathBuf {
    root()
        .join("target")
        .join(format!("opensips-{OPENSIPS_VERSION}"))
}

/// Runs `cmd`; its output as the error when it fails.
pub fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// OpenSIPS in the foreground on one UDP port, with the pushpark module and an MI FIFO.
pub struct OpenSips {
    pub proc: Proc,
    pub port: u16,
    dir: PathBuf,
}

impl OpenSips {
    /// OpenSIPS with the module (`module`), the mock as APNs (rig.rs's engine config) and the engine's
    /// store in `dir`; returns once the engine process answers MI pushpark_stats. `defines`
    /// set the config's placeholders PARK_FORM (default "fork"), PUSH_REGISTERED (default
    /// "no_live_connection"), LOG_LEVEL (default 3; 4 shows the engine's per-push lines),
    /// UDP_WORKERS (2) and PROVISIONAL (the provisional_reply, 110).
    pub fn start_pushpark(
        dir: &Path,
        mock: &Mock,
        park_timeout_ms: u64,
        module: &Path,
        defines: &[(&str, &str)],
    ) -> OpenSips {
        let engine = Kamailio::engine_config(dir, mock, park_timeout_ms);
        let config = dir.join("pushpark.json");
        fs::write(&config, engine.to_string()).expect("write engine config");
        let port = free_port();
        let mpath = opensips_tree().join("modules");
        let mut cfg_text = PUSHPARK_CFG.to_string();
        let defaults = [
            ("PARK_FORM", "fork"),
            ("PUSH_REGISTERED", "no_live_connection"),
            ("LOG_LEVEL", "3"),
            ("UDP_WORKERS", "2"),
            ("PROVISIONAL", "110"),
        ];
        for (name, value) in defines.iter().chain(defaults.iter()) {
            cfg_text = cfg_text.replace(&format!("@{name}@"), value);
        }
        let cfg_text = cfg_text
            .replace("@PORT@", &port.to_string())
            .replace("@MPATH@", &format!("{}/", mpath.display()))
            .replace("@DIR@", &dir.display().to_string())
            .replace("@PUSHPARK_MODULE@", &module.display().to_string())
            .replace("@PUSHPARK_CONFIG@", &config.display().to_string());
        let cfg = dir.join("opensips.cfg");
        fs::write(&cfg, cfg_text).expect("write opensips.cfg");
        let mut cmd = Command::new(opensips_tree().join("opensips"));
        cmd.arg("-F").arg("-f").arg(&cfg).current_dir(dir);
        let proc = Proc::spawn(cmd, "opensips", dir, false);
        let mut o = OpenSips {
            proc,
            port,
            dir: dir.into(),
        };
        o.wait_engine();
        o
    }

    fn wait_engine(&mut self) {
        let deadline = Instant::now() + SOON;
        loop {
            assert!(
                self.proc.running(),
                "opensips exited:\n{}",
                self.proc.log_text()
            );
            match self.mi("pushpark_stats", serde_json::json!({})) {
                Ok(_) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "pushpark_stats: {e}\n{}",
                    self.proc.log_text()
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the location table has a binding of `user` (MI ul_show_contact).
    pub fn bound(&self, user: &str) -> bool {
        let aor = serde_json::json!({"table_name": "location", "aor": user});
        self.mi("ul_show_contact", aor).is_ok()
    }

    /// Takes every binding of `user` out of the location table: the phone is asleep, its app
    /// holds no connection, but the push token stays known to pushpark.
    pub fn forget_binding(&self, user: &str) {
        let aor = serde_json::json!({"table_name": "location", "aor": user});
        self.mi("ul_rm", aor)
            .unwrap_or_else(|e| panic!("ul_rm location {user}: {e}"));
        assert!(!self.bound(user), "{user} still bound");
    }

    /// One MI command through mi_fifo: its result, or its error as text.
    pub fn mi(&self, method: &str, params: serde_json::Value) -> Result<serde_json::Value, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reply_name = format!("mi-reply-{n}");
        let reply = self.dir.join(&reply_name);
        let _ = fs::remove_file(&reply);
        run(Command::new("mkfifo").arg(&reply), "mkfifo")?;
        let request =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": n});
        // The FIFO exists once mi_fifo runs; opening it does not block then (OpenSIPS holds
        // it open for reading).
        let fifo = self.dir.join("opensips.fifo");
        let mut server = fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .map_err(|e| format!("{}: {e}", fifo.display()))?;
        server
            .write_all(format!(":{reply_name}:{request}\n").as_bytes())
            .map_err(|e| format!("writing the MI FIFO: {e}"))?;
        // Opening the reply FIFO blocks until OpenSIPS opens it: read in a thread, bounded.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let path = reply.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let r = fs::File::open(&path).and_then(|mut f| f.read_to_string(&mut text));
            let _ = tx.send(r.map(|_| text));
        });
        let text = rx
            .recv_timeout(SOON)
            .map_err(|_| format!("no MI answer to {method}"))?
            .map_err(|e| format!("reading the MI reply: {e}"))?;
        let _ = fs::remove_file(&reply);
        if std::env::var_os("PUSHPARK_MI_TRACE").is_some() {
            eprintln!("MI {method}: {text}");
        }
        let answer: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("MI answer {text:?}: {e}"))?;
        match answer.get("result") {
            Some(result) => Ok(result.clone()),
            None => Err(answer["error"].to_string()),
        }
    }
}
