//! The fuzz harness in the test suite (see `fm_tests::fuzz`): every target for a fixed number
//! of seeded executions (the regression inputs of fixed bugs first), and loaders fed lying
//! headers, which must refuse them before allocating what the header claims. The long run is
//! `cargo xtask fuzz`.

use fm_dist::io::decode_npy;
use fm_dist::{MixtureSpec, SpecFormat};
use fm_model::checkpoint::{self, LoadOptions};
use fm_tests::fuzz::alloc::{guarded, GuardedAlloc};
use fm_tests::fuzz::{self, Budget, Options};
use tch::Device;

#[global_allocator]
static ALLOC: GuardedAlloc = GuardedAlloc;

/// The seed of the short run: the same inputs at every run.
const SEED: u64 = 0x5eed_f022;

/// Fuzzes `name` for `execs` executions; fails on any panic, hang or unbounded allocation.
fn short_run(name: &str, execs: u64) {
    tch::set_num_threads(1);
    assert!(fuzz::alloc::installed(), "the guarded allocator is not the global allocator");
    let target = fuzz::target(name).unwrap();
    let report = fuzz::fuzz(target, &Options { seed: SEED, budget: Budget::Execs(execs), ..Options::default() }).unwrap();
    println!("{report}");
    assert!(report.crash.is_none(), "{report}");
    assert_eq!(report.execs, execs);
    assert_eq!(
        report.seeds_accepted, report.seeds,
        "every seed input must be valid; if a format changed, rewrite them with `cargo run -p fm-tests --bin fuzz -- --write-corpus`"
    );
    assert!(report.accepted * 50 > report.execs, "mutants should often get past the first checks: {report}");
}

// At most about a second each on a 2-core machine in the test profile (427,000 in all).

#[test]
fn mixture_specs_survive_mutation() {
    short_run("spec", 40_000);
}

#[test]
fn run_files_survive_mutation() {
    short_run("run-config", 12_000);
}

#[test]
fn checkpoints_survive_mutation() {
    short_run("checkpoint", 25_000);
}

#[test]
fn npy_point_clouds_survive_mutation() {
    short_run("npy", 200_000);
}

#[test]
fn csv_point_clouds_survive_mutation() {
    short_run("csv", 150_000);
}

#[test]
fn every_target_has_valid_seeds_from_our_writers() {
    for target in &fuzz::TARGETS {
        let dir = fuzz::corpus::corpus_root().join(target.name);
        let kept = fuzz::corpus::read_dir_sorted(&dir).unwrap();
        assert!(kept.len() >= 2, "{}: too few seed inputs", dir.display());
        for (name, bytes) in kept {
            assert!(
                (target.run)(&bytes),
                "{}/{name} is not accepted: rewrite the corpus with `cargo run -p fm-tests --bin fuzz -- --write-corpus`",
                dir.display()
            );
        }
    }
    // What the writers make today is valid too.
    for (target, name, bytes) in fuzz::corpus::seeds() {
        assert!((fuzz::target(target).unwrap().run)(&bytes), "{target}/{name} as written today is not accepted");
    }
}

/// The largest allocation `f` makes (it must not need more than 1 MiB at any one time).
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    guarded(1 << 20, f)
}

/// A safetensors file: `header` behind a length prefix claiming `claimed` bytes, then `data`.
fn safetensors(claimed: u64, header: &str, data: &[u8]) -> Vec<u8> {
    [&claimed.to_le_bytes()[..], header.as_bytes(), data].concat()
}

#[test]
fn lying_safetensors_headers_are_refused_before_allocating() {
    let good = r#"{"net.0.weight":{"dtype":"F32","shape":[4,3],"data_offsets":[0,48]}}"#;
    // `claimed`: the header length in front; `None` for the true one.
    let file = |claimed: Option<u64>, header: &str| safetensors(claimed.unwrap_or(header.len() as u64), header, &[0; 48]);
    let cases = [
        file(Some(u64::MAX), good),
        file(Some(1 << 40), good),
        file(Some(100_000_001), good),
        file(Some(good.len() as u64 + 49), good),
        // Shapes and offsets far beyond the data, and shapes whose size overflows.
        file(None, r#"{"net.0.weight":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,48]}}"#),
        file(None, r#"{"net.0.weight":{"dtype":"F32","shape":[4,3],"data_offsets":[0,4398046511104]}}"#),
        file(None, r#"{"net.0.weight":{"dtype":"F32","shape":[9223372036854775807,4],"data_offsets":[0,48]}}"#),
    ];
    assert!(checkpoint::read_safetensors(&file(None, good)).is_ok());
    for (i, bytes) in cases.iter().enumerate() {
        let (result, largest) =
            largest_allocation(|| checkpoint::from_any_bytes(bytes, Device::Cpu, &LoadOptions::with_activation(fm_model::Activation::Relu)).map(|_| ()));
        let err = result.unwrap_err().to_string();
        assert!(err.contains("not a valid safetensors file"), "case {i}: {err}");
        assert!(largest < 64 << 10, "case {i}: a request of {largest} bytes");
    }
}

#[test]
fn lying_checkpoint_configs_are_refused_before_the_model_is_built() {
    // The regression input the fuzzer found: a config of 2^32 hidden layers over 6 small tensors.
    let found = std::fs::read(fuzz::corpus::regressions_root().join("checkpoint/hidden-layers-4294967296.safetensors")).unwrap();
    let (result, largest) =
        largest_allocation(|| checkpoint::from_any_bytes(&found, Device::Cpu, &LoadOptions::with_activation(fm_model::Activation::Relu)).map(|_| ()));
    let err = result.unwrap_err().to_string();
    assert!(err.contains("with 4294967296 hidden layers of width 4 has more parameters than the checkpoint holds"), "{err}");
    assert!(largest < 64 << 10, "a request of {largest} bytes");
}

#[test]
fn lying_npy_headers_are_refused_before_allocating() {
    let v1 = |shape: &str, data: &[u8]| -> Vec<u8> {
        let header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}\n");
        [&b"\x93NUMPY\x01\x00"[..], &(header.len() as u16).to_le_bytes(), header.as_bytes(), data].concat()
    };
    assert!(decode_npy(&v1("(2, 1)", &[0; 16])).is_ok());
    let cases = [
        (v1("(1099511627776, 1099511627776)", &[0; 16]), "absurd shape"),
        (v1("(4611686018427387904, 4)", &[0; 16]), "absurd shape"),
        (v1("(18446744073709551615,)", &[0; 16]), "absurd shape"),
        (v1("(2147483648, 2)", &[0; 16]), "needs 34359738368 bytes of data, the file holds 16"),
        (v1("(0, 18446744073709551615)", &[]), ""),
        // A version-3 header length of 4 GiB in a file of 20 bytes.
        ([&b"\x93NUMPY\x03\x00"[..], &u32::MAX.to_le_bytes(), b"{'descr'"].concat(), "truncated .npy header"),
    ];
    for (i, (bytes, want)) in cases.iter().enumerate() {
        let (result, largest) = largest_allocation(|| decode_npy(bytes));
        let err = result.map(|a| format!("decoded {:?}", a.dim())).unwrap_or_else(|e| e);
        assert!(err.contains(want) && !err.starts_with("decoded"), "case {i}: {err}");
        assert!(largest < 64 << 10, "case {i}: a request of {largest} bytes");
        let (accepted, largest) = largest_allocation(|| (fuzz::target("npy").unwrap().run)(bytes));
        assert!(!accepted && largest < 64 << 10, "case {i}: accepted {accepted}, largest request {largest} bytes");
    }
}

#[test]
fn oversized_specs_and_step_counts_are_refused_before_allocating() {
    // Ten thousand dimensions in 20 kB of spec: a 0.8 GB covariance if it were built.
    let text = format!("[[components]]\nmean = [{}]\nvar = 1.0\n", vec!["0"; 10_000].join(","));
    let (result, largest) = largest_allocation(|| MixtureSpec::parse(&text, SpecFormat::Toml).unwrap().to_mixture().map(|_| ()));
    assert!(result.unwrap_err().to_string().contains("too large for a mixture spec"));
    assert!(largest < 1 << 20, "a request of {largest} bytes");
    // Run files the fuzzer found, whose step counts sized a time grid of gigabytes.
    for name in ["sample-steps-858018556.toml", "likelihood-steps-1321837763.toml"] {
        let bytes = std::fs::read(fuzz::corpus::regressions_root().join("run-config").join(name)).unwrap();
        let (accepted, largest) = largest_allocation(|| (fuzz::target("run-config").unwrap().run)(&bytes));
        assert!(!accepted && largest < 1 << 20, "{name}: accepted {accepted}, largest request {largest} bytes");
    }
}
