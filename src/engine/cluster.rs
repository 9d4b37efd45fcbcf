//! Several nodes sharing device bindings and wake-ups through Redis (config
//! `cluster`; without it nothing here runs).
//!
//! One thread of its own, with a current-thread tokio runtime, talks to Redis.
//! The host's threads and the engine thread never wait for it: they hand it
//! jobs with `try_send` on a bounded channel (full: counted in
//! `cluster_failures` and dropped; a dropped binding change is noted, and the
//! cluster thread writes that binding from the local store when it catches up).
//! The local store stays the cache every lookup reads, so a node keeps working
//! while Redis is away.
//!
//! It reconnects by itself (`Node::run`), not through the redis crate's
//! ConnectionManager: each new connection must be followed by the load and the
//! write-back of what Redis lacks, which a manager reconnecting unseen would skip.
//!
//! Push claims have a queue of their own, read by their own task, and each is
//! asked in a task on the connection the node has at the time, within its
//! budget (CLAIM_TIMEOUT from when it was asked, then: push): a push never
//! waits behind binding writes, nor behind the load after a (re)connection.
//!
//! In Redis, with `p` the key prefix:
//! - `{p}aor:{aor}`: a hash, field = device key, value = the DeviceInfo JSON, or
//!   `{"removed_unix":...}` for a removed binding (a tombstone, so that a node cut off
//!   at the time does not write it back); the key expires `store.max_age_days` after
//!   its last write, and fields older than that are ignored (tombstones deleted) when
//!   loaded.
//! - `{p}bindings`: pub/sub; each binding change made on a node (BindingMsg).
//! - `{p}wake`: pub/sub; each REGISTER with expires > 0 (WakeMsg).
//! - `{p}push:{token}`: who pushed that token last (`SET NX PX push.min_interval_ms`).
//!
//! Wakes go over pub/sub, not streams: a wake is of use only while a call is
//! parked (at most `park.timeout_ms`), and one missed while a node was
//! disconnected must not be replayed later, when it would resume a call the
//! device did not register for. Binding changes missed that way are caught up
//! by the load every (re)connection makes.

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, AsyncConnectionConfig, Client, Msg, RedisResult};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

use super::config::ClusterConfig;
use super::events::Relay;
use super::stats::{add, inc};
use super::store::{Change, DeviceInfo, Sink};
use super::{unix_now, EngineError, Shared};

/// Jobs waiting for the cluster thread; beyond this they are dropped and counted.
const JOB_QUEUE: usize = 65_536;
/// How long a push waits for its claim before it goes out anyway.
const CLAIM_TIMEOUT: Duration = Duration::from_millis(200);
/// Connecting, and any other command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Keys a SCAN step asks for.
const SCAN_COUNT: usize = 500;

/// The cluster's counters (in Stats as `cluster_*`).
#[derive(Default)]
pub(crate) struct ClusterCounters {
    pub connected: AtomicU64,
    pub wakes_sent: AtomicU64,
    pub wakes_received: AtomicU64,
    pub bindings_synced: AtomicU64,
    pub failures: AtomicU64,
    pub wakes_dropped: AtomicU64,
}

/// Bindings (AOR, key) changed here that Redis has not got yet, with when (unix
/// seconds): written as the local store has them.
type Dirty = HashMap<(String, String), u64>;

pub(crate) enum Job {
    Upsert {
        aor: String,
        device: DeviceInfo,
    },
    Remove {
        aor: String,
        keys: Vec<String>,
        /// When (unix seconds): the removal's tombstone in Redis.
        at: u64,
    },
    Wake(WakeMsg),
}

impl Job {
    /// The bindings a job changes (none for a wake), for `Dirty`.
    fn bindings(self) -> Vec<((String, String), u64)> {
        match self {
            Job::Upsert { aor, device } => vec![((aor, device.key), device.last_register_unix)],
            Job::Remove { aor, keys, at } => {
                keys.into_iter().map(|k| ((aor.clone(), k), at)).collect()
            }
            Job::Wake(_) => Vec::new(),
        }
    }
}

/// May this node push `token`? `reply(true)`: push (also when Redis cannot say
/// within CLAIM_TIMEOUT of `asked`).
pub(crate) struct Claim {
    token: String,
    asked: Instant,
    reply: Box<dyn FnOnce(bool) + Send>,
}

/// What the cluster thread reads: binding changes and wakes in order; claims apart.
pub(crate) struct Lanes {
    jobs: mpsc::Receiver<Job>,
    claims: mpsc::Receiver<Claim>,
}

/// A binding change, as published on `{prefix}bindings`.
#[derive(Debug, Serialize, Deserialize)]
struct BindingMsg {
    node: String,
    aor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upsert: Option<DeviceInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    remove: Vec<String>,
    /// When (unix seconds) `remove` was made: a node whose copy is newer keeps it.
    #[serde(default)]
    removed_unix: u64,
}

/// A field of `{prefix}aor:{aor}`: a binding, or when it was removed.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Binding(DeviceInfo),
    Removed { removed_unix: u64 },
}

/// A REGISTER with expires > 0 on some node, as published on `{prefix}wake`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WakeMsg {
    pub node: String,
    pub aor: String,
    pub device_key: String,
    /// The Contact as the registering node's engine has it.
    pub contact: String,
    /// The REGISTER's Path, through which the other nodes relay the device's calls
    /// (None: through their own location table).
    #[serde(default)]
    pub path: Option<String>,
}

/// The engine's side: hands jobs to the cluster thread, never waiting.
pub(crate) struct Link {
    tx: mpsc::Sender<Job>,
    claims: mpsc::Sender<Claim>,
    /// Binding changes the full queue dropped, for the cluster thread to write.
    unsent: Arc<Mutex<Dirty>>,
    node_id: String,
    pub(crate) counters: Arc<ClusterCounters>,
}

/// Hands `job` over without waiting; gives it back (counted as a failure) when the
/// queue is full or the thread gone.
fn hand_over<T>(tx: &mpsc::Sender<T>, counters: &ClusterCounters, job: T) -> Option<T> {
    let e = tx.try_send(job).err()?;
    inc(&counters.failures);
    match e {
        mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => Some(j),
    }
}

impl Link {
    /// Tells the other nodes a device registered (they wake their calls for it).
    pub(crate) fn wake(&self, aor: &str, device_key: &str, contact: &str, path: Option<&str>) {
        let msg = WakeMsg {
            node: self.node_id.clone(),
            aor: aor.to_string(),
            device_key: device_key.to_string(),
            contact: contact.to_string(),
            path: path.map(String::from),
        };
        if hand_over(&self.tx, &self.counters, Job::Wake(msg)).is_some() {
            inc(&self.counters.wakes_dropped);
        }
    }

    /// Asks whether this node may push `token` now; `reply` is called on the cluster
    /// thread, or at once (with true) when the job cannot be handed over.
    pub(crate) fn claim(&self, token: &str, reply: Box<dyn FnOnce(bool) + Send>) {
        let claim = Claim {
            token: token.to_string(),
            asked: Instant::now(),
            reply,
        };
        if let Some(c) = hand_over(&self.claims, &self.counters, claim) {
            (c.reply)(true);
        }
    }

    /// The store's write-through: every change made on this node becomes a job.
    pub(crate) fn sink(&self) -> Sink {
        let (tx, counters) = (self.tx.clone(), self.counters.clone());
        let unsent = self.unsent.clone();
        Box::new(move |aor: &str, change: Change| {
            let job = match change {
                Change::Upsert(d) => Job::Upsert {
                    aor: aor.to_string(),
                    device: d.clone(),
                },
                Change::Remove(keys) => Job::Remove {
                    aor: aor.to_string(),
                    keys: keys.to_vec(),
                    at: unix_now(),
                },
            };
            if let Some(job) = hand_over(&tx, &counters, job) {
                unsent.lock().extend(job.bindings());
            }
        })
    }
}

/// The cluster thread, stopped and joined on drop.
pub(crate) struct ClusterThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The link for `Shared` and what `start` needs.
pub(crate) fn link(cfg: &ClusterConfig) -> (Link, Lanes) {
    let (tx, jobs) = mpsc::channel(JOB_QUEUE);
    let (claims_tx, claims) = mpsc::channel(JOB_QUEUE);
    let link = Link {
        tx,
        claims: claims_tx,
        unsent: Arc::default(),
        node_id: cfg.node_id.clone(),
        counters: Arc::default(),
    };
    (link, Lanes { jobs, claims })
}

impl ClusterThread {
    pub(crate) fn start(sh: Arc<Shared>, lanes: Lanes) -> Result<ClusterThread, EngineError> {
        let cfg = sh.cfg.cluster.clone().expect("started only with a cluster");
        let client = Client::open(&*cfg.redis_url)
            .map_err(|e| EngineError::Io(format!("cluster.redis_url: {e}")))?;
        let link = sh.cluster.as_ref().expect("a link");
        let (counters, unsent) = (link.counters.clone(), link.unsent.clone());
        let (stop_tx, stop_rx) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EngineError::Io(format!("cluster runtime: {e}")))?;
        let claimer = Arc::new(Claimer {
            key_prefix: cfg.key_prefix.clone(),
            node_id: cfg.node_id.clone(),
            px_ms: sh.cfg.push.min_interval.as_millis() as u64,
            counters: counters.clone(),
        });
        let (for_claims, conn) = watch::channel(None);
        rt.spawn(claimer.serve(lanes.claims, conn));
        let node = Node {
            sub_pattern: format!("{}aor:*", glob_escape(&cfg.key_prefix)),
            for_claims,
            max_age_secs: u64::from(sh.cfg.store.max_age_days) * 86_400,
            cfg,
            client,
            counters,
            sh,
            dirty: HashMap::new(),
            unsent,
        };
        let thread = std::thread::Builder::new()
            .name("pushpark-cluster".into())
            .spawn(move || rt.block_on(node.run(lanes.jobs, stop_rx)))
            .map_err(|e| EngineError::Io(format!("cannot start the cluster thread: {e}")))?;
        Ok(ClusterThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops the thread: every wait in it is bounded (COMMAND_TIMEOUT), so this is too.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("the cluster thread panicked");
            }
        }
    }
}

impl Drop for ClusterThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `s` matched literally in a SCAN pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Why a connected session ended.
enum Ended {
    Stop,
    Lost(String),
}

struct Node {
    cfg: ClusterConfig,
    client: Client,
    counters: Arc<ClusterCounters>,
    sh: Arc<Shared>,
    sub_pattern: String,
    /// The connection push claims are asked on (None: answered without Redis).
    for_claims: watch::Sender<Option<MultiplexedConnection>>,
    max_age_secs: u64,
    /// Written from the local store once Redis is back.
    dirty: Dirty,
    /// The link's: taken into `dirty` at each connection and after each job.
    unsent: Arc<Mutex<Dirty>>,
}

type Messages = std::pin::Pin<Box<dyn futures_util::Stream<Item = Msg> + Send>>;

impl Node {
    fn key(&self, aor: &str) -> String {
        format!("{}aor:{aor}", self.cfg.key_prefix)
    }

    fn channel(&self, name: &str) -> String {
        format!("{}{name}", self.cfg.key_prefix)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Job>, mut stop: oneshot::Receiver<()>) {
        let mut backoff = BACKOFF_MIN;
        let mut down_logged = false;
        loop {
            let session = tokio::select! {
                _ = &mut stop => return,
                s = self.connect(&mut rx) => match s {
                    Some(s) => s,
                    None => return,
                },
            };
            let why = match session {
                Ok((conn, messages)) => {
                    backoff = BACKOFF_MIN;
                    down_logged = false;
                    self.counters.connected.store(1, Relaxed);
                    log::info!(
                        "cluster: node {} connected to Redis {}",
                        self.cfg.node_id,
                        self.cfg.redis_url_shown()
                    );
                    let ended = self.serve(conn, messages, &mut rx, &mut stop).await;
                    self.counters.connected.store(0, Relaxed);
                    match ended {
                        Ended::Stop => return,
                        Ended::Lost(why) => why,
                    }
                }
                Err(e) => e.to_string(),
            };
            self.for_claims.send_replace(None);
            if !down_logged {
                log::warn!(
                    "cluster: Redis {} unreachable ({why}); working on local bindings, retrying",
                    self.cfg.redis_url_shown()
                );
                down_logged = true;
            }
            // Until the next try, jobs are done without Redis.
            let pause = tokio::time::sleep(backoff);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = &mut pause => break,
                    job = rx.recv() => match job {
                        Some(job) => self.offline(job),
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Connects, subscribes, then loads the shared bindings and writes those Redis lacks.
    /// While it connects (up to COMMAND_TIMEOUT per step when Redis does not
    /// answer), jobs are done without Redis: a push does not wait for it.
    async fn connect(
        &mut self,
        rx: &mut mpsc::Receiver<Job>,
    ) -> Option<RedisResult<(MultiplexedConnection, Messages)>> {
        let channels = [self.channel("bindings"), self.channel("wake")];
        let opening = open(self.client.clone(), channels);
        tokio::pin!(opening);
        let (mut conn, messages) = loop {
            tokio::select! {
                opened = &mut opening => match opened {
                    Ok(opened) => break opened,
                    Err(e) => return Some(Err(e)),
                },
                job = rx.recv() => match job {
                    Some(job) => self.offline(job),
                    None => return None,
                },
            }
        };
        self.for_claims.send_replace(Some(conn.clone()));
        self.take_unsent();
        let synced = async {
            self.load(&mut conn).await?;
            self.flush_dirty(&mut conn).await
        };
        Some(synced.await.map(|()| (conn, messages)))
    }

    /// Loads the bindings in Redis into the local store, and queues for Redis the
    /// local bindings it lacks or has older: those learned while it was away, and
    /// all of them when Redis lost its data (it may run without persistence).
    /// A removal is kept in Redis as a tombstone for `store.max_age_days`, so a
    /// node cut off meanwhile drops the binding too instead of writing it back.
    /// Where Redis and a change made here while Redis was away disagree, the later wins.
    async fn load(&mut self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        let prefix_len = self.key("").len();
        let oldest = unix_now().saturating_sub(self.max_age_secs);
        // What Redis holds, as of when.
        let mut in_redis: HashMap<(String, String), u64> = HashMap::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = bounded(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&self.sub_pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(conn),
            )
            .await?;
            for key in keys {
                let aor = key[prefix_len..].to_string();
                let fields: HashMap<String, String> = match bounded(conn.hgetall(&key)).await {
                    Ok(fields) => fields,
                    Err(e) if lost(&e) => return Err(e),
                    // Not ours (another type of key under the prefix): not a reason to stop.
                    Err(e) => {
                        log::warn!("cluster: {key} not read, ignored: {e}");
                        continue;
                    }
                };
                let local = self.sh.store.devices(&aor);
                let mut stale = Vec::new();
                for (field, json) in fields {
                    let (at, binding) = match serde_json::from_str::<Stored>(&json) {
                        Ok(Stored::Binding(d)) if d.key == field => (d.last_register_unix, Some(d)),
                        Ok(Stored::Removed { removed_unix }) => (removed_unix, None),
                        _ => {
                            log::warn!("cluster: {key} / field {field}: not a binding, ignored");
                            continue;
                        }
                    };
                    if at < oldest {
                        stale.extend(binding.is_none().then(|| field.clone()));
                        continue;
                    }
                    let id = (aor.clone(), field);
                    in_redis.insert(id.clone(), at);
                    match self.dirty.get(&id) {
                        Some(&changed) if changed >= at => continue,
                        Some(_) => {
                            self.dirty.remove(&id);
                        }
                        None => {}
                    }
                    let here = local.iter().find(|l| l.key == id.1);
                    match binding {
                        Some(d) if here.map_or(true, |l| *l != d && l.last_register_unix <= at) => {
                            self.sh.store.upsert_from_cluster(&aor, d);
                            inc(&self.counters.bindings_synced);
                        }
                        None if here.is_some_and(|l| l.last_register_unix <= at) => {
                            let n = self.sh.store.remove_from_cluster(&aor, &[id.1]);
                            add(&self.counters.bindings_synced, n as u64);
                        }
                        _ => {}
                    }
                }
                if !stale.is_empty() {
                    bounded(conn.hdel::<_, _, ()>(&key, stale)).await?;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for (aor, d) in self.sh.store.all() {
            let id = (aor, d.key.clone());
            if self.dirty.contains_key(&id) {
                continue;
            }
            if in_redis
                .get(&id)
                .map_or(true, |&at| at < d.last_register_unix)
            {
                self.dirty.insert(id, d.last_register_unix);
            }
        }
        Ok(())
    }

    /// Writes the dirty bindings as the local store has them now.
    async fn flush_dirty(&mut self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        let dirty: Vec<_> = self
            .dirty
            .iter()
            .map(|(id, at)| (id.clone(), *at))
            .collect();
        for ((aor, key), at) in dirty {
            let device = self
                .sh
                .store
                .devices(&aor)
                .into_iter()
                .find(|d| d.key == key);
            let msg = BindingMsg {
                node: self.cfg.node_id.clone(),
                remove: if device.is_none() {
                    vec![key.clone()]
                } else {
                    Vec::new()
                },
                aor: aor.clone(),
                upsert: device,
                removed_unix: at,
            };
            self.write(conn, msg).await?;
            self.dirty.remove(&(aor, key));
        }
        Ok(())
    }

    /// One binding change into Redis and out to the other nodes, in one
    /// transaction; removals leave tombstones.
    async fn write(&self, conn: &mut MultiplexedConnection, msg: BindingMsg) -> RedisResult<()> {
        let removed_unix = msg.removed_unix;
        let key = self.key(&msg.aor);
        let mut fields = Vec::new();
        if let Some(d) = &msg.upsert {
            let json = serde_json::to_string(d).expect("strings and an integer");
            fields.push((d.key.clone(), json));
        }
        let tombstone =
            serde_json::to_string(&Stored::Removed { removed_unix }).expect("an integer");
        fields.extend(msg.remove.iter().map(|k| (k.clone(), tombstone.clone())));
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.hset_multiple(&key, &fields).ignore();
        pipe.expire(&key, self.max_age_secs as i64).ignore();
        let json = serde_json::to_string(&msg).expect("strings and an integer");
        pipe.publish(self.channel("bindings"), json).ignore();
        bounded(pipe.query_async::<()>(conn)).await?;
        inc(&self.counters.bindings_synced);
        Ok(())
    }

    async fn serve(
        &mut self,
        mut conn: MultiplexedConnection,
        mut messages: Messages,
        rx: &mut mpsc::Receiver<Job>,
        stop: &mut oneshot::Receiver<()>,
    ) -> Ended {
        use futures_util::StreamExt;
        loop {
            tokio::select! {
                _ = &mut *stop => return Ended::Stop,
                msg = messages.next() => match msg {
                    Some(msg) => self.on_message(&msg),
                    None => return Ended::Lost("subscription closed".into()),
                },
                job = rx.recv() => match job {
                    None => return Ended::Stop,
                    Some(job) => {
                        let mut done = self.online(&mut conn, job).await;
                        if done.is_ok() && self.take_unsent() {
                            done = self.flush_dirty(&mut conn).await;
                        }
                        if let Err(e) = done {
                            if lost(&e) {
                                return Ended::Lost(e.to_string());
                            }
                        }
                    }
                },
            }
        }
    }

    /// A job while connected; a failed one is counted and, for a binding, left dirty.
    async fn online(&mut self, conn: &mut MultiplexedConnection, job: Job) -> RedisResult<()> {
        let (binding, result) = match job {
            Job::Upsert { aor, device } => {
                let id = ((aor.clone(), device.key.clone()), device.last_register_unix);
                let msg = BindingMsg {
                    node: self.cfg.node_id.clone(),
                    aor,
                    upsert: Some(device),
                    remove: Vec::new(),
                    removed_unix: 0,
                };
                (vec![id], self.write(conn, msg).await)
            }
            Job::Remove { aor, keys, at } => {
                let ids = keys
                    .iter()
                    .map(|k| ((aor.clone(), k.clone()), at))
                    .collect();
                let msg = BindingMsg {
                    node: self.cfg.node_id.clone(),
                    aor,
                    upsert: None,
                    remove: keys,
                    removed_unix: at,
                };
                (ids, self.write(conn, msg).await)
            }
            Job::Wake(msg) => {
                let json = serde_json::to_string(&msg).expect("strings");
                let sent = bounded(conn.publish::<_, _, ()>(self.channel("wake"), json)).await;
                let counter = match sent {
                    Ok(()) => &self.counters.wakes_sent,
                    Err(_) => &self.counters.wakes_dropped,
                };
                inc(counter);
                (Vec::new(), sent)
            }
        };
        if let Err(e) = &result {
            inc(&self.counters.failures);
            log::debug!("cluster: Redis command failed: {e}");
            self.dirty.extend(binding);
        }
        result
    }

    /// A job while Redis is away; a wake is of no use later (see the top of this file).
    fn offline(&mut self, job: Job) {
        inc(&self.counters.failures);
        if matches!(job, Job::Wake(_)) {
            inc(&self.counters.wakes_dropped);
        }
        self.dirty.extend(job.bindings());
    }

    /// Takes the binding changes the full queue dropped into `dirty`; true if any.
    fn take_unsent(&mut self) -> bool {
        let unsent = std::mem::take(&mut *self.unsent.lock());
        let any = !unsent.is_empty();
        self.dirty.extend(unsent);
        any
    }

    fn on_message(&self, msg: &Msg) {
        let channel = msg.get_channel_name();
        let Ok(payload) = msg.get_payload::<String>() else {
            return;
        };
        if channel == self.channel("wake") {
            match serde_json::from_str::<WakeMsg>(&payload) {
                Ok(w) if w.node != self.cfg.node_id => {
                    let relay = w.path.map(|path| Relay {
                        uri: w.contact.clone(),
                        path,
                    });
                    self.sh
                        .wake(&w.aor, &w.device_key, &w.contact, relay.as_ref());
                    inc(&self.counters.wakes_received);
                }
                Ok(_) => {}
                Err(e) => log::warn!("cluster: a wake message that does not parse: {e}"),
            }
        } else if channel == self.channel("bindings") {
            match serde_json::from_str::<BindingMsg>(&payload) {
                // Messages of two nodes may cross: the newer copy wins, wherever it is.
                Ok(b) if b.node != self.cfg.node_id => {
                    let (store, here) = (&self.sh.store, &self.cfg.node_id);
                    if let Some(d) = b.upsert {
                        if store.upsert_if_newer(&b.aor, d, &b.node, here).is_some() {
                            inc(&self.counters.bindings_synced);
                        }
                    }
                    if !b.remove.is_empty() {
                        let n = store.remove_if_newer(&b.aor, &b.remove, b.removed_unix);
                        add(&self.counters.bindings_synced, n as u64);
                    }
                }
                Ok(_) => {}
                Err(e) => log::warn!("cluster: a binding message that does not parse: {e}"),
            }
        }
    }
}

/// Answers push claims; shared by their tasks.
struct Claimer {
    key_prefix: String,
    node_id: String,
    px_ms: u64,
    counters: Arc<ClusterCounters>,
}

impl Claimer {
    /// Takes the claims as they come, whatever the cluster thread is doing.
    async fn serve(
        self: Arc<Self>,
        mut claims: mpsc::Receiver<Claim>,
        conn: watch::Receiver<Option<MultiplexedConnection>>,
    ) {
        while let Some(c) = claims.recv().await {
            let conn = conn.borrow().clone();
            match conn {
                Some(conn) => self.ask(conn, c),
                None => self.unanswered(c, &"Redis away"),
            }
        }
    }

    /// Asks Redis in a task of its own, so that nothing else the cluster thread
    /// does delays the answer: true (push) when Redis does not say within the
    /// claim's budget, counted as a failure.
    fn ask(self: &Arc<Self>, conn: MultiplexedConnection, c: Claim) {
        let me = self.clone();
        tokio::spawn(async move {
            let budget = CLAIM_TIMEOUT.saturating_sub(c.asked.elapsed());
            match tokio::time::timeout(budget, me.claim(conn, &c.token)).await {
                Ok(Ok(granted)) => (c.reply)(granted),
                Ok(Err(e)) => me.unanswered(c, &e),
                Err(_) => me.unanswered(c, &"no answer in time"),
            }
        });
    }

    /// Redis cannot say: push.
    fn unanswered(&self, c: Claim, why: &dyn std::fmt::Display) {
        inc(&self.counters.failures);
        log::debug!("cluster: push claim not answered ({why}), pushing");
        (c.reply)(true);
    }

    /// True when this node may push `token`: nobody else did within `push.min_interval_ms`.
    async fn claim(&self, mut conn: MultiplexedConnection, token: &str) -> RedisResult<bool> {
        let key = format!("{}push:{token}", self.key_prefix);
        let node = &self.node_id;
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(node)
            .arg("NX")
            .arg("PX")
            .arg(self.px_ms)
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            return Ok(true);
        }
        // Our own claim, about to expire, is no reason not to push.
        let holder: Option<String> = conn.get(&key).await?;
        Ok(holder.as_deref().map_or(true, |h| h == node))
    }
}

/// A connection for commands, and one subscribed to `channels`.
async fn open(
    client: Client,
    channels: [String; 2],
) -> RedisResult<(MultiplexedConnection, Messages)> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(COMMAND_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let mut pubsub = bounded(client.get_async_pubsub()).await?;
    for c in channels {
        bounded(pubsub.subscribe(c)).await?;
    }
    // Subscribed before the load: a change published meanwhile is not missed.
    Ok((conn, Box::pin(pubsub.into_on_message())))
}

/// The connection is gone or hangs: no answer within COMMAND_TIMEOUT (not an error answer
/// from Redis). A claim's shorter budget running out says only that Redis is slow: claims
/// never end a connection.
fn lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer in time",
    ))
}

/// `f` within COMMAND_TIMEOUT.
async fn bounded<T>(f: impl std::future::Future<Output = RedisResult<T>>) -> RedisResult<T> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(timed_out()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_match_the_prefix_literally() {
        assert_eq!(glob_escape("pushpark:"), "pushpark:");
        assert_eq!(glob_escape(r"a*b?[c]\"), r"a\*b\?\[c\]\\");
    }

    #[test]
    fn messages_carry_a_path_field_for_later() {
        let w: WakeMsg =
            serde_json::from_str(r#"{"node":"a","aor":"x","device_key":"k","contact":"c"}"#)
                .unwrap();
        assert_eq!(w.path, None);
        let b: BindingMsg =
            serde_json::from_str(r#"{"node":"a","aor":"x","remove":["k"]}"#).unwrap();
        assert!(b.upsert.is_none() && b.remove == ["k"]);
    }
}
