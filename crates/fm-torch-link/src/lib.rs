//! Build-script helper for crates that link libtorch through `tch`.
//!
//! Call [`emit`] from the `build.rs` of a crate that depends on `torch-sys` directly
//! (torch-sys then hands it the libtorch folder as `DEP_TCH_LIBTORCH_LIB`). It makes
//! every binary, test and example of that crate:
//! - find libtorch at run time without `LD_LIBRARY_PATH` (an rpath to the real folder,
//!   symlinks resolved, so the binary keeps working wherever the checkout moves);
//! - really link `libtorch` (`--no-as-needed`), which pulls in `libtorch_cuda`: without it
//!   the linker drops the CUDA library and `Device::cuda_if_available()` never sees a GPU.
//!
//! Part of `fm`; the user guide, a book with tutorials, how-tos and measured results, is
//! [docs/SUMMARY.md](https://github.com/fm-rs/flow-matching/blob/main/docs/SUMMARY.md)
//! in the repository (`mdbook serve docs` renders it).

#![warn(missing_docs)]

/// Prints the cargo directives; a no-op when torch-sys did not report a folder.
pub fn emit() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys reported no libtorch folder; binaries will need LD_LIBRARY_PATH");
        return;
    };
    let lib = std::fs::canonicalize(&lib).map(|p| p.display().to_string()).unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{lib}");
    println!("cargo:rustc-link-arg=-ltorch");
}
