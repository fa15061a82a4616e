//! The presenter thread: publishes rendered frames on the bus at their due time, and keeps the
//! bus fed whatever the engine does.
//!
//! Live pacing: a frame is due at the wall-clock instant of its pts plus the latency L, so it
//! shows while its audio plays out of the delayed tap. Offline and manual pacing: at once.
//! When several frames are due at once (the engine caught up after a stall), only the newest is
//! published: the bus is a latest-frame slot anyway.
//!
//! The keeper: whenever nothing was published for one keepalive period (the sink period) and
//! someone watches, the last frame is published again (an idle placeholder before the first
//! frame). While the engine renders, restarts or has failed, sinks therefore never starve and a
//! camera never goes black. The same loop ticks the audio timeline so its taps flow in live mode.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use livetalk_core::{FrameBus, VideoFrame};

use crate::timeline::AudioTimeline;

/// What the worker hands the presenter.
pub(crate) enum Present {
    /// Frames with the instant each is due, in pts order.
    Frames(Vec<(Instant, Arc<VideoFrame>)>),
    /// The frame to repeat until real frames come, published at once.
    Idle(Arc<VideoFrame>),
}

pub(crate) fn spawn_presenter(
    bus: FrameBus,
    timeline: AudioTimeline,
    keepalive: Duration,
) -> std::io::Result<(Sender<Present>, JoinHandle<()>)> {
    let (sender, receiver) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("livetalk-presenter".into())
        .spawn(move || Presenter::new(bus, timeline, keepalive).run(receiver))?;
    Ok((sender, thread))
}

struct Presenter {
    bus: FrameBus,
    timeline: AudioTimeline,
    keepalive: Duration,
    pending: VecDeque<(Instant, Arc<VideoFrame>)>,
    last: Option<Arc<VideoFrame>>,
    last_publish: Instant,
}

impl Presenter {
    fn new(bus: FrameBus, timeline: AudioTimeline, keepalive: Duration) -> Self {
        Presenter {
            bus,
            timeline,
            keepalive: keepalive.max(Duration::from_millis(1)),
            pending: VecDeque::new(),
            last: None,
            last_publish: Instant::now(),
        }
    }

    fn run(mut self, receiver: Receiver<Present>) {
        loop {
            let now = Instant::now();
            self.publish_due(now);
            self.timeline.tick();
            let keeper_due = if self.bus.watcher_count() > 0 {
                self.last_publish + self.keepalive
            } else {
                now + self.keepalive
            };
            let wake = self
                .pending
                .front()
                .map_or(keeper_due, |(due, _)| (*due).min(keeper_due));
            match receiver.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(Present::Frames(frames)) => self.pending.extend(frames),
                Ok(Present::Idle(frame)) => {
                    self.pending.clear();
                    self.publish(frame, Instant::now());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn publish_due(&mut self, now: Instant) {
        let mut newest = None;
        while self.pending.front().is_some_and(|(due, _)| *due <= now) {
            newest = self.pending.pop_front().map(|(_, frame)| frame);
        }
        if let Some(frame) = newest {
            self.publish(frame, now);
        } else if self.bus.watcher_count() > 0 && now >= self.last_publish + self.keepalive {
            if let Some(frame) = self.last.clone() {
                self.publish(frame, now);
            }
        }
    }

    fn publish(&mut self, frame: Arc<VideoFrame>, now: Instant) {
        self.bus.publish(frame.clone());
        self.last = Some(frame);
        self.last_publish = now;
    }
}
