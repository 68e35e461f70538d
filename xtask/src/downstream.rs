//! `cargo xtask downstream`: the template project of `templates/downstream` built and run as a
//! user would, outside this workspace. It is copied to a temporary folder (inside the checkout,
//! cargo would still read the workspace's `.cargo/config.toml`, which sets `LIBTORCH` for us),
//! its `path` dependencies pointed at this checkout's crates, `LIBTORCH` set as `cargo xtask
//! setup` prints it, built (`target/downstream`, kept between runs) and run without
//! `LD_LIBRARY_PATH`.

use crate::{run_checked, setup};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn run(torch: Option<&Path>) -> Result<(), String> {
    let root = setup::workspace_root();
    let template = root.join("templates").join("downstream");
    let copy = std::env::temp_dir().join(format!("fm-downstream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(copy.join("src")).map_err(|e| format!("cannot create {}: {e}", copy.display()))?;
    let crates = root.join("crates");
    for file in ["Cargo.toml", "build.rs", "src/main.rs"] {
        let text = std::fs::read_to_string(template.join(file)).map_err(|e| format!("cannot read the template's {file}: {e}"))?;
        // What a user does by hand in step 2 of the template's README.
        let text = text.replace("../../crates", &crates.display().to_string());
        std::fs::write(copy.join(file), text).map_err(|e| format!("cannot write {}: {e}", copy.join(file).display()))?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--release", "--quiet", "--", "300"])
        .current_dir(&copy)
        .env("CARGO_TARGET_DIR", root.join("target").join("downstream"))
        .env_remove("LD_LIBRARY_PATH");
    match torch {
        Some(dir) => cmd.env("LIBTORCH", dir),
        None => cmd.env_remove("LIBTORCH"),
    };
    let result = run_checked(&mut cmd);
    let _ = std::fs::remove_dir_all(&copy);
    result
}

/// What a project of one's own needs to link libtorch, as `cargo xtask setup` prints it.
pub fn instructions(torch: Option<&PathBuf>) -> String {
    match torch {
        Some(dir) => format!(
            "xtask: libtorch is ready: {dir}\n       a project of your own that depends on fm's crates needs\n         LIBTORCH={dir}\n       in its environment (or in its .cargo/config.toml [env]) and fm_torch_link::emit() in its build.rs:\n       see templates/downstream/README.md",
            dir = dir.display()
        ),
        None => "xtask: libtorch comes from the python3 on PATH (LIBTORCH_USE_PYTORCH); a project of your own needs LIBTORCH_USE_PYTORCH=1 too".into(),
    }
}
