//! `livetalk bench`: engine speed on this machine.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use livetalk_engine::bench::{bench_livetalk, LiveTalkBenchOptions};
use livetalk_model::dit::DitConfig;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which engine to measure: the CPU avatar, or the LiveTalk model (random weights, no files).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "livetalk"])]
    pub engine: String,
    /// CPU avatar: frame size WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_parser = crate::cmd_demo::parse_size)]
    pub size: (u32, u32),
    /// CPU avatar: how many frames to render.
    #[arg(long, default_value_t = 600)]
    pub frames: u32,
    /// LiveTalk: device (`cuda` needs a binary built with `--features cuda`).
    #[arg(long, default_value = "cuda", value_parser = ["cpu", "cuda"])]
    pub device: String,
    /// LiveTalk: weights dtype (default bf16 on CUDA, f32 on the CPU).
    #[arg(long, value_parser = ["f32", "bf16"])]
    pub dtype: Option<String>,
    /// LiveTalk: output side in pixels (the published model: 512).
    #[arg(long, default_value_t = 512)]
    pub side: usize,
    /// LiveTalk: blocks measured after the window is full.
    #[arg(long, default_value_t = 8)]
    pub blocks: usize,
    /// Measure persona switches instead: the time from the switch command to the new persona's
    /// first frame (CPU avatar, live, cross-fade on), over this many switches.
    #[arg(long, value_name = "N")]
    pub switches: Option<usize>,
    /// With --switches: switch between anna and this webcam (a "me" persona; needs `--features webcam`).
    #[arg(long, value_name = "DEVICE", requires = "switches")]
    pub webcam: Option<String>,
    /// LiveTalk: a DiT config JSON for a smaller model (e.g. fixtures/dit.config.json); default the
    /// real 1.3B configuration.
    #[arg(long)]
    pub dit_config: Option<PathBuf>,
    /// LiveTalk: also measure this many streams (personas) sharing the GPU, each with its own
    /// KV cache and decoder, interleaved block by block.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// LiveTalk: the decoder turning latents into frames (full size, random weights): TAEHV, or
    /// the Wan2.1 VAE's cached causal decoder (the reference's 20.6 fps figure decodes with it).
    #[arg(long, default_value = "taehv", value_parser = ["taehv", "wan-vae"])]
    pub decoder: String,
    /// LiveTalk on CUDA: also trace this many steady blocks with CUPTI (libcupti on the library
    /// path) and print where the DiT's and the decoder's time goes: GPU busy and idle, kernel
    /// time by kind, the costliest kernels, the driver calls the host makes.
    #[arg(long, value_name = "BLOCKS", num_args = 0..=1, default_missing_value = "2", default_value_t = 0)]
    pub profile: usize,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if let Some(switches) = args.switches {
        if switches == 0 {
            bail!("--switches must be at least 1");
        }
        return crate::bench_switch::bench_switches(switches, args.size, args.webcam.as_deref());
    }
    if args.engine == "cpu" {
        let (w, h) = args.size;
        let report = livetalk_engine::avatar::bench::bench_cpu_avatar(w, h, args.frames as usize)?;
        println!("{report}");
        return Ok(());
    }
    let device = match args.device.as_str() {
        "cuda" => livetalk_model::open_cuda(0).context("opening CUDA device 0 (build with --features cuda, and check the driver)")?,
        _ => Device::Cpu,
    };
    let dtype = match args.dtype.as_deref() {
        Some("f32") => DType::F32,
        Some("bf16") => DType::BF16,
        _ if device.is_cuda() => DType::BF16,
        _ => DType::F32,
    };
    if !args.side.is_multiple_of(16) || args.side == 0 {
        bail!("--side {} must be a positive multiple of 16", args.side);
    }
    let config = match &args.dit_config {
        Some(path) => Some(DitConfig::from_json_file(path).with_context(|| format!("reading {}", path.display()))?),
        None => None,
    };
    let decoder = args.decoder.parse().map_err(anyhow::Error::msg)?;
    // decoding on a second stream overlaps the next block's DiT passes only on a GPU
    let overlap_decode = device.is_cuda();
    let opts = LiveTalkBenchOptions {
        device,
        dtype,
        size: args.side,
        blocks: args.blocks.max(1),
        text_len: 512,
        config,
        streams: args.streams,
        decoder,
        overlap_decode,
        profile_blocks: args.profile,
    };
    let report = bench_livetalk(&opts)?;
    println!("{report}");
    Ok(())
}
