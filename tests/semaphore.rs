//! Semaphore permits as held locks of the semaphore's class.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{test_guard, Access, Mutex, ReportKind, Semaphore};

#[tokio::test]
async fn waiting_for_permits_while_holding_a_lock_their_holders_need_is_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let pool = Arc::new(Semaphore::with_class("pool", 1));
    let state = Arc::new(Mutex::with_class("state", ()));
    let (p, s) = (pool.clone(), state.clone());
    tokio::spawn(async move {
        let _permit = p.acquire().await.unwrap();
        let _state = s.lock().await; // pool -> state
    })
    .await
    .unwrap();
    let _state = state.lock().await;
    let permit_line = line!() + 1;
    let _permit = pool.acquire().await.unwrap(); // state -> pool
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(reports[0].class_names(), ["state", "pool"]);
    let closing = &reports[0].dependencies[0];
    assert_eq!(
        (closing.waited_as, closing.waited_at.line()),
        (Access::Permits, permit_line)
    );
    assert_eq!(reports[0].dependencies[1].held_as, Access::Permits);
    assert!(reports[0]
        .to_string()
        .contains("blocks only when all its permits are taken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_as_a_plain_concurrency_limiter_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let limit = Arc::new(Semaphore::new(3));
    let stats = Arc::new(Mutex::new(0u64));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (limit, stats) = (limit.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            {
                let _permit = limit.acquire().await.unwrap();
                tokio::task::yield_now().await;
            }
            *stats.lock().await += 1;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*stats.lock().await, 32);
    assert!(lockdep.detector().reports().is_empty());
    assert_eq!(lockdep.detector().status().dependencies, 0);
}

/// A forgotten permit is capacity in use (a pool's object handed out): held
/// until `add_permits` gives it back. What was locked meanwhile counts
/// once it is given back where it was taken.
#[tokio::test]
async fn forgotten_permits_are_held_until_add_permits_gives_them_back() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let sem = Arc::new(Semaphore::with_class("sem", 2));
    let lock = Mutex::with_class("lock", ());
    sem.acquire().await.unwrap().forget();
    sem.clone().acquire_owned().await.unwrap().forget();
    assert_eq!(sem.available_permits(), 0);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 1);
    drop(lock.lock().await);
    assert_eq!(
        lockdep.detector().status().dependencies,
        0,
        "sem -> lock: provisional while the permits may be elsewhere"
    );
    sem.add_permits(2);
    let status = lockdep.detector().status();
    assert_eq!(status.contexts_holding_locks, 0);
    assert_eq!(status.dependencies, 1, "sem -> lock, given back here");
}

#[tokio::test]
async fn acquire_on_a_closed_semaphore_fails_and_holds_nothing() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let sem = Semaphore::with_class("sem", 0);
    let waiting = sem.acquire();
    sem.close();
    assert!(waiting.await.is_err());
    assert!(sem.try_acquire().is_err());
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
    assert_eq!(lockdep.detector().status().contexts_waiting, 0);
}

#[tokio::test]
async fn zero_permit_semaphore_waits_and_can_be_cancelled() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let sem = Semaphore::new(0);
    assert!(
        tokio::time::timeout(Duration::from_millis(20), sem.acquire())
            .await
            .is_err()
    );
    sem.add_permits(2);
    let two = sem.acquire_many(2).await.unwrap();
    assert_eq!(two.num_permits(), 2);
    drop(two);
    assert_eq!(lockdep.detector().status().contexts_waiting, 0);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

/// tokio-util's `PollSemaphore` shape: holding the only permit, a second
/// `acquire()` is polled once (pending), the permit is given back, and the
/// next poll gets it. The wait ended with the permit: no pool exhaustion.
#[tokio::test]
async fn a_probe_poll_of_a_permit_given_back_before_the_next_poll_is_silent() {
    let lockdep = test_guard();
    let pool = Semaphore::with_class("probe-pool", 1);
    let held = pool.acquire().await.unwrap();
    let mut second = Box::pin(pool.acquire());
    assert!(futures::poll!(second.as_mut()).is_pending());
    drop(held);
    let permit = second.await.unwrap();
    drop(permit);
    assert_eq!(lockdep.take_reports(), []);
}

/// A limiter over `join_all` in one task with no spans: each future takes
/// the only permit, works a moment, and gives it back; each wait ends when
/// a sibling releases.
#[tokio::test]
async fn a_limiter_over_join_all_in_one_task_is_silent() {
    let lockdep = test_guard();
    let limit = Semaphore::with_class("join-all-limit", 1);
    let work = (0..3).map(|i| {
        let limit = &limit;
        async move {
            let _permit = limit.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            i
        }
    });
    let done = futures::future::join_all(work).await;
    assert_eq!(done, [0, 1, 2]);
    assert_eq!(lockdep.take_reports(), []);
}

/// A limiter over `join_all` with spare permits: each future takes a permit
/// without waiting while a sibling holds one, and gives it back in turn
/// (the earlier first). Siblings taking turns: silent.
#[tokio::test]
async fn a_limiter_with_spare_permits_over_join_all_is_silent() {
    let lockdep = test_guard();
    let pool = Semaphore::with_class("spare-limit", 2);
    let work = (0..6).map(|i| {
        let pool = &pool;
        async move {
            let _permit = pool.acquire().await.unwrap();
            tokio::task::yield_now().await;
            i
        }
    });
    assert_eq!(futures::future::join_all(work).await, [0, 1, 2, 3, 4, 5]);
    assert_eq!(lockdep.take_reports(), []);
}

/// A transaction holds a connection and calls a helper that takes a second
/// one (there is room in this run): nested, the later permit is given back
/// first. With every connection taken by such transactions, none goes on:
/// reported.
#[tokio::test]
async fn a_second_connection_taken_at_once_inside_a_transaction_is_reported() {
    let lockdep = test_guard();
    let pool = Semaphore::with_class("nested-pool", 5);
    async fn helper(pool: &Semaphore) {
        let _conn = pool.acquire().await.unwrap(); // NESTED-SECOND
    }
    {
        let _transaction = pool.acquire().await.unwrap(); // NESTED-FIRST
        helper(&pool).await;
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::PoolExhaustion],
        "{reports:#?}"
    );
    let text = std::fs::read_to_string(file!()).unwrap();
    let line = |marker: &str| text.lines().position(|l| l.contains(marker)).unwrap() as u32 + 1;
    let dep = &reports[0].dependencies[0];
    assert_eq!(
        (dep.held_at.line(), dep.waited_at.line()),
        (line("// NESTED-FIRST"), line("// NESTED-SECOND"))
    );
}
