//! Instructions per `lock().await` + drop of an uncontended mutex, counted
//! with callgrind, on a current-thread runtime (the body of `block_on`, a
//! thread context):
//!
//! | variant        | what                                                        |
//! |----------------|-------------------------------------------------------------|
//! | `plain`        | `tokio::sync::Mutex`                                        |
//! | `off`          | `async_lockdep::Mutex`, detection off (never enabled)       |
//! | `on`           | `async_lockdep::Mutex`, detection on, chain seen            |
//! | `plain_nested` | two `tokio::sync::Mutex`es, A then B                        |
//! | `off_nested`   | two `async_lockdep::Mutex`es, A then B, detection off       |
//! | `on_nested`    | two `async_lockdep::Mutex`es, A then B, detection on, seen  |
//! | `graph_small`  | the class graph, 5 000 classes / 45 000 dependencies: per new dependency |
//! | `graph_large`  | the same at 50 000 / 450 000 (`RATIO instructions/graph_scale`) |
//!
//! The graph variants learn the workload of `benches/graph.rs`'s scale check
//! (a random DAG in random order, ten dependencies per class) up to 90%,
//! then `N` iterations learn none of the last 10% and `2N` all of it: the
//! count per new dependency, free of the cache misses that dominate its
//! time at the larger size.
//!
//! Built without the `detect` feature (`cargo bench --no-default-features
//! --bench instructions`), `off` and `off_nested` measure the compiled-out
//! wrappers and print as `compiled_out` / `compiled_out_nested`.
//!
//! `instructions VARIANT N` runs one variant: set-up (runtime, locks, turning
//! detection on, one warm-up iteration so the chain is seen), then `N`
//! iterations. Run under callgrind with `N` and `2N` iterations, the set-up
//! and process start-up cancel out: per iteration = (I(2N) - I(N)) / N.
//! Run by `cargo bench` (`--bench`, no variant), it does exactly that for
//! every variant when `valgrind` is on the PATH and prints the table as
//! `INSTRUCTIONS <variant> = <n> per lock+release` lines (nested: per A+B
//! pair); under `cargo test --benches` it runs each variant a few times.
//!
//! Reproduce (from the repository root):
//!
//! ```sh
//! # this commit
//! cargo bench --bench instructions
//! # the same by hand, for one variant (the binary's path is printed by --no-run)
//! cargo bench --bench instructions --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.1 target/release/deps/instructions-HASH on 50000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.2 target/release/deps/instructions-HASH on 100000
//! #   per op = (Collected of the second - Collected of the first) / 50000
//!
//! # before the refactor to one engine per process (8319a7b): there a
//! # detector was on only as the thread's default dispatcher, for locks made
//! # after it, so `turn_on` below becomes `Box::new(detector.set_default())`
//! git worktree add /tmp/before 8319a7b
//! sed 's|Box::new(detector.enable()) // turn_on|Box::new(detector.set_default())|' \
//!     benches/instructions.rs > /tmp/before/benches/instructions.rs
//! printf '\n[[bench]]\nname = "instructions"\nharness = false\n' >> /tmp/before/Cargo.toml
//! (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo bench --bench instructions)
//! git worktree remove --force /tmp/before
//! ```

use std::any::Any;
use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use async_lockdep::Detector;

mod common;

/// Iterations of the shorter run; the longer one does twice as many.
const N: u64 = 50_000;

const VARIANTS: [&str; 8] = [
    "plain",
    "off",
    "on",
    "plain_nested",
    "off_nested",
    "on_nested",
    "graph_small",
    "graph_large",
];

/// The graph variants: classes, then dependencies (ten per class) learned
/// before the measured ones, as `benches/graph.rs`'s scale check.
fn graph_size(variant: &str) -> Option<u32> {
    match variant {
        "graph_small" => Some(5_000),
        "graph_large" => Some(50_000),
        _ => None,
    }
}

/// New dependencies a graph variant learns in the measured part, for
/// `iters` (the variant learns the first 90% of its workload, then this
/// many of the last 10%: `N` iterations none of it, `2N` all of it, as the
/// timed scale check in `benches/graph.rs`).
fn graph_edges(classes: u32, iters: u64) -> usize {
    let tail = u64::from(classes); // 10% of ten per class
    (tail * iters.saturating_sub(N) / N).min(tail) as usize
}

/// Turns detection on and returns what must stay alive while it is used.
/// (At 8319a7b: `Box::new(detector.set_default())`, see above.)
fn turn_on(detector: &Detector) -> Box<dyn Any> {
    Box::new(detector.enable()) // turn_on
}

/// One lock + release, `iters` times.
macro_rules! one_lock {
    ($a:expr, $iters:expr) => {{
        let a = &$a;
        for _ in 0..$iters {
            let mut g = a.lock().await;
            *g = black_box(g.wrapping_add(1));
            drop(g);
        }
    }};
}

/// A then B, released B then A, `iters` times.
macro_rules! two_nested {
    ($a:expr, $b:expr, $iters:expr) => {{
        let (a, b) = (&$a, &$b);
        for _ in 0..$iters {
            let ga = a.lock().await;
            let mut gb = b.lock().await;
            *gb = black_box(gb.wrapping_add(1));
            drop(gb);
            drop(ga);
        }
    }};
}

/// A graph variant: `classes` classes, the first 90% of the workload's
/// dependencies, then `graph_edges(classes, iters)` more, each a new one.
fn run_graph(classes: u32, iters: u64) {
    use async_lockdep::__private::{Graph, Insert};
    let edges = classes as usize * 10;
    let list = common::dag_workload(classes, edges, 0, 0x5EED ^ u64::from(classes));
    let (known, tail) = list.split_at(edges - classes as usize);
    let mut graph = Graph::<()>::default();
    for &(from, to) in known {
        graph.insert(from, to, || ());
    }
    for &(from, to) in &tail[..graph_edges(classes, iters)] {
        let answer = graph.insert(from, to, || ());
        assert!(matches!(answer, Insert::New), "{answer:?}");
    }
}

/// Runs `variant`: set-up, one warm-up iteration (checked), `iters` more.
fn run(variant: &str, iters: u64) {
    if let Some(classes) = graph_size(variant) {
        return run_graph(classes, iters);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let detector = Detector::new();
    let on = variant.starts_with("on");
    // Kept alive to the end; the locks are made after it.
    let _on = on.then(|| turn_on(&detector));
    runtime.block_on(async {
        match variant {
            "plain" => {
                let a = tokio::sync::Mutex::new(0u64);
                one_lock!(a, 1 + iters);
            }
            "plain_nested" => {
                let (a, b) = (tokio::sync::Mutex::new(0u64), tokio::sync::Mutex::new(0u64));
                two_nested!(a, b, 1 + iters);
            }
            "off" | "on" => {
                let a = async_lockdep::Mutex::new(0u64);
                {
                    let _g = a.lock().await;
                    assert_eq!(detector.held_locks().len(), usize::from(on), "{variant}");
                }
                one_lock!(a, iters);
            }
            "off_nested" | "on_nested" => {
                let a = async_lockdep::Mutex::new(0u64);
                let b = async_lockdep::Mutex::new(0u64);
                two_nested!(a, b, 1);
                assert_eq!(detector.status().dependencies, usize::from(on), "{variant}");
                two_nested!(a, b, iters);
            }
            _ => panic!("unknown variant {variant:?}: one of {VARIANTS:?}"),
        }
    });
    assert!(!detector.has_reports(), "{:?}", detector.reports());
}

/// Instructions callgrind counts for `exe VARIANT ITERS`.
fn callgrind(exe: &Path, variant: &str, iters: u64) -> Result<u64, String> {
    let out_file = std::env::temp_dir().join(format!(
        "instructions.callgrind.{}.{variant}.{iters}",
        std::process::id()
    ));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(exe)
        .args([variant, &iters.to_string()])
        .env_remove("ASYNC_LOCKDEP")
        .output()
        .map_err(|e| format!("valgrind: {e}"))?;
    let _ = std::fs::remove_file(&out_file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("{variant} {iters}: {}\n{stderr}", output.status));
    }
    stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("{variant} {iters}: no `Collected :` line in\n{stderr}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let [variant, iters] = positional[..] {
        if let (true, Ok(iters)) = (VARIANTS.contains(&variant), iters.parse()) {
            run(variant, iters);
            return;
        }
    }
    let exe = std::env::current_exe().expect("own path");
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`: a smoke run of each variant, each in a
        // process of its own (detection, once on, stays on).
        for variant in VARIANTS {
            if !cfg!(feature = "detect") && variant.starts_with("on") {
                continue; // compiled out: nothing to turn on
            }
            let status = Command::new(&exe)
                .args([variant, "10"])
                .env_remove("ASYNC_LOCKDEP")
                .status()
                .expect("run a variant");
            assert!(status.success(), "{variant}: {status}");
        }
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("instructions: valgrind not found, nothing measured (see the top of benches/instructions.rs)");
        return;
    }
    // A criterion-style filter (`cargo bench -- FILTER`) selects variants.
    let filter = common::filter().unwrap_or_default();
    // Without the `detect` feature (`--no-default-features`) the wrapper
    // variants measure the compiled-out wrappers; there is no "on".
    let selected: Vec<&str> = VARIANTS
        .into_iter()
        .filter(|v| cfg!(feature = "detect") || !v.starts_with("on"))
        .filter(|v| format!("instructions/{v}").contains(&filter))
        .collect();
    if selected.is_empty() {
        return;
    }
    println!(
        "instructions: callgrind, {N} and {} iterations per variant",
        2 * N
    );
    let mut graph_per_edge = Vec::new();
    for variant in selected {
        match (callgrind(&exe, variant, N), callgrind(&exe, variant, 2 * N)) {
            (Ok(short), Ok(long)) => {
                let ops = match graph_size(variant) {
                    Some(classes) => graph_edges(classes, 2 * N) - graph_edges(classes, N),
                    None => N as usize,
                };
                let per_op = (long as f64 - short as f64) / ops as f64;
                if graph_size(variant).is_some() {
                    graph_per_edge.push(per_op);
                }
                let what = if graph_size(variant).is_some() {
                    "per new dependency"
                } else if variant.ends_with("nested") {
                    "per A+B lock+release"
                } else {
                    "per lock+release"
                };
                let variant = match variant {
                    "off" if !cfg!(feature = "detect") => "compiled_out",
                    "off_nested" if !cfg!(feature = "detect") => "compiled_out_nested",
                    v => v,
                };
                println!("INSTRUCTIONS {variant} = {per_op:.1} {what} (I({}) = {long}, I({N}) = {short})", 2 * N);
            }
            (Err(e), _) | (_, Err(e)) => println!("INSTRUCTIONS {variant}: failed: {e}"),
        }
    }
    if let [small, large] = graph_per_edge[..] {
        common::print_ratio(
            "instructions/graph_scale",
            large / small,
            "instructions per new dependency, 50 000 / 500 000 vs 5 000 / 50 000",
            common::Target::AtMost(2.0),
        );
    }
}
