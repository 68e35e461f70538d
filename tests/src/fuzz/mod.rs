//! A mutation fuzzer for the parsers and loaders that read files a user hands us.
//!
//! Each target ([`TARGETS`]) takes any bytes and must never panic, hang or allocate more than
//! its input justifies. [`fuzz`] runs one: the regression inputs of fixed bugs and the seed
//! corpus first (see [`corpus`]), then mutants of the seeds and of accepted mutants
//! ([`mutate::Mutator`], seeded ChaCha: a seed and a number of executions give the same inputs
//! every time), each under `catch_unwind`. It stops at the first failure, and saves its input
//! under `target/fuzz-crashes/`:
//!
//! - a panic (or a failed assertion of the target);
//! - a hang: an input that takes more than [`Options::hang_limit`] of CPU time (the thread's own
//!   time, so a loaded machine does not make one: an input whose wall time is over the limit is
//!   run again, measuring that), or that has not returned after [`Options::stall_limit`] of wall
//!   time (a watchdog then saves it and ends the process);
//! - unbounded allocation: a single allocation request above [`Options::alloc_limit`] (seen by
//!   [`alloc::GuardedAlloc`], which must be the global allocator: the process aborts after saving
//!   the input), or a resident set grown by more than [`Options::rss_limit`] (libtorch's memory).
//!
//! `tests/fuzz.rs` runs every target for a fixed number of executions in the test suite;
//! `cargo xtask fuzz` runs them for longer (`src/bin/fuzz.rs`).

pub mod alloc;
pub mod corpus;
pub mod mutate;
pub mod targets;

use rand::Rng;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// One fuzz target.
pub struct FuzzTarget {
    /// Its name: the folder of its corpus, and `--target NAME`.
    pub name: &'static str,
    /// What it reads, in a few words.
    pub about: &'static str,
    /// Runs one input; whether it was accepted (errors are fine, panics are bugs).
    pub run: fn(&[u8]) -> bool,
    /// The longest input the mutator makes.
    pub max_len: usize,
}

/// Every target.
pub const TARGETS: [FuzzTarget; 5] = [
    FuzzTarget { name: "spec", about: "Gaussian-mixture spec (TOML, JSON): fm_dist::MixtureSpec", run: targets::spec, max_len: 4096 },
    FuzzTarget { name: "run-config", about: "run file of fm train --config: the fm command's RunConfig", run: targets::run_config, max_len: 4096 },
    FuzzTarget {
        name: "checkpoint",
        about: "model checkpoint (.safetensors, .pth): fm_model::checkpoint::from_any_bytes",
        run: targets::checkpoint,
        max_len: 16384,
    },
    FuzzTarget { name: "npy", about: ".npy point cloud: fm_dist::io::decode_npy", run: targets::npy, max_len: 4096 },
    FuzzTarget { name: "csv", about: ".csv point cloud: fm_dist::empirical::parse_csv", run: targets::csv, max_len: 4096 },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static FuzzTarget> {
    TARGETS.iter().find(|t| t.name == name)
}

/// When to stop.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// After this many executions (reproducible: the same inputs every time).
    Execs(u64),
    /// After this much time.
    Time(Duration),
}

/// How to fuzz.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seeds the mutations (mixed with the target's name).
    pub seed: u64,
    pub budget: Budget,
    /// CPU time one input may take.
    pub hang_limit: Duration,
    /// Wall time after which an input that has not returned ends the process.
    pub stall_limit: Duration,
    /// The largest single allocation request one input may make.
    pub alloc_limit: usize,
    /// How far the resident set may grow over the run.
    pub rss_limit: u64,
    /// Where failing inputs are saved.
    pub crash_dir: PathBuf,
    /// The seed corpora (`<dir>/<target>/*`).
    pub corpus_dir: PathBuf,
    /// The regression inputs (`<dir>/<target>/*`).
    pub regressions_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed: 0,
            budget: Budget::Execs(1000),
            hang_limit: Duration::from_secs(2),
            stall_limit: Duration::from_secs(60),
            alloc_limit: 256 << 20,
            rss_limit: 2 << 30,
            crash_dir: crash_dir(),
            corpus_dir: corpus::corpus_root(),
            regressions_dir: corpus::regressions_root(),
        }
    }
}

/// `target/fuzz-crashes` of this workspace (or of `CARGO_TARGET_DIR`).
pub fn crash_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| corpus::fuzz_dir().join("../../target"));
    let target = target.canonicalize().unwrap_or(target);
    target.join("fuzz-crashes")
}

/// What went wrong with one input.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The panic message and where it was raised.
    Panic(String),
    /// CPU time taken.
    Hang(Duration),
    /// Growth of the resident set, in bytes.
    Memory(u64),
    /// A single allocation request of this many bytes, above the limit (the process aborted).
    Alloc { size: usize, limit: usize },
    /// Still running after this much wall time (the process ended).
    Stall(Duration),
}

/// A failing input.
#[derive(Debug, Clone)]
pub struct Crash {
    pub failure: Failure,
    /// Which execution it was (0-based; the regression inputs and seeds come first).
    pub exec: u64,
    pub input: Vec<u8>,
    /// Where the input was saved.
    pub saved: Option<PathBuf>,
}

/// The outcome of [`fuzz`] on one target.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub seed: u64,
    /// Inputs run (regressions, seeds and mutants).
    pub execs: u64,
    /// Of which accepted by the target.
    pub accepted: u64,
    /// Seed inputs, and how many of them were accepted.
    pub seeds: usize,
    pub seeds_accepted: usize,
    /// Regression inputs replayed.
    pub regressions: usize,
    pub elapsed: Duration,
    /// The largest wall time of one input (its CPU time is measured when this is over the limit).
    pub slowest: Duration,
    /// The largest allocation request of one input.
    pub largest_alloc: usize,
    pub crash: Option<Crash>,
}

impl Report {
    pub fn execs_per_s(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<10} {:>9} execs in {:>6.2} s = {:>7.0} execs/s; {:>4.1}% accepted, seeds {}/{} accepted, {} regressions; slowest input {:.1} ms, largest allocation {} KiB (seed {:#x})",
            self.target,
            self.execs,
            self.elapsed.as_secs_f64(),
            self.execs_per_s(),
            100.0 * self.accepted as f64 / self.execs.max(1) as f64,
            self.seeds_accepted,
            self.seeds,
            self.regressions,
            self.slowest.as_secs_f64() * 1e3,
            self.largest_alloc.div_ceil(1024),
            self.seed
        )?;
        if let Some(c) = &self.crash {
            write!(f, "\n{}", describe(self.target, self.seed, c))?;
        }
        Ok(())
    }
}

fn describe(target: &str, seed: u64, c: &Crash) -> String {
    let what = match &c.failure {
        Failure::Panic(msg) => format!("panic: {msg}"),
        Failure::Hang(t) => format!("hang: the input took {:.2} s of CPU time", t.as_secs_f64()),
        Failure::Memory(b) => format!("unbounded allocation: the resident set grew by {} MiB", b >> 20),
        Failure::Alloc { size, limit } => format!("unbounded allocation: a request of {size} bytes (limit {limit})"),
        Failure::Stall(t) => format!("hang: the input has not returned after {:.0} s of wall time", t.as_secs_f64()),
    };
    let saved = c.saved.as_ref().map_or_else(|| "not saved".to_string(), |p| format!("saved to {}", p.display()));
    format!("FAILURE in target {target} (seed {seed:#x}, execution {}): {what}\n  input ({} bytes, {saved}): {}", c.exec, c.input.len(), preview(&c.input))
}

/// The input as text when it is text, else as hex; at most 512 bytes of it.
fn preview(input: &[u8]) -> String {
    let head = &input[..input.len().min(512)];
    let more = if input.len() > head.len() { "…" } else { "" };
    match std::str::from_utf8(head) {
        Ok(s) => format!("{s:?}{more}"),
        Err(_) => format!("{}{more}", head.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

thread_local! {
    /// Set while this thread runs a target: its panics are recorded here instead of printed.
    static FUZZING: Cell<bool> = const { Cell::new(false) };
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The target, seed, execution and input running, for the allocator's report.
    static CURRENT: RefCell<Option<Running>> = const { RefCell::new(None) };
    /// Where that report saves the input.
    static CRASH_DIR: RefCell<PathBuf> = const { RefCell::new(PathBuf::new()) };
}

/// The target, seed, execution and input a fuzzing thread is running.
type Running = (&'static str, u64, u64, Vec<u8>);

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if FUZZING.with(Cell::get) {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Called by [`alloc::GuardedAlloc`] on a request above the limit, just before it aborts.
pub(crate) fn report_oversized(size: usize, limit: usize) {
    let current = CURRENT.try_with(|c| c.borrow_mut().take()).ok().flatten();
    match current {
        Some((target, seed, exec, input)) => {
            let mut crash = Crash { failure: Failure::Alloc { size, limit }, exec, input, saved: None };
            crash.saved = CRASH_DIR.try_with(|d| save(&d.borrow(), target, seed, &crash)).ok().flatten();
            eprintln!("{}\nfuzz: aborting (an allocator cannot unwind)", describe(target, seed, &crash));
        }
        None => eprintln!("fuzz: an allocation of {size} bytes (limit {limit}) outside any fuzz input; aborting"),
    }
}

/// Saves the input of `crash` under `dir`; its path.
fn save(dir: &Path, target: &str, seed: u64, crash: &Crash) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{target}-seed{seed:x}-exec{}.bin", crash.exec));
    std::fs::write(&path, &crash.input).ok()?;
    Some(path)
}

/// The CPU time of this thread so far (from `/proc/thread-self/schedstat`), if the system says.
pub fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(stat.split_whitespace().next()?.parse().ok()?))
}

/// The resident set of this process in bytes, if the system says.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    Some(statm.split_whitespace().nth(1)?.parse::<u64>().ok()? * 4096)
}

/// The wall-clock watchdog: ends the process if one input runs past the stall limit.
struct Watchdog {
    /// Start of the running input, in ms since `epoch` (0: none running).
    started_ms: AtomicU64,
    /// Its execution number.
    exec: AtomicU64,
    input: Mutex<Vec<u8>>,
    done: AtomicBool,
    epoch: Instant,
}

impl Watchdog {
    fn spawn(target: &'static str, seed: u64, opts: &Options) -> (Arc<Watchdog>, std::thread::JoinHandle<()>) {
        let dog = Arc::new(Watchdog {
            started_ms: AtomicU64::new(0),
            exec: AtomicU64::new(0),
            input: Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
            epoch: Instant::now(),
        });
        let (d, limit, dir) = (dog.clone(), opts.stall_limit, opts.crash_dir.clone());
        let handle = std::thread::spawn(move || {
            while !d.done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let started = d.started_ms.load(Ordering::Relaxed);
                if started == 0 || d.epoch.elapsed().as_millis() as u64 <= started + limit.as_millis() as u64 {
                    continue;
                }
                let input = d.input.lock().map(|i| i.clone()).unwrap_or_default();
                let mut crash = Crash { failure: Failure::Stall(limit), exec: d.exec.load(Ordering::Relaxed), input, saved: None };
                crash.saved = save(&dir, target, seed, &crash);
                eprintln!("{}\nfuzz: ending the process", describe(target, seed, &crash));
                std::process::exit(70);
            }
        });
        (dog, handle)
    }
}

/// Fuzzes `target` (see the [module documentation](self)).
pub fn fuzz(target: &'static FuzzTarget, opts: &Options) -> Result<Report, String> {
    install_panic_hook();
    let read = |dir: &Path| corpus::read_dir_sorted(&dir.join(target.name)).map_err(|e| format!("cannot read {}: {e}", dir.join(target.name).display()));
    let seeds: Vec<Vec<u8>> = read(&opts.corpus_dir)?.into_iter().map(|(_, b)| b).collect();
    if seeds.is_empty() {
        return Err(format!("no seed inputs in {} (write them with `fuzz --write-corpus`)", opts.corpus_dir.join(target.name).display()));
    }
    let regressions: Vec<Vec<u8>> = read(&opts.regressions_dir)?.into_iter().map(|(_, b)| b).collect();
    // Each target its own stream, so adding a target changes no other's inputs.
    let name_hash = target.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut mutator = mutate::Mutator::new(opts.seed ^ name_hash, target.max_len);
    let mut report = Report {
        target: target.name,
        seed: opts.seed,
        execs: 0,
        accepted: 0,
        seeds: seeds.len(),
        seeds_accepted: 0,
        regressions: regressions.len(),
        elapsed: Duration::ZERO,
        slowest: Duration::ZERO,
        largest_alloc: 0,
        crash: None,
    };
    let (dog, watchdog) = Watchdog::spawn(target.name, opts.seed, opts);
    CRASH_DIR.with(|d| d.borrow_mut().clone_from(&opts.crash_dir));
    let rss_start = resident_bytes();
    let start = Instant::now();
    let mut pool = seeds.clone();
    const POOL_MAX: usize = 256;
    let fixed: Vec<Vec<u8>> = regressions.iter().chain(&seeds).cloned().collect();
    loop {
        let exec = report.execs;
        let fixed_input = fixed.get(exec as usize);
        let done = match opts.budget {
            Budget::Execs(n) => exec >= n.max(fixed.len() as u64),
            Budget::Time(t) => fixed_input.is_none() && start.elapsed() >= t,
        };
        if done {
            break;
        }
        let (input, parent) = match fixed_input {
            Some(i) => (i.clone(), None),
            None => {
                // Half of the mutants start from a seed: accepted mutants that differ from their
                // parents in a float or two could otherwise crowd the seeds out of the pool.
                let from_seed = mutator.rng().random_bool(0.5);
                let parent = mutator.rng().random_range(0..if from_seed { seeds.len() } else { pool.len() });
                let mut child = pool[parent].clone();
                mutator.mutate(&mut child, &pool);
                (child, Some(parent))
            }
        };

        if let Ok(mut slot) = dog.input.lock() {
            slot.clone_from(&input);
        }
        CURRENT.with(|c| *c.borrow_mut() = Some((target.name, opts.seed, exec, input.clone())));
        dog.exec.store(exec, Ordering::Relaxed);
        dog.started_ms.store(dog.epoch.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let wall0 = Instant::now();
        FUZZING.with(|f| f.set(true));
        let (outcome, largest) = alloc::guarded(opts.alloc_limit, || catch_unwind(AssertUnwindSafe(|| (target.run)(&input))));
        FUZZING.with(|f| f.set(false));
        let mut took = wall0.elapsed();
        if took > opts.hang_limit && outcome.is_ok() {
            // Slow by the clock: a hang only if it is slow on the CPU too (a busy machine is not).
            took = cpu_time_of(target, &input).unwrap_or(took);
        }
        dog.started_ms.store(0, Ordering::Relaxed);
        CURRENT.with(|c| *c.borrow_mut() = None);
        report.execs += 1;
        report.slowest = report.slowest.max(took);
        report.largest_alloc = report.largest_alloc.max(largest);

        let grown = match (rss_start, if exec.is_multiple_of(256) { resident_bytes() } else { None }) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        let failure = match outcome {
            Err(_) => Some(Failure::Panic(PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "a panic without a message".into()))),
            Ok(_) if took > opts.hang_limit => Some(Failure::Hang(took)),
            Ok(_) if grown > opts.rss_limit => Some(Failure::Memory(grown)),
            Ok(_) => None,
        };
        if let Some(failure) = failure {
            let mut crash = Crash { failure, exec, input, saved: None };
            crash.saved = save(&opts.crash_dir, target.name, opts.seed, &crash);
            report.crash = Some(crash);
            break;
        }
        let accepted = outcome.unwrap_or(false);
        report.accepted += accepted as u64;
        if fixed_input.is_some() && exec as usize >= regressions.len() {
            report.seeds_accepted += accepted as usize;
        }
        // Accepted mutants join the pool: later mutants start deeper inside the format.
        if let (true, Some(parent)) = (accepted, parent) {
            if input != pool[parent] {
                if pool.len() < POOL_MAX {
                    pool.push(input);
                } else {
                    let i = mutator.rng().random_range(seeds.len()..POOL_MAX);
                    pool[i] = input;
                }
            }
        }
    }
    report.elapsed = start.elapsed();
    dog.done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    Ok(report)
}

/// The CPU time `target` takes on `input` (run again, on this thread), if the system says.
fn cpu_time_of(target: &FuzzTarget, input: &[u8]) -> Option<Duration> {
    let before = thread_cpu_time()?;
    FUZZING.with(|f| f.set(true));
    let _ = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    FUZZING.with(|f| f.set(false));
    Some(thread_cpu_time()?.saturating_sub(before))
}

/// Runs one input through `target` the way [`fuzz`] does (to reproduce a saved failure):
/// `Ok(accepted)` or the failure.
pub fn run_one(target: &FuzzTarget, input: &[u8], opts: &Options) -> Result<bool, Failure> {
    install_panic_hook();
    let cpu0 = thread_cpu_time();
    let wall0 = Instant::now();
    FUZZING.with(|f| f.set(true));
    let (outcome, _) = alloc::guarded(opts.alloc_limit, || catch_unwind(AssertUnwindSafe(|| (target.run)(input))));
    FUZZING.with(|f| f.set(false));
    let took = cpu0.zip(thread_cpu_time()).map(|(a, b)| b.saturating_sub(a)).unwrap_or_else(|| wall0.elapsed());
    match outcome {
        Err(_) => Err(Failure::Panic(PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default())),
        Ok(_) if took > opts.hang_limit => Err(Failure::Hang(took)),
        Ok(accepted) => Ok(accepted),
    }
}
