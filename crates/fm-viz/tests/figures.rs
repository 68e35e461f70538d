//! Every figure renders a real picture of the requested size, as PNG or SVG (GIF for the
//! animation); bad inputs are errors that leave nothing behind.

mod common;

use common::*;
use fm_dist::{StandardNormal, Target};
use fm_viz::*;
use ndarray::{Array1, Array2, Array3, ArrayView2};

fn small_trajectories() -> TrajectoryFigure {
    TrajectoryFigure { width: 560, height: 440, resolution: 60, target_samples: 500, ..TrajectoryFigure::default() }
}

fn small_field() -> FieldFigure {
    FieldFigure { width: 900, height: 300, arrows: 8, target_samples: 300, ..FieldFigure::default() }
}

fn small_density() -> DensityFigure {
    DensityFigure { width: 700, height: 340, resolution: 50, target_samples: 300, ..DensityFigure::default() }
}

fn small_animation() -> AnimationFigure {
    AnimationFigure { width: 260, height: 220, hold_frames: 2, resolution: 40, target_samples: 300, ..AnimationFigure::default() }
}

#[test]
fn trajectories_render_over_the_target_as_png_and_svg() {
    let dir = dir("trajectories");
    let gmm = gmm();
    let (states, times) = straight_paths(&gmm, 120, 20);
    let path = dir.join("paths.png");
    trajectories(&path, states.view(), &times, Some(&gmm), &small_trajectories()).unwrap();
    let img = png(&path, (560, 440));
    // End markers are viridis' yellow; the backdrop is light blue.
    assert!(any_pixel(&img, (0, 560), (0, 440), |p| p[0] > 220 && p[1] > 200 && p[2] < 80), "no end markers");
    assert!(any_pixel(&img, (0, 560), (0, 440), |p| p[2] > 200 && p[0] < 200 && p[1] > 180), "no density backdrop");

    let svg_path = dir.join("paths.svg");
    trajectories(&svg_path, states.view(), &times, Some(&gmm), &small_trajectories()).unwrap();
    let text = svg(&svg_path, (560, 440));
    assert!(text.contains("time t"), "the colour bar is labelled");
    assert_eq!(files(&dir), ["paths.png", "paths.svg"]);
}

#[test]
fn trajectories_of_16_d_data_name_the_drawn_coordinates() {
    let dir = dir("trajectories16");
    let target = StandardNormal::new(16).unwrap();
    let (states, times) = straight_paths(&target, 50, 10);
    let path = dir.join("paths.svg");
    let fig = TrajectoryFigure { coords: (2, 6), ..small_trajectories() };
    trajectories(&path, states.view(), &times, Some(&target), &fig).unwrap();
    let text = svg(&path, (560, 440));
    assert!(text.contains("coordinates 3 and 7 of 16"));
    assert!(text.contains(">\nx3\n<") && text.contains(">\nx7\n<"), "axes are named after the coordinates");
    // Without a target, and with set axes.
    let fig = TrajectoryFigure { x_range: Some(-1.0..1.0), y_range: Some(-1.0..1.0), ..fig };
    trajectories(&dir.join("none.png"), states.view(), &times, None, &fig).unwrap();
    png(&dir.join("none.png"), (560, 440));
}

#[test]
fn field_renders_arrows_coloured_by_speed() {
    let dir = dir("field");
    let path = dir.join("field.png");
    field(&path, |x: ArrayView2<f64>, t| Ok::<_, std::convert::Infallible>(gaussian_velocity(x, t)), None, &small_field()).unwrap();
    let img = png(&path, (900, 300));
    // Arrows are coloured (plasma: purple to orange), not grey.
    let coloured = img.pixels().filter(|p| (p.0[0] as i32 - p.0[2] as i32).abs() > 80).count();
    assert!(coloured > 200, "{coloured} coloured pixels");

    let svg_path = dir.join("field.svg");
    field(&svg_path, |x: ArrayView2<f64>, t| Ok::<_, std::convert::Infallible>(gaussian_velocity(x, t)), Some(&gmm()), &small_field()).unwrap();
    let text = svg(&svg_path, (900, 300));
    assert!(text.contains("t = 0.25") && text.contains("speed"));
    assert_eq!(files(&dir), ["field.png", "field.svg"]);
}

#[test]
fn field_of_a_16_d_model_is_drawn_on_a_plane() {
    let dir = dir("field16");
    let target = StandardNormal::new(16).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let fig = FieldFigure { coords: (3, 7), times: vec![0.0, 1.0], ..small_field() };
    field(
        &dir.join("f.png"),
        |x: ArrayView2<f64>, t| {
            seen.lock().unwrap().push(x.ncols());
            Ok::<_, std::convert::Infallible>(gaussian_velocity(x, t))
        },
        Some(&target),
        &fig,
    )
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), [16, 16]);
    png(&dir.join("f.png"), (900, 300));
}

#[test]
fn density_draws_model_and_target_on_one_scale() {
    let dir = dir("density");
    let gmm = gmm();
    let path = dir.join("density.png");
    density(&path, |x: ArrayView2<f64>| gmm.log_prob(x), Some(&gmm), &small_density()).unwrap();
    let img = png(&path, (700, 340));
    // Both halves show viridis' high end (yellow-green) where the mixture peaks.
    let high = |p: [u8; 3]| p[1] > 180 && p[2] < 110 && p[0] > 120;
    assert!(any_pixel(&img, (0, 300), (0, 340), high) && any_pixel(&img, (300, 600), (0, 340), high));
    let svg_path = dir.join("density.svg");
    density(&svg_path, |x: ArrayView2<f64>| gmm.log_prob(x), Some(&gmm), &small_density()).unwrap();
    assert!(svg(&svg_path, (700, 340)).contains("log-density"));
    // The model alone, with -∞ where it has no mass.
    let alone = dir.join("alone.png");
    density(
        &alone,
        |x: ArrayView2<f64>| Ok::<_, String>(x.rows().into_iter().map(|r| if r[0] > 0.0 { -r.dot(&r) } else { f64::NEG_INFINITY }).collect::<Array1<f64>>()),
        None,
        &small_density(),
    )
    .unwrap();
    png(&alone, (700, 340));
}

#[test]
fn loss_renders_with_extra_series_and_gaps() {
    let dir = dir("loss");
    let loss_rows =
        Array2::from_shape_fn(
            (400, 2),
            |(k, c)| {
                if c == 0 {
                    k as f64
                } else {
                    1.0 + 5.0 * (-(k as f64) / 50.0).exp() + 0.1 * ((k * 7919) % 13) as f64 / 13.0
                }
            },
        );
    let mut w2 = Array2::from_shape_fn((9, 2), |(k, c)| if c == 0 { 50.0 * k as f64 } else { 3.0 * (-(k as f64)).exp() });
    w2[[4, 1]] = f64::NAN;
    let path = dir.join("loss.png");
    let fig = LossFigure { width: 900, height: 360, ..LossFigure::default() };
    loss(&path, loss_rows.view(), &[("W2", w2.view())], &fig).unwrap();
    png(&path, (900, 360));
    let svg_path = dir.join("loss.svg");
    loss(&svg_path, loss_rows.view(), &[("W2", w2.view())], &fig).unwrap();
    let text = svg(&svg_path, (900, 360));
    assert!(text.contains("W2 (log scale)") && text.contains("1 non-finite not drawn") && text.contains("moving average"));
    // A single point, and negative values, draw too.
    let one = Array2::from_shape_vec((1, 2), vec![0.0, -1.0]).unwrap();
    loss(&dir.join("one.png"), one.view(), &[], &fig).unwrap();
    png(&dir.join("one.png"), (900, 360));
}

/// Counts the image descriptors (frames) of a GIF by walking its blocks.
fn gif_frames(bytes: &[u8]) -> usize {
    assert!(bytes.starts_with(b"GIF89a") || bytes.starts_with(b"GIF87a"), "not a GIF");
    let flags = bytes[10];
    let mut i = 13 + if flags & 0x80 != 0 { 3 << ((flags & 7) + 1) } else { 0 };
    let skip_sub_blocks = |mut i: usize| {
        while bytes[i] != 0 {
            i += bytes[i] as usize + 1;
        }
        i + 1
    };
    let mut frames = 0;
    loop {
        match bytes[i] {
            0x21 => i = skip_sub_blocks(i + 2),
            0x2C => {
                frames += 1;
                let f = bytes[i + 9];
                i += 10 + if f & 0x80 != 0 { 3 << ((f & 7) + 1) } else { 0 };
                i = skip_sub_blocks(i + 1);
            }
            0x3B => return frames,
            b => panic!("bad GIF block {b:#x} at {i}"),
        }
    }
}

#[test]
fn animation_is_a_gif_with_a_frame_per_time() {
    use image::AnimationDecoder;
    let dir = dir("animation");
    let gmm = gmm();
    let (states, times) = straight_paths(&gmm, 200, 5);
    let path = dir.join("flow.gif");
    animation(&path, states.view(), &times, Some(&gmm), &small_animation()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(gif_frames(&bytes), 6 + 2);
    let frames = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&bytes)).unwrap().into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 8);
    assert_eq!(frames[0].buffer().dimensions(), (260, 220));
    assert_ne!(frames[0].buffer().as_raw(), frames[5].buffer().as_raw(), "the samples move");
    let distinct: std::collections::HashSet<_> = frames[3].buffer().pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 10);
    // More time steps than max_frames: first and last kept.
    let (states, times) = straight_paths(&gmm, 20, 30);
    let fig = AnimationFigure { max_frames: 4, hold_frames: 0, ..small_animation() };
    animation(&path, states.view(), &times, None, &fig).unwrap();
    assert_eq!(gif_frames(&std::fs::read(&path).unwrap()), 4);
    assert_eq!(files(&dir), ["flow.gif"]);
}

/// Runs `f`, expects an error whose message holds `needle`, and that `dir` is as before.
fn refused(dir: &std::path::Path, needle: &str, f: impl FnOnce() -> fm_viz::Result<()>) {
    let before = files(dir);
    let err = f().expect_err("expected an error").to_string();
    assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
    assert_eq!(files(dir), before, "something was left behind ({err})");
}

#[test]
fn bad_inputs_are_errors_that_leave_nothing_behind() {
    let dir = dir("bad");
    let gmm = gmm();
    let (states, times) = straight_paths(&gmm, 10, 4);
    let p = dir.join("f.png");
    let fig = small_trajectories();
    // An existing figure stays untouched by failed rewrites.
    std::fs::write(&p, b"previous figure").unwrap();

    refused(&dir, "shape", || trajectories(&p, Array3::zeros((0, 5, 2)).view(), &[], None, &fig));
    refused(&dir, "shape", || trajectories(&p, Array3::zeros((3, 0, 2)).view(), &[0.0, 0.5, 1.0], None, &fig));
    refused(&dir, "times", || trajectories(&p, states.view(), &times[..3], None, &fig));
    refused(&dir, "increasing", || trajectories(&p, states.view(), &[0.0, 0.5, 0.4, 0.8, 1.0], None, &fig));
    let mut nan = states.clone();
    nan[[2, 3, 1]] = f64::NAN;
    refused(&dir, "non-finite", || trajectories(&p, nan.view(), &times, Some(&gmm), &fig));
    refused(&dir, "coordinates", || trajectories(&p, states.view(), &times, None, &TrajectoryFigure { coords: (0, 2), ..fig.clone() }));
    refused(&dir, "coordinates", || trajectories(&p, states.view(), &times, None, &TrajectoryFigure { coords: (1, 1), ..fig.clone() }));
    refused(&dir, "px", || trajectories(&p, states.view(), &times, None, &TrajectoryFigure { width: 0, ..fig.clone() }));
    refused(&dir, "range", || trajectories(&p, states.view(), &times, None, &TrajectoryFigure { x_range: Some(1.0..1.0), ..fig.clone() }));
    refused(&dir, "3-D", || trajectories(&p, states.view(), &times, Some(&StandardNormal::new(3).unwrap()), &fig));

    let ffig = small_field();
    let ok = |x: ArrayView2<f64>, t: f64| Ok::<_, std::convert::Infallible>(gaussian_velocity(x, t));
    refused(&dir, "shape", || field(&p, |x: ArrayView2<f64>, _| Ok::<_, String>(Array2::zeros((x.nrows(), 3))), None, &ffig));
    refused(&dir, "non-finite", || field(&p, |x: ArrayView2<f64>, _| Ok::<_, String>(Array2::from_elem(x.raw_dim(), f64::NAN)), None, &ffig));
    refused(&dir, "model exploded", || field(&p, |_: ArrayView2<f64>, _| Err::<Array2<f64>, _>("model exploded"), None, &ffig));
    refused(&dir, "times", || field(&p, ok, None, &FieldFigure { times: vec![], ..ffig.clone() }));
    refused(&dir, "times", || field(&p, ok, None, &FieldFigure { times: vec![f64::NAN], ..ffig.clone() }));
    refused(&dir, "coordinates", || field(&p, ok, None, &FieldFigure { coords: (0, 5), ..ffig.clone() }));
    refused(&dir, "px", || field(&p, ok, None, &FieldFigure { height: 0, ..ffig.clone() }));
    refused(&dir, "plane", || field(&p, ok, None, &FieldFigure { through: vec![1.0; 3], ..ffig.clone() }));

    let dfig = small_density();
    refused(&dir, "values", || density(&p, |_: ArrayView2<f64>| Ok::<_, String>(Array1::zeros(3)), Some(&gmm), &dfig));
    refused(&dir, "NaN", || density(&p, |x: ArrayView2<f64>| Ok::<_, String>(Array1::from_elem(x.nrows(), f64::NAN)), Some(&gmm), &dfig));
    refused(&dir, "-∞ everywhere", || density(&p, |x: ArrayView2<f64>| Ok::<_, String>(Array1::from_elem(x.nrows(), f64::NEG_INFINITY)), None, &dfig));
    refused(&dir, "no likelihood", || density(&p, |_: ArrayView2<f64>| Err::<Array1<f64>, _>("no likelihood"), Some(&gmm), &dfig));
    refused(&dir, "clip", || density(&p, |x: ArrayView2<f64>| gmm.log_prob(x), Some(&gmm), &DensityFigure { clip: 0.0, ..dfig.clone() }));
    refused(&dir, "coordinates", || density(&p, |x: ArrayView2<f64>| gmm.log_prob(x), Some(&gmm), &DensityFigure { coords: (2, 0), ..dfig.clone() }));

    let lfig = LossFigure { width: 500, height: 300, ..LossFigure::default() };
    let rows = Array2::from_shape_fn((10, 2), |(k, c)| if c == 0 { k as f64 } else { 1.0 / (k + 1) as f64 });
    refused(&dir, "shape", || loss(&p, Array2::zeros((0, 2)).view(), &[], &lfig));
    refused(&dir, "shape", || loss(&p, Array2::zeros((4, 3)).view(), &[], &lfig));
    refused(&dir, "shape", || loss(&p, rows.view(), &[("W2", Array2::zeros((0, 2)).view())], &lfig));
    let mut bad_step = rows.clone();
    bad_step[[3, 0]] = f64::NAN;
    refused(&dir, "step", || loss(&p, bad_step.view(), &[], &lfig));
    let all_nan = Array2::from_shape_fn((3, 2), |(k, c)| if c == 0 { k as f64 } else { f64::NAN });
    refused(&dir, "no finite", || loss(&p, all_nan.view(), &[], &lfig));
    let negative = rows.mapv(|v| v - 0.5);
    refused(&dir, "log", || loss(&p, negative.view(), &[], &LossFigure { log_y: Some(true), ..lfig.clone() }));
    refused(&dir, "px", || loss(&p, rows.view(), &[], &LossFigure { width: 0, ..lfig.clone() }));

    let g = dir.join("f.gif");
    let afig = small_animation();
    refused(&dir, "GIF", || animation(&dir.join("f.svg"), states.view(), &times, None, &afig));
    refused(&dir, "shape", || animation(&g, Array3::zeros((0, 0, 2)).view(), &[], None, &afig));
    refused(&dir, "non-finite", || animation(&g, nan.view(), &times, None, &afig));
    refused(&dir, "coordinates", || animation(&g, states.view(), &times, None, &AnimationFigure { coords: (3, 0), ..afig.clone() }));
    refused(&dir, "px", || animation(&g, states.view(), &times, None, &AnimationFigure { width: 0, height: 0, ..afig.clone() }));
    refused(&dir, "frame_delay_ms", || animation(&g, states.view(), &times, None, &AnimationFigure { frame_delay_ms: 0, ..afig.clone() }));

    // A folder that does not exist: an error, nothing created.
    let missing = dir.join("missing").join("f.png");
    refused(&dir, "missing", || trajectories(&missing, states.view(), &times, None, &fig));
    refused(&dir, "missing", || animation(&dir.join("missing").join("f.gif"), states.view(), &times, None, &afig));

    assert_eq!(std::fs::read(&p).unwrap(), b"previous figure");
    assert_eq!(files(&dir), ["f.png"]);
}

#[test]
fn any_extension_but_svg_is_png() {
    let dir = dir("ext");
    let (states, times) = straight_paths(&gmm(), 10, 3);
    for name in ["figure", "figure.out", "FIGURE.PNG"] {
        trajectories(&dir.join(name), states.view(), &times, None, &small_trajectories()).unwrap();
        png(&dir.join(name), (560, 440));
    }
    trajectories(&dir.join("upper.SVG"), states.view(), &times, None, &small_trajectories()).unwrap();
    svg(&dir.join("upper.SVG"), (560, 440));
    assert_eq!(files(&dir).len(), 4);
}
