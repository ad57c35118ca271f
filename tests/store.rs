//! Cycles across test processes, through the run's store, and the exports.
//!
//! Each half of a cycle runs in a child process of this test binary (a
//! fixture: a test that does nothing unless `ASYNC_LOCKDEP_FIXTURE` is set),
//! sharing one store directory, as `cargo nextest run` runs every test in a
//! process of its own.

mod common;

use common::Outcome;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_lockdep::{test_guard, Detector, Mutex, ReportKind, RunStore};

const FIXTURE_ENV: &str = "ASYNC_LOCKDEP_FIXTURE";

fn fixture() -> Option<String> {
    std::env::var(FIXTURE_ENV).ok()
}

/// A fresh, empty base directory for one test's stores.
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "async-lockdep-store-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The command running fixture `name` with the store at `base`/`run`.
fn fixture_command(name: &str, mode: &str, base: Option<&Path>, run: &str) -> Command {
    let base = base.map(|b| b.to_string_lossy().into_owned());
    let env = [
        (FIXTURE_ENV, Some(mode)),
        ("NEXTEST_RUN_ID", Some(run)),
        ("ASYNC_LOCKDEP_DIR", base.as_deref()),
    ];
    let mut command = common::test_binary(&[name, "--exact", "--test-threads=1"], &env);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

fn outcome(output: Output) -> Outcome {
    Outcome::of(output)
}

fn run(name: &str, mode: &str, base: Option<&Path>, run_id: &str) -> Outcome {
    outcome(
        fixture_command(name, mode, base, run_id)
            .output()
            .expect("run the test binary"),
    )
}

fn spawn(name: &str, mode: &str, base: &Path, run_id: &str) -> Child {
    fixture_command(name, mode, Some(base), run_id)
        .spawn()
        .expect("start the test binary")
}

/// The line of the first lock in `nest` (the second is the next line).
const NEST_LINE: u32 = line!() + 6;

/// Takes `first` then `second`.
async fn nest(first: &'static str, second: &'static str) {
    let a = Mutex::with_class(first, ());
    let b = Mutex::with_class(second, ());
    let _a = a.lock().await;
    let _b = b.lock().await;
}

#[tokio::test]
async fn fixture_half_inode_then_journal() {
    let Some(mode) = fixture() else { return };
    let _lockdep = test_guard();
    if mode == "late" {
        // Start with the other half, finish after it.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    nest("store-inode", "store-journal").await;
    linger(&mode).await;
}

#[tokio::test]
async fn fixture_half_journal_then_inode() {
    let Some(mode) = fixture() else { return };
    let _lockdep = test_guard();
    nest("store-journal", "store-inode").await;
    linger(&mode).await;
}

/// Both halves in one process: the cycle is reported there.
#[tokio::test]
async fn fixture_both_halves() {
    let Some(_mode) = fixture() else { return };
    let _lockdep = test_guard();
    nest("store-inode", "store-journal").await;
    nest("store-journal", "store-inode").await;
}

/// In mode "linger", the test goes on for a while after its half, so both
/// halves are written before either test ends.
async fn linger(mode: &str) {
    if mode == "linger" {
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
}

const FIRST: &str = "fixture_half_inode_then_journal";
const SECOND: &str = "fixture_half_journal_then_inode";
const BOTH: &str = "fixture_both_halves";

fn assert_report_names_both_halves(text: &str) {
    assert!(
        text.contains("WARNING: possible circular locking dependency detected"),
        "{text}"
    );
    assert!(
        text.contains("`store-inode`") && text.contains("`store-journal`"),
        "{text}"
    );
    let first = format!("{}:{}:", file!(), NEST_LINE);
    let second = format!("{}:{}:", file!(), NEST_LINE + 1);
    assert!(text.contains(&first) && text.contains(&second), "{text}");
    assert!(text.contains(&format!("in test `{FIRST}`")), "{text}");
    assert!(text.contains(&format!("in test `{SECOND}`")), "{text}");
    assert!(text.contains("process "), "{text}");
}

#[test]
fn two_processes_one_after_the_other_fail_the_second() {
    let base = scratch("sequential");
    let first = run(FIRST, "on", Some(&base), "run-sequential");
    assert!(first.success, "{}", first.output);
    let second = run(SECOND, "on", Some(&base), "run-sequential");
    assert!(!second.success, "{}", second.output);
    assert!(
        second
            .output
            .contains(&format!("possible deadlock(s) found in test `{SECOND}`")),
        "{}",
        second.output
    );
    assert_report_names_both_halves(&second.output);
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn two_processes_at_the_same_time_fail_the_one_that_finishes_later() {
    let base = scratch("concurrent");
    // The inode half starts first and finishes last (it sleeps before
    // locking); the journal half runs in between.
    let late = spawn(FIRST, "late", &base, "run-concurrent");
    std::thread::sleep(Duration::from_millis(100));
    let early = outcome(
        spawn(SECOND, "on", &base, "run-concurrent")
            .wait_with_output()
            .unwrap(),
    );
    let late = outcome(late.wait_with_output().unwrap());
    assert!(early.success, "{}", early.output);
    assert!(!late.success, "{}", late.output);
    assert!(
        late.output
            .contains(&format!("possible deadlock(s) found in test `{FIRST}`")),
        "{}",
        late.output
    );
    assert_report_names_both_halves(&late.output);
    let _ = std::fs::remove_dir_all(base);
}

/// Both halves are written before either test ends: only the test that
/// wrote the cycle's newest dependency fails, not both.
#[test]
fn two_tests_overlapping_fail_only_the_one_that_wrote_the_newest_half() {
    let base = scratch("overlapping");
    let older = spawn(FIRST, "linger", &base, "run-overlapping");
    std::thread::sleep(Duration::from_millis(200));
    let newer = spawn(SECOND, "linger", &base, "run-overlapping");
    let older = outcome(older.wait_with_output().unwrap());
    let newer = outcome(newer.wait_with_output().unwrap());
    assert!(older.success, "{}", older.output);
    assert!(!older.output.contains("WARNING"), "{}", older.output);
    assert!(!newer.success, "{}", newer.output);
    assert!(
        newer
            .output
            .contains(&format!("possible deadlock(s) found in test `{SECOND}`")),
        "{}",
        newer.output
    );
    assert_report_names_both_halves(&newer.output);
    let _ = std::fs::remove_dir_all(base);
}

/// A third test wrote the same half as the newest one, earlier: the newest
/// test still finds the cycle through its own copy of that half, so the
/// cycle is never left to a test that defers to it.
#[test]
fn the_newest_half_is_checked_even_if_another_process_wrote_it_first() {
    let base = scratch("duplicate");
    let early = run(SECOND, "on", Some(&base), "run-duplicate");
    assert!(early.success, "alone so far: {}", early.output);
    let older = spawn(FIRST, "linger", &base, "run-duplicate");
    std::thread::sleep(Duration::from_millis(200));
    let newest = spawn(SECOND, "linger", &base, "run-duplicate");
    let older = outcome(older.wait_with_output().unwrap());
    let newest = outcome(newest.wait_with_output().unwrap());
    // Whichever checks first with the cycle in view reports it (the older
    // one, through the early copy of the other half, when it checks first);
    // the store then tells the other one it was reported: one cycle, one
    // failing test in a run, never none.
    let failed: Vec<_> = [&older, &newest]
        .into_iter()
        .filter(|o| !o.success)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "older:\n{}\nnewest:\n{}",
        older.output,
        newest.output
    );
    assert_report_names_both_halves(&failed[0].output);
    let _ = std::fs::remove_dir_all(base);
}

/// A cycle reported inside one process (both halves there) is in the run's
/// store: a later process that writes one of its halves again does not
/// fail for it.
#[test]
fn a_cycle_reported_in_one_process_fails_no_later_process() {
    let base = scratch("reported");
    let both = run(BOTH, "on", Some(&base), "run-reported");
    assert!(
        !both.success,
        "the process with both halves fails: {}",
        both.output
    );
    let later = run(SECOND, "on", Some(&base), "run-reported");
    assert!(later.success, "reported already: {}", later.output);
    let store = async_lockdep::RunStore::open(base.join("run-reported")).unwrap();
    assert_eq!(store.cycles().len(), 1, "the store counts it");
    assert!(store.to_dot().contains("red"), "{}", store.to_dot());
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn async_lockdep_store_0_keeps_a_process_out_of_the_store() {
    let base = scratch("opt-out");
    let first = run(FIRST, "on", Some(&base), "run-opt-out");
    assert!(first.success, "{}", first.output);
    let second = outcome(
        fixture_command(SECOND, "on", Some(&base), "run-opt-out")
            .env("ASYNC_LOCKDEP_STORE", "0")
            .output()
            .expect("run the test binary"),
    );
    assert!(second.success, "{}", second.output);
    assert!(!second.output.contains("WARNING"), "{}", second.output);
    let files = std::fs::read_dir(base.join("run-opt-out")).unwrap().count();
    assert_eq!(files, 1, "only the first process wrote");
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn a_store_from_an_earlier_run_is_silent() {
    let base = scratch("stale");
    let first = run(FIRST, "on", Some(&base), "run-earlier");
    assert!(first.success, "{}", first.output);
    let later = run(SECOND, "on", Some(&base), "run-later");
    assert!(later.success, "{}", later.output);
    assert!(!later.output.contains("WARNING"), "{}", later.output);
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn damaged_and_foreign_files_are_skipped_with_one_warning_each() {
    let base = scratch("damaged");
    let first = run(FIRST, "on", Some(&base), "run-damaged");
    assert!(first.success, "{}", first.output);
    let dir = base.join("run-damaged");
    std::fs::write(dir.join("4000000001.deps"), "not a store at all\n").unwrap();
    std::fs::write(
        dir.join("4000000002.deps"),
        "async-lockdep-store 1 4000000002\nD\ttruncated\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();
    let second = run(SECOND, "on", Some(&base), "run-damaged");
    assert!(!second.success, "the rest is still read: {}", second.output);
    assert_report_names_both_halves(&second.output);
    for name in ["4000000001.deps", "4000000002.deps", "notes.txt"] {
        let warnings = second
            .output
            .lines()
            .filter(|l| l.contains("warning: skipping") && l.contains(name))
            .count();
        assert_eq!(warnings, 1, "{name}: {}", second.output);
    }
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn nextest_run_id_alone_turns_the_store_on_under_the_target_directory() {
    let run_id = format!("store-test-{}", std::process::id());
    let first = run(FIRST, "on", None, &run_id);
    assert!(first.success, "{}", first.output);
    let second = run(SECOND, "on", None, &run_id);
    assert!(!second.success, "{}", second.output);
    assert_report_names_both_halves(&second.output);
    // target/<profile>/async-lockdep/<run id>/<pid>.deps
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap();
    let dir = target.join("async-lockdep").join(&run_id);
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, 2, "one file per process in {}", dir.display());
    let store = RunStore::open(&dir).unwrap();
    assert_eq!(store.dependency_count(), 2);
    let cycles = store.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:#?}");
    assert_eq!(cycles[0].kind, ReportKind::CircularDependency);
    assert_eq!(
        store.to_dot(),
        "digraph async_lockdep {\n    \"store-inode\" -> \"store-journal\" [color=red];\n    \
         \"store-journal\" -> \"store-inode\" [color=red];\n}\n"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------
// Exports.

#[tokio::test]
async fn the_dot_export_of_a_known_graph() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("dot-a", ());
    let b = Mutex::with_class("dot-b", ());
    let c = Mutex::with_class("dot-c", ());
    let d = Mutex::with_class("dot-d", ());
    for (x, y) in [(&a, &b), (&b, &c), (&a, &d), (&c, &a)] {
        let _x = x.lock().await;
        let _y = y.lock().await;
    }
    assert_eq!(lockdep.take_reports().len(), 1);
    assert_eq!(
        Detector::new().to_dot(),
        "digraph async_lockdep {\n\
         \x20   \"dot-a\" -> \"dot-b\" [color=red];\n\
         \x20   \"dot-a\" -> \"dot-d\";\n\
         \x20   \"dot-b\" -> \"dot-c\" [color=red];\n\
         \x20   \"dot-c\" -> \"dot-a\" [color=red];\n\
         }\n"
    );
}

#[tokio::test]
async fn the_json_of_a_known_report() {
    if common::own_process() {
        return;
    }
    let lockdep = test_guard();
    let a = Mutex::with_class("json-a", ());
    let b = Mutex::with_class("json \"b\"", ());
    let first = line!() + 2;
    {
        let _a = a.lock().await;
        let _b = b.lock().await;
    }
    let second = line!() + 1;
    let _b = b.lock().await;
    let _a = a.lock().await;
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    let context = report.dependencies[0].context.to_string();
    let test = std::thread::current().name().unwrap().to_string();
    let f = file!();
    let text = report
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let expected = format!(
        "{{\"kind\":\"CircularDependency\",\
         \"title\":\"possible circular locking dependency detected\",\
         \"classes\":[\"json \\\"b\\\"\",\"json-a\"],\"needs_writer\":false,\
         \"dependencies\":[\
         {{\"held\":\"json \\\"b\\\"\",\"held_as\":\"lock\",\"held_at\":\"{f}:{second}:16\",\
         \"waited\":\"json-a\",\"waited_as\":\"lock\",\"waited_at\":\"{f}:{s1}:16\",\
         \"context\":\"{context}\",\"test\":\"{test}\",\"spans\":[]}},\
         {{\"held\":\"json-a\",\"held_as\":\"lock\",\"held_at\":\"{f}:{first}:20\",\
         \"waited\":\"json \\\"b\\\"\",\"waited_as\":\"lock\",\"waited_at\":\"{f}:{f1}:20\",\
         \"context\":\"{context}\",\"test\":\"{test}\",\"spans\":[]}}],\
         \"text\":\"{text}\"}}",
        s1 = second + 1,
        f1 = first + 1,
    );
    assert_eq!(report.to_json(), expected);
}
