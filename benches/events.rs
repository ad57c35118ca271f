//! Events and blocking locks against the originals, on a current-thread
//! runtime, detection off (before anything turns it on) then on:
//!
//! - `oneshot`: `channel()` + `send` + `.await` of the receiver;
//! - `notify`: `notify_one()` (a stored permit) + `notified().await`;
//! - `std_mutex`: `lock()` + drop of `async_lockdep::stdsync::Mutex` against
//!   `std::sync::Mutex` (with detection on, a chain already seen).
//!
//! ```sh
//! cargo bench --bench events
//! ```

use std::time::{Duration, Instant};

use async_lockdep::Detector;
use tokio::runtime::{Builder, Runtime};

mod common;
use common::{Routine, Target};

fn runtime() -> Runtime {
    Builder::new_current_thread().build().expect("runtime")
}

/// A routine of `oneshot::channel()` + `send` + `.await` through the
/// module `$oneshot` (tokio's or ours: the same API, not one type).
macro_rules! oneshot_round {
    ($rt:expr, $oneshot:path) => {{
        use $oneshot as oneshot;
        Box::new(move |iters| {
            $rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let (tx, rx) = oneshot::channel::<u64>();
                    tx.send(i).unwrap();
                    std::hint::black_box(rx.await.unwrap());
                }
                start.elapsed()
            })
        })
    }};
}

/// A routine of `notify_one()` + `notified().await` on `$notify`.
macro_rules! notify_round {
    ($rt:expr, $notify:expr) => {{
        let notify = $notify;
        Box::new(move |iters| {
            $rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    notify.notify_one();
                    notify.notified().await;
                }
                start.elapsed()
            })
        })
    }};
}

/// A routine of `lock()` + drop of the mutex `$mutex`.
macro_rules! mutex_round {
    ($mutex:expr) => {{
        let m = $mutex;
        Box::new(move |iters| {
            let start = Instant::now();
            for _ in 0..iters {
                *m.lock().unwrap() += 1;
            }
            std::hint::black_box(&m);
            start.elapsed()
        })
    }};
}

fn oneshot_plain(rt: &Runtime) -> Routine<'_> {
    oneshot_round!(rt, tokio::sync::oneshot)
}

fn oneshot_ours(rt: &Runtime) -> Routine<'_> {
    oneshot_round!(rt, async_lockdep::oneshot)
}

fn notify_plain(rt: &Runtime) -> Routine<'_> {
    notify_round!(rt, tokio::sync::Notify::new())
}

fn notify_ours(rt: &Runtime) -> Routine<'_> {
    notify_round!(rt, async_lockdep::sync::Notify::new())
}

fn std_plain() -> Routine<'static> {
    mutex_round!(std::sync::Mutex::new(0u64))
}

fn std_ours() -> Routine<'static> {
    mutex_round!(async_lockdep::stdsync::Mutex::new(0u64))
}

fn compare(name: &str, phase: &str, mut routines: Vec<Routine<'_>>, target: Target) {
    let (rounds, budget) = if common::quick_mode() {
        (7, Duration::from_millis(20))
    } else {
        (15, Duration::from_millis(50))
    };
    let iters = common::calibrate(&mut routines[0], budget);
    let ns = common::medians(rounds, iters, &mut routines);
    println!("TIME events/{name}/original ({phase}) = {:.1} ns/op", ns[0]);
    println!("TIME events/{name}/{phase} = {:.1} ns/op", ns[1]);
    common::print_ratio(
        &format!("events/{name}/{phase}"),
        ns[1] / ns[0],
        "the original",
        target,
    );
}

fn main() {
    if !common::bench_mode() {
        return;
    }
    let rt = runtime();
    for (phase, events_target, std_target) in [
        ("detection_off", Target::AtMost(1.10), Target::AtMost(1.10)),
        ("detection_on", Target::None, Target::AtMost(2.0)),
    ] {
        if phase == "detection_on" {
            Detector::new().enable();
        }
        compare(
            "oneshot",
            phase,
            vec![oneshot_plain(&rt), oneshot_ours(&rt)],
            events_target,
        );
        compare(
            "notify",
            phase,
            vec![notify_plain(&rt), notify_ours(&rt)],
            events_target,
        );
        compare(
            "std_mutex",
            phase,
            vec![std_plain(), std_ours()],
            std_target,
        );
    }
}
