//! Adversarial scenarios: realistic tokio programs modelled on real deadlock
//! bugs (must report, with the exact classes) and on correct programs that a
//! shortcut in the detector would flag (must stay silent).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{
    own_context, test_guard, LazyWorkQueue, Mutex, ReportKind, RwLock, Semaphore, WorkQueue,
};

/// Every potentially blocking wait in these tests is bounded.
const HANG: Duration = Duration::from_secs(10);

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    common::within_for(HANG, what, f).await
}

fn kinds(reports: &[async_lockdep::Report]) -> Vec<ReportKind> {
    reports.iter().map(|r| r.kind).collect()
}

fn assert_idle(lockdep: &async_lockdep::TestGuard) {
    let status = lockdep.detector().status();
    assert_eq!(status.contexts_holding_locks, 0, "{status:?}");
    assert_eq!(status.contexts_waiting, 0, "{status:?}");
}

// ---------------------------------------------------------------------------
// Per-task, not per-thread
// ---------------------------------------------------------------------------

/// One current-thread runtime: task 1 holds `a` across a sleep while task 2
/// (same OS thread) takes `b` and lets it go. Later a third task takes `b`
/// then `a`. Only `b -> a` exists; a per-thread detector would have recorded
/// `a -> b` and reported a cycle.
#[tokio::test]
async fn interleaved_tasks_on_one_thread_do_not_share_held_locks() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", 0u32));
    let b = Arc::new(Mutex::with_class("b", 0u32));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();

    let holder = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut g = a.lock().await;
            *g += 1;
            rx.await.unwrap(); // yields with `a` held
        })
    };
    tokio::task::yield_now().await; // holder now holds a
    let other = {
        let b = b.clone();
        tokio::spawn(async move {
            *b.lock().await += 1; // same thread, `a` held by another task
        })
    };
    bounded("other", other).await.unwrap();
    tx.send(()).unwrap();
    bounded("holder", holder).await.unwrap();

    // The test body itself (a thread context) holding `a` while a spawned
    // task takes `b` on the same thread: still two contexts.
    let guard = a.lock().await;
    let b2 = b.clone();
    bounded(
        "spawned under body lock",
        tokio::spawn(async move {
            *b2.lock().await += 1;
        }),
    )
    .await
    .unwrap();
    drop(guard);

    let (a2, b2) = (a.clone(), b.clone());
    bounded(
        "b then a",
        tokio::spawn(async move {
            let _b = b2.lock().await;
            let _a = a2.lock().await;
        }),
    )
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_eq!(lockdep.detector().status().dependencies, 1, "only b -> a");
    assert_idle(&lockdep);
}

/// A task holding `a` may move between worker threads (yields, blocking
/// work) before it takes `b`; the held lock must follow the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_lock_follows_a_task_across_worker_threads() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let (a1, b1) = (a.clone(), b.clone());
    let first = tokio::spawn(async move {
        let _a = a1.lock().await;
        let mut threads = std::collections::HashSet::new();
        for _ in 0..20 {
            threads.insert(std::thread::current().id());
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(1)))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        let _b = b1.lock().await; // a -> b, wherever this runs
        threads.len()
    });
    let _threads = bounded("first", first).await.unwrap();
    let (a2, b2) = (a.clone(), b.clone());
    bounded(
        "second",
        tokio::spawn(async move {
            let _b = b2.lock().await;
            let _a = a2.lock().await;
        }),
    )
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["b", "a"]);
}

/// A task spawned while the parent holds `a` does not inherit it: its `b`
/// is not ordered after `a`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_child_does_not_inherit_the_parents_locks() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let (a1, b1) = (a.clone(), b.clone());
    let parent = tokio::spawn(async move {
        let ga = a1.lock().await;
        let child = tokio::spawn(async move {
            let _b = b1.lock().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(ga);
        child.await.unwrap(); // awaited with nothing held
    });
    bounded("parent", parent).await.unwrap();
    let (a2, b2) = (a.clone(), b.clone());
    bounded(
        "b then a",
        tokio::spawn(async move {
            let _b = b2.lock().await;
            let _a = a2.lock().await;
        }),
    )
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

// ---------------------------------------------------------------------------
// try_lock
// ---------------------------------------------------------------------------

/// The classic "lock ordering avoidance": the inverted path takes `b`, then
/// only *tries* `a`, and backs off (drops `b`) when it fails. Cannot
/// deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_lock_backoff_in_the_inverted_path_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", 0u64));
    let b = Arc::new(Mutex::with_class("b", 0u64));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                if i % 2 == 0 {
                    let mut ga = a.lock().await;
                    let mut gb = b.lock().await;
                    *ga += 1;
                    *gb += 1;
                } else {
                    loop {
                        let mut gb = b.lock().await;
                        match a.try_lock() {
                            Ok(mut ga) => {
                                *ga += 1;
                                *gb += 1;
                                break;
                            }
                            Err(_) => {
                                drop(gb);
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        bounded("worker", t).await.unwrap();
    }
    assert_eq!(*a.lock().await, 16 * 50);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

/// A chain first seen through `try_lock` (no dependency) must not be
/// remembered as validated: the same chain through `lock()` later records
/// `a -> b`, and `b -> a` then closes a cycle.
#[tokio::test]
async fn try_lock_chain_does_not_validate_the_waiting_chain() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("a", ());
    let b = Mutex::with_class("b", ());
    let c = Mutex::with_class("c", ());
    for _ in 0..3 {
        let _a = a.lock().await;
        let _b = b.try_lock().expect("free");
        let _c = c.lock().await; // a -> c, b -> c
    }
    assert_eq!(lockdep.detector().status().dependencies, 2);
    {
        let _a = a.lock().await;
        let _b = b.lock().await; // a -> b now
    }
    {
        let _b = b.lock().await;
        let _a = a.lock().await; // closes b -> a -> b
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["b", "a"]);
}

/// A failed `try_lock` leaves nothing held; a successful one taken out of
/// order and released first leaves nothing behind either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_try_lock_and_out_of_order_release_leave_no_stale_holds() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let c = Arc::new(Mutex::with_class("c", ()));

    // Someone else holds `a` for a while.
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let a = a.clone();
        tokio::spawn(async move {
            let _a = a.lock().await;
            held_tx.send(()).unwrap();
            release_rx.await.unwrap();
        })
    };
    bounded("holder ready", held_rx).await.unwrap();
    assert!(a.try_lock().is_err());
    {
        let _c = c.lock().await; // `a` must not count as held here
    }
    release_tx.send(()).unwrap();
    bounded("holder", holder).await.unwrap();

    // try_lock `b` while holding `a` (no a -> b), release `a` first, then
    // wait for `c`: only b -> c, not a -> c.
    {
        let ga = a.lock().await;
        let gb = b.try_lock().expect("free");
        drop(ga);
        let _c = c.lock().await;
        drop(gb);
    }
    // `c` then `a` in another task: no cycle in what really happened.
    let (a2, c2) = (a.clone(), c.clone());
    bounded(
        "c then a",
        tokio::spawn(async move {
            let _c = c2.lock().await;
            let _a = a2.lock().await;
        }),
    )
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

// ---------------------------------------------------------------------------
// Joins and executors
// ---------------------------------------------------------------------------

/// A real bug shape: a task holds the state lock and awaits a helper it just
/// spawned, which needs the state lock. Deadlocks for real.
#[tokio::test]
async fn awaiting_a_spawned_helper_under_the_lock_it_needs_is_reported() {
    if common::own_process() {
        return;
    }
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let state = Arc::new(Mutex::with_class("state", 0u32));
    let guard = state.lock().await;
    let s = state.clone();
    let helper = async_lockdep::spawn_named("reaper", async move {
        *s.lock().await += 1;
    });
    let joined = tokio::time::timeout(Duration::from_millis(200), helper).await;
    assert!(joined.is_err(), "it really deadlocks");
    drop(guard);
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency, ReportKind::DeadlockNow],
        "{reports:#?}"
    );
    // Current-thread: the join is recorded first, the helper's wait closes it.
    assert_eq!(reports[0].class_names(), ["reaper", "state"]);
}

/// The same bug on a multi-thread runtime, from a task started with
/// `async_lockdep::spawn` (which carries the detector to the worker thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_a_spawned_helper_under_the_lock_it_needs_multi_thread() {
    if common::own_process() {
        return;
    }
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let state = Arc::new(Mutex::with_class("state", 0u32));
    let outer = async_lockdep::spawn_named("handler", helper_under_lock(state));
    assert!(
        bounded("outer", outer).await.unwrap(),
        "it really deadlocks"
    );
    check_helper_reports(lockdep.take_reports());
}

/// Same, but the handler is a plain `tokio::spawn` task (the usual way a
/// server starts one): the helper is created on a worker thread, where
/// `test_guard()` is not the default dispatcher. The lock (`state`) was
/// created in the test body and does report; the join and the helper's
/// pseudo-lock do not, so a real deadlock goes unreported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_a_spawned_helper_from_a_plain_tokio_task_is_reported() {
    if common::own_process() {
        return;
    }
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let state = Arc::new(Mutex::with_class("state", 0u32));
    let outer = tokio::spawn(helper_under_lock(state));
    assert!(
        bounded("outer", outer).await.unwrap(),
        "it really deadlocks"
    );
    check_helper_reports(lockdep.take_reports());
}

async fn helper_under_lock(state: Arc<Mutex<u32>>) -> bool {
    let guard = state.lock().await;
    let s = state.clone();
    let helper = async_lockdep::spawn_named("reaper", async move {
        *s.lock().await += 1;
    });
    let joined = tokio::time::timeout(Duration::from_millis(200), helper).await;
    drop(guard);
    joined.is_err()
}

fn check_helper_reports(reports: Vec<async_lockdep::Report>) {
    let cycles: Vec<_> = reports
        .iter()
        .filter(|r| r.kind == ReportKind::CircularDependency)
        .collect();
    assert_eq!(cycles.len(), 1, "{reports:#?}");
    let mut names = cycles[0].class_names();
    names.sort();
    assert_eq!(names, ["reaper", "state"]);
    assert!(
        reports.iter().any(|r| r.kind == ReportKind::DeadlockNow),
        "{reports:#?}"
    );
}

/// Awaiting a helper while holding a lock the helper never takes is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_a_helper_under_an_unrelated_lock_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let config = Arc::new(Mutex::with_class("config", ()));
    let stats = Arc::new(Mutex::with_class("stats", 0u32));
    for _ in 0..10 {
        let _cfg = config.lock().await;
        let s = stats.clone();
        bounded(
            "helper",
            async_lockdep::spawn_named("flusher", async move {
                *s.lock().await += 1;
            }),
        )
        .await
        .unwrap();
    }
    // Somebody else reads stats alone, and config alone.
    drop(stats.lock().await);
    drop(config.lock().await);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

/// fsync under the inode lock flushes the DIO queue whose completion work
/// takes the inode lock: the LKML deadlock, for real this time.
#[tokio::test]
async fn flush_under_inode_lock_whose_work_takes_the_inode_is_reported() {
    if common::own_process() {
        return;
    }
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let inode = Arc::new(Mutex::with_class("inode", 0u64));
    let dio = WorkQueue::builder("dio").class("dio").build();
    let guard = inode.lock().await;
    let i = inode.clone();
    let _completion = dio.queue(async move {
        *i.lock().await += 1; // end_io updates i_size
    });
    let flushed = tokio::time::timeout(Duration::from_millis(200), dio.flush()).await;
    assert!(flushed.is_err(), "it really deadlocks");
    drop(guard);
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency, ReportKind::DeadlockNow],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["dio", "inode"]);
}

/// The lazy creation race of the LKML thread, then correct use: completion
/// work takes only the journal, fsync flushes under the inode lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_dio_race_then_correct_fsync_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let dio = Arc::new(LazyWorkQueue::with_class("dio", "dio"));
    let journal = Arc::new(Mutex::with_class("journal", 0u64));
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let (dio, journal, barrier) = (dio.clone(), journal.clone(), barrier.clone());
        let inode = Arc::new(Mutex::with_class("inode", 0u64));
        writers.push(tokio::spawn(async move {
            let mut i = inode.lock().await;
            barrier.wait().await;
            let queue = dio.get_or_create().await;
            *i += 1;
            let item = queue.queue(async move {
                *journal.lock().await += 1; // dio -> journal
            });
            drop(i);
            item.await.unwrap();
            // fsync: inode -> dio
            let _i = inode.lock().await;
            queue.flush().await.unwrap();
        }));
    }
    for w in writers {
        bounded("writer", w).await.unwrap();
    }
    assert_eq!(*journal.lock().await, 8);
    assert_eq!(dio.created(), dio.losers_destroyed() + 1);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

// ---------------------------------------------------------------------------
// Connection pool: semaphore + per-connection mutexes
// ---------------------------------------------------------------------------

struct Pool {
    permits: Semaphore,
    conns: Vec<Mutex<u64>>,
    stats: Mutex<u64>,
}

fn pool(n: usize) -> Arc<Pool> {
    Arc::new(Pool {
        permits: Semaphore::with_class("pool", n),
        conns: (0..n).map(|_| Mutex::with_class("conn", 0)).collect(),
        stats: Mutex::with_class("stats", 0),
    })
}

async fn query(pool: &Pool, key: usize) {
    let _permit = pool.permits.acquire().await.unwrap();
    let mut conn = pool.conns[key % pool.conns.len()].lock().await;
    *conn += 1;
    tokio::task::yield_now().await;
    *pool.stats.lock().await += 1; // pool -> conn -> stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pool_in_a_consistent_order_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let pool = pool(3);
    let mut clients = Vec::new();
    for c in 0..12 {
        let pool = pool.clone();
        clients.push(tokio::spawn(async move {
            for k in 0..30 {
                query(&pool, c * 7 + k).await;
            }
        }));
    }
    for c in clients {
        bounded("client", c).await.unwrap();
    }
    assert_eq!(*pool.stats.lock().await, 12 * 30);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

/// The reconnect path holds the broken connection's mutex and waits for a
/// permit to open a replacement: `conn -> pool` against `pool -> conn`.
#[tokio::test]
async fn connection_pool_reconnect_under_the_conn_lock_is_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let pool = pool(2);
    query(&pool, 0).await;
    {
        let mut broken = pool.conns[1].lock().await;
        let _fresh = pool.permits.acquire().await.unwrap();
        *broken = 0;
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["conn", "pool"]);
}

// ---------------------------------------------------------------------------
// RwLock: cache and database
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cache_read_then_db_write_against_db_read_then_cache_write_is_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let cache = RwLock::with_class("cache", 0u32);
    let db = RwLock::with_class("db", 0u32);
    {
        // lookup: miss in cache, fetch and update the db while still reading
        let c = cache.read().await;
        let mut d = db.write().await;
        *d += *c;
    }
    {
        // refresher: scan the db, write the cache
        let d = db.read().await;
        let mut c = cache.write().await;
        *c = *d;
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["db", "cache"]);
    assert!(!reports[0].needs_writer, "no writer needed: {}", reports[0]);
}

#[tokio::test]
async fn cache_and_db_read_in_both_orders_needs_a_writer() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let cache = RwLock::with_class("cache", 0u32);
    let db = RwLock::with_class("db", 0u32);
    {
        let _c = cache.read().await;
        let _d = db.read().await;
    }
    {
        let _d = db.read().await;
        let _c = cache.read().await;
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["db", "cache"]);
    assert!(reports[0].needs_writer);
}

/// `cache` read -> `m` is seen first, then `cache` write -> `m`. The closing
/// `m -> cache (read)` is a plain deadlock against the writer path (a task
/// holding the write lock and waiting for `m` blocks the reader), so the
/// report must not say a queued writer is needed.
#[tokio::test]
async fn write_dependency_seen_after_a_read_one_is_not_a_reader_only_cycle() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let cache = RwLock::with_class("cache", 0u32);
    let m = Mutex::with_class("m", ());
    {
        let _c = cache.read().await;
        let _m = m.lock().await;
    }
    {
        let _c = cache.write().await;
        let _m = m.lock().await;
    }
    {
        let _m = m.lock().await;
        let _c = cache.read().await;
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["m", "cache"]);
    assert!(
        !reports[0].needs_writer,
        "the write path closes it with no extra writer: {}",
        reports[0]
    );
}

/// Upgrading a read guard by taking the write lock while still reading: a
/// real self-deadlock.
#[tokio::test]
async fn upgrade_while_reading_is_a_self_deadlock() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let cache = RwLock::with_class("cache", Option::<u32>::None);
    let c = cache.read().await;
    if c.is_none() {
        let upgraded = tokio::time::timeout(Duration::from_millis(100), cache.write()).await;
        assert!(upgraded.is_err(), "it really deadlocks");
    }
    drop(c);
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.first().map(|r| r.kind),
        Some(ReportKind::PossibleSelfDeadlock),
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["cache"]);
    assert!(!reports[0].needs_writer);
    assert_idle(&lockdep);
}

/// Downgrading and dropping, mapping and dropping: nothing stays held.
#[tokio::test]
async fn downgraded_and_mapped_guards_release_when_dropped() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let table = RwLock::with_class("table", vec![1u32, 2]);
    let row = Mutex::with_class("row", (0u32, 0u32));
    let log = Mutex::with_class("log", ());
    {
        let w = table.write().await;
        let r = w.downgrade();
        assert_eq!(r[0], 1);
        drop(r);
    }
    {
        let g = row.lock().await;
        let mapped = async_lockdep::MutexGuard::map(g, |r| &mut r.0);
        drop(mapped);
        let _l = log.lock().await; // neither table nor row is held
    }
    {
        let _l = log.lock().await;
        let _t = table.write().await; // log -> table
        let _r = row.lock().await; // log -> row, table -> row
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

// ---------------------------------------------------------------------------
// Bank transfers
// ---------------------------------------------------------------------------

struct Account {
    id: u32,
    balance: Mutex<i64>,
}

fn accounts(n: u32) -> Vec<Arc<Account>> {
    (0..n)
        .map(|id| {
            Arc::new(Account {
                id,
                balance: Mutex::with_class("account", 100),
            })
        })
        .collect()
}

async fn transfer_ordered(from: &Account, to: &Account, amount: i64, ledger: &Mutex<Vec<i64>>) {
    let (first, second) = if from.id < to.id {
        (from, to)
    } else {
        (to, from)
    };
    let mut x = first.balance.lock_nested(0).await;
    let mut y = second.balance.lock_nested(1).await;
    let sign = if first.id == from.id { 1 } else { -1 };
    *x -= sign * amount;
    *y += sign * amount;
    ledger.lock().await.push(amount); // account -> ledger, account/1 -> ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_in_id_order_with_declared_nesting_are_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let accts = accounts(5);
    let ledger = Arc::new(Mutex::with_class("ledger", Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..40usize {
        let (from, to) = (accts[i % 5].clone(), accts[(i * 3 + 1) % 5].clone());
        if from.id == to.id {
            continue;
        }
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            transfer_ordered(&from, &to, 1, &ledger).await
        }));
    }
    for t in tasks {
        bounded("transfer", t).await.unwrap();
    }
    let mut total = 0;
    for a in &accts {
        total += *a.balance.lock().await;
    }
    assert_eq!(total, 500);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

/// The same transfer written naively: lock `from`, then `to`. Two
/// transfers in opposite directions deadlock.
#[tokio::test]
async fn bank_transfer_without_id_order_is_recursive_locking() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let accts = accounts(2);
    for (from, to) in [(0, 1), (1, 0)] {
        let mut x = accts[from].balance.lock().await;
        let mut y = accts[to].balance.lock().await;
        *x -= 5;
        *y += 5;
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::RecursiveLocking],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["account", "account"]);
}

/// An audit that holds the ledger and then reads an account inverts
/// `account -> ledger` from the transfers.
#[tokio::test]
async fn bank_audit_holding_the_ledger_then_an_account_is_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let accts = accounts(2);
    let ledger = Mutex::with_class("ledger", Vec::new());
    transfer_ordered(&accts[0], &accts[1], 5, &ledger).await;
    {
        let entries = ledger.lock().await;
        let balance = *accts[0].balance.lock().await;
        assert_eq!(entries.len(), 1);
        assert_eq!(balance, 95);
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["ledger", "account"]);
}

// ---------------------------------------------------------------------------
// Cancellation: aborts and timeouts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_and_timed_out_tasks_leave_nothing_held_or_waiting() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", 0u32));
    let b = Arc::new(Mutex::with_class("b", 0u32));
    let sem = Arc::new(Semaphore::with_class("sem", 1));

    // Holds `a` and `b` then sleeps forever: aborted.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sleeper = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            let _a = a.lock().await;
            let _b = b.lock().await;
            tx.send(()).unwrap();
            std::future::pending::<()>().await;
        })
    };
    bounded("sleeper holds", rx).await.unwrap();
    // Waiters on `a`: one aborted while waiting, one timing out while
    // holding a permit.
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move {
            *a.lock().await += 1;
        })
    };
    let timer = {
        let (a, sem) = (a.clone(), sem.clone());
        tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            tokio::time::timeout(Duration::from_millis(30), a.lock())
                .await
                .is_err()
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    waiter.abort();
    assert!(bounded("timer", timer).await.unwrap(), "timed out");
    assert!(bounded("waiter", waiter).await.unwrap_err().is_cancelled());
    sleeper.abort();
    assert!(bounded("sleeper", sleeper)
        .await
        .unwrap_err()
        .is_cancelled());

    // Correct work afterwards, same order as before.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (a, b, sem) = (a.clone(), b.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let _a = a.lock().await;
            *b.lock().await += 1;
        }));
    }
    for t in tasks {
        bounded("worker", t).await.unwrap();
    }
    assert_eq!(*b.lock().await, 8);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

/// A runtime shut down while its tasks hold and wait for locks.
#[test]
fn runtime_shutdown_with_tasks_holding_and_waiting_leaves_nothing_behind() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (a1, b1) = (a.clone(), b.clone());
        tokio::spawn(async move {
            let _a = a1.lock().await;
            let _b = b1.lock().await;
            tx.send(()).unwrap();
            std::future::pending::<()>().await;
        });
        rx.await.unwrap();
        let a2 = a.clone();
        tokio::spawn(async move {
            let _a = a2.lock().await; // waits forever
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(lockdep.detector().status().contexts_waiting, 1);
    });
    drop(rt);
    assert_idle(&lockdep);
    assert!(a.try_lock().is_ok() && b.try_lock().is_ok());
    assert!(lockdep.take_reports().is_empty());
}

// ---------------------------------------------------------------------------
// Owned guards moved across tasks
// ---------------------------------------------------------------------------

/// Task 1 hands its owned guard of `a` to a writer task, which drops it;
/// only then does task 1 take `c`. Nothing orders `c` after `a`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_guard_handed_off_and_dropped_then_other_locks_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", 0u32));
    let c = Arc::new(Mutex::with_class("c", 0u32));
    let (a1, c1) = (a.clone(), c.clone());
    let t1 = tokio::spawn(async move {
        let guard = a1.lock_owned().await;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut g = guard;
            *g += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(g);
            done_tx.send(()).unwrap();
        });
        done_rx.await.unwrap(); // the guard is gone
        *c1.lock().await += 1;
    });
    bounded("t1", t1).await.unwrap();
    let (a2, c2) = (a.clone(), c.clone());
    bounded(
        "c then a",
        tokio::spawn(async move {
            let _c = c2.lock().await;
            let _a = a2.lock().await;
        }),
    )
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

/// Documented limitation: while the moved owned guard is alive it counts as
/// held by the task that locked it, so that task's later locks are ordered
/// after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_guard_moved_away_does_not_order_the_lockers_next_locks() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let (a1, b1) = (a.clone(), b.clone());
    bounded(
        "t1",
        tokio::spawn(async move {
            let guard = a1.lock_owned().await;
            let (drop_tx, drop_rx) = tokio::sync::oneshot::channel::<()>();
            let keeper = tokio::spawn(async move {
                drop_rx.await.unwrap();
                drop(guard);
            });
            drop(b1.lock().await); // a -> b is provisional: the guard moved away
            drop_tx.send(()).unwrap();
            keeper.await.unwrap();
        }),
    )
    .await
    .unwrap();
    assert_idle(&lockdep);
    let (a2, b2) = (a.clone(), b.clone());
    bounded(
        "b then a",
        tokio::spawn(async move {
            let _b = b2.lock().await;
            let _a = a2.lock().await;
        }),
    )
    .await
    .unwrap();
    // Released by another task: `a -> b` was dropped, so no cycle.
    let reports = lockdep.take_reports();
    assert_eq!(kinds(&reports), [], "{reports:#?}");
}

// ---------------------------------------------------------------------------
// Futures joined inside one task
// ---------------------------------------------------------------------------

/// Documented: without `own_context`, joined futures share the task's
/// context, so `a` held by one orders `b` taken by the other.
#[tokio::test]
async fn joined_futures_without_own_context_share_the_task() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("a", ());
    let b = Mutex::with_class("b", ());
    tokio::join!(
        async {
            let _a = a.lock().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        },
        async {
            tokio::task::yield_now().await;
            let _b = b.lock().await; // while the sibling holds `a`
        },
    );
    {
        let _b = b.lock().await;
        let _a = a.lock().await;
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["b", "a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_futures_with_own_context_are_separate() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("a", 0u32);
    let b = Mutex::with_class("b", 0u32);
    let shared = Mutex::with_class("shared", 0u32);
    bounded("join", async {
        tokio::join!(
            own_context(async {
                let _a = a.lock().await;
                *shared.lock().await += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }),
            own_context(async {
                tokio::task::yield_now().await;
                let _b = b.lock().await;
                *shared.lock().await += 1; // waits for the sibling: not a self-deadlock
            }),
        )
    })
    .await;
    {
        let _b = b.lock().await;
        let _a = a.lock().await; // b -> a only
    }
    assert_eq!(*shared.lock().await, 2);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
}

// ---------------------------------------------------------------------------
// Cycles through classes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn four_lock_cycle_across_four_sequential_tasks_is_one_report() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let locks: Vec<_> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|n| Arc::new(Mutex::with_class(n, ())))
        .collect();
    for i in 0..4 {
        let (x, y) = (locks[i].clone(), locks[(i + 1) % 4].clone());
        bounded(
            "task",
            tokio::spawn(async move {
                let _x = x.lock().await;
                let _y = y.lock().await;
            }),
        )
        .await
        .unwrap();
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["d", "a", "b", "c"]);
    assert_eq!(reports[0].dependencies.len(), 4);
}

/// Shards created in a loop share the class of their creation line; the
/// registry inverted against any shard is one cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_created_shards_against_a_registry_in_both_orders_is_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let shard_line = line!() + 1;
    let shards: Arc<Vec<Mutex<u32>>> = Arc::new((0..4).map(|_| Mutex::new(0)).collect());
    let registry = Arc::new(Mutex::with_class("registry", 0u32));
    let (s1, r1) = (shards.clone(), registry.clone());
    bounded(
        "insert",
        tokio::spawn(async move {
            let mut s = s1[0].lock().await;
            *s += 1;
            *r1.lock().await += 1; // shard -> registry
        }),
    )
    .await
    .unwrap();
    let (s2, r2) = (shards.clone(), registry.clone());
    bounded(
        "rebalance",
        tokio::spawn(async move {
            let _r = r2.lock().await;
            *s2[3].lock().await += 1; // registry -> shard (another instance)
        }),
    )
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    let names = reports[0].class_names();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "registry");
    assert!(
        names[1].starts_with(&format!("{}:{}:", file!(), shard_line)),
        "{names:?}"
    );
}

// ---------------------------------------------------------------------------
// Long-lived program
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_correct_program_stays_small_and_idle() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let sem = Arc::new(Semaphore::with_class("inflight", 4));
    let sessions = Arc::new(RwLock::with_class("sessions", 0u64));
    let make_user = || Mutex::with_class("user", 0u64);
    let users: Arc<Vec<Mutex<u64>>> = Arc::new((0..8).map(|_| make_user()).collect());
    let metrics = Arc::new(Mutex::with_class("metrics", 0u64));
    let queue = Arc::new(WorkQueue::builder("bg").class("bg").build());
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let (sem, sessions, users, metrics, queue) = (
            sem.clone(),
            sessions.clone(),
            users.clone(),
            metrics.clone(),
            queue.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..150usize {
                let _p = sem.acquire().await.unwrap();
                let s = sessions.read().await;
                let mut u = users[(t + i) % users.len()].lock().await;
                *u += *s;
                if i % 10 == 0 {
                    if let Ok(mut m) = metrics.try_lock() {
                        *m += 1;
                    }
                }
                drop(u);
                drop(s);
                if i % 25 == 0 {
                    let mut w = sessions.write().await;
                    *w += 1;
                    let m = metrics.clone();
                    let item = queue.queue(async move {
                        *m.lock().await += 1; // bg -> metrics
                    });
                    drop(w);
                    item.await.unwrap();
                }
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        bounded("task", t).await.unwrap();
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_idle(&lockdep);
    let status = lockdep.detector().status();
    // inflight -> sessions, inflight -> user, sessions -> user,
    // inflight -> bg (the item awaited with the permit), bg -> metrics
    assert_eq!(status.dependencies, 5, "{status:?}");
    assert!(!status.overflowed);
}

// ---------------------------------------------------------------------------
// More shapes
// ---------------------------------------------------------------------------

/// A handler reads the config, then calls a helper that reads it again:
/// deadlocks as soon as a reload (writer) queues in between.
#[tokio::test]
async fn nested_read_of_the_same_rwlock_is_reported_as_needing_a_writer() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let config = RwLock::with_class("config", 3u32);
    async fn helper(config: &RwLock<u32>) -> u32 {
        *config.read().await
    }
    let outer = config.read().await;
    let inner = bounded("helper", helper(&config)).await;
    assert_eq!(*outer, inner);
    drop(outer);
    *config.write().await = 4; // the reload: a writer of this class exists
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::PossibleSelfDeadlock],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["config"]);
    assert!(reports[0].needs_writer);
}

/// Locks created inside a task started with `async_lockdep::spawn` on a
/// worker thread report to the test's detector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_created_inside_a_lockdep_spawned_task_are_checked() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let task = async_lockdep::spawn(async {
        let x = Arc::new(Mutex::with_class("x", ()));
        let y = Arc::new(Mutex::with_class("y", ()));
        {
            let _x = x.lock().await;
            let _y = y.lock().await;
        }
        let (x2, y2) = (x.clone(), y.clone());
        tokio::spawn(async move {
            let _y = y2.lock().await;
            let _x = x2.lock().await;
        })
        .await
        .unwrap();
    });
    bounded("task", task).await.unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["y", "x"]);
}

/// Plain threads with `blocking_lock` are contexts of their own.
#[test]
fn blocking_threads_in_opposite_orders_are_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let (a1, b1) = (a.clone(), b.clone());
    std::thread::spawn(move || {
        let _a = a1.blocking_lock();
        let _b = b1.blocking_lock();
    })
    .join()
    .unwrap();
    let (a2, b2) = (a.clone(), b.clone());
    std::thread::spawn(move || {
        let _b = b2.blocking_lock();
        let _a = a2.blocking_lock();
    })
    .join()
    .unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(
        kinds(&reports),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["b", "a"]);
    assert_idle(&lockdep);
}

/// A guard dropped on another thread, and a disabled `select!` branch whose
/// lock future is built but never polled: neither orders anything.
#[tokio::test]
async fn guard_dropped_on_a_thread_and_unpolled_lock_future_record_nothing() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("a", ());
    let b = Mutex::with_class("b", ());
    let c = Mutex::with_class("c", ());
    let ga = a.lock().await;
    std::thread::scope(|s| {
        s.spawn(move || drop(ga));
    });
    {
        let _c = c.lock().await; // `a` is no longer held
    }
    {
        let _a = a.lock().await;
        let want_b = false;
        tokio::select! {
            _ = b.lock(), if want_b => unreachable!(),
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    {
        let _c = c.lock().await;
        let _a = a.lock().await; // c -> a
    }
    {
        let _b = b.lock().await;
        let _a = a.lock().await; // b -> a
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    assert_eq!(lockdep.detector().status().dependencies, 2);
    assert_idle(&lockdep);
}

/// A closed semaphore fails its waiters; a forgotten permit is held until
/// given back (provisionally, as an owned permit: "slots → m" below is not
/// committed, so no cycle with "m → slots"), and let go with its semaphore.
/// Neither leaves state behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_semaphore_and_forgotten_permits_leave_nothing_held() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let sem = Arc::new(Semaphore::with_class("slots", 1));
    let m = Arc::new(Mutex::with_class("m", ()));
    let first = sem.acquire().await.unwrap();
    let waiter = {
        let (sem, m) = (sem.clone(), m.clone());
        tokio::spawn(async move {
            let _m = m.lock().await;
            sem.acquire().await.is_err() // m -> slots, then closed
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    sem.close();
    assert!(bounded("waiter", waiter).await.unwrap());
    first.forget();
    let fresh = Arc::new(Semaphore::with_class("slots", 1));
    fresh.acquire().await.unwrap().forget();
    {
        let _m = m.lock().await; // slots -> m: provisional, never given back
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    drop((sem, fresh));
    assert_idle(&lockdep);
}
