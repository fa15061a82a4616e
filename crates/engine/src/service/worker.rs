//! The render worker: one thread that owns the engine and renders block after block.
//!
//! Each turn it handles commands, then either waits (paused, failed, nobody watching, audio not
//! there yet) or renders the next block: reads its audio window from the timeline, calls the
//! engine inside `catch_unwind`, checks the frames, cross-fades after a persona switch, hands the
//! frames to the frame taps and to the presenter (which publishes them at pts + L), and reports.
//!
//! Live pacing renders the newest block whose audio is complete; when it falls more than a
//! block behind it skips ahead (counted in `blocks_skipped`) rather than drift late. Offline
//! pacing renders every block in order and retries a failed block after the restart.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use livetalk_core::clock::{samples_to_duration, FrameClock};
use livetalk_core::{FrameBus, Persona, PixelFormat, VideoFrame, ENGINE_SAMPLE_RATE};

use super::commands::{EngineCommand, SpeechRequest, Stamped};
use super::crossfade::Crossfade;
use super::idle::placeholder_frame;
use super::presenter::Present;
use super::speaking::SpeakingDetector;
use super::status::{EngineEvent, EngineState, Reporter};
use super::taps::FrameTaps;
use super::EngineOptions;
use crate::engine::{
    block_duration, block_sample_range, check_block, AudioContext, AudioWindow, AvatarEngine,
    EngineError,
};
use crate::timeline::{AudioTimeline, Pacing, Readiness};

mod recovery;
mod switch;

use recovery::{panic_message, prepare_guarded};
use switch::Prepared;

/// How often a waiting worker looks at the watcher count.
const WATCH_POLL: Duration = Duration::from_millis(20);
/// Latency is raised in steps of this, so small jitter does not move it every block.
const LATENCY_STEP: Duration = Duration::from_millis(10);

/// Everything the worker thread starts with.
pub(crate) struct WorkerSetup {
    pub engine: Box<dyn AvatarEngine>,
    pub persona: Persona,
    pub bus: FrameBus,
    pub timeline: AudioTimeline,
    pub options: EngineOptions,
    pub reporter: Reporter,
    pub commands: Receiver<Stamped>,
    pub presenter: Sender<Present>,
    pub frame_taps: FrameTaps,
    pub speech: Option<Sender<SpeechRequest>>,
    pub stopping: Arc<AtomicBool>,
}

/// The engine's shape, re-read whenever the engine changes.
#[derive(Clone, Copy)]
struct Shape {
    fps: u32,
    frames_per_block: usize,
    context: AudioContext,
}

pub(crate) struct Worker {
    setup: WorkerSetup,
    shape: Shape,
    next_block: u64,
    /// The next block is chosen afresh from the clock (after start, idle, pause, restart).
    resync: bool,
    latency: Duration,
    /// The first render after a prepare is a warm-up: its time does not raise the latency.
    warming_up: bool,
    last_frame: Option<Arc<VideoFrame>>,
    crossfade: Option<Crossfade>,
    /// The persona switch whose first frame is awaited: persona name and command instant.
    switch_started: Option<(String, Instant)>,
    switch_generation: u64,
    prepared_tx: Sender<Prepared>,
    prepared_rx: Receiver<Prepared>,
    waker: Receiver<()>,
    failures: u32,
    needs_restart: bool,
    failed: bool,
    paused: bool,
    finished_reported: bool,
    stop: bool,
    speaking: SpeakingDetector,
    fps_window: (Instant, u64),
}

impl Worker {
    pub fn new(setup: WorkerSetup) -> Self {
        let shape = shape_of(setup.engine.as_ref());
        let latency = setup.engine.latency_budget();
        let (prepared_tx, prepared_rx) = crossbeam_channel::unbounded();
        let waker = setup.timeline.waker();
        let speaking = SpeakingDetector::new(setup.options.speaking_threshold);
        Worker {
            setup,
            shape,
            next_block: 0,
            resync: true,
            latency,
            warming_up: true,
            last_frame: None,
            crossfade: None,
            switch_started: None,
            switch_generation: 0,
            prepared_tx,
            prepared_rx,
            waker,
            failures: 0,
            needs_restart: false,
            failed: false,
            paused: false,
            finished_reported: false,
            stop: false,
            speaking,
            fps_window: (Instant::now(), 0),
        }
    }

    pub fn run(mut self) {
        let idle = placeholder_frame(&self.setup.persona, PixelFormat::Rgba, Duration::ZERO);
        let _ = self.setup.presenter.send(Present::Idle(Arc::new(idle)));
        let persona = self.setup.persona.clone();
        match prepare_guarded(self.setup.engine.as_mut(), &persona) {
            Ok(()) => {
                self.setup.reporter.set_state(EngineState::Running);
            }
            Err(error) => self.fail(error),
        }
        while !self.stop {
            self.drain_commands();
            if self.stop {
                break;
            }
            if self.needs_restart && !self.failed {
                self.restart();
            } else if self.failed {
                self.wait(Duration::from_millis(100));
            } else if self.paused {
                self.setup.reporter.set_state(EngineState::Paused);
                self.resync = true;
                self.wait(Duration::from_millis(100));
            } else if !self.watched() {
                self.setup.reporter.set_state(EngineState::Idle);
                self.resync = true;
                self.wait(WATCH_POLL);
            } else {
                self.step();
                continue;
            }
            // Not rendering: the next frame-rate measurement starts when rendering does.
            self.fps_window = (Instant::now(), 0);
        }
        self.setup.reporter.set_state(EngineState::Stopped);
    }

    fn watched(&self) -> bool {
        self.setup.bus.watcher_count() > 0 || self.setup.frame_taps.active() > 0
    }

    /// Renders the next block if its audio is there, else waits for it.
    fn step(&mut self) {
        let block = self.choose_block();
        let (start, end) = block_sample_range(block, self.shape.frames_per_block, self.shape.fps);
        let needed_end = end + self.shape.context.after as u64;
        match self.setup.timeline.readiness(start, needed_end) {
            Readiness::Ready => self.render(block),
            Readiness::After(wait) => self.wait(wait),
            Readiness::WaitForInput => self.wait(Duration::from_millis(100)),
            Readiness::Exhausted => {
                if !self.finished_reported {
                    self.finished_reported = true;
                    let pts = self.setup.timeline.now();
                    self.setup.reporter.emit(EngineEvent::Finished { pts });
                    self.setup.reporter.set_state(EngineState::Idle);
                }
                self.wait(Duration::from_millis(100));
            }
        }
    }

    /// Live and manual pacing: the newest block whose audio (and lookahead) is complete, if
    /// the worker is behind it; offline: simply the next block.
    fn choose_block(&mut self) -> u64 {
        if self.setup.timeline.pacing() == Pacing::Offline {
            return self.next_block;
        }
        let now = self.setup.timeline.now_sample();
        let usable = now.saturating_sub(self.shape.context.after as u64);
        let clock = FrameClock::new(self.shape.fps);
        let frames = clock.index_at(samples_to_duration(usable, ENGINE_SAMPLE_RATE));
        let complete_blocks = frames / self.shape.frames_per_block as u64;
        let newest = complete_blocks.saturating_sub(1);
        if self.resync {
            self.resync = false;
            self.next_block = self.next_block.max(newest);
        } else if newest > self.next_block {
            let skipped = newest - self.next_block;
            self.setup.reporter.update(|s| s.blocks_skipped += skipped);
            self.next_block = newest;
        }
        self.next_block
    }

    fn render(&mut self, block: u64) {
        let Shape {
            fps,
            frames_per_block,
            context,
        } = self.shape;
        let timeline = &self.setup.timeline;
        let window =
            AudioWindow::for_block(block, frames_per_block, fps, context, |r| timeline.read(r));
        self.setup.reporter.set_state(EngineState::Running);
        let started = Instant::now();
        let engine = &mut self.setup.engine;
        let result = catch_unwind(AssertUnwindSafe(|| engine.render(&window)))
            .unwrap_or_else(|payload| Err(EngineError::Panicked(panic_message(payload))))
            .and_then(|frames| check_block(&window, &frames).map(|()| frames));
        let elapsed = started.elapsed();
        match result {
            Ok(frames) => self.deliver(&window, frames, elapsed),
            Err(error) => self.fail(error),
        }
    }

    fn deliver(&mut self, window: &AudioWindow, frames: Vec<VideoFrame>, elapsed: Duration) {
        self.failures = 0;
        let block_end = window.block_start_sample() + window.block().len() as u64;
        let next_start = block_sample_range(
            window.block_index() + 1,
            self.shape.frames_per_block,
            self.shape.fps,
        )
        .0;
        let needs_from = next_start.saturating_sub(self.shape.context.before as u64);
        self.setup.timeline.reader_progress(block_end, needs_from);
        self.note_render_time(elapsed);
        let live = self.setup.timeline.pacing() == Pacing::Live;
        let count = frames.len() as u64;
        let mut batch = Vec::with_capacity(frames.len());
        for (i, mut frame) in frames.into_iter().enumerate() {
            if let Some(event) = self.speaking.update(frame.pts, window.frame_audio(i)) {
                self.setup.reporter.emit(event);
            }
            if let Some(fade) = &mut self.crossfade {
                fade.apply(&mut frame);
            }
            let frame = Arc::new(frame);
            self.setup
                .frame_taps
                .send(&frame, !live, &self.setup.stopping);
            let due = if live {
                self.setup.timeline.instant_of_pts(frame.pts) + self.latency
            } else {
                Instant::now()
            };
            batch.push((due, frame));
        }
        if self.crossfade.as_ref().is_some_and(Crossfade::is_done) {
            self.crossfade = None;
        }
        let last = batch.last().map(|(_, frame)| frame.clone());
        let _ = self.setup.presenter.send(Present::Frames(batch));
        let last_pts = last.as_ref().map(|f| f.pts).unwrap_or_default();
        self.last_frame = last;
        let speaking = self.speaking.is_speaking();
        self.setup.reporter.update(|s| {
            s.frames_rendered += count;
            s.last_pts = last_pts;
            s.consecutive_failures = 0;
            s.speaking = speaking;
        });
        if let Some((persona, at)) = self.switch_started.take() {
            let time_to_first_frame = at.elapsed();
            self.setup.reporter.update(|s| {
                s.last_switch_time = Some(time_to_first_frame);
                s.switching_to = None;
            });
            self.setup.reporter.emit(EngineEvent::PersonaChanged {
                persona,
                time_to_first_frame,
            });
        }
        self.count_fps(count);
        self.next_block = window.block_index() + 1;
    }

    /// Raises the latency when a render took longer than the budget allows.
    fn note_render_time(&mut self, elapsed: Duration) {
        if std::mem::take(&mut self.warming_up) {
            return;
        }
        let block = block_duration(self.shape.frames_per_block, self.shape.fps);
        let needed =
            block + self.shape.context.lookahead() + elapsed + self.setup.options.latency_margin;
        if needed > self.latency {
            let steps = needed.as_nanos().div_ceil(LATENCY_STEP.as_nanos());
            self.latency = LATENCY_STEP * steps as u32;
            let latency = self.latency;
            self.setup.reporter.update(|s| s.latency = latency);
            self.setup
                .reporter
                .emit(EngineEvent::LatencyChanged { latency });
        }
    }

    fn count_fps(&mut self, frames: u64) {
        self.fps_window.1 += frames;
        let elapsed = self.fps_window.0.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let fps = self.fps_window.1 as f64 / elapsed.as_secs_f64();
            self.fps_window = (Instant::now(), 0);
            self.setup.reporter.update(|s| s.fps = fps);
            self.setup.reporter.emit(EngineEvent::Fps { fps });
        }
    }

    fn drain_commands(&mut self) {
        while let Ok(command) = self.setup.commands.try_recv() {
            self.handle(command);
        }
        while let Ok(prepared) = self.prepared_rx.try_recv() {
            self.finish_switch(prepared);
        }
    }

    /// Waits up to `timeout` for a command, new audio or a prepared persona.
    fn wait(&mut self, timeout: Duration) {
        let commands = self.setup.commands.clone();
        let prepared = self.prepared_rx.clone();
        select! {
            recv(commands) -> command => match command {
                Ok(command) => self.handle(command),
                // Every handle is gone: nobody can command or stop us any more.
                Err(_) => self.stop = true,
            },
            recv(prepared) -> result => {
                if let Ok(result) = result {
                    self.finish_switch(result);
                }
            },
            recv(self.waker) -> _ => {},
            default(timeout) => {},
        }
    }

    fn handle(&mut self, stamped: Stamped) {
        match stamped.command {
            EngineCommand::SwitchPersona(persona) => self.start_switch(*persona, stamped.at),
            EngineCommand::Say(text) => self.say(text),
            EngineCommand::Mute(muted) => {
                self.setup.timeline.set_muted(muted);
                self.setup.reporter.update(|s| s.muted = muted);
            }
            EngineCommand::Pause => self.paused = true,
            EngineCommand::Resume => self.paused = false,
            EngineCommand::Restart => {
                self.failures = 0;
                self.failed = false;
                self.needs_restart = true;
                self.setup.reporter.update(|s| s.consecutive_failures = 0);
                self.setup.reporter.set_state(EngineState::Restarting);
            }
            EngineCommand::Stop => self.stop = true,
        }
    }

    fn say(&mut self, text: String) {
        let voice = self.setup.persona.voice.clone();
        let sent = match &self.setup.speech {
            Some(speech) => speech.send((text, voice)).is_ok(),
            None => false,
        };
        if !sent {
            let consecutive_failures = self.failures;
            self.setup.reporter.emit(EngineEvent::Error {
                message: "cannot say text: no text-to-speech is configured".into(),
                consecutive_failures,
            });
        }
    }
}

fn shape_of(engine: &dyn AvatarEngine) -> Shape {
    Shape {
        fps: engine.fps().max(1),
        frames_per_block: engine.frames_per_block().max(1),
        context: engine.audio_context(),
    }
}
