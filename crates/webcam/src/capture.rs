//! A webcam capture: a thread that reads the device and keeps only the newest picture, so the
//! engine takes whatever is current when it renders and never waits on the camera.
//!
//! The device side is nokhwa's V4L2 backend (feature `nokhwa`); [`Capture::feed`] gives the
//! same slot to any other producer of pictures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livetalk_core::persona::Webcam;
use livetalk_core::VideoFrame;
use parking_lot::{Condvar, Mutex};

/// What can go wrong with the user's webcam; each names the device.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebcamError {
    #[error(
        "webcam {device}: this livetalk was built without webcam support; rebuild with \
         `cargo build --release --features webcam` (needs libclang-dev)"
    )]
    NotBuilt { device: String },
    #[error("cannot open webcam {device}: {reason}")]
    Open { device: String, reason: String },
    #[error("webcam {device} delivered no picture within {waited:?} (is another program using it?)")]
    NoPicture { device: String, waited: Duration },
    #[error("webcam {device} stopped: {reason}")]
    Stopped { device: String, reason: String },
    #[error("webcam picture: {0}")]
    Decode(String),
}

#[derive(Default)]
struct Slot {
    frame: Option<Arc<VideoFrame>>,
    /// Pictures received so far (0: none yet).
    seq: u64,
    /// Why capturing ended, if it failed.
    error: Option<String>,
}

struct Shared {
    device: String,
    slot: Mutex<Slot>,
    changed: Condvar,
    stop: AtomicBool,
}

/// The newest picture of a webcam, kept up to date by a capture thread; dropping it stops the
/// thread and closes the device.
pub struct Capture {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The producer's side of a [`Capture`].
#[derive(Clone)]
pub struct CaptureFeed {
    shared: Arc<Shared>,
}

impl CaptureFeed {
    /// Makes `frame` the newest picture.
    pub fn push(&self, frame: VideoFrame) {
        let mut slot = self.shared.slot.lock();
        slot.frame = Some(Arc::new(frame));
        slot.seq += 1;
        self.shared.changed.notify_all();
    }

    /// Capturing ended with `reason`; readers get [`WebcamError::Stopped`].
    pub fn fail(&self, reason: impl Into<String>) {
        self.shared.slot.lock().error = Some(reason.into());
        self.shared.changed.notify_all();
    }

    /// Whether the capture was dropped: the producer should stop.
    pub fn is_stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }
}

/// How long dropping a capture waits for its thread to let go of the device.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

impl Capture {
    /// A capture whose pictures come from the returned feed (`device` names it in messages).
    pub fn feed(device: &str) -> (Capture, CaptureFeed) {
        let shared = Arc::new(Shared {
            device: device.to_string(),
            slot: Mutex::new(Slot::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let feed = CaptureFeed {
            shared: shared.clone(),
        };
        (
            Capture {
                shared,
                thread: None,
            },
            feed,
        )
    }

    /// Opens the webcam and starts capturing (returns once the device is streaming).
    pub fn open(webcam: &Webcam) -> Result<Capture, WebcamError> {
        #[cfg(feature = "nokhwa")]
        {
            crate::capture::device::open(webcam)
        }
        #[cfg(not(feature = "nokhwa"))]
        {
            Err(WebcamError::NotBuilt {
                device: webcam.to_string(),
            })
        }
    }

    /// The device's name for messages.
    pub fn device(&self) -> &str {
        &self.shared.device
    }

    /// The newest picture and its number, `None` before the first; an error once capturing
    /// has failed.
    pub fn latest(&self) -> Result<Option<(u64, Arc<VideoFrame>)>, WebcamError> {
        let slot = self.shared.slot.lock();
        if let Some(reason) = &slot.error {
            return Err(self.stopped(reason));
        }
        Ok(slot.frame.clone().map(|frame| (slot.seq, frame)))
    }

    /// Waits for a picture numbered after `seen` (0: the first one).
    pub fn wait_newer(
        &self,
        seen: u64,
        timeout: Duration,
    ) -> Result<(u64, Arc<VideoFrame>), WebcamError> {
        let deadline = Instant::now() + timeout;
        let mut slot = self.shared.slot.lock();
        loop {
            if let Some(reason) = &slot.error {
                return Err(self.stopped(reason));
            }
            if slot.seq > seen {
                if let Some(frame) = &slot.frame {
                    return Ok((slot.seq, frame.clone()));
                }
            }
            if self.shared.changed.wait_until(&mut slot, deadline).timed_out() {
                return Err(WebcamError::NoPicture {
                    device: self.shared.device.clone(),
                    waited: timeout,
                });
            }
        }
    }

    fn stopped(&self, reason: &str) -> WebcamError {
        WebcamError::Stopped {
            device: self.shared.device.clone(),
            reason: reason.to_string(),
        }
    }

    #[cfg_attr(not(feature = "nokhwa"), allow(dead_code))]
    fn with_thread(mut self, thread: std::thread::JoinHandle<()>) -> Self {
        self.thread = Some(thread);
        self
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else { return };
        // The thread notices the flag after its current read; a camera that has stopped
        // delivering would block the join, so wait a little and then let it go.
        let deadline = Instant::now() + CLOSE_WAIT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!(device = %self.shared.device, "the webcam thread is still reading; leaving it");
        }
    }
}

#[cfg(feature = "nokhwa")]
mod device;

#[cfg(test)]
mod tests {
    use super::*;
    use livetalk_core::PixelFormat;

    #[test]
    fn the_newest_picture_wins_and_failures_reach_the_reader() {
        let (capture, feed) = Capture::feed("/dev/video7");
        assert!(capture.latest().unwrap().is_none());
        let err = capture.wait_newer(0, Duration::from_millis(20)).unwrap_err();
        assert!(err.to_string().contains("/dev/video7 delivered no picture"), "{err}");
        for shade in [10, 20, 30] {
            feed.push(VideoFrame::solid(2, 2, PixelFormat::Rgb24, [shade; 3], Duration::ZERO).unwrap());
        }
        let (seq, frame) = capture.wait_newer(0, Duration::from_secs(1)).unwrap();
        assert_eq!((seq, frame.data[0]), (3, 30));
        feed.fail("device unplugged");
        let err = capture.latest().unwrap_err().to_string();
        assert_eq!(err, "webcam /dev/video7 stopped: device unplugged");
        assert!(!feed.is_stopped());
        drop(capture);
        assert!(feed.is_stopped());
    }

    #[cfg(not(feature = "nokhwa"))]
    #[test]
    fn without_the_feature_opening_explains_how_to_build_it() {
        let err = Capture::open(&Webcam::Index(0)).err().unwrap().to_string();
        assert!(err.contains("webcam 0") && err.contains("--features webcam"), "{err}");
    }
}
