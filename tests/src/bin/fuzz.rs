//! `fuzz`: the long run of the fuzz harness (`cargo xtask fuzz` builds and runs it in release).
//!
//! ```text
//! fuzz [--seconds N] [--execs N] [--target NAME]... [--seed S]   fuzz (default: every target, 60 s in all)
//! fuzz --reproduce FILE --target NAME                             run one saved input
//! fuzz --write-corpus                                             rewrite the seed corpora with today's writers
//! fuzz --list                                                     the targets
//! ```

use fm_tests::fuzz::{self, alloc::GuardedAlloc, Budget, Options, TARGETS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: GuardedAlloc = GuardedAlloc;

const USAGE: &str = "usage: fuzz [--seconds N | --execs N] [--target NAME]... [--seed S] | --reproduce FILE --target NAME | --write-corpus | --list";

struct Args {
    seconds: f64,
    execs: Option<u64>,
    targets: Vec<String>,
    seed: Option<u64>,
    reproduce: Option<PathBuf>,
    write_corpus: bool,
    list: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { seconds: 60.0, execs: None, targets: Vec::new(), seed: None, reproduce: None, write_corpus: false, list: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--seconds" => {
                a.seconds = value()?.parse().ok().filter(|s: &f64| s.is_finite() && *s > 0.0).ok_or(format!("--seconds needs a positive number\n{USAGE}"))?
            }
            "--execs" => a.execs = Some(value()?.parse().map_err(|_| format!("--execs needs a count\n{USAGE}"))?),
            "--target" => a.targets.extend(value()?.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty())),
            "--seed" => a.seed = Some(parse_u64(&value()?).ok_or(format!("--seed needs an integer (decimal or 0x hex)\n{USAGE}"))?),
            "--reproduce" => a.reproduce = Some(PathBuf::from(value()?)),
            "--write-corpus" => a.write_corpus = true,
            "--list" => a.list = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    Ok(a)
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let args = parse_args()?;
    tch::set_num_threads(1);
    if args.list {
        for t in &TARGETS {
            println!("{:<12} {}", t.name, t.about);
        }
        return Ok(true);
    }
    if args.write_corpus {
        let root = fuzz::corpus::corpus_root();
        for path in fuzz::corpus::write_seeds(&root).map_err(|e| format!("cannot write the corpus under {}: {e}", root.display()))? {
            println!("wrote {}", path.display());
        }
        return Ok(true);
    }
    if !fuzz::alloc::installed() {
        return Err("the guarded allocator is not installed".into());
    }
    let targets: Vec<&'static fuzz::FuzzTarget> = if args.targets.is_empty() {
        TARGETS.iter().collect()
    } else {
        args.targets.iter().map(|n| fuzz::target(n).ok_or_else(|| format!("unknown target '{n}' (see --list)"))).collect::<Result<_, _>>()?
    };
    if let Some(file) = &args.reproduce {
        let [target] = targets[..] else { return Err("--reproduce needs exactly one --target".into()) };
        let input = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        return Ok(match fuzz::run_one(target, &input, &Options::default()) {
            Ok(accepted) => {
                println!("{}: {} ({} bytes): no failure, {}", target.name, file.display(), input.len(), if accepted { "accepted" } else { "rejected" });
                true
            }
            Err(f) => {
                println!("{}: {} ({} bytes): {f:?}", target.name, file.display(), input.len());
                false
            }
        });
    }
    let seed = args.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    let budget = match args.execs {
        Some(n) => Budget::Execs(n),
        None => Budget::Time(Duration::from_secs_f64(args.seconds / targets.len() as f64)),
    };
    println!(
        "fuzz: {} target(s), seed {seed:#x}, {}",
        targets.len(),
        match budget {
            Budget::Execs(n) => format!("{n} executions each"),
            Budget::Time(t) => format!("{:.1} s each", t.as_secs_f64()),
        }
    );
    let start = Instant::now();
    let (mut execs, mut ok) = (0, true);
    for target in targets {
        let report = fuzz::fuzz(target, &Options { seed, budget, ..Options::default() })?;
        println!("{report}");
        execs += report.execs;
        ok &= report.crash.is_none();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("fuzz: {execs} executions in {secs:.1} s ({:.0} execs/s); {}", execs as f64 / secs, if ok { "no failure" } else { "FAILURES above" });
    Ok(ok)
}
