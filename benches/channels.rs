//! Channels: one `send().await` + `recv().await` of a bounded channel
//! (capacity 64) on a current-thread runtime, plain tokio against
//! `async_lockdep::mpsc` with detection off (before anything turns it on),
//! then with detection on. Also the cost of one never-seen dependency with
//! detection on (a new pair of named classes nested once), without a run's
//! store, and with one when the bench runs with `ASYNC_LOCKDEP_DIR` set.
//!
//! ```sh
//! cargo bench --bench channels
//! ASYNC_LOCKDEP_DIR=/tmp/lockdep-bench-store cargo bench --bench channels
//! ```

use std::time::{Duration, Instant};

use async_lockdep::Detector;
use tokio::runtime::{Builder, Runtime};

mod common;
use common::{Routine, Target};

fn runtime() -> Runtime {
    Builder::new_current_thread().build().expect("runtime")
}

/// A routine sending and receiving one value per iteration through the
/// channel `make` returns (the two APIs have the same shape, not one type).
macro_rules! send_recv {
    ($rt:expr, $make:expr) => {{
        let (tx, mut rx) = $make;
        Box::new(move |iters| {
            $rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    tx.send(i).await.unwrap();
                    std::hint::black_box(rx.recv().await);
                }
                start.elapsed()
            })
        })
    }};
}

fn plain(rt: &Runtime) -> Routine<'_> {
    send_recv!(rt, tokio::sync::mpsc::channel::<u64>(64))
}

fn wrapped(rt: &Runtime) -> Routine<'_> {
    send_recv!(rt, async_lockdep::mpsc::channel::<u64>(64))
}

fn compare(rt: &Runtime, phase: &str, target: Target) {
    let (rounds, budget) = if common::quick_mode() {
        (7, Duration::from_millis(20))
    } else {
        (15, Duration::from_millis(50))
    };
    let mut routines = vec![plain(rt), wrapped(rt)];
    let iters = common::calibrate(&mut routines[0], budget);
    let ns = common::medians(rounds, iters, &mut routines);
    println!(
        "TIME channels/send_recv/plain_tokio ({phase}) = {:.1} ns/op",
        ns[0]
    );
    println!("TIME channels/send_recv/{phase} = {:.1} ns/op", ns[1]);
    common::print_ratio(
        &format!("channels/send_recv/{phase}"),
        ns[1] / ns[0],
        "plain tokio",
        target,
    );
}

/// Nanoseconds per never-seen dependency: `n` new pairs of named classes,
/// each nested once.
fn new_dependencies(rt: &Runtime, n: usize) -> f64 {
    let locks: Vec<_> = (0..n)
        .map(|i| {
            (
                async_lockdep::Mutex::with_class(format!("bench-new-{i}-a"), ()),
                async_lockdep::Mutex::with_class(format!("bench-new-{i}-b"), ()),
            )
        })
        .collect();
    rt.block_on(async {
        let start = Instant::now();
        for (a, b) in &locks {
            let _a = a.lock().await;
            let _b = b.lock().await;
        }
        start.elapsed().as_nanos() as f64 / n as f64
    })
}

fn main() {
    if !common::bench_mode() {
        return;
    }
    let rt = runtime();
    compare(&rt, "detection_off", Target::AtMost(1.10));
    Detector::new().enable();
    compare(&rt, "detection_on", Target::None);
    let store = if std::env::var_os("ASYNC_LOCKDEP_DIR").is_some() {
        "with the run's store"
    } else {
        "without a store"
    };
    let n = if common::quick_mode() { 2_000 } else { 20_000 };
    let ns = new_dependencies(&rt, n);
    println!("TIME engine/new_dependency ({store}) = {ns:.0} ns/op ({n} new dependencies)");
}
