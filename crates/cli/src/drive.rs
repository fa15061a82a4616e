//! What drives the avatar in offline commands: a file, text through TTS, or the shipped sample.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use livetalk_audio::{file, tts, Waveform};

/// The sentence the demo speaks when no text or audio is given.
pub const DEFAULT_TEXT: &str = "Hello! I am your live talk avatar. I move my lips to your voice, in any video call.";

/// What drives the avatar, as command-line options (`demo`, `run`).
#[derive(clap::Args, Clone, Debug)]
pub struct DriveArgs {
    /// Text the avatar speaks (espeak-ng); default: a greeting.
    #[arg(long, conflicts_with = "audio")]
    pub text: Option<String>,
    /// An audio file that drives the avatar (WAV, FLAC, MP3, OGG), paced in real time by `run`.
    #[arg(long)]
    pub audio: Option<PathBuf>,
}

/// The driving audio: `original` goes into output files; `engine` (16 kHz) drives the avatar.
pub struct Drive {
    pub original: Waveform,
    pub engine: Waveform,
    pub description: String,
}

pub fn resolve(text: Option<&str>, audio: Option<&Path>, voice: &str) -> Result<Drive> {
    let (original, description) = match (text, audio) {
        (_, Some(path)) => {
            let wave = file::read_mono(path)?;
            (wave, format!("audio file {}", path.display()))
        }
        (text, None) => speak_or_sample(text.unwrap_or(DEFAULT_TEXT), voice, text.is_some())?,
    };
    let engine = original.to_engine_rate()?;
    Ok(Drive { original, engine, description })
}

fn speak_or_sample(text: &str, voice: &str, user_text: bool) -> Result<(Waveform, String)> {
    if let Some(espeak) = tts::Espeak::find() {
        let wave = espeak.speak(text, voice)?;
        return Ok((wave, format!("text-to-speech ({}, voice {voice})", espeak.program().display())));
    }
    if user_text {
        anyhow::bail!("cannot speak the given text: espeak-ng was not found ({})", tts::INSTALL_HINT);
    }
    eprintln!("note: espeak-ng not found, using the shipped speech sample; {}", tts::INSTALL_HINT);
    let wave = shipped_sample()?;
    Ok((wave, "the shipped speech sample".into()))
}

/// The spoken sample compiled into the binary (assets/sample-speech.wav, 16 kHz mono).
pub fn shipped_sample() -> Result<Waveform> {
    const SAMPLE: &[u8] = include_bytes!("../../../assets/sample-speech.wav");
    let path: PathBuf = tts::tempfile_path("sample", "wav");
    std::fs::write(&path, SAMPLE).with_context(|| format!("writing {}", path.display()))?;
    let wave = file::read_mono(&path);
    let _ = std::fs::remove_file(&path);
    Ok(wave?)
}
