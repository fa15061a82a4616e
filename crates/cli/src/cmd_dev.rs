//! `livetalk dev …`: developer tools. `livetalk dev parity DIR` runs every parity fixture found
//! in DIR through the library and prints one line per fixture.

use std::path::PathBuf;

use anyhow::bail;
use livetalk_engine::parity::{self, ParityOptions, FIXTURES};

#[derive(clap::Subcommand, Debug)]
pub enum DevCommand {
    /// Check the models against a directory of parity fixtures (laid out like fixtures/):
    /// one line per fixture `NAME  max_err=…  tol=…  PASS|FAIL`; exit status 0 only when at
    /// least one fixture ran and all passed.
    Parity(ParityArgs),
    /// Measure lip-sync end to end through PipeWire: tone bursts into `livetalk run`, the
    /// camera node and the virtual microphone read by real consumers; prints the A/V offset and
    /// mouth-to-camera latency (p50/p95). Needs PipeWire running and a `pipewire` build.
    Avsync(crate::avsync::AvsyncArgs),
}

#[derive(clap::Args, Debug)]
pub struct ParityArgs {
    /// Fixture directory (NAME.fixture.json + NAME.io.safetensors, the weights and configs).
    pub dir: PathBuf,
    /// Where the models run.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Precision of weights and activations (bf16 is held to the tolerances of docs/PARITY.md).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// Also print one line per compared tensor under each fixture.
    #[arg(long)]
    pub tensors: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeArg {
    F32,
    Bf16,
}

pub fn dev(cmd: DevCommand) -> anyhow::Result<()> {
    match cmd {
        DevCommand::Parity(args) => parity_cmd(args),
        DevCommand::Avsync(args) => crate::avsync::avsync(args),
    }
}

fn parity_cmd(args: ParityArgs) -> anyhow::Result<()> {
    if !args.dir.is_dir() {
        bail!("{}: not a directory", args.dir.display());
    }
    let device = match args.device {
        DeviceArg::Cpu => "cpu",
        DeviceArg::Cuda => "cuda",
    };
    let dtype = match args.dtype {
        DtypeArg::F32 => "f32",
        DtypeArg::Bf16 => "bf16",
    };
    let opts = ParityOptions::parse(device, dtype)?;
    // A kernel that panics becomes that fixture's FAIL line (parity::run_fixture catches it);
    // keep the default hook from printing the panic on top of it.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = 0;
    let mut ran = 0;
    for name in FIXTURES {
        if !parity::fixture_present(&args.dir, name) {
            continue;
        }
        let report = parity::run_fixture(&args.dir, name, &opts);
        println!("{}", report.line());
        if args.tensors {
            for line in report.tensor_lines() {
                println!("{line}");
            }
        }
        ran += 1;
        if !report.passed() {
            failed += 1;
        }
    }
    std::panic::set_hook(hook);
    if ran == 0 {
        bail!(
            "{}: no parity fixture found (looked for NAME.fixture.json + NAME.io.safetensors, NAME one of {})",
            args.dir.display(),
            FIXTURES.join(", ")
        );
    }
    if failed > 0 {
        bail!("{failed} of {ran} fixtures failed");
    }
    println!("all {ran} fixtures passed ({dtype} on {device})");
    Ok(())
}
