//! The handles every wrapper and executor holds: the lock's identity and
//! detector binding (`LockMeta`), a recorded acquisition (`Holding`, whose
//! drop records the release), a wait in progress (`Waiting`, whose drop ends
//! it), and the shared acquire paths of the blocking and `try_*` methods.
//! The bookkeeping itself is in `lockdep/mod.rs`; no wrapper has its own copy.

use std::panic::Location;
#[cfg(feature = "detect")]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::held::Hold;
use crate::lockdep::{Acquire, Engine};
use crate::vocab::Access;
use crate::vocab::ClassId;
use crate::vocab::{ContextId, LockRef};

/// The detector-side identity of one lock instance (or executor).
#[cfg(feature = "detect")]
pub(crate) struct LockMeta {
    /// The class id, or `UNSET_CLASS` until first use (`const_new`).
    class: AtomicU32,
    /// The instance id, or 0 until first use (`const_new`).
    instance: AtomicU64,
    /// Where a lazily classed lock was created, and what it is.
    site: &'static Location<'static>,
    kind: ClassKind,
    /// The lock's type name, for a lazily classed lock (reports show it).
    type_name: Option<fn() -> &'static str>,
    /// Whether the engine remembers the test that created this instance.
    noted: bool,
}

#[cfg(feature = "detect")]
impl Drop for LockMeta {
    fn drop(&mut self) {
        if self.noted {
            crate::lockdep::ENGINE.forget_creation(*self.instance.get_mut());
        }
    }
}

#[cfg(feature = "detect")]
const UNSET_CLASS: u32 = u32::MAX;

#[cfg(feature = "detect")]
impl LockMeta {
    /// Identity for a new instance of `class`.
    #[track_caller]
    pub(crate) fn new(class: ClassId) -> LockMeta {
        LockMeta::new_at(class, Location::caller())
    }

    /// Identity for a new instance of `class` created at `site`.
    pub(crate) fn new_at(class: ClassId, site: &'static Location<'static>) -> LockMeta {
        let instance = LockRef::new(class).instance;
        let noted = crate::lockdep::engine().is_some_and(|e| e.note_creation(instance));
        LockMeta {
            class: AtomicU32::new(class),
            instance: AtomicU64::new(instance),
            site,
            kind: ClassKind::Mutex,
            type_name: None,
            noted,
        }
    }

    /// Identity for a lock made in a `const` context (a `static`): the class
    /// of `site` and an instance id are assigned at first use.
    /// `type_name` gives the lock's type for reports (`type_name::<L>`).
    pub(crate) const fn lazy(
        site: &'static Location<'static>,
        kind: ClassKind,
        type_name: fn() -> &'static str,
    ) -> LockMeta {
        LockMeta {
            class: AtomicU32::new(UNSET_CLASS),
            instance: AtomicU64::new(0),
            site,
            kind,
            type_name: Some(type_name),
            noted: false,
        }
    }

    /// The class and instance of this lock.
    #[inline]
    pub(crate) fn lock_ref(&self) -> LockRef {
        let class = self.class.load(Ordering::Acquire);
        let instance = self.instance.load(Ordering::Acquire);
        if class != UNSET_CLASS && instance != 0 {
            return LockRef { class, instance };
        }
        self.assign()
    }

    /// First use of a lazily made lock: intern its class (idempotent, so
    /// racing first uses agree) and take an instance id (first one wins).
    #[cold]
    fn assign(&self) -> LockRef {
        let class = match self.class.load(Ordering::Acquire) {
            UNSET_CLASS => {
                let class =
                    class::for_site_typed(self.site, self.kind, self.type_name.map(|name| name()));
                self.class.store(class, Ordering::Release);
                class
            }
            class => class,
        };
        let fresh = LockRef::new(class).instance;
        let instance =
            match self
                .instance
                .compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => fresh,
                Err(existing) => existing,
            };
        LockRef { class, instance }
    }

    /// Tells the engine this `RwLock` admits at most `cap` reads at once.
    pub(crate) fn set_reader_cap(&mut self, cap: u32) {
        if let Some(engine) = crate::lockdep::engine() {
            engine.note_reader_cap(self.lock_ref(), cap);
            self.noted = true;
        }
    }

    /// The engine, if detection is on: one relaxed load when it is off.
    #[inline]
    pub(crate) fn engine(&self) -> Option<&'static Engine> {
        crate::lockdep::engine()
    }

    #[inline]
    pub(crate) fn want(&self, access: Access, site: &'static Location<'static>) -> Acquire {
        Acquire {
            lock: self.lock_ref(),
            access,
            site: site.into(),
            movable: false,
            blocking: false,
            created: self.site,
        }
    }

    /// As [`LockMeta::want`], as the declared nesting level `level` of the
    /// lock's class (a class of its own; level 0 is the class itself).
    pub(crate) fn want_nested(
        &self,
        access: Access,
        site: &'static Location<'static>,
        level: u8,
    ) -> Acquire {
        let lock = self.lock_ref();
        let class = class::nested(lock.class, level);
        Acquire {
            lock: LockRef {
                class,
                instance: lock.instance,
            },
            access,
            site: site.into(),
            movable: false,
            blocking: false,
            created: self.site,
        }
    }
}

/// The identity of a lock with the `detect` feature off: nothing, so that
/// every wrapper is tokio's type and nothing more (`#[repr(transparent)]`).
/// Its methods keep the detecting build's signatures and return constants.
#[cfg(not(feature = "detect"))]
#[derive(Clone, Copy)]
pub(crate) struct LockMeta;

#[cfg(not(feature = "detect"))]
impl LockMeta {
    #[inline(always)]
    pub(crate) fn new(_class: ClassId) -> LockMeta {
        LockMeta
    }

    #[inline(always)]
    pub(crate) fn new_at(_class: ClassId, _site: &'static Location<'static>) -> LockMeta {
        LockMeta
    }

    #[inline(always)]
    pub(crate) const fn lazy(
        _site: &'static Location<'static>,
        _kind: ClassKind,
        _type_name: fn() -> &'static str,
    ) -> LockMeta {
        LockMeta
    }

    #[inline(always)]
    pub(crate) fn lock_ref(&self) -> LockRef {
        LockRef {
            class: class::NO_CLASS,
            instance: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn set_reader_cap(&mut self, _cap: u32) {}

    #[inline(always)]
    pub(crate) fn engine(&self) -> Option<&'static Engine> {
        None
    }

    #[inline(always)]
    pub(crate) fn want(&self, access: Access, site: &'static Location<'static>) -> Acquire {
        Acquire {
            lock: self.lock_ref(),
            access,
            site: site.into(),
            movable: false,
            blocking: false,
            created: site,
        }
    }

    #[inline(always)]
    pub(crate) fn want_nested(
        &self,
        access: Access,
        site: &'static Location<'static>,
        _level: u8,
    ) -> Acquire {
        self.want(access, site)
    }
}

/// The adaptor of a wait that blocks the thread (`blocking_*`): started
/// before the caller blocks (the dependencies and the wait are recorded, so
/// a deadlock is reported before the thread hangs), then
/// [`BlockingWait::acquired`], or dropped if the acquisition failed. The
/// caller makes the blocking call itself, in its own `#[track_caller]` body,
/// so that tokio's "inside a runtime" panic points at the user's line.
pub(crate) struct BlockingWait(Option<(Waiting, Acquire)>);

impl BlockingWait {
    /// Starts the blocking wait for `want`, if detection is on.
    #[inline]
    pub(crate) fn start(engine: Option<&'static Engine>, want: Acquire) -> BlockingWait {
        BlockingWait(engine.map(|engine| {
            let want = want.blocking();
            (Waiting::start(engine, want), want)
        }))
    }

    /// The wait ended with the lock acquired.
    #[inline]
    pub(crate) fn acquired(self) -> Option<Holding> {
        self.0.and_then(|(waiting, want)| waiting.acquired(want))
    }
}

/// [`BlockingWait`] around `wait`, for blocking locks whose blocking call
/// cannot panic on the caller's behalf (std's, parking_lot's).
pub(crate) fn acquire_blocking<G>(
    engine: Option<&'static Engine>,
    want: Acquire,
    wait: impl FnOnce() -> G,
) -> (G, Option<Holding>) {
    let started = BlockingWait::start(engine, want);
    let guard = wait();
    (guard, started.acquired())
}

/// The `try_*` path: held if it succeeded, no dependency either way.
pub(crate) fn acquired_without_waiting(
    detector: Option<&'static Engine>,
    want: Acquire,
) -> Option<Holding> {
    detector.map(|detector| Holding::try_acquired(detector, want))
}

/// A recorded acquisition; dropping it records the release. Two words (the
/// context's record and the acquisition's token), so a guard carries
/// little: the engine is the process's one `static`, and whether the hold
/// was movable is in its record.
pub(crate) struct Holding {
    hold: Hold,
}

impl Holding {
    /// A `lock()` that did not wait.
    #[inline]
    pub(crate) fn lock_now(detector: &'static Engine, want: Acquire) -> Holding {
        Holding {
            hold: detector.lock_now(&want),
        }
    }

    /// A successful `try_lock`.
    #[inline]
    pub(crate) fn try_acquired(detector: &'static Engine, want: Acquire) -> Holding {
        Holding {
            hold: detector.try_acquired(want),
        }
    }
}

impl Holding {
    /// The acquisition's identity: its context and token.
    pub(crate) fn key(&self) -> crate::lockdep::held::HeldKey {
        self.hold.key()
    }

    /// This receiving section is a driving thread's: its sends into bounded
    /// channels are not waits of the section (see `HeldLock::drives`).
    pub(crate) fn drives(&self) {
        crate::lockdep::ENGINE.section_drives(&self.hold);
    }

    /// The permit of this acquisition was `forget()`-ed: it stays held, as
    /// an owned permit that may move, until it is dropped (given back).
    pub(crate) fn forgotten(&self) {
        crate::lockdep::ENGINE.permit_forgotten(&self.hold);
    }

    /// Releases the acquisition dropping, not committing, what was kept
    /// provisionally for it (a forgotten permit whose semaphore is gone).
    pub(crate) fn discard(self) {
        crate::lockdep::ENGINE.discard_provisional(self.hold.key());
    }

    /// The lock is now held for reading (an `RwLock` write guard downgraded).
    pub(crate) fn downgrade(&self) {
        crate::lockdep::ENGINE.change_access(&self.hold, Access::Read);
    }
}

impl Drop for Holding {
    #[inline]
    fn drop(&mut self) {
        crate::lockdep::ENGINE.release(&self.hold);
    }
}

/// A wait in progress; dropped without [`Waiting::acquired`] (a cancelled
/// `lock()` future), it leaves nothing held.
pub(crate) struct Waiting {
    /// `None` once acquired.
    detector: Option<&'static Engine>,
    context: ContextId,
    /// The wait's sequence number among the context's waits.
    seq: u64,
}

impl Waiting {
    /// Records the dependencies of waiting for `want`, and the wait itself
    /// (for the wait-for check and the watchdog).
    #[inline]
    pub(crate) fn start(detector: &'static Engine, want: Acquire) -> Waiting {
        Waiting::start_as(detector, want, false)
    }

    /// As [`Waiting::start`] for a future that calls [`Waiting::poll_doom`]
    /// at each poll: a cycle of waits it closes may be confirmed later, and
    /// it be told to give up then.
    #[inline]
    pub(crate) fn start_doomable(detector: &'static Engine, want: Acquire) -> Waiting {
        Waiting::start_as(detector, want, true)
    }

    #[inline]
    fn start_as(detector: &'static Engine, want: Acquire, doomable: bool) -> Waiting {
        let (context, seq) = detector.wait_start(want, doomable);
        Waiting {
            detector: Some(detector),
            context,
            seq,
        }
    }

    /// Registers a wait whose dependencies were already recorded by
    /// [`Engine::record_wait_dependencies`] (a join that turned out to be pending).
    pub(crate) fn register(
        detector: &'static Engine,
        context: ContextId,
        mark: u64,
        want: Acquire,
    ) -> Waiting {
        let seq = detector.register_wait(context, want, mark);
        Waiting {
            detector: Some(detector),
            context,
            seq,
        }
    }

    /// The wait's future is pending, woken with `waker`: panics if the wait
    /// was told to give up (it is one side of tasks deadlocked now, found on
    /// the confirmation thread, in a test that has a guard), which unwinds
    /// its task's guards so the other sides go on. Otherwise keeps the waker
    /// if the wait is to be analysed later, so that it can be told.
    #[inline]
    pub(crate) fn poll_doom(&self, waker: &std::task::Waker) {
        if self.detector.is_none() {
            return;
        }
        if let Some(message) = crate::lockdep::confirm::poll_doom(self.context, self.seq, waker) {
            panic!("{message}");
        }
    }

    /// The wait for `want` (as started) ended with the lock acquired.
    #[inline]
    pub(crate) fn acquired(mut self, want: Acquire) -> Option<Holding> {
        let detector = self.detector.take()?;
        // Held first, then no longer waiting: the live check never sees the
        // lock free of holders with this wait gone in between.
        let hold = detector.acquired(self.context, want);
        detector.wait_end(self.context, self.seq);
        crate::lockdep::confirm::forget_doom(self.context, self.seq);
        Some(Holding { hold })
    }
}

impl Waiting {
    /// The wait ended by itself (what it waited for came), with nothing
    /// held: an executor's work done, room in a channel.
    pub(crate) fn ended(mut self) {
        if let Some(detector) = self.detector.take() {
            detector.wait_end(self.context, self.seq);
            crate::lockdep::confirm::forget_doom(self.context, self.seq);
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(detector) = &self.detector {
            detector.wait_cancelled(self.context, self.seq);
            crate::lockdep::confirm::forget_doom(self.context, self.seq);
        }
    }
}

/// The adaptor of a wait decided at its first poll (a send into a bounded
/// channel, a join): "held → waited" is recorded at the first poll whether or
/// not it waits (the order matters even when the work is already done); the
/// wait itself (for the deadlock-now check) is registered only while it is
/// pending, and ends when it is seen ready or the adaptor is dropped.
#[derive(Default)]
pub(crate) struct FirstPollWait {
    recorded: bool,
    /// Boxed: only a wait that is pending while detection is on has one,
    /// and the adaptor stays two words in every future that carries it.
    waiting: Option<Box<PendingWait>>,
}

/// A wait of a [`FirstPollWait`] seen pending: registered, and the event it
/// waits for, noted in the context's section once the wait is over (a
/// future polled and kept pending does not delay what its context signals
/// meanwhile).
struct PendingWait {
    waiting: Waiting,
    note_when_over: Option<Acquire>,
}

/// Polls `poll` until it is ready, recording the wait for `want` (when
/// detection is on) through a [`FirstPollWait`]: a `recv` of a channel.
pub(crate) async fn wait_polled<T>(
    want: Option<Acquire>,
    mut poll: impl FnMut(&mut std::task::Context<'_>) -> std::task::Poll<T>,
) -> T {
    let mut wait = FirstPollWait::default();
    std::future::poll_fn(|cx| match want {
        Some(want) => wait.poll(|| want, || poll(cx)),
        None => poll(cx),
    })
    .await
}

impl FirstPollWait {
    /// Polls the wait through `poll`; `want` is asked for at the first poll
    /// only, and only while detection is on.
    #[inline]
    pub(crate) fn poll<T>(
        &mut self,
        want: impl FnOnce() -> Acquire,
        poll: impl FnOnce() -> std::task::Poll<T>,
    ) -> std::task::Poll<T> {
        self.poll_as(
            || {
                let want = want();
                (want, want)
            },
            poll,
        )
    }

    /// As [`FirstPollWait::poll`], the dependencies recorded for the first
    /// `Acquire` of `wants` and the wait registered, for the deadlock-now
    /// check, as the second (a reply: as a wait for the channel its request
    /// went into, whose receiver will answer it).
    #[inline]
    pub(crate) fn poll_as<T>(
        &mut self,
        wants: impl FnOnce() -> (Acquire, Acquire),
        poll: impl FnOnce() -> std::task::Poll<T>,
    ) -> std::task::Poll<T> {
        let first = if std::mem::replace(&mut self.recorded, true) {
            None
        } else {
            crate::lockdep::engine().map(|engine| {
                let (want, live) = wants();
                // An event's wait is a wait of the section once it is over.
                let note_later = want.access == Access::Event && !want.blocking;
                (
                    engine,
                    live,
                    note_later.then_some(want),
                    engine.record_wait_dependencies_deferring(want, !note_later),
                )
            })
        };
        let output = poll();
        match (output.is_ready(), first) {
            (true, first) => {
                match self.waiting.take() {
                    Some(pending) => {
                        let PendingWait {
                            waiting,
                            note_when_over,
                        } = *pending;
                        waiting.ended();
                        if let (Some(want), Some(engine)) =
                            (note_when_over, crate::lockdep::engine())
                        {
                            engine.note_completed_wait(want);
                        }
                    }
                    None => {
                        if let Some((engine, _, Some(want), _)) = first {
                            engine.note_completed_wait(want); // ready at once
                        }
                    }
                }
            }
            (false, Some((engine, live, note_when_over, (context, mark, deferred)))) => {
                let waiting = Waiting::register(engine, context, mark, live);
                if let Some(deferred) = deferred {
                    // A send into the channel one drains (or holds a slot
                    // of) that waits: decided by how the wait ends.
                    engine.defer(context, waiting.seq, deferred);
                }
                self.waiting = Some(Box::new(PendingWait {
                    waiting,
                    note_when_over,
                }));
            }
            (false, None) => {}
        }
        output
    }
}

/// The identity of one event (a `oneshot` reply, a `Notify`, a `watch`
/// channel, a `Barrier`): its class and instance, fixed when it is made while
/// detection is on; empty otherwise, so an event made while detection is off
/// costs one relaxed load and records nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    #[cfg(feature = "detect")]
    id: Option<(LockRef, &'static Location<'static>)>,
}

impl Event {
    /// A new event of the class `name`, or of the class of `site` (where it
    /// is made) when unnamed; `type_name` says what it carries.
    #[inline]
    pub(crate) fn new(
        kind: ClassKind,
        type_name: Option<&'static str>,
        name: Option<std::borrow::Cow<'static, str>>,
        site: &'static Location<'static>,
    ) -> Event {
        #[cfg(feature = "detect")]
        {
            let id = crate::lockdep::engine().map(|_| {
                let class = match name {
                    Some(name) => class::named(name, kind, site),
                    None => class::for_site_typed(site, kind, type_name),
                };
                (LockRef::new(class), site)
            });
            Event { id }
        }
        #[cfg(not(feature = "detect"))]
        {
            let _ = (kind, type_name, name, site);
            Event {}
        }
    }

    /// Waiting for this event, at the site where it was made (a future's
    /// `.await` has no line of its own).
    #[inline]
    pub(crate) fn want(&self) -> Option<Acquire> {
        #[cfg(feature = "detect")]
        {
            self.id.map(|(lock, created)| Acquire {
                lock,
                access: Access::Event,
                site: created.into(),
                movable: false,
                blocking: false,
                created,
            })
        }
        #[cfg(not(feature = "detect"))]
        {
            None
        }
    }

    /// Waiting for this event at `site` (a `recv`, whose line is known).
    #[inline]
    pub(crate) fn want_at(&self, site: &'static Location<'static>) -> Option<Acquire> {
        self.want().map(|want| Acquire {
            site: site.into(),
            ..want
        })
    }

    /// A blocking wait for this event: its dependencies.
    pub(crate) fn record_wait(&self) {
        if let (Some(want), Some(engine)) = (self.want(), crate::lockdep::engine()) {
            engine.record_wait_dependencies(Acquire {
                blocking: true,
                ..want
            });
        }
    }

    /// The same instance as this event, of the class `class`, as `access`
    /// at `site`: an unbounded channel's pseudo-lock (its receiving
    /// section) shares the instance of its messages.
    #[inline]
    pub(crate) fn sibling(
        &self,
        class: ClassId,
        access: Access,
        site: &'static Location<'static>,
    ) -> Option<Acquire> {
        self.want().map(|want| Acquire {
            lock: LockRef {
                class,
                instance: want.lock.instance,
            },
            access,
            site: site.into(),
            ..want
        })
    }

    /// The calling context sends into the unbounded channel of class
    /// `channel` whose messages this event is, at `site`: signals them, and
    /// notes the send (a reply made before is tied to it).
    #[inline]
    pub(crate) fn signal_into(&self, channel: ClassId, site: &'static Location<'static>) {
        #[cfg(feature = "detect")]
        // The event first: one made while detection was off records nothing,
        // without a look at the switch.
        if let Some((lock, created)) = self.id {
            if let Some(engine) = crate::lockdep::engine() {
                engine.signal(lock, created, site.into(), false, Some(channel));
            }
        }
        #[cfg(not(feature = "detect"))]
        let _ = (channel, site);
    }

    /// The calling context signals this event at `site`.
    #[inline]
    pub(crate) fn signal(&self, site: &'static Location<'static>) {
        #[cfg(feature = "detect")]
        if let Some((lock, created)) = self.id {
            if let Some(engine) = crate::lockdep::engine() {
                engine.signal(lock, created, site.into(), false, None);
            }
        }
        #[cfg(not(feature = "detect"))]
        let _ = site;
    }
}

/// A `oneshot` reply carrying `T`: of the class `name`, or of the class of
/// its creation site and `T` (a generic request helper makes replies of
/// many types on one line, usually for different actors).
#[inline]
pub(crate) fn event_of<T>(
    name: Option<std::borrow::Cow<'static, str>>,
    site: &'static Location<'static>,
) -> Event {
    let type_name = std::any::type_name::<T>();
    #[cfg(feature = "detect")]
    if name.is_none() {
        let id = crate::lockdep::engine().map(|_| {
            let class = class::for_site_and_type(site, ClassKind::Oneshot, type_name);
            (LockRef::new(class), site)
        });
        return Event { id };
    }
    #[cfg(not(feature = "detect"))]
    let _ = type_name;
    Event::new(ClassKind::Oneshot, None, name, site)
}
