//! Executors as workqueues: flush/destroy/join dependencies, the "unused
//! executor adds no edge" rule, and the LKML lazy-creation race.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{
    spawn, test_guard, Access, FlushError, LazyWorkQueue, Mutex, ReportKind, WorkError, WorkQueue,
};

#[tokio::test]
async fn flush_while_holding_a_lock_its_items_took_is_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let inode = Arc::new(Mutex::with_class("inode", 0u32));
    let queue = WorkQueue::builder("dio").class("dio").build();

    let i = inode.clone();
    let (take_line, queue_line) = (line!() + 2, line!() + 1);
    let item = queue.queue(async move {
        *i.lock().await += 1;
    });
    queue.flush().await.unwrap();
    item.await.unwrap();
    assert!(lockdep.detector().reports().is_empty());

    let hold_line = line!() + 1;
    let guard = inode.lock().await;
    let flush_line = line!() + 1;
    queue.flush().await.unwrap(); // nothing pending: returns, but the order is wrong
    drop(guard);

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::CircularDependency);
    assert_eq!(report.class_names(), ["inode", "dio"]);
    let closing = &report.dependencies[0];
    assert_eq!(
        (closing.held_as, closing.waited_as),
        (Access::Lock, Access::Flush)
    );
    assert_eq!(
        (closing.held_at.line(), closing.waited_at.line()),
        (hold_line, flush_line)
    );
    let item_dep = &report.dependencies[1];
    assert_eq!(
        (item_dep.held_as, item_dep.waited_as),
        (Access::RunWork, Access::Lock)
    );
    assert_eq!(
        (item_dep.held_at.line(), item_dep.waited_at.line()),
        (queue_line, take_line)
    );
    let text = report.to_string();
    assert!(text.contains("is flushing"), "{text}");
    assert!(text.contains("flush(dio)"), "{text}");
    assert!(text.contains("ran a work item of `dio`"), "{text}");
}

#[tokio::test]
async fn destroying_or_dropping_an_unused_queue_while_holding_a_lock_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let inode = Mutex::with_class("inode", ());
    let queue = WorkQueue::builder("dio").class("dio").build();
    let used = WorkQueue::builder("dio").class("dio").build();
    used.queue(async {}).await.unwrap();
    {
        let _i = inode.lock().await;
        queue.flush().await.unwrap();
        queue.destroy().await.unwrap();
        drop(WorkQueue::builder("dio").class("dio").build());
        drop(used); // used, but Drop cannot wait: no dependency
    }
    // An item of the class that takes the inode lock: would close a cycle if
    // any of the above had recorded inode -> dio.
    let q = WorkQueue::builder("dio").class("dio").build();
    let item = q.queue(async move {
        let _i = inode.lock().await;
    });
    item.await.unwrap();
    assert!(
        lockdep.detector().reports().is_empty(),
        "{:#?}",
        lockdep.detector().reports()
    );
    assert_eq!(
        lockdep.detector().status().dependencies,
        1,
        "only dio -> inode"
    );
}

/// The LKML `__generic_file_fsync` scenario: racers create the DIO queue
/// lazily under their inode lock; losers destroy theirs.
async fn race_to_create(dio: Arc<LazyWorkQueue>, inode_of: impl Fn() -> Arc<Mutex<u32>>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut racers = Vec::new();
    for _ in 0..8 {
        let (dio, barrier, inode) = (dio.clone(), barrier.clone(), inode_of());
        racers.push(tokio::spawn(async move {
            let _inode = inode.lock().await;
            barrier.wait().await;
            dio.get_or_create().await.name().to_string()
        }));
    }
    for racer in racers {
        assert_eq!(racer.await.unwrap(), "dio");
    }
}

#[tokio::test]
async fn lazy_racy_creation_under_the_inode_lock_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let dio = Arc::new(LazyWorkQueue::with_class("dio", "dio"));
    let inode_of = || Arc::new(Mutex::with_class("inode", 0u32));
    race_to_create(dio.clone(), inode_of).await;
    assert_eq!(dio.created(), 8, "every racer built a queue");
    assert_eq!(
        dio.losers_destroyed(),
        7,
        "all but the winner destroyed theirs"
    );
    assert!(
        lockdep.detector().reports().is_empty(),
        "{:#?}",
        lockdep.detector().reports()
    );
    assert_eq!(lockdep.detector().status().dependencies, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_race_on_a_multi_thread_runtime_destroys_losers_silently() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let dio = Arc::new(LazyWorkQueue::with_class("dio", "dio"));
    race_to_create(dio.clone(), || Arc::new(Mutex::with_class("inode", 0u32))).await;
    assert_eq!(dio.created(), 1 + dio.losers_destroyed());
    assert!(
        lockdep.detector().reports().is_empty(),
        "{:#?}",
        lockdep.detector().reports()
    );
}

#[tokio::test]
async fn lazy_race_then_real_use_then_flush_under_the_inode_lock_is_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let dio = Arc::new(LazyWorkQueue::with_class("dio", "dio"));
    race_to_create(dio.clone(), || Arc::new(Mutex::with_class("inode", 0u32))).await;
    let inode = Arc::new(Mutex::with_class("inode", 0u32));
    assert!(dio.losers_destroyed() > 0);
    assert!(lockdep.detector().reports().is_empty());

    let queue = dio.get().expect("created");
    let i = inode.clone();
    queue
        .queue(async move { *i.lock().await += 1 })
        .await
        .unwrap(); // dio -> inode
    let _inode = inode.lock().await;
    queue.flush().await.unwrap(); // inode -> dio
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].class_names(), ["inode", "dio"]);
    assert_eq!(reports[0].dependencies[0].waited_as, Access::Flush);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_a_join_handle_while_holding_a_lock_the_task_needs_is_reported() {
    if common::own_process() {
        return;
    }
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let guard = a.lock().await;
    let a2 = a.clone();
    let handle = async_lockdep::spawn_named("worker", async move {
        let _a = a2.lock().await;
    });
    // A real deadlock: the task waits for `a`, we wait for the task.
    let join_line = line!() + 1;
    let joined = tokio::time::timeout(Duration::from_millis(300), handle.join()).await;
    assert!(joined.is_err(), "it really deadlocked");
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.len(),
        2,
        "a lock-order cycle, then the deadlock now: {reports:#?}"
    );
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    let mut classes: Vec<_> = reports[0]
        .class_names()
        .into_iter()
        .map(String::from)
        .collect();
    classes.sort();
    assert_eq!(classes, ["a", "worker"]);
    let join = reports[0]
        .dependencies
        .iter()
        .find(|d| d.waited_as == Access::Join)
        .expect("join edge");
    assert_eq!(join.held.name, "a");
    assert_eq!(join.waited_at.line(), join_line);
    let stuck = &reports[1];
    assert_eq!(stuck.kind, ReportKind::DeadlockNow);
    let mut stuck_classes: Vec<_> = stuck
        .dependencies
        .iter()
        .map(|d| (d.held.name.to_string(), d.waited_as))
        .collect();
    stuck_classes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        stuck_classes,
        [
            ("a".to_string(), Access::Join),
            ("worker".to_string(), Access::Lock)
        ]
    );
    drop(guard);
}

#[tokio::test]
async fn a_handle_never_awaited_while_holding_adds_no_edge() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let guard = a.lock().await;
    let a2 = a.clone();
    let handle = spawn(async move {
        let _a = a2.lock().await;
    });
    drop(guard);
    handle.await.unwrap(); // awaited with nothing held: no edge into the task
    assert!(lockdep.detector().reports().is_empty());
    assert_eq!(
        lockdep.detector().status().dependencies,
        1,
        "only task -> a"
    );
}

#[tokio::test]
async fn a_panicking_work_item_does_not_stop_the_queue() {
    if common::own_process() {
        return;
    }
    let _lockdep = test_guard();
    let queue = WorkQueue::new("q");
    let lock = Arc::new(Mutex::with_class("held-by-panicker", ()));
    let l = lock.clone();
    let boom = queue.queue(async move {
        let _g = l.lock().await;
        panic!("boom");
    });
    let after = queue.queue(async { 7 });
    queue.flush().await.unwrap();
    match boom.await {
        Err(WorkError::Panicked(msg)) => assert_eq!(msg, "boom"),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(after.await.unwrap(), 7);
    assert!(
        lock.try_lock().is_ok(),
        "the panicking item's guard was released"
    );
    assert_eq!(_lockdep.detector().status().contexts_holding_locks, 0);
}

#[tokio::test]
async fn flushing_a_queue_from_its_own_item_is_a_self_deadlock_without_hanging() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let queue = Arc::new(WorkQueue::builder("events").class("events").build());
    let q = queue.clone();
    let flush_line = line!() + 1;
    let item = queue.queue(async move { q.flush().await });
    let result = tokio::time::timeout(Duration::from_secs(5), item)
        .await
        .expect("no hang");
    assert_eq!(result.unwrap(), Err(FlushError::SelfFlush));
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].kind, ReportKind::SelfDeadlock);
    let dep = &reports[0].dependencies[0];
    assert_eq!(
        (dep.held.name.as_ref(), dep.waited.name.as_ref()),
        ("events", "events")
    );
    assert_eq!(
        (dep.held_as, dep.waited_as),
        (Access::RunWork, Access::Flush)
    );
    assert_eq!(dep.waited_at.line(), flush_line);
}

#[tokio::test]
async fn nested_queues_form_a_three_class_cycle() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let q1 = Arc::new(WorkQueue::builder("q1").class("q1").build());
    let q2 = Arc::new(WorkQueue::builder("q2").class("q2").build());
    let l = Arc::new(Mutex::with_class("l", ()));

    let l2 = l.clone();
    q2.queue(async move {
        let _l = l2.lock().await; // q2 -> l
    })
    .await
    .unwrap();
    let q2c = q2.clone();
    q1.queue(async move {
        q2c.flush().await.unwrap(); // q1 -> q2
    })
    .await
    .unwrap();
    let _l = l.lock().await;
    q1.flush().await.unwrap(); // l -> q1: closes l -> q1 -> q2 -> l
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].class_names(), ["l", "q1", "q2"]);
    let accesses: Vec<_> = reports[0]
        .dependencies
        .iter()
        .map(|d| (d.held_as, d.waited_as))
        .collect();
    assert_eq!(
        accesses,
        [
            (Access::Lock, Access::Flush),
            (Access::RunWork, Access::Flush),
            (Access::RunWork, Access::Lock)
        ]
    );
}

#[tokio::test]
async fn awaiting_a_work_handle_while_holding_is_a_wait_for_the_queue() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let queue = WorkQueue::builder("q").class("q").build();
    let a = Arc::new(Mutex::with_class("a", ()));
    let a2 = a.clone();
    queue
        .queue(async move { drop(a2.lock().await) })
        .await
        .unwrap(); // q -> a
    let _a = a.lock().await;
    queue.queue(async {}).await.unwrap(); // a -> q
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].class_names(), ["a", "q"]);
    assert_eq!(reports[0].dependencies[0].waited_as, Access::Join);
}

/// A queue created inside a plain `tokio::spawn` task, on a worker thread
/// with no default dispatcher, binds to the detector of the locks that task
/// uses, so its flush under a lock its items take is still reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_created_in_a_plain_tokio_task_is_checked() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let inode = Arc::new(Mutex::with_class("inode", 0u32));
    let i = inode.clone();
    tokio::spawn(async move {
        drop(i.lock().await); // this worker now works for the test's detector
        let queue = WorkQueue::builder("dio").class("dio").build();
        let i2 = i.clone();
        queue
            .queue(async move { *i2.lock().await += 1 })
            .await
            .unwrap(); // dio -> inode
        let _inode = i.lock().await;
        queue.flush().await.unwrap(); // inode -> dio
    })
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].class_names(), ["inode", "dio"]);
}

/// An item of an ordered queue that awaits an item queued after it waits for
/// work that can only start once it has finished.
#[tokio::test]
async fn awaiting_a_later_item_of_the_same_ordered_queue_is_a_self_deadlock() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let queue = Arc::new(WorkQueue::builder("ordered").class("ordered").build());
    let q = queue.clone();
    let queued_line = line!() + 2; // a work handle's wait is shown at its queue() line
    let outer = queue.queue(async move {
        let later = q.queue(async { 1 }); // queued after this item
        later.await
    });
    let result = tokio::time::timeout(Duration::from_secs(5), outer)
        .await
        .expect("no hang");
    assert!(
        matches!(result, Ok(Err(WorkError::SelfDeadlock))),
        "{result:?}"
    );
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::SelfDeadlock);
    let dep = &reports[0].dependencies[0];
    assert_eq!(
        (dep.held_as, dep.waited_as),
        (Access::RunWork, Access::Join)
    );
    assert_eq!(dep.waited_at.line(), queued_line);
    queue.flush().await.unwrap();
}

#[tokio::test]
async fn awaiting_an_earlier_item_or_one_of_a_concurrent_queue_is_fine() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let ordered = Arc::new(WorkQueue::builder("ordered").class("ordered").build());
    let first = ordered.queue(async { 1 });
    let second = ordered.queue(async move { first.await.unwrap() + 1 }); // first already ran
    assert_eq!(second.await.unwrap(), 2);
    let wide = Arc::new(
        WorkQueue::builder("wide")
            .class("wide")
            .max_concurrency(2)
            .build(),
    );
    let w = wide.clone();
    let outer = wide.queue(async move { w.queue(async { 3 }).await.unwrap() });
    let got = tokio::time::timeout(Duration::from_secs(5), outer)
        .await
        .expect("no hang");
    assert_eq!(got.unwrap(), 3);
    assert!(lockdep.take_reports().is_empty());
}

/// An unnamed spawned task's class is its spawn site, shown as a task.
#[tokio::test]
async fn an_unnamed_task_class_is_shown_as_a_spawned_task() {
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let a = Arc::new(Mutex::with_class("joined-under-a", ()));
    fn start(a: Arc<Mutex<()>>) -> async_lockdep::JoinHandle<()> {
        spawn(async move {
            let _a = a.lock().await; // task -> a
        })
    }
    start(a.clone()).join().await.unwrap();
    let guard = a.lock().await;
    let handle = start(a.clone());
    let joined = tokio::time::timeout(Duration::from_millis(50), handle.join()).await;
    assert!(joined.is_err(), "the task waits for `a`, held here");
    drop(guard);
    let reports = lockdep.take_reports();
    let cycle = reports
        .iter()
        .find(|r| r.kind == ReportKind::CircularDependency)
        .unwrap_or_else(|| panic!("{reports:#?}"));
    let text = cycle.to_string();
    assert!(text.contains("` (spawned task)"), "{text}");
}
