//! `fm`: flow matching from the command line. Thin: parse, call the crates, print.

mod completions;
mod config;
mod convert;
mod eval;
mod flags;
mod inspect;
mod plot;
mod plot_field;
mod quality;
mod run;
mod sample;
mod targets;
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
    #[command(
        after_help = "Examples:\n  fm run                                   # the seed experiment, into runs/seed\n  fm run --preset fast --out runs/fast     # same budget, better model\n  fm run --target moons --source 8gaussians --coupling ot --out runs/moons\n  fm run --config my-run.toml --steps 2000"
    )]
    Run(run::RunArgs),
    /// Train a model and write its checkpoint, resolved config and loss log into a run folder.
    #[command(
        after_help = "Examples:\n  fm train --target 8gaussians --coupling ot --out runs/ot\n  fm train --config runs/ot/config.toml --steps 20000 --out runs/ot-long"
    )]
    Train(train::TrainArgs),
    /// Generate samples from a checkpoint (.safetensors or PyTorch .pth) by integrating its velocity field (or, for
    /// a distilled or MeanFlow checkpoint, in its one step or jumps).
    #[command(
        after_help = "Examples:\n  fm sample --checkpoint runs/seed/model.safetensors --method rk4 --steps 20\n  fm sample --config runs/seed/config.toml --samples 5000   # the run's model.safetensors, its [sample] section\n  fm sample --checkpoint flow_match_model.pth --activation relu --method dopri5 --rtol 1e-6 --out samples.csv\n  fm sample --oracle --target 8gaussians --method rk4 --steps 20   # the exact flow: no model"
    )]
    Sample(sample::SampleArgs),
    /// Judge samples (.npy/.csv) against a target (W2, MMD, log-density, component shares, with standard errors), a
    /// checkpoint (KL from its exact likelihood; for mixture targets its field error against the exact flow), or the exact flow.
    #[command(
        after_help = "Examples:\n  fm eval --samples runs/seed/samples.npy\n  fm eval --samples moons.npy --target moons\n  fm eval --checkpoint runs/fast/model.safetensors   # KL, field error, loss floor, error over t\n  fm eval --oracle --path vp                         # KL of the exact flow: the integrator's error"
    )]
    Eval(eval::EvalArgs),
    /// Draw a figure from a run or checkpoint: compare, trajectories, field, field-error, density, loss, animation, guidance or energy.
    #[command(
        after_help = "Examples:\n  fm plot trajectories --run runs/seed            # writes runs/seed/trajectories.png\n  fm plot density --run runs/seed --out density.svg\n  fm plot animation --run runs/seed               # runs/seed/animation.gif\n  fm plot loss --config runs/ot/config.toml       # that run's loss: runs/ot/loss.png\n  fm plot field --checkpoint flow_match_model.pth --activation relu --target gmm3 --out field.png\n  fm plot field-error --run runs/fast             # the model against the exact field, over t\n  fm plot field --exact --target 8gaussians --out exact.png   # the exact field; no model needed\n  fm plot energy --run runs/gmm40                 # energy histograms of an energy-trained run"
    )]
    Plot(plot::PlotArgs),
    /// List the targets (built-in and file-based), one line each; --config adds what a run file's target and source are.
    #[command(
        after_help = "Examples:\n  fm targets\n  fm targets --config runs/seed/config.toml    # also: its target and source, dimension, density\n  fm run --target 8gaussians --source normal"
    )]
    Targets(targets::TargetsArgs),
    /// Show what a checkpoint holds: format, architecture, parameters, target and training settings.
    #[command(
        after_help = "Examples:\n  fm inspect runs/seed/model.safetensors\n  fm inspect --config runs/seed/config.toml    # the run's model.safetensors\n  fm inspect flow_match_model.pth --activation relu"
    )]
    Inspect(inspect::InspectArgs),
    /// Convert a checkpoint to PyTorch's .pth (torch.load(path, weights_only=True) reads it).
    #[command(
        after_help = "Examples:\n  fm export --checkpoint runs/seed/model.safetensors --out model.pth\n  fm export --config runs/seed/config.toml --out model.pth   # the run's model.safetensors"
    )]
    Export(convert::ExportArgs),
    /// Convert a PyTorch checkpoint (.pth or .safetensors state dict) into an fm checkpoint.
    #[command(
        after_help = "Examples:\n  fm import --checkpoint flow_match_model.pth --activation relu --out runs/imported/model.safetensors\n  fm import --checkpoint net.pth --config my-run.toml --out net.safetensors   # the run file's activation"
    )]
    Import(convert::ImportArgs),
    /// Print a shell completion script for fm (bash, zsh, fish, elvish or powershell).
    #[command(
        after_help = "Examples:\n  fm completions bash > ~/.local/share/bash-completion/completions/fm\n  fm completions zsh > ~/.zfunc/_fm        # with fpath+=(~/.zfunc) before compinit in ~/.zshrc\n  fm completions fish > ~/.config/fish/completions/fm.fish\n  fm completions powershell >> $PROFILE\nA new shell picks the script up."
    )]
    Completions(completions::CompletionsArgs),
    /// Print the command-line reference as Markdown (the book's reference/commands.md).
    #[command(hide = true)]
    Reference,
}

fn main() {
    // Output piped into a reader that stops early (`fm targets | head -1`) ends the process
    // quietly, as for other Unix tools: Rust ignores SIGPIPE, so println! would panic on EPIPE.
    // SAFETY: no other thread runs yet, and SIG_DFL is a valid action for SIGPIPE.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Whatever happens, the user sees one line, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_default();
        eprintln!("error: internal error (a bug, please report it): {msg}");
    }));
    let matches = command().try_get_matches().unwrap_or_else(|e| exit_on_usage_error(e));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| exit_on_usage_error(e));
    // Flags override config files only where given: the commands need to know which were.
    let sub = matches.subcommand().map(|(_, m)| m.clone()).unwrap_or_default();
    // libtorch's threads: --threads, else OMP_NUM_THREADS, else measured (fm_train::threads).
    match fm_train::threads::ThreadSetting::from_env(sub.try_get_one::<usize>("threads").ok().flatten().copied()) {
        Ok(setting) => fm_train::threads::set(setting),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args, &sub),
        Command::Train(args) => train::train(args, &sub).map(|_| ()),
        Command::Sample(args) => sample::sample(args, &sub),
        Command::Eval(args) => eval::eval(args, &sub),
        Command::Targets(args) => targets::targets(args),
        Command::Plot(args) => plot::plot(args, &sub),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Export(args) => convert::export(args),
        Command::Import(args) => convert::import(args),
        Command::Completions(args) => completions::completions(args, &mut Cli::command()),
        Command::Reference => completions::reference(&Cli::command()),
    };
    if let Err(e) = result {
        if let Some(stop @ fm_run::Error::Interrupted { .. }) = e.downcast_ref::<fm_run::Error>() {
            eprintln!("{stop}");
            std::process::exit(130);
        }
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

/// The command line, with negative numbers taken as values (`--rtol -1` is then refused by the
/// check of rtol, naming it, rather than read as an unknown flag `-1`).
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |s| s.allow_negative_numbers(true));
    }
    cmd
}

/// Help and version go to stdout as clap prints them (exit 0); a usage error, a missing command
/// included, becomes the same one `error:` line and exit code 1 as every other error (clap's
/// own: several lines, exit code 2).
fn exit_on_usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind::{DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand, DisplayVersion};
    match e.kind() {
        DisplayHelp | DisplayVersion => e.exit(),
        DisplayHelpOnMissingArgumentOrSubcommand => {
            let names: Vec<String> = Cli::command().get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_string()).collect();
            eprintln!("error: fm needs a command: {} (see fm --help)", names.join(", "));
        }
        _ => eprintln!("{}", one_line(&e.render().to_string())),
    }
    std::process::exit(1);
}

/// Clap's message (`error: …`, indented details, blank line, `tip:` lines, usage, `For more
/// information…`) as one line: the message with its details, then the tips.
fn one_line(rendered: &str) -> String {
    let mut blocks = rendered.split("\n\n");
    let message = blocks.next().unwrap_or_default().split('\n').map(str::trim).collect::<Vec<_>>().join(" ");
    let tips: Vec<&str> = blocks.flat_map(|b| b.lines()).map(str::trim).filter(|l| l.starts_with("tip:")).collect();
    let message = if message.starts_with("error:") { message } else { format!("error: {message}") };
    if tips.is_empty() {
        format!("{message} (see --help)")
    } else {
        format!("{message} ({}; see --help)", tips.join("; "))
    }
}
