//! The confirmation thread: checks due later (a deadlock now through a lock
//! handed to a future not polled yet, a busy process, a deferred possible
//! self-deadlock), waiters told to give up so that a deadlocked test ends,
//! and the last resort when they cannot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::Waker;

use rustc_hash::FxHashMap;

use super::waits::CONFIRM_THREAD;
use super::{lock_ignoring_poison, Panic, TestKey, ENGINE};
use crate::vocab::ContextId;

/// How long a "stuck now" cycle through a lock handed to a pending future
/// must last before it is reported.
pub(super) const CONFIRM_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// How long after a waiter was told to give up (or could not be) its wait
/// may still be pending before the process ends with the report (see
/// [`Confirm::StillStuck`]).
pub(super) const LAST_RESORT_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// How long after a report its test may still run before the report is
/// printed past the test's output capture, in case the test hangs.
pub(super) const PRINT_IF_RUNNING_AFTER: std::time::Duration = std::time::Duration::from_secs(20);

/// A check due later, on the confirmation thread.
#[derive(Clone, Debug)]
pub(super) enum Confirm {
    /// Is the wait `seq` of the context still stuck (a cycle through a lock
    /// handed to a pending future; lock instance for attribution)?
    DeadlockNow(ContextId, u64, u64),
    /// Does the deferred possible self-deadlock of the wait still stand?
    Deferred(ContextId, u64),
    /// The wait `seq` of the context was told to give up, or could not be (a
    /// thread blocked in `blocking_lock` or a std lock, a wait with no waker
    /// known): if it is still pending, nothing else will end its test, so
    /// the process ends with the report (the last resort).
    StillStuck(ContextId, u64, Arc<str>),
    /// Is the test still running with this report? Then print it past the
    /// test's output capture: it may hang, and its guard never show it.
    TestRunning(TestKey, Arc<str>),
}

/// Waits that may have to be told to give up, and those told to.
///
/// A "stuck now" report found on the confirmation thread cannot panic in
/// the waiter: the wait is marked doomed instead and its task woken, and the
/// lock future panics at its next poll (`Waiting::poll_doom`), which unwinds
/// the task's guards so the other tasks of the cycle go on.
#[derive(Default)]
struct Doom {
    /// The waker of each wait scheduled for confirmation (`None` until its
    /// future stores it).
    wakers: FxHashMap<(ContextId, u64), Option<Waker>>,
    /// The waits told to give up, with their panic message.
    doomed: FxHashMap<(ContextId, u64), String>,
}

static DOOM: LazyLock<Mutex<Doom>> = LazyLock::new(Mutex::default);

/// Entries in `DOOM`: one relaxed load keeps the lock future's poll cheap
/// when there are none.
static DOOM_ENTRIES: AtomicUsize = AtomicUsize::new(0);

fn doom_entries(doom: &Doom) {
    DOOM_ENTRIES.store(doom.wakers.len() + doom.doomed.len(), Ordering::Relaxed);
}

/// The wait `seq` of `context` is analysed later: keep its waker.
pub(super) fn expect_waker(context: ContextId, seq: u64) {
    let mut doom = lock_ignoring_poison(&DOOM);
    doom.wakers.insert((context, seq), None);
    doom_entries(&doom);
}

/// The future of the wait `seq` of `context` is pending with `waker`: the
/// panic message if it was told to give up; else remembers the waker if the
/// wait is analysed later.
pub(crate) fn poll_doom(context: ContextId, seq: u64, waker: &Waker) -> Option<String> {
    if DOOM_ENTRIES.load(Ordering::Relaxed) == 0 {
        return None;
    }
    // Wakers are cloned and dropped with no engine lock held: either may
    // run the executor's code.
    let fresh = waker.clone();
    let (message, replaced) = {
        let mut doom = lock_ignoring_poison(&DOOM);
        if let Some(message) = doom.doomed.remove(&(context, seq)) {
            let removed = doom.wakers.remove(&(context, seq));
            doom_entries(&doom);
            (Some(message), removed.flatten())
        } else {
            let replaced = match doom.wakers.get_mut(&(context, seq)) {
                Some(slot) if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) => {
                    slot.replace(fresh)
                }
                _ => Some(fresh),
            };
            (None, replaced)
        }
    };
    drop(replaced);
    message
}

/// The wait `seq` of `context` ended: nothing to wake or doom any more.
pub(crate) fn forget_doom(context: ContextId, seq: u64) {
    if DOOM_ENTRIES.load(Ordering::Relaxed) == 0 {
        return;
    }
    let removed = {
        let mut doom = lock_ignoring_poison(&DOOM);
        let removed = doom.wakers.remove(&(context, seq));
        doom.doomed.remove(&(context, seq));
        doom_entries(&doom);
        removed
    };
    drop(removed); // a waker's drop may run the executor's code: unlocked
}

/// Tells the wait `seq` of `context` to give up with `message`, and wakes
/// its task. Returns whether a waker was known (else nothing can wake it:
/// the wait is blocking, or its future stores no waker).
fn doom(context: ContextId, seq: u64, message: String) -> bool {
    let waker = {
        let mut doom = lock_ignoring_poison(&DOOM);
        let waker = doom.wakers.get_mut(&(context, seq)).and_then(Option::take);
        if waker.is_some() {
            doom.doomed.insert((context, seq), message);
        }
        doom_entries(&doom);
        waker
    };
    waker.map(Waker::wake).is_some()
}

/// Schedules the printing of `text`, a report shown by the guard of test
/// `key`, past the capture if the test still runs a while from now.
pub(super) fn print_if_test_still_runs(key: TestKey, text: Arc<str>) {
    schedule(PRINT_IF_RUNNING_AFTER, Confirm::TestRunning(key, text));
}

/// Checks due, with their time; the thread runs while there are some.
pub(super) static CONFIRMATIONS: Mutex<Vec<(std::time::Instant, Confirm)>> = Mutex::new(Vec::new());

/// Whether the confirmation thread runs.
pub(super) static CONFIRMING: AtomicBool = AtomicBool::new(false);

/// Runs `check` after `delay`, on the confirmation thread (started when
/// needed, gone when nothing is due).
pub(super) fn schedule(delay: std::time::Duration, check: Confirm) {
    let due = std::time::Instant::now() + delay;
    lock_ignoring_poison(&CONFIRMATIONS).push((due, check));
    if CONFIRMING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name(CONFIRM_THREAD.into())
        .spawn(confirm_loop);
    if let Err(error) = spawned {
        CONFIRMING.store(false, Ordering::Release);
        let dropped = std::mem::take(&mut *lock_ignoring_poison(&CONFIRMATIONS));
        let state = &*ENGINE;
        state.log_error(&format!(
            "async-lockdep: could not start a thread to confirm reports: {error}"
        ));
        // Decide now what could not wait.
        for (_, check) in dropped {
            if let Confirm::Deferred(context, seq) = check {
                state.confirm_deferred(context, seq, Panic::Never);
            }
        }
    }
}

/// A waiter told to give up (or that could not be told) still waits
/// [`LAST_RESORT_AFTER`] later: its test would hang forever. Prints the
/// report past the output capture and ends the process with a failure.
fn last_resort(text: &str) -> ! {
    use std::io::Write as _;
    let _ = write!(
        std::io::stderr(),
        "\n{text}async-lockdep: these tasks are still stuck {} s after the report (a thread \
         blocked in `blocking_lock` or a std lock cannot be made to give up): ending the \
         process so the run does not hang.\n",
        LAST_RESORT_AFTER.as_secs()
    );
    std::process::exit(101)
}

pub(super) fn confirm_loop() {
    let state = &*ENGINE;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = std::time::Instant::now();
        let due: Vec<Confirm> = {
            let mut queue = lock_ignoring_poison(&CONFIRMATIONS);
            let (due, later): (Vec<_>, Vec<_>) = queue.drain(..).partition(|(at, _)| *at <= now);
            *queue = later;
            due.into_iter().map(|(_, check)| check).collect()
        };
        // No engine lock is held while checking and reporting. A panic (in
        // a user's layer receiving the report) loses that check only.
        for check in due {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match check {
                Confirm::DeadlockNow(context, seq, instance) => {
                    if !state.waits().pending(context, seq) {
                        forget_doom(context, seq);
                        return; // it ended: nothing to confirm
                    }
                    let Some(report) = state.confirm_deadlock_now(context, seq) else {
                        forget_doom(context, seq);
                        return;
                    };
                    let cycle_line = report.cycle_line();
                    let text: Arc<str> = Arc::from(report.to_string().as_str());
                    // A panic asked for cannot happen on this thread: the
                    // waiter is told to give up at its next poll.
                    let give_up = state.publish_deadlock_now(
                        report,
                        Panic::OnDeadlock,
                        context,
                        seq,
                        instance,
                    );
                    if give_up {
                        let message = format!(
                            "async-lockdep found a deadlock (tasks stuck now): {cycle_line}; this \
                             waiter gives up so that the others can go on (the full report fails \
                             its test at its end)"
                        );
                        doom(context, seq, message);
                        schedule(LAST_RESORT_AFTER, Confirm::StillStuck(context, seq, text));
                    } else {
                        forget_doom(context, seq);
                    }
                }
                Confirm::Deferred(context, seq) => {
                    state.confirm_deferred(context, seq, Panic::Never)
                }
                Confirm::StillStuck(context, seq, text) => {
                    if state.waits().pending(context, seq) {
                        last_resort(&text);
                    }
                }
                Confirm::TestRunning(key, text) => {
                    if state.test_running(key) {
                        use std::io::Write as _;
                        let _ = write!(
                            std::io::stderr(),
                            "\n{text}(async-lockdep: printed {} s after it was found, as its test \
                             has not ended; it fails the test when the test ends)\n",
                            PRINT_IF_RUNNING_AFTER.as_secs()
                        );
                    }
                }
            }));
        }
        let mut queue = lock_ignoring_poison(&CONFIRMATIONS);
        if queue.is_empty() {
            CONFIRMING.store(false, Ordering::Release);
            drop(queue);
            // A check scheduled after the queue was seen empty but before the
            // flag fell started no thread: take it over.
            if lock_ignoring_poison(&CONFIRMATIONS).is_empty()
                || CONFIRMING.swap(true, Ordering::AcqRel)
            {
                return;
            }
        } else {
            queue.shrink_to_fit();
        }
    }
}
