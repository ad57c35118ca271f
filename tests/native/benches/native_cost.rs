//! The cost of one `lock().await` + drop of an uncontended mutex, built with
//! `--cfg tokio_unstable` and tokio's `tracing` feature, on a
//! current-thread runtime (the body of `block_on`, a thread context):
//!
//! | variant   | what                                                              |
//! |-----------|-------------------------------------------------------------------|
//! | `plain`   | `tokio::sync::Mutex`, no subscriber                               |
//! | `native`  | `tokio::sync::Mutex`, a registry with the detector's layer (on)   |
//! | `wrapper` | `async_lockdep::Mutex`, the same registry (its tokio lock's spans and events reach the layer and are ignored) |
//!
//! `native_cost VARIANT N` runs one variant: set-up, one warm-up lock (the
//! chain is seen), then `N` iterations, and prints the time per iteration.
//! Run by `cargo bench` (no variant), it runs every variant for the time
//! per lock, and, when `valgrind` is on the PATH, under callgrind with `N`
//! and `2N` iterations: per iteration = (I(2N) - I(N)) / N, set-up and
//! start-up cancelled out. Prints `NATIVE_COST <variant> = ...` lines.
//!
//! ```sh
//! cd tests/native && env -u RUSTFLAGS cargo bench --bench native_cost
//! ```

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const N: u64 = 20_000;
const TIMED: u64 = 200_000;
const VARIANTS: [&str; 3] = ["plain", "native", "wrapper"];

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

/// Runs `iters` iterations of `variant`; returns the time per iteration in ns.
fn run(variant: &str, iters: u64) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let detector = async_lockdep::Detector::new();
    let _default = (variant != "plain").then(|| {
        detector.enable();
        tracing_subscriber::registry()
            .with(detector.layer())
            .set_default()
    });
    let elapsed = runtime.block_on(async {
        match variant {
            "plain" | "native" => {
                let a = tokio::sync::Mutex::new(0u64);
                one_lock!(a, 1);
                let start = Instant::now();
                one_lock!(a, iters);
                start.elapsed()
            }
            "wrapper" => {
                let a = async_lockdep::Mutex::new(0u64);
                one_lock!(a, 1);
                let start = Instant::now();
                one_lock!(a, iters);
                start.elapsed()
            }
            _ => panic!("unknown variant {variant:?}: one of {VARIANTS:?}"),
        }
    });
    if variant == "native" {
        // The front end saw the lock: it is held while a guard lives.
        let a = tokio::sync::Mutex::new(());
        let _g = runtime.block_on(a.lock());
        assert_eq!(detector.held_locks().len(), 1, "the front end is on");
    }
    assert!(!detector.has_reports(), "{:?}", detector.reports());
    elapsed.as_nanos() as f64 / iters.max(1) as f64
}

fn callgrind(exe: &Path, variant: &str, iters: u64) -> Result<u64, String> {
    let out_file = std::env::temp_dir().join(format!(
        "native_cost.callgrind.{}.{variant}.{iters}",
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
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let [variant, iters] = positional[..] {
        let ns = run(variant, iters.parse().expect("N"));
        println!("{variant}: {ns:.1} ns per lock+release");
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`: each variant, a few times.
        for variant in VARIANTS {
            run(variant, 10);
        }
        return;
    }
    // Interleaved rounds, the median of each.
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..5 {
        for (i, variant) in VARIANTS.iter().enumerate() {
            times[i].push(run(variant, TIMED));
        }
    }
    for (i, variant) in VARIANTS.iter().enumerate() {
        times[i].sort_by(f64::total_cmp);
        println!(
            "NATIVE_COST {variant} = {:.1} ns per lock+release (median of 5)",
            times[i][2]
        );
    }
    let exe = std::env::current_exe().unwrap();
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("(no valgrind on the PATH: no instruction counts)");
        return;
    }
    for variant in VARIANTS {
        match (callgrind(&exe, variant, N), callgrind(&exe, variant, 2 * N)) {
            (Ok(one), Ok(two)) => println!(
                "NATIVE_COST {variant} = {:.1} instructions per lock+release (I({}) = {two}, I({N}) = {one})",
                (two as f64 - one as f64) / N as f64,
                2 * N
            ),
            (Err(e), _) | (_, Err(e)) => println!("NATIVE_COST {variant}: {e}"),
        }
    }
}
