//! Time on the audio timeline, the master clock: every frame carries the pts of the audio that
//! drove it. Everything here is exact integer arithmetic on nanoseconds, so hours of streaming
//! accumulate no drift.

use std::time::Duration;

/// Frame rate of the generated video (the LiveTalk model's rate).
pub const ENGINE_FPS: u32 = 16;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// The time `count` ticks take at `rate` ticks a second, rounded down to the nanosecond
/// (zero for a zero rate).
pub fn samples_to_duration(count: u64, rate: u32) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    nanos_to_duration(count as u128 * NANOS_PER_SECOND / rate as u128)
}

/// The number of whole ticks at `rate` ticks a second that fit in `time` (the index of the
/// tick that is current at `time`).
pub fn duration_to_samples(time: Duration, rate: u32) -> u64 {
    let ticks = time.as_nanos() * rate as u128 / NANOS_PER_SECOND;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

fn nanos_to_duration(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SECOND).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % NANOS_PER_SECOND) as u32)
}

/// Counts samples at one rate and turns the count into pts: the master clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioClock {
    sample_rate: u32,
    samples: u64,
    origin: Duration,
}

impl AudioClock {
    /// A clock at zero samples, pts zero.
    pub fn new(sample_rate: u32) -> Self {
        Self::starting_at(sample_rate, Duration::ZERO)
    }

    /// A clock whose sample zero sits at `origin` on the timeline (e.g. after a restart).
    pub fn starting_at(sample_rate: u32, origin: Duration) -> Self {
        AudioClock {
            sample_rate,
            samples: 0,
            origin,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples (per channel) counted so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The pts of the next sample to be counted.
    pub fn now(&self) -> Duration {
        self.pts_of_sample(self.samples)
    }

    /// The pts of sample `index`.
    pub fn pts_of_sample(&self, index: u64) -> Duration {
        self.origin + samples_to_duration(index, self.sample_rate)
    }

    /// The index of the sample playing at `pts` (0 before the origin).
    pub fn sample_at(&self, pts: Duration) -> u64 {
        duration_to_samples(pts.saturating_sub(self.origin), self.sample_rate)
    }

    /// Counts `count` more samples; returns the pts of the first of them (the chunk's pts).
    pub fn advance(&mut self, count: u64) -> Duration {
        let pts = self.now();
        self.samples = self.samples.saturating_add(count);
        pts
    }
}

/// Maps video frame indices to pts and back at a fixed rate (16 fps for the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameClock {
    fps: u32,
    origin: Duration,
}

impl Default for FrameClock {
    fn default() -> Self {
        FrameClock::new(ENGINE_FPS)
    }
}

impl FrameClock {
    /// Frames at `fps` starting at pts zero. A zero rate is treated as 1 fps.
    pub fn new(fps: u32) -> Self {
        Self::starting_at(fps, Duration::ZERO)
    }

    /// Frames at `fps` whose frame zero sits at `origin`.
    pub fn starting_at(fps: u32, origin: Duration) -> Self {
        FrameClock {
            fps: fps.max(1),
            origin,
        }
    }

    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// How long one frame is shown (rounded down to the nanosecond).
    pub fn frame_duration(&self) -> Duration {
        samples_to_duration(1, self.fps)
    }

    /// The pts of frame `index` (exact: index × 1 s / fps, no accumulated rounding).
    pub fn pts_of(&self, index: u64) -> Duration {
        self.origin + samples_to_duration(index, self.fps)
    }

    /// The latest frame whose pts is at or before `pts` (frame 0 before the origin).
    pub fn index_at(&self, pts: Duration) -> u64 {
        duration_to_samples(pts.saturating_sub(self.origin), self.fps)
    }
}

/// Which source frame an output running at another rate shows at its `output_index`-th tick:
/// the latest source frame whose pts is at or before the output tick's time. Both clocks start
/// at zero. E.g. 16 fps into a 30 fps camera shows source frames 0, 0, 1, 1, 2, 2, …, 7, 8 (frame 8 at output tick 15 = 0.5 s).
pub fn source_frame_for_output(output_index: u64, output_fps: u32, source_fps: u32) -> u64 {
    let output_fps = output_fps.max(1) as u128;
    let ticks = output_index as u128 * source_fps as u128 / output_fps;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// A sink's frame picker: frames arrive stamped with pts (in order, possibly late or bursty);
/// at output time `t` the sink shows the latest frame with pts ≤ `t`, and older ones are let go.
/// With no frame due yet, the last shown frame stays (a camera never goes black).
#[derive(Debug, Clone)]
pub struct FramePicker<T> {
    pending: std::collections::VecDeque<(Duration, T)>,
    current: Option<(Duration, T)>,
}

impl<T> Default for FramePicker<T> {
    fn default() -> Self {
        FramePicker {
            pending: Default::default(),
            current: None,
        }
    }
}

impl<T> FramePicker<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a frame due at `pts`. A frame older than the newest queued one means the timeline
    /// restarted (persona switch, engine restart), so the queue is replaced by it.
    pub fn push(&mut self, pts: Duration, frame: T) {
        if self.pending.back().is_some_and(|(last, _)| pts < *last) {
            self.pending.clear();
        }
        self.pending.push_back((pts, frame));
    }

    /// The frame to show at output time `t`, if any frame has been due so far.
    pub fn pick(&mut self, t: Duration) -> Option<&T> {
        while self.pending.front().is_some_and(|(pts, _)| *pts <= t) {
            self.current = self.pending.pop_front();
        }
        self.current.as_ref().map(|(_, frame)| frame)
    }

    /// The pts of the frame [`FramePicker::pick`] last settled on.
    pub fn current_pts(&self) -> Option<Duration> {
        self.current.as_ref().map(|(pts, _)| *pts)
    }

    /// Frames queued but not yet due.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
