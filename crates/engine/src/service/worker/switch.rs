//! Persona switch: the new persona is prepared on a sibling engine (a side thread) while the
//! current one keeps streaming, or in place for engines without siblings; then the stream
//! cross-fades from the old persona's last frame, and the first new frame is timed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use livetalk_core::Persona;

use super::super::status::EngineEvent;
use super::recovery::{panic_message, prepare_guarded};
use super::Worker;
use crate::engine::{AvatarEngine, EngineError};

/// A persona prepared on a side thread, ready to take over.
pub(super) struct Prepared {
    generation: u64,
    persona: Persona,
    engine: Box<dyn AvatarEngine>,
    result: Result<(), EngineError>,
    requested_at: Instant,
}

impl Worker {
    /// Prepares `persona` on a sibling engine while this one streams, or, for engines without
    /// siblings, in place (the presenter holds the last frame meanwhile).
    pub(super) fn start_switch(&mut self, persona: Persona, at: Instant) {
        self.switch_generation += 1;
        let generation = self.switch_generation;
        let name = persona.name.clone();
        self.setup
            .reporter
            .update(|s| s.switching_to = Some(name.clone()));
        match catch_unwind(AssertUnwindSafe(|| self.setup.engine.sibling()))
            .unwrap_or_else(|payload| Err(EngineError::Panicked(panic_message(payload))))
        {
            Ok(Some(mut sibling)) => {
                let done = self.prepared_tx.clone();
                let spawned = std::thread::Builder::new()
                    .name("livetalk-prepare".into())
                    .spawn(move || {
                        let result = prepare_guarded(sibling.as_mut(), &persona);
                        let _ = done.send(Prepared {
                            generation,
                            persona,
                            engine: sibling,
                            result,
                            requested_at: at,
                        });
                    });
                if let Err(error) = spawned {
                    self.switch_failed(
                        &name,
                        EngineError::Render(format!("cannot start the preparing thread: {error}")),
                    );
                }
            }
            Ok(None) => {
                let result = prepare_guarded(self.setup.engine.as_mut(), &persona);
                match result {
                    Ok(()) => self.adopt(persona, at),
                    Err(error) => {
                        // The engine may hold half of the new persona: bring the old one back.
                        self.switch_failed(&name, error);
                        self.needs_restart = true;
                    }
                }
            }
            Err(error) => self.switch_failed(&name, error),
        }
    }

    pub(super) fn finish_switch(&mut self, prepared: Prepared) {
        if prepared.generation != self.switch_generation {
            return; // a newer switch superseded this one
        }
        match prepared.result {
            Ok(()) => {
                self.setup.engine = prepared.engine;
                self.adopt(prepared.persona, prepared.requested_at);
            }
            Err(error) => self.switch_failed(&prepared.persona.name, error),
        }
    }

    /// The engine now renders `persona`: fade to it and measure its first frame.
    fn adopt(&mut self, persona: Persona, requested_at: Instant) {
        let name = persona.name.clone();
        self.setup.persona = persona;
        self.failures = 0;
        self.failed = false;
        self.needs_restart = false;
        self.switch_started = Some((name.clone(), requested_at));
        self.setup.reporter.update(|s| {
            s.persona = name;
            s.consecutive_failures = 0;
        });
        self.after_prepare();
    }

    fn switch_failed(&mut self, persona: &str, error: EngineError) {
        let message = format!("switching to persona `{persona}`: {error}");
        tracing::warn!(%message, "persona switch failed");
        self.setup.reporter.update(|s| {
            s.switching_to = None;
            s.last_error = Some(message.clone());
        });
        self.setup.reporter.emit(EngineEvent::Error {
            message,
            consecutive_failures: self.failures,
        });
    }
}
