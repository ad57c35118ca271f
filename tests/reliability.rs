//! Reliability: the detector never breaks the program it watches.
//!
//! Bad sequences (cancelled waits at every await point, aborted tasks, a
//! runtime shut down under held locks, forgotten guards, dropped and
//! orphaned work queues, panicking work items), overflow of the limits,
//! re-entrant tracing layers that lock, and bad input. After each, the state
//! must be back to "nothing held, nothing waiting", and a fresh ABBA on two
//! new classes must still be reported exactly once.
//!
//! Every test runs on its own OS thread with a deadline, so even a deadlock
//! on one of the detector's internal (std) locks fails the test instead of
//! hanging the suite.

mod common;

use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_lockdep::{
    own_context, Detector, FlushError, Mutex, ReportKind, RwLock, Semaphore, WorkError, WorkQueue,
    MAX_NESTING_LEVEL,
};
use futures::task::noop_waker;
use tokio::sync::oneshot;
use tracing::field::{Field, Visit};
use tracing::instrument::WithSubscriber;
use tracing::Subscriber;
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};

/// Longest any test (or step) may take before it fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Runs `f` on a fresh OS thread and fails if it does not finish within
/// [`LIMIT`] (a hang, or a deadlock on a std lock that no tokio timeout can
/// interrupt). A panic in `f` is re-raised here.
fn with_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn test thread");
    match rx.recv_timeout(LIMIT) {
        Ok(value) => {
            handle.join().expect("test thread");
            value
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {LIMIT:?} (hang or deadlock)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sends before it ends"),
        },
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A test body on its own thread, with its own detector installed as the
/// thread's default, on a current-thread runtime.
fn run_current<F, Fut>(what: &'static str, body: F)
where
    F: FnOnce(Detector) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    with_deadline(what, move || {
        let detector = Detector::new();
        let _default = detector.set_default();
        current_thread_runtime().block_on(body(detector));
    });
}

/// As [`run_current`], on a 2-worker multi-thread runtime.
fn run_multi<F, Fut>(what: &'static str, body: F)
where
    F: FnOnce(Detector) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    with_deadline(what, move || {
        let detector = Detector::new();
        let _default = detector.set_default();
        multi_thread_runtime().block_on(body(detector));
    });
}

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    common::within_for(LIMIT / 2, what, f).await
}

/// A class name no other test uses (class names are process-wide).
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Polls once with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    future.poll(&mut cx)
}

/// Nothing held and nothing waited for, anywhere.
#[track_caller]
fn assert_idle(detector: &Detector, after: &str) {
    let status = detector.status();
    assert_eq!(
        (status.contexts_holding_locks, status.contexts_waiting),
        (0, 0),
        "after {after}: {status:?}"
    );
}

/// Waits (up to the deadline) until the status satisfies `ok`.
async fn status_becomes(
    detector: &Detector,
    what: &str,
    ok: impl Fn(&async_lockdep::Status) -> bool,
) {
    let deadline = Instant::now() + LIMIT / 2;
    loop {
        let status = detector.status();
        if ok(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: status stuck at {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The same, blocking the calling (non-runtime) thread.
fn status_becomes_blocking(
    detector: &Detector,
    what: &str,
    ok: impl Fn(&async_lockdep::Status) -> bool,
) {
    let deadline = Instant::now() + LIMIT / 2;
    loop {
        let status = detector.status();
        if ok(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: status stuck at {status:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A correct scenario after a bad one: ABBA on two new classes, in the
/// calling context, must add exactly one CircularDependency report naming
/// exactly those classes, and leave nothing held.
async fn fresh_abba_reports_exactly_once(detector: &Detector) {
    let before = detector.reports();
    let (a_name, b_name) = (unique("fresh-a"), unique("fresh-b"));
    let a = Mutex::with_class(a_name.clone(), 0u32);
    let b = Mutex::with_class(b_name.clone(), 0u32);
    {
        let mut a = a.lock().await;
        let mut b = b.lock().await;
        *a += 1;
        *b += 1;
    }
    {
        let _b = b.lock().await;
        let _a = a.lock().await; // b -> a closes the cycle
    }
    let after = detector.reports();
    assert_eq!(after.len(), before.len() + 1, "{after:#?}");
    assert_eq!(after[..before.len()], before[..], "earlier reports kept");
    let report = &after[before.len()];
    assert_eq!(report.kind, ReportKind::CircularDependency, "{report}");
    assert_eq!(
        report.class_names(),
        [b_name.as_str(), a_name.as_str()],
        "{report}"
    );
    assert_eq!(report.dependencies.len(), 2);
    assert_eq!((*a.lock().await, *b.lock().await), (1, 1));
}

/// The ABBA on a plain thread with `blocking_lock`, for tests without a runtime.
fn fresh_abba_blocking(detector: &Detector) {
    let before = detector.reports().len();
    let (a_name, b_name) = (unique("fresh-a"), unique("fresh-b"));
    let a = Mutex::with_class(a_name.clone(), ());
    let b = Mutex::with_class(b_name.clone(), ());
    {
        let _a = a.blocking_lock();
        let _b = b.blocking_lock();
    }
    {
        let _b = b.blocking_lock();
        let _a = a.blocking_lock();
    }
    let after = detector.reports();
    assert_eq!(after.len(), before + 1, "{after:#?}");
    assert_eq!(after[before].kind, ReportKind::CircularDependency);
    assert_eq!(
        after[before].class_names(),
        [b_name.as_str(), a_name.as_str()]
    );
}

// ---------------------------------------------------------------------------
// Capturing events
// ---------------------------------------------------------------------------

/// Events at target `async_lockdep`, as (level, message).
#[derive(Clone, Default)]
struct Events(Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

impl Events {
    fn all(&self) -> Vec<(tracing::Level, String)> {
        self.0.lock().expect("events").clone()
    }

    fn errors(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|(level, _)| *level == tracing::Level::ERROR)
            .map(|(_, message)| message)
            .collect()
    }

    fn errors_mentioning(&self, word: &str) -> usize {
        self.errors().iter().filter(|m| m.contains(word)).count()
    }
}

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        if event.metadata().target() != "async_lockdep" {
            return;
        }
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        self.0
            .lock()
            .expect("events")
            .push((*event.metadata().level(), message));
    }
}

// ---------------------------------------------------------------------------
// Cancelled waits at every await point
// ---------------------------------------------------------------------------

/// Drives a wait that a holder (in a context of its own) blocks to each of
/// its await points and drops it there, then checks that nothing is left
/// held or waiting. `$body_holds`: whether the calling context holds one
/// lock of its own meanwhile (so the wait also records a dependency).
macro_rules! cancel_at_every_await_point {
    ($detector:expr, $what:expr, body_holds: $body_holds:expr,
     holder: $hold:expr, wait: $wait:expr, free: $free:expr) => {{
        let detector: &Detector = $detector;
        let what: &str = $what;
        let body = usize::from($body_holds);
        let settled = |step: &str| {
            let status = detector.status();
            assert_eq!(
                (status.contexts_holding_locks, status.contexts_waiting),
                (body, 0),
                "{what}, {step}: {status:?}"
            );
        };

        // Created, dropped before its first poll.
        {
            let holder = $hold;
            let wait = $wait;
            drop(wait);
            drop(holder);
        }
        settled("dropped unpolled");
        assert!($free, "{what}: free after an unpolled wait");

        // Pending once, dropped while the holder still holds.
        {
            let holder = $hold;
            assert_eq!(detector.status().contexts_holding_locks, body + 1);
            let mut wait = Box::pin($wait);
            assert!(poll_once(wait.as_mut()).is_pending(), "{what}: must wait");
            assert_eq!(detector.status().contexts_waiting, 1, "{what}");
            drop(wait);
            assert_eq!(detector.status().contexts_waiting, 0, "{what}");
            drop(holder);
        }
        settled("pending once");
        assert!($free, "{what}: free after pending once");

        // Pending twice (a spurious wake-up), dropped.
        {
            let holder = $hold;
            let mut wait = Box::pin($wait);
            assert!(poll_once(wait.as_mut()).is_pending(), "{what}");
            assert!(poll_once(wait.as_mut()).is_pending(), "{what}");
            assert_eq!(detector.status().contexts_waiting, 1, "{what}");
            drop(wait);
            drop(holder);
        }
        settled("pending twice");
        assert!($free, "{what}: free after pending twice");

        // Pending; the holder releases, so tokio hands the lock to this
        // waiter; the waiter is dropped without being polled again.
        {
            let holder = $hold;
            let mut wait = Box::pin($wait);
            assert!(poll_once(wait.as_mut()).is_pending(), "{what}");
            drop(holder);
            drop(wait);
        }
        settled("handed over, then dropped");
        assert!($free, "{what}: the dropped waiter gave the lock back");

        // Pending; the holder releases; polled to completion; guard dropped.
        {
            let holder = $hold;
            let mut wait = Box::pin($wait);
            assert!(poll_once(wait.as_mut()).is_pending(), "{what}");
            drop(holder);
            match poll_once(wait.as_mut()) {
                Poll::Ready(acquired) => {
                    let status = detector.status();
                    assert_eq!(
                        (status.contexts_holding_locks, status.contexts_waiting),
                        (1, 0),
                        "{what}: acquired after the wait"
                    );
                    drop(acquired);
                }
                Poll::Pending => panic!("{what}: still pending after the holder released"),
            }
        }
        settled("acquired after waiting");
        assert!($free, "{what}: free after acquire and release");

        // Not contended: ready at the first poll.
        {
            let mut wait = Box::pin($wait);
            match poll_once(wait.as_mut()) {
                Poll::Ready(acquired) => drop(acquired),
                Poll::Pending => panic!("{what}: uncontended wait is pending"),
            }
        }
        settled("uncontended");
        assert!($free, "{what}: free at the end");
    }};
}

async fn cancel_every_primitive_at_every_await_point(detector: &Detector, body_holds: bool) {
    let outer = Mutex::with_class(unique("outer"), ());
    let _outer = if body_holds {
        Some(outer.lock().await)
    } else {
        None
    };

    let m = Arc::new(Mutex::with_class(unique("cancel-mutex"), 0u32));
    cancel_at_every_await_point!(detector, "Mutex::lock", body_holds: body_holds,
        holder: own_context(m.lock()).await,
        wait: m.lock(),
        free: m.try_lock().is_ok());
    cancel_at_every_await_point!(detector, "Mutex::lock_owned", body_holds: body_holds,
        holder: own_context(m.lock()).await,
        wait: m.clone().lock_owned(),
        free: m.try_lock().is_ok());
    cancel_at_every_await_point!(detector, "Mutex::lock_nested(1)", body_holds: body_holds,
        holder: own_context(m.lock()).await,
        wait: m.lock_nested(1),
        free: m.try_lock().is_ok());

    let rw = Arc::new(RwLock::with_class(unique("cancel-rwlock"), 0u32));
    cancel_at_every_await_point!(detector, "RwLock::read behind a writer", body_holds: body_holds,
        holder: own_context(rw.write()).await,
        wait: rw.read(),
        free: rw.try_write().is_ok());
    cancel_at_every_await_point!(detector, "RwLock::read_owned behind a writer",
        body_holds: body_holds,
        holder: own_context(rw.write()).await,
        wait: rw.clone().read_owned(),
        free: rw.try_write().is_ok());
    cancel_at_every_await_point!(detector, "RwLock::write behind a reader", body_holds: body_holds,
        holder: own_context(rw.read()).await,
        wait: rw.write(),
        free: rw.try_write().is_ok());
    cancel_at_every_await_point!(detector, "RwLock::write behind a writer", body_holds: body_holds,
        holder: own_context(rw.write()).await,
        wait: rw.write(),
        free: rw.try_write().is_ok());
    cancel_at_every_await_point!(detector, "RwLock::write_owned behind a reader",
        body_holds: body_holds,
        holder: own_context(rw.read()).await,
        wait: rw.clone().write_owned(),
        free: rw.try_write().is_ok());

    let sem = Arc::new(Semaphore::with_class(unique("cancel-semaphore"), 2));
    cancel_at_every_await_point!(detector, "Semaphore::acquire", body_holds: body_holds,
        holder: own_context(sem.acquire_many(2)).await.expect("open"),
        wait: sem.acquire(),
        free: sem.available_permits() == 2);
    cancel_at_every_await_point!(detector, "Semaphore::acquire_many", body_holds: body_holds,
        holder: own_context(sem.acquire()).await.expect("open"),
        wait: sem.acquire_many(2),
        free: sem.available_permits() == 2);
    cancel_at_every_await_point!(detector, "Semaphore::acquire_owned", body_holds: body_holds,
        holder: own_context(sem.acquire_many(2)).await.expect("open"),
        wait: sem.clone().acquire_owned(),
        free: sem.available_permits() == 2);
}

#[test]
fn lock_futures_dropped_at_every_await_point_leave_nothing_held_or_waiting() {
    if common::own_process() {
        return;
    }
    run_current("cancel at every await point", |detector| async move {
        cancel_every_primitive_at_every_await_point(&detector, false).await;
        assert_idle(&detector, "cancellations");
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        assert_eq!(
            detector.status().dependencies,
            0,
            "nothing was held while waiting"
        );

        cancel_every_primitive_at_every_await_point(&detector, true).await;
        assert_idle(&detector, "cancellations while holding a lock");
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        // outer -> mutex, outer -> rwlock, outer -> semaphore; outer ->
        // the mutex's nesting level 1 is a class of its own.
        assert_eq!(detector.status().dependencies, 4);

        fresh_abba_reports_exactly_once(&detector).await;
        assert_idle(&detector, "the fresh ABBA");
    });
}

#[test]
fn lock_futures_dropped_at_every_await_point_inside_a_task_on_worker_threads() {
    if common::own_process() {
        return;
    }
    run_multi("cancel inside a task", |detector| async move {
        let d = detector.clone();
        // With the detector as the task's default, so the locks it creates on
        // the worker threads report to it.
        let task = async move { cancel_every_primitive_at_every_await_point(&d, true).await };
        within(
            "task",
            tokio::spawn(task.with_subscriber(detector.dispatch())),
        )
        .await
        .expect("no panic");
        assert_idle(&detector, "cancellations in a task");
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        fresh_abba_reports_exactly_once(&detector).await;
        assert_idle(&detector, "the fresh ABBA");
    });
}

// ---------------------------------------------------------------------------
// Aborted tasks, runtime shut down
// ---------------------------------------------------------------------------

/// Locks of every kind, shared by tasks.
#[derive(Clone)]
struct Locks {
    a: Arc<Mutex<u32>>,
    b: Arc<Mutex<u32>>,
    owned: Arc<Mutex<u32>>,
    rw: Arc<RwLock<u32>>,
    sem: Arc<Semaphore>,
}

impl Locks {
    fn new(prefix: &str) -> Locks {
        Locks {
            a: Arc::new(Mutex::with_class(unique(&format!("{prefix}-a")), 0)),
            b: Arc::new(Mutex::with_class(unique(&format!("{prefix}-b")), 0)),
            owned: Arc::new(Mutex::with_class(unique(&format!("{prefix}-owned")), 0)),
            rw: Arc::new(RwLock::with_class(unique(&format!("{prefix}-rw")), 0)),
            sem: Arc::new(Semaphore::with_class(unique(&format!("{prefix}-sem")), 1)),
        }
    }

    #[track_caller]
    fn assert_all_free(&self) {
        assert!(self.a.try_lock().is_ok(), "a still locked");
        assert!(self.b.try_lock().is_ok(), "b still locked");
        assert!(self.owned.try_lock().is_ok(), "owned still locked");
        assert!(self.rw.try_write().is_ok(), "rw still locked");
        assert_eq!(self.sem.available_permits(), 1, "permit not returned");
    }
}

/// Spawns, on the current runtime: one task holding `a`, a read of `rw`
/// and the permit, one holding `b` while waiting for `a`, one waiting to
/// write `rw`, one waiting for a permit, and one holding an owned guard of
/// `owned` locked by yet another (finished) task. Returns (holders, waiters)
/// once all of them hold or wait.
async fn hold_and_wait(
    locks: &Locks,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (held_tx, held_rx) = oneshot::channel();
    let l = locks.clone();
    let holder = tokio::spawn(async move {
        let _a = l.a.lock().await;
        let _r = l.rw.read().await;
        let _p = l.sem.acquire().await.expect("open");
        held_tx.send(()).expect("test alive");
        std::future::pending::<()>().await;
    });
    within("holder locks", held_rx).await.expect("holder alive");

    let guard = within("owned guard", locks.owned.clone().lock_owned()).await;
    let owner = tokio::spawn(async move {
        let _guard = guard; // moved here from the test body
        std::future::pending::<()>().await;
    });

    let l = locks.clone();
    let holds_b_waits_a = tokio::spawn(async move {
        let _b = l.b.lock().await;
        let _a = l.a.lock().await;
        std::future::pending::<()>().await;
    });
    let l = locks.clone();
    let waits_write = tokio::spawn(async move {
        let _w = l.rw.write().await;
        std::future::pending::<()>().await;
    });
    let l = locks.clone();
    let waits_permit = tokio::spawn(async move {
        let _p = l.sem.acquire().await;
        std::future::pending::<()>().await;
    });
    (
        vec![holder, owner],
        vec![holds_b_waits_a, waits_write, waits_permit],
    )
}

#[test]
fn tasks_aborted_while_holding_and_while_waiting_leave_nothing_behind() {
    if common::own_process() {
        return;
    }
    run_multi("aborted tasks", |detector| async move {
        let locks = Locks::new("abort");
        let (holders, waiters) = hold_and_wait(&locks).await;
        // Holding: the holder, the body (owned guard, locked here), the task
        // holding b. Waiting: three.
        status_becomes(&detector, "all hold or wait", |s| {
            s.contexts_holding_locks == 3 && s.contexts_waiting == 3
        })
        .await;

        for waiter in &waiters {
            waiter.abort();
        }
        for waiter in waiters {
            let err = within("aborted waiter", waiter).await.unwrap_err();
            assert!(err.is_cancelled(), "{err}");
        }
        let status = detector.status();
        assert_eq!(
            (status.contexts_holding_locks, status.contexts_waiting),
            (2, 0),
            "only the holder and the owned guard's locker: {status:?}"
        );
        assert!(locks.b.try_lock().is_ok(), "the aborted waiter's b");

        for holder in &holders {
            holder.abort();
        }
        for holder in holders {
            let err = within("aborted holder", holder).await.unwrap_err();
            assert!(err.is_cancelled(), "{err}");
        }
        assert_idle(&detector, "aborting every task");
        locks.assert_all_free();
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        fresh_abba_reports_exactly_once(&detector).await;
        assert_idle(&detector, "the fresh ABBA");
    });
}

#[test]
fn holders_aborted_first_let_waiters_through_then_those_are_aborted_too() {
    if common::own_process() {
        return;
    }
    run_multi("aborted holders first", |detector| async move {
        let locks = Locks::new("abort-holders-first");
        let (holders, waiters) = hold_and_wait(&locks).await;
        status_becomes(&detector, "all hold or wait", |s| {
            s.contexts_holding_locks == 3 && s.contexts_waiting == 3
        })
        .await;
        for holder in holders {
            holder.abort();
            assert!(within("holder", holder).await.unwrap_err().is_cancelled());
        }
        // The waiters get their locks (they pend forever after).
        status_becomes(&detector, "waiters acquire", |s| {
            s.contexts_holding_locks == 3 && s.contexts_waiting == 0
        })
        .await;
        for waiter in waiters {
            waiter.abort();
            assert!(within("waiter", waiter).await.unwrap_err().is_cancelled());
        }
        assert_idle(&detector, "aborting every task");
        locks.assert_all_free();
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        fresh_abba_reports_exactly_once(&detector).await;
    });
}

#[test]
fn multi_thread_runtime_shut_down_while_tasks_hold_and_wait_leaves_nothing_behind() {
    if common::own_process() {
        return;
    }
    with_deadline("runtime shutdown", || {
        let detector = Detector::new();
        let _default = detector.set_default();
        let locks = Locks::new("shutdown");
        let runtime = multi_thread_runtime();
        let tasks = runtime.block_on(async {
            let tasks = hold_and_wait(&locks).await;
            status_becomes(&detector, "all hold or wait", |s| {
                s.contexts_holding_locks == 3 && s.contexts_waiting == 3
            })
            .await;
            tasks
        });
        let started = Instant::now();
        runtime.shutdown_timeout(Duration::from_secs(5));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "shutdown had to time out: a task did not stop"
        );
        status_becomes_blocking(&detector, "after shutdown", |s| {
            s.contexts_holding_locks == 0 && s.contexts_waiting == 0
        });
        locks.assert_all_free();
        drop(tasks); // join handles of a runtime that is gone
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());

        current_thread_runtime().block_on(fresh_abba_reports_exactly_once(&detector));
        assert_idle(&detector, "the fresh ABBA");
    });
}

// ---------------------------------------------------------------------------
// mem::forget
// ---------------------------------------------------------------------------

#[test]
fn forgotten_guards_stay_held_forever_and_other_locks_still_report_exactly() {
    if common::own_process() {
        return;
    }
    run_current("forgotten guards", |detector| async move {
        let m = Arc::new(Mutex::with_class(unique("forget-mutex"), 0u32));
        let r = Arc::new(RwLock::with_class(unique("forget-read"), 0u32));
        let w = Arc::new(RwLock::with_class(unique("forget-write"), 0u32));
        let s = Arc::new(Semaphore::with_class(unique("forget-permit"), 2));
        // The mutex last, so that waiting for it again below is a plain
        // self-deadlock and not also an inversion with the locks above it.
        std::mem::forget(r.read().await);
        std::mem::forget(w.write().await);
        std::mem::forget(s.acquire().await.expect("open"));
        std::mem::forget(m.lock().await);

        // Held forever, by this context, as tokio keeps them taken forever.
        let status = detector.status();
        assert_eq!(
            (status.contexts_holding_locks, status.contexts_waiting),
            (1, 0)
        );
        let held: Vec<String> = detector.held_locks().into_iter().map(|h| h.0).collect();
        assert_eq!(held.len(), 4, "{held:?}");
        assert!(held[0].starts_with("forget-read"), "{held:?}");
        assert!(held[2].starts_with("forget-permit"), "{held:?}");
        assert!(held[3].starts_with("forget-mutex"), "{held:?}");
        assert!(m.try_lock().is_err());
        assert!(r.try_read().is_ok() && r.try_write().is_err());
        assert!(w.try_read().is_err());
        assert_eq!(s.available_permits(), 1);
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());

        // Another task waiting for a forgotten lock just waits; cancelled by a
        // timeout, it leaves nothing behind and reports nothing.
        let m2 = m.clone();
        let timed_out = within(
            "waiter on a forgotten lock",
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(20), m2.lock())
                    .await
                    .is_err()
            }),
        )
        .await
        .expect("no panic");
        assert!(timed_out);
        let status = detector.status();
        assert_eq!(
            (status.contexts_holding_locks, status.contexts_waiting),
            (1, 0)
        );
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());

        // This context waiting for the mutex it forgot is reported as a
        // possible self-deadlock (once), when its wait is given up after
        // 50 ms or more (sooner, it could be a `select!` branch that lost).
        for _ in 0..2 {
            assert!(tokio::time::timeout(Duration::from_millis(60), m.lock())
                .await
                .is_err());
        }
        let reports = detector.take_reports();
        assert_eq!(reports.len(), 1, "{reports:#?}");
        assert_eq!(reports[0].kind, ReportKind::PossibleSelfDeadlock);
        assert!(reports[0].class_names()[0].starts_with("forget-mutex"));

        // Other locks report exactly, in another task and in this context
        // (whose forgotten locks now order everything it takes: no cycle).
        let d = detector.clone();
        within(
            "ABBA in a task",
            tokio::spawn(async move { fresh_abba_reports_exactly_once(&d).await }),
        )
        .await
        .expect("no panic");
        fresh_abba_reports_exactly_once(&detector).await;
        assert_eq!(detector.reports().len(), 2);
        let status = detector.status();
        assert_eq!(
            (status.contexts_holding_locks, status.contexts_waiting),
            (1, 0),
            "still only the forgotten guards"
        );
    });
}

// ---------------------------------------------------------------------------
// Work queues
// ---------------------------------------------------------------------------

#[test]
fn work_queue_dropped_with_items_pending_still_runs_them() {
    if common::own_process() {
        return;
    }
    run_multi("dropped queue", |detector| async move {
        const ITEMS: usize = 20;
        let gate = Arc::new(Mutex::with_class(unique("gate"), ()));
        let ran = Arc::new(AtomicUsize::new(0));
        let closed = gate.lock().await;
        let queue = WorkQueue::new("q");
        let handles: Vec<_> = (0..ITEMS)
            .map(|i| {
                let (gate, ran) = (gate.clone(), ran.clone());
                queue.queue(async move {
                    let _open = gate.lock().await;
                    ran.fetch_add(1, Ordering::SeqCst);
                    i
                })
            })
            .collect();
        drop(queue);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 0, "the gate is closed");
        drop(closed);
        let deadline = Instant::now() + LIMIT / 2;
        while ran.load(Ordering::SeqCst) < ITEMS {
            assert!(Instant::now() < deadline, "items lost with the queue");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(within("item output", handle).await.expect("ran"), i);
        }
        assert_eq!(ran.load(Ordering::SeqCst), ITEMS);
        status_becomes(&detector, "items done", |s| {
            s.contexts_holding_locks == 0 && s.contexts_waiting == 0
        })
        .await;
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        fresh_abba_reports_exactly_once(&detector).await;
    });
}

#[test]
fn work_item_panicking_while_holding_a_lock_releases_it_and_the_queue_goes_on() {
    if common::own_process() {
        return;
    }
    run_multi("panicking item", |detector| async move {
        let m = Arc::new(Mutex::with_class(unique("panic-held"), 0u32));
        let queue = WorkQueue::new("q");
        let m2 = m.clone();
        let failed = queue.queue(async move {
            let mut g = m2.lock().await;
            *g += 1;
            panic!("boom while holding");
        });
        match within("panicking item", failed).await {
            Err(WorkError::Panicked(message)) => assert_eq!(message, "boom while holding"),
            other => panic!("expected Panicked, got {other:?}"),
        }
        status_becomes(&detector, "after the panic", |s| {
            s.contexts_holding_locks == 0 && s.contexts_waiting == 0
        })
        .await;
        assert_eq!(*m.try_lock().expect("released by the unwind"), 1);

        // The queue keeps working, and the lock with it.
        let m2 = m.clone();
        let next = queue.queue(async move {
            let mut g = m2.lock().await;
            *g += 1;
            *g
        });
        assert_eq!(within("next item", next).await.expect("ran"), 2);
        within("flush", queue.flush()).await.expect("flushed");
        assert_eq!(within("item", queue.queue(async { 42 })).await.unwrap(), 42);
        within("destroy", queue.destroy()).await.expect("destroyed");

        // Same for a task started with `spawn`.
        let m2 = m.clone();
        let task = async_lockdep::spawn(async move {
            let _g = m2.lock().await;
            panic!("task boom while holding");
        });
        let err = within("panicking task", task).await.unwrap_err();
        assert!(err.is_panic());
        status_becomes(&detector, "after the task panic", |s| {
            s.contexts_holding_locks == 0 && s.contexts_waiting == 0
        })
        .await;
        assert!(m.try_lock().is_ok());
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        fresh_abba_reports_exactly_once(&detector).await;
    });
}

#[test]
fn flush_on_a_queue_whose_runtime_is_gone_returns_stopped() {
    if common::own_process() {
        return;
    }
    with_deadline("orphaned queue", || {
        let detector = Detector::new();
        let _default = detector.set_default();
        let first = current_thread_runtime();
        let (used, unused) = first.block_on(async {
            let used = WorkQueue::new("q");
            assert_eq!(within("item", used.queue(async { 1 })).await.unwrap(), 1);
            within("flush", used.flush()).await.expect("flushed");
            (used, WorkQueue::new("never-used"))
        });
        drop(first); // the workers go with their runtime

        current_thread_runtime().block_on(async {
            let lock = Mutex::with_class(unique("held-while-flushing"), ());
            let held = lock.lock().await;
            assert_eq!(
                within("flush of an orphaned queue", used.flush()).await,
                Err(FlushError::Stopped)
            );
            // Never used: nothing to wait for, nothing recorded.
            assert_eq!(within("flush unused", unused.flush()).await, Ok(()));
            match within("queue on an orphaned queue", used.queue(async { 2 })).await {
                Err(WorkError::Cancelled) => {}
                other => panic!("expected Cancelled, got {other:?}"),
            }
            drop(held);
            assert_eq!(
                within("destroy", used.destroy()).await,
                Err(FlushError::Stopped)
            );
            assert_eq!(within("destroy unused", unused.destroy()).await, Ok(()));
            assert_idle(&detector, "orphaned queues");
            assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
            fresh_abba_reports_exactly_once(&detector).await;
        });
    });
}

// ---------------------------------------------------------------------------
// Overflow
// ---------------------------------------------------------------------------

/// Installs `detector` with an event counter as the thread's default.
fn install_with_events(detector: &Detector) -> (tracing::subscriber::DefaultGuard, Events) {
    let events = Events::default();
    let subscriber = tracing_subscriber::registry()
        .with(detector.layer())
        .with(events.clone());
    (tracing::subscriber::set_default(subscriber), events)
}

#[test]
fn max_edges_overflow_logs_once_keeps_locks_working_and_keeps_earlier_cycles() {
    if common::own_process() {
        return;
    }
    with_deadline("max_edges overflow", || {
        let detector = Detector::builder().max_dependencies(2).build();
        let (_default, events) = install_with_events(&detector);
        current_thread_runtime().block_on(async {
            let (a_name, b_name) = (unique("ovf-a"), unique("ovf-b"));
            let a = Mutex::with_class(a_name.clone(), 0u32);
            let b = Mutex::with_class(b_name.clone(), 0u32);
            let c = Mutex::with_class(unique("ovf-c"), 0u32);
            let d = Mutex::with_class(unique("ovf-d"), 0u32);
            {
                let _a = a.lock().await;
                let _b = b.lock().await; // edge 1
            }
            {
                let _b = b.lock().await;
                let _a = a.lock().await; // edge 2: the cycle, before the limit
            }
            assert_eq!(detector.reports().len(), 1);
            assert!(!detector.status().overflowed);
            assert_eq!(events.errors().len(), 1, "the report");

            for round in 0..3u32 {
                let mut c = c.lock().await;
                let mut d = d.lock().await; // over the limit
                *c += 1;
                *d += round;
            }
            for _ in 0..3 {
                let _d = d.lock().await;
                let _c = c.lock().await; // would close a cycle: not recorded
                let _a = a.lock().await;
            }
            {
                let _a = a.lock().await;
                let _b = b.lock().await; // known: still fine
            }
            let status = detector.status();
            assert!(status.overflowed, "{status:?}");
            assert_eq!(status.dependencies, 2, "no new edges after the limit");
            assert_eq!((*c.lock().await, *d.lock().await), (3, 3));

            let errors = events.errors();
            assert_eq!(errors.len(), 2, "the report and one overflow: {errors:#?}");
            assert_eq!(events.errors_mentioning("limit"), 1, "{errors:#?}");
            let reports = detector.reports();
            assert_eq!(reports.len(), 1, "{reports:#?}");
            assert_eq!(reports[0].kind, ReportKind::CircularDependency);
            assert_eq!(reports[0].class_names(), [b_name.as_str(), a_name.as_str()]);

            // Documented: after the limit, new cycles are not found.
            let (x, y) = (
                Mutex::with_class(unique("ovf-x"), ()),
                Mutex::with_class(unique("ovf-y"), ()),
            );
            {
                let _x = x.lock().await;
                let _y = y.lock().await;
            }
            {
                let _y = y.lock().await;
                let _x = x.lock().await;
            }
            assert_eq!(detector.reports().len(), 1);
            assert_eq!(detector.status().dependencies, 2);
            assert_eq!(events.errors().len(), 2, "still one overflow event");
            assert_idle(&detector, "overflow");
        });
    });
}

#[test]
fn max_classes_overflow_logs_once_keeps_locks_working_and_keeps_earlier_cycles() {
    if common::own_process() {
        return;
    }
    with_deadline("max_classes overflow", || {
        let detector = Detector::builder().max_classes(3).build();
        let (_default, events) = install_with_events(&detector);
        current_thread_runtime().block_on(async {
            let (a_name, b_name) = (unique("cls-a"), unique("cls-b"));
            let a = Mutex::with_class(a_name.clone(), ());
            let b = Mutex::with_class(b_name.clone(), ());
            let c = Mutex::with_class(unique("cls-c"), ());
            let d = Mutex::with_class(unique("cls-d"), ());
            {
                let _a = a.lock().await;
                let _b = b.lock().await; // 2 classes
            }
            {
                let _b = b.lock().await;
                let _a = a.lock().await; // the cycle, still 2 classes
            }
            {
                let _a = a.lock().await;
                let _c = c.lock().await; // 3 classes: at the limit, recorded
            }
            let status = detector.status();
            assert!(!status.overflowed, "{status:?}");
            assert_eq!(status.dependencies, 3);
            for _ in 0..3 {
                let _c = c.lock().await;
                let _d = d.lock().await; // a 4th class: over the limit
            }
            {
                let _d = d.lock().await;
                let _a = a.lock().await; // another new class pair, dropped
            }
            let status = detector.status();
            assert!(status.overflowed, "{status:?}");
            assert_eq!(status.dependencies, 3, "no new edges after the limit");
            assert_eq!(events.errors_mentioning("limit"), 1, "{:#?}", events.all());
            assert_eq!(events.errors().len(), 2, "{:#?}", events.all());
            let reports = detector.reports();
            assert_eq!(reports.len(), 1, "{reports:#?}");
            assert_eq!(reports[0].class_names(), [b_name.as_str(), a_name.as_str()]);
            assert!(c.try_lock().is_ok() && d.try_lock().is_ok());
            assert_idle(&detector, "overflow");
        });
    });
}

#[test]
fn overflow_hit_by_tasks_on_worker_threads_is_logged_once_to_the_detectors_subscriber() {
    if common::own_process() {
        return;
    }
    with_deadline("overflow on workers", || {
        let detector = Detector::builder().max_dependencies(2).build();
        let (_default, events) = install_with_events(&detector);
        multi_thread_runtime().block_on(async {
            let (a_name, b_name) = (unique("wovf-a"), unique("wovf-b"));
            let a = Arc::new(Mutex::with_class(a_name.clone(), ()));
            let b = Arc::new(Mutex::with_class(b_name.clone(), ()));
            let (a2, b2) = (a.clone(), b.clone());
            within(
                "a then b, b then a on a worker",
                tokio::spawn(async move {
                    {
                        let _a = a2.lock().await;
                        let _b = b2.lock().await;
                    }
                    let _b = b2.lock().await;
                    let _a = a2.lock().await;
                }),
            )
            .await
            .expect("no panic");
            assert_eq!(detector.reports().len(), 1);
            assert_eq!(events.errors().len(), 1, "the report reaches our stack");

            // Eight tasks race past the limit at once, on the workers.
            let pairs: Vec<_> = (0..8)
                .map(|i| {
                    (
                        Arc::new(Mutex::with_class(unique(&format!("wovf-{i}-x")), ())),
                        Arc::new(Mutex::with_class(unique(&format!("wovf-{i}-y")), ())),
                    )
                })
                .collect();
            let tasks: Vec<_> = pairs
                .into_iter()
                .map(|(x, y)| {
                    tokio::spawn(async move {
                        let _x = x.lock().await;
                        let _y = y.lock().await;
                    })
                })
                .collect();
            for task in tasks {
                within("task", task).await.expect("no panic");
            }
            let status = detector.status();
            assert!(status.overflowed, "{status:?}");
            assert_eq!(status.dependencies, 2);
            assert_eq!(
                events.errors_mentioning("limit"),
                1,
                "exactly one overflow ERROR event, in the detector's subscriber: {:#?}",
                events.all()
            );
            assert_eq!(events.errors().len(), 2, "{:#?}", events.all());
            assert_idle(&detector, "overflow on workers");
        });
    });
}

// ---------------------------------------------------------------------------
// Never deadlock itself
// ---------------------------------------------------------------------------

/// A layer that takes an `async_lockdep::Mutex` with `try_lock` on every event.
struct TryLocking {
    lock: Arc<Mutex<Vec<String>>>,
    calls: Arc<AtomicUsize>,
}

impl<S: Subscriber> Layer<S> for TryLocking {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut log) = self.lock.try_lock() {
            let mut message = String::new();
            event.record(&mut Message(&mut message));
            log.push(message);
        }
    }
}

/// A lock made while `detector` is the default, so it reports to it from
/// anywhere, even from inside another layer's callback (where tracing gives
/// nested look-ups no dispatcher at all).
fn bound_to<T>(detector: &Detector, make: impl FnOnce() -> Mutex<T>) -> Arc<Mutex<T>> {
    let _default = detector.set_default();
    Arc::new(make())
}

thread_local! {
    static IN_LOGGER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A layer that logs every event under an `async_lockdep::Mutex` taken with
/// `blocking_lock` (so it records dependencies), guarded against re-entry on
/// its own thread. For tests that emit events outside any runtime.
struct BlockingLogger {
    log: Arc<Mutex<Vec<String>>>,
}

impl<S: Subscriber> Layer<S> for BlockingLogger {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        if IN_LOGGER.with(|flag| flag.replace(true)) {
            return;
        }
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        self.log.blocking_lock().push(message);
        IN_LOGGER.with(|flag| flag.set(false));
    }
}

#[test]
fn a_layer_that_try_locks_on_every_event_does_not_deadlock_the_report() {
    if common::own_process() {
        return;
    }
    with_deadline("try_lock in on_event", || {
        let detector = Detector::new();
        let events = Events::default();
        let lock = bound_to(&detector, || {
            Mutex::with_class(unique("layer-log"), Vec::new())
        });
        let calls = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(detector.layer())
            .with(events.clone())
            .with(TryLocking {
                lock: lock.clone(),
                calls: calls.clone(),
            });
        let _default = tracing::subscriber::set_default(subscriber);
        current_thread_runtime().block_on(async {
            fresh_abba_reports_exactly_once(&detector).await;
            assert_eq!(events.errors().len(), 1);
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            let log = lock.try_lock().expect("released after the event");
            assert_eq!(log.len(), 1);
            assert!(
                log[0].contains("possible circular locking dependency"),
                "{log:?}"
            );
            drop(log);
            assert_idle(&detector, "the report");
            // A second cycle, the same way.
            fresh_abba_reports_exactly_once(&detector).await;
            assert_eq!(events.errors().len(), 2);
            assert_eq!(lock.try_lock().expect("free").len(), 2);
            assert_idle(&detector, "two reports");
        });
    });
}

#[test]
fn a_layer_that_try_locks_on_every_event_does_not_deadlock_the_overflow_event() {
    if common::own_process() {
        return;
    }
    with_deadline("try_lock in on_event, overflow", || {
        let detector = Detector::builder().max_dependencies(1).build();
        let events = Events::default();
        let lock = bound_to(&detector, || {
            Mutex::with_class(unique("layer-log"), Vec::new())
        });
        let calls = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(detector.layer())
            .with(events.clone())
            .with(TryLocking {
                lock: lock.clone(),
                calls: calls.clone(),
            });
        let _default = tracing::subscriber::set_default(subscriber);
        current_thread_runtime().block_on(async {
            let locks: Vec<_> = (0..4)
                .map(|i| Mutex::with_class(unique(&format!("layer-ovf-{i}")), ()))
                .collect();
            for pair in locks.windows(2) {
                let _x = pair[0].lock().await;
                let _y = pair[1].lock().await;
            }
            assert!(detector.status().overflowed);
            assert_eq!(detector.status().dependencies, 1);
            assert_eq!(events.errors_mentioning("limit"), 1, "{:#?}", events.all());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(lock.try_lock().expect("free").len(), 1);
            assert_idle(&detector, "overflow");
        });
    });
}

#[test]
fn a_layer_that_locks_on_every_event_records_dependencies_without_deadlock() {
    if common::own_process() {
        return;
    }
    with_deadline("blocking_lock in on_event", || {
        let detector = Detector::new();
        let events = Events::default();
        let log_name = unique("logger");
        let log = bound_to(&detector, || {
            Mutex::with_class(log_name.clone(), Vec::new())
        });
        let subscriber = tracing_subscriber::registry()
            .with(detector.layer())
            .with(events.clone())
            .with(BlockingLogger { log: log.clone() });
        let _default = tracing::subscriber::set_default(subscriber);

        // No runtime: the thread is the context, locks block it.
        fresh_abba_blocking(&detector);
        assert_eq!(log.blocking_lock().len(), 1);
        assert_eq!(events.errors().len(), 1);
        // a -> b, b -> a (rejected), and b -> logger: the logger locked while
        // the thread held b, from inside the report's event.
        assert_eq!(detector.status().dependencies, 3);
        assert_idle(&detector, "a report logged under a lock");

        // A second report, the same way.
        fresh_abba_blocking(&detector);
        assert_eq!(log.blocking_lock().len(), 2);
        assert_eq!(events.errors().len(), 2);
        assert_idle(&detector, "two reports logged under a lock");
    });
}

#[test]
fn a_cycle_closed_by_a_lock_taken_inside_another_layers_event_is_reported_without_panic() {
    if common::own_process() {
        return;
    }
    with_deadline("cycle closed inside on_event", || {
        let detector = Detector::new();
        let events = Events::default();
        let log_name = unique("logger");
        let log = bound_to(&detector, || {
            Mutex::with_class(log_name.clone(), Vec::new())
        });
        let subscriber = tracing_subscriber::registry()
            .with(detector.layer())
            .with(events.clone())
            .with(BlockingLogger { log: log.clone() });
        let _default = tracing::subscriber::set_default(subscriber);

        let x_name = unique("x");
        let x = Mutex::with_class(x_name.clone(), ());
        {
            let _log = log.blocking_lock();
            let _x = x.blocking_lock(); // logger -> x
        }
        // A report raised while x is held: its event makes the logger lock
        // under x, which closes x -> logger -> x from inside the event.
        // Both reports are kept; the nested one is not delivered (as tracing
        // drops nested events); nothing panics, hangs or recurses.
        let (a_name, b_name) = (unique("fresh-a"), unique("fresh-b"));
        let a = Mutex::with_class(a_name.clone(), ());
        let b = Mutex::with_class(b_name.clone(), ());
        {
            let _a = a.blocking_lock();
            let _b = b.blocking_lock();
        }
        {
            let _x = x.blocking_lock();
            let _b = b.blocking_lock();
            let _a = a.blocking_lock(); // b -> a: the first report
        }
        // The logger locks while x and b are held: x -> logger closes
        // x -> logger -> x, and b -> logger closes b -> logger -> x -> b.
        let reports = detector.reports();
        assert_eq!(reports.len(), 3, "{reports:#?}");
        assert_eq!(reports[0].class_names(), [b_name.as_str(), a_name.as_str()]);
        let cycle = &reports[1];
        assert_eq!(cycle.kind, ReportKind::CircularDependency);
        assert_eq!(cycle.class_names(), [x_name.as_str(), log_name.as_str()]);
        assert_eq!(
            reports[2].class_names(),
            [b_name.as_str(), log_name.as_str(), x_name.as_str()]
        );
        assert_eq!(log.blocking_lock().len(), 1, "the first report is logged");
        assert_idle(&detector, "a cycle through the logger");
    });
}

#[test]
fn a_layer_that_locks_on_every_event_does_not_deadlock_the_overflow_event() {
    if common::own_process() {
        return;
    }
    with_deadline("blocking_lock in on_event, overflow", || {
        let detector = Detector::builder().max_dependencies(1).build();
        let events = Events::default();
        let log = bound_to(&detector, || {
            Mutex::with_class(unique("logger"), Vec::new())
        });
        let subscriber = tracing_subscriber::registry()
            .with(detector.layer())
            .with(events.clone())
            .with(BlockingLogger { log: log.clone() });
        let _default = tracing::subscriber::set_default(subscriber);
        let locks: Vec<_> = (0..4)
            .map(|i| Mutex::with_class(unique(&format!("logger-ovf-{i}")), ()))
            .collect();
        // The second pair overflows; its event locks the logger while the
        // thread holds a lock: one more new dependency, inside the event.
        for pair in locks.windows(2) {
            let _x = pair[0].blocking_lock();
            let _y = pair[1].blocking_lock();
        }
        assert!(detector.status().overflowed);
        assert_eq!(detector.status().dependencies, 1);
        assert_eq!(events.errors_mentioning("limit"), 1, "{:#?}", events.all());
        let logged = log.blocking_lock().clone();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(logged[0].contains("limit"), "{logged:?}");
        assert_idle(&detector, "overflow logged under a lock");
    });
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn empty_and_huge_class_names_are_cleaned_and_reported() {
    if common::own_process() {
        return;
    }
    run_current("bad names", |detector| async move {
        let empty = Mutex::with_class("", ());
        let huge_name = "é".repeat(10_000);
        let huge = Mutex::with_class(huge_name.clone(), ());
        let ascii = RwLock::with_class("x".repeat(10_000), ());
        let names = {
            let _e = empty.lock().await;
            let _h = huge.lock().await;
            let _r = ascii.read().await;
            detector.held_locks()
        };
        assert_eq!(names[0].0, "<unnamed>");
        for (name, _) in &names[1..] {
            assert!(name.ends_with("..."), "{name}");
            assert!(name.len() < 1_000, "cut: {} bytes", name.len());
            assert!(name.len() > 3);
        }
        assert!(huge_name.starts_with(names[1].0.trim_end_matches("...")));
        assert!(names[2].0.trim_end_matches("...").chars().all(|c| c == 'x'));

        {
            let _h = huge.lock().await;
            let _e = empty.lock().await; // huge -> empty, after empty -> huge
        }
        let reports = detector.take_reports();
        assert_eq!(reports.len(), 1, "{reports:#?}");
        assert_eq!(reports[0].class_names()[1], "<unnamed>");
        assert_eq!(reports[0].class_names()[0], names[1].0);
        let text = reports[0].to_string();
        assert!(text.contains("`<unnamed>`"), "{text}");
        assert!(text.len() < 20_000, "the huge name is not repeated whole");
        assert_idle(&detector, "bad names");
        fresh_abba_reports_exactly_once(&detector).await;
    });
}

fn same_class() -> Mutex<u32> {
    Mutex::new(0) // one class for every mutex made here
}

#[test]
fn nesting_levels_out_of_range_count_as_the_highest() {
    if common::own_process() {
        return;
    }
    run_current("nesting 255", |detector| async move {
        let (m0, m1, m2) = (same_class(), same_class(), same_class());
        {
            let _level0 = m0.lock_nested(0).await;
            let _level7 = m1.lock_nested(255).await; // level 7: its own class
        }
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        {
            let _level7 = m1.lock_nested(255).await;
            let _also7 = m2.lock_nested(MAX_NESTING_LEVEL).await; // the same level
        }
        assert!(detector.reports().is_empty(), "one instance order is fine");
        {
            let _level7 = m2.lock_nested(MAX_NESTING_LEVEL).await;
            let _also7 = m1.lock_nested(255).await; // the other order: a cycle
        }
        let reports = detector.take_reports();
        assert_eq!(reports.len(), 1, "{reports:#?}");
        assert_eq!(reports[0].kind, ReportKind::RecursiveLocking);
        assert!(reports[0]
            .classes()
            .iter()
            .all(|c| c.subclass == MAX_NESTING_LEVEL));

        let rw = RwLock::with_class(unique("rw-nested"), ());
        {
            let _r = rw.read_nested(u8::MAX).await;
        }
        {
            let _w = rw.write_nested(200).await;
        }
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        assert_idle(&detector, "nesting out of range");
        fresh_abba_reports_exactly_once(&detector).await;
    });
}

#[test]
fn zero_permit_semaphore_acquires_can_be_cancelled() {
    if common::own_process() {
        return;
    }
    run_current("zero permits", |detector| async move {
        let outer = Mutex::with_class(unique("zero-outer"), ());
        let sem = Arc::new(Semaphore::with_class(unique("zero"), 0));
        {
            let _outer = outer.lock().await;
            let mut wait = Box::pin(sem.acquire());
            assert!(poll_once(wait.as_mut()).is_pending());
            assert_eq!(detector.status().contexts_waiting, 1);
            drop(wait);
            assert!(
                tokio::time::timeout(Duration::from_millis(5), sem.acquire_many(3))
                    .await
                    .is_err()
            );
            assert!(
                tokio::time::timeout(Duration::from_millis(5), sem.clone().acquire_owned())
                    .await
                    .is_err()
            );
            assert!(sem.try_acquire().is_err());
            assert_eq!(detector.status().contexts_waiting, 0);
        }
        assert_idle(&detector, "cancelled zero-permit acquires");
        assert_eq!(sem.available_permits(), 0);
        sem.add_permits(1);
        drop(within("one permit", sem.acquire()).await.expect("open"));
        sem.close();
        assert!(within("closed", sem.acquire()).await.is_err());
        assert_idle(&detector, "closed");
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        fresh_abba_reports_exactly_once(&detector).await;
    });
}

#[test]
fn work_queue_with_empty_names_and_zero_concurrency_works() {
    if common::own_process() {
        return;
    }
    run_current("bad queue input", |detector| async move {
        let queue = WorkQueue::builder("").class("").max_concurrency(0).build();
        assert_eq!(queue.name(), "");
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let order = order.clone();
                queue.queue(async move {
                    tokio::task::yield_now().await;
                    order.lock().expect("order").push(i);
                })
            })
            .collect();
        within("flush", queue.flush()).await.expect("flushed");
        for handle in handles {
            within("item", handle).await.expect("ran");
        }
        assert_eq!(
            *order.lock().expect("order"),
            [0, 1, 2, 3, 4],
            "0 counts as 1"
        );
        within("destroy", queue.destroy()).await.expect("destroyed");
        let task = async_lockdep::spawn_named("", async { 7 });
        assert_eq!(within("task", task).await.expect("ran"), 7);
        assert_idle(&detector, "bad queue input");
        assert!(detector.reports().is_empty(), "{:#?}", detector.reports());
        fresh_abba_reports_exactly_once(&detector).await;
    });
}
