//! Audio in and out. Everything that drives the avatar is brought to the engine's timeline:
//! 16 kHz mono f32 ([`ENGINE_RATE`]): files ([`file`]), text ([`tts`], [`http_tts`]), raw PCM
//! ([`pcm`]), the microphone ([`mic`], feature `mic`), with [`vad`] for voice activity. Out goes
//! the virtual microphone ([`virtual_mic`]), which plays the driving audio delayed like the video.

pub mod file;
pub mod http_tts;
#[cfg(feature = "mic")]
pub mod mic;
pub mod pcm;
pub mod resample;
pub mod tts;
pub mod vad;
pub mod virtual_mic;

use std::path::PathBuf;

/// The engine's audio timeline rate (wav2vec2 and the CPU avatar analysis both use it).
pub const ENGINE_RATE: u32 = 16_000;

/// A whole mono clip at a known rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    pub sample_rate: u32,
    pub samples: Vec<f32>,
}

impl Waveform {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }

    /// The same clip at the engine's 16 kHz.
    pub fn to_engine_rate(&self) -> Result<Waveform, AudioError> {
        resample::to_rate(self, ENGINE_RATE)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot read audio file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path} is not an audio file livetalk can read (WAV, FLAC, MP3, OGG/Vorbis): {reason}")]
    NotAudio { path: PathBuf, reason: String },
    #[error("{path} holds no audio samples")]
    Empty { path: PathBuf },
    #[error("text-to-speech failed: {0}")]
    Tts(String),
    #[error("resampling from {from} Hz to {to} Hz failed: {reason}")]
    Resample { from: u32, to: u32, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("bad raw PCM format `{spec}`: {reason}")]
    PcmFormat { spec: String, reason: String },
    #[error("{stream} is not {format} raw PCM: {reason}")]
    Pcm { stream: String, format: String, reason: String },
    /// A device name that matches no device (or several): the message lists the available ones.
    #[error("no {kind} named `{name}`{}; available: {}", if *.ambiguous { " (the name fits several)" } else { "" }, list_or_none(.available))]
    UnknownDevice { kind: &'static str, name: String, available: Vec<String>, ambiguous: bool },
    #[error("{0}")]
    Device(String),
    #[error("virtual microphone: {0}")]
    VirtualMic(String),
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }
}
