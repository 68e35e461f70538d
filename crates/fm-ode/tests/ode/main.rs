//! The integration tests of fm-ode, one module per subject, in one test binary: every test
//! binary links libtorch, and linking one instead of 6 saves that time in every build.

mod bit_for_bit;
mod common;
mod custom_tableau;
mod dopri5;
mod integrators;
mod likelihood;
mod reference;
mod tableau_validation;
