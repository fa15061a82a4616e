//! The engine service: the one place that runs an [`AvatarEngine`] for every sink.
//!
//! ```text
//! inputs ──push──> AudioTimeline ──windows──> worker (engine.render, catch_unwind, cross-fade)
//!                      │ tap (delayed audio)        │ frames + due time (pts + L)     │ frame taps
//!                      v                            v                                 v (lossless)
//!                 virtual mic               presenter + keeper ──publish──> FrameBus ──> sinks
//! ```
//!
//! Decisions:
//! - **Threads.** A worker thread owns the engine and renders block after block; a presenter
//!   thread publishes frames at their due time and, as the keeper, republishes the last good
//!   frame (or an idle placeholder) whenever nothing was published for one keepalive period. The
//!   two are separate so a slow render, a restart or a failed engine never starves a sink.
//! - **Clock.** The [`AudioTimeline`] is the master clock; frames carry the pts of their audio
//!   and are published at pts + L in live mode, L being the engine's latency budget raised to
//!   what the worker measures (never lowered while running, so pictures do not jump). The audio
//!   tap gives the same audio for playing at pts + L.
//! - **Commands** go over a crossbeam channel ([`EngineCommand`]); pushed audio goes straight
//!   to the timeline (it returns the pts it landed at). [`EngineControl`] is the cloneable
//!   handle for the control API, hotkeys and sinks; [`EngineHandle`] owns the threads.
//! - **Persona switch.** The new persona is prepared on a sibling engine while the old one
//!   streams (in place for engines without siblings, the keeper holding the last frame), then
//!   the stream cross-fades from the old persona's last frame over [`CROSSFADE`]. The time from
//!   the command to the new persona's first frame is reported.
//! - **Nobody watching** (bus watcher count 0 and no frame tap): the worker does not render and
//!   the keeper stops republishing; the last frame stays on the bus. Live, the next block is then
//!   taken from the clock again, not from where it stopped.
//! - **Faults.** Errors and panics of `render` and `prepare` are caught, reported (status, event,
//!   log) and followed by a re-prepare after a doubling backoff; after
//!   `max_consecutive_failures` the state is `Failed` and only a restart or persona switch
//!   command tries again. The keeper feeds the bus all along.
//!
//! ```no_run
//! use livetalk_core::{FrameBus, Persona};
//! use livetalk_engine::service::{CpuAvatarEngine, EngineEvent, EngineOptions, EngineService};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = FrameBus::new(); // sinks subscribe here
//! let engine = Box::new(CpuAvatarEngine::new(7));
//! let handle = EngineService::start(engine, Persona::new("demo")?, bus, EngineOptions::offline())?;
//! let events = handle.events();
//! let frames = handle.frame_tap(8); // every frame, for a file writer
//! handle.push_audio(&vec![0.0; 16_000])?; // 1 s of 16 kHz mono
//! handle.finish_audio();
//! while let Some(frame) = frames.recv_timeout(std::time::Duration::from_secs(1)) {
//!     println!("frame at {:?}", frame.pts);
//! }
//! assert!(events.try_iter().any(|e| matches!(e, EngineEvent::Finished { .. })));
//! handle.stop()?;
//! # Ok(())
//! # }
//! ```

mod commands;
pub mod cpu;
mod crossfade;
pub mod faults;
mod idle;
mod presenter;
mod speaking;
mod status;
mod taps;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use livetalk_core::{AudioChunk, FrameBus, Persona};

pub use commands::{EngineCommand, SpeechSynth};
pub use cpu::CpuAvatarEngine;
pub use crossfade::CROSSFADE;
pub use idle::placeholder_frame;
pub use speaking::{SPEAKING_HANGOVER, SPEAKING_THRESHOLD};
pub use status::{EngineEvent, EngineState, EngineStatus};
pub use taps::FrameTap;

use crate::engine::{AvatarEngine, EngineError, Result};
use crate::timeline::{AudioTimeline, Pacing};
use commands::Stamped;
use status::Reporter;
use taps::FrameTaps;
use worker::{Worker, WorkerSetup};

/// How the service runs; build with [`EngineOptions::live`] or [`EngineOptions::offline`] and
/// adjust fields.
#[derive(Clone)]
pub struct EngineOptions {
    /// The master clock; its pacing decides live or offline behaviour.
    pub timeline: AudioTimeline,
    /// The keeper republishes the last frame when nothing was published for this long: the
    /// sink period (30 fps cameras: 1/30 s).
    pub keepalive: Duration,
    pub crossfade: Duration,
    /// Failures in a row tolerated before giving up (state `Failed`).
    pub max_consecutive_failures: u32,
    /// Wait before the first restart; doubles with each failure in a row.
    pub restart_backoff: Duration,
    pub max_restart_backoff: Duration,
    /// Added to the measured render time when the latency has to grow.
    pub latency_margin: Duration,
    /// RMS above which a frame's audio counts as speech (speaking events).
    pub speaking_threshold: f32,
    /// Text-to-speech for `say`; `None`: saying text is refused.
    pub speech: Option<Arc<dyn SpeechSynth>>,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("timeline", &self.timeline)
            .field("keepalive", &self.keepalive)
            .field("crossfade", &self.crossfade)
            .field("max_consecutive_failures", &self.max_consecutive_failures)
            .field("restart_backoff", &self.restart_backoff)
            .field("max_restart_backoff", &self.max_restart_backoff)
            .field("latency_margin", &self.latency_margin)
            .field("speaking_threshold", &self.speaking_threshold)
            .field("speech", &self.speech.is_some())
            .finish()
    }
}

impl EngineOptions {
    /// Options around an existing timeline (e.g. one the audio inputs already push into).
    pub fn with_timeline(timeline: AudioTimeline) -> Self {
        EngineOptions {
            timeline,
            keepalive: Duration::from_nanos(1_000_000_000 / 30),
            crossfade: CROSSFADE,
            max_consecutive_failures: 5,
            restart_backoff: Duration::from_millis(100),
            max_restart_backoff: Duration::from_secs(2),
            latency_margin: Duration::from_millis(50),
            speaking_threshold: SPEAKING_THRESHOLD,
            speech: None,
        }
    }

    /// Live: a new wall-clock timeline.
    pub fn live() -> Self {
        Self::with_timeline(AudioTimeline::live())
    }

    /// Offline: a new timeline that advances as fast as the engine renders.
    pub fn offline() -> Self {
        Self::with_timeline(AudioTimeline::offline())
    }
}

/// Starts engine services.
pub struct EngineService;

impl EngineService {
    /// Starts the worker and presenter threads; the engine prepares `persona` on the worker
    /// (state `Starting`, an idle placeholder on the bus meanwhile).
    pub fn start(
        engine: Box<dyn AvatarEngine>,
        persona: Persona,
        bus: FrameBus,
        options: EngineOptions,
    ) -> Result<EngineHandle> {
        let timeline = options.timeline.clone();
        let mut status = status::EngineStatus::new(
            engine.name(),
            &persona.name,
            engine.fps(),
            engine.latency_budget(),
        );
        status.muted = timeline.is_muted();
        let reporter = Reporter::new(status);
        let stopping = Arc::new(AtomicBool::new(false));
        let frame_taps = FrameTaps::default();
        let (command_tx, command_rx) = crossbeam_channel::unbounded();
        let spawn_error = |what: &str, e: std::io::Error| {
            EngineError::Render(format!("cannot start the {what} thread: {e}"))
        };
        let (presenter_tx, presenter) =
            presenter::spawn_presenter(bus.clone(), timeline.clone(), options.keepalive)
                .map_err(|e| spawn_error("presenter", e))?;
        let (speech, speaker) = match &options.speech {
            Some(synth) => {
                let (sender, thread) =
                    commands::spawn_speaker(synth.clone(), timeline.clone(), reporter.clone())
                        .map_err(|e| spawn_error("speech", e))?;
                (Some(sender), Some(thread))
            }
            None => (None, None),
        };
        let has_speech = speech.is_some();
        let setup = WorkerSetup {
            engine,
            persona,
            bus: bus.clone(),
            timeline: timeline.clone(),
            options,
            reporter: reporter.clone(),
            commands: command_rx,
            presenter: presenter_tx,
            frame_taps: frame_taps.clone(),
            speech,
            stopping: stopping.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("livetalk-engine".into())
            .spawn(move || Worker::new(setup).run())
            .map_err(|e| spawn_error("engine", e))?;
        Ok(EngineHandle {
            control: EngineControl {
                commands: command_tx,
                timeline,
                reporter,
                bus,
                frame_taps,
                stopping,
                has_speech,
            },
            threads: vec![worker, presenter].into_iter().chain(speaker).collect(),
        })
    }
}

/// A cloneable remote control of a running service (control API, hotkeys, sinks).
#[derive(Clone)]
pub struct EngineControl {
    commands: Sender<Stamped>,
    timeline: AudioTimeline,
    reporter: Reporter,
    bus: FrameBus,
    frame_taps: FrameTaps,
    stopping: Arc<AtomicBool>,
    has_speech: bool,
}

impl std::fmt::Debug for EngineControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineControl")
            .field("status", &self.status())
            .finish()
    }
}

impl EngineControl {
    /// Sends a command to the worker.
    pub fn send(&self, command: EngineCommand) -> Result<()> {
        let stamped = Stamped {
            command,
            at: Instant::now(),
        };
        self.commands
            .send(stamped)
            .map_err(|_| EngineError::Stopped)
    }

    /// Prepares `persona` while the current one streams, then cross-fades to it.
    pub fn switch_persona(&self, persona: Persona) -> Result<()> {
        self.send(EngineCommand::SwitchPersona(Box::new(persona)))
    }

    /// Speaks `text` in the current persona's voice (queued after earlier text).
    pub fn say(&self, text: &str) -> Result<()> {
        if !self.has_speech {
            return Err(EngineError::InvalidInput(
                "cannot say text: no text-to-speech is configured".into(),
            ));
        }
        if text.trim().is_empty() {
            return Err(EngineError::InvalidInput(
                "nothing to say: the text is empty".into(),
            ));
        }
        self.send(EngineCommand::Say(text.to_string()))
    }

    pub fn set_muted(&self, muted: bool) -> Result<()> {
        self.send(EngineCommand::Mute(muted))
    }

    pub fn pause(&self) -> Result<()> {
        self.send(EngineCommand::Pause)
    }

    pub fn resume(&self) -> Result<()> {
        self.send(EngineCommand::Resume)
    }

    /// Prepares the engine again and forgets past failures (also leaves `Failed`).
    pub fn restart(&self) -> Result<()> {
        self.send(EngineCommand::Restart)
    }

    /// Pushes 16 kHz mono samples onto the timeline; returns the pts they start at.
    pub fn push_audio(&self, samples: &[f32]) -> Result<Duration> {
        self.timeline.push(samples)
    }

    /// Pushes a 16 kHz chunk (several channels are mixed down).
    pub fn push_chunk(&self, chunk: &AudioChunk) -> Result<Duration> {
        self.timeline.push_chunk(chunk)
    }

    /// Offline: no more audio; the engine renders the rest, then reports `Finished`.
    pub fn finish_audio(&self) {
        self.timeline.finish();
    }

    pub fn status(&self) -> EngineStatus {
        let mut status = self.reporter.status();
        status.muted = self.timeline.is_muted();
        status
    }

    /// A new event subscription (each receives every event from now on).
    pub fn events(&self) -> Receiver<EngineEvent> {
        self.reporter.subscribe()
    }

    pub fn timeline(&self) -> &AudioTimeline {
        &self.timeline
    }

    pub fn bus(&self) -> &FrameBus {
        &self.bus
    }

    /// The audio from now on, stamped with pts, for playing at pts + `status().latency`.
    pub fn audio_tap(&self, capacity: usize) -> Receiver<AudioChunk> {
        self.timeline.tap(capacity)
    }

    /// Every rendered frame from now on (see [`FrameTap`]).
    pub fn frame_tap(&self, capacity: usize) -> FrameTap {
        self.frame_taps.open(capacity)
    }

    /// Polls the status until `condition` holds or `timeout` passes.
    pub fn wait_for_status(
        &self,
        timeout: Duration,
        condition: impl Fn(&EngineStatus) -> bool,
    ) -> Option<EngineStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if condition(&status) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the service's pacing is live.
    pub fn is_live(&self) -> bool {
        self.timeline.pacing() == Pacing::Live
    }
}

/// Owns a running service: stop it with [`EngineHandle::stop`] (dropping it stops it too).
/// Dereferences to its [`EngineControl`].
pub struct EngineHandle {
    control: EngineControl,
    threads: Vec<JoinHandle<()>>,
}

impl std::ops::Deref for EngineHandle {
    type Target = EngineControl;

    fn deref(&self) -> &EngineControl {
        &self.control
    }
}

impl EngineHandle {
    /// A cloneable control for other threads.
    pub fn control(&self) -> EngineControl {
        self.control.clone()
    }

    /// Stops rendering and joins the threads; the last frame stays on the bus.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.control.stopping.store(true, Ordering::SeqCst);
        let _ = self.control.send(EngineCommand::Stop);
        let mut panicked = Vec::new();
        // The worker first: it owns the presenter's and the speaker's senders.
        for thread in self.threads.drain(..) {
            let name = thread.thread().name().unwrap_or("engine").to_string();
            if thread.join().is_err() {
                panicked.push(name);
            }
        }
        if panicked.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Panicked(format!(
                "thread(s) {} panicked",
                panicked.join(", ")
            )))
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.shutdown();
        }
    }
}
