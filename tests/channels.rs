//! Bounded channels are executors: the receiver's code between two `recv`
//! calls holds the channel's pseudo-lock, and a bounded send made while
//! holding `H` records "H → channel" (the channel can be full).

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{mpsc, test_guard, Access, Mutex, ReportKind, RwLock};

/// The child-process handle of a public bug report: `kill()` holds a read
/// guard of the state while sending into the child's command channel
/// (capacity 1); the child's task takes the state's write lock before it
/// receives the next command. Once the channel is full, all three wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_guard_held_across_a_send_whose_consumer_writes_really_hangs_and_is_reported() {
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let anchor = line!();
    let state = Arc::new(RwLock::with_class("child-state", 0u32));
    let (commands, mut inbox) = mpsc::channel_with_class::<u32>("child-commands", 1);
    let s = state.clone();
    let child = tokio::spawn(async move {
        while let Some(command) = inbox.recv().await {
            let mut state = s.write().await; // before the next recv
            *state += command;
        }
    });
    let kill = async {
        let _state = state.read().await;
        commands.send(1).await.unwrap();
        commands.send(2).await.unwrap();
        commands.send(3).await.unwrap(); // full: waits for the child, which waits for us
    };
    let outcome = tokio::time::timeout(Duration::from_millis(300), kill).await;
    assert!(outcome.is_err(), "it really hangs");
    child.abort();
    let reports = lockdep.take_reports();
    let kinds: Vec<_> = reports.iter().map(|r| r.kind).collect();
    assert!(
        kinds.contains(&ReportKind::CircularDependency),
        "{reports:#?}"
    );
    // The closing dependency: the child, between two `recv` calls, waits
    // to write; then the kill's read held across its first send.
    let cycle = reports
        .iter()
        .find(|r| r.kind == ReportKind::CircularDependency)
        .unwrap();
    let (recv, write, read, first_send) = (anchor + 5, anchor + 6, anchor + 11, anchor + 12);
    let links: Vec<_> = cycle
        .dependencies
        .iter()
        .map(|d| {
            (
                d.held.name.as_ref(),
                d.held_as,
                d.held_at.line(),
                d.waited.name.as_ref(),
                d.waited_as,
                d.waited_at.line(),
            )
        })
        .collect();
    assert_eq!(
        links,
        [
            (
                "child-commands",
                Access::Receive,
                recv,
                "child-state",
                Access::Write,
                write
            ),
            (
                "child-state",
                Access::Read,
                read,
                "child-commands",
                Access::Send,
                first_send
            ),
        ],
        "{cycle}"
    );
    let text = cycle.to_string();
    assert!(
        text.contains(&format!(
            "then sent into `child-commands` (created at {}:{}:",
            file!(),
            anchor + 2
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("received at {}:{recv}:", file!())),
        "{text}"
    );
    // Stuck now: the kill waits to send (into the full channel) holding its
    // read; the child waits to write while receiving.
    let stuck = reports
        .iter()
        .find(|r| r.kind == ReportKind::DeadlockNow)
        .unwrap_or_else(|| panic!("the live check sees the sender stuck: {reports:#?}"));
    let mut links: Vec<_> = stuck
        .dependencies
        .iter()
        .map(|d| (d.held_as, d.held_at.line(), d.waited_as, d.waited_at.line()))
        .collect();
    links.sort_by_key(|l| l.1);
    let blocked_send = links[1].3;
    assert!(
        blocked_send == anchor + 13 || blocked_send == anchor + 14,
        "{stuck}"
    );
    assert_eq!(
        links,
        [
            (Access::Receive, recv, Access::Write, write),
            (Access::Read, read, Access::Send, blocked_send),
        ],
        "{stuck}"
    );
}

#[tokio::test]
async fn the_guard_dropped_before_the_send_is_silent() {
    let lockdep = test_guard();
    let state = Arc::new(RwLock::with_class("child-ok-state", 0u32));
    let (commands, mut inbox) = mpsc::channel_with_class::<u32>("child-ok-commands", 1);
    let s = state.clone();
    let child = tokio::spawn(async move {
        while let Some(command) = inbox.recv().await {
            *s.write().await += command;
        }
    });
    for n in 0..3 {
        let value = *state.read().await; // dropped before sending
        commands.send(value + n).await.unwrap();
    }
    drop(commands);
    child.await.unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn an_unbounded_send_under_a_lock_is_silent() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("unbounded-state", 0u32));
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    let s = state.clone();
    let child = tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            *s.lock().await += v;
        }
    });
    for n in 0..3 {
        let _held = state.lock().await;
        tx.send(n).unwrap(); // never waits
    }
    drop(tx);
    child.await.unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn a_consumer_that_takes_no_lock_is_silent() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("nolock-state", 0u32));
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("nolock-commands", 1);
    let child = tokio::spawn(async move {
        let mut sum = 0;
        while let Some(v) = rx.recv().await {
            sum += v;
        }
        sum
    });
    for n in 0..3 {
        let _held = state.lock().await;
        tx.send(n).await.unwrap();
    }
    drop(tx);
    assert_eq!(child.await.unwrap(), 3);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn a_consumer_locking_what_the_producer_holds_across_send_is_reported() {
    let lockdep = test_guard();
    let cache = Arc::new(Mutex::with_class("producer-cache", 0u32));
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("producer-queue", 4);
    {
        let _cache = cache.lock().await;
        tx.send(1).await.unwrap(); // cache -> queue (room now, but it can be full)
    }
    let c = cache.clone();
    let consumer = tokio::spawn(async move {
        let v = rx.recv().await.unwrap();
        *c.lock().await += v; // queue -> cache
    });
    consumer.await.unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(
        reports[0].class_names(),
        ["producer-queue", "producer-cache"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_sending_into_each_others_inbox_are_reported() {
    let lockdep = test_guard();
    let (to_a, mut inbox_a) = mpsc::channel_with_class::<u32>("service-a-inbox", 1);
    let (to_b, mut inbox_b) = mpsc::channel_with_class::<u32>("service-b-inbox", 1);
    let (a_out, b_out) = (to_b.clone(), to_a.clone());
    let a = tokio::spawn(async move {
        if let Some(v) = inbox_a.recv().await {
            let _ = a_out.send(v + 1).await; // inbox_a -> inbox_b
        }
    });
    let b = tokio::spawn(async move {
        if let Some(v) = inbox_b.recv().await {
            let _ = b_out.send(v + 1).await; // inbox_b -> inbox_a
        }
    });
    to_a.send(1).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .await
    .expect("one message each: no hang");
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let mut classes = reports[0].class_names();
    classes.sort();
    assert_eq!(classes, ["service-a-inbox", "service-b-inbox"]);
}

// ---------------------------------------------------------------------------
// Pools: a second permit of the pool one holds a permit of.

use async_lockdep::Semaphore;

/// The line of `query`'s `acquire`.
const QUERY_LINE: u32 = line!() + 3;

async fn query(pool: &Semaphore) -> u32 {
    let _connection = pool.acquire().await.unwrap(); // a connection of its own
    1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_inside_a_transaction_really_hangs_and_is_reported() {
    let lockdep = test_guard();
    let pool = Arc::new(Semaphore::with_class("db-pool", 2));
    let anchor = line!();
    let mut transactions = Vec::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    for _ in 0..2 {
        let (pool, barrier) = (pool.clone(), barrier.clone());
        transactions.push(tokio::spawn(async move {
            let held = line!() + 1;
            let _transaction = pool.acquire().await.unwrap();
            barrier.wait().await; // every permit is taken now
            query(&pool).await + held // waits for a permit nobody gives back
        }));
    }
    let all = async {
        for t in transactions {
            t.await.unwrap();
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(800), all)
            .await
            .is_err(),
        "it really hangs"
    );
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "once per pair of sites: {reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::PoolExhaustion);
    assert_eq!(report.class_names(), ["db-pool"]);
    let dep = &report.dependencies[0];
    assert_eq!(
        (
            dep.held_as,
            dep.held_at.line(),
            dep.waited_as,
            dep.waited_at.line()
        ),
        (Access::Permits, anchor + 7, Access::Permits, QUERY_LINE)
    );
    let text = report.to_string();
    assert!(text.contains("possible pool exhaustion"), "{text}");
    assert!(
        text.contains("every permit is held by a task waiting"),
        "{text}"
    );
}

#[tokio::test]
async fn one_connection_per_transaction_is_silent() {
    let lockdep = test_guard();
    let pool = Semaphore::with_class("db-pool-ok", 2);
    for _ in 0..3 {
        let _transaction = pool.acquire().await.unwrap();
        // the query uses the transaction's connection, not a second one
    }
    let _a = query(&pool).await;
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// An unnamed channel's class is its creation site, shown with its type, as
/// unnamed locks are.
#[tokio::test]
async fn an_unnamed_channel_shows_its_site_and_type() {
    let lockdep = test_guard();
    let cache = Arc::new(Mutex::with_class("unnamed-channel-cache", 0u32));
    let created = line!() + 1;
    let (tx, mut rx) = mpsc::channel::<u32>(4);
    {
        let _cache = cache.lock().await;
        tx.send(1).await.unwrap(); // cache -> channel
    }
    let v = rx.recv().await.unwrap();
    *cache.lock().await += v; // channel -> cache
    drop(rx);
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let text = reports[0].to_string();
    assert!(
        text.contains(&format!("`{}:{created}:24` (channel of u32)", file!())),
        "{text}"
    );
}

/// A ping/pong test body: a value sent with `send_timeout` while holding
/// `m`, received back by the same body, then `m` locked. A send that gives
/// up by itself cannot deadlock: silent (it was reported as `m → channel →
/// m`).
#[tokio::test]
async fn a_ping_pong_body_with_send_timeout_is_silent() {
    let lockdep = test_guard();
    let m = Mutex::with_class("ping-pong-m", 0u32);
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("ping-pong", 1);
    {
        let _g = m.lock().await;
        tx.send_timeout(1, Duration::from_millis(10)).await.unwrap();
    }
    assert_eq!(rx.recv().await, Some(1));
    *m.lock().await += 1;
    assert_eq!(lockdep.take_reports(), []);
}

/// A consumer holds a read guard of `l` across `recv`; the producer takes
/// `l` for writing before it sends. When the channel is empty while the
/// consumer reads, neither goes on. Reported from a run where the message
/// was already there.
#[tokio::test]
async fn a_recv_while_holding_a_lock_the_producer_takes_before_sending_is_reported() {
    let lockdep = test_guard();
    let l = Arc::new(RwLock::with_class("recv-l", 0u32));
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("recv-feed", 8);
    let producer = {
        let l = l.clone();
        tokio::spawn(async move {
            *l.write().await += 1; // PRODUCER-WRITE
            tx.send(1).await.unwrap(); // PRODUCER-SEND
        })
    };
    producer.await.unwrap();
    let guard = l.read().await; // CONSUMER-READ
    assert_eq!(rx.recv().await, Some(1)); // CONSUMER-RECV
    drop(guard);
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let links: Vec<_> = reports[0]
        .dependencies
        .iter()
        .map(|d| {
            (
                d.held.name.to_string(),
                d.held_as,
                d.waited.name.to_string(),
                d.waited_as,
            )
        })
        .collect();
    assert_eq!(
        links,
        [
            (
                "recv-l".into(),
                Access::Read,
                "recv-feed messages".into(),
                Access::Event
            ),
            (
                "recv-feed messages".into(),
                Access::Signal,
                "recv-l".into(),
                Access::Write
            ),
        ]
    );
    let text = std::fs::read_to_string(file!()).unwrap();
    let line = |marker: &str| text.lines().position(|l| l.contains(marker)).unwrap() as u32 + 1;
    let deps = &reports[0].dependencies;
    assert_eq!(deps[0].held_at.line(), line("// CONSUMER-READ"));
    assert_eq!(deps[0].waited_at.line(), line("// CONSUMER-RECV"));
    assert_eq!(deps[1].waited_at.line(), line("// PRODUCER-WRITE"));
    assert_eq!(deps[1].held_at.line(), line("// PRODUCER-SEND"));
}

/// The same producer; the consumer receives without holding the lock.
#[tokio::test]
async fn a_recv_made_without_the_lock_is_silent() {
    let lockdep = test_guard();
    let l = Arc::new(RwLock::with_class("recv-free-l", 0u32));
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    let producer = {
        let l = l.clone();
        tokio::spawn(async move {
            *l.write().await += 1;
            tx.send(1).unwrap();
        })
    };
    producer.await.unwrap();
    assert_eq!(rx.recv().await, Some(1));
    let _guard = l.read().await;
    assert_eq!(lockdep.take_reports(), []);
}

/// The unbounded channel too: a recv under the lock the producer takes.
#[tokio::test]
async fn an_unbounded_recv_while_holding_a_lock_the_producer_takes_is_reported() {
    let lockdep = test_guard();
    let l = Arc::new(Mutex::with_class("unbounded-recv-l", 0u32));
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    let producer = {
        let l = l.clone();
        tokio::spawn(async move {
            *l.lock().await += 1;
            tx.send(1).unwrap();
        })
    };
    producer.await.unwrap();
    let guard = l.lock().await;
    assert_eq!(rx.recv().await, Some(1));
    drop(guard);
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names()[0], "unbounded-recv-l");
}

/// A `select!` loop whose timer branch locks `m` while the `recv` branch
/// lost: the task is not draining the channel then (the `recv` dropped
/// without a value gives its section back), so a sender holding `m` across
/// a send on the full channel waits for it. Reported from a run where the
/// channel never filled.
#[tokio::test]
async fn a_select_loop_locking_in_its_timer_branch_against_a_sender_holding_the_lock_is_reported() {
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("select-m", 0u32));
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("select-feed", 1);
    tx.send(0).await.unwrap();
    let consumer = {
        let m = m.clone();
        tokio::spawn(async move {
            assert_eq!(rx.recv().await, Some(0)); // SELECT-FIRST-RECV
            let mut ticks = 0;
            while ticks < 2 {
                tokio::select! {
                    value = rx.recv() => assert!(value.is_some()),
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {
                        *m.lock().await += 1; // SELECT-TIMER-LOCK
                        ticks += 1;
                    }
                }
            }
            rx
        })
    };
    let _rx = consumer.await.unwrap();
    {
        let _g = m.lock().await;
        tx.send(1).await.unwrap(); // SELECT-SEND-UNDER-M
    }
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(reports[0].class_names(), ["select-m", "select-feed"]);
    let text = std::fs::read_to_string(file!()).unwrap();
    let line = |marker: &str| text.lines().position(|l| l.contains(marker)).unwrap() as u32 + 1;
    let deps = &reports[0].dependencies;
    assert_eq!(deps[0].waited_at.line(), line("// SELECT-SEND-UNDER-M"));
    assert_eq!(deps[1].waited_at.line(), line("// SELECT-TIMER-LOCK"));
}

/// The same loop whose timer branch takes no lock: silent.
#[tokio::test]
async fn a_select_loop_whose_timer_branch_takes_no_lock_is_silent() {
    let lockdep = test_guard();
    let m = Arc::new(Mutex::with_class("select-free-m", 0u32));
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("select-free-feed", 1);
    tx.send(0).await.unwrap();
    let consumer = tokio::spawn(async move {
        assert_eq!(rx.recv().await, Some(0));
        let mut ticks = 0;
        while ticks < 2 {
            tokio::select! {
                value = rx.recv() => assert!(value.is_some()),
                _ = tokio::time::sleep(Duration::from_millis(5)) => ticks += 1,
            }
        }
        rx
    });
    let _rx = consumer.await.unwrap();
    {
        let _g = m.lock().await;
        tx.send(1).await.unwrap();
    }
    assert_eq!(lockdep.take_reports(), []);
}

/// The tokio worker-pool idiom: workers share the receiver behind a mutex
/// (lock, `recv`, unlock), the producer sends into a small bounded channel.
/// A send that waited for room does not delay the channel's messages (the
/// receivers make the room): silent (it was reported as `rx-mutex →
/// messages → channel → rx-mutex`, in about one run in four).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sharing_a_receiver_behind_a_mutex_are_silent() {
    let lockdep = test_guard();
    for _ in 0..3 {
        let (tx, rx) = mpsc::channel_with_class::<u32>("pool-jobs", 4);
        let rx = Arc::new(Mutex::with_class("pool-rx", rx));
        let results = Arc::new(Mutex::with_class("pool-results", Vec::new()));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (rx, results) = (rx.clone(), results.clone());
                tokio::spawn(async move {
                    loop {
                        let job = rx.lock().await.recv().await;
                        match job {
                            Some(job) => results.lock().await.push(job),
                            None => break,
                        }
                    }
                })
            })
            .collect();
        for job in 0..50 {
            tx.send(job).await.unwrap();
        }
        drop(tx);
        for worker in workers {
            tokio::time::timeout(Duration::from_secs(5), worker)
                .await
                .expect("a worker ends")
                .unwrap();
        }
        assert_eq!(results.lock().await.len(), 50);
    }
    assert_eq!(lockdep.take_reports(), []);
}

/// `recv_many` waits for messages as `recv` does: under a lock the
/// producer takes before it sends, reported.
#[tokio::test]
async fn a_recv_many_while_holding_a_lock_the_producer_takes_before_sending_is_reported() {
    let lockdep = test_guard();
    let l = Arc::new(Mutex::with_class("recv-many-l", 0u32));
    let (tx, mut rx) = mpsc::channel_with_class::<u32>("recv-many-feed", 8);
    let producer = {
        let l = l.clone();
        tokio::spawn(async move {
            *l.lock().await += 1;
            tx.send(1).await.unwrap();
        })
    };
    producer.await.unwrap();
    let guard = l.lock().await;
    let mut buffer = Vec::new();
    assert_eq!(rx.recv_many(&mut buffer, 4).await, 1);
    drop(guard);
    let reports = lockdep.take_reports();
    assert_eq!(
        reports.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReportKind::CircularDependency],
        "{reports:#?}"
    );
    assert_eq!(
        reports[0].class_names(),
        ["recv-many-l", "recv-many-feed messages"]
    );
}
