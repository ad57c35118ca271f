//! Helpers shared by the benches: criterion settings, bench-or-test mode, and
//! the interleaved manual timing behind the `TIME` / `RATIO` lines each bench
//! prints after criterion's own run.
#![allow(dead_code)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// `cargo bench` passes `--bench`; `cargo test --benches` (or
/// `cargo bench -- --test`) runs each bench once as a smoke test instead.
pub fn bench_mode() -> bool {
    let mut bench = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--bench" => bench = true,
            "--test" | "--list" => return false,
            _ => {}
        }
    }
    bench
}

/// Whether the manual comparison (the `TIME` / `RATIO` lines) should run:
/// in bench mode, not under `--profile-time` (profiling one bench), and for
/// the cases whose name contains the criterion filter, if one was given.
pub fn compare_mode(case: &str) -> bool {
    if !bench_mode() || std::env::args().any(|a| a == "--profile-time") {
        return false;
    }
    match filter() {
        Some(filter) => case.contains(&filter),
        None => true,
    }
}

/// Criterion's positional `FILTER` argument, if any.
pub fn filter() -> Option<String> {
    // Criterion 0.8's options that take a value.
    const TAKES_VALUE: [&str; 20] = [
        "-c",
        "--color",
        "--colour",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--format",
        "--profile-time",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if TAKES_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            return Some(arg);
        }
    }
    None
}

/// `cargo bench -- --quick`: shorter manual comparisons too.
pub fn quick_mode() -> bool {
    std::env::args().any(|a| a == "--quick")
}

/// Short, fixed settings so the four benches finish in a few minutes on two
/// cores; command-line flags (`--measurement-time`, `--sample-size`, ...)
/// still override them.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}

/// A timed routine: runs `iters` iterations and returns the time they took
/// (criterion's `iter_custom` contract).
pub type Routine<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// Iterations that make `routine` take about `target`.
pub fn calibrate(routine: &mut Routine<'_>, target: Duration) -> u64 {
    let mut iters = 1u64;
    loop {
        let took = routine(iters);
        if took >= target / 8 || iters >= 1 << 40 {
            let per_iter = took.as_secs_f64() / iters as f64;
            return ((target.as_secs_f64() / per_iter.max(1e-12)) as u64).max(1);
        }
        iters *= 4;
    }
}

/// Runs every routine `rounds` times with the same `iters`, interleaved
/// (round-robin, so drift in machine load hits all variants alike), and
/// returns the median nanoseconds per iteration of each.
pub fn medians(rounds: usize, iters: u64, routines: &mut [Routine<'_>]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); routines.len()];
    for _ in 0..rounds {
        for (routine, samples) in routines.iter_mut().zip(&mut samples) {
            samples.push(routine(iters).as_nanos() as f64 / iters as f64);
        }
    }
    samples.into_iter().map(median).collect()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A ratio target: `AtMost(1.1)` for slowdowns, `AtLeast(0.7)` for
/// throughputs and speedups.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    None,
}

/// Prints `RATIO <name> = <ratio>x <versus> (target ...: met|MISSED)`.
pub fn print_ratio(name: &str, ratio: f64, versus: &str, target: Target) {
    let verdict = match target {
        Target::AtMost(t) => format!(" (target <= {t:.2}x: {})", met(ratio <= t)),
        Target::AtLeast(t) => format!(" (target >= {t:.2}x: {})", met(ratio >= t)),
        Target::None => String::new(),
    };
    println!("RATIO {name} = {ratio:.2}x {versus}{verdict}");
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// Resident set size of this process, in bytes, from `/proc/self/statm`.
/// Reads into a stack buffer: no heap allocation, so reading it does not
/// itself move the figures it reports (a small allocation left in a freed
/// region can keep glibc from reusing that region).
pub fn resident_bytes() -> u64 {
    use std::io::Read;
    let page_size = page_size();
    let mut buf = [0u8; 256];
    let len = std::fs::File::open("/proc/self/statm")
        .and_then(|mut f| f.read(&mut buf))
        .unwrap_or(0);
    let pages: u64 = std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * page_size
}

fn page_size() -> u64 {
    static PAGE_SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("PAGESIZE")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096)
    })
}

pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Times a closure once.
pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// The edge sequence: `edges` distinct edges that agree with a hidden random
/// order of `classes` nodes, then `closing` distinct edges against it.
pub fn dag_workload(classes: u32, edges: usize, closing: usize, seed: u64) -> Vec<(u32, u32)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Hidden topological order: rank[node], a random permutation.
    let mut rank: Vec<u32> = (0..classes).collect();
    rng.shuffle(&mut rank);
    let mut seen = HashSet::with_capacity(edges + closing);
    let mut list = Vec::with_capacity(edges + closing);
    while list.len() < edges {
        let (a, b) = (rng.u32(..classes), rng.u32(..classes));
        if a == b {
            continue;
        }
        let edge = if rank[a as usize] < rank[b as usize] {
            (a, b)
        } else {
            (b, a)
        };
        if seen.insert(edge) {
            list.push(edge);
        }
    }
    while list.len() < edges + closing {
        let (a, b) = (rng.u32(..classes), rng.u32(..classes));
        if a == b {
            continue;
        }
        // Against the hidden order: from the later node to the earlier one.
        let edge = if rank[a as usize] > rank[b as usize] {
            (a, b)
        } else {
            (b, a)
        };
        if seen.insert(edge) {
            list.push(edge);
        }
    }
    list
}
