//! Soak: many tasks on a 2-worker runtime take random subsets of 50 mutexes,
//! always in increasing index order, with random cancellations (tiny
//! timeouts around single locks and around whole passes), `try_lock`s and
//! spawned work. A consistent global order must give zero reports, no panic,
//! nothing left held, and memory that stays flat; one deliberately inverted
//! pair (m7 then m3, once) must give exactly that one cycle, once.
//!
//! The short versions run in the normal suite (a few seconds); the full ones
//! (1 000 tasks, 60 s) with `cargo test --test soak -- --ignored --nocapture`.
//! Each prints its figures: tasks, locks, acquisitions per second, RSS at
//! start and end.

mod common;

use fastrand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use async_lockdep::{Detector, Mutex, Report, ReportKind};

const LOCKS: usize = 50;

/// Resident set size in bytes, from `/proc/self/statm` (4 KiB pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[derive(Default)]
struct Stats {
    acquisitions: AtomicU64,
    lock_timeouts: AtomicU64,
    pass_timeouts: AtomicU64,
    try_failures: AtomicU64,
    spawned: AtomicU64,
    passes: AtomicU64,
}

/// One pass: a random subset of the locks, in increasing index order, held
/// together, then released in random order.
async fn pass(locks: &[Mutex<u64>], rng: &mut Rng, stats: &Stats) {
    let density = 1 + rng.u64(..6); // about 1..6 locks per pass
    let mut guards = Vec::new();
    for lock in locks {
        if rng.u64(..LOCKS as u64) >= density {
            continue;
        }
        let mut guard = match rng.u64(..16) {
            0 | 1 => {
                let wait = Duration::from_micros(rng.u64(..200));
                match tokio::time::timeout(wait, lock.lock()).await {
                    Ok(guard) => guard,
                    Err(_) => {
                        stats.lock_timeouts.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            2 => match lock.try_lock() {
                Ok(guard) => guard,
                Err(_) => {
                    stats.try_failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
            _ => lock.lock().await,
        };
        // Counted right after acquiring, with no await in between, so the
        // counts match even when the pass is cancelled.
        *guard += 1;
        stats.acquisitions.fetch_add(1, Ordering::Relaxed);
        guards.push(guard);
        if rng.u64(..4) == 0 {
            tokio::task::yield_now().await;
        }
    }
    rng.shuffle(&mut guards);
    while let Some(guard) = guards.pop() {
        drop(guard);
    }
    stats.passes.fetch_add(1, Ordering::Relaxed);
}

/// What a soak run does and what came out of it.
struct Soak {
    tasks: usize,
    duration: Duration,
    inverted: bool,
}

struct Outcome {
    reports: Vec<Report>,
    elapsed: Duration,
    acquisitions: u64,
    rss_start: u64,
    rss_warm: u64,
    rss_end: u64,
}

/// Fails (instead of hanging) if `f` does not finish within `limit`.
fn with_deadline<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn");
    match rx.recv_timeout(limit) {
        Ok(value) => {
            handle.join().expect("soak thread");
            value
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!(),
        },
    }
}

impl Soak {
    fn run(self, name: &'static str) -> Outcome {
        let limit = self.duration + Duration::from_secs(60);
        with_deadline(name, limit, move || self.run_here(name))
    }

    fn run_here(self, name: &str) -> Outcome {
        let detector = Detector::new();
        let _default = detector.set_default();
        let dispatch = detector.dispatch();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            // The detector as every worker's default, as a program would
            // install it globally: `spawn` then carries it to its tasks.
            .on_thread_start(move || {
                std::mem::forget(tracing::dispatcher::set_default(&dispatch));
            })
            .build()
            .expect("runtime");
        let locks: Arc<Vec<Mutex<u64>>> = Arc::new(
            (0..LOCKS)
                .map(|i| Mutex::with_class(format!("m{i}"), 0))
                .collect(),
        );
        let stats = Arc::new(Stats::default());
        let rss_start = rss_bytes();
        let started = Instant::now();
        let rss_warm = runtime.block_on(self.drive(&locks, &stats, started));
        let elapsed = started.elapsed();
        runtime.shutdown_timeout(Duration::from_secs(5));
        let rss_end = rss_bytes();

        let status = detector.status();
        assert_eq!(
            (status.contexts_holding_locks, status.contexts_waiting),
            (0, 0),
            "{name}: {status:?}"
        );
        assert!(!status.overflowed, "{name}: {status:?}");
        let acquisitions = stats.acquisitions.load(Ordering::Relaxed);
        let counted: u64 = locks
            .iter()
            .map(|m| *m.try_lock().expect("all released"))
            .sum();
        assert_eq!(counted, acquisitions, "{name}: every acquisition counted");
        let outcome = Outcome {
            reports: detector.reports(),
            elapsed,
            acquisitions,
            rss_start,
            rss_warm,
            rss_end,
        };
        println!(
            "{name}: {} tasks, {LOCKS} locks, {:.1} s, {} acquisitions ({:.0}/s), {} passes, \
             cancelled: {} lock waits + {} passes, {} try_lock misses, {} spawned, {} edges, \
             reports: {} lock-order + {} deadlock-now, \
             RSS start {:.1} MiB, warm {:.1} MiB, end {:.1} MiB",
            self.tasks,
            elapsed.as_secs_f64(),
            acquisitions,
            acquisitions as f64 / elapsed.as_secs_f64(),
            stats.passes.load(Ordering::Relaxed),
            stats.lock_timeouts.load(Ordering::Relaxed),
            stats.pass_timeouts.load(Ordering::Relaxed),
            stats.try_failures.load(Ordering::Relaxed),
            stats.spawned.load(Ordering::Relaxed),
            status.dependencies,
            lock_order_reports(&outcome.reports).len(),
            outcome
                .reports
                .iter()
                .filter(|r| r.kind == ReportKind::DeadlockNow)
                .count(),
            mib(outcome.rss_start),
            mib(outcome.rss_warm),
            mib(outcome.rss_end),
        );
        outcome
    }

    /// Runs the tasks until the deadline; returns the RSS once warmed up
    /// (a tenth of the way in).
    async fn drive(
        &self,
        locks: &Arc<Vec<Mutex<u64>>>,
        stats: &Arc<Stats>,
        started: Instant,
    ) -> u64 {
        let deadline = started + self.duration;
        if self.inverted {
            // m3 -> m7 first, so that the inversion below surely closes it.
            let mut m3 = locks[3].lock().await;
            let mut m7 = locks[7].lock().await;
            *m3 += 1;
            *m7 += 1;
            stats.acquisitions.fetch_add(2, Ordering::Relaxed);
        }
        // Taken for reading around every pass; the inverting task takes it for
        // writing, so its m7 -> m3 runs while no pass is in flight and cannot
        // deadlock for real (only the order is wrong). Plain tokio: not tracked.
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        let mut tasks = Vec::new();
        for t in 0..self.tasks {
            let (locks, stats, gate) = (locks.clone(), stats.clone(), gate.clone());
            let work = async move {
                let mut rng = Rng::with_seed(t as u64 + 1);
                while Instant::now() < deadline {
                    let _pass = gate.read().await;
                    match rng.u64(..32) {
                        0 => {
                            // Spawned work, joined while holding no tracked lock.
                            let (l, s, seed) = (locks.clone(), stats.clone(), rng.u64(..));
                            let job = async_lockdep::spawn(async move {
                                let mut rng = Rng::with_seed(seed);
                                pass(&l, &mut rng, &s).await;
                            });
                            stats.spawned.fetch_add(1, Ordering::Relaxed);
                            job.await.expect("spawned pass");
                        }
                        1 | 2 => {
                            // The whole pass cancelled part-way, guards held.
                            let wait = Duration::from_micros(rng.u64(..500));
                            let mut inner = Rng::with_seed(rng.u64(..));
                            if tokio::time::timeout(wait, pass(&locks, &mut inner, &stats))
                                .await
                                .is_err()
                            {
                                stats.pass_timeouts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => pass(&locks, &mut rng, &stats).await,
                    }
                }
            };
            // Half plain tokio tasks, half `spawn`ed (holding a task class).
            tasks.push(if t % 2 == 0 {
                tokio::spawn(work)
            } else {
                let handle = async_lockdep::spawn(work);
                tokio::spawn(async move { handle.await.expect("soak task") })
            });
        }
        let inverter = self.inverted.then(|| {
            let (locks, gate) = (locks.clone(), gate.clone());
            let half = self.duration / 2;
            let stats = stats.clone();
            tokio::spawn(async move {
                tokio::time::sleep(half).await;
                let _all_passes_out = gate.write().await;
                let mut m7 = locks[7].lock().await;
                let mut m3 = locks[3].lock().await; // m7 -> m3: the inversion
                *m7 += 1;
                *m3 += 1;
                stats.acquisitions.fetch_add(2, Ordering::Relaxed);
            })
        });
        tokio::time::sleep(self.duration / 10).await;
        let rss_warm = rss_bytes();
        for task in tasks {
            tokio::time::timeout(self.duration + Duration::from_secs(30), task)
                .await
                .expect("soak task finishes")
                .expect("soak task did not panic");
        }
        if let Some(inverter) = inverter {
            tokio::time::timeout(Duration::from_secs(30), inverter)
                .await
                .expect("inverter finishes")
                .expect("inverter did not panic");
        }
        rss_warm
    }
}

/// The lock-order reports (cycles between classes, self-deadlocks,
/// recursive locking): what a wrong order produces, leaving out the live
/// wait-for check (`DeadlockNow`) and the watchdog.
fn lock_order_reports(reports: &[Report]) -> Vec<&Report> {
    reports
        .iter()
        .filter(|r| !matches!(r.kind, ReportKind::DeadlockNow | ReportKind::LongWait))
        .collect()
}

/// How many reports of each kind, for failure messages.
fn kinds(reports: &[&Report]) -> Vec<(ReportKind, usize)> {
    let mut counts: Vec<(ReportKind, usize)> = Vec::new();
    for report in reports {
        match counts.iter_mut().find(|(kind, _)| *kind == report.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((report.kind, 1)),
        }
    }
    counts
}

fn assert_silent(name: &str, reports: &[&Report]) {
    assert!(
        reports.is_empty(),
        "{name}: {} report(s) {:?}, first:\n{}",
        reports.len(),
        kinds(reports),
        reports[0]
    );
}

fn assert_only_the_inversion(name: &str, reports: &[&Report]) {
    let inversion = |r: &&Report| {
        let mut names = r.class_names();
        names.sort_unstable();
        r.kind == ReportKind::CircularDependency
            && r.dependencies.len() == 2
            && names == ["m3", "m7"]
    };
    let others: Vec<&Report> = reports.iter().copied().filter(|r| !inversion(r)).collect();
    assert!(
        others.is_empty(),
        "{name}: {} other report(s) {:?}, first:\n{}",
        others.len(),
        kinds(&others),
        others[0]
    );
    assert_eq!(
        reports.len(),
        1,
        "{name}: the m3/m7 inversion reported {} times",
        reports.len()
    );
}

fn short(inverted: bool) -> Soak {
    Soak {
        tasks: 200,
        duration: Duration::from_millis(1500),
        inverted,
    }
}

#[test]
fn short_soak_in_a_consistent_order_reports_nothing() {
    if common::own_process() {
        return;
    }
    let outcome = short(false).run("short soak");
    let all: Vec<&Report> = outcome.reports.iter().collect();
    assert_silent("short soak", &all);
    assert!(outcome.acquisitions > 0);
    assert!(outcome.elapsed < Duration::from_secs(10));
}

#[test]
fn short_soak_with_one_inverted_pair_reports_exactly_that_cycle_once() {
    if common::own_process() {
        return;
    }
    let outcome = short(true).run("short soak, inverted");
    let all: Vec<&Report> = outcome.reports.iter().collect();
    assert_only_the_inversion("short soak, inverted", &all);
}

/// Memory must stay flat once warm: a generous bound, for allocator noise.
fn assert_flat(name: &str, outcome: &Outcome) {
    let growth = outcome.rss_end.saturating_sub(outcome.rss_warm);
    assert!(
        growth < 32 * 1024 * 1024,
        "{name}: RSS grew by {:.1} MiB after warm-up",
        mib(growth)
    );
}

#[test]
#[ignore = "soak: run with --ignored"]
fn full_soak_in_a_consistent_order_reports_nothing() {
    if common::own_process() {
        return;
    }
    let outcome = Soak {
        tasks: 1000,
        duration: Duration::from_secs(60),
        inverted: false,
    }
    .run("full soak");
    let all: Vec<&Report> = outcome.reports.iter().collect();
    assert_silent("full soak", &all);
    assert_flat("full soak", &outcome);
}

#[test]
#[ignore = "soak: run with --ignored"]
fn full_soak_with_one_inverted_pair_reports_exactly_that_cycle_once() {
    if common::own_process() {
        return;
    }
    let outcome = Soak {
        tasks: 1000,
        duration: Duration::from_secs(60),
        inverted: true,
    }
    .run("full soak, inverted");
    let all: Vec<&Report> = outcome.reports.iter().collect();
    assert_only_the_inversion("full soak, inverted", &all);
    assert_flat("full soak, inverted", &outcome);
}
