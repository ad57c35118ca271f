//! Declared nesting levels: two instances of one class locked on purpose.

mod common;

use std::sync::Arc;

use async_lockdep::{test_guard, Mutex, ReportKind};

struct Account {
    id: u32,
    balance: Mutex<i64>,
}

fn account(id: u32) -> Arc<Account> {
    Arc::new(Account {
        id,
        balance: Mutex::new(100),
    }) // one class for all accounts
}

/// The classic pattern: lock two accounts in id order, declaring the levels.
async fn transfer(from: &Account, to: &Account, amount: i64) {
    let (first, second) = if from.id < to.id {
        (from, to)
    } else {
        (to, from)
    };
    let mut a = first.balance.lock_nested(0).await;
    let mut b = second.balance.lock_nested(1).await;
    if first.id == from.id {
        *a -= amount;
        *b += amount;
    } else {
        *b -= amount;
        *a += amount;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_parent_then_child_in_many_tasks_is_silent() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let accounts: Vec<_> = (0..6).map(account).collect();
    let mut tasks = Vec::new();
    for i in 0..48 {
        let from = accounts[i % 6].clone();
        let to = accounts[(i * 5 + 1) % 6].clone();
        if from.id == to.id {
            continue;
        }
        tasks.push(tokio::spawn(async move { transfer(&from, &to, 1).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut total = 0;
    for a in &accounts {
        total += *a.balance.lock().await;
    }
    assert_eq!(total, 600);
    assert!(
        lockdep.detector().reports().is_empty(),
        "{:#?}",
        lockdep.detector().reports()
    );
    assert_eq!(
        lockdep.detector().status().dependencies,
        1,
        "level 0 -> level 1"
    );
}

#[tokio::test]
async fn child_then_parent_somewhere_is_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let (a, b) = (account(1), account(2));
    transfer(&a, &b, 5).await;
    {
        let _child = b.balance.lock_nested(1).await;
        let _parent = a.balance.lock_nested(0).await; // 1 -> 0: inverted
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    let levels: Vec<_> = reports[0]
        .dependencies
        .iter()
        .map(|d| (d.held.subclass, d.waited.subclass))
        .collect();
    assert_eq!(levels, [(1, 0), (0, 1)]);
    assert!(reports[0].to_string().contains("/1"), "{}", reports[0]);
}

#[tokio::test]
async fn undeclared_nesting_of_one_class_in_both_orders_is_reported() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let (a, b) = (account(1), account(2));
    {
        let _x = a.balance.lock().await;
        let _y = b.balance.lock().await;
    }
    assert!(lockdep.detector().reports().is_empty(), "one order is fine");
    let _y = b.balance.lock().await;
    let _x = a.balance.lock().await;
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].kind, ReportKind::RecursiveLocking);
}

#[tokio::test]
async fn out_of_range_levels_count_as_the_highest() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let (a, b) = (account(1), account(2));
    let _x = a.balance.lock_nested(0).await;
    let _y = b.balance.lock_nested(255).await;
    assert!(lockdep.detector().reports().is_empty());
    assert_eq!(lockdep.detector().held_locks().len(), 2);
}
