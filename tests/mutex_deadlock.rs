//! Deadlocks that really happen: reported (before the wait hangs) with the
//! exact classes, sites and contexts, and the tests themselves never hang.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_lockdep::{own_context, test_guard, Access, ContextId, Mutex, ReportKind};
use common::{join_thread, within, LIMIT};
use tokio::sync::{oneshot, Barrier};
use tokio::time::timeout;

#[tokio::test]
async fn same_instance_locked_twice_in_one_task_is_one_self_deadlock() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("reentrant", ()));
    let task = tokio::spawn({
        let m = m.clone();
        async move {
            let mut sites = Vec::new();
            for _ in 0..3 {
                let first = line!() + 1;
                let guard = m.lock().await;
                let second = line!() + 1;
                let again = m.lock();
                let waited = timeout(Duration::from_millis(100), again).await;
                assert!(waited.is_err(), "tokio's Mutex is not re-entrant");
                drop(guard);
                sites.push((first, second));
            }
            sites
        }
    });
    let id = task.id();
    let sites = within("task", task).await.unwrap();
    assert!(sites.windows(2).all(|w| w[0] == w[1]));
    let (first, second) = sites[0];

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "reported once: {reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::PossibleSelfDeadlock);
    assert!(!report.needs_writer);
    assert_eq!(report.dependencies.len(), 1);
    let dep = &report.dependencies[0];
    assert_eq!(dep.held.name, "reentrant");
    assert_eq!(dep.waited.name, "reentrant");
    assert_eq!((dep.held_at.line(), dep.waited_at.line()), (first, second));
    assert_eq!(
        (dep.held_at.file(), dep.waited_at.file()),
        (file!(), file!())
    );
    assert_eq!((dep.held_as, dep.waited_as), (Access::Lock, Access::Lock));
    assert_eq!(dep.context, ContextId::Task(id));
    let text = report.to_string();
    assert!(text.contains("self-deadlock"), "{text}");
    assert!(text.contains("not re-entrant"), "{text}");
    assert!(text.contains(&format!("{}:{}:", file!(), second)), "{text}");

    let status = lockdep.detector().status();
    assert_eq!(
        status.dependencies, 0,
        "a self-deadlock is not a class edge"
    );
    assert_eq!(status.contexts_holding_locks, 0);
}

/// An owned guard may have moved to another task, so waiting again for its
/// lock in the task that locked it is not reported as a certain
/// self-deadlock (that would be a false positive for lock hand-off). The
/// documented price: this real self-deadlock through an owned guard kept in
/// the same task is not reported at once (the watchdog still sees it).
#[tokio::test]
async fn same_owned_instance_locked_twice_is_not_a_certain_self_deadlock() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("reentrant-owned", ()));
    let guard = m.clone().lock_owned().await;
    let again = m.clone().lock_owned();
    assert!(timeout(Duration::from_millis(100), again).await.is_err());
    drop(guard);
    assert!(lockdep.take_reports().is_empty());
    let status = lockdep.detector().status();
    assert_eq!(status.contexts_holding_locks, 0);
    assert_eq!(status.contexts_waiting, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_that_really_deadlock_are_reported_with_all_four_sites() {
    if common::own_process() {
        return;
    }
    // This test watches the tasks hang: it keeps them stuck (a guard's
    // default now makes one waiter give up).
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let left = Arc::new(Mutex::with_class("left", ()));
    let right = Arc::new(Mutex::with_class("right", ()));
    let met = Arc::new(Barrier::new(2));
    let done = Arc::new(Barrier::new(2));
    let wait = Duration::from_millis(300);

    let task1 = tokio::spawn({
        let (left, right, met, done) = (left.clone(), right.clone(), met.clone(), done.clone());
        async move {
            let l1 = line!() + 1;
            let _l = left.lock().await;
            within("task 2 meets", met.wait()).await;
            let r1 = line!() + 1;
            let second = right.lock();
            let got = timeout(wait, second).await.is_ok();
            // Keep `left` until task 2 gave up too, so it cannot get it.
            within("task 2 done", done.wait()).await;
            (l1, r1, got)
        }
    });
    let task2 = tokio::spawn({
        let (left, right, met, done) = (left.clone(), right.clone(), met.clone(), done.clone());
        async move {
            let r2 = line!() + 1;
            let _r = right.lock().await;
            within("task 1 meets", met.wait()).await;
            let l2 = line!() + 1;
            let second = left.lock();
            let got = timeout(wait, second).await.is_ok();
            within("task 1 done", done.wait()).await;
            (r2, l2, got)
        }
    });
    let (id1, id2) = (task1.id(), task2.id());
    let (l1, r1, got1) = within("task 1", task1).await.unwrap();
    let (r2, l2, got2) = within("task 2", task2).await.unwrap();
    assert!(!got1 && !got2, "both timeouts fired: it really deadlocked");

    let reports = lockdep.take_reports();
    assert_eq!(
        reports.len(),
        2,
        "the order cycle, then the live deadlock: {reports:#?}"
    );
    assert_eq!(reports[1].kind, ReportKind::DeadlockNow);
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::CircularDependency);
    assert!(!report.needs_writer);
    let mut names = report.class_names();
    names.sort_unstable();
    assert_eq!(names, ["left", "right"]);
    // Whichever task waited second closed the cycle; both edges are there.
    let seen: HashSet<_> = report
        .dependencies
        .iter()
        .map(|d| {
            (
                d.held.name.to_string(),
                d.held_at.line(),
                d.waited.name.to_string(),
                d.waited_at.line(),
                d.context,
            )
        })
        .collect();
    let expected: HashSet<_> = [
        (
            "left".to_string(),
            l1,
            "right".to_string(),
            r1,
            ContextId::Task(id1),
        ),
        (
            "right".to_string(),
            r2,
            "left".to_string(),
            l2,
            ContextId::Task(id2),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, expected);
    let status = lockdep.detector().status();
    assert_eq!(status.dependencies, 2);
    assert_eq!(status.contexts_holding_locks, 0);
}

#[tokio::test]
async fn blocking_lock_on_a_plain_thread_orders_locks_in_a_thread_context() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let thread = std::thread::spawn({
        let (a, b) = (a.clone(), b.clone());
        move || {
            let a1 = line!() + 1;
            let _a = a.blocking_lock();
            let b1 = line!() + 1;
            let _b = b.blocking_lock();
            (a1, b1)
        }
    });
    let (a1, b1) = join_thread(thread).await;
    assert!(lockdep.detector().reports().is_empty());
    assert_eq!(lockdep.detector().status().dependencies, 1);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);

    let task = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            let b2 = line!() + 1;
            let _b = b.lock().await;
            let a2 = line!() + 1;
            let _a = a.lock().await;
            (b2, a2)
        }
    });
    let id = task.id();
    let (b2, a2) = within("task", task).await.unwrap();

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(reports[0].class_names(), ["b", "a"]);
    let closing = &reports[0].dependencies[0];
    assert_eq!(closing.context, ContextId::Task(id));
    assert_eq!((closing.held_at.line(), closing.waited_at.line()), (b2, a2));
    let before = &reports[0].dependencies[1];
    assert!(
        matches!(before.context, ContextId::Thread(_)),
        "{:?}",
        before.context
    );
    assert_eq!((before.held_at.line(), before.waited_at.line()), (a1, b1));
    assert!(
        reports[0].to_string().contains("thread #"),
        "{}",
        reports[0]
    );
}

#[tokio::test]
async fn blocking_lock_that_has_to_wait_records_the_dependency_before_blocking() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    // A task holds b; the thread holds a and blocks on b until the task lets go.
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (locked_tx, locked_rx) = oneshot::channel::<()>();
    let holder = tokio::spawn({
        let b = b.clone();
        async move {
            let _b = b.lock().await;
            locked_tx.send(()).expect("body alive");
            let _ = release_rx.await;
        }
    });
    within("holder locks", locked_rx).await.unwrap();
    let thread = std::thread::spawn({
        let (a, b) = (a.clone(), b.clone());
        move || {
            let _a = a.blocking_lock();
            let b1 = line!() + 1;
            let _b = b.blocking_lock();
            b1
        }
    });
    // The edge exists while the thread is still blocked.
    let deadline = Instant::now() + LIMIT;
    while lockdep.detector().status().dependencies == 0 {
        assert!(Instant::now() < deadline, "a -> b never recorded");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(!thread.is_finished(), "the thread waits for b");
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 2);
    release_tx.send(()).expect("holder alive");
    within("holder", holder).await.unwrap();
    let b1 = join_thread(thread).await;
    assert_eq!(lockdep.detector().status().dependencies, 1);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);

    // b then a in the body: the cycle, with the thread's wait site.
    {
        let _b = b.lock().await;
        let _a = a.lock().await;
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].class_names(), ["b", "a"]);
    assert_eq!(reports[0].dependencies[1].waited_at.line(), b1);
}

#[tokio::test]
/// Futures joined in one task share the task's context unless each is given
/// its own with `own_context`; then this is no self-deadlock.
async fn same_instance_locked_by_two_futures_joined_with_own_contexts_is_no_self_deadlock() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let m = Mutex::with_class("shared", 0u32);
    let both = async {
        tokio::join!(
            own_context(async {
                let mut g = m.lock().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                *g += 1;
            }),
            own_context(async {
                tokio::task::yield_now().await;
                *m.lock().await += 1; // waits for the first future, which goes on
            })
        )
    };
    within("joined futures", both).await;
    assert_eq!(*m.lock().await, 2, "it did not deadlock");
    assert!(
        lockdep.detector().reports().is_empty(),
        "false positive: {}",
        lockdep
            .take_reports()
            .iter()
            .map(ToString::to_string)
            .collect::<String>()
    );
}

#[tokio::test]
async fn locks_held_by_one_own_context_future_do_not_order_another_ones_locks() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("a", ());
    let b = Mutex::with_class("b", ());
    let (held_tx, held_rx) = oneshot::channel::<()>();
    let both = async {
        tokio::join!(
            own_context(async {
                let _a = a.lock().await;
                held_tx.send(()).expect("other future alive");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }),
            own_context(async {
                let _ = held_rx.await;
                let _b = b.lock().await; // this future holds nothing
            })
        )
    };
    within("joined futures", both).await;
    assert_eq!(
        lockdep.detector().status().dependencies,
        0,
        "phantom a -> b"
    );
    {
        let _b = b.lock().await;
        let _a = a.lock().await; // the only real nesting: b -> a
    }
    assert!(
        lockdep.detector().reports().is_empty(),
        "false positive: {}",
        lockdep
            .take_reports()
            .iter()
            .map(ToString::to_string)
            .collect::<String>()
    );
}
