//! `pushpark demo --nodes 2`: two SBC nodes (Kamailio with pushpark.so) sharing one Redis. The
//! iPhone registered on node B and went to sleep; a call arrives on node A, which knows the
//! iPhone through Redis and pushes it; the app wakes and registers on B over TCP; A relays the
//! call through B (the Path B published with the wake), B sends it over the app's connection,
//! and the call connects. Prints both nodes' timeline as it happens.

use crate::demo_cmd::{push_outcome, step, which, LogTail, INTERRUPTED};
use crate::rig::{self, free_port, module_path, sipp, Kamailio, Mock, Phone, Proc, Redis};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const PARK_TIMEOUT_MS: u64 = 20_000;

/// A node: its Kamailio and the TCP port its apps connect to.
struct Node {
    name: &'static str,
    kamailio: Kamailio,
    tcp: u16,
}

impl Node {
    fn start(name: &'static str, dir: &std::path::Path, mock: &Mock, redis: &Redis) -> Node {
        let tcp = free_port();
        let engine = Kamailio::engine_config(dir, mock, PARK_TIMEOUT_MS);
        let (engine, mut defines) = Kamailio::cluster_node(engine, redis, name, tcp);
        defines.push(("DEBUG_LEVEL", "3".to_string()));
        let kamailio = Kamailio::start_pushpark_with(dir, &engine, &defines);
        Node {
            name,
            kamailio,
            tcp,
        }
    }
}

pub fn run() -> Result<ExitCode, String> {
    for tool in ["kamailio", "sipp", "kamcmd", "redis-server"] {
        if which(tool).is_none() {
            return Err(format!(
                "{tool} is not installed: run scripts/deps (it installs it)"
            ));
        }
    }
    if !module_path().exists() {
        return Err(format!(
            "the Kamailio module is not built ({}): run make -C adapters/kamailio",
            module_path().display()
        ));
    }
    // Each node its own directory (logs, store, control socket); the mock's and Redis's in A's.
    let (work_a, work_b) = (rig::WorkDir::new("demo-a"), rig::WorkDir::new("demo-b"));
    let (dir_a, dir_b) = (work_a.0.clone(), work_b.0.clone());

    println!("pushpark demo: two SBC nodes; the iPhone wakes on B, the call came in on A\n");
    let mock = Mock::start(&dir_a, 0);
    step(&format!("mock APNs on {}", mock.addr));
    let redis = Redis::start(&dir_a);
    step(&format!("redis-server on 127.0.0.1:{}", redis.port));
    let a = Node::start("a", &dir_a, &mock, &redis);
    let b = Node::start("b", &dir_b, &mock, &redis);
    for n in [&a, &b] {
        step(&format!(
            "node {}: Kamailio with pushpark.so on udp:{} and tcp:127.0.0.1:{}, cluster node_id \"{}\"",
            n.name.to_uppercase(),
            n.kamailio.addr(),
            n.tcp,
            n.name
        ));
    }

    let phone = Phone::new("alice");
    phone.register(&dir_b, &b.kamailio.addr(), 3600);
    b.kamailio.forget_binding(&phone.user);
    step(&format!(
        "iPhone of {} registered on B while awake, then slept: B's pushpark knows its token",
        phone.user
    ));
    rig::wait_for("A knows the iPhone through Redis", rig::SOON, || {
        let devices = a.kamailio.kamcmd(&["pushpark.devices", &phone.aor()]);
        devices
            .is_ok_and(|d| d.contains(&phone.instance))
            .then_some(())
    });
    step("A learnt the binding through Redis");
    let watch = mock.watch();

    println!(
        "\ncalling sip:{}@{} (node A) …\n",
        phone.user,
        a.kamailio.addr()
    );
    let cid_str = "demo2-%u@pushpark";
    let mut cmd = sipp("caller.xml", free_port());
    cmd.arg(a.kamailio.addr())
        .args(["-s", &phone.user, "-m", "1", "-d", "1000"])
        .args(["-cid_str", cid_str]);
    let mut caller = Proc::spawn(cmd, "caller", &dir_a, false);
    let mut logs =
        [("A", &a), ("B", &b)].map(|(who, n)| (who, LogTail::open(&n.kamailio.proc.log)));
    let mut app: Option<Proc> = None;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_millis(PARK_TIMEOUT_MS + 20_000);
    // Steps seen (rank, node, text, ms), shown once both logs were quiet for QUIET: the two
    // nodes' lines of one moment reach their files a few ms apart, and are shown in the
    // order they must have happened.
    const QUIET: Duration = Duration::from_millis(30);
    let mut seen: Vec<(u8, &str, &str, u128)> = Vec::new();
    let mut last_seen = t0;
    let status = loop {
        let ms = t0.elapsed().as_millis();
        let before = seen.len();
        for (who, log) in &mut logs {
            for line in log.new_lines() {
                if let Some((rank, s)) = step_of(&line, who) {
                    seen.push((rank, who, s, ms));
                }
            }
        }
        let pushed = app.is_none() && watch.next(Duration::ZERO).is_some();
        if pushed {
            let s = "iPhone got the push: the app wakes and connects to B over TCP";
            seen.push((3, " ", s, ms));
        }
        if seen.len() > before {
            last_seen = Instant::now();
        } else if last_seen.elapsed() >= QUIET {
            seen.sort_by_key(|(rank, ..)| *rank);
            for (_, who, s, ms) in seen.drain(..) {
                println!("  +{ms:>5} ms  {who}  {s}");
            }
        }
        if pushed {
            let mut cmd = sipp("device_tcp.xml", phone.ua_port);
            cmd.arg(format!("127.0.0.1:{}", b.tcp))
                .args(["-t", "t1", "-s", &phone.user, "-m", "1"])
                .args(["-key", "token", &phone.token])
                .args(["-key", "instance", &phone.instance])
                .args(["-cid_str", cid_str]);
            app = Some(Proc::spawn(cmd, "iphone-app", &dir_b, false));
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            println!("\ninterrupted: stopping the demo's processes");
            return Ok(ExitCode::from(130));
        }
        if !caller.running() && seen.is_empty() && last_seen.elapsed() >= QUIET {
            break caller.wait(Duration::ZERO);
        }
        if Instant::now() > deadline {
            drop((caller, app, a, b, redis, mock));
            println!("\nthe call did not end in time");
            return Ok(keep_logs(work_a, work_b));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let answered = app.as_mut().is_some_and(|p| p.wait(rig::SOON).success());
    println!();
    if status.success() && answered {
        println!("call connected across nodes: A parked and pushed → the iPhone registered on B → A relayed through B → 200 OK → BYE");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}", caller.log_text());
        drop((caller, app, a, b, redis, mock));
        println!("the call did not complete");
        Ok(keep_logs(work_a, work_b))
    }
}

fn keep_logs(a: rig::WorkDir, b: rig::WorkDir) -> ExitCode {
    println!(
        "logs are in {} and {}",
        a.keep().display(),
        b.keep().display()
    );
    ExitCode::FAILURE
}

/// A node's log line (the rig config's E2E-* markers, the engine's push outcome) in the
/// operator's words, with its place in the causal order (replies pass B before A, the BYE A
/// before B).
fn step_of(line: &str, node: &str) -> Option<(u8, &'static str)> {
    let on_b = u8::from(node == "B");
    let step = if line.contains("E2E-PARKED") {
        (
            1,
            "INVITE parked: nobody to ring here, pushpark pushes the iPhone it learnt from Redis",
        )
    } else if push_outcome(line) == Some("delivered") {
        (2, "APNs accepted the push")
    } else if line.contains("E2E-REGISTERED") {
        (
            4,
            "iPhone registered over TCP; pushpark publishes the wake with the Path to it",
        )
    } else if line.contains("E2E-RESUMED") {
        (
            5,
            "the wake arrived: a branch to the iPhone through B's Path",
        )
    } else if line.contains("E2E-RELAYED") {
        (
            6,
            "relayed INVITE from A: sent over the iPhone's TCP connection",
        )
    } else if line.contains("E2E-REPLY 180") {
        (8 - on_b, "180 Ringing")
    } else if line.contains("E2E-REPLY 200") {
        (10 - on_b, "200 OK: the iPhone answered")
    } else if line.contains("E2E-BYE") {
        (11 + on_b, "BYE: the caller hangs up")
    } else {
        return None;
    };
    Some(step)
}
