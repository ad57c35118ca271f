//! Pools that `forget()` their permits (deadpool hands out an object,
//! forgets its permit, and gives the capacity back with `add_permits` when
//! the object returns): a forgotten permit is held until `add_permits`
//! gives it back, so "hold one object, wait for another" is reported as
//! pool exhaustion, and a pool used correctly stays silent.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{test_guard, Access, Detector, Mutex, ReportKind, Semaphore};
use futures::future::join_all;
use tracing::{info_span, Instrument};
use tracing_subscriber::prelude::*;

/// The line of this file holding `marker` (1-based).
fn line(marker: &str) -> u32 {
    let text = include_str!("forgotten_permits.rs");
    text.lines()
        .position(|l| l.contains(marker) && !l.contains("line(\""))
        .expect("marker") as u32
        + 1
}

/// A pool of objects as deadpool builds one: `get` takes a permit and
/// forgets it, `put` gives the capacity back.
struct Pool {
    permits: Semaphore,
}

impl Pool {
    #[track_caller]
    fn new(name: &'static str, size: usize) -> Pool {
        Pool {
            permits: Semaphore::with_class(name, size),
        }
    }

    /// Takes an object (its permit forgotten), as deadpool's `Pool::get`.
    async fn get(&self) {
        self.permits.acquire().await.unwrap().forget(); // POOL-GET
    }

    /// Gives an object back, as deadpool's `Object` drop.
    fn put(&self) {
        self.permits.add_permits(1);
    }
}

/// The one report of `reports`, checked: pool exhaustion of `class`, the
/// permit held taken at `held` and the one waited for at `waited`.
fn assert_pool_report(reports: &[async_lockdep::Report], class: &str, held: u32, waited: u32) {
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::PoolExhaustion, "{report}");
    assert_eq!(report.class_names(), [class]);
    let dep = &report.dependencies[0];
    assert_eq!(
        (
            dep.held_as,
            dep.held_at.line(),
            dep.waited_as,
            dep.waited_at.line()
        ),
        (Access::Permits, held, Access::Permits, waited)
    );
    let text = report.to_string();
    assert!(
        text.contains("from an object pool,\ngive the object back (or pass it down) before asking for another"),
        "{text}"
    );
}

/// A pool of one: holding its object and waiting for another really hangs
/// (here under a timeout, on a thread of its own). Reported once the
/// object is given back by the code that held it: the report names the
/// two `acquire` lines.
#[tokio::test]
async fn pool_of_one_hold_an_object_and_wait_for_another_is_reported() {
    let lockdep = test_guard();
    let pool = Arc::new(Semaphore::with_class("forgot-pool-1", 1));
    let (gave_up, given_up) = std::sync::mpsc::channel();
    let (go, wait_go) = std::sync::mpsc::channel::<()>();
    let stuck = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async {
                pool.acquire().await.unwrap().forget(); // ONE-HELD
                let second = tokio::time::timeout(
                    Duration::from_millis(150),
                    pool.acquire(), // ONE-WAITED
                )
                .await;
                gave_up.send(second.is_err()).unwrap();
            });
            wait_go.recv_timeout(common::LIMIT).unwrap();
            pool.add_permits(1); // the object goes back, from the same thread
        })
    };
    let hung = given_up.recv_timeout(common::LIMIT).unwrap();
    assert!(hung, "it really hangs");
    let before = lockdep.take_reports();
    assert!(
        before.is_empty(),
        "kept until the object is given back: {before:#?}"
    );
    go.send(()).unwrap();
    common::join_thread(stuck).await;
    assert_pool_report(
        &lockdep.take_reports(),
        "forgot-pool-1",
        line("// ONE-HELD"),
        line("// ONE-WAITED"),
    );
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

/// A pool of two, both objects held by one task waiting for a third:
/// reported through the later object, once they are given back.
#[tokio::test]
async fn pool_of_two_both_held_and_waiting_for_a_third_is_reported() {
    let lockdep = test_guard();
    let pool = Semaphore::with_class("forgot-pool-2", 2);
    pool.acquire().await.unwrap().forget();
    pool.acquire().await.unwrap().forget(); // TWO-HELD
    let third = tokio::time::timeout(Duration::from_millis(150), pool.acquire()).await; // TWO-WAITED
    assert!(third.is_err(), "it really hangs");
    pool.add_permits(2);
    assert_pool_report(
        &lockdep.take_reports(),
        "forgot-pool-2",
        line("// TWO-HELD"),
        line("// TWO-WAITED"),
    );
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

/// Inside the span of a request (`#[instrument]`), holding an object and
/// taking another is reported from the dependency, with no wait: here the
/// pool has room, and it is still a hazard once every object is held by
/// such requests.
#[tokio::test]
async fn a_second_object_taken_at_once_inside_a_span_is_reported() {
    let _layer = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(Detector::new().layer()),
    );
    let lockdep = test_guard();
    let pool = Pool::new("forgot-span-pool", 4);
    async {
        pool.get().await;
        pool.permits.acquire().await.unwrap().forget(); // SPAN-SECOND
        pool.put();
        pool.put();
    }
    .instrument(info_span!("request"))
    .await;
    assert_pool_report(
        &lockdep.take_reports(),
        "forgot-span-pool",
        line("// POOL-GET"),
        line("// SPAN-SECOND"),
    );
    assert_eq!(pool.permits.available_permits(), 4);
}

/// Take an object, use it (under a lock), give it back, take another: the
/// right way to use a pool, silent. The dependency "pool → state" counts
/// (the object was given back where it was taken).
#[tokio::test]
async fn a_pool_used_one_object_at_a_time_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let pool = Pool::new("forgot-serial-pool", 1);
    let state = Mutex::with_class("forgot-serial-state", 0);
    for _ in 0..3 {
        pool.get().await;
        *state.lock().await += 1;
        pool.put();
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    let status = lockdep.detector().status();
    assert_eq!(status.contexts_holding_locks, 0);
    assert_eq!(status.dependencies, 1, "pool -> state");
}

/// Many tasks each taking one object of a small pool (most of them wait
/// for one): silent, and nothing stays held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_each_taking_one_object_are_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let pool = Arc::new(Pool::new("forgot-shared-pool", 3));
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.get().await;
                tokio::time::sleep(Duration::from_millis(2)).await;
                pool.put();
            })
        })
        .collect();
    common::within("the tasks", join_all(tasks)).await;
    tokio::time::sleep(Duration::from_millis(700)).await; // past any confirmation
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
    assert_eq!(pool.permits.available_permits(), 3);
}

/// Futures joined in one task each taking one object (a `join_all` over
/// requests): a wait that ends with an object a sibling gave back is
/// silent.
#[tokio::test]
async fn joined_futures_each_taking_one_object_are_silent() {
    let lockdep = test_guard();
    let pool = Pool::new("forgot-joined-pool", 2);
    join_all((0..6).map(|_| async {
        pool.get().await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        pool.put();
    }))
    .await;
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// The object is handed to another task, which gives it back there; the
/// task that took it waits for the next one meanwhile, long enough to give
/// up once: silent (the object was not its own any more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_given_back_by_another_task_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let pool = Arc::new(Pool::new("forgot-moved-pool", 1));
    let state = Arc::new(Mutex::with_class("forgot-moved-state", ()));
    pool.get().await;
    let _state = state.lock().await; // pool -> state: provisional
    let worker = {
        let pool = pool.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pool.put(); // the object goes back from here
        })
    };
    let early = tokio::time::timeout(Duration::from_millis(100), pool.get()).await;
    assert!(early.is_err(), "the worker still has it");
    common::within("the object", pool.get()).await;
    common::within("the worker", worker).await.unwrap();
    pool.put();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    let status = lockdep.detector().status();
    assert_eq!(status.contexts_holding_locks, 1, "only `state`");
    assert_eq!(
        status.dependencies, 1,
        "state -> pool; pool -> state was not this task's"
    );
}

/// A forgotten permit is held as a lock is: "pool → state" (an object held
/// while locking the state) and "state → pool" elsewhere close a cycle.
#[tokio::test]
async fn an_object_held_while_locking_orders_the_pool_before_the_lock() {
    let lockdep = test_guard();
    let pool = Arc::new(Pool::new("forgot-cycle-pool", 2));
    let state = Arc::new(Mutex::with_class("forgot-cycle-state", ()));
    {
        let (pool, state) = (pool.clone(), state.clone());
        tokio::spawn(async move {
            pool.get().await;
            drop(state.lock().await); // pool -> state
            pool.put();
        })
        .await
        .unwrap();
    }
    let _state = state.lock().await;
    pool.get().await; // state -> pool
    pool.put();
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(
        reports[0].class_names(),
        ["forgot-cycle-state", "forgot-cycle-pool"]
    );
}

/// `add_permits` on a semaphore with nothing forgotten (plain growth)
/// gives nothing back: a permit held outright stays held, and taking a
/// second one (blocking: certain) is reported through it — as pool
/// exhaustion only: the second permit is free, so the thread is not stuck
/// now (a blocking wait for free permits was reported as stuck).
#[tokio::test]
async fn plain_growth_releases_nothing() {
    let lockdep = test_guard();
    let pool = Semaphore::with_class("forgot-growth-pool", 1);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _held = pool.blocking_acquire().unwrap(); // GROWTH-HELD
            pool.add_permits(1);
            let _again = pool.blocking_acquire().unwrap(); // GROWTH-WAITED
        });
    });
    assert_pool_report(
        &lockdep.take_reports(),
        "forgot-growth-pool",
        line("// GROWTH-HELD"),
        line("// GROWTH-WAITED"),
    );
}

/// Permits forgotten and never given back cost bounded memory: each
/// semaphore keeps at most 1024; dropping the semaphore lets them go,
/// reporting nothing.
#[tokio::test]
async fn permits_forgotten_for_good_are_let_go_with_their_semaphore() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let pool = Semaphore::with_class("forgot-leak-pool", 3000);
    let state = Mutex::with_class("forgot-leak-state", ());
    for _ in 0..3000 {
        pool.try_acquire().unwrap().forget();
    }
    drop(state.lock().await); // pool -> state: provisional
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 1);
    drop(pool);
    let status = lockdep.detector().status();
    assert_eq!(status.contexts_holding_locks, 0);
    assert_eq!(status.dependencies, 0, "not given back: not committed");
    assert!(lockdep.take_reports().is_empty());
}

/// Capacity moved between two semaphores (a bounded buffer's room and
/// items, as deadpool's unmanaged pool keeps them): a permit of one is
/// forgotten and permits are added to the other at once. No object is held
/// by the task doing it: one task adding and removing items in turn, and
/// waiting for room while the buffer is full, is silent.
#[tokio::test]
async fn capacity_moved_between_two_semaphores_is_silent() {
    let lockdep = test_guard();
    let room = Semaphore::with_class("forgot-room", 2);
    let items = Semaphore::with_class("forgot-items", 0);
    let add = || async {
        room.acquire().await.unwrap().forget();
        items.add_permits(1);
    };
    let remove = || async {
        items.acquire().await.unwrap().forget();
        room.add_permits(1);
    };
    for _ in 0..2 {
        add().await;
        add().await;
        let full = tokio::time::timeout(Duration::from_millis(80), room.acquire()).await;
        assert!(full.is_err(), "no room");
        remove().await;
        add().await;
        remove().await;
        remove().await;
    }
    assert_eq!(
        (room.available_permits(), items.available_permits()),
        (2, 0)
    );
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}
