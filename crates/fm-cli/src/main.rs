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
    /// Judge samples (.npy) against the seed's mixture: component shares, log-density, exact W2.
    #[command(after_help = "Example:\n  fm eval --samples runs/seed/samples.npy")]
    Eval(eval::EvalArgs),
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
    };
    if let Err(e) = result {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}
