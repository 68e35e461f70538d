//! Links libtorch so that the binary finds it at run time without LD_LIBRARY_PATH (an rpath to
//! the folder torch-sys built against): fm's own binaries do the same.
fn main() {
    fm_torch_link::emit();
}
