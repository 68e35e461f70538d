//! The figures of `fm plot` that set a model against the exact flow: `field --exact` and `field-error`.

use crate::train::print_written;
use anyhow::Result;
use fm_dist::Target;
use fm_model::VelocityModel;
use fm_ode::VectorField;
use fm_train::{ExactFlow, HasDevice};
use ndarray::{Array2, ArrayView2};
use std::path::Path;

/// A field's velocity at `x` and time `t`, as an array.
fn velocity(field: &(impl VectorField + HasDevice + ?Sized), x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
    Ok(fm_train::velocity_array(field, x, t)?)
}

/// The exact field of `flow`; with a model, the model's above it on one scale.
pub fn exact(out: &Path, flow: &ExactFlow, model: Option<&dyn VelocityModel>, coords: (usize, usize)) -> Result<()> {
    let target: &dyn Target = flow.target();
    let exact = |x: ArrayView2<f64>, time| velocity(flow, x, time);
    match model {
        Some(mlp) => {
            anyhow::ensure!(mlp.dim() == flow.dim(), "the target {} is {}-D but the model is {}-D", target.name(), flow.dim(), mlp.dim());
            let title = Some(format!("Velocity field: the model above, the exact v* below ({} path)", flow.path()));
            let fig = fm_viz::FieldFigure { coords, title, height: 1000, ..Default::default() };
            fm_viz::field_beside(out, ("model", |x: ArrayView2<f64>, time| velocity(mlp, x, time)), ("exact v*", exact), Some(target), &fig)?;
        }
        None => {
            let title = Some(format!("Exact velocity field v* ({} path)", flow.path()));
            fm_viz::field(out, exact, Some(target), &fm_viz::FieldFigure { coords, title, ..Default::default() })?;
        }
    }
    Ok(())
}

/// The model's field error over t against `flow`, and for 2-D targets where in space it sits
/// (`FILE-map.png`); prints what it wrote.
pub fn field_error(out: &Path, flow: &ExactFlow, mlp: &dyn VelocityModel, coords: (usize, usize)) -> Result<()> {
    let times: Vec<f64> = (0..=40).map(|k| k as f64 / 40.0).collect();
    let curve = flow.field_error_curve(mlp, &times, 2048, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0))?;
    let rows = Array2::from_shape_fn((times.len(), 2), |(i, j)| if j == 0 { times[i] } else { curve[i].mean });
    let fig = fm_viz::LossFigure {
        title: format!("Field error against the exact flow ({} path)", flow.path()),
        x_name: "t".into(),
        loss_name: "E‖v − v*‖² per coordinate".into(),
        smooth: Some(1),
        ..Default::default()
    };
    fm_viz::loss(out, rows.view(), &[], &fig)?;
    let t = flow.target();
    if t.dim() != 2 {
        eprintln!("note: no map of where the error sits: the target is {}-D, and the map is drawn for 2-D only", t.dim());
        print_written(&[("figure", out)]);
        return Ok(());
    }
    // Beside the curve, in its format: FILE.png → FILE-map.png, FILE.svg → FILE-map.svg.
    let ext = out.extension().map_or("png".into(), |e| e.to_string_lossy().to_string());
    let map = out.with_file_name(format!("{}-map.{ext}", out.file_stem().unwrap_or_default().to_string_lossy()));
    let diff = |x: ArrayView2<f64>, time: f64| -> Result<Array2<f64>> { Ok(velocity(mlp, x, time)? - velocity(flow, x, time)?) };
    let title = Some("Where the model is off: v − v*".to_string());
    let fig = fm_viz::FieldFigure { coords, title, colour_label: "|v − v*|".into(), ..Default::default() };
    fm_viz::field(&map, diff, Some(t), &fig)?;
    print_written(&[("figure", out), ("map", &map)]);
    Ok(())
}
