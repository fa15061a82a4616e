//! Streaming audio features: wav2vec2 + AudioPack per block over a sliding window with left
//! context and a bounded lookahead, instead of the reference's one pass over the whole clip.
//!
//! Timeline (see `docs/STREAMING.md`): the engine's stream starts at sample 0 of its first block;
//! video frame `s` of the stream (shown at `s/16` s) is driven by the audio at sample `1000·s`.
//! The generator's own video starts 3 frames in (its frame `j` is stream frame `j + 3`), because
//! its first block yields 9 frames (4T-3); the reference clip is therefore the audio from sample
//! 3000 on, and the window never reaches before it.
//!
//! Per block `k` (stream frames `12k .. 12k+12`):
//! 1. window = samples `[W0, E)` with `W0` = `context_frames` frames before the block (not before
//!    sample 3000, and on the reference clip's 320-sample grid so that 50 Hz frames line up),
//!    `E` = 720 samples after the last lookahead frame's sample (so the wav2vec2 CNN has a 50 Hz
//!    frame at or after it);
//! 2. normalise the window (the per-utterance normalisation, here per window), run the CNN;
//! 3. interpolate the 50 Hz features linearly to the window's video frames (frame `s` at 50 Hz
//!    position `(1000·s - W0)/320`, the reference's own time axis), run the transformer on them;
//! 4. take the block's 12 frames (block 0: frames 3..12 with frame 3 four times, as the
//!    reference prepends its first frame 3 times), AudioPack + projections -> `[n, 3, 1, 1, dim]`.

use candle_core::{Result, Tensor};
use livetalk_model::audio_features::{concat_hidden_states, prepend_first_frame, AudioConditioner};

use crate::engine::AudioContext;

/// Samples per video frame (16 kHz / 16 fps).
pub const SAMPLES_PER_FRAME: usize = 1000;
/// Stride of the wav2vec2 CNN (one 50 Hz frame every 320 samples).
pub const CNN_STRIDE: usize = 320;
/// Stream frames before the generator's first frame (its first block yields 4T-3 = 9 of 12).
pub const LEAD_FRAMES: usize = 3;
/// Samples after the last needed frame's sample that the window keeps (>= one CNN receptive
/// field past it: 400 samples, rounded up to the stride grid).
const TAIL_SAMPLES: usize = 720;

/// Context and lookahead of the streaming features, in video frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioStreamConfig {
    /// Video frames of left context the transformer sees before the block (40 = 2.5 s).
    pub context_frames: usize,
    /// Video frames after the block the transformer sees (their audio is waited for).
    pub lookahead_frames: usize,
    /// Video frames per block (12) and per latent token (4).
    pub frames_per_block: usize,
    pub frames_per_token: usize,
}

impl Default for AudioStreamConfig {
    fn default() -> Self {
        AudioStreamConfig { context_frames: 40, lookahead_frames: 4, frames_per_block: 12, frames_per_token: 4 }
    }
}

impl AudioStreamConfig {
    /// The audio the engine asks the service for around each block.
    pub fn audio_context(&self) -> AudioContext {
        let block = self.frames_per_block * SAMPLES_PER_FRAME;
        let last_needed = (self.frames_per_block - 1 + self.lookahead_frames) * SAMPLES_PER_FRAME + TAIL_SAMPLES;
        AudioContext {
            before: self.context_frames * SAMPLES_PER_FRAME + CNN_STRIDE,
            after: last_needed.saturating_sub(block),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.frames_per_token == 0
            || self.frames_per_block <= LEAD_FRAMES
            || !self.frames_per_block.is_multiple_of(self.frames_per_token)
        {
            candle_core::bail!("audio stream: {} frames per block do not split into tokens of {}", self.frames_per_block, self.frames_per_token);
        }
        Ok(())
    }
}

/// The window of one block on the stream's sample axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockWindow {
    /// First and one-past-last sample of the window.
    pub start: u64,
    pub end: u64,
    /// First and last (inclusive) video frame computed in the window.
    pub first_frame: u64,
    pub last_frame: u64,
    /// The block's first frame.
    pub block_frame: u64,
}

impl AudioStreamConfig {
    /// The window of stream block `block`.
    pub fn window(&self, block: u64) -> BlockWindow {
        let fpb = self.frames_per_block as u64;
        let spf = SAMPLES_PER_FRAME as u64;
        let origin = (LEAD_FRAMES * SAMPLES_PER_FRAME) as u64;
        let block_frame = block * fpb;
        let first_frame = block_frame.saturating_sub(self.context_frames as u64).max(LEAD_FRAMES as u64);
        let wanted = first_frame * spf;
        let start = origin + (wanted - origin) / CNN_STRIDE as u64 * CNN_STRIDE as u64;
        let last_frame = block_frame + fpb - 1 + self.lookahead_frames as u64;
        let end = last_frame * spf + TAIL_SAMPLES as u64;
        BlockWindow { start, end, first_frame, last_frame, block_frame }
    }
}

/// Per-block audio conditioning from a sliding window.
#[derive(Debug, Clone)]
pub struct StreamingAudio {
    cfg: AudioStreamConfig,
}

impl StreamingAudio {
    pub fn new(cfg: AudioStreamConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(StreamingAudio { cfg })
    }

    pub fn config(&self) -> &AudioStreamConfig {
        &self.cfg
    }

    /// Per-video-frame features `[1, frames_per_block, C]` of stream block `block`; `read(a, b)`
    /// returns the stream's samples `[a, b)` (silence where there are none).
    pub fn block_frame_features(
        &self,
        audio: &AudioConditioner,
        block: u64,
        read: impl FnOnce(u64, u64) -> Vec<f32>,
    ) -> Result<Tensor> {
        let w = self.cfg.window(block);
        let samples = read(w.start, w.end);
        if samples.len() as u64 != w.end - w.start {
            candle_core::bail!("audio stream: window of {} samples, got {}", w.end - w.start, samples.len());
        }
        if samples.iter().any(|v| !v.is_finite()) {
            candle_core::bail!("audio stream: non-finite audio samples in block {block}");
        }
        let input = audio.input_values(&samples)?;
        let conv = audio.wav2vec2().extract_conv_features(&input)?; // [1, C, T50]
        let t50 = conv.dim(2)?;
        let frames = (w.last_frame - w.first_frame + 1) as usize;
        // Linear interpolation weights [frames, T50] at each frame's 50 Hz position.
        let mut weights = vec![0f32; frames * t50];
        for i in 0..frames {
            let s = w.first_frame + i as u64;
            let pos = ((s * SAMPLES_PER_FRAME as u64 - w.start) as f64 / CNN_STRIDE as f64).min((t50 - 1) as f64);
            let i0 = pos.floor() as usize;
            let lambda = (pos - i0 as f64) as f32;
            weights[i * t50 + i0] += 1.0 - lambda;
            if lambda > 0.0 && i0 + 1 < t50 {
                weights[i * t50 + i0 + 1] += lambda;
            }
        }
        let weights = Tensor::from_vec(weights, (1, frames, t50), conv.device())?.to_dtype(conv.dtype())?;
        let interp = weights.matmul(&conv.transpose(1, 2)?.contiguous()?)?; // [1, frames, C]
        let encoded = audio.wav2vec2().encode(&interp)?;
        let features = concat_hidden_states(&encoded)?; // [1, frames, feat]
        let fpb = self.cfg.frames_per_block;
        if w.block_frame == 0 {
            // frames 3..12, the first repeated in front like the reference's first latent frame
            let own = features.narrow(1, (LEAD_FRAMES as u64 - w.first_frame) as usize, fpb - LEAD_FRAMES)?;
            prepend_first_frame(&own, LEAD_FRAMES)
        } else {
            features.narrow(1, (w.block_frame - w.first_frame) as usize, fpb)
        }
    }

    /// The DiT's audio_emb `[n_proj, frames_per_block / 4, 1, 1, dim]` of stream block `block`.
    pub fn block_embedding(
        &self,
        audio: &AudioConditioner,
        block: u64,
        read: impl FnOnce(u64, u64) -> Vec<f32>,
    ) -> Result<Tensor> {
        let features = self.block_frame_features(audio, block, read)?;
        audio.embed_frame_features(&features)
    }
}
