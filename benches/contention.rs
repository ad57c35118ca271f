//! Contention: 64 tasks on a 2-worker multi-thread runtime, each locking its
//! *own* pair of mutexes (outer then inner), where every pair was created at
//! the same two source lines, so all tasks share the same two classes and the
//! same `outer -> inner` dependency. No two tasks ever wait for each other's
//! locks: what is measured is the engine's shared bookkeeping under parallel
//! use (held-lock table, chain cache), compared with plain tokio and with the
//! wrapper while detection is off.
//!
//! One iteration = one round: spawn the 64 tasks, each takes its pair
//! `PER_TASK` times (yielding while holding both every 16th time, so tasks
//! interleave on the workers as they hold locks), join them all.
//!
//! Detection, once on, stays on for the process, so the bench runs in two
//! phases: first plain tokio against the wrapper with detection off
//! (interleaved), then, after `Detector::new().enable()` and a warm-up round,
//! plain tokio against the wrapper with detection on (interleaved, the same
//! iteration count). Prints
//! `RATIO contention/throughput/detection_on = ...x detection off` (target
//! at least 0.90x). The two were measured one phase after the other, so the
//! same ratio normalised by each phase's plain tokio is printed too, to show
//! drift, and each phase against its plain tokio.
//!
//! Then, with detection on, `QUEUED` tasks each holding a mutex of their
//! own queue on one shared mutex (`TIME contention/queue/...`): the live
//! check of waits must stay linear in the number of waiters.
//!
//! ```sh
//! cargo bench --bench contention -- --quick
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_lockdep::Detector;
use criterion::{Criterion, Throughput};
use tokio::runtime::{Builder, Runtime};

mod common;
use common::{Routine, Target};

const TASKS: usize = 64;
const PER_TASK: u64 = 256;
const YIELD_EVERY: u64 = 16;

type PlainPair = (tokio::sync::Mutex<u64>, tokio::sync::Mutex<u64>);
type LockdepPair = (async_lockdep::Mutex<u64>, async_lockdep::Mutex<u64>);

fn plain_pair() -> PlainPair {
    (tokio::sync::Mutex::new(0), tokio::sync::Mutex::new(0))
}

/// Every pair made here has the classes of these two lines.
fn lockdep_pair() -> LockdepPair {
    let outer = async_lockdep::Mutex::new(0);
    let inner = async_lockdep::Mutex::new(0);
    (outer, inner)
}

#[derive(Clone)]
enum Pairs {
    Plain(Vec<Arc<PlainPair>>),
    Lockdep(Vec<Arc<LockdepPair>>),
}

macro_rules! task_body {
    ($pair:expr) => {{
        let pair = $pair;
        for i in 0..PER_TASK {
            let outer = pair.0.lock().await;
            let mut inner = pair.1.lock().await;
            *inner = inner.wrapping_add(1);
            if i % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
            drop(inner);
            drop(outer);
        }
    }};
}

/// One round: all tasks spawned, all joined; returns its wall time.
async fn round(pairs: &Pairs) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = match pairs {
        Pairs::Plain(pairs) => pairs
            .iter()
            .map(|p| {
                let p = Arc::clone(p);
                tokio::spawn(async move { task_body!(&*p) })
            })
            .collect(),
        Pairs::Lockdep(pairs) => pairs
            .iter()
            .map(|p| {
                let p = Arc::clone(p);
                tokio::spawn(async move { task_body!(&*p) })
            })
            .collect(),
    };
    for handle in handles {
        handle.await.unwrap();
    }
    start.elapsed()
}

/// The variants of a phase: plain tokio, then the wrapper.
const OFF: [&str; 2] = ["plain_tokio", "detection_off"];
const ON: [&str; 2] = ["plain_tokio", "detection_on"];

struct Env {
    runtime: Runtime,
    /// Plain tokio, then the wrapper (the same instances in both phases).
    variants: [Pairs; 2],
}

impl Env {
    fn new() -> Env {
        let runtime = Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let plain = Pairs::Plain((0..TASKS).map(|_| Arc::new(plain_pair())).collect());
        let lockdep = Pairs::Lockdep((0..TASKS).map(|_| Arc::new(lockdep_pair())).collect());
        Env {
            runtime,
            variants: [plain, lockdep],
        }
    }

    fn routine(&self, variant: usize) -> Routine<'_> {
        let pairs = &self.variants[variant];
        Box::new(move |iters| {
            self.runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += round(pairs).await;
                }
                total
            })
        })
    }

    /// Criterion's run of a phase's variants.
    fn bench(&self, c: &mut Criterion, group: &str, names: [&str; 2]) {
        let mut group = c.benchmark_group(group);
        group.throughput(Throughput::Elements(TASKS as u64 * PER_TASK));
        for (variant, name) in names.iter().enumerate() {
            let mut routine = self.routine(variant);
            group.bench_function(*name, |b| b.iter_custom(&mut routine));
        }
        group.finish();
    }

    /// Both variants, interleaved, `iters` rounds each time (calibrated on
    /// plain tokio when `None`); returns the iteration count and the median
    /// nanoseconds per round of each.
    fn compare(&self, iters: Option<u64>, rounds: usize, target: Duration) -> (u64, Vec<f64>) {
        let mut routines: Vec<Routine<'_>> = (0..2).map(|v| self.routine(v)).collect();
        let iters = iters.unwrap_or_else(|| common::calibrate(&mut routines[0], target));
        (iters, common::medians(rounds, iters, &mut routines))
    }
}

fn print_times(phase: &str, names: [&str; 2], iters: u64, rounds: usize, ns: &[f64]) {
    let pairs = (TASKS as u64 * PER_TASK) as f64;
    for (name, ns) in names.iter().zip(ns) {
        println!(
            "TIME contention/{phase}/{name} = {:.1} ns per outer+inner pair, {:.2} M pairs/s \
             ({TASKS} tasks x {PER_TASK} pairs, {iters} rounds x {rounds}, median)",
            ns / pairs,
            pairs / ns * 1e3,
        );
    }
}

fn main() {
    let env = Env::new();
    let compare = common::compare_mode("contention");
    let (rounds, target) = if common::quick_mode() {
        (7, Duration::from_millis(30))
    } else {
        (15, Duration::from_millis(80))
    };
    let mut c: Criterion = common::criterion();

    // Phase 1: nothing has turned detection on in this process yet.
    let mut off = None;
    if Detector::new().status().enabled {
        println!("contention: detection is already on (ASYNC_LOCKDEP=1?): phase 1 (off) skipped");
    } else {
        env.routine(1)(1);
        env.bench(&mut c, "contention/off", OFF);
        if compare {
            let (iters, ns) = env.compare(None, rounds, target);
            println!();
            print_times("off", OFF, iters, rounds, &ns);
            common::print_ratio(
                "contention/throughput/detection_off",
                ns[0] / ns[1],
                "plain tokio",
                Target::None,
            );
            println!();
            off = Some((iters, ns));
        }
        assert!(!Detector::new().status().enabled, "detection turned on");
    }

    // Phase 2: detection on for the rest of the process.
    let detector = Detector::new();
    if !detector.enable() {
        println!(
            "contention: detection cannot be turned on (ASYNC_LOCKDEP=0?): phase 2 (on) skipped"
        );
        c.final_summary();
        return;
    }
    env.routine(1)(1);
    assert_eq!(detector.status().dependencies, 1, "{:?}", detector.status());
    env.bench(&mut c, "contention/on", ON);
    if compare {
        let (iters, ns) = env.compare(off.as_ref().map(|(iters, _)| *iters), rounds, target);
        println!();
        print_times("on", ON, iters, rounds, &ns);
        // Throughput ratios: time without / time with.
        common::print_ratio(
            "contention/throughput/detection_on",
            ns[0] / ns[1],
            "plain tokio",
            Target::None,
        );
        if let Some((_, off)) = &off {
            common::print_ratio(
                "contention/throughput/detection_on",
                off[1] / ns[1],
                "detection off",
                Target::AtLeast(0.90),
            );
            common::print_ratio(
                "contention/throughput/detection_on",
                (off[1] / off[0]) / (ns[1] / ns[0]),
                "detection off, each against its phase's plain tokio",
                Target::None,
            );
        }
        println!();
        queue(&env.runtime, rounds);
    }
    c.final_summary();
    assert!(!detector.has_reports(), "{:?}", detector.reports());
}

/// Tasks queued on one busy mutex, each holding a lock of its own.
const QUEUED: usize = 4_000;

/// One round of the queue: `QUEUED` tasks each lock their own mutex, then
/// the shared one (most wait for it, holding theirs), yield while holding
/// both, and finish.
macro_rules! queue_round {
    ($new:expr) => {{
        let shared = Arc::new($new);
        let start = Instant::now();
        let tasks: Vec<_> = (0..QUEUED)
            .map(|_| {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let own = $new;
                    let _own = own.lock().await;
                    let mut n = shared.lock().await;
                    *n += 1;
                    tokio::task::yield_now().await;
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    }};
}

/// The waits' side of the engine at scale (detection on): `QUEUED` tasks
/// waiting at once on one mutex, against plain tokio. Each wait is checked
/// for a cycle of waits only if something it holds is waited for, so the
/// cost stays linear in the number of waiters.
fn queue(runtime: &Runtime, rounds: usize) {
    let mut routines: Vec<Routine<'_>> = vec![
        Box::new(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += queue_round!(tokio::sync::Mutex::new(0u64));
                }
                total
            })
        }),
        Box::new(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += queue_round!(async_lockdep::Mutex::new(0u64));
                }
                total
            })
        }),
    ];
    let ns = common::medians(rounds, 1, &mut routines);
    for (name, ns) in ["plain_tokio", "detection_on"].iter().zip(&ns) {
        println!(
            "TIME contention/queue/{name} = {:.2} ms per round of {QUEUED} tasks queued on one \
             mutex, each holding its own (median of {rounds})",
            ns / 1e6
        );
    }
    common::print_ratio(
        "contention/queue/detection_on",
        ns[1] / ns[0],
        "plain tokio (time per round)",
        Target::None,
    );
    println!();
}
