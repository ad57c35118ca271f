//! Locks that share a class (a `#[derive(Default)]` struct, a helper that
//! makes them, one creation site in a loop) are judged by the order of their
//! instances: one fixed order is fine, orders that form a cycle are reported
//! as recursive locking. Class-level cycles through other classes are
//! unaffected.

use std::sync::Arc;

use async_lockdep::{test_guard, Mutex, ReportKind};

#[derive(Default)]
struct Metrics {
    requests: Mutex<u64>,
    errors: Mutex<u64>,
}

#[tokio::test]
async fn two_fields_of_a_derived_struct_in_one_order_are_silent() {
    let lockdep = test_guard();
    let m = Metrics::default();
    for _ in 0..3 {
        let mut r = m.requests.lock().await;
        let mut e = m.errors.lock().await;
        *r += 1;
        *e += 1;
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

fn counter() -> Mutex<u64> {
    Mutex::new(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_from_one_helper_in_one_order_across_tasks_are_silent() {
    let lockdep = test_guard();
    let pairs: Vec<_> = (0..4)
        .map(|_| (Arc::new(counter()), Arc::new(counter())))
        .collect();
    let mut tasks = Vec::new();
    for (outer, inner) in pairs {
        tasks.push(tokio::spawn(async move {
            let _o = outer.lock().await;
            let _i = inner.lock().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

const NODE_LINE: u32 = line!() + 3;

fn node() -> Arc<Mutex<u64>> {
    Arc::new(Mutex::new(0))
}

#[tokio::test]
async fn two_instances_nested_in_both_orders_in_two_tasks_are_reported() {
    let lockdep = test_guard();
    let (x, y) = (node(), node());
    let (x1, y1) = (x.clone(), y.clone());
    let first = line!() + 2;
    tokio::spawn(async move {
        let _x = x1.lock().await;
        let _y = y1.lock().await;
    })
    .await
    .unwrap();
    let second = line!() + 2;
    tokio::spawn(async move {
        let _y = y.lock().await;
        let _x = x.lock().await;
    })
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::RecursiveLocking);
    let lines: Vec<_> = report
        .dependencies
        .iter()
        .map(|d| (d.held_at.line(), d.waited_at.line()))
        .collect();
    assert_eq!(lines, [(second, second + 1), (first, first + 1)]);
    let text = report.to_string();
    assert!(
        text.contains("possible recursive locking detected"),
        "{text}"
    );
    assert!(
        text.contains("`with_class`") && text.contains("`lock_nested`"),
        "{text}"
    );
    // An unnamed class shows its creation site and its type.
    let site = format!("`{}:{}:", file!(), NODE_LINE);
    assert!(text.contains(&site), "{text}");
    assert!(text.contains("(Mutex<u64>)"), "{text}");
}

#[tokio::test]
async fn a_ring_of_three_instances_is_reported() {
    let lockdep = test_guard();
    let (x, y, z) = (node(), node(), node());
    for (a, b) in [(&x, &y), (&y, &z)] {
        let _a = a.lock().await;
        let _b = b.lock().await;
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "x -> y -> z is an order: {reports:#?}");
    {
        let _z = z.lock().await;
        let _x = x.lock().await; // z -> x closes the ring
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::RecursiveLocking);
    assert_eq!(reports[0].dependencies.len(), 3);
}

fn account() -> Arc<Mutex<u64>> {
    Arc::new(Mutex::new(100))
}

#[tokio::test]
async fn a_class_cycle_through_another_class_is_still_found() {
    let lockdep = test_guard();
    let (x, y) = (account(), account()); // one class
    let ledger = Arc::new(Mutex::with_class("instance-ledger", ()));
    {
        let _x = x.lock().await;
        let _l = ledger.lock().await; // account -> ledger
    }
    {
        let _l = ledger.lock().await;
        let _y = y.lock().await; // ledger -> account: a cycle of classes
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(reports[0].class_names()[0], "instance-ledger");
}
