//! The integration tests of fm-model, one module per subject, in one test binary: every test
//! binary links libtorch, and linking one instead of 3 saves that time in every build.

mod jvp;
mod model;
mod pth;
mod pytorch;

/// The sizes a loaded network records (every loader returns a trait object).
fn config(model: &dyn fm_model::VelocityModel) -> fm_model::MlpConfig {
    fm_model::registry::config_of(model).expect("a network of the registry")
}

/// The parameters of a loaded network by name.
fn params(model: &dyn fm_model::VelocityModel) -> std::collections::HashMap<String, tch::Tensor> {
    model.named_parameters().into_iter().collect()
}
