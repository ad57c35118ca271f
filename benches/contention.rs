//! Contention: 64 tasks on a 2-worker multi-thread runtime, each locking its
//! *own* pair of mutexes (outer then inner), where every pair was created at
//! the same two source lines, so all tasks share the same two classes and the
//! same `outer -> inner` dependency. No two tasks ever wait for each other's
//! locks: what is measured is the detector's shared bookkeeping under
//! parallel use (held-lock table, chain cache), compared with plain tokio and
//! with the wrapper without a detector.
//!
//! One iteration = one round: spawn the 64 tasks, each takes its pair
//! `PER_TASK` times (yielding while holding both every 16th time, so tasks
//! interleave on the workers as they hold locks), join them all.
//!
//! Prints `RATIO contention/throughput/detector = ...x no detector` (issue 5
//! target: >= 0.70x) and the same against plain tokio.
//!
//! ```sh
//! cargo bench --bench contention -- --quick
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tokio::runtime::{Builder, Runtime};
use tracing::Dispatch;

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

const VARIANTS: [&str; 3] = ["plain_tokio", "no_detector", "detector"];

struct Env {
    runtime: Runtime,
    detector: async_lockdep::Detector,
    dispatch: Dispatch,
    variants: [Pairs; 3],
}

impl Env {
    fn new() -> Env {
        let runtime = Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let detector = async_lockdep::Detector::new();
        let dispatch = detector.dispatch();
        let plain = Pairs::Plain((0..TASKS).map(|_| Arc::new(plain_pair())).collect());
        let no_detector = Pairs::Lockdep((0..TASKS).map(|_| Arc::new(lockdep_pair())).collect());
        // Bound to the detector at creation, from whichever worker they are used.
        let with_detector = tracing::dispatcher::with_default(&dispatch, || {
            Pairs::Lockdep((0..TASKS).map(|_| Arc::new(lockdep_pair())).collect())
        });
        Env {
            runtime,
            detector,
            dispatch,
            variants: [plain, no_detector, with_detector],
        }
    }

    fn routine(&self, variant: usize) -> Routine<'_> {
        let pairs = &self.variants[variant];
        let detector = variant == 2;
        Box::new(move |iters| {
            let go = || {
                self.runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += round(pairs).await;
                    }
                    total
                })
            };
            if detector {
                tracing::dispatcher::with_default(&self.dispatch, go)
            } else {
                go()
            }
        })
    }
}

fn main() {
    let env = Env::new();
    for variant in 0..VARIANTS.len() {
        env.routine(variant)(1);
    }
    assert_eq!(env.detector.status().edges, 1);

    let mut c: Criterion = common::criterion();
    {
        let mut group = c.benchmark_group("contention");
        group.throughput(Throughput::Elements(TASKS as u64 * PER_TASK));
        for (variant, name) in VARIANTS.iter().enumerate() {
            let mut routine = env.routine(variant);
            group.bench_function(*name, |b| b.iter_custom(&mut routine));
        }
        group.finish();
    }
    c.final_summary();

    if !common::compare_mode("contention") {
        return;
    }
    let (rounds, target) = if common::quick_mode() {
        (7, Duration::from_millis(30))
    } else {
        (15, Duration::from_millis(80))
    };
    let mut routines: Vec<Routine<'_>> = (0..VARIANTS.len()).map(|v| env.routine(v)).collect();
    let iters = common::calibrate(&mut routines[0], target);
    let ns = common::medians(rounds, iters, &mut routines);
    let pairs = (TASKS as u64 * PER_TASK) as f64;
    println!();
    for (name, ns) in VARIANTS.iter().zip(&ns) {
        println!(
            "TIME contention/{name} = {:.1} ns per outer+inner pair, {:.2} M pairs/s \
             ({TASKS} tasks x {PER_TASK} pairs, {iters} rounds x {rounds}, median)",
            ns / pairs,
            pairs / ns * 1e3,
        );
    }
    // Throughput ratios: time without / time with.
    common::print_ratio(
        "contention/throughput/detector",
        ns[1] / ns[2],
        "no detector",
        Target::AtLeast(0.70),
    );
    common::print_ratio(
        "contention/throughput/detector",
        ns[0] / ns[2],
        "plain tokio",
        Target::None,
    );
    common::print_ratio(
        "contention/throughput/no_detector",
        ns[0] / ns[1],
        "plain tokio",
        Target::None,
    );
    assert!(!env.detector.has_reports(), "{:?}", env.detector.reports());
}
