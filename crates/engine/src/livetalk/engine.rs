//! `LiveTalkEngine`: the LiveTalk model behind [`AvatarEngine`].
//!
//! - `prepare(persona)`: the reference picture -> resize/pad to the model's size -> VAE encode ->
//!   reference latent; the prompt embedding from `<persona>.prompt.safetensors` next to the
//!   persona's preset (zeros with a warning when there is none); a fresh generator (seeded noise),
//!   decoder and position scheme.
//! - `render(window)`: one block = 3 latent frames = 12 frames at 16 fps. Stream block `k`'s
//!   frames are the generator's video frames `12k-3 .. 12k+9`; the generator's video starts 3
//!   frames into the stream (its first block yields 4T-3 = 9 frames), so stream block 0 shows the
//!   generator's first frame (the reference frame) 3 times, then its 9 frames. Frame `s` of the
//!   stream is driven by the audio at `s/16` s and stamped with that pts (see
//!   [`super::audio_stream`]).
//! - Unbounded length: [`super::positions`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use livetalk_core::{Persona, PixelFormat, VideoFrame};
use livetalk_model::audio_features::{AudioConditioner, AudioProjConfig};
use livetalk_model::dit::{CausalWanModel, DitConfig};
use livetalk_model::image_preprocess::reference_image_tensor;
use livetalk_model::taehv::{TaehvConfig, TaehvDecoder};
use livetalk_model::wan_vae::{WanVae, WanVaeConfig};
use livetalk_model::wav2vec2::{Wav2Vec2Config, Wav2Vec2Model};

use super::audio_stream::{AudioStreamConfig, StreamingAudio, LEAD_FRAMES};
use super::decode::{BlockDecoder, DecoderKind};
use super::positions::PositionScheme;
use super::weights::{FixtureFiles, WeightFiles};
use crate::engine::{block_duration, AudioContext, AudioWindow, AvatarEngine, EngineError, Result};
use crate::generator::{GeneratorConfig, SeededNoise, StreamGenerator};

/// Output rate of the model.
pub const LIVETALK_FPS: u32 = 16;
/// Rows of the zero prompt used when a persona has no cached embedding.
const ZERO_PROMPT_ROWS: usize = 512;
/// Margin added to the latency budget.
const MARGIN: Duration = Duration::from_millis(100);

/// The read-only models, shared by siblings.
pub struct LiveTalkModels {
    pub dit: Arc<CausalWanModel>,
    pub vae: Arc<WanVae>,
    pub audio: Arc<AudioConditioner>,
    pub taehv: Option<Arc<TaehvDecoder>>,
    /// Output picture size `[height, width]` (the reference latent is `/8` of it).
    pub image_size: [usize; 2],
}

/// Sampler and streaming settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTalkOptions {
    pub seed: u64,
    pub decoder: DecoderKind,
    pub generator: GeneratorConfig,
    pub audio: AudioStreamConfig,
    pub positions: Option<PositionScheme>,
    /// What one block is expected to take (until measured), for the latency budget.
    pub expected_block_time: Duration,
}

impl Default for LiveTalkOptions {
    fn default() -> Self {
        LiveTalkOptions {
            seed: 0,
            decoder: DecoderKind::Taehv,
            generator: GeneratorConfig::default(),
            audio: AudioStreamConfig::default(),
            positions: None,
            expected_block_time: Duration::from_millis(500),
        }
    }
}

/// Where a stream stands (for tests, logs and the long-run check).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStats {
    /// Latent frames generated since `prepare`.
    pub latent_frames: u64,
    /// RoPE position of the next block's first frame.
    pub next_position: usize,
    /// Re-bases so far.
    pub rebases: u64,
    pub cache_local_end: usize,
    pub cache_global_end: usize,
    pub cache_capacity: usize,
    /// Mean, standard deviation and max |x| of the last block's latents.
    pub latent_mean: f32,
    pub latent_std: f32,
    pub latent_max_abs: f32,
    /// Time of the last block's audio features, generation and decoding.
    pub audio_time: Duration,
    pub generate_time: Duration,
    pub decode_time: Duration,
}

struct Stream {
    persona: String,
    gen: StreamGenerator,
    decoder: BlockDecoder,
    positions: PositionScheme,
    /// Timeline sample of the stream's first sample (set by the first render).
    origin: Option<u64>,
    latent_frames: u64,
    rebases: u64,
    last_stats: (f32, f32, f32),
    last_times: [Duration; 3],
}

/// The LiveTalk streaming engine.
pub struct LiveTalkEngine {
    models: Arc<LiveTalkModels>,
    opts: LiveTalkOptions,
    audio: StreamingAudio,
    stream: Option<Stream>,
    measured: Option<Duration>,
    first_render: Option<Duration>,
}

/// Maps a loader error to one error naming `what` and its file.
fn named<'a>(what: &'a str, file: &'a Path) -> impl Fn(candle_core::Error) -> EngineError + 'a {
    move |e| invalid(format!("{what} at {}: {e}", file.display()))
}

fn invalid(e: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidInput(e.to_string())
}

impl LiveTalkEngine {
    pub fn new(models: Arc<LiveTalkModels>, opts: LiveTalkOptions) -> Result<Self> {
        if opts.decoder == DecoderKind::Taehv && models.taehv.is_none() {
            return Err(invalid("the TAEHV decoder was asked for but no TAEW2.1 file was loaded"));
        }
        let audio = StreamingAudio::new(opts.audio)?;
        Ok(LiveTalkEngine { models, opts, audio, stream: None, measured: None, first_render: None })
    }

    /// Loads the published files of `dir` (see [`super::weights`]); TAEHV decodes when
    /// `taew2_1` is there, else the Wan VAE. Errors name the missing or invalid file.
    pub fn from_weights_dir(dir: impl AsRef<Path>, device: &Device, dtype: DType) -> Result<Self> {
        let files = WeightFiles::find(dir).map_err(invalid)?;
        let cfg = DitConfig::livetalk_1_3b();
        let dit = CausalWanModel::load(&cfg, &[&files.dit], dtype, device)
            .map_err(named("the LiveTalk model", &files.dit))?;
        let vae = WanVae::load(&WanVaeConfig::wan21(), &files.vae, dtype, device)
            .map_err(named("the Wan2.1 VAE", &files.vae))?;
        let w2v_cfg = Wav2Vec2Config::from_json_file(&files.wav2vec2_config)
            .map_err(named("the wav2vec2 config", &files.wav2vec2_config))?;
        let wav2vec2 = livetalk_model::layouts::load_checked(
            &files.wav2vec2_weights,
            |_| livetalk_model::layouts::wav2vec2(&w2v_cfg),
            |ck| Wav2Vec2Model::from_ctc_checkpoint(&w2v_cfg, ck.var_builder(dtype, device)),
        )
        .map_err(named("the wav2vec2 weights", &files.wav2vec2_weights))?;
        let audio_cfg = AudioProjConfig {
            dim: cfg.dim,
            num_layers: cfg.num_layers,
            audio_hidden_size: 32,
            audio_input_dim: Some((w2v_cfg.num_hidden_layers + 2) * w2v_cfg.hidden_size),
            audio_pack_patch: [4, 1, 1],
            audio_pack_layernorm_eps: 1e-5,
            num_audio_cond_projs: None,
        };
        let vb_dit = livetalk_model::checkpoint::Checkpoint::open(&files.dit)
            .map_err(|e| invalid(format!("the LiveTalk model at {}: {e}", files.dit.display())))?
            .var_builder(dtype, device);
        let audio = AudioConditioner::from_parts(wav2vec2, &audio_cfg, vb_dit)
            .map_err(named("the LiveTalk model's audio projections", &files.dit))?;
        let taehv = match &files.taehv {
            Some(path) => Some(Arc::new(
                TaehvDecoder::load(&TaehvConfig::taew2_1(), path, dtype, device).map_err(named("TAEW2.1", path))?,
            )),
            None => None,
        };
        let decoder = if taehv.is_some() { DecoderKind::Taehv } else { DecoderKind::WanVae };
        if taehv.is_none() {
            tracing::warn!(dir = %files.dir.display(), "no taew2_1 file: decoding with the Wan VAE (slower)");
        }
        let models = LiveTalkModels {
            dit: Arc::new(dit),
            vae: Arc::new(vae),
            audio: Arc::new(audio),
            taehv,
            image_size: [512, 512],
        };
        let expected = if device.is_cuda() { Duration::from_millis(500) } else { Duration::from_secs(60) };
        Self::new(Arc::new(models), LiveTalkOptions { decoder, expected_block_time: expected, ..Default::default() })
    }

    /// The tiny fixture models of `dir` (float32, CPU) at their 64x64 size.
    pub fn from_fixtures(dir: impl AsRef<Path>) -> Result<Self> {
        Self::new(Arc::new(Self::fixture_models(dir, [64, 64])?), LiveTalkOptions {
            expected_block_time: Duration::from_millis(200),
            ..Default::default()
        })
    }

    /// The fixture models with another output size (e.g. 16x16 = a 2x2 latent for long runs).
    pub fn fixture_models(dir: impl AsRef<Path>, image_size: [usize; 2]) -> Result<LiveTalkModels> {
        let files = FixtureFiles::find(dir).map_err(invalid)?;
        let (dtype, device) = (DType::F32, Device::Cpu);
        let p = &files.pipeline;
        let cfg = DitConfig::from_json_file(&p.dit_config).map_err(named("the DiT config", &p.dit_config))?;
        let dit = CausalWanModel::load(&cfg, &[&p.dit_weights], dtype, &device)
            .map_err(named("the fixture DiT", &p.dit_weights))?;
        let vae_cfg = WanVaeConfig::from_file(&p.vae_config)
            .map_err(|e| invalid(format!("the VAE config at {}: {e}", p.vae_config.display())))?;
        let vae = WanVae::load(&vae_cfg, &p.vae_weights, dtype, &device).map_err(named("the fixture VAE", &p.vae_weights))?;
        let audio = AudioConditioner::load(&p.wav2vec2_config, &p.wav2vec2_weights, &p.dit_config, &p.dit_weights, dtype, &device)
            .map_err(named("the fixture wav2vec2", &p.wav2vec2_weights))?;
        let t_cfg = TaehvConfig::from_file(&files.taehv_config)
            .map_err(|e| invalid(format!("the TAEHV config at {}: {e}", files.taehv_config.display())))?;
        let taehv = TaehvDecoder::load(&t_cfg, &files.taehv_weights, dtype, &device)
            .map_err(named("the fixture TAEHV", &files.taehv_weights))?;
        Ok(LiveTalkModels {
            dit: Arc::new(dit),
            vae: Arc::new(vae),
            audio: Arc::new(audio),
            taehv: Some(Arc::new(taehv)),
            image_size,
        })
    }

    pub fn models(&self) -> &Arc<LiveTalkModels> {
        &self.models
    }

    pub fn options(&self) -> &LiveTalkOptions {
        &self.opts
    }

    /// Time of the first render after the last prepare (decoder warm-up included).
    pub fn first_render_time(&self) -> Option<Duration> {
        self.first_render
    }

    /// Smoothed time of a render (after the first).
    pub fn measured_block_time(&self) -> Option<Duration> {
        self.measured
    }

    /// Where the current stream stands; `None` before `prepare`.
    pub fn stream_stats(&self) -> Option<StreamStats> {
        let s = self.stream.as_ref()?;
        let kv = s.gen.kv_cache();
        Some(StreamStats {
            latent_frames: s.latent_frames,
            next_position: s.gen.current_start_frame(),
            rebases: s.rebases,
            cache_local_end: kv.local_end_index(),
            cache_global_end: kv.global_end_index(),
            cache_capacity: kv.capacity(),
            latent_mean: s.last_stats.0,
            latent_std: s.last_stats.1,
            latent_max_abs: s.last_stats.2,
            audio_time: s.last_times[0],
            generate_time: s.last_times[1],
            decode_time: s.last_times[2],
        })
    }

    /// Builds the stream of `persona` from its reference picture and prompt cache.
    fn open_stream(&self, persona: &Persona) -> std::result::Result<Stream, String> {
        let m = &self.models;
        let image = persona
            .image
            .as_ref()
            .ok_or_else(|| "the persona has no reference picture (`image` in its preset)".to_string())?;
        let picture = image::open(image)
            .map_err(|e| format!("reading the reference picture {}: {e}", image.display()))?
            .to_rgb8();
        let (w, h) = (picture.width() as usize, picture.height() as usize);
        let device = m.dit.device().clone();
        let pixels = reference_image_tensor(picture.as_raw(), h, w, m.image_size, &device)
            .map_err(|e| format!("preparing the reference picture {}: {e}", image.display()))?;
        let latent = m
            .vae
            .encode(&pixels)
            .and_then(|l| l.to_dtype(DType::F32))
            .map_err(|e| format!("encoding the reference picture {}: {e}", image.display()))?;
        let prompt = self.prompt_for(persona)?;
        let gen = StreamGenerator::new(
            m.dit.clone(),
            self.opts.generator.clone(),
            &latent,
            &prompt,
            Box::new(SeededNoise::new(self.opts.seed)),
        )
        .map_err(|e| format!("starting the generator: {e}"))?;
        let decoder = match (self.opts.decoder, &m.taehv) {
            (DecoderKind::Taehv, Some(t)) => BlockDecoder::taehv(t),
            _ => BlockDecoder::wan_vae(&m.vae),
        };
        let g = &self.opts.generator;
        let window = (g.local_attn_size.max(0) as usize).saturating_sub(g.sink_size);
        let positions = match self.opts.positions {
            Some(p) => p,
            None => PositionScheme::new(g.num_frame_per_block, g.sink_size, window).map_err(|e| e.to_string())?,
        };
        Ok(Stream {
            persona: persona.name.clone(),
            gen,
            decoder,
            positions,
            origin: None,
            latent_frames: 0,
            rebases: 0,
            last_stats: (0.0, 0.0, 0.0),
            last_times: [Duration::ZERO; 3],
        })
    }

    /// `[1, L, text_dim]`: the cached embedding next to the persona, or zeros with a warning.
    fn prompt_for(&self, persona: &Persona) -> std::result::Result<Tensor, String> {
        let m = &self.models;
        let text_dim = m.dit.config().text_dim;
        let device = m.dit.device();
        let dir = persona.origin.parent().unwrap_or(Path::new("."));
        let path = dir.join(format!("{}.prompt.safetensors", persona.name));
        let zeros = || Tensor::zeros((1, ZERO_PROMPT_ROWS, text_dim), DType::F32, device).map_err(|e| e.to_string());
        if !path.is_file() {
            tracing::warn!(persona = %persona.name, file = %path.display(), "no cached prompt embedding: generating with an empty prompt");
            return zeros();
        }
        let cached = livetalk_model::prompt_cache::read(&path, device).map_err(|e| e.to_string())?;
        let dims = cached.embeds.dims().to_vec();
        if dims.len() != 2 || dims[1] != text_dim {
            return Err(format!("the prompt embedding {} is {dims:?}, the model wants [L, {text_dim}]", path.display()));
        }
        if !persona.prompt.trim().is_empty() && cached.prompt.trim() != persona.prompt.trim() {
            tracing::warn!(persona = %persona.name, file = %path.display(), "the cached prompt embedding was made for another prompt; using it anyway");
        }
        cached.embeds.to_dtype(DType::F32).and_then(|e| e.unsqueeze(0)).map_err(|e| e.to_string())
    }

    fn render_block(&mut self, window: &AudioWindow) -> Result<Vec<VideoFrame>> {
        let fpb = self.frames_per_block();
        if window.frame_count() != fpb || window.fps() != LIVETALK_FPS {
            return Err(EngineError::InvalidInput(format!(
                "a window of {} frames at {} fps, the engine renders {fpb} at {LIVETALK_FPS}",
                window.frame_count(),
                window.fps()
            )));
        }
        let models = self.models.clone();
        let audio = &self.audio;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| EngineError::Render("LiveTalk has no persona prepared".into()))?;
        let block_start = window.block_start_sample();
        let origin = *stream.origin.get_or_insert(block_start);
        let rel = block_start
            .checked_sub(origin)
            .ok_or_else(|| EngineError::InvalidInput("a block before the stream's start".into()))?;
        let block_samples = (fpb * super::audio_stream::SAMPLES_PER_FRAME) as u64;
        let stream_block = rel / block_samples;
        let first_generated = stream.latent_frames == 0;
        if first_generated != (stream_block == 0) && first_generated {
            return Err(EngineError::Render("the stream's first block is not block 0".into()));
        }

        // audio: window samples are timeline samples from block_start - before
        let window_first = block_start as i64 - window.context_before().len() as i64;
        let samples = window.samples();
        let read = |a: u64, b: u64| -> Vec<f32> {
            (a..b)
                .map(|x| {
                    let i = (origin + x) as i64 - window_first;
                    if i >= 0 && (i as usize) < samples.len() {
                        samples[i as usize]
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let t0 = Instant::now();
        let emb = if first_generated {
            audio.block_embedding(&models.audio, 0, read)
        } else {
            audio.block_embedding(&models.audio, stream_block.max(1), read)
        }
        .map_err(|e| EngineError::Render(format!("audio features: {e}")))?;

        let t1 = Instant::now();
        // positions
        let start = stream.gen.current_start_frame();
        let back = stream.positions.rebase_before(start);
        if back > 0 {
            stream.gen.rebase_positions(back).map_err(|e| EngineError::Render(format!("re-basing positions: {e}")))?;
            stream.rebases += 1;
        }

        let latents = stream.gen.generate_block(Some(&emb)).map_err(|e| EngineError::Render(format!("generator: {e}")))?;
        let stats = latent_stats(&latents)?;
        if !(stats.0.is_finite() && stats.1.is_finite() && stats.2.is_finite()) {
            return Err(EngineError::NonFinite(format!("latents of block {} of `{}`", stream_block, stream.persona)));
        }
        stream.last_stats = stats;
        stream.latent_frames += latents.dim(1)? as u64;
        let t2 = Instant::now();
        let decoded = stream
            .decoder
            .decode(&latents)
            .map_err(|e| EngineError::NonFinite(format!("decoder: {e}")))?;
        stream.last_times = [t1 - t0, t2 - t1, t2.elapsed()];
        let mut pictures = decoded.frames;
        if first_generated {
            let first = pictures.first().cloned().ok_or_else(|| EngineError::Render("the decoder gave no frame".into()))?;
            for _ in 0..LEAD_FRAMES {
                pictures.insert(0, first.clone());
            }
        }
        if pictures.len() != fpb {
            return Err(EngineError::Render(format!("the decoder gave {} frames for a block of {fpb}", pictures.len())));
        }
        pictures
            .into_iter()
            .enumerate()
            .map(|(i, rgb)| {
                VideoFrame::new(decoded.width as u32, decoded.height as u32, PixelFormat::Rgb24, rgb, window.frame_pts(i))
                    .map_err(EngineError::from)
            })
            .collect()
    }
}

/// Mean, standard deviation and max |x| of a tensor.
fn latent_stats(x: &Tensor) -> Result<(f32, f32, f32)> {
    let v = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&a| a as f64).sum::<f64>() / n;
    let var = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / n;
    let max = v.iter().fold(0f32, |m, &a| if a.is_nan() { f32::NAN } else { m.max(a.abs()) });
    Ok((mean as f32, var.sqrt() as f32, max))
}

impl AvatarEngine for LiveTalkEngine {
    fn name(&self) -> &str {
        "livetalk"
    }

    fn prepare(&mut self, persona: &Persona) -> Result<()> {
        self.stream = None;
        self.first_render = None;
        let stream = self
            .open_stream(persona)
            .map_err(|reason| EngineError::Prepare { persona: persona.name.clone(), reason })?;
        self.stream = Some(stream);
        Ok(())
    }

    fn fps(&self) -> u32 {
        LIVETALK_FPS
    }

    fn frames_per_block(&self) -> usize {
        self.opts.audio.frames_per_block
    }

    fn audio_context(&self) -> AudioContext {
        self.opts.audio.audio_context()
    }

    fn render(&mut self, audio: &AudioWindow) -> Result<Vec<VideoFrame>> {
        let started = Instant::now();
        let result = self.render_block(audio);
        if result.is_err() {
            // a failed block leaves the stream's state unknown: the service prepares again
            self.stream = None;
        }
        let took = started.elapsed();
        if self.first_render.is_none() {
            self.first_render = Some(took);
        } else {
            self.measured = Some(match self.measured {
                Some(m) => (m * 7 + took) / 8,
                None => took,
            });
        }
        result
    }

    fn latency_budget(&self) -> Duration {
        let generation = self.measured.unwrap_or(self.opts.expected_block_time);
        block_duration(self.frames_per_block(), LIVETALK_FPS) + self.audio_context().lookahead() + generation + MARGIN
    }

    fn sibling(&self) -> Result<Option<Box<dyn AvatarEngine>>> {
        Ok(Some(Box::new(LiveTalkEngine::new(self.models.clone(), self.opts.clone())?)))
    }
}
