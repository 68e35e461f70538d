//! The README and the book as a user reads them: every `fm` command they show runs, every
//! relative link lands on a file and heading that exist, the command reference is the CLI's
//! own, and every run-file field is documented.
//!
//! A fenced block opened with ```` ```console ```` holds commands, one per `$ ` line; the
//! blocks of a page run in order in one fresh folder, with budgets capped (see [`capped`]), so
//! a page's later commands read what its earlier ones wrote. ```` ```console,ignore ```` blocks
//! and lines that are not `fm` commands are not run, except `$ python FILE.py`: a ```` ```python ````
//! block whose first line is `# FILE.py` is written to that file in the page's folder, and the
//! line runs it with the Python that `cargo xtask setup` installed with torch (`$FM_PYTHON`
//! overrides it), so a page can write the TorchScript energy its later commands read.

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The README and every page under docs/ (the book's source).
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

/// The `$ ` lines of a page's runnable blocks, in order.
fn commands(text: &str) -> Vec<String> {
    steps(text).into_iter().filter_map(|s| if let Step::Run(line) = s { Some(line) } else { None }).collect()
}

/// What a page does, in order: its commands, and the Python files it shows (`# FILE.py` first).
#[derive(Debug, PartialEq)]
enum Step {
    Run(String),
    Write(String, String),
}

fn steps(text: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut block = None;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => block = Some(info.split(',').map(str::trim).map(str::to_string).collect::<Vec<_>>()),
            Event::End(TagEnd::CodeBlock) => block = None,
            Event::Text(body) => match block.as_deref() {
                Some([kind]) if kind == "console" => out.extend(body.lines().filter_map(|l| l.strip_prefix("$ ")).map(|l| Step::Run(l.to_string()))),
                Some([kind]) if kind == "python" => {
                    let file = body.lines().next().and_then(|l| l.strip_prefix("# ")).filter(|f| f.ends_with(".py") && !f.contains(' '));
                    out.extend(file.map(|f| Step::Write(f.to_string(), body.to_string())));
                }
                _ => {}
            },
            _ => {}
        }
    }
    out
}

/// The Python with torch: `$FM_PYTHON`, else the venv's that `.libtorch` points into, else
/// `python3` on the PATH (libtorch taken from elsewhere; a failure then names what ran).
fn torch_python() -> PathBuf {
    let venv = || root().join(".libtorch").canonicalize().ok().map(|t| t.join("../../../../bin/python")).filter(|p| p.exists());
    std::env::var_os("FM_PYTHON").map(PathBuf::from).or_else(venv).unwrap_or_else(|| PathBuf::from("python3"))
}

/// Budget flags a command may be given, by subcommand: `(flag, cap, added when absent)`.
fn caps(subcommand: &str, words: &[String]) -> Vec<(&'static str, u64, bool)> {
    let resume = words.iter().any(|w| w == "--resume");
    // A preset warms up for 500 steps, more than the capped run has.
    let preset = words.iter().any(|w| w == "--preset");
    match subcommand {
        "run" => vec![
            ("--steps", 60, true),
            ("--warmup-steps", 5, preset),
            ("--samples", 400, true),
            ("--sample-steps", 20, false),
            ("--w2-points", 150, true),
            ("--w2-draws", 1, true),
            ("--kl-points", 100, true),
        ],
        "train" if resume => vec![("--steps", 60, false)],
        "train" => vec![("--steps", 60, true), ("--warmup-steps", 5, preset)],
        "sample" => vec![("--samples", 400, true), ("--steps", 50, false)],
        "eval" => vec![("--w2-points", 150, true), ("--w2-draws", 1, true), ("--kl-points", 100, true), ("--kl-steps", 20, false)],
        "plot" => vec![("--points", 200, false)],
        _ => vec![],
    }
}

/// `words` (after `fm`) with every capped flag at most its cap, and added where the command
/// would otherwise spend its default budget. `--flag=value` is split first.
fn capped(words: Vec<String>) -> Vec<String> {
    let mut words: Vec<String> = words
        .into_iter()
        .flat_map(|w| match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => vec![f.to_string(), v.to_string()],
            _ => vec![w],
        })
        .collect();
    let Some(sub) = words.first().cloned() else { return words };
    for (flag, cap, add) in caps(&sub, &words) {
        match words.iter().position(|w| w == flag) {
            Some(i) if i + 1 < words.len() => {
                if let Ok(v) = words[i + 1].parse::<u64>() {
                    words[i + 1] = v.min(cap).to_string();
                }
            }
            None if add && !(flag == "--samples" && sub == "eval") => words.extend([flag.to_string(), cap.to_string()]),
            _ => {}
        }
    }
    words
}

/// Runs a page's `fm` commands in order in a fresh folder: how many ran, and a message per failure.
fn run_page(page: &Path) -> (usize, Vec<String>) {
    let steps = steps(&std::fs::read_to_string(page).unwrap());
    let dir =
        std::env::temp_dir().join(format!("fm-docs-{}-{}", std::process::id(), page.strip_prefix(root()).unwrap().display().to_string().replace('/', "-")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut ran, mut failures) = (0, Vec::new());
    for step in steps {
        let line = match step {
            Step::Write(file, body) => {
                std::fs::write(dir.join(file), body).unwrap();
                continue;
            }
            Step::Run(line) => line.split(" # ").next().unwrap().trim().to_string(),
        };
        let mut words = shell_words::split(&line).unwrap_or_else(|e| panic!("{}: cannot split `{line}`: {e}", page.display()));
        // Leading VAR=value words set the environment, as a shell would.
        let mut env = Vec::new();
        while words.first().is_some_and(|w| w.contains('=') && !w.starts_with('-')) {
            let w = words.remove(0);
            let (k, v) = w.split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
        }
        let (program, args) = match words.first().map(String::as_str) {
            Some("fm") => (PathBuf::from(env!("CARGO_BIN_EXE_fm")), capped(words[1..].to_vec())),
            Some("python") if words.len() == 2 => match dir.join(&words[1]).exists() {
                true => (torch_python(), words[1..].to_vec()),
                false => {
                    failures.push(format!("{}: `{line}`: no ```python block opens with `# {}`", page.strip_prefix(root()).unwrap().display(), words[1]));
                    continue;
                }
            },
            _ => continue,
        };
        let out = Command::new(program).args(&args).envs(env).current_dir(&dir).output().unwrap();
        ran += 1;
        if !out.status.success() {
            failures.push(format!(
                "{}: `{line}` (run as `{} {}`): {}",
                page.strip_prefix(root()).unwrap().display(),
                words[0],
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (ran, failures)
}

/// Runs every `fm` command of every page (the pages two at a time: they are independent); one
/// failure message per failed command.
#[test]
fn the_commands_of_the_readme_and_the_book_run() {
    let pages = pages();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(page) = pages.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) {
                        mine.push(run_page(page));
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let ran: usize = results.iter().map(|r| r.0).sum();
    let failures: Vec<String> = results.into_iter().flat_map(|r| r.1).collect();
    eprintln!("ran {ran} fm commands from the README and the book");
    assert!(failures.is_empty(), "{} of {ran} commands failed:\n{}", failures.len(), failures.join("\n"));
    assert!(ran >= 10, "only {ran} commands found: are the pages' blocks marked ```console?");
}

/// GitHub's and mdBook's anchor of a heading: lowercase, spaces to `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every relative link of the README and the book names a file that exists, and an anchor
/// that one of its headings makes.
#[test]
fn links_in_the_readme_and_the_book_resolve() {
    let mut anchors: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut links = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut heading: Option<String> = None;
        for event in Parser::new(&text) {
            match event {
                Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
                Event::Text(t) | Event::Code(t) if heading.is_some() => heading.as_mut().unwrap().push_str(&t),
                Event::End(TagEnd::Heading(_)) => {
                    anchors.entry(page.clone()).or_default().insert(slug(&heading.take().unwrap()));
                }
                Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => links.push((page.clone(), dest_url.to_string())),
                _ => {}
            }
        }
    }
    let mut broken = Vec::new();
    for (page, link) in links {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = link.split_once('#').map_or((link.as_str(), None), |(f, a)| (f, Some(a)));
        let target = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
        let Ok(target) = target.canonicalize() else {
            broken.push(format!("{}: {link} (no such file)", page.strip_prefix(root()).unwrap().display()));
            continue;
        };
        if let Some(a) = anchor.filter(|_| target.extension().is_some_and(|e| e == "md")) {
            if !anchors.get(&target).is_some_and(|set| set.contains(a)) {
                broken.push(format!("{}: {link} (no heading makes #{a})", page.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// docs/reference/commands.md is what `fm reference` prints now: a flag renamed in clap and not
/// in the reference fails here (`FM_BLESS=1` rewrites the page).
#[test]
fn the_command_reference_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_fm")).arg("reference").output().unwrap();
    assert!(out.status.success());
    let page = root().join("docs/reference/commands.md");
    if std::env::var_os("FM_BLESS").is_some() {
        std::fs::write(&page, &out.stdout).unwrap();
    }
    let written = std::fs::read_to_string(&page).unwrap_or_default();
    assert!(
        written == String::from_utf8_lossy(&out.stdout),
        "docs/reference/commands.md is stale: run `FM_BLESS=1 cargo test -p fm-cli --test docs` (or `fm reference > docs/reference/commands.md`)"
    );
}

/// The fields a run-file table takes, as serde's "unknown field" error lists them.
fn fields_of(toml_prefix: &str) -> Vec<String> {
    let err = toml::from_str::<fm_run::RunConfig>(&format!("{toml_prefix}zz_not_a_field = 1\n")).unwrap_err().to_string();
    let list = err.split("expected one of ").nth(1).unwrap_or_else(|| panic!("no field list in: {err}"));
    list.split(',').map(|f| f.trim().trim_matches(|c: char| c == '`' || c.is_whitespace() || c == '.').to_string()).filter(|f| !f.is_empty()).collect()
}

/// Every field of every run-file table is in docs/config.md's table, in its section: a field
/// added to the config and not documented fails here.
#[test]
fn every_run_file_field_is_documented() {
    let text = std::fs::read_to_string(root().join("docs/config.md")).unwrap();
    // Section → the backticked names of its rows' field cells. A table headed `| section | field |`
    // names its section in the first column (blank: the row above's); one headed `| field |` sits
    // under a heading that names its section (`## \`[reflow]\`: …`).
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let (mut section, mut heading_section, mut field_column) = (String::new(), String::new(), 1);
    for line in text.lines() {
        if line.starts_with('#') {
            heading_section = line.split('`').nth(1).unwrap_or_default().to_string();
            continue;
        }
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        match cells.first().copied() {
            Some("section") => field_column = 1,
            Some("field") => (field_column, section) = (0, heading_section.clone()),
            _ if cells.len() < 3 || cells[0].starts_with("---") => {}
            Some(first) => {
                if field_column == 1 && !first.is_empty() {
                    section = first.trim_matches('`').to_string();
                }
                documented.entry(section.clone()).or_default().extend(cells[field_column].split('`').skip(1).step_by(2).map(str::to_string));
            }
            None => {}
        }
    }
    let mut missing = Vec::new();
    for field in fields_of("") {
        let probe = format!("[{field}]\n");
        let nested =
            toml::from_str::<fm_run::RunConfig>(&format!("{probe}zz_not_a_field = 1\n")).err().map(|e| e.to_string()).filter(|e| e.contains("unknown field"));
        match nested {
            Some(_) => {
                for sub in fields_of(&probe) {
                    let probe2 = format!("[{field}.{sub}]\n");
                    let deeper = toml::from_str::<fm_run::RunConfig>(&format!("{probe2}zz_not_a_field = 1\n"))
                        .err()
                        .map(|e| e.to_string())
                        .filter(|e| e.contains("unknown field"));
                    if deeper.is_some() {
                        for leaf in fields_of(&probe2) {
                            if !documented.get(&format!("[{field}.{sub}]")).is_some_and(|s| s.contains(&leaf)) {
                                missing.push(format!("[{field}.{sub}] {leaf}"));
                            }
                        }
                    } else if !documented.get(&format!("[{field}]")).is_some_and(|s| s.contains(&sub)) {
                        missing.push(format!("[{field}] {sub}"));
                    }
                }
            }
            None if documented.get("(top)").is_some_and(|s| s.contains(&field)) => {}
            None => missing.push(format!("(top) {field}")),
        }
    }
    assert!(missing.is_empty(), "run-file fields missing from docs/config.md's table: {}", missing.join(", "));
}

#[test]
fn budgets_are_capped_and_added() {
    let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    assert_eq!(capped(words("train --steps 20000 --out r")), words("train --steps 60 --out r"));
    assert_eq!(capped(words("train --resume r")), words("train --resume r"));
    assert_eq!(
        capped(words("run --preset fast")),
        words("run --preset fast --steps 60 --warmup-steps 5 --samples 400 --w2-points 150 --w2-draws 1 --kl-points 100")
    );
    assert_eq!(capped(words("sample --samples=5000")), words("sample --samples 400"));
    assert_eq!(commands("```console\n$ fm run\nout\n```\n```console,ignore\n$ fm x\n```\n"), ["fm run"]);
    // A Python block is written to the file its first line names; one that names none is not.
    let py = "```python\n# e.py\nx = 1\n```\n```python\nno file\n```\n```console\n$ python e.py\n```\n";
    assert_eq!(steps(py), [Step::Write("e.py".into(), "# e.py\nx = 1\n".into()), Step::Run("python e.py".into())]);
}
