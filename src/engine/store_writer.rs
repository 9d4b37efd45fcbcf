//! The device store's write-behind thread. A durable redb commit costs an
//! fsync (0.3 ms, several ms on a busy disk); the host's REGISTER path must
//! not wait for it. Changes wait in a map keyed by binding, and one thread
//! commits everything waiting in one write transaction (group commit), so the
//! disk keeps up with any REGISTER rate at one fsync per batch.
//!
//! Bounded by coalescing, not by a cap: the disk only needs each binding's
//! latest state, so a binding's later change replaces its waiting one. What
//! waits is then at most one entry per binding in memory or on disk, however
//! long the disk stalls, and the caller never waits or loses a change. A
//! capped queue would have to drop changes, and a dropped removal brings a
//! binding back on the next start.
//!
//! A failed commit (ENOSPC, EIO) loses nothing: its changes go back to wait
//! under any newer ones, the database is reopened (redb refuses all further
//! writes on a handle that saw an I/O error) and the writer retries with a
//! bounded backoff, so once the disk recovers every change reaches it.

use parking_lot::{Condvar, Mutex};
use redb::Database;
use std::collections::hash_map::{Entry, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::store::BINDINGS;

/// Retry delay after a failed commit, doubled per failure up to the maximum.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One row change; the key is (AOR, device key).
pub(crate) enum Op {
    Put {
        aor: String,
        key: String,
        record: Vec<u8>,
        /// The binding is not in the index, so once the changes queued before
        /// this one are committed it has no row either.
        new: bool,
    },
    Delete {
        aor: String,
        key: String,
    },
}

/// A binding's latest change, not yet taken by the writer.
struct Waiting {
    /// `None` deletes the row.
    record: Option<Vec<u8>>,
    /// The row is absent before this change, so deleting it writes nothing.
    absent_before: bool,
}

#[derive(Default)]
struct Queue {
    waiting: HashMap<(String, String), Waiting>,
    /// Bindings taken by the writer and not yet committed.
    committing: usize,
    closed: bool,
}

impl Queue {
    fn apply(&mut self, op: Op) {
        match op {
            Op::Put {
                aor,
                key,
                record,
                new,
            } => match self.waiting.entry((aor, key)) {
                Entry::Occupied(mut w) => w.get_mut().record = Some(record),
                Entry::Vacant(v) => {
                    v.insert(Waiting {
                        record: Some(record),
                        absent_before: new,
                    });
                }
            },
            Op::Delete { aor, key } => match self.waiting.entry((aor, key)) {
                Entry::Occupied(w) if w.get().absent_before => {
                    w.remove();
                }
                Entry::Occupied(mut w) => w.get_mut().record = None,
                Entry::Vacant(v) => {
                    v.insert(Waiting {
                        record: None,
                        absent_before: false,
                    });
                }
            },
        }
    }

    /// Puts back a batch whose commit failed. A binding changed since keeps
    /// its newer change, but the row's state before it is the failed one's.
    fn requeue(&mut self, failed: HashMap<(String, String), Waiting>) {
        for (row, old) in failed {
            match self.waiting.entry(row) {
                Entry::Occupied(mut w) => {
                    w.get_mut().absent_before = old.absent_before;
                    if w.get().absent_before && w.get().record.is_none() {
                        w.remove();
                    }
                }
                Entry::Vacant(v) => {
                    v.insert(old);
                }
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Failed commits; their changes wait for the next attempt.
    errors: AtomicU64,
    /// Held by a test to keep the writer from taking the waiting changes.
    #[cfg(test)]
    hold: Mutex<()>,
}

pub(crate) struct StoreWriter {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl StoreWriter {
    /// `path` is `db`'s file, reopened after a failed commit.
    pub(crate) fn start(db: Database, path: PathBuf) -> std::io::Result<StoreWriter> {
        let inner = Arc::new(Inner::default());
        let shared = inner.clone();
        let thread = std::thread::Builder::new()
            .name("pushpark-store".into())
            .spawn(move || run(&path, Some(db), &shared))?;
        Ok(StoreWriter {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues one change (its ops are committed together); never waits for
    /// the disk. The caller serializes calls with its in-memory changes, so
    /// each binding's latest queued state is its state in memory.
    pub(crate) fn send(&self, change: Vec<Op>) {
        let mut q = self.inner.queue.lock();
        if q.closed {
            drop(q);
            self.inner.errors.fetch_add(1, Ordering::Relaxed);
            log::error!("device store: change after shutdown not written");
            return;
        }
        for op in change {
            q.apply(op);
        }
        drop(q);
        self.inner.wake.notify_one();
    }

    /// (bindings whose latest change is not yet committed, failed commits).
    pub(crate) fn counts(&self) -> (u64, u64) {
        let q = self.inner.queue.lock();
        (
            (q.waiting.len() + q.committing) as u64,
            self.inner.errors.load(Ordering::Relaxed),
        )
    }

    /// Keeps the writer from taking waiting changes while the guard lives.
    #[cfg(test)]
    pub(crate) fn hold(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.inner.hold.lock()
    }

    /// Commits everything queued, then stops the thread. Idempotent.
    pub(crate) fn close(&self) {
        self.inner.queue.lock().closed = true;
        self.inner.wake.notify_one();
        if let Some(t) = self.thread.lock().take() {
            if t.join().is_err() {
                log::error!("device store: the writer thread panicked");
            }
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// Ends when the queue is closed and drained, or a commit fails after close.
fn run(path: &std::path::Path, mut db: Option<Database>, inner: &Inner) {
    let mut backoff = RETRY_FIRST;
    loop {
        let batch = {
            let mut q = inner.queue.lock();
            while q.waiting.is_empty() && !q.closed {
                inner.wake.wait(&mut q);
            }
            #[cfg(test)]
            let mut q = {
                drop(q);
                let _held = inner.hold.lock();
                inner.queue.lock()
            };
            if q.waiting.is_empty() {
                return;
            }
            // All that waits, at most one entry per binding: changes queued
            // together are committed together.
            let batch = std::mem::take(&mut q.waiting);
            q.committing = batch.len();
            batch
        };
        // A handle that failed is dropped: the next attempt reopens the file.
        let result = db.take().map_or_else(|| reopen(path), Ok).and_then(|open| {
            commit(&open, &batch)?;
            db = Some(open);
            Ok(())
        });
        let Err(e) = result else {
            backoff = RETRY_FIRST;
            // After the durable commit: nothing pending means all is on disk.
            inner.queue.lock().committing = 0;
            continue;
        };
        inner.errors.fetch_add(1, Ordering::Relaxed);
        let n = batch.len();
        let mut q = inner.queue.lock();
        q.committing = 0;
        q.requeue(batch);
        if q.closed {
            log::error!("device store: {n} changes not written at shutdown: {e}");
            return;
        }
        log::error!("device store: {n} changes not written, retrying in {backoff:?}: {e}");
        // New changes wake the writer; only close cuts the wait short.
        let until = Instant::now() + backoff;
        while !q.closed && !inner.wake.wait_until(&mut q, until).timed_out() {}
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

fn reopen(path: &std::path::Path) -> Result<Database, String> {
    Database::create(path).map_err(|e| format!("cannot reopen {}: {e}", path.display()))
}

fn commit(db: &Database, batch: &HashMap<(String, String), Waiting>) -> Result<(), String> {
    let text = |e: redb::Error| e.to_string();
    let txn = db.begin_write().map_err(|e| text(e.into()))?;
    {
        let mut table = txn.open_table(BINDINGS).map_err(|e| text(e.into()))?;
        for ((aor, key), change) in batch {
            let row = (aor.as_str(), key.as_str());
            match &change.record {
                Some(record) => table.insert(row, record.as_slice()).map(drop),
                None => table.remove(row).map(drop),
            }
            .map_err(|e| text(e.into()))?;
        }
    }
    txn.commit().map_err(|e| text(e.into()))
}
