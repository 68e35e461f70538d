//! The compare figure renders a real picture.

use fm_dist::{GaussianMixture, StandardNormal, Target};
use fm_viz::{compare, CompareFigure};
use rand::{rngs::StdRng, SeedableRng};

#[test]
fn renders_a_png_of_the_requested_size_that_is_not_blank() {
    let dir = std::env::temp_dir().join(format!("fm-viz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("compare.png");
    let gmm = GaussianMixture::seed();
    let samples = gmm.sample(2000, &mut StdRng::seed_from_u64(0));
    let fig = CompareFigure { width: 900, height: 400, resolution: 80, ..CompareFigure::default() };
    compare(&path, &gmm, samples.view(), &fig).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (900, 400));
    let distinct: std::collections::HashSet<_> = img.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 20, "only {} colours", distinct.len());
    // Orange sample points are on the right half.
    assert!(img.enumerate_pixels().any(|(x, _, p)| x > 450 && p.0[0] > 200 && p.0[2] < 120));
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn refuses_data_it_cannot_draw() {
    let path = std::env::temp_dir().join(format!("fm-viz-bad-{}.png", std::process::id()));
    let three_d = StandardNormal::new(3).unwrap();
    let x = three_d.sample(10, &mut StdRng::seed_from_u64(0));
    assert!(compare(&path, &three_d, x.view(), &CompareFigure::default()).unwrap_err().to_string().contains("2-D"));
    let gmm = GaussianMixture::seed();
    let x = gmm.sample(10, &mut StdRng::seed_from_u64(0));
    let bad = CompareFigure { x_range: 1.0..-1.0, ..CompareFigure::default() };
    assert!(compare(&path, &gmm, x.view(), &bad).is_err());
    assert!(!path.exists());
}
