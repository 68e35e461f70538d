//! `fm eval`: how good samples, or a model, are, judged against a target.

use crate::quality::EvalFlags;
use anyhow::Result;
use fm_run::EvalConfig;
use fm_train::LikelihoodConfig;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(true).args(["samples", "checkpoint", "oracle"]))]
pub struct EvalArgs {
    #[command(flatten)]
    pub threads: crate::config::ThreadsFlag,
    /// A run file (e.g. a run's config.toml): its target, source, path and `[eval]` section are the defaults here.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Samples to judge: a .npy (float32/float64, N×D) or .csv file, from fm, numpy or anywhere.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// The samples' log-densities under their proposal (N×1 .npy, as fm sample --log-q writes) [default: SAMPLES with
    /// .logq.npy, where it exists]: the samples are then also weighed against the target's density: effective sample
    /// size, log Z (beside its exact value where known), energy W2, reweighted component shares.
    #[arg(long, value_name = "FILE", requires = "samples")]
    log_q: Option<PathBuf>,
    /// A model to judge by its exact likelihood (KL(target ‖ model) on fresh target samples; --kl-points 0 skips it)
    /// and, for a Gaussian-mixture target, by its distance to the exact field of its training setting (field error,
    /// loss floor, error over t). A distilled or MeanFlow model is judged by 10,000 of its one-step samples instead.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Judge the exact flow of a Gaussian-mixture target by the same likelihood code: KL(target ‖ exact flow),
    /// 0 up to the integrator's error (a check of the integrators and the likelihood against the truth).
    #[arg(long)]
    oracle: bool,
    /// The distribution they should follow [default: the run file's, else the checkpoint's target, else gmm3].
    #[arg(long)]
    target: Option<String>,
    /// With --oracle: the source [default: the run file's, else normal:D].
    #[arg(long, requires = "oracle")]
    source: Option<String>,
    /// With --oracle: the probability path (linear, icfm:σ, lipman:σ_min, vp) [default: the run file's, else linear].
    #[arg(long, requires = "oracle")]
    path: Option<fm_train::ProbabilityPath>,
    #[command(flatten)]
    eval: EvalFlags,
    #[command(flatten)]
    foreign: crate::config::ForeignModelArgs,
    /// Integration steps of the likelihood ODE (RK4, from t = 1 to 0).
    #[arg(long, default_value_t = LikelihoodConfig::default().steps)]
    kl_steps: usize,
    /// Seed of the fresh true samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A conditional checkpoint's classes to judge one by one (K, K,K or all): per class, KL(p(·|c) ‖ q(·|c)) from the
    /// exact likelihood (--kl-points of them, each class a likelihood solve), W2 to fresh class samples beside its
    /// floor, and purity. Without it a conditional checkpoint is judged by its "no condition" entry.
    #[arg(long, value_name = "K|K,K|all", requires = "checkpoint")]
    class: Option<String>,
    /// The classifier-free guidance scale w the classes are sampled and judged with.
    #[arg(long, value_name = "W", default_value_t = 1.0, requires = "checkpoint", allow_hyphen_values = true)]
    cfg_scale: f64,
}

pub fn eval(args: EvalArgs, m: &clap::ArgMatches) -> Result<()> {
    let run = args.config.as_deref().map(crate::config::RunConfig::read).transpose()?;
    let mut eval = run.as_ref().map_or_else(EvalConfig::default, |r| r.eval.clone());
    args.eval.apply(m, &mut eval);
    if crate::config::given(m, "kl_steps") {
        eval.likelihood.steps = args.kl_steps;
    }
    let job = fm_run::EvalJob {
        foreign: args.foreign.options(run.as_ref()),
        run,
        samples: args.samples,
        checkpoint: args.checkpoint,
        oracle: args.oracle,
        target: args.target,
        source: args.source,
        path: args.path,
        eval,
        seed: args.seed,
        class: args.class,
        cfg_scale: args.cfg_scale,
        log_q: args.log_q,
    };
    Ok(fm_run::evaluate(&job, &mut |finding| match finding {
        fm_run::Finding::Aside(line) => eprintln!("{line}"),
        finding => println!("{finding}"),
    })?)
}
