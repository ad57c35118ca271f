//! Plain `tokio::sync` locks, with no code change: tokio's instrumentation
//! feeds the engine through the layer that `test_guard()` installs.

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{test_guard, Access, DetectorBuilder, Report, ReportKind};
use tokio::sync::{Mutex, RwLock, Semaphore};

/// The creation lines of a report's classes, in the report's order; each
/// class is a site of this file (or the library's).
fn class_lines(report: &Report) -> Vec<u32> {
    report
        .classes()
        .iter()
        .map(|class| class.created_at.line())
        .collect()
}

fn cycles(reports: &[Report]) -> Vec<&Report> {
    reports
        .iter()
        .filter(|r| r.kind == ReportKind::CircularDependency)
        .collect()
}

#[tokio::test]
async fn abba_across_sequential_tasks_is_reported_with_creation_lines() {
    let lockdep = test_guard();
    let la = line!() + 1;
    let accounts = Arc::new(Mutex::new(0u32));
    let lb = line!() + 1;
    let ledger = Arc::new(Mutex::new(0u32));

    let (a, l) = (accounts.clone(), ledger.clone());
    let first = line!() + 2;
    tokio::spawn(async move {
        let _a = a.lock().await;
        let _l = l.lock().await;
    })
    .await
    .unwrap();
    let (a, l) = (accounts.clone(), ledger.clone());
    let second = line!() + 2;
    tokio::spawn(async move {
        let _l = l.lock().await;
        let _a = a.lock().await;
    })
    .await
    .unwrap();

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::CircularDependency);
    assert_eq!(class_lines(report), [lb, la], "{report}");
    for class in report.classes() {
        assert_eq!(class.created_at.file(), file!());
        assert_eq!(class.name, class.created_at.to_string());
    }
    // The lines of the `.lock().await` calls, read from a backtrace when
    // each chain was new: the closing one first (ledger, then accounts).
    let sites: Vec<_> = report
        .dependencies
        .iter()
        .map(|d| {
            assert_eq!((d.held_at.file(), d.waited_at.file()), (file!(), file!()));
            (d.held_at.line(), d.waited_at.line())
        })
        .collect();
    assert_eq!(
        sites,
        [(second, second + 1), (first, first + 1)],
        "{report}"
    );
    let text = report.to_string();
    assert!(text.contains(&format!("{}:{}:", file!(), la)), "{text}");
    assert!(
        text.contains(&format!("{}:{}:", file!(), second + 1)),
        "{text}"
    );
    assert!(!text.contains("unknown line"), "{text}");
    assert!(text.contains("*** DEADLOCK ***"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abba_that_really_hangs_is_reported_before_it_hangs() {
    let lockdep = DetectorBuilder::default()
        .panic_on_deadlock(false)
        .test_guard();
    let la = line!() + 1;
    let a = Arc::new(Mutex::new(()));
    let lb = line!() + 1;
    let b = Arc::new(Mutex::new(()));
    let both = Arc::new(tokio::sync::Barrier::new(2));

    let (a1, b1, both1) = (a.clone(), b.clone(), both.clone());
    let first = tokio::spawn(async move {
        let _a = a1.lock().await;
        both1.wait().await;
        let _b = b1.lock().await;
    });
    let (a2, b2, both2) = (a.clone(), b.clone(), both.clone());
    let second = tokio::spawn(async move {
        let _b = b2.lock().await;
        both2.wait().await;
        let _a = a2.lock().await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished() && !second.is_finished(), "it hangs");
    first.abort();
    second.abort();
    let _ = first.await;
    let _ = second.await;

    let reports = lockdep.take_reports();
    let found = cycles(&reports);
    assert_eq!(found.len(), 1, "{reports:#?}");
    let mut lines = class_lines(found[0]);
    lines.sort_unstable();
    assert_eq!(lines, [la, lb]);
}

#[tokio::test]
async fn rwlock_write_then_mutex_against_mutex_then_read_is_reported() {
    let lockdep = test_guard();
    let lr = line!() + 1;
    let table = Arc::new(RwLock::new(0u32));
    let lm = line!() + 1;
    let index = Arc::new(Mutex::new(0u32));

    let (t, i) = (table.clone(), index.clone());
    tokio::spawn(async move {
        let _w = t.write().await;
        let _i = i.lock().await;
    })
    .await
    .unwrap();
    let (t, i) = (table.clone(), index.clone());
    tokio::spawn(async move {
        let _i = i.lock().await;
        let _r = t.read().await;
    })
    .await
    .unwrap();

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert!(!reports[0].needs_writer, "{}", reports[0]);
    assert_eq!(class_lines(&reports[0]), [lm, lr], "{}", reports[0]);
}

#[tokio::test]
async fn permit_then_lock_against_lock_then_permit_is_reported() {
    let lockdep = test_guard();
    let ls = line!() + 1;
    let pool = Arc::new(Semaphore::new(1));
    let lm = line!() + 1;
    let cache = Arc::new(Mutex::new(0u32));

    let (p, c) = (pool.clone(), cache.clone());
    tokio::spawn(async move {
        let _permit = p.acquire().await.unwrap();
        let _c = c.lock().await;
    })
    .await
    .unwrap();
    let (p, c) = (pool.clone(), cache.clone());
    tokio::spawn(async move {
        let _c = c.lock().await;
        let _permit = p.acquire_many(1).await.unwrap();
    })
    .await
    .unwrap();

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(class_lines(&reports[0]), [lm, ls], "{}", reports[0]);
}

#[tokio::test]
async fn three_locks_in_a_ring_across_three_tasks_is_one_report() {
    let lockdep = test_guard();
    let la = line!() + 1;
    let a = Arc::new(Mutex::new(()));
    let lb = line!() + 1;
    let b = Arc::new(Mutex::new(()));
    let lc = line!() + 1;
    let c = Arc::new(Mutex::new(()));

    for (x, y) in [
        (a.clone(), b.clone()),
        (b.clone(), c.clone()),
        (c.clone(), a.clone()),
    ] {
        tokio::spawn(async move {
            let _x = x.lock().await;
            let _y = y.lock().await;
        })
        .await
        .unwrap();
    }

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(reports[0].dependencies.len(), 3, "{}", reports[0]);
    let mut lines = class_lines(&reports[0]);
    lines.sort_unstable();
    assert_eq!(lines, [la, lb, lc]);
}

#[tokio::test]
async fn locks_made_in_a_library_have_the_library_lines_as_classes() {
    let lockdep = test_guard();
    let pair = native_tests::pair();
    let (l, r) = (pair.left.clone(), pair.right.clone());
    tokio::spawn(async move {
        let _l = l.lock().await;
        let _r = r.lock().await;
    })
    .await
    .unwrap();
    let _r = pair.right.lock().await;
    let _l = pair.left.lock().await;

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let classes = reports[0].classes();
    assert!(classes.iter().all(|c| c.created_at.file() == "src/lib.rs"));
    assert_eq!(
        class_lines(&reports[0]),
        [native_tests::LEFT_LINE + 1, native_tests::LEFT_LINE]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_under_contention_is_silent() {
    let lockdep = test_guard();
    let a = Arc::new(Mutex::new(0u32));
    let b = Arc::new(RwLock::new(0u32));
    let s = Arc::new(Semaphore::new(2));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (a, b, s) = (a.clone(), b.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let _p = s.acquire().await.unwrap();
                let mut a = a.lock().await;
                *a += 1;
                if i % 2 == 0 {
                    *b.write().await += 1;
                } else {
                    let _r = b.read().await;
                }
                drop(a);
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*a.lock().await, 16 * 20);
    // The front end saw them: s -> a, a -> b were recorded.
    assert!(lockdep.detector().status().dependencies >= 2);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn try_lock_fallback_against_the_other_order_is_silent() {
    let lockdep = test_guard();
    let a = Arc::new(Mutex::new(()));
    let b = Arc::new(Mutex::new(()));
    let (a1, b1) = (a.clone(), b.clone());
    tokio::spawn(async move {
        let _a = a1.lock().await;
        let _b = b1.lock().await;
    })
    .await
    .unwrap();
    // Holding b, a is only tried: no wait, no dependency into a.
    let busy = a.clone().lock_owned().await;
    let _b = b.lock().await;
    assert!(a.try_lock().is_err());
    drop(busy);
    let got = a.try_lock();
    assert!(got.is_ok());
    drop(got);
    drop(_b);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn select_giving_up_on_a_busy_lock_leaves_nothing_held() {
    let lockdep = test_guard();
    let a = Arc::new(Mutex::new(()));
    let b = Arc::new(Mutex::new(()));
    // Another task holds a.
    let busy = a.clone().lock_owned().await;
    let (a1, b1) = (a.clone(), b.clone());
    tokio::spawn(async move {
        tokio::select! {
            _a = a1.lock() => unreachable!("a is busy"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        // Gave up: a is not held here.
        let _b = b1.lock().await;
    })
    .await
    .unwrap();
    drop(busy);
    let (a1, b1) = (a.clone(), b.clone());
    tokio::spawn(async move {
        let _b = b1.lock().await;
        let _a = a1.lock().await;
    })
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_permits_and_guards_handed_to_tasks_are_silent() {
    let lockdep = test_guard();
    let limit = Arc::new(Semaphore::new(2));
    let state = Arc::new(Mutex::new(0u32));
    let job = Arc::new(Mutex::new(0u32));
    let mut workers = Vec::new();
    for _ in 0..6 {
        // The permit and the job's guard go to the worker, which releases them.
        let permit = limit.clone().acquire_owned().await.unwrap();
        let guard = job.clone().lock_owned().await;
        workers.push(tokio::spawn(async move {
            tokio::task::yield_now().await;
            drop(guard);
            drop(permit);
        }));
        // Meanwhile the spawner takes the state lock.
        *state.lock().await += 1;
        workers.pop().unwrap().await.unwrap();
    }
    // Elsewhere: the state lock, then a permit and the job.
    let s = state.clone();
    let (l, j) = (limit.clone(), job.clone());
    tokio::spawn(async move {
        let _s = s.lock().await;
        let _p = l.acquire().await.unwrap();
        let _j = j.lock().await;
    })
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn a_wrapper_lock_is_counted_once_with_its_exact_lines() {
    let lockdep = test_guard();
    let a = Arc::new(async_lockdep::Mutex::with_class("native-wrapped-a", ()));
    let b = Arc::new(async_lockdep::Mutex::with_class("native-wrapped-b", ()));
    let (a1, b1) = (a.clone(), b.clone());
    tokio::spawn(async move {
        let _a = a1.lock().await;
        let _b = b1.lock().await;
    })
    .await
    .unwrap();
    let held_line = line!() + 1;
    let _b = b.lock().await;
    let waited_line = line!() + 1;
    let _a = a.lock().await;

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(
        reports[0].class_names(),
        ["native-wrapped-b", "native-wrapped-a"]
    );
    let closing = &reports[0].dependencies[0];
    assert_eq!(
        (closing.held_at.line(), closing.waited_at.line()),
        (held_line, waited_line)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_lock_on_a_thread_against_a_task_is_reported() {
    let lockdep = test_guard();
    let la = line!() + 1;
    let a = Arc::new(Mutex::new(()));
    let lb = line!() + 1;
    let b = Arc::new(Mutex::new(()));
    let (a1, b1) = (a.clone(), b.clone());
    let thread = line!() + 2;
    std::thread::spawn(move || {
        let _a = a1.blocking_lock();
        let _b = b1.blocking_lock();
    })
    .join()
    .unwrap();
    let (a2, b2) = (a.clone(), b.clone());
    let task = line!() + 2;
    tokio::spawn(async move {
        let _b = b2.lock().await;
        let _a = a2.lock().await;
    })
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(class_lines(&reports[0]), [lb, la], "{}", reports[0]);
    // The lines of the `blocking_lock()` calls too: the first frame outside
    // tokio's `block_on`.
    let sites: Vec<_> = reports[0]
        .dependencies
        .iter()
        .map(|d| (d.held_at.line(), d.waited_at.line()))
        .collect();
    assert_eq!(
        sites,
        [(task, task + 1), (thread, thread + 1)],
        "{}",
        reports[0]
    );
}

#[test]
fn abba_that_really_hangs_is_reported_as_stuck_now_with_its_classes_and_lines() {
    let lockdep = DetectorBuilder::default()
        .panic_on_deadlock(false)
        .test_guard();
    // Made on the test's thread: a report found on the stuck runtime's
    // threads is this test's.
    let la = line!() + 1;
    let a = Arc::new(Mutex::new(()));
    let lb = line!() + 1;
    let b = Arc::new(Mutex::new(()));
    let (first, second) = (line!() + 12, line!() + 17);
    // The stuck side, on a thread of its own: it never ends.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let both = Arc::new(tokio::sync::Barrier::new(2));
            let (a1, b1, both1) = (a.clone(), b.clone(), both.clone());
            let one = tokio::spawn(async move {
                let _a = a1.lock().await;
                both1.wait().await;
                let _b = b1.lock().await;
            });
            let two = tokio::spawn(async move {
                let _b = b.lock().await;
                both.wait().await;
                let _a = a.lock().await;
            });
            let _ = (one.await, two.await);
        });
    });

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stuck = loop {
        // The process's reports (other tests' too): this one's, by its classes.
        let reports = lockdep.detector().reports();
        let ours = |r: &&Report| {
            let mut lines = class_lines(r);
            lines.sort_unstable();
            r.kind == ReportKind::DeadlockNow && lines == [la, lb]
        };
        if let Some(stuck) = reports.iter().find(ours) {
            break stuck.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `deadlock now` within 10 s: {reports:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Each task holds one lock (taken at its first line) and waits for the
    // other's (at its third line).
    let mut seen: Vec<_> = stuck
        .dependencies
        .iter()
        .map(|d| {
            (
                d.held.created_at.line(),
                d.held_at.line(),
                d.waited.created_at.line(),
                d.waited_at.line(),
            )
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [(la, first, lb, first + 2), (lb, second, la, second + 2)],
        "{stuck}"
    );
    let reports = lockdep.take_reports();
    assert_eq!(
        reports
            .iter()
            .filter(|r| r.kind == ReportKind::DeadlockNow)
            .count(),
        1,
        "{reports:#?}"
    );
    assert_eq!(cycles(&reports).len(), 1, "{reports:#?}");
}

#[test]
fn abba_that_really_hangs_fails_early_the_waiter_that_closes_it_gives_up() {
    // `panic_on_deadlock` is on by default: the waiter whose wait closes the
    // cycle panics (inside tokio's poll of its lock), so the other one goes on.
    let lockdep = test_guard();
    let la = line!() + 1;
    let a = Arc::new(Mutex::new(()));
    let lb = line!() + 1;
    let b = Arc::new(Mutex::new(()));
    let (done, ended) = std::sync::mpsc::channel();
    // On a thread of its own, in case it hangs.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let outcomes = runtime.block_on(async move {
            let both = Arc::new(tokio::sync::Barrier::new(2));
            let (a1, b1, both1) = (a.clone(), b.clone(), both.clone());
            let one = tokio::spawn(async move {
                let _a = a1.lock().await;
                both1.wait().await;
                let _b = b1.lock().await;
            });
            let two = tokio::spawn(async move {
                let _b = b.lock().await;
                both.wait().await;
                let _a = a.lock().await;
            });
            [one.await, two.await].map(|outcome| match outcome {
                Ok(()) => String::from("done"),
                Err(e) => match e.try_into_panic() {
                    Ok(payload) => payload
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_default(),
                    Err(e) => format!("{e}"),
                },
            })
        });
        let _ = done.send(outcomes);
    });
    let mut outcomes = ended
        .recv_timeout(Duration::from_secs(10))
        .expect("the deadlock was not broken within 10 s");
    outcomes.sort_unstable();
    assert_eq!(outcomes[1], "done", "{outcomes:?}");
    assert!(
        outcomes[0].starts_with("async-lockdep found a deadlock (tasks stuck now)")
            && outcomes[0].contains("this waiter gives up"),
        "{outcomes:?}"
    );

    let reports = lockdep.take_reports();
    let stuck: Vec<_> = reports
        .iter()
        .filter(|r| r.kind == ReportKind::DeadlockNow)
        .collect();
    assert_eq!(stuck.len(), 1, "{reports:#?}");
    let mut lines = class_lines(stuck[0]);
    lines.sort_unstable();
    assert_eq!(lines, [la, lb], "{}", stuck[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_twice_with_a_writer_queued_in_between_is_reported_with_its_lines() {
    let lockdep = test_guard();
    let lt = line!() + 1;
    let table = Arc::new(RwLock::new(0u32));
    let first_line = line!() + 1;
    let first = table.read().await;
    let t = table.clone();
    let writer = tokio::spawn(async move {
        *t.write().await += 1;
    });
    // Let the writer queue behind our read (tokio's RwLock is fair).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second_line = line!() + 1;
    let second = tokio::time::timeout(Duration::from_millis(200), table.read()).await;
    assert!(second.is_err(), "the queued writer really blocks the read");
    drop(first);
    writer.await.unwrap();

    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(report.kind, ReportKind::PossibleSelfDeadlock, "{report}");
    assert!(report.needs_writer, "{report}");
    assert_eq!(class_lines(report), [lt], "{report}");
    let dep = &report.dependencies[0];
    assert_eq!((dep.held_as, dep.waited_as), (Access::Read, Access::Read));
    assert_eq!(
        (dep.held_at.line(), dep.waited_at.line()),
        (first_line, second_line),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains("already holds this very lock for reading"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_racy_creation_under_a_lock_is_silent_and_one_class() {
    let lockdep = test_guard();
    // The seed's lazy creation race, with plain tokio: each racer holds its
    // own inode (one class) and makes the shared lock on first use; racers
    // that lose drop theirs, and all then lock the one that won.
    let lazy: Arc<tokio::sync::OnceCell<Mutex<u32>>> = Arc::new(tokio::sync::OnceCell::new());
    let made = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let li = line!() + 1;
    let inode_of = || Arc::new(Mutex::new(0u32));
    let ll = line!() + 10;
    let mut racers = Vec::new();
    for _ in 0..8 {
        let (lazy, made, inode) = (lazy.clone(), made.clone(), inode_of());
        racers.push(tokio::spawn(async move {
            let _inode = inode.lock().await; // racer_line
            let shared = lazy
                .get_or_init(|| async {
                    made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                    Mutex::new(0)
                })
                .await;
            // A racer's own lock, made and dropped under the inode: no edge.
            drop(Mutex::new(0u32));
            *shared.lock().await += 1; // racer_line + 10
        }));
    }
    for racer in racers {
        racer.await.unwrap();
    }
    assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 1);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");

    // One class, the line where it is made: the other order closes a cycle
    // between exactly these two classes.
    let reverse = line!() + 1;
    let shared = lazy.get().unwrap().lock().await;
    let _inode = inode_of().lock_owned().await;
    assert_eq!(*shared, 8);
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(class_lines(&reports[0]), [ll, li], "{}", reports[0]);
    // The lines: the test's thread took the lazy lock first with nothing
    // held, a look-up of its own (tasks spawned elsewhere took it before);
    // a racer waited for it with an inode held, a new chain. Which racer's
    // inode that was is a race, and only the first racer to take an inode
    // had its line looked up: that held line is known or unknown, never
    // another line.
    let racer_line = li + 6;
    let deps = &reports[0].dependencies;
    let report = &reports[0];
    assert_eq!(
        (deps[0].held_at.line(), deps[0].waited_at.line()),
        (reverse, reverse + 1),
        "{report}"
    );
    assert_eq!(deps[1].waited_at.line(), racer_line + 10, "{report}");
    assert!(
        [0, racer_line].contains(&deps[1].held_at.line()),
        "{report}"
    );
}

#[tokio::test]
async fn locks_made_by_default_share_one_class_at_tokios_line() {
    let lockdep = test_guard();
    // `Default` has no `#[track_caller]`: tokio gives its own `new` call as
    // the site of both, so they are one class, judged by instance order.
    let x: Arc<Mutex<u32>> = Arc::default();
    let y: Arc<Mutex<u32>> = Arc::new(Mutex::default());
    let (x1, y1) = (x.clone(), y.clone());
    tokio::spawn(async move {
        let _x = x1.lock().await;
        let _y = y1.lock().await;
    })
    .await
    .unwrap();
    let (x2, y2) = (x.clone(), y.clone());
    tokio::spawn(async move {
        let _y = y2.lock().await;
        let _x = x2.lock().await;
    })
    .await
    .unwrap();
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let classes = reports[0].classes();
    assert!(
        classes
            .iter()
            .all(|c| c.created_at.file().contains("tokio-")
                && c.created_at.file().ends_with("src/sync/mutex.rs")),
        "{}",
        reports[0]
    );
    assert_eq!(classes[0].created_at, classes[1].created_at);
    let text = reports[0].to_string();
    assert!(text.contains("was made inside tokio"), "{text}");
}
