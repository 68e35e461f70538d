//! `fm`: flow matching from the command line. Thin: parse, call the crates, print.

mod eval;
mod quality;
mod run;
mod sample;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fm", version, about = "Flow matching: learn a velocity field from noise to a target, sample it, judge the samples.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seed experiment end to end: train, sample, save checkpoint, samples and figure, report quality.
    #[command(after_help = "Example:\n  fm run                          # the seed experiment with its defaults, into runs/seed\n  fm run --steps 2000 --out runs/quick --device cpu")]
    Run(run::RunArgs),
    /// Generate samples from a checkpoint by integrating its velocity field.
    #[command(after_help = "Example:\n  fm sample --checkpoint runs/seed/model.safetensors --method rk4 --steps 20")]
    Sample(sample::SampleArgs),
    /// Judge samples (.npy) against a target: exact W2 and MMD, plus log-density and component shares where they exist.
    #[command(after_help = "Example:\n  fm eval --samples runs/seed/samples.npy\n  fm eval --samples moons.npy --target moons")]
    Eval(eval::EvalArgs),
    /// List the built-in targets (and the file-based ones), one line each.
    #[command(after_help = "Example:\n  fm targets\n  fm run --target 8gaussians --source normal\n  fm run --target moons --source 8gaussians")]
    Targets,
}

fn main() {
    // Whatever happens, the user sees one line, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_default();
        eprintln!("error: internal error (a bug, please report it): {msg}");
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Sample(args) => sample::sample(args),
        Command::Eval(args) => eval::eval(args),
        Command::Targets => {
            for (name, what) in fm_dist::list_targets() {
                println!("{name:<14} {what}");
            }
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}
