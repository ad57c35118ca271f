//! Reads that block reads: tokio's RwLock is write-preferring, so a read
//! queued behind a waiting writer is blocked by the readers that writer waits
//! for. The live "stuck now" check counts that.

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{spawn_named, test_guard, ReportKind, RwLock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_behind_a_queued_writer_while_its_reader_joins_really_hangs_and_is_reported() {
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let config = Arc::new(RwLock::with_class("reads-config", 0u32));
    let reader = config.clone();
    let outcome = tokio::time::timeout(Duration::from_millis(400), async move {
        let _read = reader.read().await; // A reads
        let w = reader.clone();
        let writer = tokio::spawn(async move {
            *w.write().await += 1; // W queues behind A's read
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = reader.clone();
        let helper = spawn_named("reads-helper", async move {
            *r.read().await // B: a read queued behind W
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let value = helper.join().await; // A waits for B, B for W, W for A
        writer.abort();
        value
    })
    .await;
    assert!(outcome.is_err(), "it really hangs");
    let reports = lockdep.take_reports();
    let stuck = reports
        .iter()
        .find(|r| r.kind == ReportKind::DeadlockNow)
        .unwrap_or_else(|| panic!("stuck now: {reports:#?}"));
    assert!(stuck.needs_writer, "{stuck}");
    assert_eq!(stuck.reader_cap, None, "a writer, not a cap: {stuck}");
    assert!(
        stuck
            .to_string()
            .contains("a writer is queued on `reads-config`"),
        "{stuck}"
    );
    let cycle = reports
        .iter()
        .find(|r| r.kind == ReportKind::CircularDependency)
        .unwrap_or_else(|| panic!("the order too: {reports:#?}"));
    assert!(cycle.needs_writer, "{cycle}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_while_another_reader_joins_with_no_writer_is_not_stuck() {
    let lockdep = test_guard();
    let config = Arc::new(RwLock::with_class("reads-nowriter", 7u32));
    let _read = config.read().await;
    let r = config.clone();
    let helper = spawn_named("reads-nowriter-helper", async move { *r.read().await });
    let value = tokio::time::timeout(Duration::from_secs(5), helper.join())
        .await
        .expect("reads share the lock")
        .unwrap();
    assert_eq!(value, 7);
    let reports = lockdep.take_reports();
    // Reads that join each other: a potential deadlock once a writer
    // queues (or the cap is reached), not one now.
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert!(reports[0].needs_writer, "{}", reports[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_need_a_read_past_the_reader_cap_really_hang_and_are_reported() {
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let table = Arc::new(RwLock::with_max_readers(0u32, 2));
    let outcome = tokio::time::timeout(Duration::from_millis(400), async {
        let _one = table.read().await;
        let _two = table.read().await; // the cap: 2 reads
        let t = table.clone();
        let helper = spawn_named("reads-cap-helper", async move { *t.read().await });
        helper.join().await // a third read: waits for us, we wait for it
    })
    .await;
    assert!(outcome.is_err(), "it really hangs, with no writer anywhere");
    let reports = lockdep.take_reports();
    let stuck = reports
        .iter()
        .find(|r| r.kind == ReportKind::DeadlockNow)
        .unwrap_or_else(|| panic!("stuck now: {reports:#?}"));
    assert_eq!(stuck.reader_cap, Some(2), "{stuck}");
    let text = stuck.to_string();
    assert!(text.contains("is at its reader cap"), "{text}");
    assert!(
        text.contains("(`with_max_readers(2)`), and 2 reads are held"),
        "{text}"
    );
    assert!(
        !text.contains("writer is queued"),
        "the cap, not a writer: {text}"
    );
    let cycle = reports
        .iter()
        .find(|r| r.kind == ReportKind::CircularDependency)
        .unwrap_or_else(|| panic!("the order too: {reports:#?}"));
    assert_eq!(cycle.reader_cap, Some(2), "{cycle}");
    assert!(
        cycle
            .to_string()
            .contains("holds its reader cap of 2 reads (`with_max_readers(2)`)"),
        "{cycle}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_cap_that_is_never_reached_is_silent() {
    let lockdep = test_guard();
    let table = Arc::new(RwLock::with_max_readers(5u32, 3));
    let _one = table.read().await;
    let t = table.clone();
    let helper = spawn_named("reads-cap-ok-helper", async move { *t.read().await });
    let value = tokio::time::timeout(Duration::from_secs(5), helper.join())
        .await
        .expect("under the cap")
        .unwrap();
    assert_eq!(value, 5);
    let reports = lockdep.take_reports();
    // Reads that join each other: a potential deadlock once a writer
    // queues (or the cap is reached), not one now.
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert!(reports[0].needs_writer, "{}", reports[0]);
}
