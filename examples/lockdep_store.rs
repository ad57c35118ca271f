//! Prints every cycle and the DOT graph of a test run's store: the
//! dependencies the processes of one `cargo nextest run` (or of a
//! `cargo test` with `ASYNC_LOCKDEP_DIR`) shared.
//!
//! ```sh
//! cargo run --example lockdep_store -- target/debug/async-lockdep/<run id>
//! cargo run --example lockdep_store            # the newest run under target/debug/async-lockdep
//! cargo run --example lockdep_store -- <dir> > graph.dot 2> cycles.txt
//! ```
//!
//! Cycles go to stderr as lockdep reports, the DOT graph to stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use async_lockdep::RunStore;

/// The most recently modified run directory under `base`.
fn newest_run(base: &Path) -> Option<PathBuf> {
    std::fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

fn main() -> ExitCode {
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => match newest_run(Path::new("target/debug/async-lockdep")) {
            Some(dir) => dir,
            None => {
                eprintln!(
                    "usage: lockdep_store <run directory>\n\
                     (no run found under target/debug/async-lockdep: run `cargo nextest run` first)"
                );
                return ExitCode::from(2);
            }
        },
    };
    let store = match RunStore::open(&dir) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("cannot read {}: {error}", dir.display());
            return ExitCode::from(2);
        }
    };
    let cycles = store.cycles();
    eprintln!(
        "{}: {} dependencies, {} cycle(s)",
        dir.display(),
        store.dependency_count(),
        cycles.len()
    );
    for cycle in &cycles {
        eprintln!("\n{cycle}");
    }
    print!("{}", store.to_dot());
    if cycles.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
