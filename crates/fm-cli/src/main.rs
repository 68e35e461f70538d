//! `fm`: flow matching from the command line. Thin: parse, call the crates, print.

mod config;
mod convert;
mod eval;
mod inspect;
mod plot;
mod quality;
mod run;
mod sample;
mod train;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fm", version, about = "Flow matching: learn a velocity field from one distribution to another, sample it, judge the samples.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train, sample, draw and judge in one go (the seed experiment by default).
    #[command(after_help = "Examples:\n  fm run                                   # the seed experiment, into runs/seed\n  fm run --preset fast --out runs/fast     # same budget, better model\n  fm run --target moons --source 8gaussians --coupling ot --out runs/moons\n  fm run --config my-run.toml --steps 2000")]
    Run(run::RunArgs),
    /// Train a model and write its checkpoint, resolved config and loss log into a run folder.
    #[command(after_help = "Examples:\n  fm train --target 8gaussians --coupling ot --out runs/ot\n  fm train --config runs/ot/config.toml --steps 20000 --out runs/ot-long")]
    Train(train::TrainArgs),
    /// Generate samples from a checkpoint (.safetensors or PyTorch .pth) by integrating its velocity field.
    #[command(after_help = "Examples:\n  fm sample --checkpoint runs/seed/model.safetensors --method rk4 --steps 20\n  fm sample --checkpoint flow_match_model.pth --method dopri5 --rtol 1e-6 --out samples.csv")]
    Sample(sample::SampleArgs),
    /// Judge samples (.npy/.csv) against a target: exact W2 and MMD, plus log-density and component shares where they exist.
    #[command(after_help = "Examples:\n  fm eval --samples runs/seed/samples.npy\n  fm eval --samples moons.npy --target moons")]
    Eval(eval::EvalArgs),
    /// Draw a figure from a run or checkpoint: compare, trajectories, field, density, loss or animation.
    #[command(after_help = "Examples:\n  fm plot trajectories --run runs/seed            # writes runs/seed/trajectories.png\n  fm plot density --run runs/seed --out density.svg\n  fm plot animation --run runs/seed               # runs/seed/animation.gif\n  fm plot field --checkpoint flow_match_model.pth --target gmm3 --out field.png")]
    Plot(plot::PlotArgs),
    /// List the targets (built-in names and the file-based ones), one line each.
    #[command(after_help = "Example:\n  fm targets\n  fm run --target 8gaussians --source normal")]
    Targets,
    /// Show what a checkpoint holds: format, architecture, parameters, target and training settings.
    #[command(after_help = "Example:\n  fm inspect runs/seed/model.safetensors\n  fm inspect flow_match_model.pth")]
    Inspect(inspect::InspectArgs),
    /// Convert a checkpoint to PyTorch's .pth (torch.load(path, weights_only=True) reads it).
    #[command(after_help = "Example:\n  fm export --checkpoint runs/seed/model.safetensors --out model.pth")]
    Export(convert::ExportArgs),
    /// Convert a PyTorch checkpoint (.pth or .safetensors state dict) into an fm checkpoint.
    #[command(after_help = "Example:\n  fm import --checkpoint flow_match_model.pth --out runs/imported/model.safetensors")]
    Import(convert::ImportArgs),
}

fn main() {
    // Whatever happens, the user sees one line, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_default();
        eprintln!("error: internal error (a bug, please report it): {msg}");
    }));
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Flags override config files only where given: the commands need to know which were.
    let sub = matches.subcommand().map(|(_, m)| m.clone()).unwrap_or_default();
    let result = match cli.command {
        Command::Run(args) => run::run(args, &sub),
        Command::Train(args) => train::train(args, &sub).map(|_| ()),
        Command::Sample(args) => sample::sample(args, &sub),
        Command::Eval(args) => eval::eval(args, &sub),
        Command::Targets => {
            for (name, what) in fm_dist::list_targets() {
                println!("{name:<14} {what}");
            }
            Ok(())
        }
        Command::Plot(args) => plot::plot(args, &sub),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Export(args) => convert::export(args),
        Command::Import(args) => convert::import(args),
    };
    if let Err(e) = result {
        if let Some(stop) = e.downcast_ref::<train::Interrupted>() {
            eprintln!("{stop}");
            std::process::exit(130);
        }
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}
