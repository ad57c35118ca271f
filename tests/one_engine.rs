//! One engine per process, as users run their tests: every task is checked
//! (plain `tokio::spawn` included), a cycle split across two tests is found,
//! reports are never lost, and `test_guard` leaves the user's subscriber
//! alone.
//!
//! The outcome of a whole test ("it fails", "the other one passes") is
//! asserted by running this test binary again as a child process on
//! fixtures: tests that do nothing unless `ASYNC_LOCKDEP_FIXTURE` is set.

mod common;

use common::Outcome;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{test_guard, Detector, Mutex, ReportKind, WorkQueue};

const FIXTURE_ENV: &str = "ASYNC_LOCKDEP_FIXTURE";

/// The fixture mode this process runs, if it is a child run for a fixture.
fn fixture() -> Option<String> {
    std::env::var(FIXTURE_ENV).ok()
}

/// Runs the fixtures named `names` (exact names) in a child process of this
/// test binary, with the fixture mode `mode` and `threads` test threads.
fn run_fixtures(names: &[&str], mode: &str, threads: usize) -> Outcome {
    let threads = format!("--test-threads={threads}");
    let mut args = names.to_vec();
    args.extend(["--exact", &threads]);
    let output = common::test_binary(&args, &[(FIXTURE_ENV, Some(mode))])
        .output()
        .expect("run the test binary");
    Outcome::of(output)
}

// ---------------------------------------------------------------------------
// Locks created inside a plain `tokio::spawn` on worker threads.

/// A cache whose two locks are taken in both orders by two handlers.
struct Cache {
    entries: Mutex<Vec<u32>>,
    stats: Mutex<u32>,
}

impl Cache {
    fn new() -> Arc<Cache> {
        Arc::new(Cache {
            entries: Mutex::with_class("spawn-cache-entries", Vec::new()),
            stats: Mutex::with_class("spawn-cache-stats", 0),
        })
    }
}

/// Runs an inversion in plain tokio tasks; returns the lines of the first
/// lock of each order (entries then stats, stats then entries).
async fn plain_spawn_inversion() -> (u32, u32) {
    // Locks are created on a worker thread, inside a plain tokio task.
    tokio::spawn(async {
        let cache = Cache::new();
        let c = cache.clone();
        let entries_first = tokio::spawn(async move {
            let line = line!() + 1;
            let _e = c.entries.lock().await;
            let _s = c.stats.lock().await;
            line
        })
        .await
        .unwrap();
        let stats_first = line!() + 1;
        let _s = cache.stats.lock().await;
        let _e = cache.entries.lock().await;
        (entries_first, stats_first)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_made_inside_a_plain_tokio_spawn_are_checked() {
    let lockdep = test_guard();
    let (entries_first, stats_first) = plain_spawn_inversion().await;
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::CircularDependency);
    assert_eq!(
        report.class_names(),
        ["spawn-cache-stats", "spawn-cache-entries"]
    );
    let closing = &report.dependencies[0];
    assert_eq!(
        (closing.held_at.line(), closing.waited_at.line()),
        (stats_first, stats_first + 1)
    );
    let before = &report.dependencies[1];
    assert_eq!(
        (before.held_at.line(), before.waited_at.line()),
        (entries_first, entries_first + 1)
    );
    assert_eq!(before.held_at.file(), file!());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_accept_loop_with_an_inversion() {
    if fixture().as_deref() != Some("accept-loop") {
        return;
    }
    let _lockdep = test_guard();
    // An accept loop spawning one handler per connection, all plain tokio.
    let server = tokio::spawn(async {
        let sessions = Arc::new(Mutex::with_class("accept-sessions", 0u32));
        let metrics = Arc::new(Mutex::with_class("accept-metrics", 0u32));
        for conn in 0..4u32 {
            let (s, m) = (sessions.clone(), metrics.clone());
            tokio::spawn(async move {
                if conn % 2 == 0 {
                    let _s = s.lock().await;
                    let _m = m.lock().await;
                } else {
                    let _m = m.lock().await;
                    let _s = s.lock().await;
                }
            })
            .await
            .unwrap();
        }
    });
    server.await.unwrap();
}

#[test]
fn an_accept_loop_of_plain_tasks_with_an_inversion_fails_its_test() {
    let outcome = run_fixtures(&["fixture_accept_loop_with_an_inversion"], "accept-loop", 1);
    assert!(!outcome.success, "{}", outcome.output);
    assert!(
        outcome.failed("fixture_accept_loop_with_an_inversion"),
        "{}",
        outcome.output
    );
    assert!(
        outcome
            .output
            .contains("WARNING: possible circular locking dependency detected"),
        "{}",
        outcome.output
    );
    assert!(
        outcome.output.contains("`accept-metrics`") && outcome.output.contains("`accept-sessions`"),
        "{}",
        outcome.output
    );
}

// ---------------------------------------------------------------------------
// A cycle split across two tests of one binary.

/// The line of the first lock in `nest`.
const NEST_LINE: u32 = line!() + 6;

/// Takes `first` then `second`, two classes shared by the two halves.
async fn nest(first: &str, second: &str) {
    let a = Mutex::with_class(first.to_string(), ());
    let b = Mutex::with_class(second.to_string(), ());
    let _a = a.lock().await;
    let _b = b.lock().await;
}

/// Which order each half takes: mode `forward` has the first half take
/// inode then journal; `backward` swaps the halves.
fn half_order(first_half: bool) -> (&'static str, &'static str) {
    let forward = fixture().as_deref() == Some("forward") || fixture().as_deref() == Some("both");
    if forward == first_half {
        ("split-inode", "split-journal")
    } else {
        ("split-journal", "split-inode")
    }
}

#[tokio::test]
async fn fixture_split_half_1() {
    if fixture().is_none() || fixture().as_deref() == Some("accept-loop") {
        return;
    }
    let _lockdep = test_guard();
    let (first, second) = half_order(true);
    nest(first, second).await;
    if fixture().as_deref() == Some("both") {
        // In parallel: stay alive until the other half has run too.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn fixture_split_half_2() {
    if fixture().is_none() || fixture().as_deref() == Some("accept-loop") {
        return;
    }
    let _lockdep = test_guard();
    let (first, second) = half_order(false);
    nest(first, second).await;
    if fixture().as_deref() == Some("both") {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

const HALVES: [&str; 2] = ["fixture_split_half_1", "fixture_split_half_2"];

/// Asserts the second half failed with a report naming both halves.
fn assert_second_half_failed(outcome: &Outcome, closing: &str) {
    assert!(!outcome.success, "{}", outcome.output);
    assert!(outcome.passed(HALVES[0]), "{}", outcome.output);
    assert!(outcome.failed(HALVES[1]), "{}", outcome.output);
    let text = &outcome.output;
    assert!(
        text.contains("WARNING: possible circular locking dependency detected"),
        "{text}"
    );
    assert!(
        text.contains("`split-inode`") && text.contains("`split-journal`"),
        "{text}"
    );
    // Both halves' test names and both lock sites (inside `nest`).
    assert!(text.contains("`fixture_split_half_1`"), "{text}");
    assert!(text.contains("`fixture_split_half_2`"), "{text}");
    let lock_a = format!("{}:{}:", file!(), NEST_LINE);
    let lock_b = format!("{}:{}:", file!(), NEST_LINE + 1);
    assert!(text.contains(&lock_a) && text.contains(&lock_b), "{text}");
    assert!(
        text.contains(&format!("possible deadlock(s) found in test `{closing}`")),
        "{text}"
    );
}

#[test]
fn a_cycle_split_across_two_tests_fails_the_test_that_closes_it() {
    // libtest runs the two halves in name order on one thread.
    let outcome = run_fixtures(&HALVES, "forward", 1);
    assert_second_half_failed(&outcome, HALVES[1]);
}

#[test]
fn a_cycle_split_across_two_tests_in_the_other_order_fails_the_closing_test() {
    let outcome = run_fixtures(&HALVES, "backward", 1);
    assert_second_half_failed(&outcome, HALVES[1]);
}

#[test]
fn a_cycle_split_across_two_tests_running_at_once_fails_exactly_one() {
    let outcome = run_fixtures(&HALVES, "both", 2);
    assert!(!outcome.success, "{}", outcome.output);
    let failed: Vec<_> = HALVES.iter().filter(|h| outcome.failed(h)).collect();
    let passed: Vec<_> = HALVES.iter().filter(|h| outcome.passed(h)).collect();
    assert_eq!((failed.len(), passed.len()), (1, 1), "{}", outcome.output);
    assert!(
        outcome.output.contains("`split-inode`") && outcome.output.contains("`split-journal`"),
        "{}",
        outcome.output
    );
}

// ---------------------------------------------------------------------------
// Reports are never lost.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_really_deadlocks_under_a_timeout() {
    if fixture().as_deref() != Some("hang") {
        return;
    }
    // A test that times out on a hang: it keeps the tasks stuck (a guard's
    // default now makes one waiter give up).
    let _lockdep = Detector::builder().panic_on_deadlock(false).test_guard();
    let a = Arc::new(Mutex::with_class("hang-a", ()));
    let b = Arc::new(Mutex::with_class("hang-b", ()));
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
    tokio::time::timeout(Duration::from_millis(500), async {
        one.await.unwrap();
        two.await.unwrap();
    })
    .await
    .expect("hung");
}

#[test]
fn a_test_that_really_deadlocks_and_times_out_shows_the_reports() {
    let outcome = run_fixtures(&["fixture_really_deadlocks_under_a_timeout"], "hang", 1);
    let text = &outcome.output;
    assert!(!outcome.success, "{text}");
    assert!(text.contains("hung"), "{text}");
    assert!(
        text.contains("WARNING: possible circular locking dependency detected"),
        "{text}"
    );
    assert!(
        text.contains("WARNING: deadlock: these tasks are stuck now"),
        "{text}"
    );
    assert!(
        text.contains("`hang-a`") && text.contains("`hang-b`"),
        "{text}"
    );
}

#[tokio::test]
async fn fixture_guard_bound_to_underscore() {
    if fixture().as_deref() != Some("underscore") {
        return;
    }
    let _ = test_guard();
    let a = Mutex::with_class("underscore-a", ());
    let b = Mutex::with_class("underscore-b", ());
    common::abba(&a, &b).await;
}

#[test]
fn let_underscore_test_guard_still_fails_the_test_process() {
    let outcome = run_fixtures(&["fixture_guard_bound_to_underscore"], "underscore", 1);
    let text = &outcome.output;
    assert!(!outcome.success, "{text}");
    assert!(text.contains("`let _ = test_guard()`"), "{text}");
    assert!(
        text.contains("`underscore-a`") && text.contains("`underscore-b`"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_panic_on_deadlock_inside_a_work_queue_item() {
    if fixture().as_deref() != Some("queue-panic") {
        return;
    }
    let _lockdep = Detector::builder().panic_on_deadlock(true).test_guard();
    let inode = Arc::new(Mutex::with_class("queue-panic-inode", ()));
    let queue = WorkQueue::new("queue-panic-dio");
    let held = inode.lock().await;
    let i = inode.clone();
    let _item = queue.queue(async move {
        let _i = i.lock().await; // waits for the flusher: stuck now, panics here
    });
    // The item panics inside the queue; the flush then completes.
    let flushed = tokio::time::timeout(Duration::from_secs(5), queue.flush()).await;
    drop(held);
    assert!(flushed.is_ok(), "the flush ended");
}

#[test]
fn panic_on_deadlock_inside_a_work_queue_item_fails_the_test() {
    let outcome = run_fixtures(
        &["fixture_panic_on_deadlock_inside_a_work_queue_item"],
        "queue-panic",
        1,
    );
    let text = &outcome.output;
    assert!(!outcome.success, "{text}");
    assert!(
        outcome.failed("fixture_panic_on_deadlock_inside_a_work_queue_item"),
        "{text}"
    );
    assert!(
        text.contains("WARNING: deadlock: these tasks are stuck now"),
        "{text}"
    );
    assert!(text.contains("`queue-panic-inode`"), "{text}");
    assert!(text.contains("waits to   flush"), "{text}");
    assert!(
        text.contains("async-lockdep found a deadlock (tasks stuck now)"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// The user's subscriber is left alone.

#[test]
fn a_global_fmt_subscriber_still_receives_events_after_test_guard() {
    use std::io::Write;
    use std::sync::Mutex as StdMutex;

    if common::own_process() {
        return;
    }
    static LOG: StdMutex<Vec<u8>> = StdMutex::new(Vec::new());
    struct Writer;
    impl Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            LOG.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    tracing_subscriber::fmt()
        .with_writer(|| Writer)
        .with_ansi(false)
        .init();
    tracing::info!("before the guard");
    let _lockdep = test_guard();
    tracing::info!("after the guard");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::spawn(async { tracing::info!("from a worker") })
            .await
            .unwrap();
    });
    let log = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    assert!(log.contains("before the guard"), "{log}");
    assert!(log.contains("after the guard"), "{log}");
    assert!(log.contains("from a worker"), "{log}");
}

// ---------------------------------------------------------------------------
// Turning detection on and off from the environment.

#[tokio::test]
async fn fixture_inversion_without_any_set_up() {
    if fixture().as_deref() != Some("env") {
        return;
    }
    let a = Mutex::with_class("env-a", ());
    let b = Mutex::with_class("env-b", ());
    // With `ASYNC_LOCKDEP=1` and no guard, the report fails the test right
    // where it is found (zero-code test mode): caught here to read the
    // engine's state after it.
    let failed =
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(common::abba(&a, &b)))
            .await
            .is_err();
    println!("failed={failed}");
    let detector = Detector::new();
    println!(
        "enabled={} reports={}",
        detector.status().enabled,
        detector.reports().len()
    );
}

/// Detection turned on in code, no guard: the report is printed when found
/// and fails nothing (zero-code test mode is for `ASYNC_LOCKDEP=1` only).
#[tokio::test]
async fn fixture_inversion_enabled_in_code() {
    if fixture().as_deref() != Some("env") {
        return;
    }
    Detector::new().enable();
    let a = Mutex::with_class("code-a", ());
    let b = Mutex::with_class("code-b", ());
    common::abba(&a, &b).await;
    let detector = Detector::new();
    println!(
        "enabled={} reports={}",
        detector.status().enabled,
        detector.reports().len()
    );
}

#[tokio::test]
async fn fixture_inversion_with_a_guard() {
    if fixture().as_deref() != Some("env") {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("env-guard-a", ());
    let b = Mutex::with_class("env-guard-b", ());
    common::abba(&a, &b).await;
    println!(
        "enabled={} reports={}",
        lockdep.detector().status().enabled,
        lockdep.take_reports().len()
    );
}

fn run_with_env(name: &str, value: Option<&str>) -> Outcome {
    let env = [
        (FIXTURE_ENV, Some("env")),
        ("ASYNC_LOCKDEP_PRINT", Some("0")),
        ("ASYNC_LOCKDEP", value),
    ];
    let output = common::test_binary(&[name, "--exact", "--nocapture"], &env)
        .output()
        .expect("run the test binary");
    Outcome::of(output)
}

#[test]
fn async_lockdep_1_turns_detection_on_with_no_code() {
    let on = run_with_env("fixture_inversion_without_any_set_up", Some("1"));
    assert!(
        on.output.contains("failed=true") && on.output.contains("enabled=true reports=1"),
        "{}",
        on.output
    );
    let off = run_with_env("fixture_inversion_without_any_set_up", None);
    assert!(
        off.output.contains("failed=false") && off.output.contains("enabled=false reports=0"),
        "{}",
        off.output
    );
}

#[test]
fn async_lockdep_0_keeps_detection_off_even_with_a_guard() {
    let forced_off = run_with_env("fixture_inversion_with_a_guard", Some("0"));
    assert!(forced_off.success, "{}", forced_off.output);
    assert!(
        forced_off.output.contains("enabled=false reports=0"),
        "{}",
        forced_off.output
    );
    let default = run_with_env("fixture_inversion_with_a_guard", None);
    assert!(
        default.output.contains("enabled=true reports=1"),
        "{}",
        default.output
    );
}

// ---------------------------------------------------------------------------
// Report events.

#[tokio::test]
async fn reports_reach_every_subscriber_with_the_layer_as_structured_events() {
    use std::sync::Mutex as StdMutex;
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    /// message, kind, classes, sites, report
    type Captured = (String, String, String, String, String);
    #[derive(Default, Clone)]
    struct Capture(Arc<StdMutex<Vec<Captured>>>);
    #[derive(Default)]
    struct Fields(String, String, String, String, String);
    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "message" => self.0 = value.to_string(),
                "kind" => self.1 = value.to_string(),
                "classes" => self.2 = value.to_string(),
                "sites" => self.3 = value.to_string(),
                "report" => self.4 = value.to_string(),
                _ => {}
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }
    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if event.metadata().target() != "async_lockdep" {
                return;
            }
            let mut fields = Fields::default();
            event.record(&mut fields);
            if fields.2.starts_with("event-") {
                self.0
                    .lock()
                    .unwrap()
                    .push((fields.0, fields.1, fields.2, fields.3, fields.4));
            }
        }
    }

    let lockdep = test_guard();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(Detector::new().layer())
        .with(capture.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let a = Mutex::with_class("event-a", ());
    let b = Mutex::with_class("event-b", ());
    let first = line!() + 2;
    {
        let _a = a.lock().await;
        let _b = b.lock().await;
    }
    let second = line!() + 1;
    let _b = b.lock().await;
    let _a = a.lock().await;

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let events = capture.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:#?}");
    let (message, kind, classes, sites, report) = &events[0];
    // The message is one line; the whole report is the field `report`.
    assert_eq!(
        message,
        "possible circular locking dependency: `event-b` -> `event-a` -> `event-b`"
    );
    assert_eq!(report, &reports[0].to_string());
    assert_eq!(kind, "CircularDependency");
    assert_eq!(classes, "event-b -> event-a");
    let f = file!();
    assert_eq!(
        sites,
        &format!(
            "{f}:{second}:16 -> {f}:{}:16, {f}:{first}:20 -> {f}:{}:20",
            second + 1,
            first + 1
        )
    );
}

// ---------------------------------------------------------------------------
// The watchdog is a test's own option.

#[tokio::test]
async fn fixture_watchdog_sleeper() {
    if fixture().as_deref() != Some("watchdog") {
        return;
    }
    let _lockdep = Detector::builder()
        .watchdog(Duration::from_millis(40))
        .test_guard();
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_legitimate_long_wait() {
    if fixture().as_deref() != Some("watchdog") {
        return;
    }
    let _lockdep = test_guard();
    tokio::time::sleep(Duration::from_millis(100)).await; // the watchdog runs now
    let slow = Arc::new(Mutex::with_class("watchdog-slow", ()));
    let held = slow.clone().lock_owned().await;
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
    });
    let _waited = slow.lock().await; // a long, legitimate wait
    releaser.await.unwrap();
}

#[test]
fn the_watchdog_of_one_test_does_not_fail_another_tests_long_wait() {
    let outcome = run_fixtures(
        &[
            "fixture_watchdog_sleeper",
            "fixture_legitimate_long_wait",
            "--nocapture",
        ],
        "watchdog",
        2,
    );
    assert!(outcome.success, "{}", outcome.output);
    // Still printed (here from the watchdog's thread), for whoever reads the log.
    assert!(
        outcome
            .output
            .contains("a lock wait exceeded the watchdog threshold"),
        "{}",
        outcome.output
    );
}

// ---------------------------------------------------------------------------
// Printing.

/// Runs fixture `name` (mode `mode`) with `--nocapture`, `ASYNC_LOCKDEP_PRINT`
/// set to `print` (or unset).
fn run_printing(name: &str, mode: &str, print: Option<&str>) -> Outcome {
    run_printing_with(name, mode, print, None)
}

/// As [`run_printing`], with `ASYNC_LOCKDEP` set to `on` (or unset).
fn run_printing_with(name: &str, mode: &str, print: Option<&str>, on: Option<&str>) -> Outcome {
    let env = [
        (FIXTURE_ENV, Some(mode)),
        ("ASYNC_LOCKDEP_PRINT", print),
        ("ASYNC_LOCKDEP", on),
    ];
    Outcome::of(
        common::test_binary(&[name, "--exact", "--nocapture"], &env)
            .output()
            .expect("run the test binary"),
    )
}

#[test]
fn reports_are_printed_when_found_unless_async_lockdep_print_is_0() {
    // With no guard: a test's guard shows its reports in the test's failure
    // instead (tests/test_endings.rs).
    let printed = run_printing_with("fixture_inversion_enabled_in_code", "env", None, None);
    assert!(printed.success, "{}", printed.output);
    assert!(
        printed
            .output
            .contains("WARNING: possible circular locking dependency detected"),
        "{}",
        printed.output
    );
    let quiet = run_printing_with("fixture_inversion_enabled_in_code", "env", Some("0"), None);
    assert!(quiet.success, "{}", quiet.output);
    assert!(
        quiet.output.contains("enabled=true reports=1"),
        "{}",
        quiet.output
    );
    assert!(!quiet.output.contains("WARNING"), "{}", quiet.output);
}

#[test]
fn a_guard_dropped_while_its_test_panics_prints_the_reports() {
    // Nothing is printed when found: what shows comes from the guard.
    let outcome = run_printing(
        "fixture_really_deadlocks_under_a_timeout",
        "hang",
        Some("0"),
    );
    let text = &outcome.output;
    assert!(!outcome.success, "{text}");
    assert!(text.contains("hung"), "{text}");
    assert!(
        text.contains(
            "possible deadlock(s) found in test `fixture_really_deadlocks_under_a_timeout`"
        ),
        "{text}"
    );
    assert!(
        text.contains("WARNING: possible circular locking dependency detected"),
        "{text}"
    );
}
