//! Correct programs that must stay silent: patterns where a shortcut in the
//! detector would report a deadlock that cannot happen.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{own_context, test_guard, Mutex, ReportKind, Semaphore, WorkQueue};

/// A `select!` loop that keeps a join pending while another branch locks: the
/// task is running, not blocked by its join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_loop_with_a_pending_join_and_a_lock_in_another_branch_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("m", 0u32));
    let worker = {
        let m = m.clone();
        async_lockdep::spawn_named("worker", async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            *m.lock().await += 1;
        })
    };
    tokio::pin!(worker);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            tokio::select! {
                done = &mut worker => break done,
                _ = tick.tick() => {
                    let mut g = m.lock().await;
                    *g += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await; // the worker waits for m here
                }
            }
        }
    })
    .await;
    outcome.expect("no hang").expect("worker ran");
    let stuck: Vec<_> = lockdep
        .detector()
        .reports()
        .into_iter()
        .filter(|r| r.kind == ReportKind::DeadlockNow)
        .collect();
    assert!(stuck.is_empty(), "{stuck:#?}");
    // The order itself (join the worker while m may be held) is a real
    // lock-order cycle only if the join happened under m; here it did not.
    assert!(lockdep.take_reports().is_empty());
}

/// Awaiting a finished work item while another item waits for our lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_a_finished_item_while_another_item_waits_for_our_lock_is_not_stuck() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let queue = WorkQueue::builder("io")
        .class("io")
        .max_concurrency(2)
        .build();
    let m = Arc::new(Mutex::with_class("m", ()));
    let first = queue.queue(async {});
    tokio::time::sleep(Duration::from_millis(20)).await; // item 1 finished
    let guard = m.lock().await;
    let m2 = m.clone();
    let second = queue.queue(async move {
        let _m = m2.lock().await;
    });
    tokio::time::sleep(Duration::from_millis(20)).await; // item 2 waits for m
    tokio::time::timeout(Duration::from_secs(1), first)
        .await
        .expect("ready")
        .expect("ran");
    drop(guard);
    second.await.unwrap();
    let reports = lockdep.take_reports();
    assert!(
        reports.iter().all(|r| r.kind != ReportKind::DeadlockNow),
        "{reports:#?}"
    );
}

/// Lock hand-off through an owned guard: task A locks `l` and hands the
/// guard to S, which drops it later. B holds `m` and waits for `l`; A waits
/// for `m`. The record says A holds `l`, but S has it and will let go: not a
/// deadlock now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_guard_handed_off_is_not_counted_as_stuck_now() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let l = Arc::new(Mutex::with_class("l", ()));
    let m = Arc::new(Mutex::with_class("m", ()));
    let b_has_m = Arc::new(tokio::sync::Barrier::new(2));
    let b = {
        let (l, m, barrier) = (l.clone(), m.clone(), b_has_m.clone());
        tokio::spawn(async move {
            let _m = m.lock().await;
            barrier.wait().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _l = l.lock().await; // waits until S drops the guard
        })
    };
    let a = {
        let (l, m, barrier) = (l.clone(), m.clone(), b_has_m.clone());
        tokio::spawn(async move {
            let guard = l.clone().lock_owned().await;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(60)).await;
                drop(guard);
            });
            barrier.wait().await;
            let _m = m.lock().await; // waits until B is done
        })
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .await
    .expect("no deadlock");
    // The lock-order side still counts the moved guard as A's (documented
    // limitation: a move is invisible), so l -> m -> l is reported as a
    // possible cycle; the live check must not claim anyone is stuck.
    let reports = lockdep.take_reports();
    assert!(
        reports.iter().all(|r| r.kind != ReportKind::DeadlockNow),
        "{reports:#?}"
    );
}

/// A scope polled inside a `LocalSet` must not merge the local tasks into
/// one context.
#[tokio::test]
async fn own_context_around_a_local_set_keeps_its_tasks_apart() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let m = std::rc::Rc::new(Mutex::with_class("m", ()));
    let local = tokio::task::LocalSet::new();
    own_context(local.run_until(async {
        let m1 = m.clone();
        let a = tokio::task::spawn_local(async move {
            let _g = m1.lock().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        tokio::task::yield_now().await;
        let m2 = m.clone();
        let b = tokio::task::spawn_local(async move {
            let _g = m2.lock().await; // waits for task a: not a self-deadlock
        });
        a.await.unwrap();
        b.await.unwrap();
    }))
    .await;
    assert!(lockdep.take_reports().is_empty());
}

/// Two permits of one semaphore (a possible pool exhaustion), then two
/// semaphores of one class: the second is same-class nesting, judged by
/// instance order, and must still be reported in both orders (the first
/// must not have cached the chain without its edge).
#[tokio::test]
async fn same_semaphore_twice_does_not_hide_same_class_nesting_later() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let make = || Semaphore::new(2); // one class
    let (a, b) = (make(), make());
    {
        let _p1 = a.acquire().await.unwrap();
        let _p2 = a.acquire().await.unwrap();
    }
    let pool = lockdep.take_reports();
    assert_eq!(pool.len(), 1, "{pool:#?}");
    assert_eq!(pool[0].kind, ReportKind::PoolExhaustion);
    {
        let _p = a.acquire().await.unwrap();
        let _q = b.acquire().await.unwrap();
    }
    // Two instances of one class in one order: fine (instance order).
    assert!(lockdep.take_reports().is_empty());
    {
        let _q = b.acquire().await.unwrap();
        let _p = a.acquire().await.unwrap();
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::RecursiveLocking);
}
