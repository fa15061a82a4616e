//! Fault injection: a wrapper that makes any engine fail on command, to prove that the service
//! recovers and that sinks never starve (tests, `livetalk bench`, end-to-end camera tests).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use livetalk_core::{Persona, VideoFrame};
use parking_lot::Mutex;

use crate::engine::{AudioContext, AudioWindow, AvatarEngine, EngineError, Result};

/// A fault to inject into the next `render` call (or `prepare`, for [`Fault::PrepareError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `render` returns an error, as a device running out of memory does.
    RenderError,
    /// `render` reports NaN/Inf in its output.
    NonFinite,
    /// `render` panics.
    Panic,
    /// `render` takes this long before rendering normally (a stall, not a failure).
    Stall(Duration),
    /// `prepare` returns an error.
    PrepareError,
}

/// The remote control of a [`FaultInjector`] (cloneable, shared by its siblings).
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch {
    shared: Arc<SwitchState>,
}

#[derive(Debug, Default)]
struct SwitchState {
    render: Mutex<VecDeque<Fault>>,
    prepare: Mutex<VecDeque<Fault>>,
    fired: AtomicU64,
}

impl FaultSwitch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `fault` for the next call it applies to.
    pub fn inject(&self, fault: Fault) {
        match fault {
            Fault::PrepareError => self.shared.prepare.lock().push_back(fault),
            _ => self.shared.render.lock().push_back(fault),
        }
    }

    /// Faults queued and not fired yet.
    pub fn pending(&self) -> usize {
        self.shared.render.lock().len() + self.shared.prepare.lock().len()
    }

    /// Faults fired so far.
    pub fn fired(&self) -> u64 {
        self.shared.fired.load(Ordering::SeqCst)
    }

    fn take(&self, queue: &Mutex<VecDeque<Fault>>) -> Option<Fault> {
        let fault = queue.lock().pop_front();
        if fault.is_some() {
            self.shared.fired.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }
}

/// Wraps an engine; behaves exactly like it until a fault is injected through its switch.
pub struct FaultInjector {
    inner: Box<dyn AvatarEngine>,
    switch: FaultSwitch,
}

impl FaultInjector {
    pub fn new(inner: Box<dyn AvatarEngine>) -> (Self, FaultSwitch) {
        let switch = FaultSwitch::new();
        (
            FaultInjector {
                inner,
                switch: switch.clone(),
            },
            switch,
        )
    }

    /// Wraps `inner` under an existing switch.
    pub fn with_switch(inner: Box<dyn AvatarEngine>, switch: FaultSwitch) -> Self {
        FaultInjector { inner, switch }
    }
}

impl AvatarEngine for FaultInjector {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn prepare(&mut self, persona: &Persona) -> Result<()> {
        if self.switch.take(&self.switch.shared.prepare).is_some() {
            return Err(EngineError::Prepare {
                persona: persona.name.clone(),
                reason: "injected fault".into(),
            });
        }
        self.inner.prepare(persona)
    }

    fn fps(&self) -> u32 {
        self.inner.fps()
    }

    fn frames_per_block(&self) -> usize {
        self.inner.frames_per_block()
    }

    fn audio_context(&self) -> AudioContext {
        self.inner.audio_context()
    }

    fn render(&mut self, audio: &AudioWindow) -> Result<Vec<VideoFrame>> {
        match self.switch.take(&self.switch.shared.render) {
            Some(Fault::RenderError) => Err(EngineError::Render(
                "injected fault: CUDA out of memory".into(),
            )),
            Some(Fault::NonFinite) => Err(EngineError::NonFinite(format!(
                "injected fault: NaN in the latents of block {}",
                audio.block_index()
            ))),
            Some(Fault::Panic) => panic!("injected fault: panic in render"),
            Some(Fault::Stall(time)) => {
                std::thread::sleep(time);
                self.inner.render(audio)
            }
            Some(Fault::PrepareError) | None => self.inner.render(audio),
        }
    }

    fn latency_budget(&self) -> Duration {
        self.inner.latency_budget()
    }

    fn sibling(&self) -> Result<Option<Box<dyn AvatarEngine>>> {
        Ok(self.inner.sibling()?.map(|inner| {
            Box::new(FaultInjector::with_switch(inner, self.switch.clone()))
                as Box<dyn AvatarEngine>
        }))
    }
}
