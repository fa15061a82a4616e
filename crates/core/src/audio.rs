//! Audio chunks: interleaved `f32` samples stamped with their place on the audio timeline.

use std::time::Duration;

use crate::clock::samples_to_duration;
use crate::error::{Error, Result};

/// The rate every audio source is resampled to before the engine sees it (wav2vec2's rate).
pub const ENGINE_SAMPLE_RATE: u32 = 16_000;

/// A run of audio: `samples` holds `channels` interleaved channels, nominally in -1.0..=1.0,
/// and `pts` is the timeline position of its first sample frame.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    pub sample_rate: u32,
    pub channels: u16,
    pub samples: Vec<f32>,
    pub pts: Duration,
}

impl AudioChunk {
    /// Checks the rate and channel count and that `samples` holds whole sample frames.
    pub fn new(sample_rate: u32, channels: u16, samples: Vec<f32>, pts: Duration) -> Result<Self> {
        let chunk = AudioChunk {
            sample_rate,
            channels,
            samples,
            pts,
        };
        chunk.validate()?;
        Ok(chunk)
    }

    /// A mono chunk at [`ENGINE_SAMPLE_RATE`].
    pub fn engine_mono(samples: Vec<f32>, pts: Duration) -> Self {
        AudioChunk {
            sample_rate: ENGINE_SAMPLE_RATE,
            channels: 1,
            samples,
            pts,
        }
    }

    /// `frames` sample frames of silence.
    pub fn silence(sample_rate: u32, channels: u16, frames: usize, pts: Duration) -> Result<Self> {
        Self::new(
            sample_rate,
            channels,
            vec![0.0; frames * channels as usize],
            pts,
        )
    }

    /// Signed 16-bit samples (WAV, PipeWire S16) scaled to `f32`.
    pub fn from_i16(
        sample_rate: u32,
        channels: u16,
        samples: &[i16],
        pts: Duration,
    ) -> Result<Self> {
        let samples = samples.iter().map(|&s| s as f32 / 32768.0).collect();
        Self::new(sample_rate, channels, samples, pts)
    }

    /// The samples as signed 16-bit, clipped to range.
    pub fn to_i16(&self) -> Vec<i16> {
        self.samples
            .iter()
            .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    /// Checks the invariants [`AudioChunk::new`] checks, for chunks built field by field.
    pub fn validate(&self) -> Result<()> {
        if self.sample_rate == 0 {
            return Err(Error::InvalidAudio("sample rate must be non-zero".into()));
        }
        if self.channels == 0 {
            return Err(Error::InvalidAudio("channel count must be non-zero".into()));
        }
        if !self.samples.len().is_multiple_of(self.channels as usize) {
            return Err(Error::InvalidAudio(format!(
                "{} samples do not divide into {} channels",
                self.samples.len(),
                self.channels
            )));
        }
        Ok(())
    }

    /// Sample frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples
            .len()
            .checked_div(self.channels as usize)
            .unwrap_or(0)
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// How long the chunk plays (zero for an invalid rate).
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.frames() as u64, self.sample_rate)
    }

    /// The pts just after the last sample: where the next chunk starts.
    pub fn end_pts(&self) -> Duration {
        self.pts + self.duration()
    }

    /// The chunk mixed down to one channel (the mean of the channels).
    pub fn to_mono(&self) -> AudioChunk {
        let channels = self.channels.max(1) as usize;
        let samples = if channels == 1 {
            self.samples.clone()
        } else {
            let scale = 1.0 / channels as f32;
            self.samples
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale)
                .collect()
        };
        AudioChunk {
            sample_rate: self.sample_rate,
            channels: 1,
            samples,
            pts: self.pts,
        }
    }

    /// Root mean square over all samples (0 for an empty chunk): the loudness that drives the
    /// CPU avatar's mouth and the silence detector.
    pub fn rms(&self) -> f32 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let sum: f32 = self.samples.iter().map(|s| s * s).sum();
        (sum / self.samples.len() as f32).sqrt()
    }

    /// Largest absolute sample (0 for an empty chunk).
    pub fn peak(&self) -> f32 {
        self.samples.iter().fold(0.0, |peak, s| peak.max(s.abs()))
    }
}
