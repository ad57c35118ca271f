//! Detectors do not see each other, locks report to the detector they were
//! created under (from any thread), and with no detector the wrappers behave
//! like tokio's. `Detector::install_global` is deliberately never used here:
//! it would leak into every other test of the binary.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use async_lockdep::{test_guard, ContextId, Detector, Mutex, MutexGuard, ReportKind};
use common::{within, LIMIT};
use tokio::time::timeout;

/// Waits until `flag` is set, or gives up after [`LIMIT`] (the other test may
/// be filtered out or run later); returns whether it was set.
async fn rendezvous(flag: &AtomicBool) -> bool {
    let deadline = Instant::now() + LIMIT;
    while !flag.load(Ordering::SeqCst) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

static FORWARD_HOLDS: AtomicBool = AtomicBool::new(false);
static INVERSE_DONE: AtomicBool = AtomicBool::new(false);

// The next two tests run in parallel (libtest's default) and overlap: the
// first keeps holding a then b while the second takes b then a. The class
// names are the same; the detectors are not.

#[tokio::test]
async fn parallel_tests_1_forward_order_in_its_own_detector() {
    let lockdep = test_guard();
    let a = Mutex::with_class("a", ());
    let b = Mutex::with_class("b", ());
    {
        let _a = a.lock().await;
        let _b = b.lock().await;
        FORWARD_HOLDS.store(true, Ordering::SeqCst);
        let _ = rendezvous(&INVERSE_DONE).await;
    }
    assert!(
        lockdep.detector().reports().is_empty(),
        "{:#?}",
        lockdep.detector().reports()
    );
    let status = lockdep.detector().status();
    assert_eq!(status.edges, 1);
    assert_eq!(status.contexts_holding_locks, 0);
}

#[tokio::test]
async fn parallel_tests_2_inverse_order_in_its_own_detector() {
    let lockdep = test_guard();
    let _ = rendezvous(&FORWARD_HOLDS).await;
    let a = Mutex::with_class("a", ());
    let b = Mutex::with_class("b", ());
    {
        let _b = b.lock().await;
        let _a = a.lock().await;
    }
    INVERSE_DONE.store(true, Ordering::SeqCst);
    assert!(
        lockdep.detector().reports().is_empty(),
        "{:#?}",
        lockdep.detector().reports()
    );
    let status = lockdep.detector().status();
    assert_eq!(status.edges, 1);
    assert_eq!(status.contexts_holding_locks, 0);
}

#[tokio::test]
async fn two_detectors_set_default_one_after_the_other_do_not_share_edges() {
    let first = Detector::new();
    let second = Detector::new();
    {
        let _default = first.set_default();
        let a = Mutex::with_class("a", ());
        let b = Mutex::with_class("b", ());
        let _a = a.lock().await;
        let _b = b.lock().await;
    }
    {
        let _default = second.set_default();
        let a = Mutex::with_class("a", ());
        let b = Mutex::with_class("b", ());
        let _b = b.lock().await;
        let _a = a.lock().await;
    }
    assert!(first.reports().is_empty(), "{:#?}", first.reports());
    assert!(second.reports().is_empty(), "{:#?}", second.reports());
    assert_eq!(first.status().edges, 1);
    assert_eq!(second.status().edges, 1);
    assert_eq!(first.status().contexts_holding_locks, 0);
    assert_eq!(second.status().contexts_holding_locks, 0);
}

#[test]
fn two_detectors_on_two_threads_at_once_do_not_share_edges() {
    let (forward_tx, forward_rx) = mpsc::channel::<()>();
    let (inverse_tx, inverse_rx) = mpsc::channel::<()>();
    let forward = std::thread::spawn(move || {
        let detector = Detector::new();
        let _default = detector.set_default();
        let a = Mutex::with_class("a", ());
        let b = Mutex::with_class("b", ());
        let held_a = a.blocking_lock();
        let held_b = b.blocking_lock();
        forward_tx.send(()).expect("other thread alive");
        // Hold both until the other thread did b then a.
        inverse_rx.recv_timeout(LIMIT).expect("other thread done");
        drop((held_b, held_a));
        (detector.reports().len(), detector.status().edges)
    });
    let inverse = std::thread::spawn(move || {
        let detector = Detector::new();
        let _default = detector.set_default();
        forward_rx.recv_timeout(LIMIT).expect("other thread holds");
        let a = Mutex::with_class("a", ());
        let b = Mutex::with_class("b", ());
        {
            let _b = b.blocking_lock();
            let _a = a.blocking_lock();
        }
        inverse_tx.send(()).expect("other thread alive");
        (detector.reports().len(), detector.status().edges)
    });
    assert_eq!(forward.join().expect("forward thread"), (0, 1));
    assert_eq!(inverse.join().expect("inverse thread"), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_created_under_a_detector_report_to_it_from_worker_threads() {
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let body_thread = std::thread::current().id();

    let first = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            assert!(
                Detector::current().is_none(),
                "a worker thread has no default dispatcher"
            );
            assert_ne!(std::thread::current().id(), body_thread);
            let a1 = line!() + 1;
            let _a = a.lock().await;
            let b1 = line!() + 1;
            let _b = b.lock().await;
            (a1, b1)
        }
    });
    let first_id = first.id();
    let (a1, b1) = within("a then b", first).await.unwrap();
    assert_eq!(lockdep.detector().status().edges, 1);

    let second = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            assert!(Detector::current().is_none());
            let b2 = line!() + 1;
            let _b = b.lock().await;
            let a2 = line!() + 1;
            let _a = a.lock().await;
            (b2, a2)
        }
    });
    let second_id = second.id();
    let (b2, a2) = within("b then a", second).await.unwrap();

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(reports[0].class_names(), ["b", "a"]);
    let closing = &reports[0].dependencies[0];
    assert_eq!((closing.held_at.line(), closing.waited_at.line()), (b2, a2));
    assert_eq!(closing.context, ContextId::Task(second_id));
    let before = &reports[0].dependencies[1];
    assert_eq!((before.held_at.line(), before.waited_at.line()), (a1, b1));
    assert_eq!(before.context, ContextId::Task(first_id));
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

/// A lock reports to the detector of the current dispatcher when there is
/// one (a static lock shared by several tests reports to each test's own
/// detector), else to the detector it was created under (worker threads with
/// no default dispatcher).
#[tokio::test]
async fn a_lock_reports_to_the_current_detector_else_to_its_creation_detector() {
    let first = Detector::new();
    let second = Detector::new();
    let (a, b) = {
        let _default = first.set_default();
        (Mutex::with_class("a", ()), Mutex::with_class("b", ()))
    };
    // Created with no detector installed: reports to the current one at each use.
    let unbound = Mutex::with_class("unbound", ());
    {
        let _default = second.set_default();
        {
            let _a = a.lock().await;
            let _b = b.lock().await; // a -> b, in `second`
        }
        let c = Mutex::with_class("c", ());
        {
            let _u = unbound.lock().await;
            let _c = c.lock().await; // unbound -> c, in `second`
        }
    }
    {
        // No default dispatcher now: `a` and `b` fall back to `first`;
        // `unbound` was created with no detector and reports to none.
        let _b = b.lock().await;
        let _a = a.lock().await; // b -> a, in `first`: no cycle there
        let _u = unbound.lock().await;
    }
    assert!(first.reports().is_empty(), "{:#?}", first.reports());
    assert!(second.reports().is_empty(), "{:#?}", second.reports());
    assert_eq!(first.status().edges, 1);
    assert_eq!(second.status().edges, 2);
    assert_eq!(first.status().contexts_holding_locks, 0);
    assert_eq!(second.status().contexts_holding_locks, 0);
}

/// The trap of a lazily created static: first touched under one test's
/// detector, then used by another test; each test must see its own edges.
#[tokio::test]
async fn a_static_lock_shared_by_two_detectors_reports_to_each() {
    static SHARED: std::sync::OnceLock<Mutex<()>> = std::sync::OnceLock::new();
    let first = Detector::new();
    let second = Detector::new();
    let other = Mutex::with_class("other", ());
    {
        let _default = first.set_default();
        let shared = SHARED.get_or_init(|| Mutex::with_class("shared", ()));
        let _s = shared.lock().await;
        let _o = other.lock().await; // shared -> other, in `first`
    }
    {
        let _default = second.set_default();
        let shared = SHARED.get().expect("created");
        let _o = other.lock().await;
        let _s = shared.lock().await; // other -> shared, in `second` only
    }
    assert!(first.reports().is_empty());
    assert!(second.reports().is_empty());
    assert_eq!((first.status().edges, second.status().edges), (1, 1));
}

#[tokio::test]
async fn without_a_detector_mutex_behaves_like_tokios() {
    assert!(Detector::current().is_none());
    let m = Mutex::new(1u32);

    // lock, try_lock
    {
        let mut guard = within("lock", m.lock()).await;
        *guard += 1;
        assert!(m.try_lock().is_err());
        // The same instance again just waits (tokio's is not re-entrant).
        assert!(timeout(Duration::from_millis(20), m.lock()).await.is_err());
    }
    assert_eq!(*m.try_lock().expect("free"), 2);

    // lock_owned, try_lock_owned, owned guard moved to another task
    let m = Arc::new(m);
    let mut owned = within("lock_owned", m.clone().lock_owned()).await;
    *owned += 1;
    assert!(m.clone().try_lock_owned().is_err());
    within(
        "owned guard in another task",
        tokio::spawn(async move {
            *owned += 1;
            drop(owned);
        }),
    )
    .await
    .unwrap();
    *m.clone().try_lock_owned().expect("free") += 1;
    assert_eq!(*m.lock().await, 5);

    // map, try_map
    {
        let mut mapped = MutexGuard::map(m.lock().await, |n| n);
        *mapped += 1;
        assert!(m.try_lock().is_err());
    }
    assert!(MutexGuard::try_map(m.lock().await, |_| None::<&mut u32>).is_err());
    assert!(m.try_lock().is_ok());

    // Inverted orders: nothing to report to, nothing panics.
    let x = Mutex::new(());
    let y = Mutex::new(());
    {
        let _x = x.lock().await;
        let _y = y.lock().await;
    }
    {
        let _y = y.lock().await;
        let _x = x.lock().await;
    }

    // blocking_lock from a plain thread
    let t = m.clone();
    let thread = std::thread::spawn(move || *t.blocking_lock() += 1);
    let deadline = Instant::now() + LIMIT;
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "thread did not finish");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    thread.join().expect("thread");

    // get_mut, into_inner, Debug, Default, From
    let mut m = Arc::try_unwrap(m).expect("unique");
    *m.get_mut() += 1;
    let debug = format!("{m:?}");
    assert!(
        debug.starts_with("Mutex {") && debug.ends_with("data: 8 }"),
        "{debug}"
    );
    assert_eq!(m.into_inner(), 8);
    assert_eq!(Mutex::<u32>::default().into_inner(), 0);
    assert_eq!(Mutex::from(3u8).into_inner(), 3);
    assert!(Detector::current().is_none());
}

/// On a runtime shared by two tests, a task of one test must not lend its
/// detector to locks that a task of the other creates on the same worker
/// thread: the creation hint is per task, not per thread.
#[test]
fn a_shared_worker_thread_does_not_lend_one_tasks_detector_to_another() {
    let shared = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let first = Detector::new();
    let bound = {
        let _default = first.set_default();
        Arc::new(Mutex::with_class("first-test", ()))
    };
    // Test A's task works on the only worker for `first`.
    let b = bound.clone();
    shared
        .block_on(shared.spawn(async move { drop(b.lock().await) }))
        .unwrap();
    // Test B's task, on the same worker, creates and inverts its own locks.
    shared
        .block_on(shared.spawn(async {
            let x = Mutex::with_class("other-test-x", ());
            let y = Mutex::with_class("other-test-y", ());
            {
                let _x = x.lock().await;
                let _y = y.lock().await;
            }
            let _y = y.lock().await;
            let _x = x.lock().await;
        }))
        .unwrap();
    assert!(first.reports().is_empty(), "{:#?}", first.reports());
    assert_eq!(first.status().edges, 0);
}
