//! The integration tests of fm-train, one module per subject, in one test binary: every test
//! binary links libtorch, and linking one instead of 7 saves that time in every build.

mod conditional;
mod coupling;
mod energy;
mod eval;
mod exact;
mod few_step;
mod objectives;
mod optim;
mod paths;
mod resume;
mod sde;
mod threads;
mod train;
