//! Contexts: who holds locks. A context is the current tokio task, or the
//! thread when code runs outside any task (`block_on`, the body of
//! `#[tokio::test]`, plain threads), or a future given its own context with
//! [`own_context`]. The stack of `tracing` spans entered on each thread
//! (kept by the layer) lives here too: reports show it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project::pin_project;

use crate::vocab::ContextId;

/// Gives `future` a lock context of its own.
///
/// A context is a task by default, so futures joined inside one task share
/// one: a lock held by one of them orders the locks the others take, and one
/// waiting for a lock another holds looks like a self-deadlock. Wrap each
/// joined future that takes locks in `own_context` to make them separate
/// contexts, as if they were spawned. Locks held by the enclosing task are
/// not seen from inside (as for a spawned task).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let _lockdep = async_lockdep::test_guard();
/// use async_lockdep::{own_context, Mutex};
///
/// let cache = Mutex::new(0);
/// let (a, b) = tokio::join!(
///     own_context(async { *cache.lock().await += 1 }),
///     own_context(async { *cache.lock().await += 1 }),
/// );
/// # }
/// ```
pub fn own_context<F: Future>(future: F) -> OwnContext<F> {
    OwnContext {
        future,
        scope: new_scope(),
    }
}

/// The future returned by [`own_context`].
#[pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct OwnContext<F> {
    #[pin]
    future: F,
    scope: u64,
}

impl<F: Future> Future for OwnContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        in_scope(*this.scope, || this.future.poll(cx))
    }
}

impl ContextId {
    /// The context the caller runs in.
    #[inline]
    pub(crate) fn current() -> ContextId {
        let task = tokio::task::try_id();
        let (scope, scope_task) = SCOPE.try_with(Cell::get).unwrap_or(NO_SCOPE);
        // A scope applies only to the task that polls it, not to other tasks
        // an executor inside it polls (`LocalSet::run_until`).
        if scope != 0 && scope_task == task {
            return ContextId::Scope(scope);
        }
        match task {
            Some(id) => ContextId::Task(id),
            None => ContextId::Thread(thread_seq()),
        }
    }
}

thread_local! {
    /// The innermost [`crate::own_context`] being polled on this thread, or 0.
    static SCOPE: Cell<(u64, Option<tokio::task::Id>)> = const { Cell::new(NO_SCOPE) };
}

const NO_SCOPE: (u64, Option<tokio::task::Id>) = (0, None);

/// A fresh scope id (never 0).
pub(crate) fn new_scope() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` with `scope` as the current context of this thread.
#[inline]
pub(crate) fn in_scope<R>(scope: u64, f: impl FnOnce() -> R) -> R {
    struct Restore((u64, Option<tokio::task::Id>));
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = SCOPE.try_with(|s| s.set(self.0));
        }
    }
    let entered = (scope, tokio::task::try_id());
    let _restore = Restore(SCOPE.try_with(|s| s.replace(entered)).unwrap_or(NO_SCOPE));
    f()
}

/// This thread's sequence number (its context outside tasks); a named
/// thread's name is remembered for reports while it lives.
/// The context of the calling thread's own code, outside any task.
pub(crate) fn this_thread() -> ContextId {
    ContextId::Thread(thread_seq())
}

fn thread_seq() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    struct Seq(u64);
    impl Drop for Seq {
        fn drop(&mut self) {
            crate::vocab::forget_thread(self.0);
        }
    }
    thread_local! {
        static SEQ: Seq = {
            let seq = NEXT.fetch_add(1, Ordering::Relaxed);
            if let Some(name) = std::thread::current().name() {
                crate::vocab::name_thread(seq, name);
            }
            Seq(seq)
        };
    }
    SEQ.try_with(|s| s.0).unwrap_or(0)
}

/// Most spans shown per dependency in a report (innermost first).
const MAX_SPANS_SHOWN: usize = 8;

/// One entered span: its id, its serial (unique per span instance in the
/// process, unlike ids, which the registry reuses) and its label.
type Entered = (tracing_core::span::Id, u64, Arc<str>);

thread_local! {
    /// The spans entered on this thread and not exited yet, outermost first
    /// (kept by the layer).
    static ENTERED: RefCell<Vec<Entered>> = const { RefCell::new(Vec::new()) };
    /// The serial of the innermost of them, or 0: read on every acquisition.
    static INNERMOST: Cell<u64> = const { Cell::new(0) };
}

/// A fresh span serial (never 0: 0 means "no span").
pub(crate) fn new_span_serial() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The layer entered span `id` on this thread.
pub(crate) fn span_entered(id: &tracing_core::span::Id, serial: u64, label: Arc<str>) {
    let _ = ENTERED.try_with(|entered| {
        if let Ok(mut entered) = entered.try_borrow_mut() {
            entered.push((id.clone(), serial, label));
            let _ = INNERMOST.try_with(|i| i.set(serial));
        }
    });
}

/// The layer exited span `id` on this thread.
pub(crate) fn span_exited(id: &tracing_core::span::Id) {
    let _ = ENTERED.try_with(|entered| {
        if let Ok(mut entered) = entered.try_borrow_mut() {
            // Spans exit in order almost always; search from the top.
            if let Some(pos) = entered.iter().rposition(|(entered, ..)| entered == id) {
                entered.remove(pos);
                let innermost = entered.last().map_or(0, |(_, serial, _)| *serial);
                let _ = INNERMOST.try_with(|i| i.set(innermost));
            }
        }
    });
}

/// The serial of the innermost span entered on this thread, or 0.
#[inline]
pub(crate) fn current_span() -> u64 {
    INNERMOST.try_with(Cell::get).unwrap_or(0)
}

/// Whether the span `serial` is entered on this thread: code running now is
/// inside it (it, or a callee of it).
pub(crate) fn span_is_entered(serial: u64) -> bool {
    ENTERED
        .try_with(|entered| {
            entered
                .try_borrow()
                .is_ok_and(|e| e.iter().any(|(_, s, _)| *s == serial))
        })
        .unwrap_or(false)
}

/// The spans entered on the calling thread, innermost first, as
/// `name{fields}` (empty when no layer is installed).
pub(crate) fn entered_spans() -> Vec<String> {
    ENTERED
        .try_with(|entered| {
            entered.try_borrow().map_or_else(
                |_| Vec::new(),
                |entered| {
                    entered
                        .iter()
                        .rev()
                        .take(MAX_SPANS_SHOWN)
                        .map(|(.., label)| label.to_string())
                        .collect()
                },
            )
        })
        .unwrap_or_default()
}
