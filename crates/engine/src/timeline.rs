//! The audio timeline: the master clock of the whole pipeline.
//!
//! Every input (files, TTS, microphone, API-pushed PCM) pushes 16 kHz mono `f32` samples here;
//! the engine reads the audio of each block from here, and every frame carries the pts of the
//! audio that drove it. Sample `n` has pts `n / 16000 s`, exactly.
//!
//! Decisions:
//! - **Pacing.** [`Pacing::Live`]: "now" is the wall clock since the timeline was made; pushed
//!   audio is appended at `max(end of pushed audio, now)`, so a gap in which nobody pushed is
//!   silence (the avatar idles) and a long TTS clip plays out over its own length.
//!   [`Pacing::Offline`] (demo, tests): "now" is how far the engine has rendered; audio is
//!   appended back to back and the engine renders as fast as it can while audio is there.
//!   [`Pacing::Manual`]: like live, but "now" moves only through [`AudioTimeline::advance_clock`]
//!   (hosts with their own media clock, and deterministic tests).
//! - **Taps.** [`AudioTimeline::tap`] hands out every sample that has become "now" (silence
//!   included), as chunks stamped with their pts: the virtual mic or a file writer plays them at
//!   pts + L, the same delay the frames get, so lips and voice line up.
//! - **Memory.** Samples are kept while a reader (the engine, a tap) still needs them, and never
//!   longer than [`MAX_HISTORY`] behind "now"; older reads return silence.
//! - Mute replaces pushed audio by silence of the same length, so timing is unchanged.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use livetalk_core::clock::{duration_to_samples, samples_to_duration};
use livetalk_core::{AudioChunk, ENGINE_SAMPLE_RATE};
use parking_lot::Mutex;

use crate::engine::{EngineError, Result};

/// How far behind "now" samples are kept at most.
pub const MAX_HISTORY: Duration = Duration::from_secs(10);

/// How the timeline's "now" advances (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pacing {
    Live,
    Offline,
    Manual,
}

/// Whether the audio up to a sample can be read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// It is there.
    Ready,
    /// Live pacing: it will be there after this wall-clock wait.
    After(Duration),
    /// It comes when someone pushes audio (offline) or moves the clock (manual).
    WaitForInput,
    /// Offline and finished: the requested range starts past the last pushed sample.
    Exhausted,
}

/// The shared timeline (cheap to clone; all clones are the same timeline).
#[derive(Clone)]
pub struct AudioTimeline {
    shared: Arc<Shared>,
}

struct Shared {
    pacing: Pacing,
    started: Instant,
    state: Mutex<State>,
}

struct State {
    /// Samples `[buffer_start, buffer_start + buffer.len())`; the end is always `written`.
    buffer: VecDeque<f32>,
    buffer_start: u64,
    /// End of the pushed audio (silence gaps included).
    written: u64,
    /// Offline: how far the engine has rendered. Manual: the clock.
    position: u64,
    /// The engine needs nothing before this sample any more.
    reader_needs_from: u64,
    /// Taps have been sent everything before this sample.
    tapped: u64,
    muted: bool,
    finished: bool,
    taps: Vec<Sender<AudioChunk>>,
    wakers: Vec<Sender<()>>,
    dropped_tap_chunks: u64,
}

impl std::fmt::Debug for AudioTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("AudioTimeline")
            .field("pacing", &self.shared.pacing)
            .field("written", &state.written)
            .field("position", &state.position)
            .field("muted", &state.muted)
            .field("finished", &state.finished)
            .finish()
    }
}

impl AudioTimeline {
    pub fn new(pacing: Pacing) -> Self {
        AudioTimeline {
            shared: Arc::new(Shared {
                pacing,
                started: Instant::now(),
                state: Mutex::new(State {
                    buffer: VecDeque::new(),
                    buffer_start: 0,
                    written: 0,
                    position: 0,
                    reader_needs_from: 0,
                    tapped: 0,
                    muted: false,
                    finished: false,
                    taps: Vec::new(),
                    wakers: Vec::new(),
                    dropped_tap_chunks: 0,
                }),
            }),
        }
    }

    pub fn live() -> Self {
        Self::new(Pacing::Live)
    }

    pub fn offline() -> Self {
        Self::new(Pacing::Offline)
    }

    pub fn manual() -> Self {
        Self::new(Pacing::Manual)
    }

    pub fn pacing(&self) -> Pacing {
        self.shared.pacing
    }

    /// Index of the sample playing now.
    pub fn now_sample(&self) -> u64 {
        let state = self.shared.state.lock();
        self.now_locked(&state)
    }

    /// The pts playing now.
    pub fn now(&self) -> Duration {
        samples_to_duration(self.now_sample(), ENGINE_SAMPLE_RATE)
    }

    /// The wall-clock instant at which sample `index` plays (live pacing; meaningful for the
    /// others only as "when the timeline started" plus the sample's pts).
    pub fn instant_of_sample(&self, index: u64) -> Instant {
        self.shared.started + samples_to_duration(index, ENGINE_SAMPLE_RATE)
    }

    /// The wall-clock instant at which `pts` plays under live pacing.
    pub fn instant_of_pts(&self, pts: Duration) -> Instant {
        self.shared.started + pts
    }

    fn now_locked(&self, state: &State) -> u64 {
        match self.shared.pacing {
            Pacing::Live => duration_to_samples(self.shared.started.elapsed(), ENGINE_SAMPLE_RATE),
            Pacing::Offline | Pacing::Manual => state.position,
        }
    }

    /// Appends 16 kHz mono samples; returns the pts of the first one. Live and manual pacing
    /// start them no earlier than "now" (the gap before is silence). Non-finite samples are
    /// refused, and offline audio cannot be pushed after [`AudioTimeline::finish`].
    pub fn push(&self, samples: &[f32]) -> Result<Duration> {
        if let Some(index) = samples.iter().position(|s| !s.is_finite()) {
            return Err(EngineError::InvalidInput(format!(
                "audio sample {index} of {} is {} (samples must be finite)",
                samples.len(),
                samples[index]
            )));
        }
        let mut state = self.shared.state.lock();
        if state.finished {
            return Err(EngineError::InvalidInput(
                "audio pushed after the timeline was finished".into(),
            ));
        }
        let start = match self.shared.pacing {
            Pacing::Offline => state.written,
            Pacing::Live | Pacing::Manual => state.written.max(self.now_locked(&state)),
        };
        // After a long silence, do not materialise more of it than anyone can still read.
        let keep_from = self.keep_from(&state).min(start);
        if keep_from > state.written {
            state.buffer.clear();
            state.buffer_start = keep_from;
            state.written = keep_from;
        }
        let gap = (start - state.written) as usize;
        let muted = state.muted;
        state.buffer.extend(std::iter::repeat_n(0.0, gap));
        if muted {
            state.buffer.extend(std::iter::repeat_n(0.0, samples.len()));
        } else {
            state.buffer.extend(samples.iter().copied());
        }
        state.written = start + samples.len() as u64;
        self.trim(&mut state);
        wake(&mut state);
        Ok(samples_to_duration(start, ENGINE_SAMPLE_RATE))
    }

    /// Pushes a chunk: it must be at 16 kHz; several channels are mixed down to mono.
    pub fn push_chunk(&self, chunk: &AudioChunk) -> Result<Duration> {
        chunk.validate()?;
        if chunk.sample_rate != ENGINE_SAMPLE_RATE {
            return Err(EngineError::InvalidInput(format!(
                "audio at {} Hz: the timeline takes {ENGINE_SAMPLE_RATE} Hz (resample first)",
                chunk.sample_rate
            )));
        }
        self.push(&chunk.to_mono().samples)
    }

    /// Offline pacing: no more audio will come; the engine renders the rest and stops.
    pub fn finish(&self) {
        let mut state = self.shared.state.lock();
        state.finished = true;
        wake(&mut state);
    }

    pub fn is_finished(&self) -> bool {
        self.shared.state.lock().finished
    }

    /// Mute: audio pushed from now on becomes silence of the same length.
    pub fn set_muted(&self, muted: bool) {
        self.shared.state.lock().muted = muted;
    }

    pub fn is_muted(&self) -> bool {
        self.shared.state.lock().muted
    }

    /// End of the pushed audio (silence gaps included), as a sample index.
    pub fn written(&self) -> u64 {
        self.shared.state.lock().written
    }

    /// The samples of `range`: silence where nothing was pushed or the history was let go.
    pub fn read(&self, range: Range<u64>) -> Vec<f32> {
        let state = self.shared.state.lock();
        let len = range.end.saturating_sub(range.start) as usize;
        let mut out = vec![0.0; len];
        let buffer_end = state.buffer_start + state.buffer.len() as u64;
        let from = range.start.max(state.buffer_start);
        let to = range.end.min(buffer_end);
        for index in from..to {
            out[(index - range.start) as usize] =
                state.buffer[(index - state.buffer_start) as usize];
        }
        out
    }

    /// Whether the audio before sample `end` can be read (see [`Readiness`]); `start` is the
    /// first sample the reader will use for itself (offline: past the end of input means done).
    pub fn readiness(&self, start: u64, end: u64) -> Readiness {
        let state = self.shared.state.lock();
        match self.shared.pacing {
            Pacing::Live => {
                let now = self.now_locked(&state);
                if now >= end {
                    Readiness::Ready
                } else {
                    let due = self.instant_of_sample(end);
                    Readiness::After(due.saturating_duration_since(Instant::now()))
                }
            }
            Pacing::Manual => {
                if state.position >= end {
                    Readiness::Ready
                } else {
                    Readiness::WaitForInput
                }
            }
            Pacing::Offline => {
                // A last partial block (input finished inside it) renders padded with silence.
                let last_partial = state.finished && start < state.written;
                if state.written >= end || last_partial {
                    Readiness::Ready
                } else if state.finished {
                    Readiness::Exhausted
                } else {
                    Readiness::WaitForInput
                }
            }
        }
    }

    /// The reader has rendered up to sample `rendered_to` and needs nothing before
    /// `needs_from` any more. Offline, this is what moves "now".
    pub fn reader_progress(&self, rendered_to: u64, needs_from: u64) {
        let mut state = self.shared.state.lock();
        state.reader_needs_from = state.reader_needs_from.max(needs_from);
        if self.shared.pacing == Pacing::Offline {
            state.position = state.position.max(rendered_to);
        }
        self.flush_taps(&mut state);
        self.trim(&mut state);
    }

    /// Manual pacing: moves "now" forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        let mut state = self.shared.state.lock();
        if self.shared.pacing == Pacing::Manual {
            state.position += duration_to_samples(by, ENGINE_SAMPLE_RATE);
            self.flush_taps(&mut state);
            self.trim(&mut state);
            wake(&mut state);
        }
    }

    /// Sends the taps everything up to "now" (the service calls this periodically in live
    /// mode; pushes and reader progress call it too).
    pub fn tick(&self) {
        let mut state = self.shared.state.lock();
        self.flush_taps(&mut state);
        self.trim(&mut state);
    }

    /// A tap: every sample from the current "now" on, as chunks stamped with their pts, in
    /// order. Keep up with it: a tap that holds more than `capacity` chunks loses the newest.
    pub fn tap(&self, capacity: usize) -> Receiver<AudioChunk> {
        let (sender, receiver) = crossbeam_channel::bounded(capacity.max(1));
        let mut state = self.shared.state.lock();
        self.flush_taps(&mut state);
        state.taps.push(sender);
        receiver
    }

    /// Chunks lost because a tap was full.
    pub fn dropped_tap_chunks(&self) -> u64 {
        self.shared.state.lock().dropped_tap_chunks
    }

    /// A channel that receives a token whenever audio is pushed, the manual clock moves or the
    /// timeline finishes: the engine worker waits on it next to its commands.
    pub fn waker(&self) -> Receiver<()> {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        self.shared.state.lock().wakers.push(sender);
        receiver
    }

    fn flush_taps(&self, state: &mut State) {
        let now = self.now_locked(state);
        if now <= state.tapped {
            return;
        }
        let range = state.tapped..now;
        state.tapped = now;
        if state.taps.is_empty() {
            return;
        }
        let buffer_end = state.buffer_start + state.buffer.len() as u64;
        let samples: Vec<f32> = range
            .clone()
            .map(|i| {
                if i >= state.buffer_start && i < buffer_end {
                    state.buffer[(i - state.buffer_start) as usize]
                } else {
                    0.0
                }
            })
            .collect();
        let chunk = AudioChunk::engine_mono(
            samples,
            samples_to_duration(range.start, ENGINE_SAMPLE_RATE),
        );
        let mut dropped = 0;
        state.taps.retain(|tap| match tap.try_send(chunk.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                dropped += 1;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        state.dropped_tap_chunks += dropped;
    }

    /// Lets go of samples nobody needs: before both the reader's and the taps' positions, and
    /// anything older than [`MAX_HISTORY`].
    fn trim(&self, state: &mut State) {
        let keep_from = self.keep_from(state).min(state.written);
        if keep_from > state.buffer_start {
            let drop = (keep_from - state.buffer_start) as usize;
            state.buffer.drain(..drop.min(state.buffer.len()));
            state.buffer_start = keep_from;
        }
    }
}

impl AudioTimeline {
    /// The first sample someone may still read.
    fn keep_from(&self, state: &State) -> u64 {
        let now = self.now_locked(state);
        let history_floor =
            now.saturating_sub(duration_to_samples(MAX_HISTORY, ENGINE_SAMPLE_RATE));
        state.reader_needs_from.min(state.tapped).max(history_floor)
    }
}

fn wake(state: &mut State) {
    state
        .wakers
        .retain(|waker| !matches!(waker.try_send(()), Err(TrySendError::Disconnected(_))));
}
