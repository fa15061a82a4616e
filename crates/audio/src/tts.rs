//! Text to speech. The local default is espeak-ng, found at run time (no build dependency):
//! `espeak-ng -v VOICE -w out.wav TEXT`. When it is missing, callers fall back to the sample
//! shipped in `assets/` and tell the user how to install it ([`INSTALL_HINT`]). An external
//! service can speak instead through [`crate::http_tts::HttpTts`]; both are [`Speaker`]s.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{file, AudioError, Waveform};

pub const INSTALL_HINT: &str = "install espeak-ng for text-to-speech: sudo apt-get install espeak-ng";

/// Something that turns text into speech in a named voice (the persona's `voice`).
pub trait Speaker: Send + Sync {
    fn speak(&self, text: &str, voice: &str) -> Result<Waveform, AudioError>;
    /// What speaks, for messages ("espeak-ng", "TTS service at URL").
    fn describe(&self) -> String;
}

impl Speaker for Espeak {
    fn speak(&self, text: &str, voice: &str) -> Result<Waveform, AudioError> {
        Espeak::speak(self, text, voice)
    }

    fn describe(&self) -> String {
        self.program.display().to_string()
    }
}

/// The espeak-ng program, if it is on PATH (or named by LIVETALK_ESPEAK).
#[derive(Debug, Clone)]
pub struct Espeak {
    program: PathBuf,
}

impl Espeak {
    pub fn find() -> Option<Espeak> {
        let candidates: Vec<PathBuf> = match std::env::var_os("LIVETALK_ESPEAK") {
            Some(p) => vec![PathBuf::from(p)],
            None => std::env::var_os("PATH")
                .map(|paths| {
                    std::env::split_paths(&paths)
                        .flat_map(|d| [d.join("espeak-ng"), d.join("espeak")])
                        .collect()
                })
                .unwrap_or_default(),
        };
        candidates.into_iter().find(|p| p.is_file()).map(|program| Espeak { program })
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Speaks `text` with `voice` (an espeak-ng voice name such as "en-us") into a mono waveform.
    pub fn speak(&self, text: &str, voice: &str) -> Result<Waveform, AudioError> {
        if text.trim().is_empty() {
            return Err(AudioError::Tts("the text to speak is empty".into()));
        }
        let out = tempfile_path("tts", "wav");
        let status = Command::new(&self.program)
            .args(["-v", voice, "-w"])
            .arg(&out)
            .arg("--")
            .arg(text)
            .output()
            .map_err(|e| AudioError::Tts(format!("cannot run {}: {e}", self.program.display())))?;
        let result = if status.status.success() {
            file::read_mono(&out)
        } else {
            Err(AudioError::Tts(format!(
                "{} -v {voice} failed: {}",
                self.program.display(),
                String::from_utf8_lossy(&status.stderr).trim()
            )))
        };
        let _ = std::fs::remove_file(&out);
        result
    }
}

/// A unique path in the temp dir (pid + counter + time), for short-lived files.
pub fn tempfile_path(stem: &str, ext: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("livetalk-{stem}-{}-{n}-{nanos}.{ext}", std::process::id()))
}
