//! Hot path: lock + drop of one mutex, and of two nested mutexes (A then B),
//! uncontended, for plain `tokio::sync::Mutex` and `async_lockdep::Mutex`.
//!
//! There is one engine per process and detection, once on, stays on, so the
//! bench runs in two phases, each comparing the wrapper with plain tokio
//! measured in the same phase:
//!
//! 1. detection **off** (nothing has enabled it yet): the wrapper costs one
//!    relaxed load of the engine's mode plus tokio's own lock;
//! 2. detection **on** (`Detector::new().enable()`, no subscriber needed),
//!    after a warm-up that takes every chain once, so the measured runs see
//!    only known chains; then the span enter + exit cost of a registry with
//!    the layer against one without it (the layer keeps the per-thread span
//!    stack on `on_enter` / `on_exit`).
//!
//! Two contexts: the body of `block_on` on a current-thread runtime (a thread
//! context for the engine), and a task spawned on a 2-worker multi-thread
//! runtime (a task context). Runtime entry and spawning are outside the
//! timing (`iter_custom`).
//!
//! In each phase, after criterion's run, the variants are timed again with
//! one iteration count, interleaved round-robin, and the medians printed as
//! `TIME ... ns/op` and `RATIO ... x plain tokio` lines (targets: detection
//! off <= 1.10x, detection on with a seen chain <= 1.50x).
//!
//! Started with `ASYNC_LOCKDEP=1`, detection is on from the start and phase 1
//! is skipped; with `ASYNC_LOCKDEP=0` it cannot be enabled and phase 2 is.
//!
//! ```sh
//! cargo bench --bench hot_path                 # full
//! cargo bench --bench hot_path -- --quick      # short
//! cargo bench --bench '*' -- --quick           # all four benches, short
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_lockdep::Detector;
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
enum Kind {
    Plain,
    Lockdep,
}

/// What the wrapper is measured with, and its name and target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Off,
    On,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Off => "off",
            Phase::On => "on",
        }
    }

    /// The name of the wrapper's variant in this phase.
    fn variant(self) -> &'static str {
        match self {
            Phase::Off => "detection_off",
            Phase::On => "detection_on_seen",
        }
    }

    fn target(self) -> Target {
        match self {
            Phase::Off => Target::AtMost(1.10),
            Phase::On => Target::AtMost(1.50),
        }
    }
}

const CTXS: [(Ctx, &str); 2] = [
    (Ctx::CurrentThread, "current_thread"),
    (Ctx::MultiThread, "multi_thread"),
];
const SHAPES: [(Shape, &str); 2] = [
    (Shape::OneLock, "one_lock"),
    (Shape::TwoNested, "two_nested"),
];
const KINDS: [Kind; 2] = [Kind::Plain, Kind::Lockdep];

fn kind_name(kind: Kind, phase: Phase) -> &'static str {
    match kind {
        Kind::Plain => "plain_tokio",
        Kind::Lockdep => phase.variant(),
    }
}

struct Env {
    current_thread: Runtime,
    multi_thread: Runtime,
    plain: Locks,
    lockdep: Locks,
}

impl Env {
    fn new() -> Env {
        let current_thread = Builder::new_current_thread().build().unwrap();
        let multi_thread = Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let plain = Locks::Plain(Arc::new(PlainMutex::new(0)), Arc::new(PlainMutex::new(0)));
        // The same instances serve both phases: a lock reports to the engine
        // whenever detection is on, whenever it was created.
        let lockdep = Locks::Lockdep(
            Arc::new(LockdepMutex::new(0)),
            Arc::new(LockdepMutex::new(0)),
        );
        Env {
            current_thread,
            multi_thread,
            plain,
            lockdep,
        }
    }

    fn routine(&self, ctx: Ctx, shape: Shape, kind: Kind) -> Routine<'_> {
        let locks = match kind {
            Kind::Plain => &self.plain,
            Kind::Lockdep => &self.lockdep,
        };
        Box::new(move |iters| {
            let locks = locks.clone();
            match ctx {
                Ctx::CurrentThread => self.current_thread.block_on(run(locks, shape, iters)),
                Ctx::MultiThread => self
                    .multi_thread
                    .block_on(async move { tokio::spawn(run(locks, shape, iters)).await.unwrap() }),
            }
        })
    }

    /// Criterion's run of every case of `phase`, then the interleaved
    /// comparison behind the `TIME` / `RATIO` lines.
    fn measure(&self, c: &mut Criterion, phase: Phase, rounds: usize, target: Duration) {
        {
            let mut group = c.benchmark_group(format!("hot_path/{}", phase.name()));
            for (ctx, ctx_name) in CTXS {
                for (shape, shape_name) in SHAPES {
                    for kind in KINDS {
                        let mut routine = self.routine(ctx, shape, kind);
                        let id = format!("{ctx_name}/{shape_name}/{}", kind_name(kind, phase));
                        group.bench_function(id, |b| b.iter_custom(&mut routine));
                    }
                }
            }
            group.finish();
        }
        println!();
        for (ctx, ctx_name) in CTXS {
            for (shape, shape_name) in SHAPES {
                let case = format!("hot_path/{}/{ctx_name}/{shape_name}", phase.name());
                if !common::compare_mode(&case) {
                    continue;
                }
                let mut routines: Vec<Routine<'_>> = KINDS
                    .iter()
                    .map(|&kind| self.routine(ctx, shape, kind))
                    .collect();
                let iters = common::calibrate(&mut routines[0], target);
                let ns = common::medians(rounds, iters, &mut routines);
                for (kind, ns) in KINDS.iter().zip(&ns) {
                    println!(
                        "TIME {case}/{} = {ns:.1} ns/op ({iters} iters x {rounds} rounds, median)",
                        kind_name(*kind, phase)
                    );
                }
                common::print_ratio(
                    &format!("{case}/{}", phase.variant()),
                    ns[1] / ns[0],
                    "plain tokio",
                    phase.target(),
                );
            }
        }
        println!();
    }

    /// Takes every chain once with detection on, so that the measured runs
    /// see only known chains.
    fn warm_up(&self, detector: &Detector) {
        for (ctx, _) in CTXS {
            for (shape, _) in SHAPES {
                self.routine(ctx, shape, Kind::Lockdep)(16);
            }
        }
        let status = detector.status();
        assert_eq!(status.dependencies, 1, "expected just a -> b: {status:?}");
        assert!(!detector.has_reports(), "{:?}", detector.reports());
    }
}

/// Span enter + exit in a registry without the layer and in one with it.
fn span_routine(dispatch: &Dispatch) -> Routine<'_> {
    Box::new(move |iters| {
        tracing::dispatcher::with_default(dispatch, || {
            let span = tracing::info_span!("bench", n = 1u64);
            let start = Instant::now();
            for _ in 0..iters {
                let entered = span.enter();
                black_box(&entered);
                drop(entered);
            }
            start.elapsed()
        })
    })
}

fn measure_spans(c: &mut Criterion, detector: &Detector, rounds: usize, target: Duration) {
    use tracing_subscriber::layer::SubscriberExt;
    let without = Dispatch::new(tracing_subscriber::registry());
    let with = Dispatch::new(tracing_subscriber::registry().with(detector.layer()));
    let variants = [("registry", &without), ("registry_with_layer", &with)];
    {
        let mut group = c.benchmark_group("span/enter_exit");
        for (name, dispatch) in variants {
            let mut routine = span_routine(dispatch);
            group.bench_function(name, |b| b.iter_custom(&mut routine));
        }
        group.finish();
    }
    let case = "span/enter_exit";
    if !common::compare_mode(case) {
        return;
    }
    let mut routines: Vec<Routine<'_>> = variants.iter().map(|(_, d)| span_routine(d)).collect();
    let iters = common::calibrate(&mut routines[0], target);
    let ns = common::medians(rounds, iters, &mut routines);
    println!();
    for ((name, _), ns) in variants.iter().zip(&ns) {
        println!("TIME {case}/{name} = {ns:.1} ns/op ({iters} iters x {rounds} rounds, median)");
    }
    common::print_ratio(
        &format!("{case}/registry_with_layer"),
        ns[1] / ns[0],
        "registry without the layer",
        Target::None,
    );
    println!();
}

fn main() {
    let env = Env::new();
    let mut c: Criterion = common::criterion();
    // Same iteration count for all variants of a case, interleaved rounds.
    let (rounds, target) = if common::quick_mode() {
        (7, Duration::from_millis(20))
    } else {
        (15, Duration::from_millis(50))
    };

    // Phase 1: nothing has turned detection on in this process yet.
    if Detector::new().status().enabled {
        println!("hot_path: detection is already on (ASYNC_LOCKDEP=1?): phase 1 (off) skipped");
    } else {
        env.measure(&mut c, Phase::Off, rounds, target);
        assert!(!Detector::new().status().enabled, "detection turned on");
    }

    // Phase 2: detection on for the rest of the process.
    let detector = Detector::new();
    if !detector.enable() {
        println!(
            "hot_path: detection cannot be turned on (ASYNC_LOCKDEP=0?): phase 2 (on) skipped"
        );
        c.final_summary();
        return;
    }
    env.warm_up(&detector);
    env.measure(&mut c, Phase::On, rounds, target);
    measure_spans(&mut c, &detector, rounds, target);
    c.final_summary();

    assert_eq!(detector.status().dependencies, 1);
    assert!(!detector.has_reports(), "{:?}", detector.reports());
}
