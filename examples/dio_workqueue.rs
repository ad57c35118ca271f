//! The LKML "possible deadlock in `__generic_file_fsync`" scenario, both halves.
//!
//! 1. Several writers race to create the direct-I/O completion queue lazily,
//!    each holding its inode lock. All but one lose and destroy the queue they
//!    just built — while holding the inode lock. The losers' queues never ran
//!    anything, so no deadlock is possible and nothing is reported (the
//!    kernel's lockdep reported a false positive here).
//! 2. The winning queue then runs completion work that takes the inode lock,
//!    and fsync flushes the queue while holding the inode lock. That one *can*
//!    deadlock, and it is reported.
//!
//! Run it with `cargo run --example dio_workqueue`.

use std::sync::Arc;

use async_lockdep::{Detector, LazyWorkQueue, Mutex};
use tokio::sync::Barrier;

#[derive(Default)]
struct Inode {
    size: u64,
}

fn inode() -> Arc<Mutex<Inode>> {
    Arc::new(Mutex::with_class("inode", Inode::default()))
}

/// A direct-I/O write: under the inode lock, make sure the completion queue exists.
async fn dio_write(dio: &LazyWorkQueue, inode: &Mutex<Inode>, barrier: &Barrier) {
    let mut inode = inode.lock().await;
    barrier.wait().await; // every writer is here before anyone creates the queue
    dio.get_or_create().await;
    inode.size += 4096;
}

#[tokio::main]
async fn main() {
    // Turn detection on for the process; reports are printed to stderr the
    // moment they are found.
    let detector = Detector::new();
    detector.enable();

    let dio = Arc::new(LazyWorkQueue::with_class("dio", "dio/sda1"));
    let barrier = Arc::new(Barrier::new(8));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let (dio, barrier) = (dio.clone(), barrier.clone());
        writers.push(async_lockdep::spawn(async move {
            dio_write(&dio, &inode(), &barrier).await;
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    println!(
        "Half 1: {} racers built a queue, {} losers destroyed theirs under the inode lock.",
        dio.created(),
        dio.losers_destroyed()
    );
    println!(
        "        reports: {} (unused queues add no dependency)\n",
        detector.reports().len()
    );

    // Half 2: the winner runs a completion that takes the inode lock ...
    let file = inode();
    let queue = dio.get().expect("created");
    let f = file.clone();
    queue
        .queue(async move {
            f.lock().await.size += 1; // end_io: update the inode
        })
        .await
        .expect("completion");
    // ... and fsync flushes the queue while holding the inode lock.
    {
        let _inode = file.lock().await;
        queue.flush().await.expect("flush");
    }
    let reports = detector.reports();
    println!(
        "Half 2: reports: {} (printed above): {:?}",
        reports.len(),
        reports.iter().map(|r| r.class_names()).collect::<Vec<_>>()
    );
}
