//! The live "stuck now" check beyond one lock: a wait for permits is stuck
//! only when every permit is held by a context that is itself stuck, a read
//! at the reader cap only when every read stays held, and a lock tokio has
//! handed to a pending future (polled once, kept aside) counts as held by
//! that future's task.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{own_context, test_guard, Mutex, ReportKind, RwLock, Semaphore};

/// A request handler holds the cache lock and waits for a connection; every
/// connection is held by a task waiting for the cache lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_permit_held_by_tasks_waiting_for_the_waiters_lock_really_hangs_and_is_reported() {
    // This test watches the tasks hang: it keeps them stuck (a guard's
    // default now makes one waiter give up).
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let pool = Arc::new(Semaphore::with_class("stuck-pool", 2));
    let cache = Arc::new(Mutex::with_class("stuck-cache", 0u32));
    let anchor = line!();
    let outcome = tokio::time::timeout(Duration::from_millis(400), async {
        let _cache = cache.lock().await; // anchor + 2
        let mut holders = Vec::new();
        for _ in 0..2 {
            let (pool, cache) = (pool.clone(), cache.clone());
            holders.push(tokio::spawn(async move {
                let _connection = pool.acquire().await.unwrap(); // anchor + 7
                *cache.lock().await += 1; // anchor + 8: waits for the handler
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // both queued
        let _connection = pool.acquire().await.unwrap(); // anchor + 12: every permit is held
    })
    .await;
    assert!(outcome.is_err(), "it really hangs");
    let reports = lockdep.take_reports();
    let kinds = common::kinds(&reports);
    assert_eq!(
        kinds,
        [ReportKind::CircularDependency, ReportKind::DeadlockNow],
        "{reports:#?}"
    );
    let stuck = &reports[1];
    assert_eq!(stuck.class_names(), ["stuck-cache", "stuck-pool"]);
    let lines = common::held_waited_lines(stuck);
    assert_eq!(
        lines,
        [(anchor + 2, anchor + 12), (anchor + 7, anchor + 8)],
        "{stuck}"
    );
    let text = stuck.to_string();
    assert!(
        text.contains("every permit of a semaphore waited for here is held by a task that waits"),
        "{text}"
    );
}

/// The same handler, but one connection is held by a task that is busy
/// (not waiting): it gives its permit back, so nothing is stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_held_by_a_running_task_is_not_stuck() {
    let lockdep = test_guard();
    let pool = Arc::new(Semaphore::with_class("running-pool", 2));
    let cache = Arc::new(Mutex::with_class("running-cache", 0u32));
    let cache_guard = cache.clone().lock_owned().await;
    let p = pool.clone();
    let busy = tokio::spawn(async move {
        let _connection = p.acquire().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await; // a query
    });
    let (p, c) = (pool.clone(), cache.clone());
    let waiting = tokio::spawn(async move {
        let _connection = p.acquire().await.unwrap();
        *c.lock().await += 1;
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let connection = tokio::time::timeout(Duration::from_secs(5), pool.acquire())
        .await
        .expect("the busy task gives its connection back")
        .unwrap();
    drop(connection);
    drop(cache_guard);
    busy.await.unwrap();
    waiting.await.unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency],
        "the lock order is a potential deadlock, nothing is stuck now: {reports:#?}"
    );
    let mut classes = reports[0].class_names();
    classes.sort();
    assert_eq!(classes, ["running-cache", "running-pool"]);
}

/// The limiter pattern in one task: `join_all` of requests, each taking a
/// permit of a small pool for its I/O, each in a context of its own
/// (`own_context`): the permits are the siblings', given back. Silent.
#[tokio::test]
async fn a_limiter_joined_in_one_task_with_own_contexts_is_silent() {
    let lockdep = test_guard();
    let limit = Semaphore::with_class("joined-limit", 2);
    let requests = (0..6u64).map(|i| {
        let limit = &limit;
        own_context(async move {
            let _permit = limit.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await; // the request
            i
        })
    });
    let done = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(requests))
        .await
        .expect("the limiter lets every request through");
    assert_eq!(done.iter().sum::<u64>(), 15);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// Without contexts of their own, the joined futures are one task holding a
/// permit and taking another: the shape of a transaction opening a second
/// connection. But each wait ends when a sibling gives its permit back, and
/// a permit taken at once is given back after the earlier one (siblings
/// taking turns, not nesting): silent. (It was reported as a possible pool
/// exhaustion with the joined-futures note.)
#[tokio::test]
async fn a_limiter_joined_in_one_task_is_silent() {
    let lockdep = test_guard();
    let limit = Semaphore::with_class("joined-limit-plain", 2);
    let requests = (0..6u64).map(|i| {
        let limit = &limit;
        async move {
            let _permit = limit.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            i
        }
    });
    let done = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(requests))
        .await
        .expect("the limiter lets every request through");
    assert_eq!(done.iter().sum::<u64>(), 15);
    assert_eq!(lockdep.take_reports(), []);
}

/// A helper that opens a connection, called twice by one transaction: one
/// `acquire` site for both permits. Two transactions at once take both
/// permits and each waits for a second one: it hangs, and is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_helper_called_twice_in_a_transaction_really_hangs_and_is_reported() {
    let lockdep = test_guard();
    let pool = Arc::new(Semaphore::with_class("helper-pool", 2));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut transactions = Vec::new();
    for _ in 0..2 {
        let (pool, barrier) = (pool.clone(), barrier.clone());
        transactions.push(tokio::spawn(async move {
            let _transaction = connect(&pool).await;
            barrier.wait().await; // both permits are taken now
            let _query = connect(&pool).await; // a second connection
        }));
    }
    let all = async {
        for t in transactions {
            t.await.unwrap();
        }
    };
    let outcome = tokio::time::timeout(Duration::from_millis(800), all).await;
    assert!(outcome.is_err(), "it really hangs");
    let reports = lockdep.take_reports();
    let pool_reports: Vec<_> = reports
        .iter()
        .filter(|r| r.kind == ReportKind::PoolExhaustion)
        .collect();
    assert_eq!(pool_reports.len(), 1, "{reports:#?}");
    let dep = &pool_reports[0].dependencies[0];
    assert_eq!(pool_reports[0].class_names(), ["helper-pool"]);
    assert_eq!(
        (dep.held_at.line(), dep.waited_at.line()),
        (CONNECT_LINE, CONNECT_LINE)
    );
}

const CONNECT_LINE: u32 = line!() + 3;

async fn connect(pool: &Semaphore) -> async_lockdep::SemaphorePermit<'_> {
    pool.acquire().await.unwrap()
}

/// A read at the reader cap whose other reader is busy (not waiting) gets
/// through when that reader is done: not stuck, though the waiter's own
/// task holds a read and waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_at_the_cap_whose_other_reader_is_running_is_not_stuck() {
    let lockdep = test_guard();
    let table = Arc::new(RwLock::with_max_readers(3u32, 2));
    let t = table.clone();
    let busy = tokio::spawn(async move {
        let _read = t.read().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _read = table.read().await; // the cap: 2 reads
    let t = table.clone();
    let third = tokio::spawn(async move { *t.read().await });
    let value = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("the busy reader lets it through")
        .unwrap();
    assert_eq!(value, 3);
    busy.await.unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// The lines of the kept-aside scenario, for exact assertions.
struct KeptAsideLines {
    /// B takes `index`; B then waits for `config`.
    b_holds: u32,
    b_waits: u32,
    /// A's kept `config.lock()`; A then waits for `index`.
    kept: u32,
    a_waits: u32,
}

/// The kept-aside scenario: someone holds `config`; task B takes `index`;
/// task A polls `config.lock()` once (queued first), drops that future if
/// `drop_kept`, and waits for `index`. Then the holder releases (tokio hands
/// `config` to A's kept future, if kept) and B waits for `config`. Returns
/// both tasks joined, and the lines.
async fn kept_aside(
    config: Arc<Mutex<u32>>,
    index: Arc<Mutex<u32>>,
    drop_kept: bool,
) -> (impl std::future::Future<Output = ()>, KeptAsideLines) {
    let holder = config.clone().lock_owned().await;
    let b_holds = Arc::new(tokio::sync::Notify::new());
    let b_go = Arc::new(tokio::sync::Notify::new());
    let (c, i, holds, go) = (config.clone(), index.clone(), b_holds.clone(), b_go.clone());
    let b_line = line!() + 2;
    let b = tokio::spawn(async move {
        let _index = i.lock().await;
        holds.notify_one();
        go.notified().await;
        *c.lock().await += 1; // handed to A's kept future: waits for A
    });
    b_holds.notified().await;
    let kept_line = line!() + 2;
    let a = tokio::spawn(async move {
        let mut kept = Box::pin(config.lock());
        assert!(futures::poll!(kept.as_mut()).is_pending()); // queued first
        if drop_kept {
            drop(kept); // gives up its place in the queue
            *index.lock().await += 1;
        } else {
            *index.lock().await += 1; // waits for B
            drop(kept);
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await; // A waits for index
    drop(holder); // tokio hands `config` to A's kept future, if kept
    b_go.notify_one();
    let both = async {
        a.await.unwrap();
        b.await.unwrap();
    };
    let lines = KeptAsideLines {
        b_holds: b_line,
        b_waits: b_line + 3,
        kept: kept_line,
        a_waits: kept_line + 6,
    };
    (both, lines)
}

/// Task A polls `config.lock()` once while someone holds it and keeps the
/// future aside, then waits for `index`. When the holder releases, tokio
/// hands `config` to A's kept future. Task B, holding `index`, then waits
/// for `config`: it waits for A, which waits for B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_handed_to_a_future_kept_aside_really_hangs_and_is_reported() {
    // This test watches the tasks hang: it keeps them stuck (a guard's
    // default now makes one waiter give up).
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let config = Arc::new(Mutex::with_class("granted-config", 0u32));
    let index = Arc::new(Mutex::with_class("granted-index", 0u32));
    let (both, at) = kept_aside(config, index, false).await;
    let outcome = tokio::time::timeout(Duration::from_millis(300), both).await;
    assert!(outcome.is_err(), "it really hangs");
    let reports = lockdep.take_reports();
    let stuck: Vec<_> = reports
        .iter()
        .filter(|r| r.kind == ReportKind::DeadlockNow)
        .collect();
    assert_eq!(stuck.len(), 1, "{reports:#?}");
    let stuck = stuck[0];
    assert!(stuck.pending_wait, "{stuck}");
    assert_eq!(stuck.class_names(), ["granted-index", "granted-config"]);
    let lines = common::held_waited_lines(stuck);
    assert_eq!(
        lines,
        [(at.b_holds, at.b_waits), (at.kept, at.a_waits)],
        "{stuck}"
    );
    assert!(
        stuck
            .to_string()
            .contains("hands it to the oldest pending future waiting for it"),
        "{stuck}"
    );
}

/// The same tasks, but A drops its kept future before it waits for
/// `index`: `config` goes to B, and everything finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_dropped_before_the_next_wait_is_silent() {
    let lockdep = test_guard();
    let config = Arc::new(Mutex::with_class("dropped-config", 0u32));
    let index = Arc::new(Mutex::with_class("dropped-index", 0u32));
    let (both, _) = kept_aside(config, index, true).await;
    tokio::time::timeout(Duration::from_secs(5), both)
        .await
        .expect("nothing is stuck");
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// B holds `x` and `y`; task A joins two lock futures, for `x` and for `y`,
/// both pending. B releases `x`, which tokio hands to A's `x` future, and
/// at once waits for `x` again. For a moment B waits for A, which waits for
/// `y` held by B; but A's task polls its `x` future as soon as it runs,
/// releases `x`, and everything finishes. Not reported.
#[tokio::test]
async fn a_lock_handed_to_a_joined_future_is_not_stuck() {
    let lockdep = test_guard();
    let x = Arc::new(Mutex::with_class("joined-granted-x", 0u32));
    let y = Arc::new(Mutex::with_class("joined-granted-y", 0u32));
    let (x1, y1) = (x.clone(), y.clone());
    let b = tokio::spawn(async move {
        let _y = y1.lock().await;
        let gx = x1.lock().await;
        tokio::time::sleep(Duration::from_millis(20)).await; // A queues on both
        drop(gx); // handed to A's `x` future
        *x1.lock().await += 1; // waits for A for a moment
    });
    tokio::task::yield_now().await;
    let (x2, y2) = (x.clone(), y.clone());
    let a = tokio::spawn(async move {
        tokio::join!(async { *x2.lock().await += 1 }, async {
            *y2.lock().await += 1
        });
    });
    tokio::time::timeout(Duration::from_secs(5), async {
        b.await.unwrap();
        a.await.unwrap();
    })
    .await
    .expect("nothing is stuck");
    tokio::time::sleep(Duration::from_millis(200)).await; // past any confirmation
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// Thousands of tasks queued on one busy mutex hold nothing: they cannot
/// be part of a cycle, and must not keep a real deadlock elsewhere from
/// being reported as stuck now (a moment later, as thousands of waits are
/// pending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_beside_thousands_of_idle_waiters_is_reported_stuck_now() {
    // Thousands of pending waits make every other test's live check in this
    // process run a moment later: a process of its own.
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let busy = Arc::new(Mutex::with_class("idle-busy", 0u32));
    let held = busy.lock().await;
    let mut idle = Vec::new();
    for _ in 0..5_000 {
        let busy = busy.clone();
        idle.push(tokio::spawn(async move {
            *busy.lock().await += 1;
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // all queued
    let a = Arc::new(Mutex::with_class("idle-a", 0u32));
    let b = Arc::new(Mutex::with_class("idle-b", 0u32));
    let anchor = line!();
    let first = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            let _a = a.lock().await; // anchor + 4
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _b = b.lock().await; // anchor + 6
        }
    });
    let second = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            let _b = b.lock().await; // anchor + 12
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _a = a.lock().await; // anchor + 14
        }
    });
    // Polled: with thousands of waits pending, the check runs on the
    // confirmation thread once the wait still waits 100 ms later.
    let mut reports: Vec<async_lockdep::Report> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !reports.iter().any(|r| r.kind == ReportKind::DeadlockNow)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
        reports.extend(lockdep.take_reports());
    }
    assert!(
        !first.is_finished() && !second.is_finished(),
        "it really hangs"
    );
    first.abort();
    second.abort();
    drop(held);
    for task in idle {
        task.await.unwrap();
    }
    assert_eq!(*busy.lock().await, 5_000);
    let kinds = common::kinds(&reports);
    assert_eq!(
        kinds,
        [ReportKind::CircularDependency, ReportKind::DeadlockNow],
        "{reports:#?}"
    );
    let stuck = &reports[1];
    let mut lines = common::held_waited_lines(stuck);
    lines.sort_unstable();
    assert_eq!(
        lines,
        [(anchor + 4, anchor + 6), (anchor + 12, anchor + 14)],
        "{stuck}"
    );
    let mut classes = stuck.class_names();
    classes.sort_unstable();
    assert_eq!(classes, ["idle-a", "idle-b"]);
}

/// A back-off: a task holds `b` and tries `a` in a `select!` against a
/// 20 ms timer, letting `b` go when the timer wins; another task takes `a`
/// then `b`. While the first waits for `a`, the two wait for each other —
/// for 20 ms. Not stuck now: the live check confirms a cycle of task waits
/// only once it lasted, and the back-off has moved on by then. No task is
/// made to give up; the order `b → a` against `a → b` is still a lock-order
/// cycle (an attempt bounded by a timer records its order, as any wait:
/// `try_lock` records none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_back_off_inside_a_cycle_of_waits_is_not_stuck_now() {
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("backoff-a", 0u32));
    let b = Arc::new(Mutex::with_class("backoff-b", 0u32));
    let a_taken = Arc::new(tokio::sync::Notify::new());
    let backing_off = {
        let (a, b, a_taken) = (a.clone(), b.clone(), a_taken.clone());
        tokio::spawn(async move {
            a_taken.notified().await; // the other task holds `a` now
            loop {
                let _b = b.lock().await;
                tokio::select! {
                    _a = a.lock() => return,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                drop(_b);
                tokio::task::yield_now().await;
            }
        })
    };
    let straight = {
        let a_taken = a_taken.clone();
        tokio::spawn(async move {
            let _a = a.lock().await;
            a_taken.notify_one();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _b = b.lock().await; // waits for the backing-off task's `b`
        })
    };
    common::within("the straight task", straight).await.unwrap();
    common::within("the backing-off task", backing_off)
        .await
        .unwrap();
    let kinds: Vec<_> = lockdep.take_reports().iter().map(|r| r.kind).collect();
    assert!(!kinds.contains(&ReportKind::DeadlockNow), "{kinds:?}");
    assert_eq!(kinds, [ReportKind::CircularDependency]);
}
