//! Hot path: lock + drop of one mutex, and of two nested mutexes (A then B),
//! uncontended, for plain `tokio::sync::Mutex`, `async_lockdep::Mutex` with no
//! detector installed, and `async_lockdep::Mutex` bound to a detector whose
//! chain was already seen (warmed up before measuring).
//!
//! Two contexts: the body of `block_on` on a current-thread runtime (a thread
//! context for the detector), and a task spawned on a 2-worker multi-thread
//! runtime (a task context). Runtime entry and spawning are outside the
//! timing (`iter_custom`).
//!
//! After criterion's run, all variants are timed again with one iteration
//! count, interleaved round-robin, and the medians printed as
//! `TIME ... ns/op` and `RATIO ... x plain tokio` lines (issue 5 targets:
//! no detector <= 1.10x, detector with a seen chain <= 1.50x).
//!
//! ```sh
//! cargo bench --bench hot_path                 # full
//! cargo bench --bench hot_path -- --quick      # short
//! cargo bench --bench '*' -- --quick           # all four benches, short
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tokio::runtime::{Builder, Runtime};
use tracing::Dispatch;

mod common;
use common::{Routine, Target};

type PlainMutex = tokio::sync::Mutex<u64>;
type LockdepMutex = async_lockdep::Mutex<u64>;

/// A pair of mutexes `a`, `b` of one kind (`b` only used nested).
#[derive(Clone)]
enum Locks {
    Plain(Arc<PlainMutex>, Arc<PlainMutex>),
    Lockdep(Arc<LockdepMutex>, Arc<LockdepMutex>),
}

macro_rules! one_lock {
    ($a:expr, $iters:expr) => {{
        let a = $a;
        let start = Instant::now();
        for _ in 0..$iters {
            let mut g = a.lock().await;
            *g = g.wrapping_add(1);
            drop(g);
        }
        start.elapsed()
    }};
}

macro_rules! two_nested {
    ($a:expr, $b:expr, $iters:expr) => {{
        let (a, b) = ($a, $b);
        let start = Instant::now();
        for _ in 0..$iters {
            let ga = a.lock().await;
            let mut gb = b.lock().await;
            *gb = gb.wrapping_add(1);
            drop(gb);
            drop(ga);
        }
        start.elapsed()
    }};
}

async fn run(locks: Locks, shape: Shape, iters: u64) -> Duration {
    match (locks, shape) {
        (Locks::Plain(a, _), Shape::OneLock) => one_lock!(&*a, iters),
        (Locks::Plain(a, b), Shape::TwoNested) => two_nested!(&*a, &*b, iters),
        (Locks::Lockdep(a, _), Shape::OneLock) => one_lock!(&*a, iters),
        (Locks::Lockdep(a, b), Shape::TwoNested) => two_nested!(&*a, &*b, iters),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    CurrentThread,
    MultiThread,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    OneLock,
    TwoNested,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Plain,
    NoDetector,
    DetectorSeen,
}

const CTXS: [(Ctx, &str); 2] = [
    (Ctx::CurrentThread, "current_thread"),
    (Ctx::MultiThread, "multi_thread"),
];
const SHAPES: [(Shape, &str); 2] = [
    (Shape::OneLock, "one_lock"),
    (Shape::TwoNested, "two_nested"),
];
const VARIANTS: [(Variant, &str); 3] = [
    (Variant::Plain, "plain_tokio"),
    (Variant::NoDetector, "no_detector"),
    (Variant::DetectorSeen, "detector_seen"),
];

struct Env {
    current_thread: Runtime,
    multi_thread: Runtime,
    detector: async_lockdep::Detector,
    dispatch: Dispatch,
    plain: Locks,
    no_detector: Locks,
    with_detector: Locks,
}

impl Env {
    fn new() -> Env {
        let current_thread = Builder::new_current_thread().build().unwrap();
        let multi_thread = Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let detector = async_lockdep::Detector::new();
        let dispatch = detector.dispatch();
        let plain = Locks::Plain(Arc::new(PlainMutex::new(0)), Arc::new(PlainMutex::new(0)));
        // No dispatcher is installed here, so these bind to no detector and
        // look one up (finding none) at each lock.
        let no_detector = Locks::Lockdep(
            Arc::new(LockdepMutex::new(0)),
            Arc::new(LockdepMutex::new(0)),
        );
        // Created while the detector is the default: bound to it for life.
        let with_detector = tracing::dispatcher::with_default(&dispatch, || {
            Locks::Lockdep(
                Arc::new(LockdepMutex::new(0)),
                Arc::new(LockdepMutex::new(0)),
            )
        });
        Env {
            current_thread,
            multi_thread,
            detector,
            dispatch,
            plain,
            no_detector,
            with_detector,
        }
    }

    fn routine(&self, ctx: Ctx, shape: Shape, variant: Variant) -> Routine<'_> {
        let (locks, dispatch) = match variant {
            Variant::Plain => (&self.plain, None),
            Variant::NoDetector => (&self.no_detector, None),
            Variant::DetectorSeen => (&self.with_detector, Some(&self.dispatch)),
        };
        Box::new(move |iters| {
            let locks = locks.clone();
            let go = || match ctx {
                Ctx::CurrentThread => self.current_thread.block_on(run(locks, shape, iters)),
                Ctx::MultiThread => self
                    .multi_thread
                    .block_on(async move { tokio::spawn(run(locks, shape, iters)).await.unwrap() }),
            };
            // The detector variant runs with the detector as the default
            // dispatcher, as in a test using `test_guard()`; the others with
            // none at all.
            match dispatch {
                Some(dispatch) => tracing::dispatcher::with_default(dispatch, go),
                None => go(),
            }
        })
    }

    /// Takes every chain once so the measured runs see only known chains.
    fn warm_up(&self) {
        for (ctx, _) in CTXS {
            for (shape, _) in SHAPES {
                for (variant, _) in VARIANTS {
                    self.routine(ctx, shape, variant)(16);
                }
            }
        }
        let status = self.detector.status();
        assert_eq!(status.edges, 1, "expected just a -> b: {status:?}");
        assert!(
            !self.detector.has_reports(),
            "{:?}",
            self.detector.reports()
        );
    }
}

fn main() {
    let env = Env::new();
    env.warm_up();

    let mut c: Criterion = common::criterion();
    {
        let mut group = c.benchmark_group("hot_path");
        for (ctx, ctx_name) in CTXS {
            for (shape, shape_name) in SHAPES {
                for (variant, variant_name) in VARIANTS {
                    let mut routine = env.routine(ctx, shape, variant);
                    group.bench_function(format!("{ctx_name}/{shape_name}/{variant_name}"), |b| {
                        b.iter_custom(&mut routine)
                    });
                }
            }
        }
        group.finish();
    }
    c.final_summary();

    // Same iteration count for all variants of a case, interleaved rounds.
    let (rounds, target) = if common::quick_mode() {
        (7, Duration::from_millis(20))
    } else {
        (15, Duration::from_millis(50))
    };
    println!();
    for (ctx, ctx_name) in CTXS {
        for (shape, shape_name) in SHAPES {
            let case = format!("hot_path/{ctx_name}/{shape_name}");
            if !common::compare_mode(&case) {
                continue;
            }
            let mut routines: Vec<Routine<'_>> = VARIANTS
                .iter()
                .map(|&(variant, _)| env.routine(ctx, shape, variant))
                .collect();
            let iters = common::calibrate(&mut routines[0], target);
            let ns = common::medians(rounds, iters, &mut routines);
            for ((_, variant_name), ns) in VARIANTS.iter().zip(&ns) {
                println!("TIME {case}/{variant_name} = {ns:.1} ns/op ({iters} iters x {rounds} rounds, median)");
            }
            common::print_ratio(
                &format!("{case}/no_detector"),
                ns[1] / ns[0],
                "plain tokio",
                Target::AtMost(1.10),
            );
            common::print_ratio(
                &format!("{case}/detector_seen"),
                ns[2] / ns[0],
                "plain tokio",
                Target::AtMost(1.50),
            );
        }
    }
    assert!(!env.detector.has_reports(), "{:?}", env.detector.reports());
}
