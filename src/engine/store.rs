//! The persistent device-token store: redb on disk, mirrored in memory so the
//! SIP hot path (`park`) never touches the disk.
//!
//! Writes are write-behind: the index changes at once and the change is
//! queued to one writer thread that commits durably in batches
//! (store_writer.rs), so `register` never waits for an fsync. A binding's
//! queued change is replaced by its next one, so however long the disk
//! stalls, at most one change per binding waits. Closing the store (engine
//! drop) commits everything queued; a kill -9 or power loss may lose only
//! the changes queued in the last few milliseconds (those not yet
//! committed); whatever was committed survives.

use crate::panic_message::panic_message;
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

use super::store_writer::{Op, StoreWriter};

pub(super) const BINDINGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bindings");

/// A REGISTER that changes nothing a push needs (only the time, or the
/// contact's address after a NAT rebinding) is written to disk only when the
/// stored copy is older than this: refreshes come every few minutes per
/// device, the time only matters for the expiry counted in days, and the
/// contact is informational.
const PERSIST_REFRESH_AFTER_SECS: u64 = 3600;

/// One device binding of an AOR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `+sip.instance` when the device sent one, else its pn-prid.
    pub key: String,
    /// `apns` (production), `apns.dev` (sandbox) or `fcm` (Android).
    pub provider: String,
    /// The PushKit device token, lower-case hex; or the FCM registration token as sent.
    pub token: String,
    /// The APNs topic, `<bundle id>.voip`; or the Firebase project.
    pub topic: String,
    pub contact: String,
    pub last_register_unix: u64,
}

/// The on-disk value; the key is (AOR, device key).
#[derive(Serialize, Deserialize)]
struct Record {
    provider: String,
    token: String,
    topic: String,
    contact: String,
    last_register_unix: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device store: {}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upsert {
    New,
    Changed,
    Refreshed,
}

/// A change of the bindings made on this node, as the cluster shares it.
pub(crate) enum Change<'a> {
    Upsert(&'a DeviceInfo),
    /// The keys removed.
    Remove(&'a [String]),
}

/// Told of every change made on this node (not of those applied from other nodes),
/// under the store's writer lock: it must not block.
pub(crate) type Sink = Box<dyn Fn(&str, Change) + Send + Sync>;

struct Entry {
    info: DeviceInfo,
    /// `last_register_unix` as last written to disk.
    persisted_register_unix: u64,
    /// The cluster node this copy came from: None for a change made here, "" when
    /// not known (loaded from disk or from Redis).
    from: Option<Box<str>>,
}

impl Entry {
    /// True when this copy is newer than a change made at `at` on node `from`
    /// (`here`: this node): the later REGISTER, then for two in the same second
    /// the greater node id, so that every node keeps the same one.
    fn newer_than(&self, at: u64, from: &str, here: &str) -> bool {
        (
            self.info.last_register_unix,
            self.from.as_deref().unwrap_or(here),
        ) > (at, from)
    }
}

pub(crate) struct Store {
    disk: StoreWriter,
    path: PathBuf,
    index: RwLock<Index>,
    /// Serializes writers so the disk queue and the index change in the same order.
    writer: Mutex<()>,
    max_age_secs: u64,
    /// `store.max_devices_per_aor`.
    max_per_aor: usize,
    /// Bindings dropped to keep an AOR within `max_per_aor`.
    evicted: AtomicU64,
    /// The cluster's write-through (cluster.rs), when there is one.
    sink: OnceLock<Sink>,
}

impl Store {
    /// Opens (or creates) `dir/devices.redb`, loads it into memory and drops
    /// bindings not refreshed within `max_age_days`. A file redb finds corrupt is
    /// moved aside as `devices.redb.corrupt-<UTC time>`, with one error logged, and
    /// the store starts empty: the devices' next REGISTERs fill it again. An AOR
    /// with more than `max_per_aor` bindings keeps the most recently registered.
    pub(crate) fn open(
        dir: &Path,
        max_age_days: u32,
        max_per_aor: usize,
        now_unix: u64,
    ) -> Result<Store, StoreError> {
        // Device tokens are personal data: readable by the engine's user only, whatever
        // the umask. A directory the operator made keeps the modes it was given.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("devices.redb");
        let (db, index) = match load(&path) {
            Err(Load::Corrupt(why)) => {
                let aside = dir.join(format!("devices.redb.corrupt-{}", utc_stamp(now_unix)));
                std::fs::rename(&path, &aside).map_err(|e| {
                    StoreError(format!(
                        "{} is corrupt ({why}) and cannot be moved aside: {e}",
                        path.display()
                    ))
                })?;
                log::error!(
                    "device store: {} is not a readable database ({why}): moved aside as {}, starting with no bindings",
                    path.display(),
                    aside.display()
                );
                load(&path).map_err(|e| e.into_store_error(&path))?
            }
            r => r.map_err(|e| e.into_store_error(&path))?,
        };
        let disk = StoreWriter::start(db, path.clone())
            .map_err(|e| StoreError(format!("cannot start the writer thread: {e}")))?;
        let store = Store {
            disk,
            path,
            index: RwLock::new(index),
            writer: Mutex::new(()),
            max_age_secs: u64::from(max_age_days) * 86_400,
            max_per_aor,
            evicted: AtomicU64::new(0),
            sink: OnceLock::new(),
        };
        let purged = store.purge_expired(now_unix);
        let trimmed = store.trim_over_cap();
        log::info!(
            "device store {}: {} bindings loaded, {} expired ones removed, {} over store.max_devices_per_aor",
            store.path.display(),
            store.len(),
            purged,
            trimmed
        );
        Ok(store)
    }

    pub(crate) fn len(&self) -> usize {
        self.index.read().values().map(Vec::len).sum()
    }

    pub(crate) fn devices(&self, aor: &str) -> Vec<DeviceInfo> {
        self.index
            .read()
            .get(aor)
            .map(|v| v.iter().map(|e| e.info.clone()).collect())
            .unwrap_or_default()
    }

    /// Every binding, by AOR.
    pub(crate) fn all(&self) -> Vec<(String, DeviceInfo)> {
        let index = self.index.read();
        (index.iter())
            .flat_map(|(aor, v)| v.iter().map(move |e| (aor.clone(), e.info.clone())))
            .collect()
    }

    #[cfg(test)]
    fn device(&self, aor: &str, key: &str) -> Option<DeviceInfo> {
        let index = self.index.read();
        let entry = index.get(aor)?.iter().find(|e| e.info.key == key)?;
        Some(entry.info.clone())
    }

    /// Bindings evicted since the store opened (`store.max_devices_per_aor`).
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// (changes queued for the disk, failed commits).
    pub(crate) fn write_counts(&self) -> (u64, u64) {
        self.disk.counts()
    }

    /// Commits every queued change and stops the writer; later changes
    /// stay in memory only (and count as write errors).
    pub(crate) fn close(&self) {
        self.disk.close();
    }

    /// From now on every change made on this node is told to `sink`.
    pub(crate) fn set_sink(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    fn tell(&self, notify: bool, aor: &str, change: Change) {
        if let Some(sink) = self.sink.get().filter(|_| notify) {
            sink(aor, change);
        }
    }

    /// Stores a binding or refreshes it; a refresh of a recently written
    /// binding stays in memory (see PERSIST_REFRESH_AFTER_SECS).
    pub(crate) fn upsert(&self, aor: &str, info: DeviceInfo) -> Upsert {
        let _w = self.writer.lock();
        self.upsert_as(aor, info, None)
    }

    /// A binding Redis holds: as `upsert`, not told to the sink.
    pub(crate) fn upsert_from_cluster(&self, aor: &str, info: DeviceInfo) -> Upsert {
        let _w = self.writer.lock();
        self.upsert_as(aor, info, Some(""))
    }

    /// Bindings Redis holds removed: as `remove`, not told to the sink.
    pub(crate) fn remove_from_cluster(&self, aor: &str, keys: &[String]) -> usize {
        self.remove_where_as(aor, |e| keys.contains(&e.info.key), false)
    }

    /// A binding node `from` stored: as `upsert_from_cluster`, unless the copy here is
    /// newer (None; `here`: this node's id).
    pub(crate) fn upsert_if_newer(
        &self,
        aor: &str,
        info: DeviceInfo,
        from: &str,
        here: &str,
    ) -> Option<Upsert> {
        let _w = self.writer.lock();
        let newer_here = self.index.read().get(aor).is_some_and(|v| {
            v.iter().any(|e| {
                e.info.key == info.key && e.newer_than(info.last_register_unix, from, here)
            })
        });
        (!newer_here).then(|| self.upsert_as(aor, info, Some(from)))
    }

    /// Bindings another node removed at `at`: as `remove_from_cluster`, but a copy here
    /// registered later stays. One of the same second goes: the removal may well have
    /// been made because of it (APNs said its token is dead).
    pub(crate) fn remove_if_newer(&self, aor: &str, keys: &[String], at: u64) -> usize {
        self.remove_where_as(
            aor,
            |e| keys.contains(&e.info.key) && e.info.last_register_unix <= at,
            false,
        )
    }

    /// Under the writer lock; told to the sink when made here (`from` None).
    fn upsert_as(&self, aor: &str, info: DeviceInfo, from: Option<&str>) -> Upsert {
        let notify = from.is_none();
        let (kind, persisted, dupes, evicted) = {
            let index = self.index.read();
            let entries = index.get(aor).map_or(&[][..], Vec::as_slice);
            let (kind, persisted) = match entries.iter().find(|e| e.info.key == info.key) {
                None => (Upsert::New, 0),
                Some(old) => {
                    let o = &old.info;
                    let same = o.provider == info.provider
                        && o.token == info.token
                        && o.topic == info.topic;
                    let kind = if same {
                        Upsert::Refreshed
                    } else {
                        Upsert::Changed
                    };
                    (kind, old.persisted_register_unix)
                }
            };
            // The same token under another key is the same phone (it started or
            // stopped sending +sip.instance): keep one binding, or it gets two pushes.
            let dupes: Vec<String> = entries
                .iter()
                .filter(|e| e.info.token == info.token && e.info.key != info.key)
                .map(|e| e.info.key.clone())
                .collect();
            let others = entries
                .iter()
                .filter(|e| e.info.key != info.key && !dupes.contains(&e.info.key))
                .map(|e| (e.info.key.as_str(), e.info.last_register_unix));
            let this = (info.key.as_str(), info.last_register_unix);
            let evicted = over_cap(others.chain([this]), self.max_per_aor);
            (kind, persisted, dupes, evicted)
        };
        let must_write = kind != Upsert::Refreshed
            || !dupes.is_empty()
            || info.last_register_unix.saturating_sub(persisted) >= PERSIST_REFRESH_AFTER_SECS;
        let mut ops = Vec::new();
        if must_write {
            let record = serde_json::to_vec(&Record {
                provider: info.provider.clone(),
                token: info.token.clone(),
                topic: info.topic.clone(),
                contact: info.contact.clone(),
                last_register_unix: info.last_register_unix,
            })
            .expect("strings and an integer always serialize");
            ops.push(Op::Put {
                aor: aor.to_string(),
                key: info.key.clone(),
                record,
                new: kind == Upsert::New,
            });
        }
        ops.extend(dupes.iter().chain(&evicted).map(|k| Op::Delete {
            aor: aor.to_string(),
            key: k.clone(),
        }));
        if !ops.is_empty() {
            self.disk.send(ops);
        }
        self.tell(notify, aor, Change::Upsert(&info));
        let gone: Vec<String> = dupes.iter().chain(&evicted).cloned().collect();
        if !gone.is_empty() {
            self.tell(notify, aor, Change::Remove(&gone));
        }
        if !evicted.is_empty() {
            self.evicted
                .fetch_add(evicted.len() as u64, Ordering::Relaxed);
            log::debug!(
                "device store: {aor}: {} least recently registered bindings evicted (store.max_devices_per_aor)",
                evicted.len()
            );
        }
        let persisted = if must_write {
            info.last_register_unix
        } else {
            persisted
        };
        let mut index = self.index.write();
        let entries = index.entry(aor.to_string()).or_default();
        entries.retain(|e| {
            let key = &e.info.key;
            *key != info.key && !dupes.contains(key) && !evicted.contains(key)
        });
        // Last: the most recently registered, the last evicted of equal times.
        if !evicted.contains(&info.key) {
            entries.push(Entry {
                info,
                persisted_register_unix: persisted,
                from: from.map(Box::from),
            });
        }
        kind
    }

    /// Removes the bindings of `aor` that `doomed` selects; returns how many.
    fn remove_where(&self, aor: &str, doomed: impl Fn(&DeviceInfo) -> bool) -> usize {
        self.remove_where_as(aor, |e| doomed(&e.info), true)
    }

    fn remove_where_as(&self, aor: &str, doomed: impl Fn(&Entry) -> bool, notify: bool) -> usize {
        let _w = self.writer.lock();
        let keys: Vec<String> = match self.index.read().get(aor) {
            Some(entries) => entries
                .iter()
                .filter(|e| doomed(e))
                .map(|e| e.info.key.clone())
                .collect(),
            None => return 0,
        };
        if keys.is_empty() {
            return 0;
        }
        self.disk.send(
            keys.iter()
                .map(|k| Op::Delete {
                    aor: aor.to_string(),
                    key: k.clone(),
                })
                .collect(),
        );
        self.tell(notify, aor, Change::Remove(&keys));
        let mut index = self.index.write();
        if let Some(entries) = index.get_mut(aor) {
            entries.retain(|e| !keys.contains(&e.info.key));
            if entries.is_empty() {
                index.remove(aor);
            }
        }
        keys.len()
    }

    pub(crate) fn remove(&self, aor: &str, key: &str) -> bool {
        self.remove_where(aor, |d| d.key == key) > 0
    }

    /// A device unregistered: its binding, and any other of its token (the
    /// same phone stored under another key, e.g. before keys were normalised).
    pub(crate) fn remove_device(&self, aor: &str, key: &str, token: Option<&str>) -> bool {
        self.remove_where(aor, |d| d.key == key || Some(d.token.as_str()) == token) > 0
    }

    pub(crate) fn remove_all(&self, aor: &str) -> usize {
        self.remove_where(aor, |_| true)
    }

    /// APNs said `token` is dead (as of `dead_since_ms` when Apple says so).
    /// The binding goes unless the device registered a new token, or
    /// registered again after Apple's timestamp (the token is valid again).
    pub(crate) fn remove_dead(
        &self,
        aor: &str,
        key: &str,
        token: &str,
        dead_since_ms: Option<u64>,
    ) -> bool {
        self.remove_where(aor, |d| {
            d.key == key
                && d.token == token
                && dead_since_ms.map_or(true, |ms| d.last_register_unix * 1000 <= ms)
        }) > 0
    }

    /// Drops the least recently registered bindings of AORs over the cap; returns how many.
    fn trim_over_cap(&self) -> usize {
        let over: Vec<(String, Vec<String>)> = self
            .index
            .read()
            .iter()
            .filter(|(_, v)| v.len() > self.max_per_aor)
            .map(|(aor, v)| {
                let bindings = v
                    .iter()
                    .map(|e| (e.info.key.as_str(), e.info.last_register_unix));
                (aor.clone(), over_cap(bindings, self.max_per_aor))
            })
            .collect();
        let n: usize = over
            .iter()
            .map(|(aor, keys)| self.remove_where(aor, |d| keys.contains(&d.key)))
            .sum();
        self.evicted.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Drops bindings not refreshed within the maximum age; returns how many.
    pub(crate) fn purge_expired(&self, now_unix: u64) -> usize {
        let cutoff = now_unix.saturating_sub(self.max_age_secs);
        let aors: Vec<String> = self
            .index
            .read()
            .iter()
            .filter(|(_, v)| v.iter().any(|e| e.info.last_register_unix < cutoff))
            .map(|(aor, _)| aor.clone())
            .collect();
        aors.iter()
            .map(|aor| self.remove_where(aor, |d| d.last_register_unix < cutoff))
            .sum()
    }
}

/// Each AOR's bindings, the least recently registered first.
type Index = HashMap<String, Vec<Entry>>;

/// The keys of the least recently registered of `bindings` (key, last REGISTER) beyond
/// the first `max`; of equal times, those listed first.
fn over_cap<'a>(bindings: impl Iterator<Item = (&'a str, u64)>, max: usize) -> Vec<String> {
    let mut by_age: Vec<_> = bindings.collect();
    by_age.sort_by_key(|&(_, at)| at);
    let n = by_age.len().saturating_sub(max);
    by_age[..n].iter().map(|(key, _)| key.to_string()).collect()
}

/// Why `load` failed.
enum Load {
    /// redb finds no database in the file (junk, cut short, broken pages): moving it
    /// aside cures that, unlike a failure to reach the file (permissions, EIO), which
    /// would fail the same on a fresh one.
    Corrupt(String),
    Failed(String),
}

impl Load {
    fn into_store_error(self, path: &Path) -> StoreError {
        match self {
            Load::Corrupt(why) => StoreError(format!("{} is corrupt: {why}", path.display())),
            Load::Failed(why) => StoreError(format!("cannot open {}: {why}", path.display())),
        }
    }
}

impl From<redb::Error> for Load {
    fn from(e: redb::Error) -> Load {
        match e {
            redb::Error::Corrupted(why) => Load::Corrupt(why),
            // redb's answers to a file that does not start as a database does.
            redb::Error::Io(e) if e.kind() == ErrorKind::InvalidData => {
                Load::Corrupt("not a redb file".into())
            }
            redb::Error::Io(e) if e.kind() == ErrorKind::UnexpectedEof => {
                Load::Corrupt("cut short".into())
            }
            e => Load::Failed(e.to_string()),
        }
    }
}

/// Opens (or creates) the file and reads every binding.
fn load(path: &Path) -> Result<(Database, Index), Load> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .and_then(|_| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| Load::Failed(e.to_string()))?;
    // redb asserts on some damaged files (one cut short) rather than saying Corrupted.
    quietly(|| read(path)).unwrap_or_else(|panic| Err(Load::Corrupt(format!("redb: {panic}"))))
}

fn read(path: &Path) -> Result<(Database, Index), Load> {
    let db = Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            Load::Failed("already open in another engine or process".into())
        }
        e => redb::Error::from(e).into(),
    })?;
    let txn = db.begin_write().map_err(redb::Error::from)?;
    txn.open_table(BINDINGS).map_err(redb::Error::from)?;
    txn.commit().map_err(redb::Error::from)?;

    let mut index = Index::new();
    let read = db.begin_read().map_err(redb::Error::from)?;
    let table = read.open_table(BINDINGS).map_err(redb::Error::from)?;
    for row in table.iter().map_err(redb::Error::from)? {
        let (k, v) = row.map_err(redb::Error::from)?;
        let (aor, key) = k.value();
        let Ok(r) = serde_json::from_slice::<Record>(v.value()) else {
            let key = super::redact::key(key);
            log::warn!("device store: unreadable binding for {aor} / {key} skipped");
            continue;
        };
        index.entry(aor.to_string()).or_default().push(Entry {
            info: DeviceInfo {
                key: key.to_string(),
                provider: r.provider,
                token: r.token,
                topic: r.topic,
                contact: r.contact,
                last_register_unix: r.last_register_unix,
            },
            persisted_register_unix: r.last_register_unix,
            from: Some("".into()),
        });
    }
    drop(table);
    drop(read);
    for bindings in index.values_mut() {
        bindings.sort_by_key(|e| e.info.last_register_unix);
    }
    Ok((db, index))
}

/// Runs `f` and returns its panic's message, if it panics, without the default hook's
/// report on stderr (other threads' panics are reported as before).
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                report(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    outcome.map_err(|panic| panic_message(&*panic).unwrap_or("panic").to_string())
}

/// `unix` as `20261205T071500Z` (UTC), for a file name.
fn utc_stamp(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // The proleptic Gregorian date of a day count (H. Hinnant's civil_from_days).
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_800_000_000;

    fn device(key: &str, token: &str, at: u64) -> DeviceInfo {
        DeviceInfo {
            key: key.into(),
            provider: "apns".into(),
            token: token.into(),
            topic: "com.example.voip".into(),
            contact: format!("sip:{key}@h"),
            last_register_unix: at,
        }
    }

    #[test]
    fn store_files_are_the_engine_users_only() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("new").join("store");
        drop(Store::open(&store_dir, 30, 10, NOW).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store_dir), 0o700, "the directory it created");
        assert_eq!(mode(&store_dir.join("devices.redb")), 0o600);

        // A file left readable by an older version is tightened.
        let file = store_dir.join("devices.redb");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(&store_dir, 30, 10, NOW).unwrap());
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_a_fresh_store_started() {
        let junk = b"not a database\n".repeat(1_000);
        let whole = {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            for i in 0..200 {
                s.upsert(&format!("u{i}"), device("k", &format!("{i:02x}"), NOW));
            }
            drop(s);
            std::fs::read(dir.path().join("devices.redb")).unwrap()
        };
        let cases = [
            ("junk", &junk[..]),
            ("cut in half", &whole[..whole.len() / 2]),
            ("cut within its header", &whole[..100]),
        ];
        for (what, bytes) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("devices.redb"), bytes).unwrap();
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(s.len(), 0, "{what}");
            s.upsert("alice", device("a1", "aa", NOW));
            drop(s);
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            assert_eq!(s.device("alice", "a1").unwrap().token, "aa", "{what}");
            let aside = dir.path().join("devices.redb.corrupt-20270115T080000Z");
            assert_eq!(
                std::fs::read(aside).unwrap(),
                bytes,
                "{what}: kept as it was"
            );
        }
    }

    #[test]
    fn a_file_that_cannot_be_reached_is_an_error_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("devices.redb")).unwrap();
        let e = Store::open(dir.path(), 30, 10, NOW).err().unwrap();
        assert!(e.to_string().contains("cannot open"), "{e}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "nothing moved aside");
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(NOW), "20270115T080000Z");
        assert_eq!(utc_stamp(1_798_500_000), "20261228T232000Z");
        assert_eq!(utc_stamp(951_782_400 + 86_399), "20000229T235959Z");
    }

    fn keys_of(s: &Store, aor: &str) -> Vec<String> {
        let mut keys: Vec<_> = s.devices(aor).into_iter().map(|d| d.key).collect();
        keys.sort();
        keys
    }

    fn keys(range: impl Iterator<Item = usize>) -> Vec<String> {
        range.map(|i| format!("d{i:02}")).collect()
    }

    #[test]
    fn an_aor_keeps_its_most_recently_registered_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let register = |s: &Store, aor: &str, i: usize| {
            s.upsert(aor, device(&format!("d{i:02}"), &format!("{i:02x}"), NOW));
        };
        {
            // All in the same second: the order of the REGISTERs decides.
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            (0..15).for_each(|i| register(&s, "carol", i));
            assert_eq!(keys_of(&s, "carol"), keys(5..15), "the 10 most recent");
            assert_eq!(s.evicted(), 5);

            (0..10).for_each(|i| register(&s, "alice", i));
            register(&s, "alice", 0);
            (10..15).for_each(|i| register(&s, "alice", i));
            let kept = keys([0].into_iter().chain(6..15));
            assert_eq!(keys_of(&s, "alice"), kept, "d00 refreshed, not evicted");
            assert_eq!(s.evicted(), 10);
            settle(&s);
        }
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        assert_eq!(keys_of(&s, "carol"), keys(5..15), "evicted on disk too");
        assert_eq!(keys_of(&s, "alice"), keys([0].into_iter().chain(6..15)));
        assert_eq!(s.evicted(), 0);
    }

    #[test]
    fn aors_over_the_cap_are_trimmed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 30, 20, NOW).unwrap();
            for i in 0..15 {
                // d00 the most recent: the keys' order is not the age's.
                let at = NOW - i as u64;
                s.upsert(
                    "alice",
                    device(&format!("d{i:02}"), &format!("{i:02x}"), at),
                );
            }
            s.upsert("bob", device("b1", "bb", NOW));
        }
        {
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            assert_eq!(keys_of(&s, "alice"), keys(0..10));
            assert_eq!(s.evicted(), 5);
            assert_eq!(s.len(), 11, "bob untouched");
        }
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        assert_eq!((keys_of(&s, "alice"), s.evicted()), (keys(0..10), 0));
    }

    #[test]
    fn bindings_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            assert_eq!(s.upsert("alice", device("a1", "aa", NOW)), Upsert::New);
            assert_eq!(s.upsert("alice", device("a2", "bb", NOW)), Upsert::New);
            assert_eq!(s.upsert("bob", device("b1", "cc", NOW)), Upsert::New);
            assert!(s.remove("bob", "b1"));
            assert!(!s.remove("bob", "b1"));
        }
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        let mut keys: Vec<_> = s.devices("alice").into_iter().map(|d| d.key).collect();
        keys.sort();
        assert_eq!(keys, ["a1", "a2"]);
        assert!(s.devices("bob").is_empty());
        assert_eq!(s.device("alice", "a2").unwrap().token, "bb");
    }

    fn pending(s: &Store) -> u64 {
        s.write_counts().0
    }

    /// Waits until the writer has committed everything queued.
    fn settle(s: &Store) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while pending(s) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(s.write_counts(), (0, 0), "all committed, no errors");
    }

    /// A 2 MB tmpfs filled to the last byte (root only: skipped otherwise).
    struct FullDisk {
        dir: tempfile::TempDir,
    }

    impl FullDisk {
        fn mount() -> Option<FullDisk> {
            let dir = tempfile::tempdir().unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(FullDisk { dir })
        }

        fn fill(&self) {
            use std::io::Write;
            let mut f = std::fs::File::create(self.dir.path().join("filler")).unwrap();
            while f.write_all(&[0u8; 4096]).is_ok() {}
        }

        fn free(&self) {
            std::fs::remove_file(self.dir.path().join("filler")).unwrap();
        }
    }

    impl Drop for FullDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.dir.path())
                .status();
        }
    }

    #[test]
    fn changes_reach_the_disk_once_space_returns() {
        let Some(disk) = FullDisk::mount() else {
            eprintln!("skipped: cannot mount a tmpfs (needs root)");
            return;
        };
        let dir = disk.dir.path().join("store");
        let big = "x".repeat(2_000);
        let mut n = 0;
        {
            let s = Store::open(&dir, 30, 10, NOW).unwrap();
            s.upsert("bob", device("b1", "bb", NOW));
            settle(&s);
            disk.fill();
            // Bindings until a commit fails for want of space.
            while s.write_counts().1 == 0 {
                let mut d = device(&format!("a{n}"), &format!("t{n}"), NOW);
                d.contact = format!("sip:a{n}@{big}");
                s.upsert(&format!("alice{n}"), d);
                n += 1;
                while pending(&s) > 0 && s.write_counts().1 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            // More while the disk stays full: they wait behind the failed ones.
            for _ in 0..5 {
                s.upsert(&format!("alice{n}"), device("a", &format!("t{n}"), NOW));
                n += 1;
            }
            assert!(s.remove("bob", "b1"));
            disk.free();
            while pending(&s) > 0 {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let s = Store::open(&dir, 30, 10, NOW).unwrap();
        assert_eq!(s.len(), n, "every binding on disk");
        assert!(s.devices("bob").is_empty(), "the removal on disk");
    }

    #[test]
    fn changes_to_one_binding_coalesce_while_the_disk_waits() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            let held = s.disk.hold();
            for i in 0..1_000 {
                s.upsert("alice", device("a1", &format!("{i:04x}"), NOW));
            }
            assert_eq!(pending(&s), 1, "one write waits for 1,000 changes");
            s.upsert("bob", device("b1", "bb", NOW));
            assert_eq!(pending(&s), 2);
            drop(held);
            settle(&s);
        }
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        assert_eq!(s.device("alice", "a1").unwrap().token, "03e7", "the latest");
        assert_eq!(s.device("bob", "b1").unwrap().token, "bb");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn removals_coalesce_with_the_writes_they_undo() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            for (aor, key, token) in [
                ("on-disk", "k", "aa"),
                ("back", "k", "bb"),
                ("dup", "old", "cc"),
                ("changed", "k", "ff"),
            ] {
                s.upsert(aor, device(key, token, NOW));
            }
            settle(&s);
            let held = s.disk.hold();
            // Never on disk: nothing to write at all.
            s.upsert("fresh", device("k", "dd", NOW));
            assert!(s.remove("fresh", "k"));
            assert_eq!(pending(&s), 0);
            // On disk: the removal must reach it, and so must a later re-add.
            assert_eq!(s.remove_all("on-disk"), 1);
            assert!(s.remove("back", "k"));
            s.upsert("back", device("k", "ee", NOW));
            s.upsert("changed", device("k", "fe", NOW));
            assert!(s.remove("changed", "k"));
            // The same token under a new key replaces the old binding.
            s.upsert("dup", device("new", "cc", NOW));
            assert_eq!(pending(&s), 5);
            drop(held);
            settle(&s);
        }
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        assert!(s.devices("fresh").is_empty());
        assert!(s.devices("on-disk").is_empty());
        assert!(s.devices("changed").is_empty());
        assert_eq!(s.device("back", "k").unwrap().token, "ee");
        let dup: Vec<_> = s.devices("dup").into_iter().map(|d| d.key).collect();
        assert_eq!(dup, ["new"]);
    }

    #[test]
    fn closing_commits_what_waits() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            for i in 0..100 {
                s.upsert(&format!("u{i}"), device("k", &format!("{i:02x}"), NOW));
            }
            s.close();
            assert_eq!(s.write_counts(), (0, 0));
            s.upsert("late", device("k", "ff", NOW));
            assert_eq!(s.write_counts(), (0, 1), "a change after close is an error");
        }
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        assert_eq!(s.len(), 100);
        assert_eq!(s.device("u42", "k").unwrap().token, "2a");
    }

    #[test]
    fn second_open_of_the_same_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        let e = Store::open(dir.path(), 30, 10, NOW).err().unwrap();
        assert!(e.to_string().contains("already open"), "{e}");
    }

    #[test]
    fn refreshes_are_written_only_when_the_stored_time_is_old() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            s.upsert("alice", device("a1", "aa", NOW));
            let mut moved = device("a1", "aa", NOW + 60);
            moved.contact = "sip:a1@198.51.100.1:40000".into();
            assert_eq!(s.upsert("alice", moved), Upsert::Refreshed);
            assert_eq!(
                s.device("alice", "a1").unwrap().contact,
                "sip:a1@198.51.100.1:40000"
            );
            assert_eq!(
                s.device("alice", "a1").unwrap().last_register_unix,
                NOW + 60
            );
        }
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        let d = s.device("alice", "a1").unwrap();
        assert_eq!(
            (d.last_register_unix, d.contact.as_str()),
            (NOW, "sip:a1@h")
        );
        let later = NOW + PERSIST_REFRESH_AFTER_SECS;
        assert_eq!(
            s.upsert("alice", device("a1", "aa", later)),
            Upsert::Refreshed
        );
        assert_eq!(
            s.upsert("alice", device("a1", "dd", later)),
            Upsert::Changed
        );
        drop(s);
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        let d = s.device("alice", "a1").unwrap();
        assert_eq!((d.token.as_str(), d.last_register_unix), ("dd", later));
    }

    #[test]
    fn stale_bindings_expire_on_open_and_on_purge() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
            s.upsert("alice", device("old", "aa", NOW - 31 * DAY));
            s.upsert("alice", device("new", "bb", NOW - 29 * DAY));
        }
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        let keys: Vec<_> = s.devices("alice").into_iter().map(|d| d.key).collect();
        assert_eq!(keys, ["new"]);
        assert_eq!(s.purge_expired(NOW + 2 * DAY), 1);
        assert!(s.devices("alice").is_empty());
        drop(s);
        assert_eq!(Store::open(dir.path(), 30, 10, NOW).unwrap().len(), 0);
    }

    #[test]
    fn dead_tokens_go_unless_replaced_or_registered_since() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 30, 10, NOW).unwrap();
        s.upsert("alice", device("a1", "aa", NOW));
        assert!(!s.remove_dead("alice", "a1", "zz", None), "another token");
        let before_register = (NOW - 5) * 1000;
        assert!(!s.remove_dead("alice", "a1", "aa", Some(before_register)));
        assert!(s.remove_dead("alice", "a1", "aa", Some(NOW * 1000 + 1)));
        assert!(s.devices("alice").is_empty());
        s.upsert("bob", device("b1", "bb", NOW));
        s.upsert("bob", device("b2", "cc", NOW));
        assert_eq!(s.upsert("bob", device("b3", "cc", NOW)), Upsert::New);
        let keys: Vec<_> = s.devices("bob").into_iter().map(|d| d.key).collect();
        assert_eq!(keys, ["b1", "b3"], "one binding per token");
        assert_eq!(s.remove_all("bob"), 2);
        assert_eq!(s.len(), 0);
    }
}
