//! Helpers shared by the figure tests.
#![allow(dead_code)]

use fm_dist::{GaussianMixture, StandardNormal, Target};
use ndarray::{Array2, Array3};
use rand::{rngs::StdRng, SeedableRng};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A fresh, empty folder for one test.
pub fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fm-viz-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The names of the files in `dir`.
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Decodes a PNG, checks its size and that it is a picture (many colours), returns it.
pub fn png(path: &Path, (w, h): (u32, u32)) -> image::RgbImage {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (w, h));
    let distinct: HashSet<_> = img.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 20, "only {} colours", distinct.len());
    img
}

/// Checks that `path` is an SVG document of the given size; returns its text.
pub fn svg(path: &Path, (w, h): (u32, u32)) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.trim_start().starts_with("<svg"), "{} does not start with <svg", path.display());
    assert!(text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<svg").count(), 1);
    assert!(text.contains(&format!("width=\"{w}\"")) && text.contains(&format!("height=\"{h}\"")));
    assert_eq!(text.matches("<text").count(), text.matches("</text>").count());
    assert!(text.matches("<text").count() >= 3, "no labels");
    text
}

/// Whether some pixel satisfies `f` inside the box `x0..x1, y0..y1`.
pub fn any_pixel(img: &image::RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32), f: impl Fn([u8; 3]) -> bool) -> bool {
    img.enumerate_pixels().any(|(x, y, p)| x >= x0 && x < x1 && y >= y0 && y < y1 && f(p.0))
}

/// The seed's mixture.
pub fn gmm() -> GaussianMixture {
    GaussianMixture::seed()
}

/// Straight lines from N(0, I) samples to target samples: `[steps + 1, n, dim]` and the times.
pub fn straight_paths(target: &dyn Target, n: usize, steps: usize) -> (Array3<f64>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(1);
    let x0 = StandardNormal::new(target.dim()).unwrap().sample(n, &mut rng);
    let x1 = target.sample(n, &mut rng);
    let times: Vec<f64> = (0..=steps).map(|k| k as f64 / steps as f64).collect();
    let states = Array3::from_shape_fn((steps + 1, n, target.dim()), |(k, p, c)| (1.0 - times[k]) * x0[[p, c]] + times[k] * x1[[p, c]]);
    (states, times)
}

/// The velocity of the straight-line path towards N(m, I) from N(0, I) at time t (analytic):
/// x_t ~ N(t m, ((1-t)² + t²) I), u(x, t) = m + (t - (1 - t)) (x - t m) / ((1-t)² + t²).
pub fn gaussian_velocity(x: ndarray::ArrayView2<f64>, t: f64) -> Array2<f64> {
    let m = 2.0;
    let s = (1.0 - t).powi(2) + t * t;
    x.mapv(|v| m + (2.0 * t - 1.0) * (v - t * m) / s)
}
