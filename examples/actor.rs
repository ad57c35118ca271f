//! The actor pattern: a caller holds `state` while it awaits a `oneshot`
//! reply from an actor that locks `state` before it replies. This run does
//! not deadlock (the request that needs the state arrives while the state is
//! free), but another interleaving does; the detector reports it.
//!
//! ```sh
//! cargo run --example actor
//! ```

use std::sync::Arc;

use async_lockdep::sync::{mpsc, oneshot, Mutex};

/// A request: whether the actor needs the state to answer, and the reply.
type Request = (bool, oneshot::Sender<u64>);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let detector = async_lockdep::Detector::new();
    detector.enable();

    let state = Arc::new(Mutex::with_class("state", 40u64));
    let (requests, mut inbox) = mpsc::unbounded_channel::<Request>();
    let actor_state = state.clone();
    let actor = tokio::spawn(async move {
        while let Some((needs_state, reply)) = inbox.recv().await {
            let value = if needs_state {
                *actor_state.lock().await // the actor locks `state` ...
            } else {
                0
            };
            let _ = reply.send(value + 2); // ... before it replies
        }
    });

    let ask = |needs_state| {
        let (tx, rx) = oneshot::channel_with_class("reply");
        requests.send((needs_state, tx)).unwrap();
        rx
    };
    // A request that needs the state, while nobody holds it: answered.
    println!("answer: {}", ask(true).await.unwrap());
    // A caller that holds the state while it awaits a reply (this request
    // happens not to need it, so this run goes on).
    let held = state.lock().await;
    println!("answer: {}", ask(false).await.unwrap());
    drop(held);

    drop(requests);
    actor.await.unwrap();
    let reports = detector.reports();
    let cycles: Vec<Vec<&str>> = reports.iter().map(|r| r.class_names()).collect();
    println!(
        "\nasync-lockdep found {} possible deadlock(s): {cycles:?}",
        cycles.len()
    );
}
