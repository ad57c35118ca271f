//! Reports: structured values first, lockdep-style text second.

use std::fmt::{self, Write as _};

use crate::vocab::{Access, ClassKind, ContextId, LockClass, Site};

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

fn class_with_site(class: &LockClass) -> String {
    let site = &class.created_at;
    let created = format!("{}:{}:{}", site.file(), site.line(), site.column());
    let blocking = blocking_kind(class.kind);
    if class.name == created {
        // An unnamed class: its type says which lock it is.
        match (&class.type_name, class.kind, blocking) {
            (Some(item), ClassKind::Channel, _) => format!("{class} (channel of {item})"),
            (Some(item), ClassKind::Oneshot, _) => format!("{class} (oneshot reply of {item})"),
            (Some(item), ClassKind::Messages, _) => {
                format!("{class} (messages of a channel of {item})")
            }
            (Some(item), ClassKind::Watch, _) => format!("{class} (watch of {item})"),
            (Some(type_name), _, Some((crate_name, _))) => {
                format!("{class} ({crate_name} {type_name})")
            }
            (Some(type_name), _, None) => format!("{class} ({type_name})"),
            (None, ClassKind::Task, _) => format!("{class} (spawned task)"),
            (None, ClassKind::WorkQueue, _) => format!("{class} (work queue)"),
            (None, ClassKind::Oneshot, _) => format!("{class} (oneshot reply)"),
            (None, ClassKind::Messages, _) => format!("{class} (messages of a channel)"),
            (None, ClassKind::Notify, _) => format!("{class} (Notify)"),
            (None, ClassKind::Barrier, _) => format!("{class} (Barrier)"),
            (None, _, Some((crate_name, lock))) => format!("{class} ({crate_name} {lock})"),
            (None, _, None) => format!("{class}"),
        }
    } else if let Some((crate_name, lock)) = blocking {
        format!("{class} ({crate_name} {lock}, created at {created})")
    } else {
        format!("{class} (created at {created})")
    }
}

/// A blocking lock's crate and type, as reports name it ("std Mutex");
/// none for the async wrappers.
fn blocking_kind(kind: ClassKind) -> Option<(&'static str, &'static str)> {
    match kind {
        ClassKind::StdMutex => Some(("std", "Mutex")),
        ClassKind::StdRwLock => Some(("std", "RwLock")),
        ClassKind::ParkingLotMutex => Some(("parking_lot", "Mutex")),
        ClassKind::ParkingLotRwLock => Some(("parking_lot", "RwLock")),
        _ => None,
    }
}

fn who(dep: &Dependency) -> String {
    let mut who = dep.context.to_string();
    if let Some(test) = &dep.test {
        // A test's own thread is already named after the test.
        if !who.ends_with(&format!("`{test}`")) {
            let _ = write!(who, " in test `{test}`");
        }
    }
    if !dep.spans.is_empty() {
        let _ = write!(who, " (span: {})", dep.spans.join(" < "));
    }
    who
}

fn print_header(f: &mut fmt::Formatter<'_>, title: &str) -> fmt::Result {
    let rule = "=".repeat(title.len() + 9);
    writeln!(f, "{rule}")?;
    writeln!(f, "WARNING: {title}")?;
    writeln!(f, "{}", "-".repeat(title.len() + 9))
}

fn print_attempt(f: &mut fmt::Formatter<'_>, dep: &Dependency) -> fmt::Result {
    let verb = match dep.waited_as {
        Access::Flush => "is flushing",
        Access::Destroy => "is destroying",
        Access::Join | Access::Await => "is joining",
        Access::Send => "is sending into (the channel can be full)",
        Access::Event => "is waiting for the event",
        _ => "is trying to acquire",
    };
    writeln!(f, "{} {verb}:", who(dep))?;
    writeln!(
        f,
        "  {}   {} {}",
        class_with_site(&dep.waited),
        wait_site_phrase(dep.waited_as),
        dep.waited_at
    )?;
    writeln!(f, "while holding:")?;
    let taken = match dep.held_as {
        Access::Receive => "received at",
        _ => "taken at",
    };
    writeln!(
        f,
        "  {}   {taken} {}",
        class_with_site(&dep.held),
        dep.held_at
    )
}

fn print_chain(f: &mut fmt::Formatter<'_>, deps: &[Dependency]) -> fmt::Result {
    writeln!(f)?;
    writeln!(f, "and this chain of dependencies was seen before:")?;
    for (i, dep) in deps.iter().enumerate() {
        writeln!(f, "  #{} {} -> {}", i + 1, dep.held, dep.waited)?;
        if dep.held_as == Access::Signal {
            // "event → L": L was waited for first, then the event signalled.
            writeln!(
                f,
                "     {} {} {} {} {}",
                who(dep),
                wait_phrase(dep.waited_as),
                class_with_site(&dep.waited),
                wait_site_phrase(dep.waited_as),
                dep.waited_at
            )?;
            writeln!(
                f,
                "     before it signalled {} at {} (in the same section: since its task began, or\n     \
                 since the `recv` that delivered the message it was handling)",
                dep.held, dep.held_at
            )?;
            continue;
        }
        let at = match dep.held_as {
            Access::RunWork => "queued at",
            Access::RunTask => "spawned at",
            Access::Receive => "(the receiver's code between two `recv` calls), received at",
            _ => "at",
        };
        let (verb, held) = (held_verb(dep.held_as), &dep.held);
        writeln!(f, "     {} {verb} {held} {at} {}", who(dep), dep.held_at)?;
        writeln!(
            f,
            "     then {} {} {} {}",
            wait_phrase(dep.waited_as),
            class_with_site(&dep.waited),
            wait_site_phrase(dep.waited_as),
            dep.waited_at
        )?;
    }
    Ok(())
}

fn held_verb(access: Access) -> &'static str {
    match access {
        Access::RunWork => "ran a work item of",
        Access::RunTask => "ran as task",
        Access::Read => "read-locked",
        Access::Permits => "took permits of",
        Access::Receive => "received from",
        _ => "took",
    }
}

fn wait_phrase(access: Access) -> &'static str {
    match access {
        Access::Flush => "flushed",
        Access::Destroy => "destroyed",
        Access::Join => "joined",
        Access::Await => "awaited the handle of",
        Access::Read => "waited to read",
        Access::Permits => "waited for permits of",
        Access::Send => "sent into",
        Access::Event => "waited for the event",
        _ => "waited for",
    }
}

/// How the site of a wait reads: a plain `.await` of a `JoinHandle` has no
/// known line, and the site shown is where the task was spawned.
fn wait_site_phrase(access: Access) -> &'static str {
    match access {
        Access::Await => {
            "at an unknown `.await` (use `handle.join().await` to record it) of the task spawned at"
        }
        Access::Event => "at an unknown `.await` of the event made at",
        _ => "at",
    }
}

fn step(access: Access, class: &LockClass) -> String {
    match access {
        // A send waits only while the channel is full.
        Access::Send => format!("send({}) while full", class.name),
        // The signaller's column: it has not signalled yet when it waits.
        Access::Signal => format!("(before signal({}))", class.name),
        _ => format!("{}({})", access.verb(), class.name),
    }
}

/// The kernel's "possible unsafe scenario": one column per dependency, each
/// column first takes what it holds, then waits for what the next one holds.
fn print_scenario(f: &mut fmt::Formatter<'_>, deps: &[Dependency]) -> fmt::Result {
    let steps: Vec<(String, String)> = deps
        .iter()
        .map(|d| (step(d.held_as, &d.held), step(d.waited_as, &d.waited)))
        .collect();
    let width = steps
        .iter()
        .map(|(a, b)| a.len().max(b.len()))
        .max()
        .unwrap_or(0)
        .max(12)
        + 4;
    writeln!(f)?;
    writeln!(f, "Possible unsafe scenario:")?;
    writeln!(f)?;
    let mut line = String::from("      ");
    for i in 0..deps.len() {
        let _ = write!(line, "{:width$}", format!("task {}", column_name(i)));
    }
    writeln!(f, "{}", line.trim_end())?;
    let mut line = String::from("      ");
    for _ in 0..deps.len() {
        let _ = write!(line, "{:width$}", "------");
    }
    writeln!(f, "{}", line.trim_end())?;
    for phase in 0..2 {
        for (i, (held, waited)) in steps.iter().enumerate() {
            let cell = if phase == 0 { held } else { waited };
            writeln!(f, "      {}{cell}", " ".repeat(width * i))?;
        }
    }
    writeln!(f)?;
    writeln!(f, " *** DEADLOCK ***")
}

fn column_name(i: usize) -> char {
    (b'A' + (i % 26) as u8) as char
}

fn print_notes(f: &mut fmt::Formatter<'_>, report: &Report) -> fmt::Result {
    // The class a read waits on reads of, for the notes.
    let n = report.dependencies.len();
    let read_on_read = (0..n)
        .find(|&i| {
            report.dependencies[i].waited_as == Access::Read
                && report.dependencies[(i + 1) % n].held_as == Access::Read
        })
        .map(|i| report.dependencies[i].waited.name.as_ref())
        .unwrap_or("the lock");
    match (report.needs_writer, report.kind, report.reader_cap) {
        (false, _, _) => {}
        (true, ReportKind::DeadlockNow, Some(cap)) => {
            writeln!(f)?;
            writeln!(
                f,
                "Note: a read waits for reads: `{read_on_read}` is at its reader cap. It admits at most\n\
                 {cap} readers at once (`with_max_readers({cap})`), and {cap} reads are held by tasks that\n\
                 wait here."
            )?;
        }
        (true, ReportKind::DeadlockNow, None) => {
            writeln!(f)?;
            writeln!(
                f,
                "Note: a read waits for reads: a writer is queued on `{read_on_read}` (tokio's RwLock is\n\
                 write-preferring, so the queued writer, waiting for the readers, blocks new reads)."
            )?;
        }
        (true, _, Some(cap)) => {
            writeln!(f)?;
            writeln!(
                f,
                "Note: a blocking link of this cycle is a read waiting on a read. It deadlocks once\n\
                 `{read_on_read}` holds its reader cap of {cap} reads (`with_max_readers({cap})`), or as soon\n\
                 as a writer queues on it in between (tokio's RwLock is write-preferring)."
            )?;
        }
        (true, _, None) => {
            writeln!(f)?;
            writeln!(
                f,
                "Note: a blocking link of this cycle is a read waiting on a read. tokio's RwLock is\n\
                 write-preferring, so it deadlocks as soon as a writer queues on that lock in between."
            )?;
        }
    }
    if report.kind == ReportKind::DeadlockNow && report.pending_wait {
        writeln!(f)?;
        writeln!(
            f,
            "Note: a lock shown as held is not held by any guard yet: tokio queues waiters in\n\
             order and hands it to the oldest pending future waiting for it, which its task\n\
             does not poll while it waits for something else (a future polled once and kept\n\
             aside, a `select!` branch no longer polled)."
        )?;
    }
    let one_task = report.dependencies.len() > 1
        && matches!(
            report.dependencies[0].context,
            ContextId::Task(_) | ContextId::Thread(_)
        )
        && report
            .dependencies
            .iter()
            .all(|d| d.context == report.dependencies[0].context && d.spans.is_empty());
    if report.kind == ReportKind::CircularDependency && one_task && report.concurrent_futures {
        writeln!(f)?;
        write!(f, "Note: ")?;
        print_joined_note(f)?;
    }
    let semaphore = report
        .dependencies
        .iter()
        .any(|d| d.held.kind == ClassKind::Semaphore);
    if semaphore && report.kind == ReportKind::DeadlockNow {
        writeln!(f)?;
        writeln!(
            f,
            "Note: every permit of a semaphore waited for here is held by a task that waits\n\
             here too, so none is given back."
        )?;
    } else if semaphore {
        writeln!(f)?;
        writeln!(
            f,
            "Note: a semaphore link blocks only when all its permits are taken; the detector\n\
             assumes they can be."
        )?;
    }
    Ok(())
}

/// A blocking wait for a lock held by code suspended on the same thread.
fn print_blocked_thread(
    f: &mut fmt::Formatter<'_>,
    dep: &Dependency,
    holder: Option<ContextId>,
) -> fmt::Result {
    writeln!(f, "{} is blocking its thread to acquire:", who(dep))?;
    writeln!(
        f,
        "  {}   at {}",
        class_with_site(&dep.waited),
        dep.waited_at
    )?;
    if let Some(holder) = holder {
        writeln!(f, "which {holder} holds, taken at {}.", dep.held_at)?;
    }
    writeln!(f)?;
    writeln!(
        f,
        "That code runs on this very thread and is suspended in an `.await` while this\n\
         task runs, so it cannot go on and release the lock: the thread blocks for\n\
         good. Drop the guard before the `.await` (or use an async lock), or make the\n\
         blocking call off this thread (`spawn_blocking`)."
    )?;
    writeln!(f)?;
    writeln!(f, " *** DEADLOCK ***")
}

/// The note for waits that may come from futures joined in one task.
fn print_joined_note(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "All of it happened in one task (or thread) outside any span. If it comes from\n\
         futures joined in that task (`join!`, `select!`, `join_all`, `FuturesUnordered`),\n\
         a lock held by one future looks held by the others, and this may be about\n\
         sibling futures rather than one order of locks. Let the detector tell them\n\
         apart: give each future a span of its own (`.instrument(span)`,\n\
         `#[tracing::instrument]`, with async-lockdep's layer installed in the\n\
         subscriber the spans are made with), or wrap it in `async_lockdep::own_context`."
    )
}

fn print_stuck(f: &mut fmt::Formatter<'_>, deps: &[Dependency]) -> fmt::Result {
    for dep in deps {
        writeln!(f, "{}", who(dep))?;
        let taken = match dep.held_as {
            Access::Receive => "received at",
            _ => "taken at",
        };
        writeln!(
            f,
            "  holds      {}   {taken} {}",
            class_with_site(&dep.held),
            dep.held_at
        )?;
        let (waited, verb) = (class_with_site(&dep.waited), dep.waited_as.verb());
        let full = if dep.waited_as == Access::Send {
            " (full)"
        } else {
            ""
        };
        writeln!(
            f,
            "  waits to   {verb} {waited}{full}   {} {}",
            wait_site_phrase(dep.waited_as),
            dep.waited_at
        )?;
    }
    writeln!(f)?;
    writeln!(
        f,
        "Each waits for what the next one holds; none of them can proceed."
    )?;
    writeln!(f)?;
    writeln!(f, " *** DEADLOCK ***")
}

fn print_long_wait(
    f: &mut fmt::Formatter<'_>,
    wait: &LongWait,
    holders: &[Dependency],
) -> fmt::Result {
    writeln!(
        f,
        "{} has waited {:.1?} to {} {}   at {}",
        wait.waiter,
        wait.elapsed,
        wait.access.verb(),
        class_with_site(&wait.lock),
        wait.at
    )?;
    if holders.is_empty() {
        return writeln!(
            f,
            "no task holds it now (it may be queued behind other waiters)"
        );
    }
    for holder in holders {
        writeln!(f, "held by {}, taken at {}", who(holder), holder.held_at)?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print_header(f, self.title())?;
        if let (ReportKind::LongWait, Some(wait)) = (self.kind, &self.long_wait) {
            return print_long_wait(f, wait, &self.dependencies);
        }
        let Some(first) = self.dependencies.first() else {
            return Ok(());
        };
        match self.kind {
            ReportKind::CircularDependency => {
                print_attempt(f, first)?;
                print_chain(f, &self.dependencies[1..])?;
                print_scenario(f, &self.dependencies)?;
            }
            ReportKind::SelfDeadlock if self.suspended_holder.is_some() => {
                print_blocked_thread(f, first, self.suspended_holder)?;
            }
            ReportKind::SelfDeadlock | ReportKind::PossibleSelfDeadlock => {
                print_attempt(f, first)?;
                writeln!(f)?;
                if first.waited_as.is_executor_wait() {
                    writeln!(
                        f,
                        "The work it waits for cannot finish before the waiter itself does."
                    )?;
                } else if self.pending_wait {
                    writeln!(
                        f,
                        "It already waits for this very lock with a future that is still pending\n\
                         (polled once and kept aside). tokio queues waiters in order and may hand\n\
                         the lock to that future, which nothing polls while this wait lasts."
                    )?;
                } else if self.needs_writer {
                    writeln!(f, "It already holds this very lock for reading.")?;
                    if let Some(cap) = self.reader_cap {
                        writeln!(
                            f,
                            "The lock admits at most {cap} reads at once (`with_max_readers`): once \
                             {cap} are held,\nthis read waits, writer or not."
                        )?;
                    }
                } else {
                    let owner = match self.dependencies.first().map(|d| d.waited.kind) {
                        Some(ClassKind::StdMutex | ClassKind::StdRwLock) => "std's",
                        Some(ClassKind::ParkingLotMutex | ClassKind::ParkingLotRwLock) => {
                            "parking_lot's"
                        }
                        _ => "tokio's",
                    };
                    writeln!(
                        f,
                        "It already holds this very lock; {owner} locks are not re-entrant."
                    )?;
                }
                writeln!(f)?;
                if self.kind == ReportKind::PossibleSelfDeadlock {
                    print_joined_note(f)?;
                    writeln!(f)?;
                    writeln!(
                        f,
                        " *** DEADLOCK *** (if the waiting future itself holds it)"
                    )?;
                } else {
                    writeln!(f, " *** DEADLOCK ***")?;
                }
            }
            ReportKind::PoolExhaustion => {
                print_attempt(f, first)?;
                writeln!(f)?;
                writeln!(
                    f,
                    "It already holds a permit of {} (a connection pool?) and waits for another.\n\
                     This deadlocks when every permit is held by a task waiting for another one:\n\
                     none is ever given back. Take one permit per task (pass it down to the code\n\
                     that needs it), or take all at once with `acquire_many`.",
                    first.held
                )?;
                if first.spans.is_empty()
                    && matches!(first.context, ContextId::Task(_) | ContextId::Thread(_))
                {
                    writeln!(f)?;
                    writeln!(
                        f,
                        "If the permit held belongs to another future joined in this task (a limiter\n\
                         over `join_all`, `buffer_unordered` or `FuturesUnordered`), it is given back\n\
                         when that future is done, and this is not a deadlock: give each future a\n\
                         context of its own (`async_lockdep::own_context`, or a span with the\n\
                         layer installed) so the detector can tell them apart."
                    )?;
                }
                writeln!(f)?;
                writeln!(
                    f,
                    " *** DEADLOCK *** (when every permit is held by such a waiter)"
                )?;
            }
            ReportKind::RecursiveLocking => {
                print_attempt(f, first)?;
                print_chain(f, &self.dependencies[1..])?;
                writeln!(f)?;
                writeln!(
                    f,
                    "These are instances of one class, {}, nested in orders that form a\n\
                     cycle: tasks nesting them in these orders at once deadlock. Give locks\n\
                     with distinct roles distinct classes (`with_class`); for instances with\n\
                     a fixed order (parent then child, lower id first), declare it with a\n\
                     nesting level (`lock_nested`).",
                    first.held
                )?;
                if self.dependencies.len() >= 2 {
                    print_scenario(f, &self.dependencies)?;
                } else {
                    print_scenario(f, &[first.clone(), swapped(first)])?;
                }
            }
            ReportKind::DeadlockNow => print_stuck(f, &self.dependencies)?,
            ReportKind::LongWait => {}
        }
        print_notes(f, self)
    }
}

fn swapped(dep: &Dependency) -> Dependency {
    Dependency {
        held: dep.waited.clone(),
        held_as: dep.held_as,
        waited: dep.held.clone(),
        waited_as: dep.waited_as,
        ..dep.clone()
    }
}

fn json_field(out: &mut String, name: &str, value: &str) {
    json_string(out, name);
    out.push(':');
    json_string(out, value);
}

fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// All reports as one text, separated by blank lines (what the panics show).
pub(crate) fn render_all(reports: &[Report]) -> String {
    let mut text = String::new();
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let _ = write!(text, "{report}");
    }
    text
}

/// The `(held, waited)` class labels of every dependency of `reports`.
pub(crate) fn cycle_pairs(reports: &[Report]) -> rustc_hash::FxHashSet<(String, String)> {
    reports
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                ReportKind::CircularDependency | ReportKind::RecursiveLocking
            )
        })
        .flat_map(|r| &r.dependencies)
        .map(|d| (d.held.to_string(), d.waited.to_string()))
        .collect()
}

/// A DOT digraph of `(from, to, in a cycle)` edges between class labels.
pub(crate) fn render_dot(edges: &[(String, String, bool)]) -> String {
    let quote = |label: &str| {
        label
            .trim_matches('`')
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    let mut dot = String::from("digraph async_lockdep {\n");
    for (from, to, in_cycle) in edges {
        dot.push_str(&format!("    \"{}\" -> \"{}\"", quote(from), quote(to)));
        if *in_cycle {
            dot.push_str(" [color=red]");
        }
        dot.push_str(";\n");
    }
    dot.push_str("}\n");
    dot
}
