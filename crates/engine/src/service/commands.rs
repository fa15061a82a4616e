//! Commands to the engine worker, and the text-to-speech side thread that turns "say this"
//! into audio on the timeline without stalling the render loop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use livetalk_core::Persona;

use super::status::{EngineEvent, Reporter};
use crate::engine::{EngineError, Result};
use crate::timeline::AudioTimeline;

/// What the worker can be told to do (pushed audio goes straight to the timeline instead).
#[derive(Debug, Clone)]
pub enum EngineCommand {
    /// Prepare this persona while the current one keeps streaming, then cross-fade to it.
    SwitchPersona(Box<Persona>),
    /// Speak this text with the current persona's voice.
    Say(String),
    /// Replace incoming audio by silence (the call hears nothing, the avatar idles).
    Mute(bool),
    /// Stop rendering; the last frame stays on the bus.
    Pause,
    Resume,
    /// Prepare the engine again and clear the failure count (also leaves `Failed`).
    Restart,
    Stop,
}

/// A command with the instant it was given (to measure a persona switch from the user's click).
#[derive(Debug, Clone)]
pub(crate) struct Stamped {
    pub command: EngineCommand,
    pub at: Instant,
}

/// Text-to-speech for [`EngineCommand::Say`]: 16 kHz mono samples for `text` in `voice`.
pub trait SpeechSynth: Send + Sync {
    fn synthesize(&self, text: &str, voice: &str) -> Result<Vec<f32>>;
}

/// Every speaker of the audio crate (espeak-ng, the HTTP TTS adaptor) speaks for `say`.
impl<T: livetalk_audio::tts::Speaker> SpeechSynth for T {
    fn synthesize(&self, text: &str, voice: &str) -> Result<Vec<f32>> {
        let wave = self
            .speak(text, voice)
            .and_then(|wave| wave.to_engine_rate())
            .map_err(|e| EngineError::Render(e.to_string()))?;
        Ok(wave.samples)
    }
}

/// A speech request: text and voice.
pub(crate) type SpeechRequest = (String, String);

/// Starts the thread that synthesises requests in order and pushes them to the timeline.
pub(crate) fn spawn_speaker(
    synth: Arc<dyn SpeechSynth>,
    timeline: AudioTimeline,
    reporter: Reporter,
) -> std::io::Result<(Sender<SpeechRequest>, JoinHandle<()>)> {
    let (sender, receiver): (Sender<SpeechRequest>, Receiver<SpeechRequest>) =
        crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("livetalk-speech".into())
        .spawn(move || {
            for (text, voice) in receiver {
                // A panicking synthesiser must not take text-to-speech down for good.
                let spoken = catch_unwind(AssertUnwindSafe(|| synth.synthesize(&text, &voice)))
                    .unwrap_or_else(|_| Err(EngineError::Panicked("text-to-speech".into())))
                    .and_then(|samples| timeline.push(&samples));
                if let Err(error) = spoken {
                    tracing::warn!(%error, "text-to-speech failed");
                    let consecutive_failures = reporter.status().consecutive_failures;
                    reporter.emit(EngineEvent::Error {
                        message: format!("saying {text:?}: {error}"),
                        consecutive_failures,
                    });
                }
            }
        })?;
    Ok((sender, thread))
}
