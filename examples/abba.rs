//! Two tasks take `accounts` then `ledger`, and `ledger` then `accounts`,
//! one after the other. This run never deadlocks, but another interleaving
//! would: the detector reports the cycle anyway.
//!
//! Run it with `cargo run --example abba`.

use std::sync::Arc;

use async_lockdep::{Detector, Mutex};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

#[derive(Default)]
struct Accounts {
    balances: [i64; 4],
}

#[derive(Default)]
struct Ledger {
    entries: Vec<(usize, usize, i64)>,
}

async fn transfer(
    accounts: &Mutex<Accounts>,
    ledger: &Mutex<Ledger>,
    from: usize,
    to: usize,
    amount: i64,
) {
    let mut accounts = accounts.lock().await;
    let mut ledger = ledger.lock().await;
    accounts.balances[from] -= amount;
    accounts.balances[to] += amount;
    ledger.entries.push((from, to, amount));
}

async fn audit(accounts: &Mutex<Accounts>, ledger: &Mutex<Ledger>) -> bool {
    let ledger = ledger.lock().await;
    let accounts = accounts.lock().await;
    accounts.balances.iter().sum::<i64>() == 0 && ledger.entries.len() < 1000
}

#[tokio::main]
async fn main() {
    // Installing the layer turns detection on for the whole process; each
    // report is printed to stderr the moment it is found (and emitted as an
    // `ERROR` event at target `async_lockdep` to the subscriber).
    let detector = Detector::new();
    tracing_subscriber::registry().with(detector.layer()).init();

    let accounts = Arc::new(Mutex::with_class("accounts", Accounts::default()));
    let ledger = Arc::new(Mutex::with_class("ledger", Ledger::default()));

    let (a, l) = (accounts.clone(), ledger.clone());
    tokio::spawn(async move {
        transfer(&a, &l, 1, 2, 10)
            .instrument(tracing::info_span!("transfer", from = 1, to = 2))
            .await
    })
    .await
    .unwrap();
    let (a, l) = (accounts.clone(), ledger.clone());
    let ok =
        tokio::spawn(async move { audit(&a, &l).instrument(tracing::info_span!("audit")).await })
            .await
            .unwrap();
    println!("audit passed: {ok}; the run finished without deadlocking.\n");

    let reports = detector.reports();
    println!(
        "async-lockdep found {} possible deadlock(s), printed above: {:?}",
        reports.len(),
        reports.iter().map(|r| r.class_names()).collect::<Vec<_>>()
    );
}
