//! Frame taps: a lossless copy of every rendered frame, for consumers that need each one (the
//! demo's video file writer) rather than the newest (the bus).
//!
//! Offline pacing, the worker waits for a full tap (backpressure: the file writer sets the
//! pace); live pacing, a full tap loses the frame instead, so no consumer can stall the stream.
//! A tap that is alive counts as a watcher: the engine does not idle while one is open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
use livetalk_core::VideoFrame;
use parking_lot::Mutex;

/// The receiving end of a frame tap; dropping it closes the tap.
#[derive(Debug)]
pub struct FrameTap {
    receiver: Receiver<Arc<VideoFrame>>,
    _alive: Arc<()>,
}

impl FrameTap {
    /// The next frame, waiting up to `timeout`; `None` on timeout or when the service stopped.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Arc<VideoFrame>> {
        self.receiver.recv_timeout(timeout).ok()
    }

    /// The next frame if one is queued.
    pub fn try_recv(&self) -> Option<Arc<VideoFrame>> {
        self.receiver.try_recv().ok()
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}

struct TapEnd {
    sender: Sender<Arc<VideoFrame>>,
    alive: Weak<()>,
}

#[derive(Clone, Default)]
pub(crate) struct FrameTaps {
    taps: Arc<Mutex<Vec<TapEnd>>>,
}

impl FrameTaps {
    pub fn open(&self, capacity: usize) -> FrameTap {
        let (sender, receiver) = crossbeam_channel::bounded(capacity.max(1));
        let alive = Arc::new(());
        self.taps.lock().push(TapEnd {
            sender,
            alive: Arc::downgrade(&alive),
        });
        FrameTap {
            receiver,
            _alive: alive,
        }
    }

    /// Taps whose receiver is alive.
    pub fn active(&self) -> usize {
        let mut taps = self.taps.lock();
        taps.retain(|tap| tap.alive.strong_count() > 0);
        taps.len()
    }

    /// Sends `frame` to every tap; `wait` blocks on full taps until there is room, the tap is
    /// closed or `stopping` is set.
    pub fn send(&self, frame: &Arc<VideoFrame>, wait: bool, stopping: &AtomicBool) {
        let senders: Vec<Sender<Arc<VideoFrame>>> = {
            let mut taps = self.taps.lock();
            taps.retain(|tap| tap.alive.strong_count() > 0);
            taps.iter().map(|tap| tap.sender.clone()).collect()
        };
        for sender in senders {
            if !wait {
                if let Err(TrySendError::Full(_)) = sender.try_send(frame.clone()) {
                    tracing::debug!("frame tap full: frame dropped");
                }
                continue;
            }
            let mut pending = frame.clone();
            loop {
                match sender.send_timeout(pending, Duration::from_millis(50)) {
                    Ok(()) | Err(SendTimeoutError::Disconnected(_)) => break,
                    Err(SendTimeoutError::Timeout(back)) => {
                        if stopping.load(Ordering::SeqCst) {
                            break;
                        }
                        pending = back;
                    }
                }
            }
        }
    }
}
