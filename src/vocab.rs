//! The small shared types every layer of the crate uses: class ids, lock
//! references, context ids, and how a lock is held or waited for.

use std::borrow::Cow;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};

/// Interned class id: an index into the class table.
pub(crate) type ClassId = u32;

/// A source location in a report: where a lock was created, taken or
/// waited for. Made from a `#[track_caller]` location in this process, or
/// read back from another test process's dependencies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Site {
    file: Cow<'static, str>,
    line: u32,
    column: u32,
}

impl Site {
    /// A site from its parts.
    pub fn new(file: impl Into<Cow<'static, str>>, line: u32, column: u32) -> Site {
        Site {
            file: file.into(),
            line,
            column,
        }
    }

    /// The source file, as `Location::file` gives it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line, starting at 1.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column, starting at 1.
    pub fn column(&self) -> u32 {
        self.column
    }
}

/// The site of an acquisition whose line is not known: a plain tokio lock
/// seen through tokio's instrumentation, which gives no caller location.
/// Shown as [`UNKNOWN_SITE_TEXT`], with no line.
pub(crate) fn unknown_site() -> &'static Location<'static> {
    static UNKNOWN: &Location<'static> = Location::caller();
    UNKNOWN
}

/// How an unknown site reads in reports.
pub(crate) const UNKNOWN_SITE_TEXT: &str = "<unknown line: a tokio lock>";

/// Where a lock was taken, as the engine keeps it: one word, `Copy`, and
/// compared by address. Either a `#[track_caller]` location (every
/// wrapper: no cost over the location itself) or a line found at run time
/// (a plain tokio lock's acquisition, read from a backtrace), interned, so
/// that one line is one site and the memory they take is bounded by the
/// number of distinct lines.
///
/// A tagged pointer: the low bit is set for a found line. Both pointees
/// are `'static` and at least 2-aligned (checked below).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SiteRef(std::ptr::NonNull<u8>);

// Both kinds of pointee are immutable `'static` data that is `Sync`.
unsafe impl Send for SiteRef {}
unsafe impl Sync for SiteRef {}

/// A line found at run time: leaked once per distinct line.
#[derive(Debug)]
struct FoundSite {
    file: &'static str,
    line: u32,
    column: u32,
}

const _: () = assert!(std::mem::align_of::<Location<'static>>() >= 2);
const _: () = assert!(std::mem::align_of::<FoundSite>() >= 2);

/// What a [`SiteRef`] points at.
enum Place {
    Code(&'static Location<'static>),
    Found(&'static FoundSite),
}

impl SiteRef {
    /// The site of a `#[track_caller]` location.
    #[inline]
    pub(crate) const fn code(location: &'static Location<'static>) -> SiteRef {
        let ptr = location as *const Location<'static> as *mut u8;
        // SAFETY: a reference is never null.
        SiteRef(unsafe { std::ptr::NonNull::new_unchecked(ptr) })
    }

    /// The site of `file:line:column` found at run time, interned.
    pub(crate) fn found(file: &str, line: u32, column: u32) -> SiteRef {
        type Interned = rustc_hash::FxHashMap<(String, u32, u32), &'static FoundSite>;
        static FOUND: std::sync::Mutex<Option<Interned>> = std::sync::Mutex::new(None);
        let mut found = FOUND
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let site: &'static FoundSite = found
            .get_or_insert_with(Default::default)
            .entry((file.to_owned(), line, column))
            .or_insert_with(|| {
                Box::leak(Box::new(FoundSite {
                    file: Box::leak(file.into()),
                    line,
                    column,
                }))
            });
        let ptr = (site as *const FoundSite as *mut u8).wrapping_add(1);
        // SAFETY: one past a non-null, 2-aligned address is not null.
        SiteRef(unsafe { std::ptr::NonNull::new_unchecked(ptr) })
    }

    #[inline]
    fn place(self) -> Place {
        let ptr = self.0.as_ptr();
        if (ptr as usize) & 1 == 0 {
            // SAFETY: an untagged pointer was made from a `&'static Location`.
            Place::Code(unsafe { &*(ptr as *const Location<'static>) })
        } else {
            // SAFETY: a tagged pointer was made from a `&'static FoundSite`
            // plus one.
            Place::Found(unsafe { &*(ptr.wrapping_sub(1) as *const FoundSite) })
        }
    }

    /// The location, for a site of code; [`unknown_site`] for a found line.
    pub(crate) fn location(self) -> &'static Location<'static> {
        match self.place() {
            Place::Code(location) => location,
            Place::Found(_) => unknown_site(),
        }
    }

    /// The address, as a key (one site, one address).
    #[inline]
    pub(crate) fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }
}

impl From<&'static Location<'static>> for SiteRef {
    #[inline]
    fn from(location: &'static Location<'static>) -> SiteRef {
        SiteRef::code(location)
    }
}

impl From<SiteRef> for Site {
    fn from(site: SiteRef) -> Site {
        match site.place() {
            Place::Code(location) => location.into(),
            Place::Found(found) => Site::new(found.file, found.line, found.column),
        }
    }
}

impl fmt::Debug for SiteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Site::from(*self))
    }
}

impl From<&'static Location<'static>> for Site {
    fn from(location: &'static Location<'static>) -> Site {
        if std::ptr::eq(location, unknown_site()) {
            return Site::new(UNKNOWN_SITE_TEXT, 0, 0);
        }
        Site {
            file: Cow::Borrowed(location.file()),
            line: location.line(),
            column: location.column(),
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return f.write_str(&self.file); // an unknown site
        }
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Who holds locks: a tokio task or a thread outside any task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContextId {
    /// A tokio task, by its runtime-wide unique id.
    Task(tokio::task::Id),
    /// A thread running code outside any task, by a small sequence number.
    Thread(u64),
    /// A future given its own context with [`crate::own_context`] (for
    /// futures joined inside one task), by a sequence number.
    Scope(u64),
    /// A task or thread of another test process of the same run (its
    /// dependencies were read from the run's store), by process id.
    Process(u32),
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextId::Task(id) => write!(f, "task {id}"),
            ContextId::Thread(n) => match thread_name(*n) {
                Some(name) => write!(f, "thread `{name}`"),
                None => write!(f, "thread #{n}"),
            },
            ContextId::Scope(n) => write!(f, "future #{n}"),
            ContextId::Process(pid) => write!(f, "process {pid}"),
        }
    }
}

/// The identity of one lock instance (or executor) plus its class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LockRef {
    pub(crate) class: ClassId,
    pub(crate) instance: u64,
}

impl LockRef {
    /// A fresh instance id of `class`.
    pub(crate) fn new(class: ClassId) -> LockRef {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        LockRef {
            class,
            instance: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// How a lock or executor was held, or waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum Access {
    /// A mutex lock.
    Lock = 1,
    /// A shared (read) lock of an `RwLock`.
    Read,
    /// An exclusive (write) lock of an `RwLock`.
    Write,
    /// Semaphore permits.
    Permits,
    /// Running a work item of a queue (the queue's pseudo-lock).
    RunWork,
    /// Running a spawned task (the task's pseudo-lock).
    RunTask,
    /// Waiting for a queue's submitted work to finish.
    Flush,
    /// Destroying a queue: a flush, then stopping its worker.
    Destroy,
    /// Awaiting a spawned task's `JoinHandle` (with `join()`: the line of
    /// the wait is known).
    Join,
    /// Awaiting a spawned task's `JoinHandle` with a plain `.await`, whose
    /// line is unknown: the site recorded is the spawn site.
    Await,
    /// Sending into (or reserving a slot of) a bounded channel, which waits
    /// while the channel is full.
    Send,
    /// Running the code between two `recv` calls of a channel's receiver
    /// (the channel's pseudo-lock).
    Receive,
    /// Waiting for an event someone else signals: a `oneshot` reply, a
    /// `Notify`, a `watch` change, a `Barrier`.
    Event,
    /// Signalling an event: the signal cannot happen before the waits its
    /// context made since its section began ("event → L").
    Signal,
}

impl Access {
    /// The verb used in reports' scenarios.
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Access::Lock => "lock",
            Access::Read => "read",
            Access::Write => "write",
            Access::Permits => "acquire",
            Access::RunWork => "work",
            Access::RunTask => "task",
            Access::Flush => "flush",
            Access::Destroy => "destroy",
            Access::Join | Access::Await => "join",
            Access::Send => "send",
            Access::Receive => "receive",
            Access::Event => "wait",
            Access::Signal => "signal",
        }
    }

    /// Whether this is a wait for an executor rather than a lock.
    pub(crate) fn is_executor_wait(self) -> bool {
        matches!(
            self,
            Access::Flush | Access::Destroy | Access::Join | Access::Await
        )
    }
}

/// The names of the live threads that have a context, by sequence number:
/// reports say "thread `name`" (cargo test names each test's thread after
/// the test) rather than a number.
static THREAD_NAMES: std::sync::Mutex<Option<rustc_hash::FxHashMap<u64, std::sync::Arc<str>>>> =
    std::sync::Mutex::new(None);

fn thread_names(
) -> std::sync::MutexGuard<'static, Option<rustc_hash::FxHashMap<u64, std::sync::Arc<str>>>> {
    THREAD_NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Remembers the name of the thread with context `Thread(seq)`.
pub(crate) fn name_thread(seq: u64, name: &str) {
    thread_names()
        .get_or_insert_with(Default::default)
        .insert(seq, std::sync::Arc::from(name));
}

/// Forgets the thread `seq` (it ended).
pub(crate) fn forget_thread(seq: u64) {
    if let Some(names) = thread_names().as_mut() {
        names.remove(&seq);
    }
}

fn thread_name(seq: u64) -> Option<std::sync::Arc<str>> {
    thread_names().as_ref()?.get(&seq).cloned()
}

/// What kind of thing a class describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClassKind {
    /// An [`crate::Mutex`].
    Mutex,
    /// An [`crate::RwLock`].
    RwLock,
    /// A [`crate::Semaphore`].
    Semaphore,
    /// A [`crate::WorkQueue`] (or [`crate::LazyWorkQueue`]).
    WorkQueue,
    /// A task started with [`crate::spawn`].
    Task,
    /// A bounded channel of [`crate::mpsc`].
    Channel,
    /// A [`crate::oneshot`] channel: its reply is an event.
    Oneshot,
    /// A [`crate::sync::Notify`]: its notifications are events.
    Notify,
    /// A [`crate::sync::watch`] channel: its changes are events.
    Watch,
    /// A [`crate::sync::Barrier`]: the arrivals are its event.
    Barrier,
    /// The messages of a [`crate::mpsc`] channel: `recv` waits for them,
    /// each send signals one.
    Messages,
    /// A [`crate::stdsync::Mutex`] (std's, blocking).
    StdMutex,
    /// A [`crate::stdsync::RwLock`] (std's, blocking).
    StdRwLock,
    /// A `parkinglot::Mutex` (parking_lot's, blocking).
    ParkingLotMutex,
    /// A `parkinglot::RwLock` (parking_lot's, blocking).
    ParkingLotRwLock,
}

/// A description of a lock class, as shown in reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockClass {
    /// The class name: the explicit name, or the creation site as `file:line:column`.
    pub name: Cow<'static, str>,
    /// Where the first lock of this class was created.
    pub created_at: Site,
    /// What kind of primitive the class describes.
    pub kind: ClassKind,
    /// The declared nesting level (0 unless declared).
    pub subclass: u8,
    /// For a class with no explicit name, the type of its first lock without
    /// module paths (`Mutex<u64>`), when known: many locks can share a
    /// creation site (a `#[derive(Default)]` struct, a helper function).
    pub type_name: Option<Cow<'static, str>>,
}

impl fmt::Display for LockClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.name)?;
        if self.subclass > 0 {
            write!(f, "/{}", self.subclass)?;
        }
        Ok(())
    }
}
