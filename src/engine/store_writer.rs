//! The device store's write-behind thread. A durable redb commit costs an
//! fsync (0.3 ms, several ms on a busy disk); the host's REGISTER path must
//! not wait for it. Changes are queued in order and one thread applies all
//! that are waiting in one write transaction (group commit), so the disk
//! keeps up with any REGISTER rate at one fsync per batch.

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use redb::Database;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::store::BINDINGS;

/// One row change; the key is (AOR, device key).
pub(crate) enum Op {
    Put {
        aor: String,
        key: String,
        record: Vec<u8>,
    },
    Delete {
        aor: String,
        key: String,
    },
}

/// Bounds one transaction's size after a long stall (e.g. a slow disk).
const MAX_CHANGES_PER_COMMIT: usize = 10_000;

#[derive(Default)]
struct Counts {
    /// Changes queued and not yet committed (or failed).
    pending: AtomicU64,
    /// Batches whose commit failed; their changes live on in memory only.
    errors: AtomicU64,
}

pub(crate) struct StoreWriter {
    /// `None` once closed.
    tx: Mutex<Option<Sender<Vec<Op>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counts: Arc<Counts>,
}

impl StoreWriter {
    pub(crate) fn start(db: Database) -> std::io::Result<StoreWriter> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("pushpark-store".into())
            .spawn(move || run(&db, &rx, &c))?;
        Ok(StoreWriter {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            counts,
        })
    }

    /// Queues one change (its ops are committed together); never waits for
    /// the disk. The caller serializes calls so the queue order is the
    /// order of the in-memory changes.
    pub(crate) fn send(&self, change: Vec<Op>) {
        if change.is_empty() {
            return;
        }
        self.counts.pending.fetch_add(1, Ordering::SeqCst);
        let sent = match &*self.tx.lock() {
            Some(tx) => tx.send(change).is_ok(),
            None => false,
        };
        if !sent {
            self.counts.pending.fetch_sub(1, Ordering::SeqCst);
            self.counts.errors.fetch_add(1, Ordering::Relaxed);
            log::error!("device store: change after shutdown not written");
        }
    }

    /// (changes not yet committed, failed commits).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.counts.pending.load(Ordering::SeqCst),
            self.counts.errors.load(Ordering::Relaxed),
        )
    }

    /// Commits everything queued, then stops the thread. Idempotent.
    pub(crate) fn close(&self) {
        drop(self.tx.lock().take());
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

/// Ends when the queue is closed and drained.
fn run(db: &Database, rx: &Receiver<Vec<Op>>, counts: &Counts) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(MAX_CHANGES_PER_COMMIT - 1));
        if let Err(e) = commit(db, &batch) {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "device store: {} changes not written (kept in memory): {e}",
                batch.len()
            );
        }
        // After the durable commit: pending == 0 means all is on disk.
        counts
            .pending
            .fetch_sub(batch.len() as u64, Ordering::SeqCst);
    }
}

fn commit(db: &Database, batch: &[Vec<Op>]) -> Result<(), String> {
    let text = |e: redb::Error| e.to_string();
    let txn = db.begin_write().map_err(|e| text(e.into()))?;
    {
        let mut table = txn.open_table(BINDINGS).map_err(|e| text(e.into()))?;
        for op in batch.iter().flatten() {
            match op {
                Op::Put { aor, key, record } => {
                    table
                        .insert((aor.as_str(), key.as_str()), record.as_slice())
                        .map_err(|e| text(e.into()))?;
                }
                Op::Delete { aor, key } => {
                    table
                        .remove((aor.as_str(), key.as_str()))
                        .map_err(|e| text(e.into()))?;
                }
            }
        }
    }
    txn.commit().map_err(|e| text(e.into()))
}
