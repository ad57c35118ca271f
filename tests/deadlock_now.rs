//! Deadlocks happening now: the live wait-for graph, failing loudly, and the
//! watchdog for long waits.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_lockdep::{Access, ContextId, Detector, Mutex, ReportKind, WorkQueue};
use tokio::sync::Barrier;

/// Two tasks that each take one lock, meet, then take the other's.
async fn abba_for_real(
    a: Arc<Mutex<()>>,
    b: Arc<Mutex<()>>,
) -> (
    tokio::task::JoinHandle<[u32; 2]>,
    tokio::task::JoinHandle<[u32; 2]>,
) {
    let barrier = Arc::new(Barrier::new(2));
    let t1 = {
        let (a, b, barrier) = (a.clone(), b.clone(), barrier.clone());
        tokio::spawn(async move {
            let held = line!() + 1;
            let _a = a.lock().await;
            barrier.wait().await;
            let waited = line!() + 1;
            let _b = tokio::time::timeout(Duration::from_millis(500), b.lock()).await;
            [held, waited]
        })
    };
    let t2 = tokio::spawn(async move {
        let held = line!() + 1;
        let _b = b.lock().await;
        barrier.wait().await;
        let waited = line!() + 1;
        let _a = tokio::time::timeout(Duration::from_millis(500), a.lock()).await;
        [held, waited]
    });
    (t1, t2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_really_deadlocked_are_reported_as_stuck_now() {
    if common::own_process() {
        return;
    }
    let detector = Detector::new();
    let _default = detector.set_default();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let (t1, t2) = abba_for_real(a, b).await;
    let (id1, id2) = (t1.id(), t2.id());
    let (lines1, lines2) = (t1.await.unwrap(), t2.await.unwrap());

    let reports = detector.reports();
    let stuck: Vec<_> = reports
        .iter()
        .filter(|r| r.kind == ReportKind::DeadlockNow)
        .collect();
    assert_eq!(stuck.len(), 1, "{reports:#?}");
    assert_eq!(
        reports
            .iter()
            .filter(|r| r.kind == ReportKind::CircularDependency)
            .count(),
        1
    );
    let mut seen: Vec<_> = stuck[0]
        .dependencies
        .iter()
        .map(|d| {
            (
                d.context,
                d.held.name.to_string(),
                d.held_at.line(),
                d.waited.name.to_string(),
                d.waited_at.line(),
            )
        })
        .collect();
    seen.sort_by_key(|s| s.1.clone());
    assert_eq!(
        seen,
        [
            (
                ContextId::Task(id1),
                "a".into(),
                lines1[0],
                "b".into(),
                lines1[1]
            ),
            (
                ContextId::Task(id2),
                "b".into(),
                lines2[0],
                "a".into(),
                lines2[1]
            ),
        ]
    );
    let text = stuck[0].to_string();
    assert!(
        text.contains("deadlock: these tasks are stuck now"),
        "{text}"
    );
    assert!(
        text.contains(&format!("task {id1}")) && text.contains(&format!("task {id2}")),
        "{text}"
    );
    assert_eq!(detector.status().contexts_waiting, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_on_deadlock_fails_the_waiting_task_at_once() {
    if common::own_process() {
        return;
    }
    let detector = Detector::builder().panic_on_deadlock(true).build();
    let _default = detector.set_default();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let started = Instant::now();
    let (t1, t2) = abba_for_real(a, b).await;
    let outcomes = [t1.await, t2.await];
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "failed fast, not at the timeout"
    );
    let panicked: Vec<_> = outcomes.iter().filter(|o| o.is_err()).collect();
    assert_eq!(
        panicked.len(),
        1,
        "the task that closed the wait cycle panicked"
    );
    let panic = panicked[0].as_ref().unwrap_err();
    assert!(panic.is_panic());
    assert_eq!(
        detector
            .reports()
            .iter()
            .filter(|r| r.kind == ReportKind::DeadlockNow)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tasks_stuck_through_a_join_handle_are_reported() {
    if common::own_process() {
        return;
    }
    let detector = Detector::new();
    let _default = detector.set_default();
    let (a, b, c) = (
        Arc::new(Mutex::with_class("a", ())),
        Arc::new(Mutex::with_class("b", ())),
        Arc::new(Mutex::with_class("c", ())),
    );
    let barrier = Arc::new(Barrier::new(3));
    // T2 holds c, waits for a.
    let t2 = {
        let (a, c, barrier) = (a.clone(), c.clone(), barrier.clone());
        tokio::spawn(async move {
            let _c = c.lock().await;
            barrier.wait().await;
            let _a = tokio::time::timeout(Duration::from_millis(600), a.lock()).await;
        })
    };
    // T0 holds a, joins T1; T1 holds b, waits for c. (`async_lockdep::spawn`
    // carries the dispatcher to the worker, so T1's class finds the detector.)
    let t0 = {
        let barrier = barrier.clone();
        async_lockdep::spawn(async move {
            let _a = a.lock().await;
            let t1 = async_lockdep::spawn_named("t1", async move {
                let _b = b.lock().await;
                barrier.wait().await;
                let _c = tokio::time::timeout(Duration::from_millis(300), c.lock()).await;
            });
            let _ = tokio::time::timeout(Duration::from_millis(900), t1).await;
        })
    };
    barrier.wait().await;
    t0.await.unwrap();
    t2.await.unwrap();
    let reports = detector.reports();
    let stuck: Vec<_> = reports
        .iter()
        .filter(|r| r.kind == ReportKind::DeadlockNow)
        .collect();
    assert_eq!(stuck.len(), 1, "{reports:#?}");
    let mut links: Vec<_> = stuck[0]
        .dependencies
        .iter()
        .map(|d| {
            (
                d.held.name.to_string(),
                d.waited.name.to_string(),
                d.waited_as,
            )
        })
        .collect();
    links.sort_by_key(|l| format!("{l:?}"));
    assert_eq!(
        links,
        [
            ("a".into(), "t1".into(), Access::Await),
            ("c".into(), "a".into(), Access::Lock),
            ("t1".into(), "c".into(), Access::Lock),
        ]
    );
    // A plain `.await` of the handle: its line is unknown, and the site
    // shown is the spawn site, which the text says.
    let text = stuck[0].to_string();
    assert!(
        text.contains(
            "waits to   join `t1` (created at tests/deadlock_now.rs:"
        ) && text.contains("at an unknown `.await` (use `handle.join().await` to record it) of the task spawned at"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_a_queue_whose_running_item_waits_for_our_lock_is_stuck_now() {
    if common::own_process() {
        return;
    }
    let detector = Detector::new();
    let _default = detector.set_default();
    let inode = Arc::new(Mutex::with_class("inode", ()));
    let queue = WorkQueue::builder("dio").class("dio").build();
    let guard = inode.lock().await;
    let i = inode.clone();
    let item = queue.queue(async move {
        let _ = tokio::time::timeout(Duration::from_millis(300), i.lock()).await;
    });
    tokio::time::sleep(Duration::from_millis(50)).await; // the item is waiting for the inode
    let flushed = tokio::time::timeout(Duration::from_millis(150), queue.flush()).await;
    assert!(flushed.is_err(), "really stuck until the item gives up");
    drop(guard);
    item.await.unwrap();
    let reports = detector.reports();
    let stuck: Vec<_> = reports
        .iter()
        .filter(|r| r.kind == ReportKind::DeadlockNow)
        .collect();
    assert_eq!(stuck.len(), 1, "{reports:#?}");
    let mut links: Vec<_> = stuck[0]
        .dependencies
        .iter()
        .map(|d| (d.held_as, d.waited_as))
        .collect();
    links.sort_by_key(|l| format!("{l:?}"));
    assert_eq!(
        links,
        [
            (Access::Lock, Access::Flush),
            (Access::RunWork, Access::Lock)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_reports_a_long_wait_once_with_holder_and_waiter() {
    if common::own_process() {
        return;
    }
    let detector = Detector::builder()
        .watchdog(Duration::from_millis(100))
        .build();
    let _default = detector.set_default();
    let lock = Arc::new(Mutex::with_class("slow", ()));
    let held_line = line!() + 1;
    let guard = lock.clone().lock_owned().await;
    let l = lock.clone();
    let waiter = tokio::spawn(async move {
        let _g = l.lock().await;
    });
    let waiter_id = waiter.id();
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(guard);
    waiter.await.unwrap();
    let reports = detector.reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::LongWait);
    let wait = report.long_wait.as_ref().expect("the wait");
    assert_eq!(wait.waiter, ContextId::Task(waiter_id));
    assert_eq!(wait.lock.name, "slow");
    assert!(wait.elapsed >= Duration::from_millis(100));
    assert_eq!(report.dependencies.len(), 1);
    assert!(
        matches!(report.dependencies[0].context, ContextId::Thread(_)),
        "the test body holds it"
    );
    assert_eq!(report.dependencies[0].held_at.line(), held_line);
    // The test body's thread, by its name (cargo test names it after the test).
    assert!(report.to_string().contains("held by thread `"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_is_silent_below_the_threshold() {
    if common::own_process() {
        return;
    }
    let detector = Detector::builder()
        .watchdog(Duration::from_millis(200))
        .build();
    let _default = detector.set_default();
    let lock = Arc::new(Mutex::with_class("quick", ()));
    let guard = lock.clone().lock_owned().await;
    let l = lock.clone();
    let waiter = tokio::spawn(async move {
        let _g = l.lock().await;
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(guard);
    waiter.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
}
