//! The virtual microphone "livetalk mic": a source that video-call apps pick like any microphone,
//! playing the audio that drives the avatar, delayed so that voice and lips arrive together.
//!
//! ```text
//! timeline tap (pts-stamped 16 kHz chunks) ──> MicSchedule ──fill(at)──> PipeWire Audio/Source node
//!                                               (plays pts at origin + pts + delay)   or PulseAudio
//!                                                                                      null sink + remap
//! ```
//!
//! Decisions:
//! - **Clock.** The backend asks for samples "heard at instant `at`"; [`MicSchedule`] answers
//!   with the audio whose pts is `at - origin - delay` (origin: the instant of pts 0). Blocks
//!   follow each other sample-exactly while the answer stays within [`RESYNC`] of that; outside
//!   it the schedule jumps ahead (it fell behind) or plays silence until the clock catches up
//!   (the delay grew), never repeating audio.
//! - **Delay.** The engine's latency L plus the camera path's own hold time (see the CLI); it
//!   may change while running ([`VirtualMic::set_delay`]).
//! - **Backends.** Built with `pipewire`: a native node (`node.name` "livetalk-mic",
//!   `node.description` "livetalk mic", media.class Audio/Source). Otherwise, or with PipeWire
//!   not running: PulseAudio (or pipewire-pulse) through pactl: a null sink
//!   "livetalk-mic-sink-<pid>", a remap source "livetalk-mic" described as "livetalk mic" on its
//!   monitor, and pacat playing into the sink. Both are removed again on exit.

#[cfg(feature = "pipewire")]
mod pipewire;
mod pulse;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use livetalk_core::AudioChunk;
use parking_lot::Mutex;

use crate::{AudioError, ENGINE_RATE};

/// The source's name in PipeWire / PulseAudio (what `target-object=` and `pactl` use).
pub const NODE_NAME: &str = "livetalk-mic";
/// What apps show in their microphone list.
pub const DESCRIPTION: &str = "livetalk mic";
/// How far the playing position may drift from the clock before it is corrected.
pub const RESYNC: Duration = Duration::from_millis(20);
/// Audio kept behind the playing position at most.
const MAX_BUFFER: Duration = Duration::from_secs(10);

/// Which sound server carries the virtual microphone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PipeWire when built with it and running, else PulseAudio.
    Auto,
    PipeWire,
    Pulse,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "pipewire" => Ok(Backend::PipeWire),
            "pulse" | "pulseaudio" => Ok(Backend::Pulse),
            other => Err(format!("unknown virtual microphone backend `{other}` (auto, pipewire, pulse)")),
        }
    }
}

fn to_samples(d: Duration) -> u64 {
    (d.as_nanos() * ENGINE_RATE as u128 / 1_000_000_000) as u64
}

/// The delay line between the timeline's pts and the instant a sample is heard.
#[derive(Debug)]
pub struct MicSchedule {
    origin: Instant,
    delay: Duration,
    buffer: VecDeque<f32>,
    buffer_start: u64,
    next: Option<u64>,
    resyncs: u64,
}

impl MicSchedule {
    /// `origin`: the instant of pts 0 on the timeline; `delay`: how much later it is heard.
    pub fn new(origin: Instant, delay: Duration) -> Self {
        MicSchedule { origin, delay, buffer: VecDeque::new(), buffer_start: 0, next: None, resyncs: 0 }
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    pub fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    /// Times the playing position was corrected.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Adds 16 kHz mono audio starting at `pts` (chunks normally follow each other; a gap is
    /// silence, an overlap replaces what was there).
    pub fn push(&mut self, pts: Duration, samples: &[f32]) {
        let start = to_samples(pts);
        let end = self.buffer_start + self.buffer.len() as u64;
        if self.buffer.is_empty() || start < self.buffer_start {
            self.buffer.clear();
            self.buffer_start = start;
        } else if start > end {
            self.buffer.extend(std::iter::repeat_n(0.0, (start - end) as usize));
        } else {
            self.buffer.truncate((start - self.buffer_start) as usize);
        }
        self.buffer.extend(samples.iter().copied());
        let keep_from = self.next.unwrap_or(0).min(start);
        let floor = (self.buffer_start + self.buffer.len() as u64).saturating_sub(to_samples(MAX_BUFFER));
        self.drop_before(keep_from.max(floor));
    }

    fn drop_before(&mut self, index: u64) {
        if index > self.buffer_start {
            let n = ((index - self.buffer_start) as usize).min(self.buffer.len());
            self.buffer.drain(..n);
            self.buffer_start += n as u64;
        }
    }

    /// Fills `out` with what should be heard from instant `at` on.
    pub fn fill(&mut self, at: Instant, out: &mut [f32]) {
        out.fill(0.0);
        let Some(since) = at.checked_duration_since(self.origin + self.delay) else {
            self.next = None;
            return;
        };
        let target = to_samples(since);
        let tolerance = to_samples(RESYNC);
        let mut next = match self.next {
            Some(n) if n + tolerance >= target => n,
            Some(_) => {
                self.resyncs += 1;
                target
            }
            None => target,
        };
        // Ahead of the clock (the delay grew): silence until it catches up.
        let mut written = 0;
        if next > target + tolerance {
            written = ((next - target) as usize).min(out.len());
            if written == out.len() {
                self.resyncs += 1;
                return;
            }
        }
        for slot in &mut out[written..] {
            if next >= self.buffer_start {
                if let Some(s) = self.buffer.get((next - self.buffer_start) as usize) {
                    *slot = *s;
                }
            }
            next += 1;
        }
        self.next = Some(next);
        self.drop_before(next);
    }
}

/// Where the delayed audio goes.
trait Output: Send {
    fn name(&self) -> String;
}

/// A running virtual microphone; dropping it removes the source.
pub struct VirtualMic {
    schedule: Arc<Mutex<MicSchedule>>,
    output: Box<dyn Output>,
    stop: Arc<AtomicBool>,
    feeder: Option<JoinHandle<()>>,
}

impl VirtualMic {
    /// Publishes the source and feeds it from `chunks` (a timeline tap), heard at
    /// `origin + pts + delay`.
    pub fn start(
        backend: Backend,
        chunks: Receiver<AudioChunk>,
        origin: Instant,
        delay: Duration,
    ) -> Result<Self, AudioError> {
        let schedule = Arc::new(Mutex::new(MicSchedule::new(origin, delay)));
        let output = open_output(backend, schedule.clone())?;
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = {
            let schedule = schedule.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("livetalk-mic-feed".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match chunks.recv_timeout(Duration::from_millis(100)) {
                            Ok(chunk) => schedule.lock().push(chunk.pts, &chunk.to_mono().samples),
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                })
                .map_err(|e| AudioError::VirtualMic(format!("cannot start its thread: {e}")))?
        };
        Ok(VirtualMic { schedule, output, stop, feeder: Some(feeder) })
    }

    /// Where it lives ("PipeWire node livetalk-mic", "PulseAudio source livetalk-mic").
    pub fn describe(&self) -> String {
        self.output.name()
    }

    pub fn delay(&self) -> Duration {
        self.schedule.lock().delay()
    }

    pub fn set_delay(&self, delay: Duration) {
        self.schedule.lock().set_delay(delay);
    }

    /// A handle to change the delay from another thread.
    pub fn delay_control(&self) -> DelayControl {
        DelayControl(self.schedule.clone())
    }
}

/// Reads and changes a running [`VirtualMic`]'s delay.
#[derive(Clone)]
pub struct DelayControl(Arc<Mutex<MicSchedule>>);

impl DelayControl {
    pub fn get(&self) -> Duration {
        self.0.lock().delay()
    }

    pub fn set(&self, delay: Duration) {
        self.0.lock().set_delay(delay);
    }
}

impl Drop for VirtualMic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
    }
}

fn open_output(backend: Backend, schedule: Arc<Mutex<MicSchedule>>) -> Result<Box<dyn Output>, AudioError> {
    match backend {
        Backend::PipeWire => open_pipewire(schedule),
        Backend::Pulse => Ok(Box::new(pulse::PulseMic::start(schedule)?)),
        Backend::Auto => match open_pipewire(schedule.clone()) {
            Ok(output) => Ok(output),
            Err(pipewire_error) => match pulse::PulseMic::start(schedule) {
                Ok(output) => Ok(Box::new(output)),
                Err(pulse_error) => Err(AudioError::VirtualMic(format!(
                    "no sound server to publish it on. PipeWire: {}. PulseAudio: {}",
                    strip(pipewire_error),
                    strip(pulse_error)
                ))),
            },
        },
    }
}

fn strip(e: AudioError) -> String {
    match e {
        AudioError::VirtualMic(m) => m,
        other => other.to_string(),
    }
}

#[cfg(feature = "pipewire")]
fn open_pipewire(schedule: Arc<Mutex<MicSchedule>>) -> Result<Box<dyn Output>, AudioError> {
    // A PulseAudio fallback source left by a killed run would carry the same name.
    pulse::unload_leftovers_if_any();
    Ok(Box::new(pipewire::PipeWireMic::start(schedule)?))
}

#[cfg(not(feature = "pipewire"))]
fn open_pipewire(_: Arc<Mutex<MicSchedule>>) -> Result<Box<dyn Output>, AudioError> {
    Err(AudioError::VirtualMic(
        "this livetalk was built without PipeWire (cargo build --release --features livetalk/pipewire)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn plays_each_pts_at_origin_plus_delay_and_blocks_follow_exactly() {
        let origin = Instant::now();
        let mut s = MicSchedule::new(origin, ms(200));
        let ramp: Vec<f32> = (0..1600).map(|i| i as f32).collect();
        s.push(ms(0), &ramp[..800]);
        s.push(ms(50), &ramp[800..]);
        let mut out = vec![0.0; 160];
        // Before origin + delay: silence.
        s.fill(origin + ms(100), &mut out);
        assert!(out.iter().all(|&x| x == 0.0));
        // At origin + delay + 10 ms: sample 160 onwards.
        s.fill(origin + ms(210), &mut out);
        assert_eq!((out[0], out[159]), (160.0, 319.0));
        // A callback 3 ms late still continues sample-exactly.
        s.fill(origin + ms(223), &mut out);
        assert_eq!(out[0], 320.0);
        assert_eq!(s.resyncs(), 0);
    }

    #[test]
    fn falls_behind_jumps_ahead_and_a_longer_delay_waits_in_silence() {
        let origin = Instant::now();
        let mut s = MicSchedule::new(origin, ms(100));
        let ramp: Vec<f32> = (1..=16_000).map(|i| i as f32).collect();
        s.push(ms(0), &ramp);
        let mut out = vec![0.0; 160];
        s.fill(origin + ms(100), &mut out);
        assert_eq!(out[0], 1.0);
        // 200 ms later (a stall): jump to the clock.
        s.fill(origin + ms(310), &mut out);
        assert_eq!(out[0], ramp[3_360]);
        assert_eq!(s.resyncs(), 1);
        // The delay grows by 100 ms: silence, then it resumes where it was.
        s.set_delay(ms(200));
        s.fill(origin + ms(320), &mut out);
        assert!(out.iter().all(|&x| x == 0.0));
        let mut long = vec![0.0; 800];
        s.fill(origin + ms(390), &mut long);
        assert_eq!((long[0], long[479], long[480]), (0.0, 0.0, 3_521.0), "silence until the clock catches up");
    }
}
