//! The receiving side of bounded channels, beyond `recv` under a lock: the
//! task that owns a receiver is not draining its channel whenever it is not
//! parked in `recv` — also before its first `recv` — and a reserved slot is
//! a unit of the channel's capacity, held.

mod common;

use std::time::Duration;

use async_lockdep::{mpsc, oneshot, test_guard, Access, ReportKind};

use common::links;

fn line_of(marker: &str) -> u32 {
    common::line_of(file!(), marker)
}

/// A service that sends `greeting` to its peer, then drains its own inbox
/// until it has received `expect` values.
fn service(
    out: mpsc::Sender<u32>,
    mut inbox: mpsc::Receiver<u32>,
    expect: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        out.send(1).await.unwrap(); // GREET
        for _ in 0..expect {
            inbox.recv().await.unwrap(); // DRAIN
        }
    })
}

/// Input 5: two services each send into the other's inbox before they start
/// draining their own. With both inboxes full, each waits for room the other
/// would make by draining: reported from a run where there was room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_greeting_each_other_before_draining_are_reported() {
    let lockdep = test_guard();
    let (to_a, inbox_a) = mpsc::channel_with_class::<u32>("greet-a-inbox", 1);
    let (to_b, inbox_b) = mpsc::channel_with_class::<u32>("greet-b-inbox", 1);
    let a = service(to_b, inbox_a, 1);
    let b = service(to_a, inbox_b, 1);
    common::within("the services", async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .await;
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::CircularDependency, "{report}");
    let mut found = links(report);
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            (
                "greet-a-inbox".into(),
                Access::Receive,
                "greet-b-inbox".into(),
                Access::Send
            ),
            (
                "greet-b-inbox".into(),
                Access::Receive,
                "greet-a-inbox".into(),
                Access::Send
            ),
        ],
        "{report}"
    );
    for dep in &report.dependencies {
        assert_eq!(dep.waited_at.line(), line_of("// GREET"), "{report}");
        assert_eq!(dep.held_at.line(), line_of("// DRAIN"), "{report}");
    }
}

/// The same services, one inbox unbounded: a send into it never waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_greeting_each_other_with_one_unbounded_inbox_are_silent() {
    let lockdep = test_guard();
    let (to_a, mut inbox_a) = mpsc::channel_with_class::<u32>("greet-u-a-inbox", 1);
    let (to_b, mut inbox_b) = mpsc::unbounded_channel::<u32>();
    let a = tokio::spawn(async move {
        to_b.send(1).unwrap();
        inbox_a.recv().await.unwrap();
    });
    let b = tokio::spawn(async move {
        to_a.send(1).await.unwrap();
        inbox_b.recv().await.unwrap();
    });
    common::within("the services", async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .await;
    assert_eq!(lockdep.take_reports(), []);
}

/// A channel made by the task after it waited for room elsewhere: the
/// earlier wait was not made while the channel existed.
#[tokio::test]
async fn a_wait_before_the_channel_was_made_is_not_in_its_section() {
    let lockdep = test_guard();
    let (first_tx, mut first_rx) = mpsc::channel_with_class::<u32>("made-later-first", 1);
    first_tx.send(1).await.unwrap(); // waits for room in `first` (there is some)
    let (later_tx, mut later_rx) = mpsc::channel_with_class::<u32>("made-later-second", 1);
    let forward = tokio::spawn(async move {
        let v = first_rx.recv().await.unwrap();
        later_tx.send(v).await.unwrap(); // first → second
    });
    assert_eq!(later_rx.recv().await, Some(1));
    forward.await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}

/// Input 5, second shape: a worker drains a bounded channel and sends each
/// retry back into the same channel while a producer keeps it full. When the
/// worker's send waits, nobody else drains it: it hangs, reported as stuck
/// now before the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeue_into_the_channel_one_drains_really_hangs_and_is_reported() {
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("requeue-jobs", 2);
    let requeue = tx.clone();
    let worker = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
            requeue.send(job).await.unwrap(); // REQUEUE
        }
    });
    let producer = tokio::spawn(async move {
        for job in 0.. {
            if tx.send(job).await.is_err() {
                break;
            }
        }
    });
    let outcome = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            let reports = lockdep.take_reports();
            if !reports.is_empty() {
                return reports;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    worker.abort();
    producer.abort();
    let reports = outcome.expect("no report before the timeout");
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::PossibleSelfDeadlock],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["requeue-jobs"], "{}", reports[0]);
    let dep = &reports[0].dependencies[0];
    assert_eq!(
        (dep.held_as, dep.waited_as),
        (Access::Receive, Access::Send)
    );
    assert_eq!(
        dep.waited_at.line(),
        line_of("// REQUEUE"),
        "{}",
        reports[0]
    );
    let text = reports[0].to_string();
    assert!(
        text.contains("It sends into the channel it drains"),
        "{text}"
    );
}

/// Input 6: a slot reserved in a channel of capacity 1, then, before using
/// it, a send into the same channel: its own slot is the room it waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_while_holding_a_reserved_slot_of_the_same_channel_is_reported() {
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("reserved-out", 1);
    let permit = tx.reserve().await.unwrap(); // RESERVE
    let outcome = tokio::time::timeout(Duration::from_millis(300), tx.send(2)).await; // SEND-AGAIN
    assert!(outcome.is_err(), "it really hangs");
    permit.send(1);
    assert_eq!(rx.recv().await, Some(1));
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::PossibleSelfDeadlock],
        "{reports:#?}"
    );
    let report = &reports[0];
    assert_eq!(report.class_names(), ["reserved-out"], "{report}");
    assert_eq!(
        report.dependencies[0].held_at.line(),
        line_of("// RESERVE"),
        "{report}"
    );
    assert_eq!(
        report.dependencies[0].waited_at.line(),
        line_of("// SEND-AGAIN"),
        "{report}"
    );
    let dep = &report.dependencies[0];
    assert_eq!((dep.held_as, dep.waited_as), (Access::Send, Access::Send));
    let text = report.to_string();
    assert!(
        text.contains("It holds a reserved slot of this channel"),
        "{text}"
    );
}

/// Input 6 through a forwarding service: holding the reserved slot of
/// `out` (capacity 1), ask a service (which, for some requests, forwards
/// into `out`, then replies) and await its reply. A forwarding request would
/// wait for the room the slot holds. Reported from a run where the request
/// made under the slot needed no forwarding (no hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_awaited_while_holding_a_slot_the_replier_needs_is_reported() {
    let lockdep = test_guard();
    let (out_tx, mut out_rx) = mpsc::channel_with_class::<u32>("fwd-out", 1);
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(v) = out_rx.recv().await {
            got.push(v);
        }
        got
    });
    type Request = (Option<u32>, oneshot::Sender<()>);
    let (svc_tx, mut svc_rx) = mpsc::channel_with_class::<Request>("fwd-service", 1);
    let forward = out_tx.clone();
    let service = tokio::spawn(async move {
        while let Some((v, reply)) = svc_rx.recv().await {
            if let Some(v) = v {
                forward.send(v).await.unwrap(); // FORWARD
            }
            let _ = reply.send(()); // FORWARD-REPLY
        }
    });
    let ask = |v| {
        let (reply, done) = oneshot::channel_with_class("fwd-reply"); // REPLY-MADE
        ((v, reply), done)
    };
    let (request, done) = ask(Some(1));
    svc_tx.send(request).await.unwrap();
    common::within("the forwarding reply", done).await.unwrap();
    let permit = out_tx.reserve().await.unwrap(); // HOLD-SLOT
    let (request, done) = ask(None);
    svc_tx.send(request).await.unwrap();
    common::within("the reply", done).await.unwrap();
    permit.send(2);
    drop((svc_tx, out_tx));
    service.await.unwrap();
    assert_eq!(consumer.await.unwrap(), [1, 2]);
    // Two cycles, both real: the reply waited for under the slot, and the
    // request sent under it into the service's inbox, which the service
    // drains only after forwarding into `out`.
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 2, "{reports:#?}");
    assert!(reports
        .iter()
        .all(|r| r.kind == ReportKind::CircularDependency));
    let mut found: Vec<_> = reports.iter().flat_map(links).collect();
    found.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    assert_eq!(
        found,
        [
            (
                "fwd-out".into(),
                Access::Send,
                "fwd-reply".into(),
                Access::Event
            ),
            (
                "fwd-out".into(),
                Access::Send,
                "fwd-service".into(),
                Access::Send
            ),
            (
                "fwd-reply".into(),
                Access::Signal,
                "fwd-out".into(),
                Access::Send
            ),
            (
                "fwd-service".into(),
                Access::Receive,
                "fwd-out".into(),
                Access::Send
            ),
        ],
        "{reports:#?}"
    );
    let reply = reports
        .iter()
        .find(|r| r.class_names().contains(&"fwd-reply"))
        .unwrap();
    let at = |held: &str, waited: &str| {
        let d = reply
            .dependencies
            .iter()
            .find(|d| d.held.name == held && d.waited.name == waited)
            .unwrap();
        (d.held_at.line(), d.waited_at.line())
    };
    assert_eq!(
        at("fwd-out", "fwd-reply"),
        // A reply awaited with `.await` has no caller line: its channel's.
        (line_of("// HOLD-SLOT"), line_of("// REPLY-MADE"))
    );
    assert_eq!(
        at("fwd-reply", "fwd-out"),
        (line_of("// FORWARD-REPLY"), line_of("// FORWARD"))
    );
}

/// The usual use of a reserved slot: reserve, then send into it. Silent.
#[tokio::test]
async fn a_reserved_slot_used_at_once_is_silent() {
    let lockdep = test_guard();
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("reserve-use", 1);
    for v in 0..3 {
        let permit = tx.reserve().await.unwrap();
        permit.send(v);
        assert_eq!(rx.recv().await, Some(v));
    }
    let owned = tx.clone().reserve_owned().await.unwrap();
    let _tx = owned.send(7);
    assert_eq!(rx.recv().await, Some(7));
    assert_eq!(lockdep.take_reports(), []);
}

/// A reserved slot of one channel held while sending into another: an order
/// between two channels, no cycle. Silent.
#[tokio::test]
async fn a_reserved_slot_held_while_sending_elsewhere_is_silent() {
    let lockdep = test_guard();
    let (a_tx, mut a_rx) = mpsc::channel_with_class::<u32>("slot-a", 1);
    let (b_tx, mut b_rx) = mpsc::channel_with_class::<u32>("slot-b", 1);
    let permit = a_tx.reserve().await.unwrap();
    b_tx.send(1).await.unwrap();
    permit.send(2);
    assert_eq!(b_rx.recv().await, Some(1));
    assert_eq!(a_rx.recv().await, Some(2));
    assert_eq!(lockdep.take_reports(), []);
}

/// A test body that sends into two channels it owns both receivers of, then
/// receives from both: one context, nothing to wait for. Silent.
#[tokio::test]
async fn a_body_sending_into_two_channels_it_drains_is_silent() {
    let lockdep = test_guard();
    let (a_tx, mut a_rx) = mpsc::channel_with_class::<u32>("body-a", 1);
    let (b_tx, mut b_rx) = mpsc::channel_with_class::<u32>("body-b", 1);
    b_tx.send(1).await.unwrap();
    a_tx.send(2).await.unwrap();
    assert_eq!(b_rx.recv().await, Some(1));
    assert_eq!(a_rx.recv().await, Some(2));
    assert_eq!(lockdep.take_reports(), []);
}

/// A receiver handed to a worker through a `oneshot`, after the maker sent
/// into the channel: the worker's wait for the receiver is not a wait made
/// while owning it (it could not drain before it had it). Silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_handed_over_through_a_oneshot_is_silent() {
    let lockdep = test_guard();
    let (tx, rx) = mpsc::channel_with_class::<u32>("handed-jobs", 4);
    let (hand_tx, hand_rx) = oneshot::channel_with_class::<mpsc::Receiver<u32>>("handed-rx");
    let worker = tokio::spawn(async move {
        let mut rx = hand_rx.await.unwrap();
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await {
            got.push(v);
        }
        got
    });
    tx.send(1).await.unwrap();
    hand_tx.send(rx).unwrap();
    tx.send(2).await.unwrap();
    drop(tx);
    assert_eq!(common::within("the worker", worker).await.unwrap(), [1, 2]);
    assert_eq!(lockdep.take_reports(), []);
}

/// A worker that waits for a start signal before draining its queue, which
/// the test body fills (with room) before giving the signal. Silent: the
/// waits before the worker's last wait for an event do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_signal_before_draining_is_silent() {
    let lockdep = test_guard();
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("started-jobs", 4);
    let (start_tx, start_rx) = oneshot::channel_with_class::<()>("started-go");
    let worker = tokio::spawn(async move {
        start_rx.await.unwrap();
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    tx.send(1).await.unwrap();
    tx.send(2).await.unwrap();
    start_tx.send(()).unwrap();
    drop(tx);
    assert_eq!(common::within("the worker", worker).await.unwrap(), 2);
    assert_eq!(lockdep.take_reports(), []);
}

/// A producer and a slow consumer joined in one task on a channel of
/// capacity 1: the producer's send waits for room while the consumer (which
/// holds the receiving section) takes its time over each value. Not a
/// requeue: the wait ends. Silent.
#[tokio::test]
async fn a_producer_joined_with_a_slow_consumer_is_silent() {
    let lockdep = test_guard();
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("slow-consumer", 1);
    let producer = async move {
        for v in 0..3 {
            tx.send(v).await.unwrap();
        }
    };
    let consumer = async {
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await {
            tokio::time::sleep(Duration::from_millis(700)).await;
            got.push(v);
        }
        got
    };
    let ((), got) = tokio::join!(producer, consumer);
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(lockdep.take_reports(), []);
}

/// tokio's advice for sending under a lock: reserve a slot, then lock and
/// send the value through it; another task sends under that lock. In a
/// channel of capacity 64 with a receiver that drains, one slot blocks
/// nobody. Silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_reserved_before_a_lock_in_a_roomy_channel_is_silent() {
    let lockdep = test_guard();
    let m = std::sync::Arc::new(async_lockdep::Mutex::with_class("roomy-lock", 0u32));
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("roomy-chan", 64);
    let drainer = tokio::spawn(async move {
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    let a = {
        let (m, tx) = (m.clone(), tx.clone());
        tokio::spawn(async move {
            let permit = tx.reserve().await.unwrap();
            let v = *m.lock().await;
            permit.send(v);
        })
    };
    let b = tokio::spawn(async move {
        let g = m.lock().await;
        tx.send(*g).await.unwrap();
    });
    a.await.unwrap();
    b.await.unwrap();
    assert_eq!(common::within("the drainer", drainer).await.unwrap(), 2);
    assert_eq!(lockdep.take_reports(), []);
}

/// The most common service test: the test body makes a request channel and
/// a response channel (both bounded), hands the service its halves, and
/// sends a request, then receives the response, in lockstep. One message is
/// in flight: it cannot deadlock. Silent (the body's sends are not waits of
/// the responses' section: it made that channel and drives the service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_body_driving_a_service_in_lockstep_is_silent() {
    let lockdep = test_guard();
    let (req_tx, mut req_rx) = mpsc::channel_with_class::<u32>("lockstep-requests", 1);
    let (resp_tx, mut resp_rx) = mpsc::channel_with_class::<u32>("lockstep-responses", 1);
    let service = tokio::spawn(async move {
        while let Some(v) = req_rx.recv().await {
            resp_tx.send(v * 2).await.unwrap();
        }
    });
    for i in 0..4 {
        req_tx.send(i).await.unwrap();
        assert_eq!(resp_rx.recv().await, Some(i * 2));
    }
    drop(req_tx);
    common::within("the service", service).await.unwrap();
    assert_eq!(lockdep.take_reports(), []);
}

/// The same driving loop in a spawned task (a coordinator, not a test
/// body): its sends while draining the responses are waits of that section,
/// as a fan-out/fan-in coordinator's are — reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_driving_a_service_through_two_bounded_channels_is_reported() {
    let lockdep = test_guard();
    let coordinator = tokio::spawn(async move {
        let (req_tx, mut req_rx) = mpsc::channel_with_class::<u32>("coord-requests", 1);
        let (resp_tx, mut resp_rx) = mpsc::channel_with_class::<u32>("coord-responses", 1);
        let service = tokio::spawn(async move {
            while let Some(v) = req_rx.recv().await {
                resp_tx.send(v * 2).await.unwrap();
            }
        });
        for i in 0..4 {
            req_tx.send(i).await.unwrap();
            assert_eq!(resp_rx.recv().await, Some(i * 2));
        }
        drop(req_tx);
        service.await.unwrap();
    });
    common::within("the coordinator", coordinator)
        .await
        .unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let mut classes = reports[0].class_names();
    classes.sort();
    assert_eq!(
        classes,
        ["coord-requests", "coord-responses"],
        "{}",
        reports[0]
    );
}
