//! The block-streaming generator: the causal inference loop of LiveTalk
//! (`CausalInferencePipeline.inference`), one block of latent frames at a time.
//!
//! For every block of `num_frame_per_block` latent frames:
//! 1. take the block's initial noise; in block 0, frame 0 is replaced by the reference latent
//!    before every step;
//! 2. 4 denoising forwards at the bf16-rounded timesteps [1000, 936, 832, 624]: flow `v` from
//!    the DiT, `x0 = x_t - sigma*v` (float64, sigma of the nearest scheduler timestep), then
//!    re-noising with fresh noise `x = (1-sigma')*x0 + sigma'*noise` (float32) before the next step;
//! 3. block 0: frame 0 of the final x0 := reference latent;
//! 4. a refresh forward at t = 0 on the final x0, which rewrites the block's K/V in the cache with
//!    clean context (its output is discarded).
//!
//! Latents are exchanged in the pipeline layout `[B, F, C, h, w]` (float32, on the model's device).
//! The conditioning `y` `[B, 17, F, h, w]` is built per block from the reference latent: the latent
//! repeated over the block's frames plus a mask channel that is 0 for absolute frame 0 and 1 after.

use std::collections::VecDeque;
use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};
use livetalk_model::dit::{CausalWanModel, KvCache, KvCacheConfig, PromptCache};
use livetalk_model::schedule::{FlowMatchScheduler, ScheduleConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which noise the generator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// The block's starting noise, `[B, F, C, h, w]`.
    Initial,
    /// Re-noising noise before denoising step `step` (1-based: 1..steps), `[B*F, C, h, w]`.
    Renoise { step: usize },
}

/// A source of standard-normal noise. The generator asks in call order: `Initial`, then
/// `Renoise{1}`, `Renoise{2}`, ... for each block.
pub trait NoiseSource: Send {
    /// Float32 standard-normal noise of `shape` for block `block` (0-based), on any device.
    fn noise(&mut self, block: usize, kind: NoiseKind, shape: &[usize]) -> Result<Tensor>;
}

/// Seeded noise (ChaCha8 + Box-Muller), reproducible for a given seed.
pub struct SeededNoise {
    rng: ChaCha8Rng,
}

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        SeededNoise { rng: ChaCha8Rng::seed_from_u64(seed) }
    }
}

impl NoiseSource for SeededNoise {
    fn noise(&mut self, _block: usize, _kind: NoiseKind, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let mut v = Vec::with_capacity(n + 1);
        while v.len() < n {
            // Box-Muller; u1 in (0, 1]
            let u1: f64 = 1.0 - self.rng.gen::<f64>();
            let u2: f64 = self.rng.gen::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            v.push((r * a.cos()) as f32);
            v.push((r * a.sin()) as f32);
        }
        v.truncate(n);
        Tensor::from_vec(v, shape, &Device::Cpu)
    }
}

/// Noise recorded beforehand (e.g. by the reference pipeline): `initial` `[B, F_total, C, h, w]`
/// is sliced per block; `renoise` `[num_blocks, steps-1, B*F, C, h, w]` is indexed by block and step.
pub struct RecordedNoise {
    pub initial: Tensor,
    pub renoise: Tensor,
    pub frames_per_block: usize,
}

impl NoiseSource for RecordedNoise {
    fn noise(&mut self, block: usize, kind: NoiseKind, shape: &[usize]) -> Result<Tensor> {
        let t = match kind {
            NoiseKind::Initial => self.initial.narrow(1, block * self.frames_per_block, self.frames_per_block)?,
            NoiseKind::Renoise { step } => self.renoise.get(block)?.get(step - 1)?,
        };
        if t.dims() != shape {
            candle_core::bail!("recorded noise {kind:?} of block {block}: shape {:?}, wanted {shape:?}", t.dims());
        }
        t.to_dtype(DType::F32)
    }
}

/// Sampler settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub num_frame_per_block: usize,
    /// KV window in latent frames (-1 = unlimited).
    pub local_attn_size: i64,
    /// Identity-sink frames kept at the front of the cache.
    pub sink_size: usize,
    pub schedule: ScheduleConfig,
    /// Timesteps fed to the DiT; `None` = `schedule`'s denoising step list.
    pub denoising_steps: Option<Vec<f32>>,
    /// Timestep of the cache-refresh pass (`context_noise`, 0).
    pub refresh_timestep: f32,
    /// Keep the x0 of every step of the last block (for debugging / parity tests).
    pub record_steps: bool,
}

impl Default for GeneratorConfig {
    /// The deployed LiveTalk settings: 3 frames per block, window 15 frames, sink 9, 4 steps.
    fn default() -> Self {
        GeneratorConfig {
            num_frame_per_block: 3,
            local_attn_size: 15,
            sink_size: 9,
            schedule: ScheduleConfig::default(),
            denoising_steps: None,
            refresh_timestep: 0.0,
            record_steps: false,
        }
    }
}

/// Debug record of the last generated block.
#[derive(Debug, Clone, Default)]
pub struct BlockRecord {
    pub block: usize,
    pub start_frame: usize,
    /// Timestep of every forward (denoising steps + refresh).
    pub timesteps: Vec<f32>,
    /// x0 predicted at every denoising step `[B, F, C, h, w]` (before the frame-0 overwrite).
    pub step_x0: Vec<Tensor>,
}

/// The streaming generator: DiT + KV cache + prompt + reference latent + noise source.
pub struct StreamGenerator {
    dit: Arc<CausalWanModel>,
    cfg: GeneratorConfig,
    scheduler: FlowMatchScheduler,
    steps: Vec<f32>,
    kv: KvCache,
    prompt: PromptCache,
    /// `[B, 1, C, h, w]` float32 on the model's device.
    ref_latent: Tensor,
    noise: Noise,
    block: usize,
    start_frame: usize,
    last: Option<BlockRecord>,
}

impl StreamGenerator {
    /// `ref_latent`: the reference image's normalised latent `[B, 1, C, h, w]`;
    /// `prompt_embeds`: text embeddings `[B, L, text_dim]`.
    pub fn new(
        dit: Arc<CausalWanModel>,
        cfg: GeneratorConfig,
        ref_latent: &Tensor,
        prompt_embeds: &Tensor,
        noise: Box<dyn NoiseSource>,
    ) -> Result<Self> {
        let scheduler = FlowMatchScheduler::new(cfg.schedule.clone());
        let steps = cfg.denoising_steps.clone().unwrap_or_else(|| scheduler.denoising_step_list());
        if steps.is_empty() {
            candle_core::bail!("generator: no denoising steps");
        }
        let ref_latent = Self::check_ref(&dit, ref_latent)?;
        let (b, _, _, h, w) = ref_latent.dims5()?;
        let kv_cfg = KvCacheConfig {
            local_attn_size: cfg.local_attn_size,
            sink_size: cfg.sink_size,
            frame_seq_length: dit.config().frame_seq_length(h, w),
            batch: b,
        };
        if cfg.local_attn_size >= 0
            && (cfg.sink_size + cfg.num_frame_per_block) as i64 > cfg.local_attn_size
        {
            candle_core::bail!(
                "generator: sink {} + block {} frames do not fit a window of {} frames",
                cfg.sink_size,
                cfg.num_frame_per_block,
                cfg.local_attn_size
            );
        }
        let kv = dit.new_kv_cache(kv_cfg)?;
        let prompt = dit.prepare_prompt(prompt_embeds)?;
        Ok(StreamGenerator {
            dit,
            cfg,
            scheduler,
            steps,
            kv,
            prompt,
            ref_latent,
            noise: Noise::new(noise),
            block: 0,
            start_frame: 0,
            last: None,
        })
    }

    fn check_ref(dit: &CausalWanModel, ref_latent: &Tensor) -> Result<Tensor> {
        let (_, f, c, _, _) = ref_latent.dims5()?;
        if f != 1 || c != dit.config().out_dim {
            candle_core::bail!("generator: reference latent must be [B, 1, {}, h, w], got {:?}", dit.config().out_dim, ref_latent.dims());
        }
        ref_latent.to_device(dit.device())?.to_dtype(DType::F32)
    }

    /// Starts a new stream (empty cache, frame 0) with the same prompt and reference.
    pub fn reset(&mut self) {
        self.kv.reset();
        self.noise.settle();
        self.block = 0;
        self.start_frame = 0;
        self.last = None;
    }

    /// Starts a new stream with another reference latent (persona switch) and optionally another
    /// prompt. The latent size must stay the same (the cache is reused).
    pub fn restart(&mut self, ref_latent: &Tensor, prompt_embeds: Option<&Tensor>) -> Result<()> {
        let r = Self::check_ref(&self.dit, ref_latent)?;
        if r.dims() != self.ref_latent.dims() {
            candle_core::bail!("generator: reference latent shape changed {:?} -> {:?}", self.ref_latent.dims(), r.dims());
        }
        self.ref_latent = r;
        if let Some(p) = prompt_embeds {
            self.prompt = self.dit.prepare_prompt(p)?;
        }
        self.reset();
        Ok(())
    }

    /// Moves the stream's RoPE positions `frames` latent frames back (the unbounded position
    /// scheme of [`crate::livetalk::positions`]): the window's cached keys are re-rotated, the
    /// sink keeps its positions, the next block starts at `current_start_frame() - frames`.
    pub fn rebase_positions(&mut self, frames: usize) -> Result<()> {
        crate::livetalk::positions::rebase_cache(&mut self.kv, self.dit.rope(), frames)?;
        self.start_frame -= frames;
        Ok(())
    }

    pub fn set_noise_source(&mut self, noise: Box<dyn NoiseSource>) {
        self.noise.settle();
        self.noise = Noise::new(noise);
    }

    pub fn dit(&self) -> &Arc<CausalWanModel> {
        &self.dit
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    pub fn scheduler(&self) -> &FlowMatchScheduler {
        &self.scheduler
    }

    /// Timesteps fed to the DiT at each denoising step.
    pub fn denoising_steps(&self) -> &[f32] {
        &self.steps
    }

    pub fn kv_cache(&self) -> &KvCache {
        &self.kv
    }

    /// Index of the next block.
    pub fn block_index(&self) -> usize {
        self.block
    }

    /// Absolute latent-frame index of the next block's first frame.
    pub fn current_start_frame(&self) -> usize {
        self.start_frame
    }

    pub fn frames_per_block(&self) -> usize {
        self.cfg.num_frame_per_block
    }

    /// The debug record of the last block (when `record_steps`; timesteps always).
    pub fn last_block(&self) -> Option<&BlockRecord> {
        self.last.as_ref()
    }

    pub fn reference_latent(&self) -> &Tensor {
        &self.ref_latent
    }

    /// Conditioning `y` `[B, C+1, F, h, w]` for `frames` frames starting at absolute frame
    /// `start_frame`: the reference latent repeated + mask (0 at frame 0, 1 elsewhere).
    pub fn conditioning(&self, start_frame: usize, frames: usize) -> Result<Tensor> {
        let (b, _, _, h, w) = self.ref_latent.dims5()?;
        let r = self.ref_latent.permute([0, 2, 1, 3, 4])?; // [B, C, 1, h, w]
        let r = r.repeat((1, 1, frames, 1, 1))?;
        let mask: Vec<f32> = (0..frames).map(|i| if start_frame + i == 0 { 0.0 } else { 1.0 }).collect();
        let mask = Tensor::from_vec(mask, (1, 1, frames, 1, 1), self.dit.device())?
            .broadcast_as((b, 1, frames, h, w))?;
        Tensor::cat(&[&r, &mask], 1)
    }

    /// Replaces frame 0 of `x` `[B, F, C, h, w]` by the reference latent.
    fn overwrite_first(&self, x: &Tensor) -> Result<Tensor> {
        let f = x.dim(1)?;
        if f == 1 {
            return Ok(self.ref_latent.clone());
        }
        Tensor::cat(&[&self.ref_latent, &x.narrow(1, 1, f - 1)?], 1)
    }

    fn dit_flow(&mut self, x: &Tensor, y: &Tensor, t: f32, audio: Option<&Tensor>) -> Result<Tensor> {
        let (b, f, _, _, _) = x.dims5()?;
        // on the host: the DiT builds the sinusoidal embedding there (no device round trip)
        let ts = Tensor::full(t, (b, f), &Device::Cpu)?;
        let xin = x.permute([0, 2, 1, 3, 4])?;
        let flow = self.dit.forward(&xin, y, &ts, audio, &self.prompt, &mut self.kv, self.start_frame, None)?;
        flow.permute([0, 2, 1, 3, 4])
    }

    /// Generates the next block. `audio_emb`: the block's projected audio rows
    /// `[n_audio_layers*B, F, 1, 1, dim]` (or `None` for no audio conditioning).
    /// Returns the block's clean latents `[B, F, C, h, w]` (float32).
    pub fn generate_block(&mut self, audio_emb: Option<&Tensor>) -> Result<Tensor> {
        let f = self.cfg.num_frame_per_block;
        let (b, _, c, h, w) = self.ref_latent.dims5()?;
        let dev = self.dit.device().clone();
        let first = self.start_frame == 0;
        let y = self.conditioning(self.start_frame, f)?;
        let audio = match audio_emb {
            Some(a) => Some(a.to_device(&dev)?),
            None => None,
        };
        let mut rec = BlockRecord { block: self.block, start_frame: self.start_frame, ..Default::default() };

        let shapes = self.noise_shapes()?;
        let mut x = self.noise.draw(self.block, NoiseKind::Initial, &shapes.initial)?.to_device(&dev)?;
        let steps = self.steps.clone();
        let mut x0 = None;
        for (i, &t) in steps.iter().enumerate() {
            if first {
                x = self.overwrite_first(&x)?;
            }
            let flow = self.dit_flow(&x, &y, t, audio.as_ref())?;
            let pred = self
                .scheduler
                .flow_to_x0(&flow.reshape((b * f, c, h, w))?, &x.reshape((b * f, c, h, w))?, t)?;
            rec.timesteps.push(t);
            if self.cfg.record_steps {
                rec.step_x0.push(pred.reshape((b, f, c, h, w))?);
            }
            if i + 1 < steps.len() {
                let noise = self.noise.draw(self.block, NoiseKind::Renoise { step: i + 1 }, &shapes.renoise)?.to_device(&dev)?;
                x = self.scheduler.add_noise(&pred, &noise, steps[i + 1])?.reshape((b, f, c, h, w))?;
            } else {
                x0 = Some(pred.reshape((b, f, c, h, w))?);
            }
        }
        let mut x0 = x0.expect("at least one step");
        if first {
            x0 = self.overwrite_first(&x0)?;
        }

        // refresh: rewrite the block's K/V with the clean latents
        let t0 = self.cfg.refresh_timestep;
        self.dit_flow(&x0, &y, t0, audio.as_ref())?;
        rec.timesteps.push(t0);

        self.last = Some(rec);
        self.block += 1;
        self.start_frame += f;
        // the next block's noise is drawn on a helper thread while this block runs
        self.noise.start_drawing(self.block, shapes);
        Ok(x0)
    }

    fn noise_shapes(&self) -> Result<NoiseShapes> {
        let f = self.cfg.num_frame_per_block;
        let (b, _, c, h, w) = self.ref_latent.dims5()?;
        Ok(NoiseShapes { initial: vec![b, f, c, h, w], renoise: vec![b * f, c, h, w], renoises: self.steps.len() - 1 })
    }
}

/// The shapes of one block's noise draws.
#[derive(Clone)]
struct NoiseShapes {
    initial: Vec<usize>,
    renoise: Vec<usize>,
    renoises: usize,
}

type Drawn = (Box<dyn NoiseSource>, Result<VecDeque<Tensor>>);

/// The generator's noise: its source, or the source lent to a helper thread that draws the
/// next block's noise while the current block runs (drawing one block's noise on the host took
/// ~20 ms, and the GPU waited for it). Draws stay in the source's call order (a block's initial
/// noise, then each re-noise), so the values are the same as drawing in place; a block with
/// nothing drawn ahead (a stream's first) draws each tensor when it needs it.
struct Noise {
    source: Source,
    /// Drawn ahead for block `.0`, in the order it asks.
    ahead: Option<(usize, VecDeque<Tensor>)>,
}

enum Source {
    Ready(Box<dyn NoiseSource>),
    /// Drawing block `.0`'s noise.
    Drawing(usize, std::thread::JoinHandle<Drawn>),
    /// Only while being moved between the states (or after the helper thread panicked).
    Lost,
}

/// Block `block`'s noise in the order the block uses it: the initial noise, then one re-noise
/// per denoising step after the first (on the source's device, usually the host).
fn draw_block(source: &mut dyn NoiseSource, block: usize, shapes: &NoiseShapes) -> Result<VecDeque<Tensor>> {
    let mut out = VecDeque::with_capacity(1 + shapes.renoises);
    out.push_back(source.noise(block, NoiseKind::Initial, &shapes.initial)?);
    for step in 1..=shapes.renoises {
        out.push_back(source.noise(block, NoiseKind::Renoise { step }, &shapes.renoise)?);
    }
    Ok(out)
}

impl Noise {
    fn new(source: Box<dyn NoiseSource>) -> Self {
        Noise { source: Source::Ready(source), ahead: None }
    }

    /// Waits for a helper thread and keeps what it drew.
    fn settle(&mut self) {
        self.ahead = None;
        match std::mem::replace(&mut self.source, Source::Lost) {
            Source::Drawing(block, handle) => {
                if let Ok((source, drawn)) = handle.join() {
                    self.source = Source::Ready(source);
                    // a failed draw is reported when the block draws in place
                    self.ahead = drawn.ok().map(|d| (block, d));
                }
            }
            other => self.source = other,
        }
    }

    /// The next noise tensor of block `block` (`kind` in the block's call order).
    fn draw(&mut self, block: usize, kind: NoiseKind, shape: &[usize]) -> Result<Tensor> {
        if kind == NoiseKind::Initial {
            self.settle();
        }
        if let Some((b, queue)) = &mut self.ahead {
            if *b == block {
                if let Some(t) = queue.pop_front() {
                    return Ok(t);
                }
            }
        }
        match &mut self.source {
            Source::Ready(source) => source.noise(block, kind, shape),
            _ => candle_core::bail!("generator: the noise source was lost (its drawing thread panicked)"),
        }
    }

    /// Starts drawing block `block`'s noise on a helper thread.
    fn start_drawing(&mut self, block: usize, shapes: NoiseShapes) {
        self.ahead = None;
        match std::mem::replace(&mut self.source, Source::Lost) {
            Source::Ready(mut source) => {
                let handle = std::thread::spawn(move || {
                    let drawn = draw_block(source.as_mut(), block, &shapes);
                    (source, drawn)
                });
                self.source = Source::Drawing(block, handle);
            }
            other => self.source = other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> NoiseShapes {
        NoiseShapes { initial: vec![1, 3, 2, 2, 2], renoise: vec![3, 2, 2, 2], renoises: 3 }
    }

    fn values(v: &VecDeque<Tensor>) -> Vec<Vec<f32>> {
        v.iter().map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
    }

    fn draw_all(noise: &mut Noise, block: usize) -> VecDeque<Tensor> {
        let sh = shapes();
        let mut out = VecDeque::from([noise.draw(block, NoiseKind::Initial, &sh.initial).unwrap()]);
        for step in 1..=sh.renoises {
            out.push_back(noise.draw(block, NoiseKind::Renoise { step }, &sh.renoise).unwrap());
        }
        out
    }

    #[test]
    fn noise_drawn_ahead_on_a_thread_equals_noise_drawn_in_place() {
        let mut in_place = SeededNoise::new(7);
        let block0 = draw_block(&mut in_place, 0, &shapes()).unwrap();
        let block1 = draw_block(&mut in_place, 1, &shapes()).unwrap();

        let mut noise = Noise::new(Box::new(SeededNoise::new(7)));
        let first = draw_all(&mut noise, 0);
        noise.start_drawing(1, shapes());
        assert!(matches!(noise.source, Source::Drawing(1, _)));
        let second = draw_all(&mut noise, 1);
        assert_eq!(values(&first), values(&block0));
        assert_eq!(values(&second), values(&block1));
        assert_eq!(second[0].dims(), [1, 3, 2, 2, 2]);
        assert_eq!(second[1].dims(), [3, 2, 2, 2]);
    }

    #[test]
    fn draws_made_for_another_block_are_not_used() {
        let mut noise = Noise::new(Box::new(SeededNoise::new(3)));
        noise.start_drawing(5, shapes());
        // a reset: block 0 comes next; the draws for block 5 are dropped and fresh ones made
        let mut in_place = SeededNoise::new(3);
        draw_block(&mut in_place, 5, &shapes()).unwrap();
        let expected = draw_block(&mut in_place, 0, &shapes()).unwrap();
        assert_eq!(values(&draw_all(&mut noise, 0)), values(&expected));
        assert!(matches!(noise.source, Source::Ready(_)));
    }
}
