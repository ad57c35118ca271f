//! Holds that move: a dependency recorded while an owned guard or permit is
//! held is provisional, committed when the context that took it releases it
//! and dropped when another context does. Correct programs that hand a guard
//! or permit to a task stay silent; an owned guard used like a plain one is
//! still checked.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_lockdep::{spawn_named, test_guard, Mutex, ReportKind, Semaphore};

#[tokio::test]
async fn guard_moved_into_the_job_that_releases_it_is_silent() {
    let lockdep = test_guard();
    let state = Arc::new(Mutex::with_class("moved-state", 0u32));
    let guard = state.clone().lock_owned().await; // taken here...
    let s = state.clone();
    let job = spawn_named("moved-job", async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(guard); // ...released by the job
        *s.lock().await += 1;
    });
    job.await.unwrap();
    assert_eq!(*state.lock().await, 1);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_permits_moved_into_tasks_are_silent() {
    let lockdep = test_guard();
    let limiter = Arc::new(Semaphore::with_class("moved-limiter", 2));
    let state = Arc::new(Mutex::with_class("moved-limited-state", 0u32));
    let mut jobs = Vec::new();
    for _ in 0..4 {
        let permit = limiter.clone().acquire_owned().await.unwrap();
        let s = state.clone();
        jobs.push(spawn_named("moved-limited-job", async move {
            let _permit = permit;
            *s.lock().await += 1;
        }));
    }
    for job in jobs {
        job.await.unwrap();
    }
    {
        // Elsewhere: the state, then a permit.
        let _s = state.lock().await;
        let _p = limiter.acquire().await.unwrap();
    }
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

#[tokio::test]
async fn owned_guard_released_where_it_was_taken_is_checked_at_release() {
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("owned-a", ()));
    let b = Arc::new(Mutex::with_class("owned-b", ()));
    {
        let _b = b.lock().await;
        let _a = a.lock().await; // b -> a
    }
    let taken = line!() + 1;
    let guard = a.clone().lock_owned().await;
    let waited = line!() + 1;
    let g = b.lock().await; // a -> b, provisional while `guard` lives
    drop(g);
    assert!(lockdep.take_reports().is_empty(), "not before release");
    drop(guard); // released where it was taken: committed, closes the cycle
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(reports[0].class_names(), ["owned-a", "owned-b"]);
    let closing = &reports[0].dependencies[0];
    assert_eq!(
        (closing.held_at.line(), closing.waited_at.line()),
        (taken, waited)
    );
}

#[tokio::test]
async fn owned_guard_used_like_a_plain_one_before_an_inversion_is_reported() {
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("owned-first-a", ()));
    let b = Arc::new(Mutex::with_class("owned-first-b", ()));
    {
        let _a = a.clone().lock_owned().await;
        let _b = b.lock().await; // a -> b, committed when `_a` drops here
    }
    let _b = b.lock().await;
    let _a = a.lock().await; // b -> a closes the cycle
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].class_names(), ["owned-first-b", "owned-first-a"]);
}

#[tokio::test]
async fn owned_permit_moved_to_a_task_while_the_spawner_joins_is_silent() {
    let lockdep = test_guard();
    let pool = Arc::new(Semaphore::with_class("moved-pool", 1));
    let permit = pool.clone().acquire_owned().await.unwrap();
    let p = pool.clone();
    let job = spawn_named("moved-pool-job", async move {
        drop(permit);
        let _again = p.acquire().await.unwrap();
    });
    job.await.unwrap();
    // The spawner waits for the pool afterwards: no pool -> job -> pool cycle.
    let _p = pool.acquire().await.unwrap();
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
}

/// Thousands of short tasks take owned guards and permits and hand them to
/// other tasks and to a plain thread, which release them after their takers
/// have ended, while the engine's records of ended tasks are swept and
/// reused. Every release must find its record (a guard points into it), and
/// at the end nothing is held, nothing is reported, and every lock and
/// permit is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_released_after_their_takers_ended_leave_nothing_behind() {
    // Thousands of pending waits make every other test's live check in this
    // process run a moment later: a process of its own.
    if common::own_process() {
        return;
    }
    const TAKERS: usize = 5_000; // past 64 records a shard, so records are swept
    let lockdep = test_guard();
    let locks: Arc<Vec<Mutex<u64>>> = Arc::new(
        (0..8)
            .map(|_| Mutex::with_class("churn-lock", 0u64))
            .collect(),
    );
    let outer = Arc::new(Mutex::with_class("churn-outer", 0u64));
    let pool = Arc::new(Semaphore::with_class("churn-pool", 16));
    let (to_thread, from_tasks) = std::sync::mpsc::channel::<Box<dyn Send>>();
    let dropper = std::thread::spawn(move || {
        for hold in from_tasks {
            drop(hold); // released on a plain thread, in another context
        }
    });
    let (to_task, mut from_takers) = tokio::sync::mpsc::unbounded_channel::<Box<dyn Send>>();
    let releaser = tokio::spawn(async move {
        while let Some(hold) = from_takers.recv().await {
            tokio::task::yield_now().await;
            drop(hold); // released by another task
        }
    });
    let mut takers = Vec::new();
    for i in 0..TAKERS {
        let (locks, outer, pool) = (locks.clone(), outer.clone(), pool.clone());
        let (to_thread, to_task) = (to_thread.clone(), to_task.clone());
        takers.push(tokio::spawn(async move {
            let permit = pool.acquire_owned().await.unwrap();
            {
                let _outer = outer.lock().await; // plain holds, in order
                *locks[i % 8].lock().await += 1;
            }
            let guard = Arc::new(Mutex::with_class("churn-owned", i))
                .lock_owned()
                .await;
            if i % 2 == 0 {
                to_thread.send(Box::new(permit)).unwrap();
                to_task.send(Box::new(guard)).unwrap();
            } else {
                to_task.send(Box::new(permit)).unwrap();
                to_thread.send(Box::new(guard)).unwrap();
            }
        }));
    }
    for taker in takers {
        taker.await.unwrap();
    }
    drop((to_thread, to_task));
    releaser.await.unwrap();
    tokio::task::spawn_blocking(move || dropper.join().unwrap())
        .await
        .unwrap();
    assert_eq!(pool.available_permits(), 16);
    assert!(outer.try_lock().is_ok());
    let total: u64 = locks.iter().map(|l| *l.try_lock().unwrap()).sum();
    assert_eq!(total, TAKERS as u64);
    let reports = lockdep.take_reports();
    assert!(reports.is_empty(), "{reports:#?}");
    let status = async_lockdep::Detector::new().status();
    assert_eq!(status.contexts_holding_locks, 0, "{status:?}");
}
