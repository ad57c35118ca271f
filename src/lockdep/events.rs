//! Waits on events: a `oneshot` reply, a `Notify`, a `watch` change, a
//! `Barrier`. An event has a class, as a lock does. *Waiting* for it while
//! holding `H` records `H → event` (the wait itself goes through the seam
//! like any other, as [`Access::Event`]). *Signalling* it records
//! `event → L` for every lock (and event, and bounded send) `L` the
//! signalling context waited for since its section began — the start of its
//! task, or the `recv` that delivered the message it is handling: the
//! signal cannot happen before those waits are over. A reply sent by an
//! actor that locks `state` first, awaited by a caller holding `state`, is
//! the cycle `state → reply → state`, found without the deadlock happening.
//! This is the kernel's cross-release idea (DEPT's "event" and "wait"),
//! limited to sections, which is what keeps it free of false reports.

use std::panic::Location;

use super::held::{chain_after, HeldLock, Waited};
use super::validate::Check;
use super::{context, Acquire, Engine};
use crate::vocab::{Access, ContextId, LockRef, SiteRef};

impl Engine {
    /// The calling context signals the event `event` (created at
    /// `created`) at `site`: records `event → L` for every wait `L` of its
    /// current section that the code running now made (a wait made in a
    /// sibling future's span is not counted).
    ///
    /// With `room_of` (a channel's messages: that channel's class), the
    /// signal is a send into that channel: it is noted in the context's log
    /// of sends (a reply made before is tied to it), and a wait for room in
    /// a channel of that class is left out: the messages of a channel do
    /// not wait for room in it (its receivers make the room).
    ///
    /// With `arriving` (a `Barrier`: the signaller waits for the same event
    /// right after), a wait for a lock the context still holds is left out:
    /// it already has that lock, so its own arrival does not wait for it,
    /// and its wait while holding it is `L → barrier` (a cycle only with
    /// another participant's `barrier → L`).
    pub(crate) fn signal(
        &self,
        event: LockRef,
        created: &'static Location<'static>,
        site: SiteRef,
        arriving: bool,
        room_of: Option<crate::vocab::ClassId>,
    ) {
        let context = ContextId::current();
        let waits: Vec<Waited> = self.held.with_record(context, |record| {
            let mut stack = record.stack();
            if let Some(class) = room_of {
                stack.note_send(LockRef {
                    class,
                    instance: event.instance,
                });
            }
            stack
                .section_waits()
                .iter()
                // Not the event itself, nor the same channel's room: a send
                // that waited for room in a channel does not delay the
                // messages of that channel (the receiver makes the room).
                .filter(|w| w.class != event.class && w.instance != event.instance)
                .filter(|w| Some(w.class) != room_of || w.access != Access::Send)
                .filter(|w| !arriving || !stack.held().iter().any(|h| h.lock.class == w.class))
                .copied()
                .collect()
        });
        if waits.is_empty() {
            return;
        }
        self.record_after(context, (event, Access::Signal, site, created), waits);
    }

    /// Records `after → w` for each wait `w` of the calling context's
    /// section: `after` (a signal, a receiving section: its lock, how, where
    /// and where made), held by nothing, cannot come before those waits are
    /// over. A wait made in a sibling future's span is left out: it does not
    /// delay the code running now.
    fn record_after(
        &self,
        context: ContextId,
        (lock, access, site, created): (LockRef, Access, SiteRef, &'static Location<'static>),
        waits: Vec<Waited>,
    ) {
        let after = [HeldLock {
            lock,
            access,
            site,
            created,
            movable: false,
            forgotten: false,
            drives: false,
            token: 0,
            span: 0,
            chain: chain_after(0, lock, access),
        }];
        for waited in waits {
            if waited.span != 0 && !context::span_is_entered(waited.span) {
                continue; // a sibling future's wait: it does not delay this code
            }
            let want = Acquire {
                lock: LockRef {
                    class: waited.class,
                    instance: waited.instance,
                },
                access: waited.access,
                site: waited.site,
                movable: false,
                blocking: false,
                created: waited.created,
            };
            if let Check::Slow(slow) = self.check(&after, &want) {
                self.record(context, want, slow, false);
            }
        }
    }

    /// The calling context starts draining the bounded channel `section`
    /// (its receiving section, at the `recv`'s site) for the first time,
    /// and did not make it: the receiver was handed to it (moved into the
    /// task it spawned, sent to it). Until now it owned the receiver without
    /// draining it: the waits of its section kept the channel's senders
    /// waiting when the channel was full, as a receiving section does.
    /// Records `channel → w` for each (two services each sending into the
    /// other's full inbox before they drain their own). Its own channel's
    /// room and messages are left out. A context draining a channel it made
    /// itself (a test body) is left alone: the waits before the channel
    /// existed, and its sends into channels it also drains, are not waits
    /// between parties. Only the waits after its last wait for an event or
    /// a join count: the receiver may have come through it (a `oneshot`, a
    /// message, a task's output), and a start signal it waited for delayed
    /// its draining no more than the sends before that signal.
    pub(crate) fn first_drain(&self, section: Acquire) {
        let context = ContextId::current();
        let waits: Vec<Waited> = match self.held.find(context) {
            Some(record) => {
                // Only the waits after the last one that could have handed
                // the receiver over (a reply, a message, a join's output, a
                // start signal): the context may not have owned it before.
                let mut waits = Vec::new();
                for w in record.stack().section_waits_in_order() {
                    if matches!(w.access, Access::Event | Access::Join | Access::Await) {
                        waits.clear();
                    } else if w.instance != section.lock.instance {
                        waits.push(*w);
                    }
                }
                waits
            }
            None => return,
        };
        if waits.is_empty() {
            return;
        }
        let draining = (section.lock, Access::Receive, section.site, section.created);
        self.record_after(context, draining, waits);
    }
}

impl Engine {
    /// A new section of the calling context begins (a `recv` delivered a
    /// message): what it signals from now on depends only on what it waits
    /// for from now on.
    pub(crate) fn begin_section(&self) {
        let context = ContextId::current();
        if let Some(record) = self.held.find(context) {
            record.stack().begin_section();
        }
    }
}

impl Engine {
    /// The channel the request carrying a reply made at `origin` went into:
    /// the first send its maker made after making it, if the calling
    /// context is that maker.
    pub(crate) fn reply_channel(&self, origin: (ContextId, u64)) -> Option<LockRef> {
        let context = ContextId::current();
        if context != origin.0 {
            return None;
        }
        self.held.with_record(context, |record| {
            record.stack().sends().first_since(origin.1)
        })
    }

    /// Where the calling context stands in its sends: a reply made now is
    /// tied to the first send made after this (the request carrying it).
    pub(crate) fn send_mark(&self) -> (ContextId, u64) {
        let context = ContextId::current();
        let mark = self
            .held
            .with_record(context, |record| record.stack().sends().mark());
        (context, mark)
    }

    /// The reply `want`, whose request went into `channel` (see
    /// [`Engine::reply_channel`]), is awaited: if the calling context holds
    /// the receiving section of that channel, only it could handle the
    /// request — after this wait, which then never ends. Reported as a
    /// certain deadlock.
    pub(crate) fn check_reply_from_own_channel(&self, channel: LockRef, want: Acquire) {
        let context = ContextId::current();
        let section = self.held.with_record(context, |record| {
            record
                .stack()
                .held()
                .iter()
                .rev()
                .find(|h| h.lock.instance == channel.instance && h.access == Access::Receive)
                .copied()
        });
        let Some(section) = section else {
            return;
        };
        let spans = self.current_spans();
        let kind = crate::report::ReportKind::SelfDeadlock;
        if let Some(report) = self.once_per_sites(kind, &section, want, context, &spans, false) {
            self.publish_for(report, super::Panic::OnDeadlock, || {}, want.lock.instance);
        }
    }
}
