//! Reports point at the right lines and use the names users gave.

mod common;

use std::sync::Arc;

use async_lockdep::{test_guard, Mutex, ReportKind, WorkQueue};

#[tokio::test]
async fn a_named_class_shows_each_instance_where_it_was_created() {
    let lockdep = test_guard();
    let first_made = line!() + 1;
    let a = Mutex::with_class("lines-account", ());
    let other = Mutex::with_class("lines-other", ());
    let second_made = line!() + 1;
    let b = Mutex::with_class("lines-account", ()); // same class, made here
    {
        let _a = a.lock().await;
        let _o = other.lock().await; // account -> other
    }
    {
        let _o = other.lock().await;
        let _b = b.lock().await; // other -> account
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let closing = &reports[0].dependencies[0];
    assert_eq!(closing.waited.name, "lines-account");
    assert_eq!(closing.waited.created_at.line(), second_made);
    let before = &reports[0].dependencies[1];
    assert_eq!(before.held.created_at.line(), first_made);
    let text = reports[0].to_string();
    assert!(
        text.contains(&format!("(created at {}:{second_made}:", file!())),
        "{text}"
    );
}

#[tokio::test]
async fn a_work_queue_is_shown_by_its_name() {
    let lockdep = test_guard();
    let inode = Arc::new(Mutex::with_class("lines-inode", ()));
    let queue = WorkQueue::new("lines-flusher");
    let i = inode.clone();
    queue
        .queue(async move {
            let _i = i.lock().await; // flusher -> inode
        })
        .await
        .unwrap();
    {
        let _i = inode.lock().await;
        queue.flush().await.unwrap(); // inode -> flusher
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    let mut classes = reports[0].class_names();
    classes.sort();
    assert_eq!(classes, ["lines-flusher", "lines-inode"]);
}

#[tokio::test]
async fn the_test_body_is_named_after_its_thread() {
    let lockdep = test_guard();
    let a = Mutex::with_class("lines-thread-a", ());
    let b = Mutex::with_class("lines-thread-b", ());
    common::abba(&a, &b).await;
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let text = reports[0].to_string();
    assert!(
        text.contains("thread `the_test_body_is_named_after_its_thread`"),
        "{text}"
    );
}

#[tokio::test]
async fn a_plain_await_of_a_join_handle_says_its_line_is_unknown_and_join_records_it() {
    // It watches the tasks stay stuck: a guard's default now makes one
    // waiter give up.
    let lockdep = async_lockdep::Detector::builder()
        .panic_on_deadlock(false)
        .test_guard();
    let state = Arc::new(Mutex::with_class("lines-join-state", ()));
    let other = Arc::new(Mutex::with_class("lines-join-other", ()));
    let s = state.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let spawned = line!() + 1;
    let job = async_lockdep::spawn_named("lines-job", async move {
        drop(s.lock().await); // job -> state
        done_tx.send(()).unwrap();
    });
    done_rx.await.unwrap(); // the job is done with `state`: no real deadlock
    {
        let _s = state.lock().await;
        job.await.unwrap(); // state -> job, at an unknown line
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let text = reports[0].to_string();
    assert!(
        text.contains(&format!(
            "at an unknown `.await` (use `handle.join().await` to record it) of the task \
             spawned at {}:{spawned}:",
            file!()
        )),
        "{text}"
    );

    let o = other.clone();
    let job = async_lockdep::spawn_named("lines-job-2", async move {
        let _o = o.lock().await; // job-2 -> other
    });
    let _o = other.lock().await;
    let joined = line!() + 1;
    let outcome = tokio::time::timeout(std::time::Duration::from_millis(50), job.join()).await;
    assert!(outcome.is_err(), "it waits for `other`, which we hold");
    let reports = lockdep.take_reports();
    let cycle = reports
        .iter()
        .find(|r| r.kind == ReportKind::CircularDependency)
        .expect("other -> job-2 -> other");
    let join = cycle
        .dependencies
        .iter()
        .find(|d| d.waited_as == async_lockdep::Access::Join)
        .expect("the join is part of the cycle");
    assert_eq!(join.waited_at.line(), joined);
    // A spawned task's class shows its spawn site as its creation site.
    assert_eq!(join.waited.created_at.file(), file!());
}
