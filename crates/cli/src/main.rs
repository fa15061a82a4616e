//! `livetalk`: a portrait and a voice in, a live talking avatar out.
//! A thin binary: argument parsing and wiring; the work lives in the library crates.

mod audio_io;
mod avi;
mod bench_switch;
mod avsync;
mod cmd_bench;
mod cmd_ctl;
mod cmd_doctor;
mod cmd_models;
mod cmd_demo;
mod cmd_dev;
mod cmd_persona;
mod cmd_run;
mod hotkeys;
mod persona_new;
mod portrait;
mod download;
mod drive;
mod licence;
mod presets;
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "livetalk", version, about = "A portrait and a voice in; a live talking avatar out, as a camera any video app can use.")]
struct Cli {
    /// More log output (-v info, -vv debug); LIVETALK_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

// One value per process, parsed once: the size gap between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Render the persona speaking into a video file (AVI: Motion-JPEG + PCM audio).
    Demo(cmd_demo::DemoArgs),
    /// Show the live avatar in a preview window, driven by a file or TTS.
    Run(cmd_run::RunArgs),
    /// List and inspect persona presets.
    #[command(subcommand)]
    Persona(cmd_persona::PersonaCommand),
    /// Measure engine speed (frames per second) on this machine.
    Bench(cmd_bench::BenchArgs),
    /// Developer tools (parity checks against reference fixtures).
    #[command(subcommand)]
    Dev(cmd_dev::DevCommand),
    /// Control a running `livetalk run` (status, personas, switch, say, mute, pause, push, events).
    Ctl(cmd_ctl::CtlArgs),
    /// Make a running `livetalk run` speak text (shortcut for `livetalk ctl say`).
    Say(cmd_ctl::SayArgs),
    /// Check this machine: GPU, weights, camera, PipeWire, OBS plugin, espeak-ng.
    Doctor(cmd_doctor::DoctorArgs),
    /// The model registry: list models, download them (licence first), verify downloaded weights.
    #[command(subcommand)]
    Models(cmd_models::ModelsCommand),
}

/// Options shared by commands that pick a persona.
#[derive(clap::Args, Clone, Debug)]
pub struct PersonaArgs {
    /// Persona preset name (see `livetalk persona list`).
    #[arg(long, short = 'p', default_value = "anna")]
    pub persona: String,
    /// Extra folder(s) to load persona presets from (searched after the built-in ones).
    #[arg(long = "presets", value_name = "DIR")]
    pub preset_dirs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Demo(args) => cmd_demo::demo(args),
        Command::Run(args) => cmd_run::run(args),
        Command::Persona(cmd) => cmd_persona::persona(cmd),
        Command::Bench(args) => cmd_bench::bench(args),
        Command::Dev(cmd) => cmd_dev::dev(cmd),
        Command::Ctl(args) => cmd_ctl::ctl(args),
        Command::Say(args) => cmd_ctl::say(args),
        Command::Doctor(args) => cmd_doctor::doctor(args),
        Command::Models(cmd) => cmd_models::models(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the context chain joined, never a backtrace or a panic.
            eprintln!("error: {}", format_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn format_chain(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn init_logging(verbose: u8) {
    // Decoders log their own complaints about bad files; ours is the one error line.
    let default = match verbose {
        0 => "warn,symphonia=off",
        1 => "info,symphonia=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIVETALK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
