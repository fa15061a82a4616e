//! Fault recovery: a failed render or prepare is reported and followed by a re-prepare after a
//! doubling backoff; too many failures in a row leave the engine `Failed` (the presenter keeps
//! idle frames on the bus) until a restart or persona switch command.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use livetalk_core::clock::{samples_to_duration, FrameClock};
use livetalk_core::{Persona, ENGINE_SAMPLE_RATE};

use super::super::crossfade::Crossfade;
use super::super::status::{EngineEvent, EngineState};
use super::{shape_of, Worker};
use crate::engine::{block_sample_range, AvatarEngine, EngineError};

impl Worker {
    /// Records a failure; the main loop restarts the engine, or gives up after too many.
    pub(super) fn fail(&mut self, error: EngineError) {
        self.failures += 1;
        let failures = self.failures;
        let message = error.to_string();
        tracing::warn!(engine = self.setup.engine.name(), failures, %message, "engine failure");
        self.setup.reporter.update(|s| {
            s.last_error = Some(message.clone());
            s.consecutive_failures = failures;
        });
        self.setup.reporter.emit(EngineEvent::Error {
            message,
            consecutive_failures: failures,
        });
        if failures > self.setup.options.max_consecutive_failures {
            self.failed = true;
            self.needs_restart = false;
            self.setup.reporter.set_state(EngineState::Failed);
        } else {
            self.needs_restart = true;
            self.setup.reporter.set_state(EngineState::Restarting);
        }
    }

    /// Waits the backoff, then prepares the current persona again.
    pub(super) fn restart(&mut self) {
        let exponent = self.failures.saturating_sub(1).min(16);
        let backoff = self
            .setup
            .options
            .restart_backoff
            .saturating_mul(1 << exponent)
            .min(self.setup.options.max_restart_backoff);
        let until = Instant::now() + backoff;
        while !self.stop && Instant::now() < until && self.needs_restart {
            self.wait(until.saturating_duration_since(Instant::now()));
        }
        if self.stop || !self.needs_restart {
            return;
        }
        self.needs_restart = false;
        let persona = self.setup.persona.clone();
        match prepare_guarded(self.setup.engine.as_mut(), &persona) {
            Ok(()) => {
                let attempt = self.failures;
                self.setup.reporter.update(|s| s.restarts += 1);
                self.setup.reporter.emit(EngineEvent::Restarted { attempt });
                self.after_prepare();
                self.setup.reporter.set_state(EngineState::Running);
            }
            Err(error) => self.fail(error),
        }
    }

    /// After the engine (re)started: fade in from the last frame, re-read the engine's shape.
    pub(super) fn after_prepare(&mut self) {
        let old_shape = self.shape;
        self.shape = shape_of(self.setup.engine.as_ref());
        if (old_shape.fps, old_shape.frames_per_block)
            != (self.shape.fps, self.shape.frames_per_block)
        {
            // Keep the place on the timeline: the first block starting at or after the old one.
            let start =
                block_sample_range(self.next_block, old_shape.frames_per_block, old_shape.fps).0;
            let clock = FrameClock::new(self.shape.fps);
            let frame = clock.index_at(samples_to_duration(start, ENGINE_SAMPLE_RATE));
            self.next_block = frame.div_ceil(self.shape.frames_per_block as u64);
        }
        self.latency = self.latency.max(self.setup.engine.latency_budget());
        self.warming_up = true;
        self.resync = true;
        self.crossfade = self
            .last_frame
            .clone()
            .map(|from| Crossfade::new(from, self.setup.options.crossfade, self.shape.fps));
    }
}

/// `prepare` with panics turned into errors.
pub(super) fn prepare_guarded(
    engine: &mut dyn AvatarEngine,
    persona: &Persona,
) -> Result<(), EngineError> {
    catch_unwind(AssertUnwindSafe(|| engine.prepare(persona)))
        .unwrap_or_else(|payload| Err(EngineError::Panicked(panic_message(payload))))
}

pub(super) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".into()
    }
}
