//! Memory: with detection on, create and drop 1 000 000 mutexes (locking
//! each, half of them nested under another) and 100 000 work queues (a few
//! used, all destroyed), and compare resident memory (from
//! `/proc/self/statm`) before and after. Instances must be freed and classes
//! are interned per creation site, so nothing should grow. For reference,
//! the same mutex churn runs first with plain tokio mutexes and with the
//! wrapper before detection is turned on (once on, it stays on for the
//! process).
//!
//! Not a criterion bench (`harness = false`, plain `main`): it prints
//! `MEMORY ...` lines with the figures in MiB.
//!
//! ```sh
//! cargo bench --bench memory
//! ```

use std::time::Instant;

use tokio::runtime::Builder;

mod common;
use common::mib;

const MUTEXES: usize = 1_000_000;
const QUEUES: usize = 100_000;
/// Instances alive at once: created, used, then dropped as a batch.
const MUTEX_BATCH: usize = 100_000;
const QUEUE_BATCH: usize = 10_000;
/// One queue in this many gets a work item (and so a worker run and a used flag).
const USED_EVERY: usize = 1_000;
/// Batches run before measuring, so the allocator's heap (and glibc's
/// adaptive mmap threshold) has reached its steady size.
const WARM_UP: usize = 3;

fn rss() -> f64 {
    common::resident_bytes() as f64
}

/// Resident memory around one phase, and after each of its batches.
#[derive(Default)]
struct Figures {
    before: f64,
    peak: f64,
    batches: Vec<f64>,
    after: f64,
}

impl Figures {
    fn print(&self, what: &str) {
        println!(
            "MEMORY {what}: before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB, \
             after - before = {:+.1} MiB",
            mib(self.before),
            mib(self.peak),
            mib(self.after),
            mib(self.after - self.before),
        );
        let batches: Vec<String> = self
            .batches
            .iter()
            .map(|b| format!("{:.1}", mib(*b)))
            .collect();
        println!(
            "MEMORY   resident after each batch (MiB): {}",
            batches.join(" ")
        );
    }
}

/// Runs `warm_up` batches (so the allocator's heap reaches its steady size),
/// then measures `batches` batches of `phase`.
fn measure<F: std::future::Future<Output = f64>>(
    runtime: &tokio::runtime::Runtime,
    warm_up: usize,
    batches: usize,
    mut phase: impl FnMut() -> F,
) -> Figures {
    runtime.block_on(async {
        for _ in 0..warm_up {
            phase().await;
        }
        // Allocated before the first figure, so it does not fragment the heap.
        let mut figures = Figures {
            batches: Vec::with_capacity(batches),
            ..Figures::default()
        };
        figures.before = rss();
        for _ in 0..batches {
            figures.peak = figures.peak.max(phase().await);
            figures.batches.push(rss());
        }
        figures.after = rss();
        figures
    })
}

/// One batch of `n` plain tokio mutexes, locked in pairs, then dropped;
/// returns the resident memory while they were alive.
async fn plain_mutexes(n: usize) -> f64 {
    let mutexes: Vec<tokio::sync::Mutex<u64>> =
        (0..n).map(|_| tokio::sync::Mutex::new(0)).collect();
    for pair in mutexes.chunks(2) {
        let a = pair[0].lock().await;
        let b = pair[1].lock().await;
        drop((a, b));
    }
    rss()
}

/// One batch of `n` lockdep mutexes from two creation sites (two classes,
/// whatever the instance count), locked in pairs (outer then inner), then
/// dropped; returns the resident memory while they were alive.
async fn lockdep_mutexes(n: usize) -> f64 {
    let mutexes: Vec<(async_lockdep::Mutex<u64>, async_lockdep::Mutex<u64>)> = (0..n / 2)
        .map(|_| {
            let outer = async_lockdep::Mutex::new(0);
            let inner = async_lockdep::Mutex::new(0);
            (outer, inner)
        })
        .collect();
    for (outer, inner) in &mutexes {
        let a = outer.lock().await;
        let b = inner.lock().await;
        drop((a, b));
    }
    rss()
}

/// One batch of `n` work queues (one in `USED_EVERY` gets an item), all
/// destroyed; returns the resident memory while they were alive.
async fn work_queues(n: usize) -> f64 {
    let queues: Vec<async_lockdep::WorkQueue> =
        (0..n).map(|_| async_lockdep::WorkQueue::new("q")).collect();
    let handles: Vec<_> = queues
        .iter()
        .step_by(USED_EVERY)
        .map(|queue| queue.queue(async {}))
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let peak = rss();
    for queue in queues {
        queue.destroy().await.unwrap();
    }
    peak
}

fn main() {
    // `cargo test --benches`: a hundredth of the work, same code.
    let scale = if common::bench_mode() { 1 } else { 100 };
    let (mutexes, queues) = (MUTEXES / scale, QUEUES / scale);
    let (mutex_batch, queue_batch) = (MUTEX_BATCH / scale, QUEUE_BATCH / scale);

    let runtime = Builder::new_current_thread().build().unwrap();
    common::resident_bytes(); // reads the page size once, outside the figures
    let start = Instant::now();
    println!("MEMORY start: {:.1} MiB resident", mib(rss()));

    // Reference: plain tokio.
    let plain = measure(&runtime, WARM_UP, mutexes / mutex_batch, || {
        plain_mutexes(mutex_batch)
    });
    plain.print(&format!("plain tokio, {mutexes} mutexes"));

    let detector = async_lockdep::Detector::new();
    if detector.status().enabled {
        println!("MEMORY detection is already on (ASYNC_LOCKDEP=1?): the off run is skipped");
    } else {
        let off = measure(&runtime, WARM_UP, mutexes / mutex_batch, || {
            lockdep_mutexes(mutex_batch)
        });
        off.print(&format!("async_lockdep, detection off, {mutexes} mutexes"));
    }

    assert!(
        detector.enable(),
        "detection cannot be turned on (ASYNC_LOCKDEP=0?)"
    );
    let mutex_figures = measure(&runtime, WARM_UP, mutexes / mutex_batch, || {
        lockdep_mutexes(mutex_batch)
    });
    mutex_figures.print(&format!("async_lockdep, detection on, {mutexes} mutexes"));

    let queue_figures = measure(&runtime, WARM_UP, queues / queue_batch, || {
        work_queues(queue_batch)
    });
    queue_figures.print(&format!(
        "async_lockdep, detection on, {queues} work queues ({} used)",
        queues / USED_EVERY
    ));

    let status = detector.status();
    println!("MEMORY engine status after: {status:?}");
    println!("MEMORY took {:.1} s", start.elapsed().as_secs_f64());
    assert!(!detector.has_reports(), "{:?}", detector.reports());
    assert_eq!(status.contexts_holding_locks, 0);
}
