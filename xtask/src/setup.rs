//! libtorch for tch, with no manual step: torch 2.11.0 from the Python package registry
//! (the `+cu130` build, the same the GPU machines carry), installed once into a virtual
//! environment in the user's cache and linked into the checkout as `.libtorch`, which
//! `.cargo/config.toml` names as `LIBTORCH`. A `LIBTORCH` or `LIBTORCH_USE_PYTORCH` already
//! set by the user is respected and nothing is installed.

use crate::run_checked;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TORCH_VERSION: &str = "2.11.0";
/// Python packages installed beside torch (the PyTorch interop tests use them).
const PYTHON_PACKAGES: &[&str] = &["numpy", "safetensors"];

/// The workspace this xtask was built in; where that folder is gone (a binary carried to another
/// machine, run from the repository's root there), the current folder.
pub fn workspace_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace");
    if built_in.is_dir() {
        built_in.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    }
}

/// Where the torch virtual environment lives: `$FM_CACHE_DIR`, else `$XDG_CACHE_HOME/fm-rs`, else `~/.cache/fm-rs`.
fn cache_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("FM_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("fm-rs"));
    }
    let home = std::env::var_os("HOME").ok_or("neither FM_CACHE_DIR, XDG_CACHE_HOME nor HOME is set: no place for the torch cache")?;
    Ok(PathBuf::from(home).join(".cache").join("fm-rs"))
}

/// Makes libtorch available to the build; returns its folder (None when the user's Python provides it).
pub fn ensure_libtorch() -> Result<Option<PathBuf>, String> {
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        eprintln!("xtask: LIBTORCH_USE_PYTORCH is set: torch-sys takes libtorch from the python3 on PATH");
        return Ok(None);
    }
    let ours = workspace_root().join(".libtorch");
    // `.cargo/config.toml` sets LIBTORCH to our link for every process cargo starts, this one included.
    if let Some(dir) = std::env::var_os("LIBTORCH").map(PathBuf::from).filter(|d| *d != ours) {
        if !dir.join("lib").is_dir() {
            return Err(format!(
                "LIBTORCH={} has no lib/ folder; point it at a libtorch (or the torch/ package folder of torch {TORCH_VERSION})",
                dir.display()
            ));
        }
        return Ok(Some(dir));
    }
    let venv = cache_dir()?.join(format!("torch-{TORCH_VERSION}"));
    let done = venv.join(".fm-install-complete");
    if !done.exists() {
        install(&venv)?;
        std::fs::write(&done, TORCH_VERSION).map_err(|e| format!("cannot write {}: {e}", done.display()))?;
    }
    let torch = torch_dir(&venv)?;
    link(&ours, &torch)?;
    Ok(Some(torch))
}

fn install(venv: &Path) -> Result<(), String> {
    eprintln!(
        "xtask: installing torch {TORCH_VERSION} (libtorch for tch, ~5 GB with its CUDA libraries, about a minute; first run only)\n       into {}",
        venv.display()
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if venv.exists() {
        // A previous install was interrupted: start clean rather than trust it.
        std::fs::remove_dir_all(venv).map_err(|e| format!("cannot remove the unfinished install {}: {e}", venv.display()))?;
    }
    std::fs::create_dir_all(venv.parent().expect("cache path has a parent")).map_err(|e| format!("cannot create {}: {e}", venv.display()))?;
    run_checked(Command::new(&python).args(["-m", "venv"]).arg(venv)).map_err(|e| format!("{e}: python3 with the venv module is needed to install torch"))?;
    let pip = venv.join("bin").join("pip");
    let torch = format!("torch=={TORCH_VERSION}");
    run_checked(Command::new(pip).args(["install", "--quiet", "--disable-pip-version-check", &torch]).args(PYTHON_PACKAGES))?;
    Ok(())
}

/// The `torch/` package folder inside the virtual environment (it holds `include/` and `lib/`).
fn torch_dir(venv: &Path) -> Result<PathBuf, String> {
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib).map_err(|e| format!("cannot read {}: {e}", lib.display()))?;
    for entry in entries.flatten() {
        let torch = entry.path().join("site-packages").join("torch");
        if torch.join("lib").join("libtorch_cpu.so").exists() {
            return Ok(torch);
        }
    }
    Err(format!("no torch package with lib/libtorch_cpu.so under {}; remove {} and run `cargo xtask setup` again", lib.display(), venv.display()))
}

/// Points `link` at `target`, replacing an older link.
fn link(link: &Path, target: &Path) -> Result<(), String> {
    if std::fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).map_err(|e| format!("cannot replace {}: {e}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link).map_err(|e| format!("cannot link {} → {}: {e}", link.display(), target.display()))?;
    eprintln!("xtask: libtorch: {} → {}", link.display(), target.display());
    Ok(())
}
