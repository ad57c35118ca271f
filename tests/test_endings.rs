//! How a test with a guard ends when the detector finds something: a real
//! deadlock fails it quickly instead of hanging (one waiter gives up), each
//! report shows once in its output, misuse of the guard ends the misusing
//! test only, and sequential code gets no joined-futures note.
//!
//! Each case runs this test binary again as a child process on a fixture (a
//! test that does nothing unless `ASYNC_LOCKDEP_ENDINGS` names it), without
//! `--nocapture`, as plain `cargo test` runs it; the parent asserts which
//! test failed, what its output says, and how long the child took. A child
//! that does not end is killed.

mod common;

use common::Outcome;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_lockdep::{test_guard, Mutex};

const FIXTURE_ENV: &str = "ASYNC_LOCKDEP_ENDINGS";

/// Whether this process is a child run for fixture mode `mode`.
fn fixture(mode: &str) -> bool {
    std::env::var(FIXTURE_ENV).as_deref() == Ok(mode)
}

/// A child that runs longer than this is killed (the test then fails).
const KILL_AFTER: Duration = Duration::from_secs(60);

/// Runs the tests `names` (exact names, one test thread, output captured)
/// in a child process with fixture mode `mode`; returns the outcome and how
/// long the child took.
fn run(names: &[&str], mode: &str) -> (Outcome, Duration) {
    let mut args = names.to_vec();
    args.extend(["--exact", "--test-threads=1"]);
    let mut command = common::test_binary(&args, &[(FIXTURE_ENV, Some(mode))]);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    let child = command.spawn().expect("run the test binary");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(KILL_AFTER) {
        Ok(output) => (
            Outcome::of(output.expect("wait for the child")),
            started.elapsed(),
        ),
        Err(_) => {
            // Only the child this test started, by its id.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("the child running {names:?} did not end within {KILL_AFTER:?}");
        }
    }
}

/// How many times `needle` occurs in `text`.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

const STUCK_TITLE: &str = "WARNING: deadlock: these tasks are stuck now";
const CYCLE_TITLE: &str = "WARNING: possible circular locking dependency detected";

/// A generous bound on a child run that fails a deadlocked test: the child's
/// start and its test, which gives up within milliseconds.
const BOUND: Duration = Duration::from_secs(10);

/// Asserts that the fixture `name` failed (and only it), within [`BOUND`],
/// with the deadlock report naming `a` and `b` once in its output.
fn assert_deadlock_failed(name: &str, mode: &str, a: &str, b: &str) {
    let (outcome, elapsed) = run(&[name], mode);
    let text = &outcome.output;
    assert!(!outcome.success, "{text}");
    assert!(outcome.failed(name), "{text}");
    assert!(elapsed < BOUND, "took {elapsed:?}:\n{text}");
    assert_eq!(count(text, STUCK_TITLE), 1, "{text}");
    assert_eq!(count(text, CYCLE_TITLE), 1, "{text}");
    assert!(
        text.contains(&format!("`{a}`")) && text.contains(&format!("`{b}`")),
        "{text}"
    );
    assert!(
        text.contains("async-lockdep found a deadlock (tasks stuck now)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("possible deadlock(s) found in test `{name}`")),
        "{text}"
    );
    assert!(text.contains("test result: FAILED"), "{text}");
}

// ---------------------------------------------------------------------------
// A real deadlock: the test's own future is one side.

/// The test's body holds `a`; a task it spawned holds `b` and waits for `a`;
/// then the body waits for `b`: deadlocked, the body closes the cycle.
async fn body_and_task_deadlock(a_name: &'static str, b_name: &'static str) {
    let a = Arc::new(Mutex::with_class(a_name, ()));
    let b = Arc::new(Mutex::with_class(b_name, ()));
    let _a = a.lock().await;
    let (ready, b_held) = tokio::sync::oneshot::channel();
    let task = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            let _b = b.lock().await;
            let _ = ready.send(());
            let _a = a.lock().await;
        }
    });
    b_held.await.unwrap();
    tokio::task::yield_now().await; // the task is waiting for `a` now
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _b = b.lock().await; // deadlock
    task.await.unwrap();
}

#[tokio::test]
async fn fixture_current_thread_test_future_deadlocks() {
    if !fixture("ct-body") {
        return;
    }
    let _lockdep = test_guard();
    body_and_task_deadlock("endings-ct-body-a", "endings-ct-body-b").await;
}

#[test]
fn a_deadlocked_test_future_fails_its_test_at_once_on_current_thread() {
    assert_deadlock_failed(
        "fixture_current_thread_test_future_deadlocks",
        "ct-body",
        "endings-ct-body-a",
        "endings-ct-body-b",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_multi_thread_test_future_deadlocks() {
    if !fixture("mt-body") {
        return;
    }
    let _lockdep = test_guard();
    body_and_task_deadlock("endings-mt-body-a", "endings-mt-body-b").await;
}

#[test]
fn a_deadlocked_test_future_fails_its_test_at_once_on_multi_thread() {
    assert_deadlock_failed(
        "fixture_multi_thread_test_future_deadlocks",
        "mt-body",
        "endings-mt-body-a",
        "endings-mt-body-b",
    );
}

// ---------------------------------------------------------------------------
// A real deadlock between spawned tasks the test awaits.

/// Two spawned tasks take `a` and `b` in opposite orders across a barrier;
/// the test awaits both.
async fn tasks_deadlock(a_name: &'static str, b_name: &'static str) {
    let a = Arc::new(Mutex::with_class(a_name, ()));
    let b = Arc::new(Mutex::with_class(b_name, ()));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let one = tokio::spawn({
        let (a, b, barrier) = (a.clone(), b.clone(), barrier.clone());
        async move {
            let _a = a.lock().await;
            barrier.wait().await;
            let _b = b.lock().await;
        }
    });
    let two = tokio::spawn(async move {
        let _b = b.lock().await;
        barrier.wait().await;
        let _a = a.lock().await;
    });
    one.await.unwrap();
    two.await.unwrap();
}

#[tokio::test]
async fn fixture_current_thread_tasks_deadlock() {
    if !fixture("ct-tasks") {
        return;
    }
    let _lockdep = test_guard();
    tasks_deadlock("endings-ct-tasks-a", "endings-ct-tasks-b").await;
}

#[test]
fn deadlocked_spawned_tasks_fail_their_test_at_once_on_current_thread() {
    assert_deadlock_failed(
        "fixture_current_thread_tasks_deadlock",
        "ct-tasks",
        "endings-ct-tasks-a",
        "endings-ct-tasks-b",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_multi_thread_tasks_deadlock() {
    if !fixture("mt-tasks") {
        return;
    }
    let _lockdep = test_guard();
    tasks_deadlock("endings-mt-tasks-a", "endings-mt-tasks-b").await;
}

#[test]
fn deadlocked_spawned_tasks_fail_their_test_at_once_on_multi_thread() {
    assert_deadlock_failed(
        "fixture_multi_thread_tasks_deadlock",
        "mt-tasks",
        "endings-mt-tasks-a",
        "endings-mt-tasks-b",
    );
}

// ---------------------------------------------------------------------------
// A deadlock confirmed later, on the detector's confirmation thread: the
// waiter is woken and gives up at its next poll.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_deadlock_through_a_future_kept_aside() {
    if !fixture("kept") {
        return;
    }
    let _lockdep = test_guard();
    let config = Arc::new(Mutex::with_class("endings-kept-config", ()));
    let index = Arc::new(Mutex::with_class("endings-kept-index", ()));
    let holder = config.clone().lock_owned().await;
    let (holds, go) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let b = tokio::spawn({
        let (config, index, holds, go) = (config.clone(), index.clone(), holds.clone(), go.clone());
        async move {
            let _index = index.lock().await;
            holds.notify_one();
            go.notified().await;
            drop(config.lock().await); // handed to A's kept future: waits for A
        }
    });
    holds.notified().await;
    let a = tokio::spawn(async move {
        let mut kept = Box::pin(config.lock());
        assert!(futures::poll!(kept.as_mut()).is_pending()); // queued first
        drop(index.lock().await); // waits for B
        drop(kept);
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(holder); // tokio hands `config` to A's kept future
    go.notify_one();
    a.await.unwrap();
    b.await.unwrap();
}

#[test]
fn a_deadlock_confirmed_later_wakes_a_waiter_that_gives_up() {
    let name = "fixture_deadlock_through_a_future_kept_aside";
    let (outcome, elapsed) = run(&[name], "kept");
    let text = &outcome.output;
    assert!(outcome.failed(name), "{text}");
    assert!(elapsed < BOUND, "took {elapsed:?}:\n{text}");
    assert_eq!(count(text, STUCK_TITLE), 1, "{text}");
    assert!(
        text.contains("`endings-kept-config`") && text.contains("`endings-kept-index`"),
        "{text}"
    );
    assert!(
        text.contains("this waiter gives up so that the others can go on"),
        "{text}"
    );
    assert!(
        text.contains(&format!("possible deadlock(s) found in test `{name}`")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Misuse of the guard ends the misusing test, not the binary.

/// A test that passes, run after the misusing one in the same child.
#[tokio::test]
async fn fixture_z_neighbour_passes() {
    if std::env::var_os(FIXTURE_ENV).is_none() {
        return;
    }
    let _lockdep = test_guard();
    let m = Mutex::with_class("endings-neighbour", ());
    drop(m.lock().await);
}

const NEIGHBOUR: &str = "fixture_z_neighbour_passes";

#[tokio::test]
async fn fixture_second_guard() {
    if !fixture("second-guard") {
        return;
    }
    let _lockdep = test_guard();
    let _again = test_guard();
}

#[test]
fn a_second_guard_in_one_test_fails_that_test_only() {
    let (outcome, _) = run(&["fixture_second_guard", NEIGHBOUR], "second-guard");
    let text = &outcome.output;
    assert!(outcome.failed("fixture_second_guard"), "{text}");
    assert!(outcome.passed(NEIGHBOUR), "{text}");
    assert!(
        text.contains("test result: FAILED. 1 passed; 1 failed"),
        "{text}"
    );
    assert!(
        text.contains("a second test_guard() in test `fixture_second_guard`"),
        "{text}"
    );
}

#[tokio::test]
async fn fixture_guard_bound_to_underscore() {
    if !fixture("underscore") {
        return;
    }
    let _ = test_guard();
    let a = Mutex::with_class("endings-underscore-a", ());
    let b = Mutex::with_class("endings-underscore-b", ());
    common::abba(&a, &b).await;
}

#[test]
fn let_underscore_test_guard_fails_that_test_only() {
    let (outcome, _) = run(
        &["fixture_guard_bound_to_underscore", NEIGHBOUR],
        "underscore",
    );
    let text = &outcome.output;
    assert!(
        outcome.failed("fixture_guard_bound_to_underscore"),
        "{text}"
    );
    assert!(outcome.passed(NEIGHBOUR), "{text}");
    assert!(
        text.contains("test result: FAILED. 1 passed; 1 failed"),
        "{text}"
    );
    assert!(text.contains("`let _ = test_guard()`"), "{text}");
    assert_eq!(count(text, CYCLE_TITLE), 1, "{text}");
    assert!(
        text.contains("`endings-underscore-a`") && text.contains("`endings-underscore-b`"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Sequential code: one report, once, and no joined-futures note.

#[tokio::test]
async fn fixture_sequential_abba() {
    if !fixture("sequential") {
        return;
    }
    let _lockdep = test_guard();
    let accounts = Mutex::with_class("endings-accounts", ());
    let ledger = Mutex::with_class("endings-ledger", ());
    common::abba(&accounts, &ledger).await;
}

#[test]
fn a_sequential_inversion_is_reported_once_without_the_joined_futures_note() {
    let (outcome, _) = run(&["fixture_sequential_abba"], "sequential");
    let text = &outcome.output;
    assert!(outcome.failed("fixture_sequential_abba"), "{text}");
    assert_eq!(count(text, CYCLE_TITLE), 1, "{text}");
    assert!(
        text.contains("`endings-accounts`") && text.contains("`endings-ledger`"),
        "{text}"
    );
    assert!(!text.contains("All of it happened in one task"), "{text}");
    assert!(!text.contains("sibling futures"), "{text}");
}

// ---------------------------------------------------------------------------
// Zero-code test mode: `ASYNC_LOCKDEP=1`, no guard anywhere.

#[tokio::test]
async fn fixture_zero_code_inversion() {
    if !fixture("zero-code") {
        return;
    }
    let a = Mutex::with_class("zero-code-a", ());
    let b = Mutex::with_class("zero-code-b", ());
    common::abba(&a, &b).await;
}

#[tokio::test]
async fn fixture_zero_code_one_order() {
    if !fixture("zero-code") {
        return;
    }
    let a = Mutex::with_class("zero-code-c", ());
    let b = Mutex::with_class("zero-code-d", ());
    for _ in 0..2 {
        let _a = a.lock().await;
        let _b = b.lock().await;
    }
}

/// Runs the two zero-code fixtures in one child, two test threads (as
/// `cargo test` does), with `ASYNC_LOCKDEP=1` and `ASYNC_LOCKDEP_PANIC`.
fn run_zero_code(panic: Option<&str>) -> Outcome {
    let names = ["fixture_zero_code_inversion", "fixture_zero_code_one_order"];
    let mut args = names.to_vec();
    args.extend(["--exact", "--test-threads=2"]);
    let env = [
        (FIXTURE_ENV, Some("zero-code")),
        ("ASYNC_LOCKDEP", Some("1")),
        ("ASYNC_LOCKDEP_PANIC", panic),
    ];
    Outcome::of(
        common::test_binary(&args, &env)
            .output()
            .expect("run the test binary"),
    )
}

/// An unmodified suite run with `ASYNC_LOCKDEP=1`: the test that closes a
/// cycle fails with the report in its output (once), the correct one
/// passes, under `cargo test`'s default parallel threads.
#[test]
fn with_async_lockdep_1_and_no_guard_the_test_that_closes_a_cycle_fails() {
    let outcome = run_zero_code(None);
    let text = &outcome.output;
    assert!(!outcome.success, "{text}");
    assert!(!outcome.passed("fixture_zero_code_inversion"), "{text}");
    assert!(outcome.passed("fixture_zero_code_one_order"), "{text}");
    assert_eq!(count(text, CYCLE_TITLE), 1, "{text}");
    assert!(
        text.contains(
            "ASYNC_LOCKDEP=1, no test_guard() in this test): \
             `zero-code-b` -> `zero-code-a` -> `zero-code-b`; the report is printed on stderr"
        ),
        "{text}"
    );
}

/// `ASYNC_LOCKDEP_PANIC=0`: reports printed only, no test fails.
#[test]
fn with_async_lockdep_panic_0_reports_fail_no_test() {
    let outcome = run_zero_code(Some("0"));
    let text = &outcome.output;
    assert!(outcome.success, "{text}");
    assert_eq!(count(text, CYCLE_TITLE), 1, "{text}");
}

// ---------------------------------------------------------------------------
// A report found after the test's guard ran its check.

#[test]
fn fixture_report_after_the_guard_on_a_thread() {
    if !fixture("after-guard") {
        return;
    }
    {
        let _lockdep = test_guard();
    }
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = Mutex::with_class("after-guard-a", ());
            let b = Mutex::with_class("after-guard-b", ());
            common::abba(&a, &b).await;
        });
    })
    .join()
    .unwrap();
}

/// The report is printed and fails nothing: the guard that could have shown
/// it is gone (it used to abort the whole test binary at the test's end).
#[test]
fn a_report_after_the_guard_ran_its_check_is_printed_and_aborts_nothing() {
    let (outcome, _) = run(
        &["fixture_report_after_the_guard_on_a_thread"],
        "after-guard",
    );
    let text = &outcome.output;
    assert!(outcome.success, "{text}");
    assert_eq!(count(text, CYCLE_TITLE), 1, "{text}");
}
