//! Helpers shared by the integration tests: bounded waits, so that no test
//! can hang even when the code under test really deadlocks.
#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a wait that should finish may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Awaits `f`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    within_for(LIMIT, what, f).await
}

/// Awaits `f`, failing the test if it takes longer than `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Joins an OS thread without blocking the runtime and without hanging.
pub async fn join_thread<T>(handle: std::thread::JoinHandle<T>) -> T {
    let deadline = Instant::now() + LIMIT;
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "thread did not finish");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    handle.join().expect("thread panicked")
}
