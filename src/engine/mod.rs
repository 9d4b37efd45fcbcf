//! The engine: parks INVITEs for devices that are asleep, pushes them over
//! APNs, and tells the host to resume (or reject) each call exactly once.
//!
//! Threads: the host's (SIP workers) call `park`/`register`/... which only
//! take short locks; one engine thread owns timers, coalescing windows and
//! push dispatch; the APNs client has its own. No thread ever calls host code:
//! results reach the host as events (queue + eventfd). Device-store changes
//! are committed to disk by the store's own writer thread, in batches, after
//! the call returns (see store.rs): a kill -9 may lose the last few
//! milliseconds of them, a clean drop none. With a `cluster` config, one more
//! thread shares bindings, wakes and push claims with other nodes through
//! Redis (cluster.rs); nobody waits for it.

mod cluster;
mod config;
mod contact;
mod events;
mod late;
mod order;
mod parked;
pub(crate) mod push;
mod push_clients;
pub(crate) mod redact;
mod stats;
mod store;
mod store_writer;
mod worker;

pub use config::{
    ApnsConfig, AuthConfig, ClusterConfig, ConfigError, EngineConfig, ParkConfig, PushConfig,
    StoreConfig,
};
pub(crate) use contact::normalize_instance;
pub use contact::{ContactError, ContactRules};
pub(crate) use events::{purge_call, reject_queued};
pub use events::{Event, EventKind, Relay};
pub use parked::{CallWas, ParkedInfo};
pub use push::PayloadTemplate;
pub use stats::Stats;
pub use store::DeviceInfo;

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;
use std::fmt;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use contact::{Provider, MAX_CONTACT};
use events::EventQueue;
use order::RegisterOrder;
use parked::{Call, CallState, End, Registered, Table};
use stats::{add, inc, Counters};
use store::Store;
use worker::Cmd;

/// A REGISTER the host accepted.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    pub aor: &'a str,
    /// The Contact URI or the whole Contact header value.
    pub contact: &'a str,
    /// `+sip.instance` if the host extracted it (else it is read from `contact`).
    pub instance: Option<&'a str>,
    pub expires: u32,
    /// The REGISTER's Call-ID and CSeq: a lower CSeq of a Call-ID already
    /// applied to the device is ignored. `None`: applied whatever the order.
    pub call_id: Option<&'a str>,
    pub cseq: u32,
    /// The Path (RFC 3327) this node recorded for the REGISTER: in a cluster, the
    /// other nodes relay the device's calls through it. `None`: they use their own
    /// location table.
    pub path: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegisterOutcome {
    /// The contact carries APNs push parameters.
    pub push_capable: bool,
    /// A push binding was stored or refreshed.
    pub stored: bool,
    /// `expires == 0` removed a binding.
    pub removed: bool,
    /// Parked calls this REGISTER resumed (AppendBranch events not counted).
    pub resumed: u32,
}

/// A Contact the host's location lookup found for a call it forks.
#[derive(Debug, Clone, Copy)]
pub struct ForkContact<'a> {
    /// The Contact URI, with its push parameters.
    pub uri: &'a str,
    /// Its `+sip.instance`, raw.
    pub instance: Option<&'a str>,
    /// The host rings it now (else it held it back: it is pushed).
    pub ringing: bool,
}

/// How the host's call ended (the Reason a late-waking device gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallEnd {
    /// The caller cancelled, or the host gave up (cause 487).
    Cancelled,
    /// The call got this final status (2xx: answered elsewhere, cause 200;
    /// 487: cause 487; any other: cause 480).
    Completed(u16),
}

impl CallEnd {
    pub(crate) fn cause(self) -> u16 {
        match self {
            CallEnd::Cancelled | CallEnd::Completed(487) => 487,
            CallEnd::Completed(200..=299) => 200,
            CallEnd::Completed(_) => 480,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ParkRequest<'a> {
    pub call_id: &'a str,
    pub aor: &'a str,
    pub caller_uri: &'a str,
    pub caller_name: &'a str,
    /// Opaque to the engine, unique among parked calls, e.g. `(tm hash_index << 32) | label`.
    pub host_ref: u64,
    /// Opaque to the engine: back on the call's events (`Event::host_data`).
    pub host_data: u64,
    /// `None`: the configured `park.timeout_ms`.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkError {
    /// The AOR has no push device: reject the call as without pushpark.
    NoDevice,
    LimitTotal,
    LimitPerAor,
    /// The engine thread, or the host's polling of events, is behind; nothing was parked.
    QueueFull,
    /// `host_ref` is already parked.
    Duplicate,
    Invalid(String),
    ShutDown,
}

impl fmt::Display for ParkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParkError::NoDevice => f.write_str("the AOR has no push device"),
            ParkError::LimitTotal => f.write_str("too many parked calls (park.max_total)"),
            ParkError::LimitPerAor => {
                f.write_str("too many parked calls for this AOR (park.max_per_aor)")
            }
            ParkError::QueueFull => f.write_str("the engine queue is full"),
            ParkError::Duplicate => f.write_str("this host_ref is already parked"),
            ParkError::Invalid(why) => write!(f, "invalid park request: {why}"),
            ParkError::ShutDown => f.write_str("the engine is shut down"),
        }
    }
}

impl std::error::Error for ParkError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    Config(ConfigError),
    /// The device store could not be opened (disk, lock).
    Store(String),
    /// The APNs client could not be set up (key, certificate, CA).
    Apns(String),
    /// An FCM client could not be set up (service account, CA).
    Fcm(String),
    /// Bad input (e.g. a Contact with garbage push parameters); nothing changed.
    Invalid(String),
    /// A Contact names a push service pushpark does not push to; nothing changed.
    Unsupported(String),
    /// No such parked call / binding.
    NotFound,
    Io(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Config(e) => write!(f, "config: {e}"),
            EngineError::Store(e) => f.write_str(e),
            EngineError::Apns(e) => write!(f, "APNs client: {e}"),
            EngineError::Fcm(e) => write!(f, "FCM client: {e}"),
            EngineError::Invalid(e) | EngineError::Unsupported(e) => f.write_str(e),
            EngineError::NotFound => f.write_str("not found"),
            EngineError::Io(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<ContactError> for EngineError {
    fn from(e: ContactError) -> Self {
        match e {
            ContactError::Invalid(_) => EngineError::Invalid(e.to_string()),
            ContactError::Unsupported(_) => EngineError::Unsupported(e.to_string()),
        }
    }
}

impl From<store::StoreError> for EngineError {
    fn from(e: store::StoreError) -> Self {
        EngineError::Store(e.to_string())
    }
}

/// What the host-facing calls and the engine thread share.
pub(crate) struct Shared {
    cfg: EngineConfig,
    rules: ContactRules,
    /// Held while an ordered REGISTER is applied (taken before `table`).
    order: Mutex<RegisterOrder>,
    table: Mutex<Table>,
    events: EventQueue,
    counters: Counters,
    store: Store,
    /// With a `cluster` config: the hand-over to the cluster thread.
    cluster: Option<cluster::Link>,
}

impl Shared {
    /// Resumes the AOR's parked calls; an extra branch for calls already
    /// ringing or forked; a LateWake for each ended call that pushed the device.
    /// A REGISTER here and a wake from another node (cluster.rs) both come here;
    /// the table ends a call once, and gives a device one branch per call, however
    /// often its wake comes.
    /// `relay`: how to reach a device that registered on another node.
    pub(crate) fn wake(
        &self,
        aor: &str,
        device_key: &str,
        contact: &str,
        relay: Option<&Relay>,
    ) -> u32 {
        let sh = self;
        let mut t = sh.table.lock();
        let registered = Registered {
            device_key: device_key.to_string(),
            contact: contact.to_string(),
            relay: relay.cloned(),
        };
        t.note_register(aor, registered, Instant::now());
        let mut resumed = 0;
        for id in t.ids_of_aor(aor) {
            match t.get(id).map(|c| (c.state, c.forked)) {
                Some((CallState::Parked, false)) => {
                    let how = End::Resume {
                        device_key,
                        contact,
                        relay,
                    };
                    resumed += u32::from(t.finish(id, how, &sh.events, &sh.counters));
                }
                Some(_) => {
                    t.append_branch(id, device_key, contact, relay, &sh.events, &sh.counters);
                }
                None => {}
            }
        }
        let late = t.late_wakes(aor, device_key, contact, relay, &sh.events);
        add(&sh.counters.late_wakes, late);
        resumed
    }
}

pub struct Engine {
    shared: Arc<Shared>,
    cmd_tx: Sender<Cmd>,
    stop_tx: Option<Sender<()>>,
    worker: Option<JoinHandle<()>>,
    cluster: Option<cluster::ClusterThread>,
}

/// Commands waiting for the engine thread; beyond this `park` says QueueFull.
const CMD_QUEUE: usize = 65_536;

/// The event queue holds this many events per call the table can hold (a
/// push result and the final event) before it drops informational ones and
/// `park` says QueueFull: a host that polls at all never gets near it.
const EVENTS_PER_CALL: usize = 2;

/// Contacts a fork may name.
const MAX_FORK_CONTACTS: usize = 1024;

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A longer display name is cut, not refused: it only goes into the payload.
const MAX_CALLER_NAME: usize = 1024;

/// The longest prefix of `s` of at most `max` bytes that ends on a character.
fn cut_at_char(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("{what} is longer than {max} bytes"));
    }
    if s.contains('\0') {
        return Err(format!("{what} contains NUL"));
    }
    Ok(())
}

/// What park and fork check before touching anything.
fn check_park(p: &ParkRequest, default_timeout: Duration) -> Result<(), ParkError> {
    let invalid = ParkError::Invalid;
    check_text("call_id", p.call_id, 1024).map_err(invalid)?;
    check_aor(p.aor).map_err(invalid)?;
    check_text("caller_uri", p.caller_uri, 1024).map_err(invalid)?;
    check_text("caller_name", p.caller_name, usize::MAX).map_err(invalid)?;
    if p.call_id.is_empty() {
        return Err(invalid("call_id is empty".into()));
    }
    if p.host_ref == 0 {
        return Err(invalid("host_ref 0 means no call".into()));
    }
    let timeout = p.timeout.unwrap_or(default_timeout);
    if timeout.is_zero() || timeout > Duration::from_secs(3600) {
        return Err(invalid("timeout must be from 1 ms to 1 hour".into()));
    }
    Ok(())
}

fn check_aor(aor: &str) -> Result<(), String> {
    check_text("aor", aor, 1024)?;
    if aor.trim().is_empty() {
        return Err("aor is empty".into());
    }
    Ok(())
}

impl Engine {
    /// What `new` would refuse in the files `cfg` names, without starting a
    /// thread or touching the store: the credentials (read and parsed), the CA
    /// file, and a store directory (or, while it does not exist, the directory
    /// `new` would create it in) this process can write in.
    pub fn check_files(cfg: &EngineConfig) -> Result<(), EngineError> {
        push_clients::check(cfg)?;
        let dir = (cfg.store.dir.ancestors())
            .find(|p| p.exists())
            .unwrap_or(Path::new("."));
        // A file made and removed: permission bits alone miss ACLs and read-only mounts.
        let probe = dir.join(format!(".pushpark-check-{}", std::process::id()));
        std::fs::File::create(&probe).map_err(|e| {
            EngineError::Config(ConfigError {
                path: "store.dir".into(),
                message: format!("cannot write in {}: {e}", dir.display()),
            })
        })?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    /// Opens the store, sets up the APNs client and starts the engine thread.
    pub fn new(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let st = &cfg.store;
        let store = Store::open(&st.dir, st.max_age_days, st.max_devices_per_aor, unix_now())?;
        let events = EventQueue::new(cfg.park.max_total.saturating_mul(EVENTS_PER_CALL))
            .map_err(|e| EngineError::Io(format!("eventfd: {e}")))?;
        let clients = push_clients::Clients::new(&cfg)?;
        let (link, lanes) = cfg.cluster.as_ref().map(cluster::link).unzip();
        if let Some(link) = &link {
            store.set_sink(link.sink());
        }
        let shared = Arc::new(Shared {
            rules: ContactRules::new(&cfg),
            order: Mutex::new(RegisterOrder::default()),
            table: Mutex::new(Table::new(cfg.park.late_wake)),
            cfg,
            events,
            counters: Counters::default(),
            store,
            cluster: link,
        });
        let cluster = match lanes {
            Some(lanes) => Some(cluster::ClusterThread::start(shared.clone(), lanes)?),
            None => None,
        };
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(CMD_QUEUE);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let w = worker::Worker::new(shared.clone(), clients);
        let worker = std::thread::Builder::new()
            .name("pushpark-engine".into())
            .spawn(move || w.run(cmd_rx, stop_rx))
            .map_err(|e| EngineError::Io(format!("cannot start the engine thread: {e}")))?;
        Ok(Engine {
            shared,
            cmd_tx,
            stop_tx: Some(stop_tx),
            worker: Some(worker),
            cluster,
        })
    }

    /// From a REGISTER the host accepted: parses the RFC 8599 parameters of
    /// each Contact of the header value, then for each, in order: wakes the
    /// AOR's parked calls (any REGISTER with expires > 0 means the user is
    /// reachable now, push device or not) and stores or refreshes the
    /// binding; with expires == 0 removes it (unless
    /// `store.unregister_keeps_binding`) and forgets that the device just
    /// registered. An error changes nothing: every Contact is checked first.
    /// With a Call-ID, a Contact whose device already had a later CSeq of it
    /// applied is skipped (counted in `registers_out_of_order`).
    /// The change is in memory on return and committed to disk shortly after
    /// by the store's writer thread (never waited for): a kill -9 may lose the
    /// last few milliseconds of changes; dropping the engine loses nothing.
    pub fn register(&self, r: &Registration) -> Result<RegisterOutcome, EngineError> {
        check_aor(r.aor).map_err(EngineError::Invalid)?;
        check_text("contact", r.contact, MAX_CONTACT).map_err(EngineError::Invalid)?;
        if let Some(instance) = r.instance {
            check_text("instance", instance, 1024).map_err(EngineError::Invalid)?;
        }
        if let Some(call_id) = r.call_id {
            check_text("call_id", call_id, 1024).map_err(EngineError::Invalid)?;
        }
        if let Some(path) = r.path {
            check_text("path", path, MAX_CONTACT).map_err(EngineError::Invalid)?;
        }
        let sh = &*self.shared;
        let contacts = sh.rules.parse_all(r.contact)?;
        if r.expires > 0 && contacts.iter().any(|(_, c)| c.wildcard) {
            return Err(EngineError::Invalid(
                "Contact `*` is only valid with expires 0".into(),
            ));
        }
        // The host's +sip.instance is that of its Contact when it sent one.
        let host_instance = r
            .instance
            .filter(|_| contacts.len() == 1)
            .and_then(contact::normalize_instance);
        let keep_binding = sh.cfg.store.unregister_keeps_binding;
        let mut out = RegisterOutcome::default();
        // Ordered REGISTERs apply one at a time, so that a device ends in the
        // state of the one with the highest CSeq; others need no order.
        let mut ordered = r.call_id.map(|id| (id, sh.order.lock()));
        let now = Instant::now();
        for (text, c) in contacts {
            let text = text.trim();
            out.push_capable |= c.push.is_some();
            if c.wildcard {
                sh.table.lock().forget_register(r.aor, None);
                if !keep_binding {
                    out.removed |= sh.store.remove_all(r.aor) > 0;
                }
                continue;
            }
            let token = c.push.as_ref().map(|p| p.token.as_str());
            let key = host_instance
                .clone()
                .or(c.instance)
                .or(token.map(String::from))
                .unwrap_or_else(|| text.to_string());
            if let Some((call_id, last)) = &mut ordered {
                let keep = Duration::from_secs(r.expires.into()).max(order::KEEP_AT_LEAST);
                if !last.admit(r.aor, &key, call_id, r.cseq, now + keep) {
                    inc(&sh.counters.registers_out_of_order);
                    continue;
                }
            }
            if r.expires == 0 {
                sh.table.lock().forget_register(r.aor, Some(&key));
                if !keep_binding {
                    out.removed |= sh.store.remove_device(r.aor, &key, token);
                }
                continue;
            }
            out.resumed += sh.wake(r.aor, &key, text, None);
            if let Some(link) = &sh.cluster {
                link.wake(r.aor, &key, contact::uri_of(text), r.path);
            }
            if let Some(p) = c.push {
                sh.store.upsert(
                    r.aor,
                    DeviceInfo {
                        key,
                        provider: p.provider.as_str().to_string(),
                        token: p.token,
                        topic: p.topic,
                        contact: text.to_string(),
                        last_register_unix: unix_now(),
                    },
                );
                out.stored = true;
            }
        }
        Ok(out)
    }

    /// Stores a binding learned another way than REGISTER (does not wake calls).
    /// The key is normalised as `register` does a `+sip.instance` (no quotes,
    /// `<>` or blanks), so both name a device alike; an empty one means the
    /// token. `last_register_unix == 0` means now.
    /// Write-behind like `register`: in memory on return, on disk shortly after.
    pub fn add_device(&self, aor: &str, d: &DeviceInfo) -> Result<(), EngineError> {
        check_aor(aor).map_err(EngineError::Invalid)?;
        let bad = |m: String| EngineError::Invalid(m);
        let provider = Provider::parse(&d.provider).ok_or_else(|| {
            bad(format!(
                "provider `{}` is not apns, apns.dev or fcm",
                d.provider
            ))
        })?;
        let token = if provider == Provider::Fcm {
            if !crate::fcm::valid_registration_token(&d.token) {
                return Err(bad("the token is not an FCM registration token".into()));
            }
            if !config::valid_fcm_project(&d.topic) {
                return Err(bad(
                    "the topic is not a Firebase project id or number".into()
                ));
            }
            d.token.clone()
        } else {
            contact::check_topic(&d.topic).map_err(|e| bad(e.message().to_string()))?;
            contact::hex_token(&d.token).map_err(|e| bad(e.message().to_string()))?
        };
        check_text("key", &d.key, 1024).map_err(bad)?;
        check_text("contact", &d.contact, 4096).map_err(bad)?;
        let key = contact::normalize_instance(&d.key).unwrap_or_else(|| token.clone());
        let info = DeviceInfo {
            key,
            provider: provider.as_str().to_string(),
            token,
            topic: d.topic.clone(),
            contact: d.contact.clone(),
            last_register_unix: if d.last_register_unix == 0 {
                unix_now()
            } else {
                d.last_register_unix
            },
        };
        self.shared.store.upsert(aor, info);
        Ok(())
    }

    /// Removes one binding; false when there was none. The key is taken as
    /// given (stores written before keys were normalised may hold such keys),
    /// else normalised as `add_device` does, and a token matches in any case
    /// (keys that are tokens are stored in lower case). Write-behind like `register`.
    pub fn remove_device(&self, aor: &str, device_key: &str) -> bool {
        let store = &self.shared.store;
        let Some(key) = contact::normalize_instance(device_key) else {
            return false;
        };
        store.remove(aor, device_key)
            || (key != device_key && store.remove(aor, &key))
            || contact::hex_token(&key).is_ok_and(|token| token != key && store.remove(aor, &token))
    }

    /// Parks a call and queues a VoIP push to every device of the AOR. Never
    /// blocks on the network or the disk. A REGISTER of the AOR within
    /// `park.recent_register_ms` resumes the call at once (the Resume event is
    /// queued before this returns).
    pub fn park(&self, p: &ParkRequest) -> Result<u64, ParkError> {
        check_park(p, self.shared.cfg.park.timeout)?;
        // Copied before the table lock, which every park, REGISTER and cancel contend for.
        // A REGISTER landing in between marks the AOR as just registered first, so the
        // call is then resumed at once rather than pushed.
        let devices = self.shared.store.devices(p.aor);
        self.start(p, devices, None)
    }

    /// A call the host may already ring on some contacts: pushes every device
    /// of the AOR (stored ones and the held-back contacts' push parameters,
    /// keyed as `register` keys them) that is not ringing. Each device that
    /// registers then gives an AppendBranch (never Resume); the deadline a
    /// Reject. A contact whose URI does not parse is not pushed.
    pub fn fork(&self, p: &ParkRequest, contacts: &[ForkContact]) -> Result<u64, ParkError> {
        check_park(p, self.shared.cfg.park.timeout)?;
        if contacts.len() > MAX_FORK_CONTACTS {
            let why = format!("more than {MAX_FORK_CONTACTS} contacts");
            return Err(ParkError::Invalid(why));
        }
        let (mut ringing, mut devices) = (Vec::new(), Vec::<DeviceInfo>::new());
        // A device stored by its token may ring under its instance.
        let mut ringing_tokens = Vec::new();
        for (i, c) in contacts.iter().enumerate() {
            check_text(&format!("contacts[{i}].uri"), c.uri, MAX_CONTACT)
                .and_then(|()| match c.instance {
                    Some(inst) => check_text(&format!("contacts[{i}].instance"), inst, 1024),
                    None => Ok(()),
                })
                .map_err(ParkError::Invalid)?;
            let parsed = contact::parse(c.uri).ok();
            let push = parsed.as_ref().and_then(|p| p.push.clone());
            let key = c
                .instance
                .and_then(contact::normalize_instance)
                .or(parsed.and_then(|p| p.instance))
                .or(push.as_ref().map(|p| p.token.clone()))
                .unwrap_or_else(|| c.uri.trim().to_string());
            match push {
                _ if c.ringing => {
                    ringing.push(key);
                    ringing_tokens.extend(push.map(|b| b.token));
                }
                Some(b) if !devices.iter().any(|d| d.key == key || d.token == b.token) => devices
                    .push(DeviceInfo {
                        key,
                        provider: b.provider.as_str().to_string(),
                        token: b.token,
                        topic: b.topic,
                        contact: c.uri.trim().to_string(),
                        last_register_unix: unix_now(),
                    }),
                _ => {}
            }
        }
        for d in self.shared.store.devices(p.aor) {
            if !devices.iter().any(|x| x.key == d.key || x.token == d.token) {
                devices.push(d);
            }
        }
        devices.retain(|d| !ringing.contains(&d.key) && !ringing_tokens.contains(&d.token));
        self.start(p, devices, Some(ringing))
    }

    /// Parks (`ringing` None) or forks a checked request.
    fn start(
        &self,
        p: &ParkRequest,
        mut devices: Vec<DeviceInfo>,
        ringing: Option<Vec<String>>,
    ) -> Result<u64, ParkError> {
        let sh = &*self.shared;
        let now = Instant::now();
        let limits = &sh.cfg.park;
        let mut t = sh.table.lock();
        if t.id_of_host_ref(p.host_ref).is_some() {
            return Err(ParkError::Duplicate);
        }
        if t.len() >= limits.max_total {
            inc(&sh.counters.park_over_limit);
            return Err(ParkError::LimitTotal);
        }
        if t.count_of_aor(p.aor) >= limits.max_per_aor {
            inc(&sh.counters.park_over_limit);
            return Err(ParkError::LimitPerAor);
        }
        // Events are not dropped for calls, so it is new calls that must wait.
        if sh.events.full() {
            inc(&sh.counters.park_queue_full);
            return Err(ParkError::QueueFull);
        }
        // A device the host's lookup missed by a hair needs no push: a parked
        // call resumes at once, a fork gets it as a branch.
        let just_registered = now
            .checked_sub(limits.recent_register)
            .filter(|_| !limits.recent_register.is_zero())
            .and_then(|since| t.registered_since(p.aor, since))
            .filter(|d| {
                ringing
                    .as_ref()
                    .map_or(true, |r| !r.contains(&d.device_key))
            });
        match (&just_registered, &ringing) {
            (Some(_), None) => devices.clear(),
            (Some(r), Some(_)) => devices.retain(|d| d.key != r.device_key),
            (None, _) => {}
        }
        if just_registered.is_none() && devices.is_empty() {
            inc(&sh.counters.park_no_device);
            return Err(ParkError::NoDevice);
        }
        let deadline = now + p.timeout.unwrap_or(limits.timeout);
        let ringing = ringing.map(|r| r.into_iter().map(Box::from).collect::<Vec<_>>());
        let id = t.insert(Call {
            host_ref: p.host_ref,
            host_data: p.host_data,
            call_id: p.call_id.into(),
            aor: p.aor.into(),
            caller_uri: p.caller_uri.into(),
            caller_name: cut_at_char(p.caller_name, MAX_CALLER_NAME).into(),
            parked_at: now,
            deadline,
            state: CallState::Parked,
            forked: ringing.is_some(),
            host_ringing: ringing.as_ref().is_some_and(|r| !r.is_empty()),
            targets: devices.iter().map(|d| d.key.as_str().into()).collect(),
            pushed: Vec::new(),
            branches: ringing.unwrap_or_default(),
            delivered: false,
        });
        if let Err(e) = self.cmd_tx.try_send(Cmd::Park {
            id,
            deadline,
            devices,
        }) {
            t.remove(id);
            return Err(match e {
                TrySendError::Full(_) => {
                    inc(&sh.counters.park_queue_full);
                    ParkError::QueueFull
                }
                TrySendError::Disconnected(_) => ParkError::ShutDown,
            });
        }
        inc(&sh.counters.parked_total);
        if let Some(r) = just_registered {
            let how = End::Resume {
                device_key: &r.device_key,
                contact: &r.contact,
                relay: r.relay.as_ref(),
            };
            if !t.finish(id, how, &sh.events, &sh.counters) {
                let relay = r.relay.as_ref();
                t.append_branch(
                    id,
                    &r.device_key,
                    &r.contact,
                    relay,
                    &sh.events,
                    &sh.counters,
                );
            }
        }
        Ok(id)
    }

    fn end_by_host(&self, host_ref: u64, how: CallEnd) -> Result<(), EngineError> {
        let sh = &*self.shared;
        let mut t = sh.table.lock();
        match t.end_by_host(host_ref, how.cause(), &sh.events, &sh.counters) {
            true => Ok(()),
            false => Err(EngineError::NotFound),
        }
    }

    /// The caller CANCELled (or the host gave up): the call ends as cancelled
    /// and no event for it is polled after this returns. NotFound if it already ended.
    pub fn cancel(&self, host_ref: u64) -> Result<(), EngineError> {
        self.end_by_host(host_ref, CallEnd::Cancelled)
    }

    /// The host's call finished after Resume (answered or failed): forget it,
    /// so no further AppendBranch comes. On a call still parked it acts as cancel.
    pub fn call_ended(&self, host_ref: u64) -> Result<(), EngineError> {
        self.end_by_host(host_ref, CallEnd::Cancelled)
    }

    /// The host's call got its final reply: as `call_ended`, and devices
    /// pushed for it that register late are told how it ended.
    pub fn call_completed(&self, host_ref: u64, status: u16) -> Result<(), EngineError> {
        self.end_by_host(host_ref, CallEnd::Completed(status))
    }

    /// The host's call is over, however the engine held it: a forked one ends as
    /// `call_completed(status)`, a parked or resumed one as `cancel`. Says what it was;
    /// NotFound if the engine no longer knew it.
    pub fn end(&self, host_ref: u64, status: u16) -> Result<CallWas, EngineError> {
        let sh = &*self.shared;
        let cause = |was| match was {
            CallWas::Forked => CallEnd::Completed(status).cause(),
            CallWas::Parked | CallWas::Resumed => CallEnd::Cancelled.cause(),
        };
        let mut t = sh.table.lock();
        (t.end_by_host_as(host_ref, cause, &sh.events, &sh.counters)).ok_or(EngineError::NotFound)
    }

    /// The host stops: every call it still waits an answer for (parked, forked, or
    /// resumed by a Resume not yet polled) ends with a Reject event of `code` and
    /// `reason`, and Rejects already queued get them too. `resumed`: calls whose Resume
    /// the caller holds and turned into a Reject itself (they end without an event).
    /// Returns how many Rejects it queued.
    pub fn reject_waiting(&self, code: u16, reason: &str, resumed: &[u64]) -> u32 {
        let sh = &*self.shared;
        let mut t = sh.table.lock();
        t.reject_waiting(code, reason, resumed, &sh.events, &sh.counters)
    }

    /// Readable (EFD_NONBLOCK|EFD_CLOEXEC eventfd) while events wait; owned by the engine.
    pub fn event_fd(&self) -> RawFd {
        self.shared.events.fd()
    }

    /// The next event, never blocking. Drain until `None` after the fd fires.
    pub fn poll_event(&self) -> Option<Event> {
        self.shared.events.pop()
    }

    pub fn stats(&self) -> Stats {
        let sh = &*self.shared;
        let mut s = sh.counters.snapshot();
        (s.parked_now, s.resumed_now) = sh.table.lock().counts();
        s.devices_stored = sh.store.len() as u64;
        s.devices_evicted = sh.store.evicted();
        (s.store_writes_pending, s.store_write_errors) = sh.store.write_counts();
        s.events_waiting = sh.events.len() as u64;
        s.events_dropped = sh.events.dropped();
        if let Some(c) = sh.cluster.as_ref().map(|l| &*l.counters) {
            let get =
                |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
            s.cluster_connected = get(&c.connected);
            s.cluster_wakes_sent = get(&c.wakes_sent);
            s.cluster_wakes_received = get(&c.wakes_received);
            s.cluster_bindings_synced = get(&c.bindings_synced);
            s.cluster_failures = get(&c.failures);
            s.cluster_wakes_dropped = get(&c.wakes_dropped);
        }
        s
    }

    pub fn devices(&self, aor: &str) -> Vec<DeviceInfo> {
        self.shared.store.devices(aor)
    }

    /// Parked and ringing calls, by park id.
    pub fn parked(&self) -> Vec<ParkedInfo> {
        self.shared.table.lock().info(Instant::now())
    }
}

impl Drop for Engine {
    /// Stops and joins the cluster thread, then the engine thread (which stops the APNs client), then
    /// forgets the calls still parked: no event follows the drop. Last, it
    /// commits every queued store change, so a clean shutdown loses nothing.
    fn drop(&mut self) {
        // First the cluster thread, which wakes calls and holds push claims.
        if let Some(mut c) = self.cluster.take() {
            c.stop();
        }
        drop(self.stop_tx.take());
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                log::error!("the engine thread panicked");
            }
        }
        let left = std::mem::take(&mut *self.shared.table.lock()).len();
        if left > 0 {
            log::info!("engine stopped with {left} calls parked or ringing");
        }
        self.shared.store.close();
    }
}
