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

/// The reports of the test's `guard`, taken as soon as there are some (an
/// empty list after [`LIMIT`]): for a report found while a task still hangs.
pub async fn first_reports(guard: &async_lockdep::TestGuard) -> Vec<async_lockdep::Report> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let reports = guard.take_reports();
        if !reports.is_empty() || Instant::now() > deadline {
            return reports;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Set in a child process started by [`own_process`].
const CHILD_ENV: &str = "ASYNC_LOCKDEP_OWN_PROCESS";

/// Runs the calling test again in a child process of its own and returns
/// true when the caller should stop (the child ran it and it passed); returns
/// false in that child, or when the test already has a process of its own
/// (under `cargo nextest run`).
///
/// There is one engine per process: tests that assert process-wide counters
/// (dependencies, holders, every report) or that reuse class names need the
/// process to themselves, as nextest gives every test. A failure in the child
/// fails the test with the child's output.
pub fn own_process() -> bool {
    // Such a test must not see, nor feed, the rest of a nextest run.
    async_lockdep::Detector::new().use_shared_store(false);
    if std::env::var_os(CHILD_ENV).is_some()
        || std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test")
    {
        return false;
    }
    let thread = std::thread::current();
    let Some(name) = thread.name().filter(|n| *n != "main") else {
        return false; // not run by libtest's threads: run here
    };
    let exe = std::env::current_exe().expect("test binary path");
    let output = std::process::Command::new(exe)
        // `--include-ignored`: the parent ran, so the test was asked for
        // (an `#[ignore]`d soak run with `--ignored`).
        .args([
            name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(CHILD_ENV, "1")
        .env_remove("NEXTEST_RUN_ID")
        .env_remove("ASYNC_LOCKDEP_DIR")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "test `{name}` failed in its own process ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("1 passed"),
        "test `{name}` did not run in its own process:\n{stdout}\n{stderr}"
    );
    true
}

/// The outcome of running this test binary as a child process.
pub struct Outcome {
    pub success: bool,
    /// stdout and stderr together.
    pub output: String,
}

impl Outcome {
    /// From a finished child's output.
    pub fn of(output: std::process::Output) -> Outcome {
        Outcome {
            success: output.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    fn test_line(&self, name: &str) -> Option<&str> {
        self.output
            .lines()
            .find(|l| l.starts_with(&format!("test {name} ...")))
    }

    /// Whether libtest reported test `name` as passed.
    pub fn passed(&self, name: &str) -> bool {
        self.test_line(name).is_some_and(|l| l.ends_with("ok"))
    }

    /// Whether libtest reported test `name` as failed.
    pub fn failed(&self, name: &str) -> bool {
        self.test_line(name).is_some_and(|l| l.ends_with("FAILED"))
    }
}

/// A command running this test binary with `args`, isolated from the
/// calling run's detector settings and store; `env` pairs set (`Some`) or
/// remove (`None`) variables on top.
pub fn test_binary(args: &[&str], env: &[(&str, Option<&str>)]) -> std::process::Command {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = std::process::Command::new(exe);
    command.args(args);
    for name in [
        "ASYNC_LOCKDEP",
        "ASYNC_LOCKDEP_PRINT",
        "ASYNC_LOCKDEP_DIR",
        "ASYNC_LOCKDEP_STORE",
        "NEXTEST_RUN_ID",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
}

/// Takes `first` then `second`, then `second` then `first`: the smallest
/// lock-order inversion (`second -> first` closes the cycle).
pub async fn abba(first: &async_lockdep::Mutex<()>, second: &async_lockdep::Mutex<()>) {
    {
        let _a = first.lock().await;
        let _b = second.lock().await;
    }
    let _b = second.lock().await;
    let _a = first.lock().await;
}

/// The kinds of `reports`, in order.
pub fn kinds(reports: &[async_lockdep::Report]) -> Vec<async_lockdep::ReportKind> {
    reports.iter().map(|r| r.kind).collect()
}

/// `(held at, waited at)` lines of each dependency of `report`, in order.
pub fn held_waited_lines(report: &async_lockdep::Report) -> Vec<(u32, u32)> {
    report
        .dependencies
        .iter()
        .map(|d| (d.held_at.line(), d.waited_at.line()))
        .collect()
}

/// `(held, held_as, waited, waited_as)` of each dependency of a report.
pub fn links(
    report: &async_lockdep::Report,
) -> Vec<(String, async_lockdep::Access, String, async_lockdep::Access)> {
    report
        .dependencies
        .iter()
        .map(|d| {
            (
                d.held.name.to_string(),
                d.held_as,
                d.waited.name.to_string(),
                d.waited_as,
            )
        })
        .collect()
}

/// The line (from 1) of the first line of `file` that contains `marker`.
pub fn line_of(file: &str, marker: &str) -> u32 {
    let text = std::fs::read_to_string(file).unwrap();
    let index = text.lines().position(|l| l.contains(marker)).unwrap();
    index as u32 + 1
}
