//! `WorkQueue`: a named worker that runs submitted work items, modelled as a
//! pseudo-lock the way the kernel models workqueues.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::instrument::WithSubscriber;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{Holding, LockMeta, Waiting};
use crate::vocab::Access;
use crate::vocab::ClassId;

type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

enum Message {
    Item(Job),
    Flush(oneshot::Sender<()>),
}

/// What the queue and its items share.
struct Shared {
    meta: LockMeta,
    /// Set by the first `queue()`: flushing a queue that never ran work
    /// cannot wait for anything, so it records no dependency (LKML's
    /// `__generic_file_fsync` false positive).
    used: AtomicBool,
    submitted: AtomicU64,
    /// 1 + the sequence number of the item that started last (0: none yet).
    /// With `max_concurrency` 1 items start in order, one at a time.
    started: AtomicU64,
    max_concurrency: usize,
}

/// Why a flush (or destroy) returned without waiting for the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushError {
    /// Called from a work item of this very queue: waiting would never end.
    /// The detector reported a self-deadlock.
    SelfFlush,
    /// The worker is gone (its runtime shut down).
    Stopped,
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushError::SelfFlush => {
                f.write_str("a work item flushed its own queue (self-deadlock)")
            }
            FlushError::Stopped => f.write_str("the work queue's worker has stopped"),
        }
    }
}

impl std::error::Error for FlushError {}

/// Why a work item produced no value.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkError {
    /// The item panicked; the payload's message if it was a string.
    Panicked(String),
    /// The item was dropped before finishing (runtime shut down).
    Cancelled,
    /// Awaited from an earlier item of the same ordered queue: it cannot
    /// start before the awaiting item finishes. Reported as a self-deadlock.
    SelfDeadlock,
}

impl fmt::Display for WorkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkError::Panicked(msg) => write!(f, "work item panicked: {msg}"),
            WorkError::Cancelled => f.write_str("work item was cancelled"),
            WorkError::SelfDeadlock => f.write_str(
                "work item awaited from an earlier item of its ordered queue (self-deadlock)",
            ),
        }
    }
}

impl std::error::Error for WorkError {}

/// An executor of work items: a worker task fed by a channel, with a lock
/// class like a lock's.
///
/// While a work item runs, its task holds the queue's pseudo-lock, so every
/// lock the item takes records "queue → lock". [`flush`](WorkQueue::flush)
/// and [`destroy`](WorkQueue::destroy) record "held lock → queue" for every
/// lock the caller holds — but only if this queue ever had an item submitted:
/// a queue that never ran work cannot be waited on.
///
/// Items run in their own tasks, at most `max_concurrency` at a time (1 by
/// default: in submission order, like an ordered workqueue). An item that
/// panics does not stop the queue.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let queue = async_lockdep::WorkQueue::new("writeback");
/// let done = queue.queue(async { 40 + 2 });
/// queue.flush().await.unwrap();
/// assert_eq!(done.await.unwrap(), 42);
/// queue.destroy().await.unwrap();
/// # }
/// ```
pub struct WorkQueue {
    shared: Arc<Shared>,
    name: Cow<'static, str>,
    sender: mpsc::UnboundedSender<Message>,
    worker: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkQueue")
            .field("name", &self.name)
            .field("used", &self.is_used())
            .field("max_concurrency", &self.shared.max_concurrency)
            .finish()
    }
}

impl WorkQueue {
    /// A queue named `name` (shown in reports) whose class is the caller's
    /// source location.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns its worker task), as `tokio::spawn`.
    #[track_caller]
    pub fn new(name: impl Into<Cow<'static, str>>) -> WorkQueue {
        WorkQueue::builder(name).build()
    }

    /// A builder for the class and the concurrency.
    #[track_caller]
    pub fn builder(name: impl Into<Cow<'static, str>>) -> WorkQueueBuilder {
        WorkQueueBuilder {
            name: name.into(),
            class: None,
            site: Location::caller(),
            max_concurrency: 1,
        }
    }

    #[track_caller]
    pub(crate) fn with_class_id(
        class: ClassId,
        name: Cow<'static, str>,
        max_concurrency: usize,
    ) -> WorkQueue {
        // The flush takes all slots at once, which tokio counts in `u32`.
        let max_concurrency =
            max_concurrency.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let shared = Arc::new(Shared {
            meta: LockMeta::new(class),
            used: AtomicBool::new(false),
            submitted: AtomicU64::new(0),
            started: AtomicU64::new(0),
            max_concurrency,
        });
        let (sender, receiver) = mpsc::unbounded_channel();
        let worker = tokio::spawn(run_worker(receiver, max_concurrency).with_current_subscriber());
        WorkQueue {
            shared,
            name,
            sender,
            worker,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether an item was ever submitted.
    pub fn is_used(&self) -> bool {
        self.shared.used.load(Ordering::Relaxed)
    }

    /// How many items were submitted.
    pub fn submitted(&self) -> u64 {
        self.shared.submitted.load(Ordering::Relaxed)
    }

    /// Submits a work item. The returned handle yields the item's output; it
    /// can be dropped if the output is not needed (the item still runs).
    #[track_caller]
    pub fn queue<F>(&self, work: F) -> WorkHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let site = Location::caller();
        self.shared.used.store(true, Ordering::Relaxed);
        let seq = self.shared.submitted.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let shared = Arc::clone(&self.shared);
        let job = async move {
            shared.started.store(seq + 1, Ordering::Release);
            let holding = shared
                .meta
                .engine()
                .map(|d| Holding::try_acquired(d, shared.meta.want(Access::RunWork, site)));
            let outcome = AssertUnwindSafe(work).catch_unwind().await;
            drop(holding);
            let _ =
                tx.send(outcome.map_err(|payload| WorkError::Panicked(panic_message(&*payload))));
        };
        let job: Job = Box::pin(job.with_current_subscriber());
        let handle = WorkHandle {
            receiver: rx,
            shared: Arc::clone(&self.shared),
            site,
            seq,
            recorded: false,
        };
        if let Err(mpsc::error::SendError(Message::Item(job))) =
            self.sender.send(Message::Item(job))
        {
            // The worker is gone (runtime shutting down): run nowhere; the
            // handle reports `Cancelled` when the job is dropped here.
            drop(job);
        }
        handle
    }

    /// Waits until every item submitted before this call has finished.
    ///
    /// Records "held lock → this queue" for every lock the calling task
    /// holds, if the queue was ever used. Called from a work item of this
    /// very queue it reports a self-deadlock and returns
    /// [`FlushError::SelfFlush`] instead of waiting forever.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future stops waiting; the items still run.
    #[track_caller]
    pub fn flush(&self) -> impl Future<Output = Result<(), FlushError>> + '_ {
        let site = Location::caller();
        async move { self.wait_idle(Access::Flush, site).await }
    }

    /// Flushes the queue, then stops its worker. Records dependencies as
    /// [`flush`](WorkQueue::flush) does (only if the queue was used).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops waiting; the worker then stops once the
    /// items already submitted have run, as on `Drop`.
    #[track_caller]
    pub fn destroy(self) -> impl Future<Output = Result<(), FlushError>> {
        self.destroy_at(Location::caller())
    }

    pub(crate) async fn destroy_at(
        self,
        site: &'static Location<'static>,
    ) -> Result<(), FlushError> {
        let flushed = self.wait_idle(Access::Destroy, site).await;
        let WorkQueue { sender, worker, .. } = self;
        drop(sender);
        if flushed.is_ok() {
            let _ = worker.await;
        }
        flushed
    }

    async fn wait_idle(
        &self,
        access: Access,
        site: &'static Location<'static>,
    ) -> Result<(), FlushError> {
        if !self.is_used() {
            // Nothing ever ran: nothing to wait for, no dependency.
            return Ok(());
        }
        let mut _waiting = None;
        if let Some(detector) = self.shared.meta.engine() {
            let own_item = detector.current_context_holds(self.shared.meta.lock_ref().instance);
            _waiting = Some(Waiting::start(
                detector,
                self.shared.meta.want(access, site),
            ));
            if own_item {
                return Err(FlushError::SelfFlush);
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.sender.send(Message::Flush(tx)).is_err() {
            return Err(FlushError::Stopped);
        }
        rx.await.map_err(|_| FlushError::Stopped)
    }
}

/// Configures a [`WorkQueue`].
#[derive(Debug)]
pub struct WorkQueueBuilder {
    name: Cow<'static, str>,
    class: Option<Cow<'static, str>>,
    site: &'static Location<'static>,
    max_concurrency: usize,
}

impl WorkQueueBuilder {
    /// Names the class explicitly (default: where the builder was made).
    pub fn class(mut self, class: impl Into<Cow<'static, str>>) -> Self {
        self.class = Some(class.into());
        self
    }

    /// How many items may run at once (default 1: in order). 0 counts as 1.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// The queue, with its worker spawned on the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn`.
    #[track_caller]
    pub fn build(self) -> WorkQueue {
        let class = match self.class {
            Some(name) => class::named(name, ClassKind::WorkQueue, self.site),
            None => class::for_site_labeled(self.site, ClassKind::WorkQueue, &self.name),
        };
        WorkQueue::with_class_id(class, self.name, self.max_concurrency)
    }
}

async fn run_worker(mut receiver: mpsc::UnboundedReceiver<Message>, max_concurrency: usize) {
    let slots = Arc::new(Semaphore::new(max_concurrency));
    while let Some(message) = receiver.recv().await {
        match message {
            Message::Item(job) => {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                tokio::spawn(async move {
                    job.await;
                    drop(slot);
                });
            }
            Message::Flush(done) => {
                // Items submitted earlier hold their slots until they finish.
                let all = slots.acquire_many(max_concurrency as u32).await;
                drop(all);
                let _ = done.send(());
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// The output of one work item, from [`WorkQueue::queue`].
///
/// Awaiting it is a wait for the queue: while holding locks it records
/// "held lock → queue", as a flush does.
#[must_use = "dropping the handle is fine, but then the item's output is lost"]
pub struct WorkHandle<T> {
    receiver: oneshot::Receiver<Result<T, WorkError>>,
    shared: Arc<Shared>,
    site: &'static Location<'static>,
    seq: u64,
    recorded: bool,
}

impl<T> fmt::Debug for WorkHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkHandle")
            .field("queued_at", &self.site)
            .finish_non_exhaustive()
    }
}

impl<T> WorkHandle<T> {
    /// Whether this is awaited from an item of the same ordered queue that
    /// started before this item: then this item can never start.
    fn waits_for_itself(&self, detector: &crate::lockdep::Engine) -> bool {
        let shared = &self.shared;
        shared.max_concurrency == 1
            && shared.started.load(Ordering::Acquire) <= self.seq
            && detector.current_context_holds(shared.meta.lock_ref().instance)
    }
}

impl<T> Future for WorkHandle<T> {
    type Output = Result<T, WorkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Records "held locks -> queue" once. No live wait is registered: the
        // item is one of possibly many running on the queue, and waiting for
        // the queue as a whole would blame the others.
        if !std::mem::replace(&mut self.recorded, true) {
            if let Some(detector) = self.shared.meta.engine() {
                let want = self.shared.meta.want(Access::Join, self.site);
                detector.record_wait_dependencies(want);
                if self.waits_for_itself(detector) {
                    detector.report_self_wait(want);
                    return Poll::Ready(Err(WorkError::SelfDeadlock));
                }
            }
        }
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(WorkError::Cancelled)))
    }
}
