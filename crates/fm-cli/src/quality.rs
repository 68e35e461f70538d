//! The W2 settings `fm run` and `fm eval` share.

use fm_dist::{metrics::SampleQuality, Target};
use ndarray::ArrayView2;
use rand::RngCore;

#[derive(clap::Args, Debug)]
pub struct W2Args {
    /// Points per set for the W2 figure (at most the number of samples).
    #[arg(long, default_value_t = SampleQuality::W2_POINTS)]
    pub w2_points: usize,
    /// Independent draws the W2 figure is averaged over.
    #[arg(long, default_value_t = SampleQuality::W2_DRAWS)]
    pub w2_draws: usize,
}

impl W2Args {
    /// Judges `samples` against `target` with these W2 settings.
    pub fn measure(&self, target: &dyn Target, samples: ArrayView2<f64>, rng: &mut dyn RngCore) -> fm_dist::Result<SampleQuality> {
        SampleQuality::measure(target, samples, self.w2_points, self.w2_draws, rng)
    }
}
