//! Waits on events: awaiting a `oneshot` reply while holding `H` records
//! `H → reply`; sending the reply records `reply → L` for every lock `L` the
//! sender waited for since its section began (its task's start, or the
//! `recv` that delivered the message it handles).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{mpsc, oneshot, test_guard, Access, Mutex, ReportKind};

/// A request to the actor: whether it needs the state, and where to reply.
type Request = (bool, oneshot::Sender<u32>);

/// An actor that, for requests that need it, locks `state` before replying
/// (`lock_first`), or replies first and hands the work on the state to a
/// task of its own (`!lock_first`): it never waits for `state` itself.
fn actor(
    state: Arc<Mutex<u32>>,
    mut inbox: mpsc::UnboundedReceiver<Request>,
    lock_first: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((needs_state, reply)) = inbox.recv().await {
            if lock_first {
                let value = if needs_state {
                    // A moment for the caller to take the state first.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    *state.lock().await // ACTOR-LOCK
                } else {
                    0
                };
                let _ = reply.send(value); // ACTOR-REPLY
            } else {
                let _ = reply.send(0);
                if needs_state {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _unused = state.lock().await;
                    });
                }
            }
        }
    })
}

/// Sends a request and returns the reply's receiver (one class for every
/// request: this line).
async fn request(
    actor: &mpsc::UnboundedSender<Request>,
    needs_state: bool,
) -> oneshot::Receiver<u32> {
    let (tx, rx) = oneshot::channel_with_class("actor-reply");
    actor.send((needs_state, tx)).unwrap();
    rx
}

use common::{line_of, links};

/// One caller asks for the state (the actor locks `state`, then replies);
/// another holds `state` while it awaits a reply: the actor may be handling
/// the first request then, and waits for `state` forever. Reported on the
/// first run, though this run does not deadlock (the second request needs
/// no state, and comes alone).
#[tokio::test]
async fn a_reply_awaited_while_holding_the_lock_the_actor_takes_before_replying_is_reported() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("actor-state", 0u32));
    let (tx, inbox) = mpsc::unbounded_channel();
    let worker = actor(state.clone(), inbox, true);

    let value = request(&tx, true).await.await.unwrap(); // the actor locks, then replies
    assert_eq!(value, 0);
    let reply = request(&tx, false).await;
    let held = state.lock().await; // TAKE-STATE
    let value = common::within("the reply", reply).await.unwrap(); // WAIT-UNDER-STATE
    drop(held);
    assert_eq!(value, 0);
    drop(tx);
    worker.await.unwrap();

    // Two cycles through the actor: its reply (it locks `state` before
    // replying), and its inbox (the caller waits for whoever handles the
    // inbox, which locks `state`).
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 2, "{reports:#?}");
    assert!(reports
        .iter()
        .all(|r| r.kind == ReportKind::CircularDependency));
    let report = reports
        .iter()
        .find(|r| r.class_names().contains(&"actor-reply"))
        .unwrap();
    let inbox = reports
        .iter()
        .find(|r| !r.class_names().contains(&"actor-reply"))
        .unwrap();
    assert_eq!(
        links(inbox)
            .iter()
            .map(|l| (l.0 == "actor-state", l.1, l.3))
            .collect::<Vec<_>>(),
        [
            (true, Access::Lock, Access::Event),
            (false, Access::Receive, Access::Lock)
        ],
        "{inbox}"
    );
    assert_eq!(
        links(report),
        [
            (
                "actor-state".into(),
                Access::Lock,
                "actor-reply".into(),
                Access::Event
            ),
            (
                "actor-reply".into(),
                Access::Signal,
                "actor-state".into(),
                Access::Lock
            ),
        ],
        "{report}"
    );
    let file = file!();
    let deps = &report.dependencies;
    assert_eq!(deps[0].held_at.line(), line_of(file, "// TAKE-STATE"));
    assert_eq!(deps[1].waited_at.line(), line_of(file, "// ACTOR-LOCK"));
    assert_eq!(deps[1].held_at.line(), line_of(file, "// ACTOR-REPLY"));
    let text = report.to_string();
    assert!(text.contains("before it signalled `actor-reply`"), "{text}");
}

/// The same, and the caller's wait really hangs: the actor waits for
/// `state`, the caller for the reply. The report exists before the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_awaited_under_the_lock_the_actor_needs_really_hangs_and_is_reported() {
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let state = Arc::new(Mutex::with_class("actor-state-2", 0u32));
    let (tx, inbox) = mpsc::unbounded_channel();
    let worker = actor(state.clone(), inbox, true);
    let _ = request(&tx, true).await.await.unwrap();

    let reply = request(&tx, true).await;
    let held = state.lock().await; // before the actor, which sleeps first
    let outcome = tokio::time::timeout(Duration::from_millis(300), reply).await;
    assert!(outcome.is_err(), "it really hangs");
    let reports = lockdep.take_reports();
    drop(held);
    drop(tx);
    common::within("the actor", worker).await.unwrap();
    // The cycle when the wait begins; the tasks stuck now, after the
    // confirmation: the caller waits for whoever handles the inbox.
    let kinds: Vec<_> = reports.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            ReportKind::CircularDependency,
            ReportKind::CircularDependency,
            ReportKind::DeadlockNow
        ],
        "{reports:#?}"
    );
    let mut stuck = reports[2].class_names();
    stuck.sort();
    assert_eq!(stuck[0], "actor-state-2", "{}", reports[2]);
    // The reply cycle, and the one through the inbox (which comes first:
    // the caller's wait for the inbox's handler is recorded first).
    assert!(
        reports[..2].iter().any(
            |r| links(r).iter().map(|l| (l.0.as_str(), l.2.as_str())).eq([
                ("actor-state-2", "actor-reply"),
                ("actor-reply", "actor-state-2")
            ])
        ),
        "{reports:#?}"
    );
}

/// The correct variants of the actor pattern stay silent.
#[tokio::test]
async fn an_actor_that_replies_before_it_takes_the_lock_is_silent() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("replies-first-state", 0u32));
    let (tx, inbox) = mpsc::unbounded_channel();
    let worker = actor(state.clone(), inbox, false);
    // The actor replies, then locks the state (this request needs it).
    let _ = request(&tx, true).await.await.unwrap();
    // Let it finish with the state before the caller takes it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let reply = request(&tx, false).await;
    let held = state.lock().await;
    let _ = common::within("the reply", reply).await.unwrap();
    drop(held);
    drop(tx);
    worker.await.unwrap();
    assert_eq!(lockdep.take_reports(), [], "a new message, a new section");
}

#[tokio::test]
async fn a_lock_dropped_before_awaiting_the_reply_is_silent() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("dropped-first-state", 0u32));
    let (tx, inbox) = mpsc::unbounded_channel();
    let worker = actor(state.clone(), inbox, true);
    let _ = request(&tx, true).await.await.unwrap();
    let reply = {
        let _held = state.lock().await;
        request(&tx, false).await
    };
    let _ = common::within("the reply", reply).await.unwrap();
    drop(tx);
    worker.await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}

/// The caller holds the state, and a task it spawns (holding nothing)
/// awaits the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_awaited_from_a_spawned_task_is_silent() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("spawned-wait-state", 0u32));
    let (tx, inbox) = mpsc::unbounded_channel();
    let worker = actor(state.clone(), inbox, true);
    let _ = request(&tx, true).await.await.unwrap();
    let held = state.lock().await;
    let reply = request(&tx, true).await;
    let waiter = tokio::spawn(reply);
    drop(held);
    let _ = common::within("the reply", waiter).await.unwrap().unwrap();
    drop(tx);
    worker.await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}

/// A reply sent from a task that waited for nothing before it: the task's
/// own start is its section.
#[tokio::test]
async fn a_reply_from_a_task_that_took_its_lock_after_replying_is_silent() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("after-reply-state", 0u32));
    let (tx, rx) = oneshot::channel_with_class::<u32>("after-reply");
    let s = state.clone();
    let task = tokio::spawn(async move {
        tx.send(1).unwrap();
        let _unused = s.lock().await;
    });
    let held = state.lock().await;
    assert_eq!(common::within("the reply", rx).await, Ok(1));
    drop(held);
    task.await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}

/// A task that locks `state` and then replies, awaited by a caller that
/// holds `state`: reported at once (the reply → state dependency comes
/// first here, from an earlier call where nothing was held).
#[tokio::test]
async fn a_reply_from_a_spawned_task_that_locks_first_is_reported() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("task-reply-state", 0u32));
    async fn ask(state: &Arc<Mutex<u32>>) -> oneshot::Receiver<u32> {
        let (tx, rx) = oneshot::channel_with_class::<u32>("task-reply");
        let s = state.clone();
        tokio::spawn(async move {
            let value = *s.lock().await;
            let _ = tx.send(value);
        });
        rx
    }
    assert_eq!(ask(&state).await.await, Ok(0));
    let rx = ask(&state).await;
    let held = state.lock().await;
    let outcome = tokio::time::timeout(Duration::from_millis(100), rx).await;
    drop(held);
    // Single-threaded: the task could only run during the wait, and waited.
    assert!(
        outcome.is_err(),
        "it really hangs while the caller holds the state"
    );
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(
        links(&reports[0]),
        [
            (
                "task-reply-state".into(),
                Access::Lock,
                "task-reply".into(),
                Access::Event
            ),
            (
                "task-reply".into(),
                Access::Signal,
                "task-reply-state".into(),
                Access::Lock
            ),
        ]
    );
}

/// A worker waits for a `Notify` while holding `queue`; the notifier takes
/// `queue` before it notifies. Reported though the permit was stored first
/// (this run does not hang).
#[tokio::test]
async fn a_notification_awaited_under_the_lock_the_notifier_takes_first_is_reported() {
    use async_lockdep::sync::Notify;
    let lockdep = test_guard();
    let queue = Arc::new(Mutex::with_class("notify-queue", Vec::<u32>::new()));
    let ready = Arc::new(Notify::with_class("notify-ready"));
    let (q, r) = (queue.clone(), ready.clone());
    tokio::spawn(async move {
        q.lock().await.push(1); // NOTIFIER-LOCK
        r.notify_one(); // NOTIFY
    })
    .await
    .unwrap();
    let held = queue.lock().await;
    common::within("the notification", ready.notified()).await;
    drop(held);
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(
        links(&reports[0]),
        [
            (
                "notify-queue".into(),
                Access::Lock,
                "notify-ready".into(),
                Access::Event
            ),
            (
                "notify-ready".into(),
                Access::Signal,
                "notify-queue".into(),
                Access::Lock
            ),
        ]
    );
    let deps = &reports[0].dependencies;
    assert_eq!(
        deps[1].waited_at.line(),
        line_of(file!(), "// NOTIFIER-LOCK")
    );
    assert_eq!(deps[1].held_at.line(), line_of(file!(), "// NOTIFY"));
}

#[tokio::test]
async fn a_notifier_that_notifies_before_it_locks_is_silent() {
    use async_lockdep::sync::Notify;
    let lockdep = test_guard();
    let queue = Arc::new(Mutex::with_class("notify-first-queue", Vec::<u32>::new()));
    let ready = Arc::new(Notify::with_class("notify-first-ready"));
    let (q, r) = (queue.clone(), ready.clone());
    tokio::spawn(async move {
        r.notify_one();
        q.lock().await.push(1);
    })
    .await
    .unwrap();
    let held = queue.lock().await;
    common::within("the notification", ready.notified()).await;
    drop(held);
    assert_eq!(lockdep.take_reports(), []);
}

/// Two tasks meet at a barrier: one took `m` and let it go before it
/// arrived, the other arrives holding `m`. In another run the second holds
/// `m` first and the first waits for it forever: reported, though this run
/// does not deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_reached_holding_a_lock_another_participant_takes_first_is_reported() {
    use async_lockdep::sync::Barrier;
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("barrier-m", 0u32));
    let barrier = Arc::new(Barrier::with_class("barrier-meet", 2));
    let (m1, b1) = (m.clone(), barrier.clone());
    let first = tokio::spawn(async move {
        *m1.lock().await += 1; // BARRIER-TAKE
        b1.wait().await; // BARRIER-ARRIVE
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (m2, b2) = (m.clone(), barrier.clone());
    let second = tokio::spawn(async move {
        let _held = m2.lock().await;
        b2.wait().await; // waits for the other, holding m
    });
    common::within("the barrier", first).await.unwrap();
    common::within("the barrier", second).await.unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(
        links(&reports[0])
            .iter()
            .map(|l| (l.0.as_str(), l.1, l.2.as_str(), l.3))
            .collect::<Vec<_>>(),
        [
            ("barrier-m", Access::Lock, "barrier-meet", Access::Event),
            ("barrier-meet", Access::Signal, "barrier-m", Access::Lock),
        ]
    );
    let deps = &reports[0].dependencies;
    assert_eq!(
        deps[1].waited_at.line(),
        line_of(file!(), "// BARRIER-TAKE")
    );
    assert_eq!(
        deps[1].held_at.line(),
        line_of(file!(), "// BARRIER-ARRIVE")
    );
}

/// Workers that each hold a lock of their own across a start barrier: no
/// participant needs another's lock to arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_holding_their_own_locks_across_a_barrier_are_silent() {
    use async_lockdep::sync::Barrier;
    let lockdep = test_guard();
    let barrier = Arc::new(Barrier::with_class("start-line", 2));
    let a = Arc::new(Mutex::with_class("worker-a-conn", 0u32));
    let b = Arc::new(Mutex::with_class("worker-b-conn", 0u32));
    let workers = [a, b].map(|conn| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            let mut conn = conn.lock().await;
            barrier.wait().await;
            *conn += 1;
        })
    });
    for worker in workers {
        common::within("the workers", worker).await.unwrap();
    }
    assert_eq!(lockdep.take_reports(), []);
}

/// One generic request helper serves two actors: one locks `catalog` before
/// it replies with a `u64`, the other (a clock) takes no lock and replies
/// with a `String`. Holding `catalog` while asking the clock is correct:
/// replies of different types made on one line have classes of their own.
#[tokio::test]
async fn a_generic_request_helper_for_two_actors_is_silent() {
    let lockdep = test_guard();
    async fn ask<T>(to: &mpsc::UnboundedSender<oneshot::Sender<T>>) -> T {
        let (tx, rx) = oneshot::channel();
        to.send(tx).unwrap();
        rx.await.unwrap()
    }
    let catalog = Arc::new(Mutex::with_class("generic-catalog", 7u64));
    let (pricing, mut pricing_inbox) = mpsc::unbounded_channel::<oneshot::Sender<u64>>();
    let (clock, mut clock_inbox) = mpsc::unbounded_channel::<oneshot::Sender<String>>();
    let c = catalog.clone();
    let pricing_actor = tokio::spawn(async move {
        while let Some(reply) = pricing_inbox.recv().await {
            let price = *c.lock().await;
            let _ = reply.send(price);
        }
    });
    let clock_actor = tokio::spawn(async move {
        while let Some(reply) = clock_inbox.recv().await {
            let _ = reply.send("noon".to_string());
        }
    });
    assert_eq!(ask(&pricing).await, 7);
    let held = catalog.lock().await;
    assert_eq!(common::within("the clock", ask(&clock)).await, "noon");
    drop(held);
    drop((pricing, clock));
    pricing_actor.await.unwrap();
    clock_actor.await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}

/// A task joins a lock of `m` (pending: another task holds `m`) with a
/// notification; the other task holds `m` while it awaits the notification.
/// The notification does not wait for the sibling's lock: silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_beside_a_pending_lock_in_join_is_silent() {
    use async_lockdep::sync::Notify;
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("join-notify-m", 0u32));
    let n = Arc::new(Notify::with_class("join-notify-n"));
    let (holder_m, holder_n) = (m.clone(), n.clone());
    let (held_tx, held_rx) = oneshot::channel_with_class::<()>("join-notify-held");
    let holder = tokio::spawn(async move {
        let _g = holder_m.lock().await;
        let _ = held_tx.send(());
        holder_n.notified().await;
    });
    held_rx.await.unwrap();
    let (jm, jn) = (m.clone(), n.clone());
    let joiner = tokio::spawn(async move {
        let ((), ()) = tokio::join!(
            async {
                *jm.lock().await += 1;
            },
            async {
                tokio::task::yield_now().await;
                jn.notify_one();
            }
        );
    });
    common::within("the holder", holder).await.unwrap();
    common::within("the joiner", joiner).await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}

/// A config watcher holds `config` while it awaits a change; the publisher
/// locks `config` before it sends the change. Reported from a run where the
/// change was already there.
#[tokio::test]
async fn a_watch_change_awaited_under_the_lock_the_sender_takes_first_is_reported() {
    use async_lockdep::sync::watch;
    let lockdep = test_guard();
    let config = Arc::new(Mutex::with_class("watch-config", 0u32));
    let (tx, mut rx) = watch::channel_with_class("watch-version", 0u32);
    let c = config.clone();
    tokio::spawn(async move {
        *c.lock().await += 1; // WATCH-SENDER-LOCK
        tx.send(1).unwrap(); // WATCH-SIGNAL
    })
    .await
    .unwrap();
    let held = config.lock().await;
    common::within("the change", rx.changed()).await.unwrap(); // WATCH-WAIT
    drop(held);
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(
        links(&reports[0]),
        [
            (
                "watch-config".into(),
                Access::Lock,
                "watch-version".into(),
                Access::Event
            ),
            (
                "watch-version".into(),
                Access::Signal,
                "watch-config".into(),
                Access::Lock
            ),
        ]
    );
    let deps = &reports[0].dependencies;
    assert_eq!(deps[0].waited_at.line(), line_of(file!(), "// WATCH-WAIT"));
    assert_eq!(
        deps[1].waited_at.line(),
        line_of(file!(), "// WATCH-SENDER-LOCK")
    );
    assert_eq!(deps[1].held_at.line(), line_of(file!(), "// WATCH-SIGNAL"));
}

/// The watcher reads the config without holding it across the wait: silent.
#[tokio::test]
async fn a_watch_change_awaited_without_the_lock_is_silent() {
    use async_lockdep::sync::watch;
    let lockdep = test_guard();
    let config = Arc::new(Mutex::with_class("watch-free-config", 0u32));
    let (tx, mut rx) = watch::channel_with_class("watch-free-version", 0u32);
    let c = config.clone();
    tokio::spawn(async move {
        *c.lock().await += 1;
        tx.send(1).unwrap();
    })
    .await
    .unwrap();
    common::within("the change", rx.changed()).await.unwrap();
    let _held = config.lock().await;
    assert_eq!(*rx.borrow(), 1);
    assert_eq!(lockdep.take_reports(), []);
}

/// A message of `commands` handled by sending a request into `commands`
/// itself and awaiting its reply: only this worker drains `commands`, so
/// the request waits behind the very wait for its reply. A certain deadlock,
/// reported when the wait begins (and, with the test's guard, that waiter
/// gives up instead of hanging).
#[tokio::test]
async fn a_request_to_its_own_channel_awaited_from_its_section_is_reported() {
    enum Command {
        Start,
        Get(oneshot::Sender<u32>),
    }
    let lockdep = test_guard();
    let (tx, mut commands) = mpsc::channel_with_class::<Command>("own-commands", 4);
    let own = tx.clone();
    let worker = tokio::spawn(async move {
        while let Some(command) = commands.recv().await {
            match command {
                Command::Start => {
                    let (reply, answer) = oneshot::channel_with_class("own-reply");
                    own.send(Command::Get(reply)).await.unwrap(); // OWN-REQUEST
                    let _ = answer.await; // never answered: this worker is busy here
                }
                Command::Get(reply) => {
                    let _ = reply.send(1);
                }
            }
        }
    });
    tx.send(Command::Start).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), worker).await;
    assert!(
        matches!(outcome, Ok(Err(ref e)) if e.is_panic()),
        "the waiter gave up"
    );
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::SelfDeadlock],
        "{reports:#?}"
    );
    assert_eq!(
        links(&reports[0]),
        [(
            "own-commands".into(),
            Access::Receive,
            "own-reply".into(),
            Access::Event
        )]
    );
    assert!(
        reports[0]
            .to_string()
            .contains("a request it sent into the channel it is handling"),
        "{}",
        reports[0]
    );
}

/// The same worker asking another actor: silent.
#[tokio::test]
async fn a_request_to_another_actor_awaited_from_a_section_is_silent() {
    let lockdep = test_guard();
    let (tx, mut commands) = mpsc::channel_with_class::<u32>("other-commands", 4);
    let (helper, mut helper_inbox) = mpsc::channel_with_class::<oneshot::Sender<u32>>("helper", 4);
    let helper_actor = tokio::spawn(async move {
        while let Some(reply) = helper_inbox.recv().await {
            let _ = reply.send(2);
        }
    });
    let worker = tokio::spawn(async move {
        let mut total = 0;
        while let Some(n) = commands.recv().await {
            let (reply, answer) = oneshot::channel_with_class("other-reply");
            helper.send(reply).await.unwrap();
            total += n + answer.await.unwrap();
        }
        total
    });
    tx.send(1).await.unwrap();
    tx.send(2).await.unwrap();
    drop(tx);
    assert_eq!(common::within("the worker", worker).await.unwrap(), 7);
    helper_actor.abort();
    assert_eq!(lockdep.take_reports(), []);
}

/// The actor deadlock on the very first request, with a bounded inbox: the
/// caller sends its request, takes `state`, and awaits the reply; the actor,
/// handling that request, waits for `state`. No dependency closes a cycle
/// yet (the reply was never sent), but the caller waits for the receiver of
/// the channel its request went into, which waits for the caller: stuck now.
/// An actor that, for each reply sender its inbox delivers, takes a moment,
/// locks `state`, then replies (an inbox bounded or not: one shape).
macro_rules! slow_locking_actor {
    ($state:expr, $inbox:expr) => {{
        let (s, mut inbox) = ($state.clone(), $inbox);
        tokio::spawn(async move {
            while let Some(reply) = inbox.recv().await {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let value = *s.lock().await;
                let _ = reply.send(value);
            }
        })
    }};
}

/// Holds `state` while awaiting `answer`, which really hangs (600 ms), and
/// returns the reports found meanwhile.
async fn reports_while_hanging_on(
    lockdep: &async_lockdep::TestGuard,
    state: &Mutex<u32>,
    answer: oneshot::Receiver<u32>,
) -> Vec<async_lockdep::Report> {
    let held = state.lock().await;
    let outcome = tokio::time::timeout(Duration::from_millis(600), answer).await;
    assert!(outcome.is_err(), "it really hangs");
    let reports = lockdep.take_reports();
    drop(held);
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_deadlock_on_the_first_request_is_reported_as_stuck_now() {
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let state = Arc::new(Mutex::with_class("first-state", 0u32));
    let (tx, inbox) = mpsc::channel_with_class::<oneshot::Sender<u32>>("first-inbox", 8);
    let actor = slow_locking_actor!(state, inbox);
    let (reply, answer) = oneshot::channel_with_class("first-reply");
    tx.send(reply).await.unwrap();
    let reports = reports_while_hanging_on(&lockdep, &state, answer).await;
    drop(tx);
    common::within("the actor", actor).await.unwrap();
    // The cycle `state → inbox → state` when the actor starts waiting for
    // the state; the tasks stuck now, confirmed after 100 ms.
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency, ReportKind::DeadlockNow],
        "{reports:#?}"
    );
    for report in &reports {
        let mut classes = report.class_names();
        classes.sort();
        assert_eq!(classes, ["first-inbox", "first-state"], "{report}");
    }
    // Once the state was let go, the actor locked it and replied: the
    // lock-order cycle `state → reply → state` is then recorded too.
    let later = lockdep.take_reports();
    assert_eq!(
        later.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency],
        "{later:#?}"
    );
}

mod pricing {
    /// The pricing actor's reply.
    pub struct Reply(pub u64);
}

mod clock {
    /// The clock actor's reply: the same short name as pricing's.
    pub struct Reply(pub &'static str);
}

/// A generic helper serving two actors whose reply types share a short name
/// (`pricing::Reply`, `clock::Reply`): classes of their own, keyed by the
/// full type. Holding `catalog` while asking the clock is silent.
#[tokio::test]
async fn replies_of_two_types_with_one_short_name_are_two_classes() {
    let lockdep = test_guard();
    async fn ask<T>(to: &mpsc::UnboundedSender<oneshot::Sender<T>>) -> T {
        let (tx, rx) = oneshot::channel();
        to.send(tx).unwrap();
        rx.await.unwrap()
    }
    let catalog = Arc::new(Mutex::with_class("short-name-catalog", 7u64));
    let (pricing, mut pricing_inbox) = mpsc::unbounded_channel::<oneshot::Sender<pricing::Reply>>();
    let (clock, mut clock_inbox) = mpsc::unbounded_channel::<oneshot::Sender<clock::Reply>>();
    let c = catalog.clone();
    let pricing_actor = tokio::spawn(async move {
        while let Some(reply) = pricing_inbox.recv().await {
            let price = *c.lock().await;
            let _ = reply.send(pricing::Reply(price));
        }
    });
    let clock_actor = tokio::spawn(async move {
        while let Some(reply) = clock_inbox.recv().await {
            let _ = reply.send(clock::Reply("noon"));
        }
    });
    assert_eq!(ask(&pricing).await.0, 7);
    let held = catalog.lock().await;
    assert_eq!(common::within("the clock", ask(&clock)).await.0, "noon");
    drop(held);
    drop((pricing, clock));
    pricing_actor.await.unwrap();
    clock_actor.await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}

/// The same with an unbounded inbox: the caller's wait for the reply is a
/// wait for the context handling the inbox's messages (it holds the inbox's
/// receiving section), which waits for `state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_deadlock_on_the_first_request_through_an_unbounded_inbox_is_stuck_now() {
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let state = Arc::new(Mutex::with_class("first-u-state", 0u32));
    let (tx, inbox) = mpsc::unbounded_channel::<oneshot::Sender<u32>>(); // U-INBOX
    let actor = slow_locking_actor!(state, inbox);
    let (reply, answer) = oneshot::channel_with_class("first-u-reply");
    tx.send(reply).unwrap();
    let reports = reports_while_hanging_on(&lockdep, &state, answer).await;
    drop(tx);
    common::within("the actor", actor).await.unwrap();
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency, ReportKind::DeadlockNow],
        "{reports:#?}"
    );
    let line = line_of(file!(), "// U-INBOX");
    let text = std::fs::read_to_string(file!()).unwrap();
    let column = text
        .lines()
        .nth(line as usize - 1)
        .unwrap()
        .find("mpsc::")
        .unwrap()
        + 1;
    let inbox_class = format!("{}:{line}:{column}", file!());
    for report in &reports {
        let mut classes = report.class_names();
        classes.sort();
        assert_eq!(classes, ["first-u-state", inbox_class.as_str()], "{report}");
    }
    let text = reports[1].to_string();
    assert!(
        text.contains("waits for  the reply to a request it sent into"),
        "{text}"
    );
    let later = lockdep.take_reports();
    assert_eq!(
        later.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency],
        "{later:#?}"
    );
}

/// Two notifications polled once and kept pending (as tokio-util's
/// `CancellationToken` tests poll its `cancelled()` futures by hand), then
/// both signalled by the same context: a wait still pending did not delay
/// the signals, so no "a → b → a" cycle. Before, a wait was noted in the
/// section at its first poll, and this was reported.
#[tokio::test]
async fn signals_after_notifications_polled_and_kept_pending_are_silent() {
    use std::future::Future;
    use std::task::{Context, Poll};
    let lockdep = test_guard();
    let a = async_lockdep::sync::Notify::with_class("kept-pending-a");
    let b = async_lockdep::sync::Notify::with_class("kept-pending-b");
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut on_a = std::pin::pin!(a.notified());
    let mut on_b = std::pin::pin!(b.notified());
    assert!(on_a.as_mut().poll(&mut cx).is_pending());
    assert!(on_b.as_mut().poll(&mut cx).is_pending());
    a.notify_waiters();
    b.notify_waiters();
    assert_eq!(on_a.as_mut().poll(&mut cx), Poll::Ready(()));
    assert_eq!(on_b.as_mut().poll(&mut cx), Poll::Ready(()));
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// The same two notifications, each awaited to the end before the other is
/// signalled (one task waits for `a` then signals `b`; another waits for
/// `b` then signals `a`): the cycle is reported.
#[tokio::test]
async fn signals_after_notifications_awaited_to_the_end_are_reported() {
    let lockdep = test_guard();
    let a = Arc::new(async_lockdep::sync::Notify::with_class("awaited-a"));
    let b = Arc::new(async_lockdep::sync::Notify::with_class("awaited-b"));
    let task = |first: Arc<async_lockdep::sync::Notify>, then: Arc<async_lockdep::sync::Notify>| {
        tokio::spawn(async move {
            let waiting = first.notified();
            first.notify_one();
            waiting.await; // over before the signal below
            then.notify_one();
        })
    };
    task(a.clone(), b.clone()).await.unwrap(); // b -> a
    task(b.clone(), a.clone()).await.unwrap(); // a -> b: a cycle
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    let mut classes = reports[0].class_names();
    classes.sort();
    assert_eq!(classes, ["awaited-a", "awaited-b"]);
}

/// Workers each lock a mutex of their own (one class: one line) across a
/// start `Barrier`, let it go, and meet at the barrier again. Passing the
/// barrier begins a new section: the second arrival does not depend on the
/// lock taken before the first. Silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_meeting_at_a_barrier_twice_with_their_own_locks_are_silent() {
    let lockdep = test_guard();
    let barrier = Arc::new(async_lockdep::sync::Barrier::with_class("twice-barrier", 3));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let barrier = barrier.clone();
        workers.push(tokio::spawn(async move {
            let own = Mutex::with_class("twice-own", 0u32);
            let guard = own.lock().await;
            barrier.wait().await;
            drop(guard);
            barrier.wait().await;
        }));
    }
    for worker in workers {
        common::within("a worker", worker).await.unwrap();
    }
    assert_eq!(lockdep.take_reports(), []);
}

/// An actor that replies, then locks `state` for bookkeeping in the same
/// handler; a caller holds `state` while awaiting its next reply. Should the
/// caller take `state` while the actor is still in the previous handler's
/// tail, the actor waits for `state` and never reaches the request: the
/// caller waits for the inbox's handler (`state → inbox`), the handler for
/// `state` (`inbox → state`). Reported from a run that does not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_that_locks_after_replying_is_reported_through_its_inbox() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("tail-state", 0u32));
    let (tx, mut inbox) = mpsc::unbounded_channel::<Request>();
    let s = state.clone();
    let actor = tokio::spawn(async move {
        while let Some((needs_state, reply)) = inbox.recv().await {
            let _ = reply.send(0);
            if needs_state {
                *s.lock().await += 1; // TAIL-LOCK
            }
        }
    });
    let _ = request(&tx, true).await.await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await; // the tail is over
    let reply = request(&tx, false).await;
    let held = state.lock().await; // TAIL-HELD
    let _ = common::within("the reply", reply).await.unwrap();
    drop(held);
    drop(tx);
    actor.await.unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::CircularDependency, "{report}");
    let found = links(report);
    assert_eq!(
        found
            .iter()
            .map(|l| (l.0 == "tail-state", l.1, l.3))
            .collect::<Vec<_>>(),
        [
            (true, Access::Lock, Access::Event),
            (false, Access::Receive, Access::Lock)
        ],
        "{report}"
    );
    let deps = &report.dependencies;
    assert_eq!(deps[0].held_at.line(), line_of(file!(), "// TAIL-HELD"));
    assert_eq!(deps[1].waited_at.line(), line_of(file!(), "// TAIL-LOCK"));
}
