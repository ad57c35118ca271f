//! The detector never hurts the program it watches (issue 24): what it
//! prints cannot fail the program, the layer may be added twice, the
//! environment is read one way, and the run's store is read defensively.
//!
//! Outcomes that need a process of their own (stderr unwritable) run this
//! test binary again as a child on fixtures: tests that do nothing unless
//! `ASYNC_LOCKDEP_ROBUST` names their mode.

mod common;

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_lockdep::{Detector, Mutex, ReportKind};

const FIXTURE_ENV: &str = "ASYNC_LOCKDEP_ROBUST";

/// The fixture mode this process runs, if it is a child run for a fixture.
fn fixture() -> Option<String> {
    std::env::var(FIXTURE_ENV).ok()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------------------
// Reports printed to a stderr that cannot be written.

const PRINTED_OK: &str = "robust-fixture: reports recorded, nothing panicked";

/// Fixture: an ABBA, a second overflowing dependency (an `ERROR` logged to
/// stderr too) and a self-deadlock of `try_lock`-free code, all printed to
/// whatever stderr is; passes when each is recorded and nothing panicked.
#[test]
fn fixture_reports_printed_to_unwritable_stderr() {
    let Some(mode) = fixture() else { return };
    if mode == "closed-pipe" {
        // The parent closes the pipe's read end after starting us: wait
        // until a write fails, so the report below meets a closed pipe.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::io::stderr().write_all(b".").is_ok() {
            assert!(Instant::now() < deadline, "stderr never closed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let detector = Detector::builder()
        .max_dependencies(2)
        .print_reports(true)
        .build();
    assert!(detector.enable());
    runtime().block_on(async {
        let a = Mutex::with_class("robust-print-a", ());
        let b = Mutex::with_class("robust-print-b", ());
        common::abba(&a, &b).await;
        // A third dependency overflows `max_dependencies(2)`: logged.
        let c = Mutex::with_class("robust-print-c", ());
        let _b = b.lock().await;
        let _c = c.lock().await;
    });
    let reports = detector.reports();
    assert_eq!(common::kinds(&reports), [ReportKind::CircularDependency]);
    assert!(detector.status().overflowed);
    println!("{PRINTED_OK}");
}

/// Runs the fixture above in a child with `stderr` as given; returns its
/// stdout and whether it succeeded.
fn run_print_fixture(mode: &str, stderr: Stdio, close_pipe: bool) -> (bool, String) {
    let name = "fixture_reports_printed_to_unwritable_stderr";
    let mut command = common::test_binary(
        &[name, "--exact", "--nocapture", "--test-threads=1"],
        &[
            (FIXTURE_ENV, Some(mode)),
            ("ASYNC_LOCKDEP_STORE", Some("0")),
        ],
    );
    command.stdout(Stdio::piped()).stderr(stderr);
    let mut child = command.spawn().expect("run the test binary");
    if close_pipe {
        drop(child.stderr.take());
    }
    let output = child.wait_with_output().expect("wait for the child");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn a_report_to_a_full_stderr_does_not_panic() {
    if fixture().is_some() {
        return;
    }
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let (success, stdout) = run_print_fixture("dev-full", Stdio::from(full), false);
    assert!(success, "{stdout}");
    assert!(stdout.contains(PRINTED_OK), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn a_report_to_a_closed_stderr_pipe_does_not_panic() {
    if fixture().is_some() {
        return;
    }
    let (success, stdout) = run_print_fixture("closed-pipe", Stdio::piped(), true);
    assert!(success, "{stdout}");
    assert!(stdout.contains(PRINTED_OK), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

// ---------------------------------------------------------------------------
// The layer added twice to one subscriber.

/// Counts the detector's report events naming `robust-twice`.
#[derive(Clone, Default)]
struct ReportEvents(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ReportEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Classes(String);
        impl tracing::field::Visit for Classes {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "classes" {
                    self.0 = value.to_string();
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut classes = Classes(String::new());
        event.record(&mut classes);
        if event.metadata().target() == "async_lockdep" && classes.0.contains("robust-twice") {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[test]
fn the_layer_added_twice_works_as_once() {
    if fixture().is_some() {
        return;
    }
    use tracing_subscriber::layer::SubscriberExt;
    let detector = Detector::new();
    let events = ReportEvents::default();
    let subscriber = tracing_subscriber::registry()
        .with(detector.layer())
        .with(detector.layer())
        .with(events.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("robust_twice", id = 7);
    let _entered = span.enter();
    runtime().block_on(async {
        let a = Mutex::with_class("robust-twice-a", ());
        let b = Mutex::with_class("robust-twice-b", ());
        common::abba(&a, &b).await;
    });
    let reports: Vec<_> = detector
        .reports()
        .into_iter()
        .filter(|r| r.to_string().contains("robust-twice"))
        .collect();
    assert_eq!(common::kinds(&reports), [ReportKind::CircularDependency]);
    for dependency in &reports[0].dependencies {
        assert_eq!(dependency.spans, ["robust_twice{id=7}"], "{}", reports[0]);
    }
    assert_eq!(
        events.0.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one report event, not one per copy of the layer"
    );
}

// ---------------------------------------------------------------------------
// Boolean environment variables.

/// Fixture: says whether detection is on after a first lock (no code turns
/// it on), then runs an ABBA and says how many reports were kept.
#[test]
fn fixture_environment() {
    if fixture().as_deref() != Some("environment") {
        return;
    }
    runtime().block_on(async {
        let a = Mutex::with_class("robust-env-a", ());
        let b = Mutex::with_class("robust-env-b", ());
        drop(a.lock().await);
        let on = Detector::current().is_some();
        println!(
            "robust-fixture: detection {}",
            if on { "on" } else { "off" }
        );
        // With `ASYNC_LOCKDEP=1` and no guard the report fails this test
        // where it is found (a panic): caught, and kept off stderr, so that
        // stderr shows only what the detector prints.
        std::panic::set_hook(Box::new(|_| {}));
        let _ =
            futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(common::abba(&a, &b)))
                .await;
        let _ = std::panic::take_hook();
        println!(
            "robust-fixture: reports {}",
            Detector::new().reports().len()
        );
    });
}

/// Runs [`fixture_environment`] with `env`; returns stdout and stderr.
fn run_environment(env: &[(&str, Option<&str>)]) -> (String, String) {
    let mut all = vec![(FIXTURE_ENV, Some("environment"))];
    all.extend_from_slice(env);
    let output = common::test_binary(&["fixture_environment", "--exact", "--nocapture"], &all)
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
    (stdout, stderr)
}

const CYCLE_TITLE: &str = "WARNING: possible circular locking dependency detected";

#[test]
fn boolean_variables_read_one_way_and_warn_on_nonsense() {
    if fixture().is_some() {
        return;
    }
    let store_off = [("ASYNC_LOCKDEP_STORE", Some("0"))];
    // Any case, trimmed.
    for on in [" TRUE ", "Yes", "on"] {
        let (stdout, stderr) = run_environment(&[("ASYNC_LOCKDEP", Some(on)), store_off[0]]);
        assert!(stdout.contains("detection on"), "{on:?}: {stdout}");
        assert!(stdout.contains("reports 1"), "{on:?}: {stdout}");
        assert!(!stderr.contains("not a boolean"), "{on:?}: {stderr}");
    }
    for off in ["FALSE", " 0"] {
        let (stdout, _) = run_environment(&[("ASYNC_LOCKDEP", Some(off)), store_off[0]]);
        assert!(stdout.contains("detection off"), "{off:?}: {stdout}");
    }
    // Nonsense: one warning naming the variable, the value and the default.
    let (stdout, stderr) = run_environment(&[("ASYNC_LOCKDEP", Some("banana")), store_off[0]]);
    assert!(stdout.contains("detection off"), "{stdout}");
    assert_eq!(
        stderr
            .matches("async-lockdep: warning: ASYNC_LOCKDEP=\"banana\" is not a boolean")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("off until a layer"), "{stderr}");

    // ASYNC_LOCKDEP_PRINT: " 0" silences, nonsense keeps printing with a warning.
    let (stdout, stderr) = run_environment(&[
        ("ASYNC_LOCKDEP", Some("1")),
        ("ASYNC_LOCKDEP_PRINT", Some(" 0")),
        store_off[0],
    ]);
    assert!(stdout.contains("reports 1"), "{stdout}");
    assert!(!stderr.contains(CYCLE_TITLE), "{stderr}");
    assert!(!stdout.contains(CYCLE_TITLE), "{stdout}");
    let (stdout, stderr) = run_environment(&[
        ("ASYNC_LOCKDEP", Some("1")),
        ("ASYNC_LOCKDEP_PRINT", Some("maybe")),
        store_off[0],
    ]);
    assert!(stdout.contains("reports 1"), "{stdout}");
    assert_eq!(stderr.matches(CYCLE_TITLE).count(), 1, "{stderr}");
    assert_eq!(
        stderr
            .matches("ASYNC_LOCKDEP_PRINT=\"maybe\" is not a boolean")
            .count(),
        1,
        "{stderr}"
    );

    // ASYNC_LOCKDEP_STORE: "Off" keeps the directory empty, nonsense warns
    // and keeps the store.
    let dir = scratch_dir("env-store");
    let dir_text = dir.to_str().expect("UTF-8 path");
    let (_, stderr) = run_environment(&[
        ("ASYNC_LOCKDEP", Some("1")),
        ("ASYNC_LOCKDEP_DIR", Some(dir_text)),
        ("ASYNC_LOCKDEP_STORE", Some("Off")),
    ]);
    assert!(!stderr.contains("not a boolean"), "{stderr}");
    assert_eq!(files_under(&dir), 0, "{stderr}");
    let (_, stderr) = run_environment(&[
        ("ASYNC_LOCKDEP", Some("1")),
        ("ASYNC_LOCKDEP_DIR", Some(dir_text)),
        ("ASYNC_LOCKDEP_STORE", Some("nope")),
    ]);
    assert_eq!(
        stderr
            .matches("ASYNC_LOCKDEP_STORE=\"nope\" is not a boolean")
            .count(),
        1,
        "{stderr}"
    );
    assert!(files_under(&dir) > 0, "the store is kept: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory for this test under the system's temporary directory.
fn scratch_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "async-lockdep-robust-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// How many regular files lie under `dir`, at any depth.
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                1
            }
        })
        .sum()
}

// ---------------------------------------------------------------------------
// The run's store, read defensively.

/// A store line: `from -> to`, both explicitly named mutex classes, written
/// in test `test`.
fn store_line(from: &str, to: &str, test: &str) -> String {
    format!(
        "D\t1\t0\t{from}\tsrc/earlier.rs:1:1\t1\t0\t{to}\tsrc/earlier.rs:2:2\t1\t\
         src/earlier.rs:3:3\t1\tsrc/earlier.rs:4:4\t{test}\t\t1\n"
    )
}

/// Runs `f` on its own thread; fails if it takes longer than 10 s (a hang).
fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what}: did not finish within 10 s"))
}

#[test]
fn a_fifo_in_the_store_is_skipped_without_blocking() {
    if fixture().is_some() {
        return;
    }
    let dir = scratch_dir("fifo");
    std::fs::write(
        dir.join("41.deps"),
        format!(
            "async-lockdep-store 1 41\n{}",
            store_line("robust-fifo-a", "robust-fifo-b", "t")
        ),
    )
    .unwrap();
    let fifo = dir.join("42.deps");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    std::fs::create_dir(dir.join("43.deps")).unwrap();
    let read = dir.clone();
    let count = within_10s("reading a store with a FIFO", move || {
        async_lockdep::RunStore::open(&read).map(|s| s.dependency_count())
    });
    assert_eq!(count.unwrap(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_line_costs_only_itself() {
    if fixture().is_some() {
        return;
    }
    let dir = scratch_dir("damaged-line");
    let text = format!(
        "async-lockdep-store 1 51\n{}D\tdamaged\n\u{0}\u{1}\u{2}\n{}",
        store_line("robust-damaged-a", "robust-damaged-b", "t"),
        store_line("robust-damaged-b", "robust-damaged-a", "u"),
    );
    std::fs::write(dir.join("51.deps"), text).unwrap();
    let store = async_lockdep::RunStore::open(&dir).unwrap();
    assert_eq!(store.dependency_count(), 2);
    let cycles = store.cycles();
    assert_eq!(common::kinds(&cycles), [ReportKind::CircularDependency]);
    let _ = std::fs::remove_dir_all(&dir);
}

const SAME_PID_RUN: &str = "robust-same-pid";

/// Fixture: a file `<own pid>.deps` left by an earlier process with this
/// id holds `b -> a`; this test takes `a` then `b`: its guard must find the
/// cycle through the earlier process's file.
#[test]
fn fixture_same_pid_file() {
    if fixture().as_deref() != Some("same-pid") {
        return;
    }
    let base = std::env::var("ASYNC_LOCKDEP_DIR").expect("a store directory");
    let dir = std::path::Path::new(&base).join(SAME_PID_RUN);
    std::fs::create_dir_all(&dir).unwrap();
    let pid = std::process::id();
    std::fs::write(
        dir.join(format!("{pid}.deps")),
        format!(
            "async-lockdep-store 1 {pid}\n{}",
            store_line("robust-pid-b", "robust-pid-a", "earlier_test")
        ),
    )
    .unwrap();
    let _lockdep = async_lockdep::test_guard();
    runtime().block_on(async {
        let a = Mutex::with_class("robust-pid-a", ());
        let b = Mutex::with_class("robust-pid-b", ());
        let _a = a.lock().await;
        let _b = b.lock().await;
    });
}

#[test]
fn a_file_of_an_earlier_process_with_the_same_id_is_read() {
    if fixture().is_some() {
        return;
    }
    let base = scratch_dir("same-pid");
    let output = common::test_binary(
        &["fixture_same_pid_file", "--exact"],
        &[
            (FIXTURE_ENV, Some("same-pid")),
            ("ASYNC_LOCKDEP_DIR", base.to_str()),
            ("NEXTEST_RUN_ID", Some(SAME_PID_RUN)),
        ],
    )
    .output()
    .expect("run the test binary");
    let outcome = common::Outcome::of(output);
    let text = &outcome.output;
    assert!(outcome.failed("fixture_same_pid_file"), "{text}");
    assert_eq!(text.matches(CYCLE_TITLE).count(), 1, "{text}");
    assert!(
        text.contains("`robust-pid-a`") && text.contains("`robust-pid-b`"),
        "{text}"
    );
    assert!(text.contains("earlier_test"), "{text}");
    // This process wrote a file of its own next to the earlier one.
    assert_eq!(files_under(&base.join(SAME_PID_RUN)), 2, "{text}");
    let _ = std::fs::remove_dir_all(&base);
}

// ---------------------------------------------------------------------------
// Many locks of one class held at once.

/// Locks made on one line, one class: a shard table.
fn shards(n: usize) -> Vec<Mutex<u32>> {
    (0..n).map(|_| Mutex::new(0)).collect()
}

#[test]
fn holding_4000_locks_of_one_class_records_a_linear_instance_order() {
    if fixture().is_some() || common::own_process() {
        return;
    }
    let detector = Detector::new();
    assert!(detector.enable());
    const N: usize = 4_000;
    let before = detector.status().instance_orders;
    let table = shards(N);
    runtime().block_on(async {
        let mut guards = Vec::with_capacity(N);
        for shard in &table {
            guards.push(shard.lock().await);
        }
        for guard in &mut guards {
            **guard += 1;
        }
    });
    let status = detector.status();
    assert_eq!(status.instance_orders - before, N - 1, "{status:?}");
    assert!(!status.overflowed, "{status:?}");
    // Once more in the same order: nothing new, nothing reported.
    runtime().block_on(async {
        let mut guards = Vec::with_capacity(N);
        for shard in &table {
            guards.push(shard.lock().await);
        }
    });
    assert_eq!(detector.status().instance_orders - before, N - 1);
    assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
    // The last and the first in the other order close a cycle through the
    // chain, shown by its ends: the closing link, then the chain's first
    // two and last two.
    runtime().block_on(async {
        let _last = table[N - 1].lock().await;
        let _first = table[0].lock().await;
    });
    let reports = detector.reports();
    assert_eq!(common::kinds(&reports), [ReportKind::RecursiveLocking]);
    assert_eq!(reports[0].dependencies.len(), 5, "{}", reports[0]);
    assert!(reports[0].to_string().len() < 10_000, "{}", reports[0]);
}
