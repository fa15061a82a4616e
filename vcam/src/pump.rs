//! The camera pump: a thread that takes the engine's frames off the latest-frame bus, places them
//! on the camera's timeline by pts (16 fps in, 30 fps out), composes them and writes a frame every
//! tick, repeating the last one rather than stalling. It watches whether anyone reads the camera
//! and tells the engine (the bus's watching flag, plus a callback) so it can pause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use livetalk_core::bus::FrameSubscriber;
use livetalk_core::clock::FramePicker;
use livetalk_core::frame::{PixelFormat, VideoFrame};

use crate::compose::{Backdrop, Composer};
use crate::error::{Result, VcamError};
use crate::v4l2::{CameraFormat, V4l2Sink};

/// Where composed camera frames go (the v4l2loopback device, the PipeWire stream).
pub trait CameraOutput: Send {
    fn write_frame(&mut self, frame: &[u8]) -> Result<()>;
    /// Whether anyone is reading; called a few times a second.
    fn has_readers(&mut self) -> Result<bool>;
}

impl CameraOutput for V4l2Sink {
    fn write_frame(&mut self, frame: &[u8]) -> Result<()> {
        V4l2Sink::write_frame(self, frame)
    }
    fn has_readers(&mut self) -> Result<bool> {
        V4l2Sink::has_readers(self)
    }
}

/// Whether the camera's output is being watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demand {
    /// A reader started: the engine should run.
    Watching,
    /// The last reader left: the engine may pause.
    Idle,
}

#[derive(Clone, Debug)]
pub struct PumpConfig {
    pub width: u32,
    pub height: u32,
    pub format: CameraFormat,
    /// Frames a second while someone reads.
    pub fps: u32,
    /// Frames a second while nobody reads (keeps the last picture fresh for the next reader).
    pub idle_fps: u32,
    /// How often to ask the output whether anyone reads.
    pub usage_poll: Duration,
    /// Frames are shown at pts + `delay` on the camera's clock (the audio/video sync margin L).
    pub delay: Duration,
    pub backdrop: Backdrop,
}

impl PumpConfig {
    /// The product defaults for a sink opened with `config`.
    pub fn for_sink(sink: &crate::v4l2::SinkConfig) -> Self {
        PumpConfig {
            width: sink.width,
            height: sink.height,
            format: sink.format,
            fps: sink.fps,
            idle_fps: 2,
            usage_poll: Duration::from_millis(250),
            delay: Duration::ZERO,
            backdrop: Backdrop::Colour([30, 36, 48]),
        }
    }
}

/// Counters a caller (or a test) can read while the pump runs.
#[derive(Clone, Debug, Default)]
pub struct PumpStats {
    /// Camera frames written.
    pub written: u64,
    /// Distinct engine frames composed.
    pub composed: u64,
    /// Whether a reader was present at the last check.
    pub watching: bool,
    /// Times the demand changed (Watching ↔ Idle).
    pub demand_changes: u64,
}

pub struct CameraPump {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<PumpStats>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl CameraPump {
    /// Starts the pump thread. `on_demand` runs on the pump thread whenever readers come or go
    /// (and once at the start); the subscriber's watching flag follows the same changes.
    pub fn start(
        output: impl CameraOutput + 'static,
        subscriber: FrameSubscriber,
        config: PumpConfig,
        on_demand: impl FnMut(Demand) + Send + 'static,
    ) -> Result<Self> {
        let format = match config.format {
            CameraFormat::Yuyv => PixelFormat::Yuyv,
            CameraFormat::I420 => PixelFormat::I420,
        };
        let composer = Composer::new(config.width, config.height, format, &config.backdrop)
            .map_err(|e| VcamError::Compose(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(PumpStats::default()));
        let worker = Worker { output, subscriber, config, composer, on_demand, stats: stats.clone() };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("livetalk-camera".into())
            .spawn(move || worker.run(&flag))
            .map_err(|e| VcamError::Compose(format!("cannot start the camera thread: {e}")))?;
        Ok(CameraPump { stop, stats, thread: Some(thread) })
    }

    pub fn stats(&self) -> PumpStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// True while the thread runs; false once it stopped on an error (see [`CameraPump::stop`]).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread and returns the error that ended it early, if any.
    pub fn stop(mut self) -> Result<PumpStats> {
        self.stop.store(true, Ordering::SeqCst);
        let result = self.thread.take().map(|t| t.join());
        match result {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(VcamError::Compose("the camera thread panicked".into())),
            _ => Ok(self.stats()),
        }
    }
}

impl Drop for CameraPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Worker<O, F> {
    output: O,
    subscriber: FrameSubscriber,
    config: PumpConfig,
    composer: Composer,
    on_demand: F,
    stats: Arc<Mutex<PumpStats>>,
}

impl<O: CameraOutput, F: FnMut(Demand)> Worker<O, F> {
    fn run(mut self, stop: &AtomicBool) -> Result<()> {
        let period = Duration::from_secs(1) / self.config.fps.max(1);
        let idle_period = Duration::from_secs(1) / self.config.idle_fps.max(1);
        let mut timeline = Timeline::new(self.config.delay);
        let mut watching: Option<bool> = None;
        let mut next_usage_check = Instant::now();
        let mut next_write = Instant::now();
        let mut last_seq = 0;
        let mut shown_seq = 0;
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= next_usage_check {
                let readers = self.output.has_readers()?;
                if watching != Some(readers) {
                    watching = Some(readers);
                    self.subscriber.set_watching(readers);
                    (self.on_demand)(if readers { Demand::Watching } else { Demand::Idle });
                    self.update(|s| {
                        s.watching = readers;
                        s.demand_changes += 1;
                    });
                    // A reader just arrived: give it a frame now, not at the idle rate.
                    next_write = next_write.min(now);
                }
                next_usage_check = now + self.config.usage_poll;
            }
            if now >= next_write {
                if let Some((seq, frame)) = self.subscriber.latest() {
                    if seq != last_seq {
                        last_seq = seq;
                        timeline.push(now, seq, frame);
                    }
                }
                if let Some((seq, frame)) = timeline.pick(now) {
                    if seq != shown_seq {
                        shown_seq = seq;
                        self.composer.compose(&frame).map_err(|e| VcamError::Compose(e.to_string()))?;
                        self.update(|s| s.composed += 1);
                    }
                }
                let bytes = self.composer.last().map_err(|e| VcamError::Compose(e.to_string()))?;
                self.output.write_frame(bytes)?;
                self.update(|s| s.written += 1);
                let step = if watching == Some(false) { idle_period } else { period };
                next_write += step;
                if next_write < now {
                    // Fell behind (suspend, overload): carry on from now instead of bursting.
                    next_write = now + step;
                }
            }
            let wake = next_write.min(next_usage_check);
            if let Some(wait) = wake.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    }

    fn update(&self, change: impl FnOnce(&mut PumpStats)) {
        if let Ok(mut stats) = self.stats.lock() {
            change(&mut stats);
        }
    }
}

/// Places engine frames on the camera's clock: the first frame fixes which instant its pts
/// stands for; later frames are shown when their pts (+ delay) is due. The timeline re-anchors
/// when pts jump backwards (engine restart, persona switch) or run far ahead of the clock.
pub struct Timeline {
    delay: Duration,
    anchor: Option<(Instant, Duration)>,
    picker: FramePicker<(u64, Arc<VideoFrame>)>,
    newest_pts: Option<Duration>,
}

/// How far ahead of the camera clock frames may be before the clock jumps to them.
const MAX_LEAD: Duration = Duration::from_secs(2);
/// How much earlier than expected a frame must come to move the clock.
const EARLY_TOLERANCE: Duration = Duration::from_millis(4);

impl Timeline {
    pub fn new(delay: Duration) -> Self {
        Timeline { delay, anchor: None, picker: FramePicker::new(), newest_pts: None }
    }

    /// The media time (pts) due at `now`.
    fn media_time(&self, now: Instant) -> Option<Duration> {
        let (instant, pts) = self.anchor?;
        (pts + now.saturating_duration_since(instant)).checked_sub(self.delay).or(Some(Duration::ZERO))
    }

    pub fn push(&mut self, now: Instant, seq: u64, frame: Arc<VideoFrame>) {
        let pts = frame.pts;
        let restarted = self.newest_pts.is_some_and(|newest| pts < newest);
        let far_ahead = self.media_time(now).is_some_and(|media| pts > media + MAX_LEAD);
        // A frame that comes earlier than the clock expects shows the clock runs late (the
        // first frame came late, e.g. while the engine started): keep the earliest anchor, so
        // frames are shown L after their pts, as the virtual microphone plays their audio.
        let early = self.anchor.is_some_and(|(instant, anchor_pts)| {
            pts >= anchor_pts && now + EARLY_TOLERANCE < instant + (pts - anchor_pts)
        });
        if self.anchor.is_none() || restarted || far_ahead || early {
            self.anchor = Some((now, pts));
        }
        self.newest_pts = Some(pts);
        self.picker.push(pts, (seq, frame));
    }

    /// The frame to show at `now` (the latest one due), if any is due yet.
    pub fn pick(&mut self, now: Instant) -> Option<(u64, Arc<VideoFrame>)> {
        let media = self.media_time(now)?;
        self.picker.pick(media).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pts_ms: u64) -> Arc<VideoFrame> {
        Arc::new(VideoFrame::zeroed(2, 2, PixelFormat::Rgb24, Duration::from_millis(pts_ms)).unwrap())
    }

    fn frame_ns(pts_ns: u64) -> Arc<VideoFrame> {
        Arc::new(VideoFrame::zeroed(2, 2, PixelFormat::Rgb24, Duration::from_nanos(pts_ns)).unwrap())
    }

    /// A 16 fps source sampled by a 30 fps output shows every source frame, each once or twice,
    /// in order: 0,0,1,1,2,2,...
    #[test]
    fn sixteen_fps_frames_land_on_thirty_fps_ticks_by_pts() {
        let start = Instant::now();
        let mut timeline = Timeline::new(Duration::ZERO);
        let mut shown = Vec::new();
        let mut next_source = 0u64;
        for tick in 0..60u64 {
            let now = start + Duration::from_nanos(tick * 1_000_000_000 / 30);
            // The engine publishes frame n at wall time n/16 s with pts n/16 s.
            while next_source * 1_000_000_000 / 16 <= tick * 1_000_000_000 / 30 {
                let t = start + Duration::from_nanos(next_source * 1_000_000_000 / 16);
                timeline.push(t.max(start), next_source + 1, frame_ns(next_source * 1_000_000_000 / 16));
                next_source += 1;
            }
            shown.push(timeline.pick(now).unwrap().0 - 1);
        }
        let expected: Vec<u64> =
            (0..60).map(|k| livetalk_core::clock::source_frame_for_output(k, 30, 16)).collect();
        assert_eq!(shown, expected);
    }

    #[test]
    fn a_late_first_frame_does_not_delay_the_later_ones() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timeline = Timeline::new(Duration::ZERO);
        // The first frame (pts 0) comes 500 ms late; the next ones on time (pts 1 s at 1 s...).
        timeline.push(t0 + ms(500), 1, frame(0));
        timeline.push(t0 + ms(1000), 2, frame(1000));
        assert_eq!(timeline.pick(t0 + ms(1001)).map(|(seq, _)| seq), Some(2), "shown when it comes, not 500 ms later");
        timeline.push(t0 + ms(1033), 3, frame(1033));
        assert_eq!(timeline.pick(t0 + ms(1034)).map(|(seq, _)| seq), Some(3));
    }

    #[test]
    fn delay_holds_frames_back_and_restarts_reanchor() {
        let start = Instant::now();
        let mut timeline = Timeline::new(Duration::from_millis(500));
        timeline.push(start, 1, frame(10_000));
        assert!(timeline.pick(start + Duration::from_millis(400)).is_none());
        assert_eq!(timeline.pick(start + Duration::from_millis(500)).unwrap().0, 1);
        // A restart at pts 0 takes over at once (after the delay), not after 10 s.
        let later = start + Duration::from_secs(1);
        timeline.push(later, 2, frame(0));
        assert_eq!(timeline.pick(later + Duration::from_millis(500)).unwrap().0, 2);
        // A frame 5 s ahead of the clock re-anchors instead of waiting 5 s.
        let t = later + Duration::from_secs(1);
        timeline.push(t, 3, frame(6_000));
        assert_eq!(timeline.pick(t + Duration::from_millis(500)).unwrap().0, 3);
    }
}
