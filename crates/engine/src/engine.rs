//! The one interface every avatar engine implements, so the engine service can run the embedded
//! CPU avatar and the LiveTalk diffusion generator alike.
//!
//! Decisions:
//! - An engine renders *blocks*: `frames_per_block()` frames at `fps()` (the CPU avatar: 1 frame
//!   at 30 fps; LiveTalk: 12 frames at 16 fps = 0.75 s). Block `b` covers frames
//!   `b·F .. (b+1)·F` of the engine's [`FrameClock`], and the audio between the pts of its first
//!   frame and the pts of the next block's first frame. Frame pts are exact (`index / fps`), so
//!   hours of streaming do not drift.
//! - The engine receives an [`AudioWindow`]: that block's 16 kHz mono samples plus the context
//!   before and the lookahead after that it asked for in [`AvatarEngine::audio_context`]. The
//!   service waits until the lookahead has arrived, so lookahead costs latency.
//! - Every frame the engine returns is stamped with [`AudioWindow::frame_pts`] (the pts of the
//!   audio that drove it); the service checks count, size and pts and treats a mismatch as a
//!   render fault.
//! - `prepare` may be slow (decoding pictures, VAE-encoding the reference). To switch persona
//!   without stalling the stream, an engine may offer a [`AvatarEngine::sibling`]: a fresh
//!   instance sharing the read-only weights, prepared on another thread while this one streams.
//! - Faults come back as [`EngineError`]; the service also catches panics and treats them alike.

use std::ops::Range;
use std::time::Duration;

use livetalk_core::clock::{duration_to_samples, samples_to_duration, FrameClock};
use livetalk_core::{Persona, VideoFrame, ENGINE_SAMPLE_RATE};

/// What can go wrong in an engine or in the service around it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Preparing a persona failed (missing picture, bad look, encoder error).
    #[error("preparing persona `{persona}`: {reason}")]
    Prepare { persona: String, reason: String },
    /// Rendering a block failed (device error, out of memory).
    #[error("rendering failed: {0}")]
    Render(String),
    /// The engine found NaN or infinite values in its output and refused to show them.
    #[error("the engine produced non-finite values: {0}")]
    NonFinite(String),
    /// The engine returned frames that break the contract (count, size, pts).
    #[error("the engine returned bad frames: {0}")]
    BadOutput(String),
    /// The engine panicked; the message is the panic's payload.
    #[error("the engine panicked: {0}")]
    Panicked(String),
    /// An argument that cannot be used (bad audio samples, unknown option value).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The engine service has stopped; commands can no longer be delivered.
    #[error("the engine service has stopped")]
    Stopped,
    #[error(transparent)]
    Core(#[from] livetalk_core::Error),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Audio an engine wants around each block, in samples at 16 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AudioContext {
    /// Samples before the block's first sample (e.g. wav2vec2's receptive field).
    pub before: usize,
    /// Samples after the block's last sample; the service waits for them, so they add latency.
    pub after: usize,
}

impl AudioContext {
    /// The lookahead as a duration.
    pub fn lookahead(&self) -> Duration {
        samples_to_duration(self.after as u64, ENGINE_SAMPLE_RATE)
    }
}

/// The audio of one block with its context: 16 kHz mono `f32` samples and where they sit on the
/// timeline. Samples before the timeline's start or not yet pushed are silence (zeros).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioWindow {
    samples: Vec<f32>,
    /// Timeline index of `samples[0]` (may be "negative" context: see `leading_silence`).
    block_start_sample: u64,
    /// Offset of the block's first sample in `samples`.
    block_offset: usize,
    block_len: usize,
    block_index: u64,
    frames: usize,
    clock: FrameClock,
}

impl AudioWindow {
    /// The window of block `block_index` for an engine of `frames_per_block` frames at `fps`,
    /// with `context`; `read(range)` returns the timeline's samples for a range of sample
    /// indices (silence where none were pushed). Context before sample 0 is silence.
    pub fn for_block(
        block_index: u64,
        frames_per_block: usize,
        fps: u32,
        context: AudioContext,
        read: impl FnOnce(Range<u64>) -> Vec<f32>,
    ) -> Self {
        let clock = FrameClock::new(fps);
        let frames = frames_per_block.max(1);
        let (start, end) = block_sample_range(block_index, frames, fps);
        let context_start = start.saturating_sub(context.before as u64);
        let leading_silence = context.before - (start - context_start) as usize;
        let read_range = context_start..end + context.after as u64;
        let mut samples = vec![0.0; leading_silence];
        let expected = (read_range.end - read_range.start) as usize;
        let mut read_samples = read(read_range);
        read_samples.resize(expected, 0.0);
        samples.extend_from_slice(&read_samples);
        AudioWindow {
            samples,
            block_start_sample: start,
            block_offset: context.before,
            block_len: (end - start) as usize,
            block_index,
            frames,
            clock,
        }
    }

    /// Every sample: context, block, lookahead.
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    /// The block's own samples (what plays while its frames are shown).
    pub fn block(&self) -> &[f32] {
        &self.samples[self.block_range()]
    }

    /// Where the block's samples lie in [`AudioWindow::samples`].
    pub fn block_range(&self) -> Range<usize> {
        self.block_offset..self.block_offset + self.block_len
    }

    /// The samples before the block.
    pub fn context_before(&self) -> &[f32] {
        &self.samples[..self.block_offset]
    }

    /// The samples after the block.
    pub fn lookahead(&self) -> &[f32] {
        &self.samples[self.block_offset + self.block_len..]
    }

    /// Index of this block in the stream (0, 1, 2, …).
    pub fn block_index(&self) -> u64 {
        self.block_index
    }

    /// Frames the engine must return for this block.
    pub fn frame_count(&self) -> usize {
        self.frames
    }

    /// Index of the block's first frame on the engine's frame clock.
    pub fn first_frame_index(&self) -> u64 {
        self.block_index * self.frames as u64
    }

    /// The pts of the block's `i`-th frame: stamp it on the frame.
    pub fn frame_pts(&self, i: usize) -> Duration {
        self.clock.pts_of(self.first_frame_index() + i as u64)
    }

    /// The pts of the block's first sample (= its first frame's pts, rounded to the sample).
    pub fn pts(&self) -> Duration {
        samples_to_duration(self.block_start_sample, ENGINE_SAMPLE_RATE)
    }

    /// Timeline index of the block's first sample.
    pub fn block_start_sample(&self) -> u64 {
        self.block_start_sample
    }

    /// The block samples that play while frame `i` is shown (empty past the block).
    pub fn frame_audio(&self, i: usize) -> &[f32] {
        if i >= self.frames {
            return &[];
        }
        let index = self.first_frame_index() + i as u64;
        let sample = |frame: u64| duration_to_samples(self.clock.pts_of(frame), ENGINE_SAMPLE_RATE);
        let from = (sample(index) - self.block_start_sample) as usize + self.block_offset;
        let to = (sample(index + 1) - self.block_start_sample) as usize + self.block_offset;
        &self.samples[from..to]
    }

    /// Frame rate of the frames this window drives.
    pub fn fps(&self) -> u32 {
        self.clock.fps()
    }
}

/// The timeline sample range `[start, end)` of block `block_index`.
pub fn block_sample_range(block_index: u64, frames_per_block: usize, fps: u32) -> (u64, u64) {
    let clock = FrameClock::new(fps);
    let frames = frames_per_block.max(1) as u64;
    let sample = |frame: u64| duration_to_samples(clock.pts_of(frame), ENGINE_SAMPLE_RATE);
    let first = block_index.saturating_mul(frames);
    (sample(first), sample(first.saturating_add(frames)))
}

/// A renderer of talking-avatar video from audio (see the module docs for the contract).
pub trait AvatarEngine: Send {
    /// Short name for logs and status ("cpu-avatar", "livetalk").
    fn name(&self) -> &str;

    /// Makes `persona` the one rendered from now on and restarts the stream (block 0 of the
    /// engine's own state; pts keep coming from the windows). May be slow.
    fn prepare(&mut self, persona: &Persona) -> Result<()>;

    /// Frames per second of the output.
    fn fps(&self) -> u32;

    /// Frames one `render` call returns.
    fn frames_per_block(&self) -> usize;

    /// Audio wanted around each block; the default is the block alone.
    fn audio_context(&self) -> AudioContext {
        AudioContext::default()
    }

    /// Renders one block: exactly `audio.frame_count()` frames, the `i`-th stamped with
    /// `audio.frame_pts(i)`, all of one size and format.
    fn render(&mut self, audio: &AudioWindow) -> Result<Vec<VideoFrame>>;

    /// The engine's estimate of the delay from a sample's pts to its frame being ready:
    /// block length + lookahead + generation time + margin. The service raises it when the
    /// generation time it measures is longer.
    fn latency_budget(&self) -> Duration;

    /// A fresh, unprepared engine of the same kind that shares this one's read-only weights, for
    /// preparing the next persona while this one keeps streaming. `Ok(None)` (the default): the
    /// service prepares in place, holding the last frame meanwhile.
    fn sibling(&self) -> Result<Option<Box<dyn AvatarEngine>>> {
        Ok(None)
    }
}

impl AvatarEngine for Box<dyn AvatarEngine> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn prepare(&mut self, persona: &Persona) -> Result<()> {
        (**self).prepare(persona)
    }
    fn fps(&self) -> u32 {
        (**self).fps()
    }
    fn frames_per_block(&self) -> usize {
        (**self).frames_per_block()
    }
    fn audio_context(&self) -> AudioContext {
        (**self).audio_context()
    }
    fn render(&mut self, audio: &AudioWindow) -> Result<Vec<VideoFrame>> {
        (**self).render(audio)
    }
    fn latency_budget(&self) -> Duration {
        (**self).latency_budget()
    }
    fn sibling(&self) -> Result<Option<Box<dyn AvatarEngine>>> {
        (**self).sibling()
    }
}

/// The duration of one block.
pub fn block_duration(frames_per_block: usize, fps: u32) -> Duration {
    FrameClock::new(fps).pts_of(frames_per_block.max(1) as u64)
}

/// Checks a rendered block against the window that asked for it.
pub fn check_block(window: &AudioWindow, frames: &[VideoFrame]) -> Result<()> {
    if frames.len() != window.frame_count() {
        return Err(EngineError::BadOutput(format!(
            "{} frames for a block of {}",
            frames.len(),
            window.frame_count()
        )));
    }
    let first = &frames[0];
    for (i, frame) in frames.iter().enumerate() {
        frame
            .validate()
            .map_err(|e| EngineError::BadOutput(format!("frame {i}: {e}")))?;
        if (frame.width, frame.height, frame.format) != (first.width, first.height, first.format) {
            return Err(EngineError::BadOutput(format!(
                "frame {i} is {}x{} {}, frame 0 is {}x{} {}",
                frame.width, frame.height, frame.format, first.width, first.height, first.format
            )));
        }
        let expected = window.frame_pts(i);
        if frame.pts != expected {
            return Err(EngineError::BadOutput(format!(
                "frame {i} has pts {:?}, the audio that drove it is at {expected:?}",
                frame.pts
            )));
        }
    }
    Ok(())
}
