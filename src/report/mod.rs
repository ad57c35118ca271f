//! Reports: structured values first, lockdep-style text second.

use std::fmt::{self, Write as _};

use crate::vocab::{Access, ClassKind, ContextId, LockClass, Site};

mod export;
mod text;

pub(crate) use export::{cycle_pairs, render_all, render_dot};
use export::{json_field, json_string};

/// One dependency: `waited` was waited for while `held` was held.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dependency {
    /// The class that was held.
    pub held: LockClass,
    /// How it was held.
    pub held_as: Access,
    /// Where it was taken.
    pub held_at: Site,
    /// The class that was waited for.
    pub waited: LockClass,
    /// How it was waited for.
    pub waited_as: Access,
    /// Where the wait started (the `lock()`, `flush()` or `.await` call).
    pub waited_at: Site,
    /// The task or thread that did it.
    pub context: ContextId,
    /// The `tracing` spans around the wait, innermost first, as `name{fields}`.
    pub spans: Vec<String>,
    /// The test it happened in (the name of the test's thread), when known:
    /// the two halves of a cycle may come from two tests.
    pub test: Option<String>,
}

/// What a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReportKind {
    /// Lock classes (and executors) were waited for in orders that form a
    /// cycle: some interleaving of the tasks involved deadlocks.
    CircularDependency,
    /// A context waits for a lock instance it already holds (or flushes the
    /// queue whose work item it is running): it can never proceed.
    SelfDeadlock,
    /// A task waits for a lock instance the same task holds, outside any
    /// span: a re-lock by the waiter itself (a self-deadlock), or a lock held
    /// by another future joined in the task (`join!`, `select!`,
    /// `join_all`), which is fine. The wait is reported only if it does not
    /// get the lock: given up after 50 ms or more, still waiting after
    /// 500 ms, or still waiting at the test's check (a re-lock that did not
    /// have to wait, such as a second read, is reported at once). Separate
    /// such futures with a span each or [`crate::own_context`] to tell.
    PossibleSelfDeadlock,
    /// A context holding a permit of a semaphore waits for another permit of
    /// the same semaphore (a second connection from the pool it has one of):
    /// it deadlocks when every permit is held by a task waiting for another.
    PoolExhaustion,
    /// Two instances of one lock class were nested without a declared
    /// nesting order.
    RecursiveLocking,
    /// Tasks are deadlocked right now: each waits for a lock (or executor)
    /// held by the next. Found from the live wait-for graph.
    DeadlockNow,
    /// A wait took longer than the watchdog's threshold (see
    /// [`crate::DetectorBuilder::watchdog`]).
    LongWait,
}

/// The wait a [`ReportKind::LongWait`] report is about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LongWait {
    /// The task (or thread) that waits.
    pub waiter: ContextId,
    /// What it waits for.
    pub lock: LockClass,
    /// How it waits.
    pub access: Access,
    /// Where the wait started.
    pub at: Site,
    /// How long it had waited when reported.
    pub elapsed: std::time::Duration,
}

/// A possible deadlock found by the detector.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// What kind of problem this is.
    pub kind: ReportKind,
    /// The dependencies involved. For a cycle, the first is the one that
    /// closed it (the wait happening when it was found) and the others follow
    /// the cycle from there: the class each one waits for is held by the next.
    pub dependencies: Vec<Dependency>,
    /// True when the cycle (or self-deadlock) needs a writer queued on an
    /// `RwLock` in between: a link of it is a read waiting on a read.
    pub needs_writer: bool,
    /// For [`ReportKind::LongWait`]: the wait. Its holders are in
    /// `dependencies` (each `context` holds `held`, taken at `held_at`).
    pub long_wait: Option<LongWait>,
    /// For a self-deadlock: the first acquisition is not held yet but a
    /// pending wait (a lock future polled once and kept aside, whose place
    /// in tokio's queue may be granted while the second wait lasts). For
    /// [`ReportKind::DeadlockNow`]: a link is a lock tokio handed to a
    /// pending future that its task does not poll (confirmed 100 ms later).
    pub pending_wait: bool,
    /// When a read of the cycle waits on reads of an `RwLock` made with
    /// `with_max_readers(n)`: that `n`. For [`ReportKind::DeadlockNow`] it is
    /// set only when the cap, not a queued writer, is what blocks the read;
    /// for a lock-order cycle, it is the smallest cap of the class.
    pub reader_cap: Option<u32>,
    /// For a cycle recorded in one task (or thread) outside any span: the
    /// task had futures waiting side by side (two waits pending at once, as
    /// futures joined with `join!` or `select!` do), so a lock held by one
    /// of them may look held by a sibling. The report then says so; sequential
    /// code gets no such note.
    pub concurrent_futures: bool,
    /// For a [`ReportKind::SelfDeadlock`] of a blocking wait: the lock is
    /// held by this other context, which runs on the waiter's own thread
    /// (a `block_on` body, a `#[tokio::test]` body) and is suspended in an
    /// `.await` while the waiter runs: it cannot release the lock before
    /// the thread is free again.
    pub suspended_holder: Option<ContextId>,
}

impl Report {
    /// One line: what kind of problem, and the classes of the cycle, as in
    /// ``possible circular locking dependency: `a` -> `b` -> `a` `` (the
    /// message of the report's `ERROR` event, and of a waiter's panic).
    pub fn headline(&self) -> String {
        let what = match self.kind {
            ReportKind::CircularDependency => "possible circular locking dependency",
            ReportKind::SelfDeadlock => "self-deadlock",
            ReportKind::PossibleSelfDeadlock => "possible self-deadlock",
            ReportKind::PoolExhaustion => "possible pool exhaustion",
            ReportKind::RecursiveLocking => "possible recursive locking",
            ReportKind::DeadlockNow => "deadlock: tasks stuck now",
            ReportKind::LongWait => "long wait",
        };
        format!("{what}: {}", self.cycle_line())
    }

    /// The classes of the report, as `` `a` -> `b` -> `a` `` for a cycle.
    pub(crate) fn cycle_line(&self) -> String {
        let mut classes: Vec<String> = self.classes().iter().map(|c| c.to_string()).collect();
        if let Some(wait) = &self.long_wait {
            classes = vec![wait.lock.to_string()];
        } else if self.dependencies.len() > 1 {
            if let Some(first) = classes.first().cloned() {
                classes.push(first);
            }
        }
        classes.join(" -> ")
    }

    /// The classes of the cycle, in order, starting with the class held by
    /// the closing dependency.
    pub fn classes(&self) -> Vec<&LockClass> {
        self.dependencies.iter().map(|d| &d.held).collect()
    }

    /// The class names of the cycle, in order (see [`Report::classes`]).
    pub fn class_names(&self) -> Vec<&str> {
        self.dependencies
            .iter()
            .map(|d| d.held.name.as_ref())
            .collect()
    }

    /// The report as one line of JSON: `kind`, `title`, `classes`,
    /// `needs_writer`, and `dependencies` (each with `held`, `held_as`,
    /// `held_at`, `waited`, `waited_as`, `waited_at`, `context`, `test`,
    /// `spans`), then `text`, the rendered report.
    ///
    /// Classes are written as their display names (`name` or `name/level`),
    /// sites as `file:line:column`, accesses in lower case (`lock`, `read`,
    /// `join`, ...), a missing test as `null`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        json_field(&mut out, "kind", &format!("{:?}", self.kind));
        out.push(',');
        json_field(&mut out, "title", self.title());
        out.push_str(",\"classes\":[");
        for (i, class) in self.classes().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(&mut out, &class.to_string().replace('`', ""));
        }
        let _ = write!(
            out,
            "],\"needs_writer\":{},\"dependencies\":[",
            self.needs_writer
        );
        for (i, d) in self.dependencies.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            json_field(&mut out, "held", &d.held.to_string().replace('`', ""));
            out.push(',');
            json_field(&mut out, "held_as", d.held_as.verb());
            out.push(',');
            json_field(&mut out, "held_at", &d.held_at.to_string());
            out.push(',');
            json_field(&mut out, "waited", &d.waited.to_string().replace('`', ""));
            out.push(',');
            json_field(&mut out, "waited_as", d.waited_as.verb());
            out.push(',');
            json_field(&mut out, "waited_at", &d.waited_at.to_string());
            out.push(',');
            json_field(&mut out, "context", &d.context.to_string());
            out.push_str(",\"test\":");
            match &d.test {
                Some(test) => json_string(&mut out, test),
                None => out.push_str("null"),
            }
            out.push_str(",\"spans\":[");
            for (j, span) in d.spans.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                json_string(&mut out, span);
            }
            out.push_str("]}");
        }
        out.push_str("],");
        json_field(&mut out, "text", &self.to_string());
        out.push('}');
        out
    }

    /// The title line, as in the kernel's lockdep.
    pub fn title(&self) -> &'static str {
        match self.kind {
            ReportKind::CircularDependency => "possible circular locking dependency detected",
            ReportKind::SelfDeadlock if self.suspended_holder.is_some() => {
                "deadlock: a task blocks the thread its lock's holder runs on"
            }
            ReportKind::SelfDeadlock => "self-deadlock: waiting for what this context holds",
            ReportKind::PossibleSelfDeadlock => {
                "possible self-deadlock: waiting for a lock this task holds"
            }
            ReportKind::PoolExhaustion => {
                "possible pool exhaustion: waiting for a permit of a pool while holding one"
            }
            ReportKind::RecursiveLocking => "possible recursive locking detected",
            ReportKind::DeadlockNow => "deadlock: these tasks are stuck now",
            ReportKind::LongWait => "a lock wait exceeded the watchdog threshold",
        }
    }
}
