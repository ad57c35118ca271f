//! Lock-order cycles between mutexes: what must be reported, exactly.

mod common;

use std::sync::Arc;

use async_lockdep::{test_guard, Access, Mutex, ReportKind};

#[tokio::test]
async fn abba_across_two_sequential_tasks_is_one_report_with_all_four_sites() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let accounts = Arc::new(Mutex::with_class("accounts", 0u32));
    let ledger = Arc::new(Mutex::with_class("ledger", 0u32));

    let (a, l) = (accounts.clone(), ledger.clone());
    let first = tokio::spawn(async move {
        let a1 = line!() + 1;
        let _a = a.lock().await;
        let l1 = line!() + 1;
        let _l = l.lock().await;
        (a1, l1)
    });
    let (a1, l1) = first.await.unwrap();
    let (a, l) = (accounts.clone(), ledger.clone());
    let second = tokio::spawn(async move {
        let l2 = line!() + 1;
        let _l = l.lock().await;
        let a2 = line!() + 1;
        let _a = a.lock().await;
        (l2, a2)
    });
    let second_id = second.id();
    let (l2, a2) = second.await.unwrap();

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::CircularDependency);
    assert!(!report.needs_writer);
    assert_eq!(report.class_names(), ["ledger", "accounts"]);
    let closing = &report.dependencies[0];
    assert_eq!(
        (closing.held.name.as_ref(), closing.waited.name.as_ref()),
        ("ledger", "accounts")
    );
    assert_eq!((closing.held_at.line(), closing.waited_at.line()), (l2, a2));
    assert_eq!(closing.context, async_lockdep::ContextId::Task(second_id));
    let before = &report.dependencies[1];
    assert_eq!(
        (before.held.name.as_ref(), before.waited.name.as_ref()),
        ("accounts", "ledger")
    );
    assert_eq!((before.held_at.line(), before.waited_at.line()), (a1, l1));
    assert_eq!(before.held_at.file(), file!());
    assert_eq!(
        (closing.held_as, closing.waited_as),
        (Access::Lock, Access::Lock)
    );

    let text = report.to_string();
    assert!(
        text.contains("WARNING: possible circular locking dependency detected"),
        "{text}"
    );
    assert!(text.contains(&format!("{}:{}:", file!(), a2)), "{text}");
    assert!(text.contains("*** DEADLOCK ***"), "{text}");
}

#[tokio::test]
async fn three_classes_in_three_tasks_form_one_three_edge_cycle() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("a", ()));
    let b = Arc::new(Mutex::with_class("b", ()));
    let c = Arc::new(Mutex::with_class("c", ()));
    for (x, y) in [(&a, &b), (&b, &c), (&c, &a)] {
        let (x, y) = (x.clone(), y.clone());
        tokio::spawn(async move {
            let _x = x.lock().await;
            let _y = y.lock().await;
        })
        .await
        .unwrap();
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(reports[0].class_names(), ["c", "a", "b"]);
    let text = reports[0].to_string();
    assert!(
        text.contains("task A") && text.contains("task B") && text.contains("task C"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_order_in_many_tasks_and_instances_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let make = |_| {
        let outer = Arc::new(Mutex::new(0u64));
        let inner = Arc::new(Mutex::new(0u64));
        (outer, inner)
    };
    let pairs: Vec<_> = (0..8).map(make).collect();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (outer, inner) = pairs[i % pairs.len()].clone();
        let (o2, i2) = pairs[(i + 3) % pairs.len()].clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let mut o = outer.lock().await;
                let mut n = inner.lock().await;
                *o += 1;
                *n += 1;
                drop((o, n));
                let _o2 = o2.lock().await;
                let _i2 = i2.lock().await;
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(lockdep.detector().reports().is_empty());
    assert_eq!(lockdep.detector().status().dependencies, 1);
    assert_eq!(lockdep.detector().status().contexts_holding_locks, 0);
}

#[tokio::test]
async fn inversion_only_through_try_lock_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("a", ());
    let b = Mutex::with_class("b", ());
    {
        let _a = a.lock().await;
        let _b = b.lock().await;
    }
    {
        let _b = b.lock().await;
        let _a = a.try_lock().expect("free");
    }
    {
        let _b = b.try_lock().expect("free");
        let _a = a.try_lock().expect("free");
    }
    assert!(lockdep.detector().reports().is_empty());
    assert_eq!(lockdep.detector().status().dependencies, 1);
}

#[tokio::test]
async fn try_lock_held_lock_still_orders_later_waits() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("a", ());
    let b = Mutex::with_class("b", ());
    {
        let _a = a.try_lock().expect("free");
        let _b = b.lock().await; // a -> b: a is held even though try-locked
    }
    {
        let _b = b.lock().await;
        let _a = a.lock().await;
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].class_names(), ["b", "a"]);
}

fn inode() -> Mutex<u32> {
    Mutex::new(0) // one creation site: one class for every inode
}

#[tokio::test]
async fn instances_of_one_class_inverted_with_another_class_are_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let journal = Mutex::with_class("journal", ());
    let (inode1, inode7) = (inode(), inode());
    {
        let _i = inode1.lock().await;
        let _j = journal.lock().await;
    }
    {
        let _j = journal.lock().await;
        let _i = inode7.lock().await;
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    let inode_class = reports[0].dependencies[0].waited.name.to_string();
    assert!(
        inode_class.starts_with(&format!("{}:", file!())),
        "{inode_class}"
    );
    assert_eq!(reports[0].class_names(), ["journal", inode_class.as_str()]);
}

#[tokio::test]
async fn two_instances_of_one_class_nested_in_both_orders_is_recursive_locking() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let (inode1, inode2) = (inode(), inode());
    for _ in 0..3 {
        let _p = inode1.lock().await;
        let _c = inode2.lock().await;
    }
    assert!(lockdep.detector().reports().is_empty(), "one order is fine");
    for _ in 0..3 {
        let _c = inode2.lock().await;
        let _p = inode1.lock().await;
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "reported once: {reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::RecursiveLocking);
    assert_eq!(reports[0].dependencies.len(), 2);
    assert_eq!(
        reports[0].dependencies[0].held,
        reports[0].dependencies[0].waited
    );
    assert!(reports[0]
        .to_string()
        .contains("possible recursive locking detected"));
}
