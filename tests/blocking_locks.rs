//! Blocking locks (`stdsync`, `parkinglot`) in the same graph as the async
//! ones: mixed cycles, a blocking re-lock reported before the thread hangs,
//! and what must stay silent.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::stdsync::{self, PoisonError};
use async_lockdep::{test_guard, Access, ClassKind, ContextId, Mutex, ReportKind};
use common::{first_reports, held_waited_lines, join_thread, within, LIMIT};

/// Compiles only if `T` is not `Send` (two impls apply to `Send` types, so
/// the `_` cannot be inferred).
trait AmbiguousIfSend<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

fn send_sync<T: Send + Sync>() {}

#[test]
fn locks_are_send_and_sync_and_guards_are_not_send_as_stds() {
    send_sync::<stdsync::Mutex<Vec<u8>>>();
    send_sync::<stdsync::RwLock<Vec<u8>>>();
    <stdsync::MutexGuard<'static, u8> as AmbiguousIfSend<_>>::check();
    <stdsync::RwLockReadGuard<'static, u8> as AmbiguousIfSend<_>>::check();
    <stdsync::RwLockWriteGuard<'static, u8> as AmbiguousIfSend<_>>::check();
    #[cfg(feature = "parking_lot")]
    {
        use async_lockdep::parkinglot;
        send_sync::<parkinglot::Mutex<Vec<u8>>>();
        send_sync::<parkinglot::RwLock<Vec<u8>>>();
        <parkinglot::MutexGuard<'static, u8> as AmbiguousIfSend<_>>::check();
        <parkinglot::RwLockReadGuard<'static, u8> as AmbiguousIfSend<_>>::check();
        <parkinglot::RwLockWriteGuard<'static, u8> as AmbiguousIfSend<_>>::check();
    }
}

#[test]
fn std_api_shape_statics_debug_get_mut_into_inner() {
    static HITS: stdsync::Mutex<u64> = stdsync::Mutex::new(0);
    static TABLE: stdsync::RwLock<Vec<u8>> = stdsync::RwLock::new(Vec::new());
    *HITS.lock().unwrap() += 1;
    TABLE.write().unwrap().push(1);
    assert_eq!(TABLE.read().unwrap().len(), 1);

    let mut m = stdsync::Mutex::from(5);
    *m.get_mut().unwrap() += 1;
    assert_eq!(
        format!("{m:?}"),
        format!("{:?}", std::sync::Mutex::new(6)),
        "Debug as std's"
    );
    {
        let g = m.lock().unwrap();
        assert_eq!(format!("{g:?} {g}"), "6 6");
        let std_locked = std::sync::Mutex::new(6);
        let _std_guard = std_locked.lock().unwrap();
        assert_eq!(format!("{m:?}"), format!("{std_locked:?}"));
        assert!(matches!(
            m.try_lock(),
            Err(stdsync::TryLockError::WouldBlock)
        ));
    }
    assert_eq!(m.into_inner().unwrap(), 6);
    let r: stdsync::RwLock<u8> = Default::default();
    {
        let _a = r.try_read().unwrap();
        let _b = r.try_read().unwrap();
        assert!(r.try_write().is_err());
    }
    assert_eq!(r.into_inner().unwrap(), 0);
}

#[tokio::test]
async fn async_mutex_then_std_mutex_and_back_is_one_cycle_naming_both_kinds() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let accounts = Arc::new(Mutex::with_class("accounts", 0u32));
    let cache = Arc::new(stdsync::Mutex::with_class("cache", 0u32));

    // A task holds the async lock and takes the std mutex.
    let (a, c) = (accounts.clone(), cache.clone());
    let task = tokio::spawn(async move {
        let a1 = line!() + 1;
        let mut a = a.lock().await;
        let c1 = line!() + 1;
        let c = c.lock().unwrap();
        *a += *c;
        (a1, c1)
    });
    let task_id = task.id();
    let (a1, c1) = within("task", task).await.unwrap();
    assert!(lockdep.detector().reports().is_empty());

    // A plain thread holds the std mutex and waits for the async lock.
    let thread = std::thread::spawn({
        let (a, c) = (accounts.clone(), cache.clone());
        move || {
            let c2 = line!() + 1;
            let _c = c.lock().unwrap();
            let a2 = line!() + 1;
            let _a = a.blocking_lock();
            (c2, a2)
        }
    });
    let (c2, a2) = join_thread(thread).await;

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::CircularDependency);
    assert_eq!(report.class_names(), ["cache", "accounts"]);
    assert_eq!(held_waited_lines(report), [(c2, a2), (a1, c1)]);
    let closing = &report.dependencies[0];
    assert!(matches!(closing.context, ContextId::Thread(_)));
    assert_eq!(closing.held.kind, ClassKind::StdMutex);
    assert_eq!(closing.waited.kind, ClassKind::Mutex);
    assert_eq!(
        (closing.held_as, closing.waited_as),
        (Access::Lock, Access::Lock)
    );
    assert_eq!(report.dependencies[1].context, ContextId::Task(task_id));
    let text = report.to_string();
    assert!(text.contains("`cache` (std Mutex, created at "), "{text}");
    assert!(text.contains(&format!("{}:{}:", file!(), c1)), "{text}");
    assert!(text.contains("*** DEADLOCK ***"), "{text}");
}

#[tokio::test]
async fn std_rwlock_write_then_async_mutex_and_back_closes_in_the_task() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let ledger = Arc::new(Mutex::with_class("ledger", ()));
    let config = Arc::new(stdsync::RwLock::with_class("config", ()));

    // The test's body (the thread's context) writes config, then awaits
    // ledger: a blocking guard held across the wait.
    let w1 = line!() + 1;
    let guard = config.write().unwrap();
    let l1 = line!() + 1;
    let ledger_guard = ledger.lock().await;
    drop((ledger_guard, guard));

    let (l, c) = (ledger.clone(), config.clone());
    let task = tokio::spawn(async move {
        let l2 = line!() + 1;
        let _l = l.lock().await;
        let r2 = line!() + 1;
        let _c = c.read().unwrap();
        (l2, r2)
    });
    let (l2, r2) = within("task", task).await.unwrap();

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::CircularDependency);
    assert!(!report.needs_writer, "the config link is a write");
    assert_eq!(report.class_names(), ["ledger", "config"]);
    assert_eq!(held_waited_lines(report), [(l2, r2), (w1, l1)]);
    assert_eq!(report.dependencies[0].waited.kind, ClassKind::StdRwLock);
    assert_eq!(report.dependencies[0].waited_as, Access::Read);
    assert_eq!(report.dependencies[1].held_as, Access::Write);
    assert!(
        report
            .to_string()
            .contains("`config` (std RwLock, created at "),
        "{report}"
    );
}

#[tokio::test]
async fn relocking_a_std_mutex_is_reported_before_the_thread_hangs() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    // Leaked: the thread below never lets go of it.
    let state: &'static stdsync::Mutex<u8> = Box::leak(Box::new(stdsync::Mutex::new(0)));
    let created = line!() - 1;
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stuck = std::thread::spawn(move || {
        let first = line!() + 1;
        let _g = state.lock().unwrap();
        let again = line!() + 2;
        lines_tx.send((first, again)).unwrap();
        let _again = state.lock(); // std's mutex is not re-entrant: hangs here
        unreachable!("a re-lock of a std mutex returned");
    });
    let (first, again) = lines_rx.recv_timeout(LIMIT).expect("thread started");

    let reports = first_reports(&lockdep).await;
    assert!(!stuck.is_finished(), "the thread really hangs");
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::SelfDeadlock);
    assert_eq!(held_waited_lines(report), [(first, again)]);
    let dependency = &report.dependencies[0];
    assert_eq!(dependency.held.kind, ClassKind::StdMutex);
    assert_eq!(dependency.held.created_at.line(), created);
    assert_eq!(dependency.held.created_at.file(), file!());
    let text = report.to_string();
    assert!(text.contains("(std Mutex<u8>)"), "{text}");
    assert!(text.contains("std's locks are not re-entrant"), "{text}");
    // The thread stays blocked; the process ends with it.
}

#[tokio::test]
async fn block_in_place_relocking_the_tasks_std_guard_is_a_self_deadlock() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let state = Arc::new(stdsync::Mutex::with_class("in-place-state", 0u8));
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    // A runtime of its own on a thread of its own: its worker really hangs.
    let stuck = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let task = runtime.spawn(async move {
            let first = line!() + 1;
            let _g = state.lock().unwrap();
            tokio::task::block_in_place(|| {
                // The inner work runs in the same context as the task.
                let again = line!() + 2;
                lines_tx.send((first, again)).unwrap();
                let _again = state.lock();
            });
        });
        let _ = runtime.block_on(task);
    });
    let (first, again) = lines_rx.recv_timeout(LIMIT).expect("task started");
    let reports = first_reports(&lockdep).await;
    assert!(!stuck.is_finished(), "the worker really hangs");
    assert_eq!(common::kinds(&reports), [ReportKind::SelfDeadlock]);
    assert_eq!(reports[0].class_names(), ["in-place-state"]);
    assert_eq!(held_waited_lines(&reports[0]), [(first, again)]);
    assert!(matches!(
        reports[0].dependencies[0].context,
        ContextId::Task(_)
    ));
}

/// Takes and releases the lock in a plain function, called from async code.
fn bump(counter: &stdsync::Mutex<u64>) -> u64 {
    let mut counter = counter.lock().unwrap();
    *counter += 1;
    *counter
}

#[tokio::test]
async fn guards_released_before_each_await_in_join_siblings_are_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let counter = stdsync::Mutex::with_class("between-awaits-counter", 0u64);
    let table = stdsync::RwLock::with_class("between-awaits-table", Vec::new());
    let ledger = Mutex::with_class("between-awaits-ledger", ());
    let sibling = |n: u64| {
        let (counter, table, ledger) = (&counter, &table, &ledger);
        async move {
            for _ in 0..3 {
                {
                    let mut table = table.write().unwrap();
                    table.push(n);
                } // dropped in a block before the await
                tokio::task::yield_now().await;
                let read = table.read().unwrap();
                let len = read.len();
                drop(read); // dropped explicitly before the await
                {
                    let _l = ledger.lock().await;
                    bump(counter); // ledger -> counter, in a helper
                }
                tokio::task::yield_now().await;
                assert!(len > 0);
            }
        }
    };
    tokio::join!(sibling(1), sibling(2));
    assert_eq!(*counter.lock().unwrap(), 6);
    assert!(lockdep.detector().reports().is_empty());
    assert_eq!(lockdep.detector().status().dependencies, 1);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_across_async_and_blocking_locks_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let outer = Arc::new(Mutex::with_class("order-outer", 0u64));
    let middle = Arc::new(stdsync::Mutex::with_class("order-middle", 0u64));
    let inner = Arc::new(stdsync::RwLock::with_class("order-inner", 0u64));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (o, m, i) = (outer.clone(), middle.clone(), inner.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let mut o = o.lock().await;
                {
                    let mut m = m.lock().unwrap();
                    *m += *i.read().unwrap();
                }
                *o += 1;
                drop(o);
                tokio::task::yield_now().await;
            }
        }));
    }
    let thread = std::thread::spawn({
        let (o, m, i) = (outer.clone(), middle.clone(), inner.clone());
        move || {
            for _ in 0..10 {
                let _o = o.blocking_lock();
                let _m = m.lock().unwrap();
                *i.write().unwrap() += 1;
            }
        }
    });
    for task in tasks {
        within("task", task).await.unwrap();
    }
    join_thread(thread).await;
    assert!(lockdep.detector().reports().is_empty());
    // outer -> middle, outer -> inner, middle -> inner.
    assert_eq!(lockdep.detector().status().dependencies, 3);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

#[test]
fn try_lock_fallbacks_in_the_other_order_are_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = stdsync::Mutex::with_class("try-a", ());
    let b = stdsync::RwLock::with_class("try-b", ());
    {
        let _a = a.lock().unwrap();
        let _b = b.write().unwrap(); // a -> b
    }
    {
        let _b = b.read().unwrap();
        // The other order only through try_lock, with a fallback.
        match a.try_lock() {
            Ok(_a) => {}
            Err(stdsync::TryLockError::WouldBlock) => {}
            Err(stdsync::TryLockError::Poisoned(_)) => unreachable!(),
        }
    }
    {
        let held = a.lock().unwrap();
        let other = std::thread::scope(|s| {
            s.spawn(|| {
                let _b = b.write().unwrap();
                a.try_lock().is_err() // a is held by the test thread: fallback
            })
            .join()
            .unwrap()
        });
        assert!(other);
        drop(held);
    }
    assert!(lockdep.detector().reports().is_empty());
    assert_eq!(lockdep.detector().status().dependencies, 1);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

#[test]
fn recovered_poisoning_keeps_our_guard_and_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let m = Arc::new(stdsync::Mutex::with_class("poisoned", vec![1]));
    let other = stdsync::Mutex::with_class("poisoned-other", ());
    let panicked = std::thread::spawn({
        let m = m.clone();
        move || {
            let _g = m.lock().unwrap();
            panic!("poison it");
        }
    })
    .join();
    assert!(panicked.is_err());
    assert!(m.is_poisoned());

    let poisoned: PoisonError<stdsync::MutexGuard<'_, Vec<u8>>> = m.lock().unwrap_err();
    let mut guard = poisoned.into_inner(); // our guard: the lock is held
    guard.push(2);
    let o = other.lock().unwrap(); // poisoned -> poisoned-other
    drop((o, guard));
    match m.try_lock() {
        Err(stdsync::TryLockError::Poisoned(p)) => assert_eq!(*p.into_inner(), [1, 2]),
        _ => panic!("still poisoned"),
    }
    m.clear_poison();
    assert!(!m.is_poisoned());
    assert_eq!(*m.lock().unwrap(), [1, 2]);
    assert!(lockdep.detector().reports().is_empty());
    assert_eq!(lockdep.detector().status().dependencies, 1);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
    let m = Arc::into_inner(m).unwrap();
    assert_eq!(m.into_inner().unwrap_or_else(|p| p.into_inner()), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_std_mutex_used_only_inside_spawn_blocking_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let session = Arc::new(Mutex::with_class("blocking-session", ()));
    let file = Arc::new(stdsync::Mutex::with_class("blocking-file", 0u64));
    let index = Arc::new(stdsync::Mutex::with_class("blocking-index", 0u64));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (s, f, i) = (session.clone(), file.clone(), index.clone());
        tasks.push(tokio::spawn(async move {
            let _s = s.lock().await;
            // The closure runs in a context of its own: no session -> file.
            tokio::task::spawn_blocking(move || {
                let mut f = f.lock().unwrap();
                *i.lock().unwrap() += 1;
                *f += 1;
            })
            .await
            .unwrap();
        }));
    }
    for task in tasks {
        within("task", task).await.unwrap();
    }
    assert_eq!(*file.lock().unwrap(), 8);
    assert!(lockdep.detector().reports().is_empty());
    // file -> index only.
    assert_eq!(lockdep.detector().status().dependencies, 1);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

#[cfg(feature = "parking_lot")]
mod parking_lot_locks {
    use super::*;
    use async_lockdep::parkinglot;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn producer_paused_then_paused_and_back_is_a_cycle() {
        if common::own_process() {
            return;
        }
        let lockdep = test_guard();
        let producer_paused = Arc::new(parkinglot::Mutex::with_class("producer_paused", false));
        let paused = Arc::new(parkinglot::RwLock::with_class("paused", false));

        // The notification thread: producer_paused, then paused.
        let thread = std::thread::spawn({
            let (pp, p) = (producer_paused.clone(), paused.clone());
            move || {
                let pp1 = line!() + 1;
                let _pp = pp.lock();
                let p1 = line!() + 1;
                *p.write() = true;
                (pp1, p1)
            }
        });
        let (pp1, p1) = join_thread(thread).await;

        // `resume()` in a task: paused, then producer_paused.
        let (pp, p) = (producer_paused.clone(), paused.clone());
        let task = tokio::spawn(async move {
            let p2 = line!() + 1;
            let _p = p.read();
            let pp2 = line!() + 1;
            *pp.lock() = false;
            (p2, pp2)
        });
        let (p2, pp2) = within("task", task).await.unwrap();

        let reports = lockdep.take_reports();
        assert_eq!(reports.len(), 1, "{reports:#?}");
        let report = &reports[0];
        assert_eq!(report.kind, ReportKind::CircularDependency);
        assert!(!report.needs_writer);
        assert_eq!(report.class_names(), ["paused", "producer_paused"]);
        assert_eq!(held_waited_lines(report), [(p2, pp2), (pp1, p1)]);
        assert_eq!(
            report.dependencies[0].held.kind,
            ClassKind::ParkingLotRwLock
        );
        assert_eq!(
            report.dependencies[0].waited.kind,
            ClassKind::ParkingLotMutex
        );
        let text = report.to_string();
        assert!(
            text.contains("`paused` (parking_lot RwLock, created at "),
            "{text}"
        );
        assert!(
            text.contains("`producer_paused` (parking_lot Mutex, created at "),
            "{text}"
        );
    }

    #[test]
    fn read_recursive_with_a_writer_queued_is_silent() {
        if common::own_process() {
            return;
        }
        let lockdep = test_guard();
        let table = Arc::new(parkinglot::RwLock::with_class("recursive-table", 0u32));
        let outer = table.read();
        let writer = std::thread::spawn({
            let table = table.clone();
            move || *table.write() += 1
        });
        // The writer holds its place while it waits for the reader to leave.
        let deadline = Instant::now() + LIMIT;
        while !table.is_locked_exclusive() {
            assert!(Instant::now() < deadline, "the writer never queued");
            std::thread::sleep(Duration::from_millis(1));
        }
        // A plain `read` would wait behind the writer; this one does not.
        let inner = table.read_recursive();
        assert_eq!(*inner, 0);
        drop((inner, outer));
        writer.join().unwrap();
        assert_eq!(*table.read(), 1);
        assert!(lockdep.detector().reports().is_empty());
        assert_eq!(lockdep.detector().status().dependencies, 0);
        assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
    }

    #[test]
    fn api_shape_as_parking_lots() {
        static COUNT: parkinglot::Mutex<u64> = parkinglot::Mutex::new(0);
        *COUNT.lock() += 1;
        let mut m = parkinglot::Mutex::from(1);
        *m.get_mut() += 1;
        assert_eq!(
            format!("{m:?}"),
            "Mutex { data: 2 }",
            "Debug as parking_lot's"
        );
        {
            let _g = m.lock();
            assert!(m.try_lock().is_none());
            assert!(m.is_locked());
        }
        assert_eq!(m.into_inner(), 2);
        let r: parkinglot::RwLock<u8> = Default::default();
        {
            let _a = r.try_read().unwrap();
            assert!(r.try_write().is_none());
        }
        *r.try_write().unwrap() = 3;
        assert_eq!(r.into_inner(), 3);
    }
}

/// `#[tokio::test]`'s body (current-thread runtime) holds a std guard across
/// an `.await`; a task it spawned runs on the same thread meanwhile and
/// locks that mutex: the body cannot resume to release it while the task
/// blocks the thread. Reported before the task blocks (and, as the test's
/// guard asks, that task gives up, so this test does not hang).
#[tokio::test]
#[allow(clippy::await_holding_lock)] // the very bug shown
async fn a_std_guard_held_across_an_await_against_a_task_on_the_same_thread_is_reported() {
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(true)
        .test_guard();
    let m = Arc::new(async_lockdep::stdsync::Mutex::with_class(
        "same-thread-std",
        0u32,
    ));
    let guard = m.lock().unwrap(); // HOLDER
    let m2 = m.clone();
    let task = tokio::spawn(async move {
        *m2.lock().unwrap() += 1; // BLOCKED
    });
    tokio::time::sleep(Duration::from_millis(20)).await; // the task runs here
    drop(guard);
    assert!(task.await.is_err(), "the task gave up instead of blocking");
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::SelfDeadlock);
    assert!(matches!(
        report.suspended_holder,
        Some(ContextId::Thread(_))
    ));
    let dep = &report.dependencies[0];
    let text = std::fs::read_to_string(file!()).unwrap();
    let line = |marker: &str| text.lines().position(|l| l.contains(marker)).unwrap() as u32 + 1;
    assert_eq!(
        (dep.held_at.line(), dep.waited_at.line()),
        (line("// HOLDER"), line("// BLOCKED"))
    );
    assert!(
        report.to_string().contains("is blocking its thread"),
        "{report}"
    );
}

/// The same with the guard dropped before the `.await`, and on a
/// multi-thread runtime (the task blocks a worker thread until the body
/// releases the lock: slow, but no deadlock): silent.
#[tokio::test]
async fn a_std_guard_dropped_before_the_await_is_silent() {
    let lockdep = test_guard();
    let m = Arc::new(async_lockdep::stdsync::Mutex::with_class(
        "dropped-std",
        0u32,
    ));
    {
        let _guard = m.lock().unwrap();
    }
    let m2 = m.clone();
    let task = tokio::spawn(async move {
        *m2.lock().unwrap() += 1;
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    task.await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_std_guard_across_an_await_against_a_task_on_a_worker_is_silent() {
    let lockdep = test_guard();
    let m = Arc::new(async_lockdep::stdsync::Mutex::with_class(
        "worker-std",
        0u32,
    ));
    let guard = m.lock().unwrap();
    let m2 = m.clone();
    let task = tokio::spawn(async move {
        *m2.lock().unwrap() += 1;
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(guard);
    task.await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}
