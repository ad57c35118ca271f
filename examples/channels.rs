//! A lock held across a send into a bounded channel whose consumer needs
//! that lock: the child-process handle of a public bug report.
//!
//! `kill()` reads the child's state and, still holding the read guard, sends
//! a command into the child's command channel (capacity 1). The child's task
//! takes the state's write lock before it receives the next command. This
//! run never fills the channel, so it does not hang, but once the channel is
//! full the three wait for each other; the detector reports the cycle.
//!
//! Run it with `cargo run --example channels`.

use std::sync::Arc;

use async_lockdep::{mpsc, Detector, RwLock};

#[derive(Debug, Default)]
struct ChildState {
    exited: bool,
}

#[tokio::main]
async fn main() {
    let detector = Detector::new();
    detector.enable(); // reports are printed to stderr when found

    let state = Arc::new(RwLock::with_class("child state", ChildState::default()));
    let (commands, mut inbox) = mpsc::channel_with_class::<&'static str>("child commands", 1);

    let s = state.clone();
    let child = tokio::spawn(async move {
        while let Some(command) = inbox.recv().await {
            let mut state = s.write().await; // before the next recv
            state.exited = command == "kill";
        }
    });

    // kill(): the read guard is still alive during the send.
    {
        let current = state.read().await;
        if !current.exited {
            commands.send("kill").await.expect("child alive");
        }
    }
    drop(commands);
    child.await.expect("child task");

    let reports = detector.reports();
    println!(
        "the child exited: {}; async-lockdep found {} possible deadlock(s), printed above: {:?}",
        state.read().await.exited,
        reports.len(),
        reports.iter().map(|r| r.class_names()).collect::<Vec<_>>()
    );
}
