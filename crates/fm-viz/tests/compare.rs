//! The compare figure renders a real picture.

mod common;

use fm_dist::{GaussianMixture, StandardNormal, Target};
use fm_viz::{compare, CompareFigure};
use rand::{rngs::StdRng, SeedableRng};

#[test]
fn renders_a_png_of_the_requested_size_that_is_not_blank() {
    let dir = common::dir("compare");
    let path = dir.join("compare.png");
    let gmm = GaussianMixture::seed();
    let samples = gmm.sample(2000, &mut StdRng::seed_from_u64(0));
    let fig = CompareFigure { width: 900, height: 400, resolution: 80, ..CompareFigure::default() };
    compare(&path, &gmm, samples.view(), &fig).unwrap();
    let img = common::png(&path, (900, 400));
    // Orange sample points are on the right half.
    assert!(img.enumerate_pixels().any(|(x, _, p)| x > 450 && p.0[0] > 200 && p.0[2] < 120));
    // No temporary file is left beside it.
    assert_eq!(common::files(&dir), ["compare.png"]);
}

#[test]
fn default_is_the_seed_figure_and_fitted_axes_are_one_call_away() {
    let seed = CompareFigure::default();
    assert_eq!((seed.x_range.clone(), seed.y_range.clone()), (Some(-6.0..8.0), Some(-5.0..6.0)));
    assert_eq!((seed.width, seed.height), (1800, 760));
    assert_eq!(CompareFigure::seed().x_range, seed.x_range);
    assert!(CompareFigure::fitted().x_range.is_none() && CompareFigure::fitted().y_range.is_none());

    let dir = common::dir("compare-fitted");
    let gmm = GaussianMixture::seed();
    let samples = gmm.sample(1000, &mut StdRng::seed_from_u64(0));
    let fig = CompareFigure { width: 900, height: 400, resolution: 60, ..CompareFigure::fitted() };
    compare(&dir.join("c.png"), &gmm, samples.view(), &fig).unwrap();
    common::png(&dir.join("c.png"), (900, 400));
    compare(&dir.join("c.svg"), &gmm, samples.view(), &fig).unwrap();
    assert!(common::svg(&dir.join("c.svg"), (900, 400)).contains("density"));
}

#[test]
fn higher_dimensional_data_draws_a_chosen_pair() {
    let dir = common::dir("compare-3d");
    let three_d = StandardNormal::new(3).unwrap();
    let x = three_d.sample(500, &mut StdRng::seed_from_u64(0));
    let fig = CompareFigure { width: 900, height: 400, coords: (2, 0), ..CompareFigure::fitted() };
    compare(&dir.join("c.svg"), &three_d, x.view(), &fig).unwrap();
    let text = common::svg(&dir.join("c.svg"), (900, 400));
    assert!(text.contains("coordinates 3 and 1 of 3"));
}

#[test]
fn refuses_data_it_cannot_draw() {
    let dir = common::dir("compare-bad");
    let path = dir.join("bad.png");
    let three_d = StandardNormal::new(3).unwrap();
    let gmm = GaussianMixture::seed();
    let x2 = gmm.sample(10, &mut StdRng::seed_from_u64(0));
    assert!(compare(&path, &three_d, x2.view(), &CompareFigure::default()).unwrap_err().to_string().contains("3-D"));
    let x3 = three_d.sample(10, &mut StdRng::seed_from_u64(0));
    assert!(compare(&path, &three_d, x3.view(), &CompareFigure { coords: (0, 3), ..CompareFigure::default() }).is_err());
    let bad = CompareFigure { x_range: Some(1.0..-1.0), ..CompareFigure::default() };
    assert!(compare(&path, &gmm, x2.view(), &bad).is_err());
    let mut nan = x2.clone();
    nan[[3, 1]] = f64::NAN;
    assert!(compare(&path, &gmm, nan.view(), &CompareFigure::default()).unwrap_err().to_string().contains("non-finite"));
    assert!(compare(&path, &gmm, x2.view(), &CompareFigure { width: 0, ..CompareFigure::default() }).is_err());
    assert!(common::files(&dir).is_empty());
}
