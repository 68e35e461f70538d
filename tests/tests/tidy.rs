//! House rules as tests (rust-analyzer's `xtask/src/tidy.rs` is the model): checked on the
//! workspace's own sources, and each rule shown to fail on a planted violation.
//!
//! - No function in a crate's `src/` longer than [`MAX_FN_LINES`] lines, but for the ones listed
//!   in [`LONG_FUNCTIONS`] with their length today: they may shrink, not grow, and an entry that
//!   no longer needs its place must be removed (a ratchet).
//! - The command line names no objective and no generator: `fm-cli` parses, calls the library
//!   and prints; which objective or way of generating a model has is the library's business.
//! - The crates depend on each other as the README's graph draws it, and on nothing above them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The longest a function in a crate's `src/` may be.
const MAX_FN_LINES: usize = 100;

/// The functions longer than [`MAX_FN_LINES`] today, `(file, function, lines)`: not to grow.
const LONG_FUNCTIONS: [(&str, &str, usize); 7] = [
    ("crates/fm-run/src/train.rs", "train_stage", 248),
    ("crates/fm-model/src/pth/pickle.rs", "run", 178),
    ("crates/fm-train/src/train.rs", "train_on", 148),
    ("xtask/src/bench.rs", "render", 126),
    ("xtask/src/bench.rs", "run", 121),
    ("crates/fm-run/src/train.rs", "train_stages", 105),
    ("crates/fm-dist/src/empirical.rs", "parse_csv_table", 103),
];

/// Each library crate's dependencies on the workspace's crates (the README's graph).
const GRAPH: [(&str, &[&str]); 8] = [
    ("fm-dist", &[]),
    ("fm-ode", &[]),
    ("fm-model", &["fm-ode", "fm-dist"]),
    ("fm-train", &["fm-dist", "fm-ode", "fm-model"]),
    ("fm-viz", &["fm-dist"]),
    ("fm-run", &["fm-dist", "fm-ode", "fm-model", "fm-train"]),
    ("fm-cli", &["fm-dist", "fm-ode", "fm-model", "fm-train", "fm-run", "fm-viz"]),
    ("fm-torch-link", &[]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `src/` file of the crates and of xtask, relative to the root.
fn sources() -> Vec<(String, String)> {
    let root = root();
    let mut files = Vec::new();
    for dir in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = dir.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    rust_files(&root.join("xtask").join("src"), &mut files);
    files.sort();
    files.into_iter().map(|f| (f.strip_prefix(&root).unwrap().display().to_string(), std::fs::read_to_string(&f).unwrap())).collect()
}

/// `(function, lines)` of every function with a body in `text`: from its `fn` line to the line
/// that closes it at the same indentation (rustfmt's layout).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let after = ["pub(crate) fn ", "pub(super) fn ", "pub fn ", "fn ", "pub(crate) const fn ", "pub const fn ", "const fn "]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p));
        let Some(after) = after else { continue };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            out.push((name, end + 2));
        }
    }
    out
}

/// The rule on function lengths, for `files`: one message per breach.
fn long_function_breaches(files: &[(String, String)], allowed: &[(&str, &str, usize)]) -> Vec<String> {
    let mut breaches = Vec::new();
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (path, text) in files {
        for (name, len) in function_lengths(text) {
            if len <= MAX_FN_LINES {
                continue;
            }
            match allowed.iter().find(|a| a.0 == path && a.1 == name) {
                Some(&(p, n, max)) => {
                    seen.insert((p, n), len);
                    if len > max {
                        breaches.push(format!("{path}: fn {name} grew to {len} lines (listed at {max}; the limit is {MAX_FN_LINES}): split it"));
                    }
                }
                None => breaches.push(format!("{path}: fn {name} is {len} lines, over {MAX_FN_LINES}: split it")),
            }
        }
    }
    for &(p, n, _) in allowed {
        if !seen.contains_key(&(p, n)) {
            breaches.push(format!("{p}: fn {n} is within {MAX_FN_LINES} lines now (or gone): remove it from LONG_FUNCTIONS"));
        }
    }
    breaches
}

/// The words by which the command line would name an objective or a generator.
const NAMING: [&str; 5] = ["Generator::", "ObjectiveChoice::", "objective::", "MeanFlow {", "MaximumLikelihood"];

fn cli_naming_breaches(files: &[(String, String)]) -> Vec<String> {
    let mut breaches = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| p.starts_with("crates/fm-cli/")) {
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if let Some(word) = NAMING.iter().find(|w| code.contains(*w)) {
                breaches.push(format!("{path}:{}: the command line names an objective or generator (`{word}`): ask the library", i + 1));
            }
        }
    }
    breaches
}

/// The workspace crates `manifest` depends on (normal and build dependencies; dev-dependencies
/// are the tests' business).
fn workspace_dependencies(manifest: &str) -> Vec<String> {
    let value: toml::Value = toml::from_str(manifest).unwrap();
    let mut deps = Vec::new();
    for table in ["dependencies", "build-dependencies"] {
        if let Some(t) = value.get(table).and_then(|t| t.as_table()) {
            deps.extend(t.keys().filter(|k| k.starts_with("fm-")).cloned());
        }
    }
    deps.sort();
    deps
}

fn graph_breaches(crates: &[(String, String)]) -> Vec<String> {
    let mut breaches = Vec::new();
    for (name, manifest) in crates {
        let Some((_, allowed)) = GRAPH.iter().find(|g| g.0 == name) else {
            breaches.push(format!("crate {name} is not in the documented graph (tests/tests/tidy.rs GRAPH, the README's crates)"));
            continue;
        };
        for dep in workspace_dependencies(manifest) {
            if dep != "fm-torch-link" && !allowed.contains(&dep.as_str()) {
                breaches.push(format!("crate {name} depends on {dep}, which the documented graph does not allow"));
            }
        }
    }
    breaches
}

#[test]
fn no_function_grows_past_the_limit() {
    let breaches = long_function_breaches(&sources(), &LONG_FUNCTIONS);
    assert!(breaches.is_empty(), "{}", breaches.join("\n"));
}

#[test]
fn the_command_line_names_no_objective_or_generator() {
    let breaches = cli_naming_breaches(&sources());
    assert!(breaches.is_empty(), "{}", breaches.join("\n"));
}

#[test]
fn the_crates_depend_on_each_other_as_documented() {
    let mut crates = Vec::new();
    for dir in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        crates.push((name, std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()));
    }
    let breaches = graph_breaches(&crates);
    assert!(breaches.is_empty(), "{}", breaches.join("\n"));
}

/// Each rule catches a planted violation.
#[test]
fn each_rule_fails_on_a_planted_violation() {
    let long = format!("fn fine() {{\n}}\n\npub fn too_long() {{\n{}}}\n", "    let x = 1;\n".repeat(MAX_FN_LINES));
    let files = vec![("crates/fm-x/src/lib.rs".to_string(), long)];
    let breaches = long_function_breaches(&files, &[]);
    assert_eq!(breaches.len(), 1, "{breaches:?}");
    assert!(breaches[0].contains("too_long"));
    // Listed at a smaller length: it grew; listed but short: a stale entry.
    assert!(long_function_breaches(&files, &[("crates/fm-x/src/lib.rs", "too_long", 101)])[0].contains("grew"));
    assert!(long_function_breaches(&[], &[("crates/fm-x/src/lib.rs", "too_long", 101)])[0].contains("remove it"));
    let cli = vec![("crates/fm-cli/src/x.rs".to_string(), "let m = fm_train::Generator::AverageVelocity; // fine in a comment: Generator::Flow\n".to_string())];
    assert_eq!(cli_naming_breaches(&cli).len(), 1);
    let upward = vec![("fm-dist".to_string(), "[package]\nname = \"fm-dist\"\n[dependencies]\nfm-train.workspace = true\n".to_string())];
    assert!(graph_breaches(&upward)[0].contains("fm-train"));
}
