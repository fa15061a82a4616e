//! What the service tells the outside: a status snapshot ([`EngineStatus`]) and a stream of
//! events ([`EngineEvent`]), both serialisable so the control API can forward them unchanged
//! (durations as seconds in `f64`).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use serde::Serialize;

/// What the engine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineState {
    /// Preparing the first persona.
    Starting,
    /// Rendering.
    Running,
    /// Paused on request; the last frame stays on the bus.
    Paused,
    /// Nobody watches (or offline audio is used up): not rendering, the GPU idles.
    Idle,
    /// A render failed; the engine is being prepared again.
    Restarting,
    /// Too many failures in a row: not rendering until told to restart; idle frames go on.
    Failed,
    /// The service has stopped.
    Stopped,
}

/// A snapshot of the service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineStatus {
    pub state: EngineState,
    /// The engine's name ("cpu-avatar", "livetalk").
    pub engine: String,
    /// The persona being rendered (the new one once a switch completed).
    pub persona: String,
    /// The persona being prepared for a switch, if any.
    pub switching_to: Option<String>,
    /// Frames rendered per second over the last second.
    pub fps: f64,
    /// The engine's nominal rate.
    pub target_fps: u32,
    /// Delay from an audio sample's pts to the frame it drove being shown (pts + L).
    #[serde(serialize_with = "seconds")]
    pub latency: Duration,
    pub frames_rendered: u64,
    /// Blocks not rendered because the engine fell behind the live clock.
    pub blocks_skipped: u64,
    /// pts of the newest rendered frame.
    #[serde(serialize_with = "seconds")]
    pub last_pts: Duration,
    pub restarts: u64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub speaking: bool,
    pub muted: bool,
    /// Time from the last persona-switch command to the first frame of the new persona.
    #[serde(serialize_with = "optional_seconds")]
    pub last_switch_time: Option<Duration>,
}

impl EngineStatus {
    pub(crate) fn new(engine: &str, persona: &str, target_fps: u32, latency: Duration) -> Self {
        EngineStatus {
            state: EngineState::Starting,
            engine: engine.to_string(),
            persona: persona.to_string(),
            switching_to: None,
            fps: 0.0,
            target_fps,
            latency,
            frames_rendered: 0,
            blocks_skipped: 0,
            last_pts: Duration::ZERO,
            restarts: 0,
            consecutive_failures: 0,
            last_error: None,
            speaking: false,
            muted: false,
            last_switch_time: None,
        }
    }
}

/// Something that happened, for the control API and the UI.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    StateChanged {
        state: EngineState,
    },
    SpeakingStarted {
        #[serde(serialize_with = "seconds")]
        pts: Duration,
    },
    SpeakingStopped {
        #[serde(serialize_with = "seconds")]
        pts: Duration,
    },
    /// The new persona's first frame was rendered.
    PersonaChanged {
        persona: String,
        #[serde(serialize_with = "seconds")]
        time_to_first_frame: Duration,
    },
    /// Frames rendered per second over the last second.
    Fps {
        fps: f64,
    },
    LatencyChanged {
        #[serde(serialize_with = "seconds")]
        latency: Duration,
    },
    /// A failure: of a render, a preparation, a persona switch or text-to-speech.
    Error {
        message: String,
        consecutive_failures: u32,
    },
    /// The engine was prepared again after a failure.
    Restarted {
        attempt: u32,
    },
    /// Offline: every pushed sample has been rendered.
    Finished {
        #[serde(serialize_with = "seconds")]
        pts: Duration,
    },
}

/// Status and event fan-out shared by the worker threads and the handles.
#[derive(Clone)]
pub(crate) struct Reporter {
    status: Arc<Mutex<EngineStatus>>,
    listeners: Arc<Mutex<Vec<Sender<EngineEvent>>>>,
}

/// Events a listener may hold before newer ones are dropped for it (never block the worker).
const EVENT_QUEUE: usize = 1024;

impl Reporter {
    pub fn new(status: EngineStatus) -> Self {
        Reporter {
            status: Arc::new(Mutex::new(status)),
            listeners: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn status(&self) -> EngineStatus {
        self.status.lock().clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut EngineStatus)) {
        change(&mut self.status.lock());
    }

    /// Sets the state, with an event when it changed; returns whether it changed. Outside
    /// `Running` the measured frame rate is 0.
    pub fn set_state(&self, state: EngineState) -> bool {
        let changed = {
            let mut status = self.status.lock();
            if state != EngineState::Running {
                status.fps = 0.0;
            }
            std::mem::replace(&mut status.state, state) != state
        };
        if changed {
            self.emit(EngineEvent::StateChanged { state });
        }
        changed
    }

    pub fn subscribe(&self) -> Receiver<EngineEvent> {
        let (sender, receiver) = crossbeam_channel::bounded(EVENT_QUEUE);
        self.listeners.lock().push(sender);
        receiver
    }

    pub fn emit(&self, event: EngineEvent) {
        tracing::debug!(?event, "engine event");
        self.listeners.lock().retain(|listener| {
            !matches!(
                listener.try_send(event.clone()),
                Err(TrySendError::Disconnected(_))
            )
        });
    }
}

fn seconds<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

fn optional_seconds<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.serialize_some(&value.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}
