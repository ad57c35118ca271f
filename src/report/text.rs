//! A report as text: lockdep's layout, one printer per section, always in
//! the same order (the lock being acquired, the lock held, the chain, the
//! scenario ending in `*** DEADLOCK ***`, the notes).

use super::*;
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
        Access::Send => "(a reserved slot) reserved at",
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
        Access::Send => "reserved a slot of",
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
        .map(|d| {
            let held = match d.held_as {
                Access::Send => format!("reserve({})", d.held.name),
                access => step(access, &d.held),
            };
            (held, step(d.waited_as, &d.waited))
        })
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

/// Whether a class was made inside tokio's own sources (a plain tokio lock
/// made by `Default` or `From`, whose site tokio gives as its `new` call).
fn made_inside_tokio(class: &LockClass) -> bool {
    let file = class.created_at.file();
    let in_tokio = file.split(['/', '\\']).any(|part| {
        part.strip_prefix("tokio-")
            .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
    });
    in_tokio && file.contains("sync")
}

fn print_notes(f: &mut fmt::Formatter<'_>, report: &Report) -> fmt::Result {
    if let Some(class) = report
        .dependencies
        .iter()
        .flat_map(|d| [&d.held, &d.waited])
        .find(|c| made_inside_tokio(c))
    {
        writeln!(f)?;
        writeln!(
            f,
            "Note: {class} was made inside tokio: a plain tokio lock made by `Default::default()`\n\
             (`#[derive(Default)]`) or `From::from`, whose site tokio gives as its own `new` call.\n\
             All such locks of one kind share that one class, so locks of unrelated structs look\n\
             like one lock here. Make them with `new` (a class per line) to tell them apart."
        )?;
    }
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
        if dep.waited_as == Access::Event && dep.waited.kind == ClassKind::Channel {
            // A reply awaited, tied to the channel its request went into.
            writeln!(
                f,
                "  waits for  the reply to a request it sent into {waited}, handled by the\n\
                 \x20            holder of that channel   (the reply was made at {})",
                dep.waited_at
            )?;
            continue;
        }
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
                if first.held_as == Access::Receive && first.waited_as == Access::Event {
                    writeln!(
                        f,
                        "It waits for the reply to a request it sent into the channel it is handling a\n\
                         message of: only it drains that channel, so the request cannot be handled\n\
                         before this wait ends."
                    )?;
                } else if first.waited_as == Access::Send && first.held_as == Access::Receive {
                    writeln!(
                        f,
                        "It sends into the channel it drains, and the channel is full: only it could\n\
                         make room, by receiving, after this send. Send with `try_send`, from a task\n\
                         of its own, or into an unbounded channel."
                    )?;
                } else if first.waited_as == Access::Send && first.held_as == Access::Send {
                    writeln!(
                        f,
                        "It holds a reserved slot of this channel and waits for room in it: the room\n\
                         it waits for may be the very slot it holds, never given back while it waits.\n\
                         Use the slot (`permit.send`) or drop it before sending again."
                    )?;
                } else if first.waited_as.is_executor_wait() {
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
                     that needs it), or take all at once with `acquire_many`; from an object pool,\n\
                     give the object back (or pass it down) before asking for another.",
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
