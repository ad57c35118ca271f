//! Futures joined inside one task: a future instrumented with a span is a
//! context of its own. Correct joined code stays silent once its futures
//! have spans; genuinely deadlocking variants of the same shapes are still
//! reported; without spans, a same-task conflict is only "possible".

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{test_guard, Detector, Mutex, ReportKind, RwLock};
use futures::future::join_all;
use tracing::{info_span, Instrument};
use tracing_subscriber::prelude::*;

/// Installs a registry with the layer for this thread (spans are tracked by
/// the layer; multi-thread workers see them through the spans' subscriber).
fn with_layer() -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(tracing_subscriber::registry().with(Detector::new().layer()))
}

async fn request(cache: &Mutex<u32>, id: u32) {
    let mut entry = cache.lock().await;
    tokio::task::yield_now().await; // held across an await
    *entry += id;
}

#[tokio::test]
async fn join_all_of_instrumented_requests_sharing_a_mutex_is_silent() {
    let _layer = with_layer();
    let lockdep = test_guard();
    let cache = Mutex::with_class("span-cache", 0u32);
    join_all((1..=6).map(|id| request(&cache, id).instrument(info_span!("request", id)))).await;
    assert_eq!(*cache.lock().await, 21);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// Without spans the joined requests are one context: each one's wait for
/// the cache looks like the task re-locking what it holds. Such a wait is
/// decided when it ends: it got the lock (a sibling let it go), so it is
/// silent.
#[tokio::test]
async fn join_all_without_spans_is_silent_once_each_wait_gets_the_lock() {
    let _layer = with_layer();
    let lockdep = test_guard();
    let cache = Mutex::with_class("span-unseparated-cache", 0u32);
    join_all((1..=3).map(|id| request(&cache, id))).await;
    assert_eq!(*cache.lock().await, 6);
    tokio::time::sleep(Duration::from_millis(700)).await; // past any confirmation
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// A real re-lock in one task, outside spans, that nothing cancels: once it
/// has lasted, it is reported as a possible self-deadlock naming the fixes
/// for joined futures, while it still hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relock_that_keeps_waiting_is_reported_as_a_possible_self_deadlock() {
    let lockdep = test_guard();
    let cache = Arc::new(Mutex::with_class("span-relock-cache", 0u32));
    let c = cache.clone();
    let first = line!() + 2;
    let task = tokio::spawn(async move {
        let _entry = c.lock().await;
        *c.lock().await += 1; // hangs: tokio's Mutex is not re-entrant
    });
    let reports = common::first_reports(&lockdep).await;
    assert!(!task.is_finished(), "it still hangs");
    task.abort();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::PossibleSelfDeadlock);
    let dep = &reports[0].dependencies[0];
    assert_eq!(
        (dep.held_at.line(), dep.waited_at.line()),
        (first, first + 1)
    );
    let text = reports[0].to_string();
    assert!(text.contains("possible self-deadlock"), "{text}");
    assert!(text.contains("`join!`"), "{text}");
    assert!(text.contains("own_context"), "{text}");
    assert!(text.contains("#[tracing::instrument]"), "{text}");
}

#[tracing::instrument(skip_all)]
async fn section_a(a: &Mutex<()>) {
    let _a = a.lock().await;
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tracing::instrument(skip_all)]
async fn section_b(b: &Mutex<()>) {
    let _b = b.lock().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn join_of_two_instrumented_independent_sections_is_silent() {
    let _layer = with_layer();
    let lockdep = test_guard();
    let a = Mutex::with_class("span-section-a", ());
    let b = Mutex::with_class("span-section-b", ());
    tokio::join!(section_a(&a), section_b(&b)); // `a` held while `b` is taken
    {
        let _b = b.lock().await;
        let _a = a.lock().await; // b -> a elsewhere: no cycle, a -> b never happened
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn try_join_of_a_reader_and_a_writer_in_spans_is_silent() {
    let _layer = with_layer();
    let lockdep = test_guard();
    let config = RwLock::with_class("span-config", 0u32);
    let reader = async {
        let value = config.read().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<u32, ()>(*value)
    };
    let writer = async {
        *config.write().await += 1; // waits for the reader, which finishes
        Ok::<(), ()>(())
    };
    let (read, ()) = tokio::try_join!(
        reader.instrument(info_span!("reader")),
        writer.instrument(info_span!("writer"))
    )
    .unwrap();
    assert_eq!(read, 0);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn two_instrumented_siblings_that_really_deadlock_are_reported() {
    let _layer = with_layer();
    let lockdep = test_guard();
    let x = Mutex::with_class("span-dead-x", ());
    let y = Mutex::with_class("span-dead-y", ());
    let barrier = tokio::sync::Barrier::new(2);
    let one = async {
        let _x = x.lock().await;
        barrier.wait().await;
        let _y = y.lock().await;
    };
    let two = async {
        let _y = y.lock().await;
        barrier.wait().await;
        let _x = x.lock().await;
    };
    let joined = async {
        tokio::join!(
            one.instrument(info_span!("one")),
            two.instrument(info_span!("two"))
        )
    };
    let outcome = tokio::time::timeout(Duration::from_millis(200), joined).await;
    assert!(outcome.is_err(), "it really deadlocks");
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    let mut spans: Vec<_> = reports[0]
        .dependencies
        .iter()
        .map(|d| d.spans.clone())
        .collect();
    spans.sort();
    assert_eq!(spans, [vec!["one".to_string()], vec!["two".to_string()]]);
}

#[tracing::instrument(skip_all)]
async fn callee_takes(y: &Mutex<()>) {
    let _y = y.lock().await;
}

#[tracing::instrument(skip_all)]
async fn caller_holds_then_calls(x: &Mutex<()>, y: &Mutex<()>) {
    let _x = x.lock().await;
    callee_takes(y).await; // x -> y: the callee runs inside the caller's span
}

#[tokio::test]
async fn an_instrumented_callee_sees_its_callers_holds() {
    let _layer = with_layer();
    let lockdep = test_guard();
    let x = Mutex::with_class("span-caller-x", ());
    let y = Mutex::with_class("span-callee-y", ());
    caller_holds_then_calls(&x, &y).await;
    {
        let _y = y.lock().await;
        let _x = x.lock().await; // y -> x
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].class_names(), ["span-callee-y", "span-caller-x"]);
    let before = &reports[0].dependencies[1];
    assert_eq!(
        before.spans,
        ["callee_takes", "caller_holds_then_calls"],
        "{before:#?}"
    );
}

#[tracing::instrument(skip_all)]
async fn take_guard(x: &Mutex<()>) -> async_lockdep::MutexGuard<'_, ()> {
    x.lock().await
}

#[tokio::test]
async fn a_guard_returned_from_an_instrumented_function_counts_for_its_caller() {
    let _layer = with_layer();
    let lockdep = test_guard();
    let x = Mutex::with_class("span-returned-x", ());
    let y = Mutex::with_class("span-returned-y", ());
    {
        let _x = take_guard(&x).await; // the span closes; the hold passes to the task
        let _y = y.lock().await; // x -> y
    }
    {
        let _y = y.lock().await;
        let _x = x.lock().await; // y -> x
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(
        reports[0].class_names(),
        ["span-returned-y", "span-returned-x"]
    );
}

#[tracing::instrument(skip_all)]
async fn relock(x: &Mutex<()>) {
    let _again = x.lock().await;
}

#[tracing::instrument(skip_all)]
async fn hold_and_call(x: &Mutex<()>) {
    let _x = x.lock().await;
    relock(x).await; // waits for what its own caller holds
}

#[tokio::test]
async fn an_instrumented_callee_relocking_its_callers_lock_is_a_certain_self_deadlock() {
    let _layer = with_layer();
    let lockdep = test_guard();
    let x = Mutex::with_class("span-relock-x", ());
    let outcome = tokio::time::timeout(Duration::from_millis(100), hold_and_call(&x)).await;
    assert!(outcome.is_err(), "it really hangs");
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::SelfDeadlock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_separate_siblings_on_worker_threads_too() {
    use tracing::instrument::WithSubscriber;

    let lockdep = test_guard();
    let cache = Arc::new(Mutex::with_class("span-worker-cache", 0u32));
    let subscriber = tracing_subscriber::registry().with(Detector::new().layer());
    let c = cache.clone();
    // The task runs with the subscriber on whichever worker polls it.
    let task = tokio::spawn(
        async move {
            join_all((1..=4).map(|id| {
                let c = c.clone();
                async move { request(&c, id).await }.instrument(info_span!("request", id))
            }))
            .await;
        }
        .with_subscriber(subscriber),
    );
    task.await.unwrap();
    assert_eq!(*cache.lock().await, 10);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn a_cycle_recorded_in_one_thread_outside_any_span_carries_the_joined_note() {
    let lockdep = test_guard();
    // The test body joins two futures that both wait at once: it runs
    // futures side by side (sequential code gets no note: test_endings.rs).
    let x = Arc::new(Mutex::with_class("span-note-x", ()));
    let y = Arc::new(Mutex::with_class("span-note-y", ()));
    let (x2, y2) = (x.clone(), y.clone());
    let (taken, both_held) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(async move {
        let _x = x2.lock().await;
        let _y = y2.lock().await;
        let _ = taken.send(());
        tokio::time::sleep(Duration::from_millis(20)).await;
    });
    both_held.await.unwrap();
    tokio::join!(async { drop(x.lock().await) }, async {
        drop(y.lock().await)
    });
    holder.await.unwrap();
    let a = Mutex::with_class("span-note-a", ());
    let b = Mutex::with_class("span-note-b", ());
    {
        let _a = a.lock().await;
        let _b = b.lock().await;
    }
    let _b = b.lock().await;
    let _a = a.lock().await; // the test body: one thread context, no span
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    let text = reports[0].to_string();
    assert!(
        text.contains("Note: All of it happened in one task (or thread) outside any span."),
        "{text}"
    );
    assert!(text.contains("own_context"), "{text}");
}

/// A spawned task re-locks what it holds and the test ends 50 ms later,
/// before any confirmation: the guard's check decides the still-waiting
/// re-lock, and the test fails with the report (no abort at teardown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relock_still_waiting_when_the_test_ends_fails_the_test() {
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("span-relock-short", 0u32));
    let m2 = m.clone();
    let task = tokio::spawn(async move {
        let _g = m2.lock().await;
        *m2.lock().await += 1; // hangs
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(lockdep)));
    task.abort();
    let message = match check {
        Ok(()) => panic!("the guard found nothing"),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
    };
    assert!(message.contains("possible self-deadlock"), "{message}");
    assert!(message.contains("`span-relock-short`"), "{message}");
}

/// A `select!` loop between `m.lock()` and a channel, joined with a future
/// that holds `m` a moment before each send: the lock branch often loses
/// while the sibling holds `m`. A wait given up that quickly is a lost
/// race, not a `timeout` running out: silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_loop_whose_lock_branch_loses_to_a_joined_holder_is_silent() {
    let lockdep = test_guard();
    let m = Mutex::with_class("span-select-loop", 0u32);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(8);
    let holder = async {
        for i in 0..200 {
            {
                let mut g = m.lock().await;
                *g += 1;
                tokio::task::yield_now().await; // held across an await
            }
            tx.send(i).await.unwrap();
        }
        drop(tx);
    };
    let looper = async {
        let mut received = 0;
        loop {
            tokio::select! {
                g = m.lock() => drop(g),
                message = rx.recv() => match message {
                    Some(_) => received += 1,
                    None => break,
                },
            }
        }
        received
    };
    let ((), received) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(holder, looper)
    })
    .await
    .expect("no hang");
    assert_eq!(received, 200);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}
