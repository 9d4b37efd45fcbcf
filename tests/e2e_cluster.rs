//! End to end, two SBC nodes: two Debian Kamailios with the pushpark module sharing one real
//! redis-server (the engine's `cluster` config), SIPp as callers and apps, one mock APNs.
//! Node b's apps hold TCP connections to b; a call that arrives on a reaches them through b
//! (the Path b's pushpark_register() published).

mod built_lib;
#[allow(dead_code)] // the real clients' tests use the rest
#[path = "e2e/clients.rs"]
mod clients;
mod kamailio_module;
#[allow(dead_code)] // the rig serves the demo too; the tests use part of it
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use clients::{password, Subscribers};
use rig::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

const PARK_TIMEOUT_MS: u64 = 8000;

static SERIAL: Mutex<()> = Mutex::new(());

/// A node: Kamailio with the module, its directory (logs, store, control socket) and the
/// TCP port its apps connect to.
struct Node {
    kamailio: Kamailio,
    tcp: u16,
    dir: WorkDir,
}

impl Node {
    fn start(name: &str, id: &str, mock: &Mock, redis: &Redis) -> Node {
        let dir = WorkDir::new(&format!("{name}-{id}"));
        let tcp = free_port();
        let engine = Kamailio::engine_config(&dir.0, mock, PARK_TIMEOUT_MS);
        let (engine, defines) = Kamailio::cluster_node(engine, redis, id, tcp);
        let kamailio = Kamailio::start_pushpark_with(&dir.0, &engine, &defines);
        let node = Node { kamailio, tcp, dir };
        node.wait_stats("connected to Redis", |s| s["cluster_connected"] == 1);
        node
    }

    /// Node `id` on the module's example config as shipped, `-A WITH_CLUSTER` (the nodes are
    /// on loopback), REGISTERs authenticated against `subscribers`.
    fn start_example(
        name: &str,
        id: &str,
        mock: &Mock,
        redis: &Redis,
        subscribers: &Subscribers,
    ) -> Node {
        let dir = WorkDir::new(&format!("{name}-{id}"));
        let tcp = free_port();
        let engine = Kamailio::engine_config(&dir.0, mock, PARK_TIMEOUT_MS);
        // The rig config's defines are not the example's: only the engine config is used.
        let (engine, _) = Kamailio::cluster_node(engine, redis, id, tcp);
        let defines = [
            ("WITH_CLUSTER", "1".to_string()),
            ("PP_CLUSTER_NET", "\"127.0.0.0/8\"".to_string()),
            ("PP_DB_URL", subscribers.url()),
            // A binding lookup() finds is pushed, not rung, even over a live connection: a
            // relayed call that went through b's own lookup() and pushpark_fork() rather than
            // its cluster branch would push the phone a second time and wait on b.
            ("PP_PUSH_REGISTERED", "\"always\"".to_string()),
        ];
        let kamailio = Kamailio::start_example(&dir.0, &engine, tcp, &defines);
        let node = Node { kamailio, tcp, dir };
        node.wait_stats("connected to Redis", |s| s["cluster_connected"] == 1);
        node
    }

    fn path(&self) -> &Path {
        &self.dir.0
    }

    fn server(&self) -> String {
        self.kamailio.addr()
    }

    fn stats(&self) -> HashMap<String, u64> {
        self.kamailio.rpc_numbers(&["pushpark.stats"])
    }

    fn wait_stats(&self, what: &str, cond: impl Fn(&HashMap<String, u64>) -> bool) {
        wait_for(what, SOON, || {
            let s = self.stats();
            cond(&s).then_some(())
        });
    }

    fn knows(&self, phone: &Phone) -> bool {
        self.kamailio
            .kamcmd(&["pushpark.devices", &phone.aor()])
            .is_ok_and(|d| d.contains(&phone.instance))
    }

    fn log(&self) -> String {
        self.kamailio.proc.log_text()
    }

    /// The app of `phone` waking on b: it connects over TCP, REGISTERs and takes the call
    /// (SIPp matches the call to its REGISTER by Call-ID: both use `cid_str`).
    fn tcp_app(&self, phone: &Phone, cid_str: &str) -> Proc {
        let tcp = format!("127.0.0.1:{}", self.tcp);
        self.app("device_tcp.xml", (&tcp, "t1"), phone, cid_str, &[])
    }

    /// `tcp_app` answering the registrar's challenge with the phone's password.
    fn tcp_app_authenticated(&self, phone: &Phone, cid_str: &str) -> Proc {
        let pw = password(&phone.user);
        let auth = ["-au", &phone.user, "-ap", &pw];
        let tcp = format!("127.0.0.1:{}", self.tcp);
        self.app("device_tcp_auth.xml", (&tcp, "t1"), phone, cid_str, &auth)
    }

    /// The app of `phone` waking on b behind NAT: over UDP, its Contact naming an address
    /// nobody reaches (device_udp_nat.xml), it takes the call where it sent from.
    fn udp_nat_app(&self, phone: &Phone, cid_str: &str) -> Proc {
        let udp = self.server();
        self.app("device_udp_nat.xml", (&udp, "u1"), phone, cid_str, &[])
    }

    /// SIPp running `scenario` as `phone`'s app against `(address, SIPp transport)`.
    fn app(
        &self,
        scenario: &str,
        (to, transport): (&str, &str),
        phone: &Phone,
        cid_str: &str,
        extra: &[&str],
    ) -> Proc {
        let mut cmd = sipp(scenario, phone.ua_port);
        cmd.arg(to)
            .args(["-t", transport, "-s", &phone.user, "-m", "1", "-trace_msg"])
            .args(["-key", "token", &phone.token])
            .args(["-key", "instance", &phone.instance])
            .args(["-cid_str", cid_str])
            .args(extra);
        Proc::spawn(cmd, &format!("{}-app", phone.user), self.path(), false)
    }
}

/// Nodes a and b, their Redis and the mock APNs. Fields drop in order: the nodes first.
struct Cluster {
    a: Node,
    b: Node,
    watch: PushWatch,
    redis: Redis,
    mock: Mock,
    _dir: WorkDir,
}

impl Cluster {
    /// Nodes on the rig's config (kamailio-pushpark.cfg).
    fn new(name: &str) -> Cluster {
        Cluster::with_nodes(name, |id, mock, redis| Node::start(name, id, mock, redis))
    }

    fn with_nodes(name: &str, node: impl Fn(&str, &Mock, &Redis) -> Node) -> Cluster {
        kamailio_module::check();
        let dir = WorkDir::new(name);
        let mock = Mock::start(&dir.0, 0);
        let redis = Redis::start(&dir.0);
        let a = node("a", &mock, &redis);
        let b = node("b", &mock, &redis);
        let watch = mock.watch();
        Cluster {
            a,
            b,
            watch,
            redis,
            mock,
            _dir: dir,
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- a:\n{}\n--- b:\n{}",
            tail(&self.a.log()),
            tail(&self.b.log())
        )
    }
}

/// The last 80 lines.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

/// A phone that registered on `node` while awake and went to sleep: the node's pushpark
/// knows its token (and shares it), no location table has a binding.
fn sleeping_phone(node: &Node, user: &str) -> Phone {
    let phone = Phone::new(user);
    phone.register(node.path(), &node.server(), 3600);
    node.kamailio.forget_binding(&phone.user);
    phone
}

/// A call to `phone` on a: once a pushed it, the app (`app`) registers on b over TCP and
/// takes the call. Returns the app's SIPp.
fn call_on_a_answered_on_b(
    c: &Cluster,
    phone: &Phone,
    cid_str: &str,
    app: fn(&Node, &Phone, &str) -> Proc,
) -> Proc {
    let (run, mut app) = std::thread::scope(|s| {
        let caller = s.spawn(|| {
            let extra = ["-m", "1", "-cid_str", cid_str];
            call(c.a.path(), &c.a.server(), "caller.xml", &phone.user, &extra)
        });
        c.watch.expect_push(&phone.token, SOON);
        let app = app(&c.b, phone, cid_str);
        (caller.join().unwrap(), app)
    });
    assert!(run.status.success(), "caller: {}\n{}", run.log, c.logs());
    assert!(
        app.wait(SOON).success(),
        "the app on b did not take the call:\n{}\n{}",
        app.log_text(),
        c.logs()
    );
    app
}

/// A phone of `user` that b learnt and a knows through Redis; a call to it on a, which
/// `app` takes on b, relayed through b once.
fn call_relayed_through_b(c: &Cluster, user: &str, app: fn(&Node, &Phone, &str) -> Proc) {
    let phone = sleeping_phone(&c.b, user);
    wait_for("a knows b's phone", SOON, || {
        c.a.knows(&phone).then_some(())
    });
    let cid_str = format!("{}-%u@pushpark", phone.user);
    call_on_a_answered_on_b(c, &phone, &cid_str, app);
    let relayed = format!("E2E-RELAYED user={}", phone.user);
    assert_eq!(count(&c.b.log(), &relayed), 1, "{}", c.logs());
}

/// A call that arrives on a for a phone b learnt: a pushes it (the binding came through
/// Redis), the app wakes on b's TCP port and registers there, a relays the call through b
/// (the Path b published), b sends it over the app's connection, and the call connects.
/// Nobody pushes twice: b parked nothing and pushed nothing.
#[test]
fn call_on_a_connects_through_b_where_the_woken_app_registers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::new("cl-relay");
    call_relayed_through_b(&c, "rita", Node::tcp_app);
    assert_eq!(count(&c.a.log(), "E2E-PARKED"), 1, "{}", c.logs());
    let (a, b) = (c.a.stats(), c.b.stats());
    assert_eq!((a["pushes_sent"], b["pushes_sent"]), (1, 0), "{a:?}\n{b:?}");
    assert_eq!(a["resumed"], 1, "{a:?}");
    assert!(b["cluster_wakes_sent"] >= 1 && a["cluster_wakes_received"] >= 1);
    assert!(c.watch.drain().is_empty(), "pushed twice");
}

/// The app wakes behind NAT and registers on b over UDP, its Contact naming an address only
/// its own network reaches: a relays the call through b, whose Path carries the address the
/// REGISTER came from (`received`), and b sends the call there (before, over UDP, to the
/// Contact, where the call was lost).
#[test]
fn a_udp_app_behind_nat_woken_on_b_takes_the_call_from_a_at_its_nat_address() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::new("cl-nat");
    call_relayed_through_b(&c, "nadia", Node::udp_nat_app);
    assert_eq!(c.a.stats()["resumed"], 1);
}

/// The same call on the module's example config as shipped (adapters/kamailio/examples/
/// kamailio.cfg) with `-A WITH_CLUSTER`, as docs/configuration.md sets up two nodes: REGISTERs
/// authenticated (auth_db on SQLite), a's pushpark_fork() adds the branch through the Path b
/// published, b's cluster branch (loose_route_preloaded() for a node's address) sends it over
/// the app's connection. The INVITE the app takes passed both nodes; b pushed and parked
/// nothing (with push_registered "always", a relay that missed the cluster branch would).
#[test]
fn example_config_with_cluster_call_on_a_connects_through_b() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = WorkDir::new("cl-example-db");
    let subscribers = Subscribers::create(&db.0);
    let c = Cluster::with_nodes("cl-example", |id, mock, redis| {
        Node::start_example("cl-example", id, mock, redis, &subscribers)
    });
    let phone = Phone::new("erik");
    subscribers.add(&phone.user);
    register_authenticated(&c.b, &phone);
    c.b.kamailio.forget_binding(&phone.user);
    wait_for("a knows b's phone", SOON, || {
        c.a.knows(&phone).then_some(())
    });

    let app = call_on_a_answered_on_b(
        &c,
        &phone,
        "cl-example-%u@pushpark",
        Node::tcp_app_authenticated,
    );
    let messages = sipp_messages(c.b.path(), "device_tcp_auth.xml", &app);
    let invite = messages
        .split("INVITE sip:")
        .nth(1)
        .unwrap_or_else(|| panic!("the app got no INVITE:\n{messages}"));
    let invite = &invite[..invite.find("\n\n").unwrap_or(invite.len())];
    // The caller's Via, a's, and b's on top.
    let vias: Vec<&str> = invite
        .lines()
        .filter(|l| l.trim_start().starts_with("Via:"))
        .collect();
    let b_via = format!("SIP/2.0/TCP 127.0.0.1:{}", c.b.tcp);
    assert!(
        vias.len() == 3 && vias[0].contains(&b_via),
        "not relayed by a through b:\n{invite}"
    );
    let (a, b) = (c.a.stats(), c.b.stats());
    assert_eq!((a["pushes_sent"], b["pushes_sent"]), (1, 0), "{a:?}\n{b:?}");
    assert_eq!((a["resumed"], b["parked_total"]), (1, 0), "{a:?}\n{b:?}");
    assert!(b["cluster_wakes_sent"] >= 1 && a["cluster_wakes_received"] >= 1);
    assert!(c.watch.drain().is_empty(), "pushed twice");
}

/// The phone registers on `node` with its push parameters, answering the challenge with its
/// password (register_auth.xml).
fn register_authenticated(node: &Node, phone: &Phone) {
    let contact = format!(
        "<sip:{}@127.0.0.1:{};pn-provider=apns;pn-prid={};pn-param={}>;+sip.instance=\"<urn:uuid:{}>\"",
        phone.user, phone.ua_port, phone.token, APNS_PN_PARAM, phone.instance
    );
    let pw = password(&phone.user);
    let mut cmd = sipp("register_auth.xml", free_port());
    cmd.arg(node.server())
        .args(["-s", &phone.user, "-m", "1", "-au", &phone.user, "-ap", &pw])
        .args(["-key", "contact", &contact, "-key", "expires", "3600"]);
    let name = format!("register-{}", phone.user);
    let mut p = Proc::spawn(cmd, &name, node.path(), false);
    assert!(
        p.wait(SOON).success(),
        "authenticated REGISTER of {} failed:\n{}",
        phone.user,
        p.log_text()
    );
}

/// A phone that unREGISTERs on a is gone on b too: a call arriving on b pushes nobody.
#[test]
fn an_unregister_on_a_stops_pushes_from_b() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::new("cl-unreg");
    let phone = sleeping_phone(&c.a, "ulla");
    wait_for("b knows a's phone", SOON, || {
        c.b.knows(&phone).then_some(())
    });
    phone.register(c.a.path(), &c.a.server(), 0);
    wait_for("b forgot the phone", SOON, || {
        (!c.b.knows(&phone)).then_some(())
    });

    let run = call(
        c.b.path(),
        &c.b.server(),
        "caller_rejected.xml",
        &phone.user,
        &["-m", "1"],
    );
    assert!(run.status.success(), "caller: {}\n{}", run.log, c.logs());
    assert!(
        c.watch.next(Duration::from_secs(1)).is_none(),
        "pushed after the logout"
    );
    assert_eq!(count(&c.b.log(), "E2E-NOT-PARKED(-2)"), 1, "{}", c.logs());
}

/// Redis dies: each node keeps parking and waking calls with what it knows, no SIP worker
/// waits for it (calls and REGISTERs are answered at once), the failures are counted. When
/// Redis returns, empty, the bindings learnt meanwhile are written through again and reach
/// the other node.
#[test]
fn without_redis_nodes_work_alone_and_converge_when_it_returns() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("cl-redis");
    c.redis.kill();
    c.b.wait_stats("b saw Redis go", |s| s["cluster_connected"] == 0);

    let phone = sleeping_phone(&c.b, "rosa");
    let mut ua = device_ua(c.b.path(), "device_answer.xml", phone.ua_port, 1, "rosa-ua");
    let _sim = device_sim(c.b.path(), &c.mock, &c.b.server(), &[&phone], 0);
    let run = call(
        c.b.path(),
        &c.b.server(),
        "caller.xml",
        &phone.user,
        &["-m", "1"],
    );
    assert!(run.status.success(), "caller: {}\n{}", run.log, c.logs());
    assert!(ua.wait(SOON).success(), "the phone did not take the call");
    assert!(!c.a.knows(&phone), "a learnt it without Redis");
    assert!(c.b.stats()["cluster_failures"] > 0);

    c.redis.restart();
    c.b.wait_stats("b reconnected", |s| s["cluster_connected"] == 1);
    wait_for("a learnt b's phone", SOON, || {
        c.a.knows(&phone).then_some(())
    });
}

/// A node that stops answers its calls still waiting for a device (503, so that an
/// upstream proxy tries another node) before it exits, rather than leaving the caller to
/// retransmit to it. Started again, it reads the shared bindings, also one the other node
/// learnt meanwhile.
#[test]
fn a_stopping_node_answers_its_waiting_calls_and_reads_the_bindings_when_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("cl-stop");
    let phone = sleeping_phone(&c.a, "sven");
    let (dir, server) = (c.a.path().to_path_buf(), c.a.server());
    let run = std::thread::scope(|s| {
        let user = &phone.user;
        let caller = s.spawn(move || call(&dir, &server, "caller.xml", user, &["-m", "1"]));
        c.watch.expect_push(&phone.token, SOON);
        c.a.kamailio.proc.stop();
        caller.join().unwrap()
    });
    assert!(
        run.received(503),
        "no 503 from the stopping node:\n{}",
        run.messages
    );
    assert!(
        c.a.log()
            .contains("1 call(s) waiting for a device answered 503"),
        "{}",
        c.logs()
    );

    let other = sleeping_phone(&c.b, "stig");
    c.a.kamailio.restart();
    c.a.kamailio.wait_engine();
    wait_for("a read b's binding", SOON, || {
        c.a.knows(&other).then_some(())
    });
    assert!(c.a.knows(&phone), "a lost its own binding");
}

/// Redis is killed while calls are being parked and woken on a, and restarted, empty, a few
/// seconds later. Every call still ends once, answered (no SIP worker waits for Redis, and a
/// wake on the node that parked the call needs no Redis); a's engine counts the failed Redis
/// work; a phone a learnt while Redis was gone reaches b once it is back.
#[test]
fn redis_killed_under_load_and_restarted_every_call_ends_once_and_bindings_converge() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("cl-midload");
    let phones: Vec<Phone> = (0..4)
        .map(|i| sleeping_phone(&c.a, &format!("m{i}x")))
        .collect();
    let _uas: Vec<Proc> = phones
        .iter()
        .map(|p| {
            let name = format!("ua-{}", p.user);
            device_ua(c.a.path(), "device_answer.xml", p.ua_port, 1_000_000, &name)
        })
        .collect();
    let _sim = device_sim(
        c.a.path(),
        &c.mock,
        &c.a.server(),
        &phones.iter().collect::<Vec<_>>(),
        0,
    );
    let before = c.a.stats();

    // Callers place a call to every phone, round after round, until told to stop.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (placed, answered, late) = std::thread::scope(|s| {
        let callers = s.spawn(|| {
            let (mut placed, mut answered) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let round: Vec<_> = phones
                    .iter()
                    .map(|p| {
                        s.spawn(|| {
                            call(
                                c.a.path(),
                                &c.a.server(),
                                "caller.xml",
                                &p.user,
                                &["-m", "1"],
                            )
                            .status
                            .success()
                        })
                    })
                    .collect();
                for r in round {
                    placed += 1;
                    answered += usize::from(r.join().unwrap());
                }
            }
            (placed, answered)
        });
        std::thread::sleep(Duration::from_secs(2));
        c.redis.kill();
        c.a.wait_stats("a saw Redis go", |s| s["cluster_connected"] == 0);
        let late = sleeping_phone(&c.a, "mlate");
        std::thread::sleep(Duration::from_secs(2));
        c.redis.restart();
        c.a.wait_stats("a reconnected", |s| s["cluster_connected"] == 1);
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (placed, answered) = callers.join().unwrap();
        (placed, answered, late)
    });

    assert!(placed >= 8, "only {placed} calls placed");
    assert_eq!(answered, placed, "calls not answered\n{}", c.logs());
    let a = c.a.stats();
    let parked = a["parked_total"] - before["parked_total"];
    let resumed = a["resumed"] - before["resumed"];
    assert_eq!((parked, resumed), (placed as u64, placed as u64), "{a:?}");
    assert_eq!(a["parked_now"], 0, "{a:?}");
    assert!(a["cluster_failures"] > before["cluster_failures"], "{a:?}");
    wait_for("b learnt the phone a learnt without Redis", SOON, || {
        c.b.knows(&late).then_some(())
    });
}
