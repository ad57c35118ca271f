//! RwLock: tokio's RwLock is write-preferring, so read-after-read can
//! deadlock once a writer queues. What must be reported, and how.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{test_guard, Access, ReportKind, RwLock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_twice_with_a_writer_queued_in_between_is_reported_before_the_hang() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let table = Arc::new(RwLock::with_class("table", 0u32));
    let first_line = line!() + 1;
    let first = table.read().await;
    let t = table.clone();
    let writer = tokio::spawn(async move {
        *t.write().await += 1;
    });
    // Let the writer queue behind our read.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second_line = line!() + 1;
    let second = tokio::time::timeout(Duration::from_millis(200), table.read()).await;
    assert!(
        second.is_err(),
        "the queued writer really blocks the second read"
    );
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::PossibleSelfDeadlock);
    assert!(report.needs_writer);
    let dep = &report.dependencies[0];
    assert_eq!(
        (dep.held.name.as_ref(), dep.waited.name.as_ref()),
        ("table", "table")
    );
    assert_eq!((dep.held_as, dep.waited_as), (Access::Read, Access::Read));
    assert_eq!(
        (dep.held_at.line(), dep.waited_at.line()),
        (first_line, second_line)
    );
    assert!(report
        .to_string()
        .contains("already holds this very lock for reading"));
    drop(first);
    writer.await.unwrap();
}

/// A re-read can only deadlock behind a queued writer: with no write of the
/// class in the run (tokio's `read_shared`), it is kept back; the first
/// write of the class reports it, with the re-read's sites.
#[tokio::test]
async fn read_twice_is_kept_back_until_a_write_of_its_class_is_seen() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let table = RwLock::with_class("table", ());
    let first = table.read().await;
    let second = table.read().await; // succeeds in this run
    assert_eq!(lockdep.take_reports(), [], "no writer anywhere yet");
    drop((first, second));
    let _write = table.write().await;
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].kind, ReportKind::PossibleSelfDeadlock);
    assert!(reports[0].needs_writer);
    assert_eq!(reports[0].dependencies[0].waited_as, Access::Read);
}

/// A lock that is only ever read stays silent, read twice in one task or in
/// joined futures.
#[tokio::test]
async fn a_lock_only_ever_read_stays_silent() {
    let lockdep = test_guard();
    let table = RwLock::with_class("read-only-table", 1u32);
    let first = table.read().await;
    let second = table.read().await;
    assert_eq!(*first + *second, 2);
    drop((first, second));
    let (a, b) = tokio::join!(async { *table.read().await }, async { *table.read().await });
    assert_eq!(a + b, 2);
    assert_eq!(lockdep.take_reports(), []);
}

#[tokio::test]
async fn read_only_cycle_across_tasks_is_reported_as_needing_a_writer() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(RwLock::with_class("a", ()));
    let b = Arc::new(RwLock::with_class("b", ()));
    for (x, y) in [(a.clone(), b.clone()), (b.clone(), a.clone())] {
        tokio::spawn(async move {
            let _x = x.read().await;
            let _y = y.read().await;
        })
        .await
        .unwrap();
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(reports[0].class_names(), ["b", "a"]);
    assert!(reports[0].needs_writer);
    assert!(reports[0]
        .to_string()
        .contains("as soon as a writer queues"));
}

#[tokio::test]
async fn consistent_read_orders_are_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(RwLock::with_class("a", ()));
    let b = Arc::new(RwLock::with_class("b", ()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let _a = a.read().await;
                let _b = b.read().await;
            } else {
                let _a = a.write().await;
                let _b = b.read().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(lockdep.detector().reports().is_empty());
}

#[tokio::test]
async fn write_then_read_inversion_across_two_rwlocks_is_a_plain_cycle() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(RwLock::with_class("a", ()));
    let b = Arc::new(RwLock::with_class("b", ()));
    for (x, y) in [(a.clone(), b.clone()), (b.clone(), a.clone())] {
        tokio::spawn(async move {
            let _x = x.write().await;
            let _y = y.read().await;
        })
        .await
        .unwrap();
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert!(
        !reports[0].needs_writer,
        "a read blocked by a held write needs no extra writer"
    );
    let accesses: Vec<_> = reports[0]
        .dependencies
        .iter()
        .map(|d| (d.held_as, d.waited_as))
        .collect();
    assert_eq!(
        accesses,
        [(Access::Write, Access::Read), (Access::Write, Access::Read)]
    );
}

#[tokio::test]
async fn downgrade_keeps_the_lock_held_as_read_with_no_new_edge() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = RwLock::with_class("a", 1);
    let b = RwLock::with_class("b", 2);
    let w = a.write().await;
    let r = w.downgrade();
    assert_eq!(*r, 1);
    assert_eq!(
        lockdep.detector().status().dependencies,
        0,
        "downgrade waits for nothing"
    );
    assert_eq!(lockdep.detector().held_locks().len(), 1);
    assert_eq!(lockdep.detector().held_locks()[0].0, "a");
    let _b = b.read().await; // a (read) -> b
    assert_eq!(lockdep.detector().status().dependencies, 1);
    drop(_b);
    let again = a.read().await; // read after a (now) read hold: needs a writer
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].kind, ReportKind::PossibleSelfDeadlock);
    assert!(reports[0].needs_writer);
    assert_eq!(reports[0].dependencies[0].held_as, Access::Read);
    drop((r, again));
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

#[tokio::test]
async fn write_after_read_of_the_same_lock_is_a_plain_self_deadlock() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = RwLock::with_class("a", ());
    let _r = a.read().await;
    let w = tokio::time::timeout(Duration::from_millis(50), a.write()).await;
    assert!(w.is_err());
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].kind, ReportKind::PossibleSelfDeadlock);
    assert!(!reports[0].needs_writer);
}

#[tokio::test]
async fn rwlock_api_mirrors_tokio() {
    if common::own_process() {
        return;
    }
    let _lockdep = test_guard();
    let lock = Arc::new(RwLock::new(vec![1, 2, 3]));
    {
        let r = lock.read().await;
        let first = async_lockdep::RwLockReadGuard::map(r, |v| &v[0]);
        assert_eq!(*first, 1);
        assert!(lock.try_read().is_ok());
        assert!(lock.try_write().is_err());
    }
    {
        let w = lock.write().await;
        let mut last = async_lockdep::RwLockWriteGuard::map(w, |v| &mut v[2]);
        *last = 30;
    }
    let owned = lock.clone().write_owned().await;
    let owned = owned.downgrade();
    assert_eq!(owned[2], 30);
    drop(owned);
    let r = lock.clone().read_owned().await;
    drop(r);
    assert!(lock.clone().try_write_owned().is_ok());
    let lock = Arc::try_unwrap(lock).unwrap();
    assert_eq!(lock.into_inner(), vec![1, 2, 30]);
}
