//! Workspace-level tests live in `tests/`; the fuzz harness ([`fuzz`]) lives here, shared by the
//! short seeded run of the test suite (`tests/fuzz.rs`) and the long one (`cargo xtask fuzz`,
//! `src/bin/fuzz.rs`).

pub mod fuzz;

/// The Python interpreter of the tests that compare with PyTorch (`kl_pytorch`,
/// `bench_equivalence`): `$FM_PYTHON`, else the one of the venv that `.libtorch` points into
/// (`cargo xtask setup`; its python is `<torch>/../../../../bin/python`). Panics without either:
/// those tests fail, they do not skip. `needs` names the Python packages the caller needs (for
/// the message).
pub fn torch_python(needs: &str) -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    if let Some(p) = std::env::var_os("FM_PYTHON") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "FM_PYTHON is set to {}, which does not exist", p.display());
        return p;
    }
    let link = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.libtorch");
    let venv_python = link.canonicalize().ok().map(|torch| torch.join("../../../../bin/python"));
    match venv_python {
        Some(p) if p.exists() => p,
        _ => panic!(
            "no Python with torch for the PyTorch comparison tests: set FM_PYTHON to a python that has {needs}, \
             or run `cargo xtask setup` so that {} points into a torch venv (its python is <torch>/../../../../bin/python)",
            link.display()
        ),
    }
}

/// Waits for `child` at most `limit`; on timeout kills it and returns `None`.
pub fn wait_at_most(child: &mut std::process::Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("cannot wait for a child process") {
            return Some(s);
        }
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
