//! `livetalk bench --engine livetalk`: the full-size LiveTalk model with random weights (no files
//! needed) streaming in steady state: the KV window full and evicting, 4 denoising passes + the
//! t=0 refresh pass per block of 3 latent frames, each latent decoded as it is ready by the
//! full-size TAEHV (default) or the Wan2.1 VAE's cached causal decoder (`--decoder wan-vae`: what
//! the reference's 20.6 fps figure decodes with), both with random weights.
//!
//! Figures: video fps, first-frame latency (a fresh stream: first block generated and its first
//! frame decoded), the per-block split (DiT passes, decode), and achieved TFLOP/s against the
//! matmul FLOP count of a block.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use livetalk_model::dit::{flops_per_forward, CausalWanModel, DitConfig, RandomInit};
use livetalk_model::taehv::{TaehvConfig, TaehvDecoder};
use livetalk_model::wan_vae::{WanVae, WanVaeConfig};

use crate::gpu_profile::PhaseProfile;
use crate::generator::{GeneratorConfig, SeededNoise, StreamGenerator};
use crate::livetalk::{BlockDecoder, DecoderKind};

#[derive(Debug, Clone)]
pub struct LiveTalkBenchOptions {
    pub device: Device,
    pub dtype: DType,
    /// Output frame side (512 for the published model).
    pub size: usize,
    /// Blocks measured after the warm-up.
    pub blocks: usize,
    /// Text tokens of the prompt embedding (512 in the reference).
    pub text_len: usize,
    /// A smaller model for quick runs on a CPU (`None`: the real 1.3B configuration).
    pub config: Option<DitConfig>,
    /// Also measure this many independent streams (personas) sharing the GPU, interleaved block
    /// by block (0 or 1: skip).
    pub streams: usize,
    /// Which decoder turns the latents into frames.
    pub decoder: DecoderKind,
    /// Also measure the block period with decoding in a second thread (on a second CUDA stream
    /// when the device is a GPU), overlapped with the next block's DiT passes.
    pub overlap_decode: bool,
    /// Also trace this many steady blocks with CUPTI (CUDA builds) and report where each
    /// phase's time goes (0: skip).
    pub profile_blocks: usize,
}

#[derive(Debug, Clone)]
pub struct LiveTalkBenchReport {
    pub device: String,
    pub decoder: DecoderKind,
    pub dtype: DType,
    pub size: usize,
    pub blocks: usize,
    pub frames_per_block: usize,
    pub first_frame_ms: f64,
    pub block_ms: Vec<f64>,
    pub dit_ms: Vec<f64>,
    pub decode_ms: Vec<f64>,
    pub flops_per_block: f64,
    /// Host time to enqueue a block's DiT passes (no sync): close to the DiT time = host-bound.
    pub enqueue_ms: Vec<f64>,
    /// Video frames decoded in the measured blocks and their size (width, height).
    pub frames_decoded: usize,
    pub frame_size: (usize, usize),
    /// Mean pixel value (in [0, 1]) of the last measured block's frames.
    pub pixel_mean: f64,
    /// Steady-state block period with decoding on a second thread (and CUDA stream), overlapped
    /// with the next block's DiT passes (when asked for).
    pub overlapped_block_ms: Option<f64>,
    /// Video frames the overlapped decoder produced in its measured blocks.
    pub overlapped_frames_decoded: usize,
    /// With `streams` streams interleaved: (streams, fps of each stream).
    pub multi_stream: Option<(usize, f64)>,
    /// Self-attention at the window-full shape, alone: ms per call and TFLOP/s.
    pub attention: AttentionFigure,
    /// Cross-attention over the prompt (ms per call).
    pub cross_attention_ms: f64,
    pub num_layers: usize,
    /// Most GPU memory in use seen after a block (CUDA only; the pool keeps its peak), bytes.
    pub gpu_memory_bytes: Option<u64>,
    /// GPU memory in use when the bench started (the CUDA context), bytes: what the model's
    /// own figure is measured above, comparable with PyTorch's peak allocated memory.
    pub gpu_context_bytes: Option<u64>,
    /// The traced phases (DiT passes, decode), or why no trace was made.
    pub profile: Option<Result<Vec<PhaseProfile>, String>>,
}

#[derive(Debug, Clone)]
pub struct AttentionFigure {
    pub path: String,
    pub shape: (usize, usize, usize, usize),
    pub ms: f64,
    pub tflops: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

impl LiveTalkBenchReport {
    /// Video fps: the overlapped pipeline where measured, else sequential DiT + decode.
    pub fn fps(&self) -> f64 {
        self.frames_per_block as f64 / (self.overlapped_block_ms.unwrap_or_else(|| median(&self.block_ms)) / 1e3)
    }

    pub fn sequential_fps(&self) -> f64 {
        self.frames_per_block as f64 / (median(&self.block_ms) / 1e3)
    }
}

impl std::fmt::Display for LiveTalkBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dit = median(&self.dit_ms);
        writeln!(f, "livetalk engine, {} {:?}, {}x{}, {} decoder, steady state (window full, evicting), {} blocks", self.device, self.dtype, self.size, self.size, self.decoder, self.blocks)?;
        writeln!(f, "  video fps            {:.1}", self.fps())?;
        if let Some(p) = self.overlapped_block_ms {
            writeln!(f, "    decode overlapped on a 2nd stream: {p:.1} ms per block; sequential {:.1} fps", self.sequential_fps())?;
        }
        if let Some((n, fps)) = self.multi_stream {
            writeln!(f, "  {n} streams interleaved: {fps:.1} fps each (DiT + {} decode per stream)", self.decoder)?;
        }
        writeln!(f, "  first frame          {:.0} ms", self.first_frame_ms)?;
        writeln!(f, "  block (12 frames)    {:.1} ms median (sequential)", median(&self.block_ms))?;
        writeln!(f, "    host enqueue       {:.1} ms of the DiT time (no sync)", median(&self.enqueue_ms))?;
        writeln!(f, "    DiT 5 passes       {:.1} ms ({:.1} ms per pass)", dit, dit / 5.0)?;
        writeln!(f, "    {:<19}{:.1} ms", format!("{} decode", self.decoder), median(&self.decode_ms))?;
        let (w, h) = self.frame_size;
        writeln!(f, "  decoded frames       {} of {w}x{h}, pixel mean {:.3}", self.frames_decoded, self.pixel_mean)?;
        writeln!(f, "  DiT matmul FLOPs     {:.1} TFLOP per block, {:.0} TFLOP/s achieved", self.flops_per_block / 1e12, self.flops_per_block / (dit / 1e3) / 1e12)?;
        let a = &self.attention;
        let (sq, skv, h, d) = a.shape;
        writeln!(f, "  attention ({})  q {sq} x kv {skv}, {h} heads x {d}: {:.2} ms, {:.0} TFLOP/s", a.path, a.ms, a.tflops)?;
        writeln!(f, "    per pass (x{} layers, + cross-attention {:.2} ms): {:.1} ms", self.num_layers, self.cross_attention_ms, self.num_layers as f64 * (a.ms + self.cross_attention_ms))?;
        match (self.gpu_memory_bytes, self.gpu_context_bytes) {
            (Some(b), Some(ctx)) => write!(
                f,
                "  GPU memory in use    {:.2} GB (max after a block); {:.2} GB above the {:.2} GB the CUDA context held at start",
                b as f64 / 1e9,
                b.saturating_sub(ctx) as f64 / 1e9,
                ctx as f64 / 1e9
            ),
            (Some(b), None) => write!(f, "  GPU memory in use    {:.2} GB (max after a block)", b as f64 / 1e9),
            _ => write!(f, "  GPU memory in use    n/a"),
        }?;
        match &self.profile {
            Some(Ok(phases)) => phases.iter().try_for_each(|p| write!(f, "\n{p}")),
            Some(Err(why)) => write!(f, "\n  profile: not made ({why})"),
            None => Ok(()),
        }
    }
}

pub fn bench_livetalk(opts: &LiveTalkBenchOptions) -> candle_core::Result<LiveTalkBenchReport> {
    if opts.blocks == 0 {
        candle_core::bail!("bench: at least one block must be measured");
    }
    let dev = &opts.device;
    let gpu_context = gpu_memory_in_use(dev);
    let cfg = opts.config.clone().unwrap_or_else(DitConfig::livetalk_1_3b);
    let dit = Arc::new(CausalWanModel::random(&cfg, opts.dtype, dev, 0)?);
    let decoders = RandomDecoder::new(opts.decoder, opts.dtype, dev)?;
    let gen_cfg = GeneratorConfig::default();
    let latent = opts.size / 8;
    let ref_latent = Tensor::randn(0f32, 1.0, (1, 1, 16, latent, latent), dev)?;
    let prompt = Tensor::randn(0f32, 1.0, (1, opts.text_len, cfg.text_dim), dev)?.to_dtype(opts.dtype)?;
    let audio_rows = cfg.audio_layers().len();
    let f = gen_cfg.num_frame_per_block;
    let audio = (audio_rows > 0)
        .then(|| Tensor::randn(0f32, 1.0, (audio_rows, f, 1, 1, cfg.dim), dev).and_then(|t| t.to_dtype(opts.dtype)))
        .transpose()?;
    let sync = || dev.synchronize();

    let mut generator = StreamGenerator::new(dit.clone(), gen_cfg.clone(), &ref_latent, &prompt, Box::new(SeededNoise::new(1)))?;
    let mut decoder = decoders.stream();
    // First frame of a fresh stream (weights resident, caches empty): one block + one latent decoded.
    // A throwaway block first, so one-time kernel loading is not counted.
    {
        let mut warm = StreamGenerator::new(dit.clone(), gen_cfg.clone(), &ref_latent, &prompt, Box::new(SeededNoise::new(2)))?;
        let x = warm.generate_block(audio.as_ref())?;
        decode_block(&mut decoders.stream(), &x.narrow(1, 0, 1)?, opts.dtype)?;
        sync()?;
    }
    let start = Instant::now();
    let x = generator.generate_block(audio.as_ref())?;
    decode_block(&mut decoder, &x.narrow(1, 0, 1)?, opts.dtype)?;
    sync()?;
    let first_frame_ms = start.elapsed().as_secs_f64() * 1e3;
    decode_block(&mut decoder, &x.narrow(1, 1, f - 1)?, opts.dtype)?;

    // Warm up until the window is full and evicting, then measure.
    let blocks_to_fill = (gen_cfg.local_attn_size as usize).div_ceil(f) + 1;
    let (mut block_ms, mut dit_ms, mut decode_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut gpu_memory = None;
    let mut enqueue_ms = Vec::new();
    let mut frames_decoded = 0;
    let mut last_video = None;
    for b in 0..blocks_to_fill + opts.blocks {
        let t0 = Instant::now();
        let x = generator.generate_block(audio.as_ref())?;
        let enqueued = t0.elapsed().as_secs_f64() * 1e3;
        sync()?;
        let t1 = Instant::now();
        let video = decode_block(&mut decoder, &x, opts.dtype)?;
        sync()?;
        let t2 = Instant::now();
        gpu_memory = gpu_memory.max(gpu_memory_in_use(dev));
        if b >= blocks_to_fill {
            enqueue_ms.push(enqueued);
            dit_ms.push((t1 - t0).as_secs_f64() * 1e3);
            decode_ms.push((t2 - t1).as_secs_f64() * 1e3);
            block_ms.push((t2 - t0).as_secs_f64() * 1e3);
            frames_decoded += video.dim(1)?;
            last_video = Some(video);
        }
    }
    let last_video = last_video.expect("blocks >= 1 is checked above");
    let (_, _, _, height, width) = last_video.dims5()?;
    let pixel_mean = last_video.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()? as f64;
    let overlapped = if opts.overlap_decode {
        Some(overlapped_period(&mut generator, audio.as_ref(), dev, opts.dtype, opts.decoder, opts.blocks)?)
    } else {
        None
    };
    let profile = (opts.profile_blocks > 0).then(|| profile_phases(&mut generator, &mut decoder, audio.as_ref(), dev, opts)).transpose()?;
    let multi_stream = if opts.streams > 1 {
        let mut streams = (0..opts.streams)
            .map(|i| {
                let g = StreamGenerator::new(dit.clone(), gen_cfg.clone(), &ref_latent, &prompt, Box::new(SeededNoise::new(10 + i as u64)))?;
                Ok((g, decoders.stream()))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut start = Instant::now();
        for b in 0..blocks_to_fill + opts.blocks {
            if b == blocks_to_fill {
                sync()?;
                start = Instant::now();
            }
            for (g, d) in streams.iter_mut() {
                let x = g.generate_block(audio.as_ref())?;
                decode_block(d, &x, opts.dtype)?;
            }
        }
        sync()?;
        let per_block = start.elapsed().as_secs_f64() / opts.blocks as f64;
        Some((opts.streams, (4 * f) as f64 / per_block))
    } else {
        None
    };
    let tokens = cfg.frame_seq_length(latent, latent);
    let kv_tokens = gen_cfg.local_attn_size as usize * tokens;
    let flops_per_block = 5.0 * flops_per_forward(&cfg, f, tokens, kv_tokens, opts.text_len);
    let attention = bench_attention(dev, opts.dtype, f * tokens, kv_tokens, cfg.num_heads, cfg.head_dim())?;
    let cross_attention_ms = bench_attention(dev, opts.dtype, f * tokens, opts.text_len, cfg.num_heads, cfg.head_dim())?.ms;
    Ok(LiveTalkBenchReport {
        device: format!("{:?}", dev.location()),
        decoder: opts.decoder,
        dtype: opts.dtype,
        size: opts.size,
        blocks: opts.blocks,
        frames_per_block: 4 * f,
        first_frame_ms,
        block_ms,
        dit_ms,
        decode_ms,
        flops_per_block,
        enqueue_ms,
        frames_decoded,
        frame_size: (width, height),
        pixel_mean,
        overlapped_block_ms: overlapped.map(|(ms, _)| ms),
        overlapped_frames_decoded: overlapped.map_or(0, |(_, frames)| frames),
        multi_stream,
        attention,
        cross_attention_ms,
        num_layers: cfg.num_layers,
        gpu_memory_bytes: gpu_memory,
        gpu_context_bytes: gpu_context,
        profile,
    })
}

/// Traces `opts.profile_blocks` steady blocks (DiT passes, then decode, each ended by a sync)
/// and summarises both phases; `Err` says why no trace could be made (not a CUDA build or
/// device, no libcupti).
fn profile_phases(
    generator: &mut StreamGenerator,
    decoder: &mut BlockDecoder,
    audio: Option<&Tensor>,
    dev: &Device,
    opts: &LiveTalkBenchOptions,
) -> candle_core::Result<Result<Vec<PhaseProfile>, String>> {
    #[cfg(feature = "cuda")]
    if dev.is_cuda() {
        use livetalk_model::cuda::cupti;
        if let Err(why) = cupti::start() {
            return Ok(Err(why));
        }
        let (mut dit, mut dec) = (Vec::new(), Vec::new());
        let traced = (|| {
            for _ in 0..opts.profile_blocks {
                let t0 = cupti::now_ns();
                let x = generator.generate_block(audio)?;
                dev.synchronize()?;
                let t1 = cupti::now_ns();
                decode_block(decoder, &x, opts.dtype)?;
                dev.synchronize()?;
                dit.push((t0, t1));
                dec.push((t1, cupti::now_ns()));
            }
            Ok::<_, candle_core::Error>(cupti::take())
        })();
        cupti::stop();
        let records = traced?;
        return Ok(Ok(vec![
            crate::gpu_profile::summarize("the DiT passes", &records, &dit),
            crate::gpu_profile::summarize(&format!("the {} decode", opts.decoder), &records, &dec),
        ]));
    }
    let _ = (generator, decoder, audio, opts);
    Ok(Err(format!("tracing needs a CUDA build and device, not {:?}", dev.location())))
}

/// Decodes a block's latents `[1, F, C, h, w]` one latent at a time, as the generator makes
/// them ready; returns the video `[1, T, 3, H, W]` (left on the device, not synced).
fn decode_block(decoder: &mut BlockDecoder, x: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    let videos = (0..x.dim(1)?)
        .map(|i| decoder.decode_video(&x.narrow(1, i, 1)?.to_dtype(dtype)?))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::cat(&videos, 1)
}

/// Steady-state block period (ms) and the frames decoded in the measured blocks, with the
/// decoder in its own thread decoding block k while block k+1 is generated; on a GPU, on its
/// own CUDA stream (a second candle device on the same GPU).
fn overlapped_period(
    generator: &mut StreamGenerator,
    audio: Option<&Tensor>,
    dev: &Device,
    dtype: DType,
    kind: DecoderKind,
    blocks: usize,
) -> candle_core::Result<(f64, usize)> {
    let dec_dev = if dev.is_cuda() { Device::new_cuda_with_stream(0)? } else { dev.clone() };
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = &dec_dev {
        // one stream per candle device; cross-stream order is kept by the syncs below
        unsafe { d.disable_event_tracking() };
    }
    let mut decoder = RandomDecoder::new(kind, dtype, &dec_dev)?.stream();
    let (to_decoder, latents) = crossbeam_channel::bounded::<Tensor>(1);
    let (done_tx, done) = crossbeam_channel::unbounded::<candle_core::Result<usize>>();
    let worker_dev = dec_dev.clone();
    let worker = std::thread::spawn(move || {
        for x in latents {
            let r = decode_block(&mut decoder, &x, dtype).and_then(|video| {
                worker_dev.synchronize()?;
                video.dim(1)
            });
            if done_tx.send(r).is_err() {
                break;
            }
        }
    });
    let warm = 2;
    let mut start = Instant::now();
    for b in 0..warm + blocks {
        if b == warm {
            // the decodes sent so far must be finished before the clock starts
            for _ in 0..warm {
                done.recv().map_err(candle_core::Error::wrap)??;
            }
            start = Instant::now();
        }
        let x = generator.generate_block(audio)?;
        // through the host (0.8 MB): a device-to-device copy would run on the decoder's stream
        // while the generator's stream may already reuse the source memory
        let x = x.to_device(&Device::Cpu)?.to_device(&dec_dev)?;
        to_decoder.send(x).map_err(candle_core::Error::wrap)?;
    }
    drop(to_decoder);
    let mut frames = 0;
    for _ in 0..blocks {
        frames += done.recv().map_err(candle_core::Error::wrap)??;
    }
    let period = start.elapsed().as_secs_f64() * 1e3 / blocks as f64;
    let _ = worker.join();
    Ok((period, frames))
}

/// Times the model's attention (`livetalk_model::dit::attend`: fused on CUDA bf16) alone at one
/// shape: queries `[1, sq, h*d]`, keys/values `[1, h, skv, d]`.
pub fn bench_attention(dev: &Device, dtype: DType, sq: usize, skv: usize, h: usize, d: usize) -> candle_core::Result<AttentionFigure> {
    let q = Tensor::randn(0f32, 1.0, (1, sq, h * d), dev)?.to_dtype(dtype)?;
    let k = Tensor::randn(0f32, 1.0, (1, h, skv, d), dev)?.to_dtype(dtype)?;
    let v = Tensor::randn(0f32, 1.0, (1, h, skv, d), dev)?.to_dtype(dtype)?;
    livetalk_model::dit::attend(&q, &k, &v, h)?;
    dev.synchronize()?;
    let path = match (dev.is_cuda(), livetalk_model::dit::fused_attention_status(dtype)) {
        (true, Ok(())) => "cuDNN fused".to_string(),
        (true, Err(why)) => format!("matmul-softmax-matmul: {why}"),
        (false, _) => "matmul-softmax-matmul".to_string(),
    };
    let iters = if dev.is_cuda() { 20 } else { 1 };
    let t = Instant::now();
    for _ in 0..iters {
        livetalk_model::dit::attend(&q, &k, &v, h)?;
    }
    dev.synchronize()?;
    let ms = t.elapsed().as_secs_f64() * 1e3 / iters as f64;
    let flops = 4.0 * (sq * skv * h * d) as f64;
    Ok(AttentionFigure { path, shape: (sq, skv, h, d), ms, tflops: flops / (ms / 1e3) / 1e12 })
}

/// GPU memory in use on the device now (total - free), CUDA only.
fn gpu_memory_in_use(dev: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = dev {
        let _ = d.cuda_stream().context().bind_to_thread();
        return candle_core::cuda_backend::cudarc::driver::result::mem_get_info().ok().map(|(free, total)| (total - free) as u64);
    }
    let _ = dev;
    None
}

/// A full-size decoder with random weights; every stream decodes with its own [`BlockDecoder`].
enum RandomDecoder {
    Taehv(Arc<TaehvDecoder>),
    WanVae(Arc<WanVae>),
}

impl RandomDecoder {
    fn new(kind: DecoderKind, dtype: DType, dev: &Device) -> candle_core::Result<Self> {
        Ok(match kind {
            DecoderKind::Taehv => RandomDecoder::Taehv(Arc::new(random_taehv(dtype, dev)?)),
            DecoderKind::WanVae => RandomDecoder::WanVae(Arc::new(random_wan_vae(dtype, dev)?)),
        })
    }

    fn stream(&self) -> BlockDecoder {
        match self {
            RandomDecoder::Taehv(m) => BlockDecoder::taehv(m),
            RandomDecoder::WanVae(m) => BlockDecoder::wan_vae(m),
        }
    }
}

/// The published Wan2.1 VAE with random weights (shapes from its config). The encoder is built
/// too: `livetalk run` keeps it resident to encode the reference picture.
fn random_wan_vae(dtype: DType, dev: &Device) -> candle_core::Result<WanVae> {
    WanVae::new(&WanVaeConfig::wan21(), VarBuilder::from_backend(Box::new(RandomInit), dtype, dev.clone()))
}

/// The full-size TAEW2.1 decoder with random weights shaped as the published file's.
fn random_taehv(dtype: DType, dev: &Device) -> candle_core::Result<TaehvDecoder> {
    let manifest = livetalk_model::layouts::taehv_manifest().map_err(candle_core::Error::wrap)?;
    let mut tensors = std::collections::HashMap::new();
    for (name, t) in manifest.tensors.iter().filter(|(n, _)| n.starts_with("decoder.")) {
        let fan_in: usize = t.shape.iter().skip(1).product::<usize>().max(1);
        let std = if name.ends_with("bias") { 0.02 } else { 1.0 / (fan_in as f64).sqrt() };
        let w = Tensor::randn(0f32, std as f32, t.shape.as_slice(), dev)?.to_dtype(dtype)?;
        tensors.insert(name.clone(), w);
    }
    TaehvDecoder::new(&TaehvConfig::taew2_1(), VarBuilder::from_tensors(tensors, dtype, dev))
}
