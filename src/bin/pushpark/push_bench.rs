//! What `apns bench` and `fcm bench` share: keep `concurrency` pushes in flight
//! until `count` are done, then print the figures (the last line is the same
//! for both services: `pushes_per_sec=.. p50_ms=.. p99_ms=.. errors=..`).

use parking_lot::Mutex;
use pushpark::push_client::{Client, Credentials, Outcome, Service};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How much load `apns bench` and `fcm bench` put on the service.
#[derive(clap::Args)]
pub struct Load {
    /// Pushes to send.
    #[arg(long)]
    pub count: usize,
    /// Pushes in flight at once.
    #[arg(long)]
    pub concurrency: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Client runtime threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

struct Run<P> {
    template: P,
    timeout: Duration,
    unclaimed: AtomicUsize,
    finished: AtomicUsize,
    errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
    total: usize,
    all_done: Mutex<Option<mpsc::Sender<()>>>,
}

impl<P> Run<P> {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().get_or_insert(what);
    }

    fn finish_one(&self) {
        if self.finished.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            if let Some(tx) = self.all_done.lock().take() {
                let _ = tx.send(());
            }
        }
    }
}

/// Submits the next push, if any is left; its completion submits the one after,
/// from the client's thread, so `concurrency` pushes stay in flight.
fn launch<S, C>(client: &Arc<Client<S, C>>, run: &Arc<Run<S::Push>>)
where
    S: Service,
    S::Push: Clone + Send + Sync,
    C: Credentials,
{
    let claimed = run
        .unclaimed
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    if claimed.is_err() {
        return;
    }
    let weak = Arc::downgrade(client);
    let r = run.clone();
    let submitted = client.submit(
        run.template.clone(),
        Instant::now() + run.timeout,
        Box::new(move |result| {
            if !matches!(result.outcome, Outcome::Delivered) {
                r.error(format!("{} ({:?})", result.outcome, result.last_error));
            }
            if let Some(client) = weak.upgrade() {
                launch(&client, &r);
            }
            r.finish_one();
        }),
    );
    if let Err(e) = submitted {
        run.error(e.to_string());
        run.finish_one();
    }
}

/// Sends `load.count` copies of `template`, `load.concurrency` at a time, through a
/// connected client.
pub fn bench<S, C>(
    client: Client<S, C>,
    template: S::Push,
    load: &Load,
    timeout: Duration,
) -> Result<ExitCode, String>
where
    S: Service,
    S::Push: Clone + Send + Sync,
    C: Credentials,
{
    let (count, concurrency) = (load.count, load.concurrency);
    if count == 0 || concurrency == 0 {
        return Err("--count and --concurrency must be at least 1".into());
    }
    let client = Arc::new(client);
    let (tx, rx) = mpsc::channel();
    let run = Arc::new(Run {
        template,
        timeout,
        unclaimed: AtomicUsize::new(count),
        finished: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        total: count,
        all_done: Mutex::new(Some(tx)),
    });
    let start = Instant::now();
    for _ in 0..concurrency.min(count) {
        launch(&client, &run);
    }
    rx.recv().map_err(|_| "the client stopped".to_string())?;
    let elapsed = start.elapsed().as_secs_f64();
    let m = client.metrics();
    let errors = run.errors.load(Ordering::Relaxed);
    if let Some(first) = run.first_error.lock().as_ref() {
        eprintln!("first error: {first}");
    }
    println!(
        "sent={} delivered={} retried={} unconfirmed={} connections_opened={} \
         seconds={elapsed:.3}",
        m.sent, m.delivered, m.retried, m.unconfirmed, m.connections_opened
    );
    println!(
        "pushes_per_sec={:.1} p50_ms={:.3} p99_ms={:.3} errors={errors}",
        count as f64 / elapsed,
        m.latency_p50_ms,
        m.latency_p99_ms
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
