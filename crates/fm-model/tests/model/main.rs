//! The integration tests of fm-model, one module per subject, in one test binary: every test
//! binary links libtorch, and linking one instead of 3 saves that time in every build.

mod jvp;
mod model;
mod pth;
mod pytorch;
