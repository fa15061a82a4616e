//! `livetalk bench`: engine speed on this machine.

use anyhow::Result;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which engine to measure.
    #[arg(long, default_value = "cpu", value_parser = ["cpu"])]
    pub engine: String,
    /// Frame size WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_parser = crate::cmd_demo::parse_size)]
    pub size: (u32, u32),
    /// How many frames to render.
    #[arg(long, default_value_t = 600)]
    pub frames: u32,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let (w, h) = args.size;
    let report = livetalk_engine::avatar::bench::bench_cpu_avatar(w, h, args.frames as usize)?;
    println!("{report}");
    Ok(())
}
