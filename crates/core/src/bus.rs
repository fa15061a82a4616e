//! The latest-frame bus between the engine and the sinks.
//!
//! The engine publishes each frame into a single slot and moves on: publishing never waits for
//! a reader. Sinks read the newest frame at their own rate, repeating it when nothing new came
//! (30 fps camera from a 16 fps model), and may skip frames when they are slow. Sinks say
//! whether anyone is watching them, so the engine can pause when nobody is.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use livetalk_core::{FrameBus, PixelFormat, VideoFrame};
//!
//! let bus = FrameBus::new();
//! let camera = bus.subscribe(); // a sink, on its own thread in real use
//! let frame = VideoFrame::solid(64, 36, PixelFormat::Rgba, [0, 0, 0], Duration::ZERO)?;
//! let seq = bus.publish(Arc::new(frame)); // the engine: never waits
//! let (seen, newest) = camera.wait_newer(0, Duration::from_millis(40)).expect("a frame");
//! assert_eq!((seen, newest.width), (seq, 64));
//! camera.set_watching(false); // no reader on the device: the engine may idle
//! assert_eq!(bus.watcher_count(), 0);
//! # Ok::<(), livetalk_core::Error>(())
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::frame::VideoFrame;

/// A frame on the bus with its sequence number (1 for the first frame published, then +1).
pub type BusFrame = (u64, Arc<VideoFrame>);

#[derive(Default)]
struct Slot {
    seq: u64,
    frame: Option<Arc<VideoFrame>>,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    published: Condvar,
    subscribers: AtomicUsize,
    watchers: Mutex<usize>,
    watchers_changed: Condvar,
}

/// The producer's handle (cloneable; all clones share one slot).
#[derive(Clone, Default)]
pub struct FrameBus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FrameBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBus")
            .field("seq", &self.shared.slot.lock().seq)
            .field("subscribers", &self.subscriber_count())
            .field("watchers", &self.watcher_count())
            .finish()
    }
}

impl FrameBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the slot's frame and wakes the waiting subscribers; returns the new sequence
    /// number. Never waits for readers: the lock is only ever held to swap or clone an `Arc`.
    pub fn publish(&self, frame: Arc<VideoFrame>) -> u64 {
        let (seq, previous) = {
            let mut slot = self.shared.slot.lock();
            slot.seq += 1;
            (slot.seq, slot.frame.replace(frame))
        };
        self.shared.published.notify_all();
        // The old frame may be the last reference to a large buffer: free it outside the lock.
        drop(previous);
        seq
    }

    /// The newest frame, if any was published.
    pub fn latest(&self) -> Option<BusFrame> {
        latest_of(&self.shared)
    }

    /// Sequence number of the newest frame (0 before the first).
    pub fn seq(&self) -> u64 {
        self.shared.slot.lock().seq
    }

    /// A new subscriber; it counts as watching until it says otherwise.
    pub fn subscribe(&self) -> FrameSubscriber {
        FrameSubscriber::new(self.shared.clone())
    }

    /// Subscribers alive now.
    pub fn subscriber_count(&self) -> usize {
        self.shared.subscribers.load(Ordering::SeqCst)
    }

    /// Subscribers alive and watching now (the engine pauses when this is 0).
    pub fn watcher_count(&self) -> usize {
        *self.shared.watchers.lock()
    }

    /// Waits until at least one subscriber watches, or `timeout` passes; returns whether one
    /// does. The engine's idle loop parks here.
    pub fn wait_for_watchers(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut watchers = self.shared.watchers.lock();
        while *watchers == 0 {
            if self
                .shared
                .watchers_changed
                .wait_until(&mut watchers, deadline)
                .timed_out()
            {
                return *watchers > 0;
            }
        }
        true
    }
}

/// A reader's handle. Each subscriber keeps its own `last seen` position (the `seq` it passes
/// to [`FrameSubscriber::wait_newer`]); dropping it unregisters it.
pub struct FrameSubscriber {
    shared: Arc<Shared>,
    watching: AtomicBool,
}

impl std::fmt::Debug for FrameSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSubscriber")
            .field("watching", &self.is_watching())
            .finish()
    }
}

impl FrameSubscriber {
    fn new(shared: Arc<Shared>) -> Self {
        shared.subscribers.fetch_add(1, Ordering::SeqCst);
        change_watchers(&shared, true);
        FrameSubscriber {
            shared,
            watching: AtomicBool::new(true),
        }
    }

    /// The newest frame, if any was published.
    pub fn latest(&self) -> Option<BusFrame> {
        latest_of(&self.shared)
    }

    /// Waits for a frame newer than `last_seq` (pass 0 for "any frame") and returns the newest
    /// one, or `None` if none arrived within `timeout`. Frames published in between are skipped.
    pub fn wait_newer(&self, last_seq: u64, timeout: Duration) -> Option<BusFrame> {
        let deadline = Instant::now() + timeout;
        let mut slot = self.shared.slot.lock();
        loop {
            if slot.seq > last_seq {
                if let Some(frame) = &slot.frame {
                    return Some((slot.seq, frame.clone()));
                }
            }
            if self
                .shared
                .published
                .wait_until(&mut slot, deadline)
                .timed_out()
            {
                let newer = slot.seq > last_seq;
                return slot.frame.clone().filter(|_| newer).map(|f| (slot.seq, f));
            }
        }
    }

    /// Says whether this subscriber's consumer is watching (a v4l2 reader is attached, the OBS
    /// source is visible, …). A subscriber that is not watching still reads frames.
    pub fn set_watching(&self, watching: bool) {
        if self.watching.swap(watching, Ordering::SeqCst) != watching {
            change_watchers(&self.shared, watching);
        }
    }

    pub fn is_watching(&self) -> bool {
        self.watching.load(Ordering::SeqCst)
    }

    /// A handle to the bus this subscriber reads (e.g. to make more subscribers).
    pub fn bus(&self) -> FrameBus {
        FrameBus {
            shared: self.shared.clone(),
        }
    }
}

impl Clone for FrameSubscriber {
    /// Another subscriber on the same bus, watching as this one is.
    fn clone(&self) -> Self {
        let copy = FrameSubscriber::new(self.shared.clone());
        copy.set_watching(self.is_watching());
        copy
    }
}

impl Drop for FrameSubscriber {
    fn drop(&mut self) {
        self.set_watching(false);
        self.shared.subscribers.fetch_sub(1, Ordering::SeqCst);
    }
}

fn latest_of(shared: &Shared) -> Option<BusFrame> {
    let slot = shared.slot.lock();
    slot.frame.clone().map(|frame| (slot.seq, frame))
}

fn change_watchers(shared: &Shared, added: bool) {
    let mut watchers = shared.watchers.lock();
    if added {
        *watchers += 1;
    } else {
        *watchers = watchers.saturating_sub(1);
    }
    drop(watchers);
    shared.watchers_changed.notify_all();
}
