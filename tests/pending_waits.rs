//! Pending waits: every pending wait of a context is kept. A context that
//! starts waiting for an instance it already has a pending wait for (a lock
//! future polled once and kept aside) is reported: tokio may grant the lock
//! to the earlier future, which nothing polls while the second wait lasts.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_lockdep::{test_guard, Mutex, OwnedMutexGuard, ReportKind};

type Pending = Pin<Box<dyn Future<Output = OwnedMutexGuard<u32>> + Send>>;

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    future.poll(&mut Context::from_waker(&waker))
}

#[test]
fn a_blocking_wait_behind_a_pending_future_of_the_same_thread_is_a_certain_self_deadlock() {
    // Its report is found on a thread of its own: it goes to this test,
    // which created the lock, not to the other tests running meanwhile.
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("pending-blocking", 0u32));
    let holder = m.clone().try_lock_owned().unwrap(); // someone holds it
    let slot: Arc<StdMutex<Option<Pending>>> = Arc::new(StdMutex::new(None));
    let (m2, slot2) = (m.clone(), slot.clone());
    let first = line!() + 2;
    let waiter = std::thread::spawn(move || {
        let mut kept: Pending = Box::pin(m2.clone().lock_owned());
        assert!(poll_once(kept.as_mut()).is_pending()); // queued, kept aside
        *slot2.lock().unwrap() = Some(kept);
        let second = line!() + 1;
        let guard = m2.blocking_lock(); // waits behind its own pending future
        drop(guard);
        second
    });
    // The report exists as soon as the second wait starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let reports = loop {
        let reports = lockdep.take_reports();
        if !reports.is_empty() || std::time::Instant::now() > deadline {
            break reports;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Unblock: cancel the kept future, then release.
    drop(slot.lock().unwrap().take());
    drop(holder);
    let second = waiter.join().unwrap();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::SelfDeadlock);
    assert!(report.pending_wait);
    let dep = &report.dependencies[0];
    assert_eq!((dep.held_at.line(), dep.waited_at.line()), (first, second));
    assert!(report.to_string().contains("still pending"), "{}", report);
}

#[tokio::test]
async fn a_second_wait_in_a_task_behind_its_own_pending_future_is_possible() {
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("pending-async", 0u32));
    let holder = m.clone().lock_owned().await;
    let mut kept: Pending = Box::pin(m.clone().lock_owned());
    assert!(poll_once(kept.as_mut()).is_pending());
    let second = tokio::time::timeout(Duration::from_millis(50), m.lock()).await;
    assert!(second.is_err(), "it waits behind the kept future");
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::PossibleSelfDeadlock);
    assert!(reports[0].pending_wait);
    drop(kept);
    drop(holder);
}

#[tokio::test]
async fn a_single_pending_wait_is_silent() {
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("pending-single", 0u32));
    let holder = m.clone().lock_owned().await;
    let mut kept: Pending = Box::pin(m.clone().lock_owned());
    assert!(poll_once(kept.as_mut()).is_pending());
    drop(holder);
    let guard = kept.await; // the kept future gets it
    drop(guard);
    let _again = m.lock().await;
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// The bug report's shape: a task polls `lock_owned()` once (queued behind
/// the holder) and keeps the future aside, then waits for the same lock from
/// `block_in_place(|| Handle::current().block_on(m.lock()))`. When the
/// holder releases, tokio hands the lock to the kept future, which nothing
/// polls: the second wait hangs. It is reported when it starts, with the
/// joined-futures caveat: from inside the task the detector cannot tell a
/// nested `block_on` from a joined sibling future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_wait_from_block_in_place_behind_the_tasks_kept_future_is_reported() {
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("pending-block-in-place", 0u32));
    let holder = m.clone().lock_owned().await;
    let slot: Arc<StdMutex<Option<Pending>>> = Arc::new(StdMutex::new(None));
    let (m2, slot2) = (m.clone(), slot.clone());
    let first = line!() + 2;
    let task = tokio::spawn(async move {
        let mut kept: Pending = Box::pin(m2.clone().lock_owned());
        assert!(futures::poll!(kept.as_mut()).is_pending()); // queued, kept aside
        *slot2.lock().unwrap() = Some(kept);
        let second = line!() + 2;
        tokio::task::block_in_place(|| {
            let guard = tokio::runtime::Handle::current().block_on(m2.lock());
            drop(guard);
        });
        second
    });
    // The report exists as soon as the second wait starts.
    let reports = common::first_reports(&lockdep).await;
    // Unblock: cancel the kept future, then release.
    drop(slot.lock().unwrap().take());
    drop(holder);
    let second = task.await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::PossibleSelfDeadlock);
    assert!(report.pending_wait);
    let dep = &report.dependencies[0];
    assert_eq!((dep.held_at.line(), dep.waited_at.line()), (first, second));
    assert!(report.to_string().contains("still pending"), "{report}");
}

/// `join!` of a future holding `m` for a while and a future that polls
/// `m.lock()` once, keeps it aside and waits for `m` again: when the first
/// lets go, tokio hands `m` to the kept future, which nothing polls. Both
/// conflicts of the second wait (the lock the task held, the task's own
/// pending wait) are kept until decided; the one still standing is
/// reported while the task hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_future_behind_a_joined_holder_is_reported_while_it_hangs() {
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("pending-joined", 0u32));
    let m2 = m.clone();
    let kept_line = line!() + 8;
    let task = tokio::spawn(async move {
        let holder = async {
            let _g = m2.lock().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let waiter = async {
            tokio::task::yield_now().await; // the holder locks first
            let mut kept = Box::pin(m2.lock());
            assert!(futures::poll!(kept.as_mut()).is_pending());
            *m2.lock().await += 1; // hangs once `m` goes to `kept`
            drop(kept);
        };
        tokio::join!(holder, waiter);
    });
    let reports = common::first_reports(&lockdep).await;
    assert!(!task.is_finished(), "it hangs");
    task.abort();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::PossibleSelfDeadlock);
    assert!(reports[0].pending_wait, "{}", reports[0]);
    let dep = &reports[0].dependencies[0];
    assert_eq!(
        (dep.held_at.line(), dep.waited_at.line()),
        (kept_line, kept_line + 2)
    );
}
