//! `livetalk run`'s live audio: what drives the avatar besides a file or text (the microphone,
//! raw PCM on stdin, or nothing but the control API), which text-to-speech speaks, and the
//! virtual microphone "livetalk mic" that carries the driving audio delayed like the video.
//!
//! Live inputs push onto the timeline through a [`LivePusher`]: it keeps the pushed audio a
//! little ahead of the timeline's "now" (40 ms), because a piece pushed after its moment would
//! land after a gap of silence; the lead absorbs the input's jitter.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use livetalk_audio::pcm::{PcmDecoder, PcmFormat};
use livetalk_audio::resample::StreamResampler;
use livetalk_audio::tts::{Espeak, Speaker};
use livetalk_audio::vad::NoiseGate;
use livetalk_audio::virtual_mic::{Backend, VirtualMic};
use livetalk_audio::ENGINE_RATE;
use livetalk_engine::service::{EngineControl, SpeechSynth};
use livetalk_engine::timeline::AudioTimeline;

/// A live source that drives the avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioIn {
    /// The microphone: the default input device, or one by name.
    Mic(Option<String>),
    /// Raw PCM on stdin (see `--stdin-format`).
    Stdin,
    /// Nothing at start: the control API pushes audio and text.
    None,
}

impl std::str::FromStr for AudioIn {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mic" => Ok(AudioIn::Mic(None)),
            "stdin" | "-" => Ok(AudioIn::Stdin),
            "none" => Ok(AudioIn::None),
            _ => match s.strip_prefix("mic:") {
                Some(name) if !name.trim().is_empty() => Ok(AudioIn::Mic(Some(name.trim().to_string()))),
                _ => Err(format!(
                    "`{s}` is not an audio input: use mic, mic:NAME, stdin or none (files: --audio FILE; text: --text)"
                )),
            },
        }
    }
}

fn parse_pcm_format(s: &str) -> std::result::Result<PcmFormat, String> {
    s.parse().map_err(|e: livetalk_audio::AudioError| e.to_string())
}

fn parse_on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => Err(format!("`{other}`: use on or off")),
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct AudioIoArgs {
    /// A live input that drives the avatar: `mic` (the default input device), `mic:NAME` (a
    /// device by name or id; a wrong name lists the devices), `stdin` (raw PCM, see
    /// --stdin-format) or `none` (only what the control API pushes or says). A build with
    /// `--features livetalk/mic` has the microphone.
    #[arg(long, value_name = "SOURCE", conflicts_with_all = ["text", "audio"])]
    pub audio_in: Option<AudioIn>,
    /// Layout of the raw PCM on stdin: ENCODING:RATE:CHANNELS, ENCODING one of u8, s16le,
    /// s32le, f32le (resampled to 16 kHz mono).
    #[arg(long, value_name = "FORMAT", default_value = "s16le:16000:1", value_parser = parse_pcm_format)]
    pub stdin_format: PcmFormat,
    /// Voice activity gate on the live input (noise between words becomes silence, so the
    /// avatar idles): on or off. Default: on for the microphone, off for stdin.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub vad: Option<bool>,
    /// Speak text (--text, `livetalk say`) with an HTTP text-to-speech service instead of
    /// espeak-ng: POST {"text", "voice"} as JSON, WAV back (docs/tts-http.md).
    #[arg(long, value_name = "URL")]
    pub tts_url: Option<String>,
    /// Publish the virtual microphone "livetalk mic" (node livetalk-mic) carrying the driving
    /// audio delayed to line up with the video: auto (PipeWire, else PulseAudio), pipewire or
    /// pulse.
    #[arg(long, value_name = "BACKEND", num_args = 0..=1, default_missing_value = "auto")]
    pub virtual_mic: Option<Backend>,
    /// Shift the virtual microphone against the picture, in milliseconds (positive: later).
    #[arg(long, value_name = "MS", default_value_t = 0, allow_negative_numbers = true)]
    pub mic_offset_ms: i64,
}

impl AudioIoArgs {
    /// Whether a live input replaces the default greeting.
    pub fn is_live(&self) -> bool {
        self.audio_in.is_some()
    }
}

/// The text-to-speech that `--text` and `say` use: the HTTP service if given, else espeak-ng.
pub fn speaker(args: &AudioIoArgs) -> Result<Option<Arc<dyn SpeakerSynth>>> {
    if let Some(url) = &args.tts_url {
        let tts = livetalk_audio::http_tts::HttpTts::new(url, Duration::from_secs(60))?;
        return Ok(Some(Arc::new(tts)));
    }
    Ok(Espeak::find().map(|e| Arc::new(e) as Arc<dyn SpeakerSynth>))
}

/// Both faces of a text-to-speech: a [`Speaker`] for the greeting, a [`SpeechSynth`] for `say`.
pub trait SpeakerSynth: Speaker + SpeechSynth {}
impl<T: Speaker + SpeechSynth> SpeakerSynth for T {}

/// The speech for `--text` through `speaker` (the HTTP service), or `None` to let the default
/// path (espeak-ng or the shipped sample) decide.
pub fn speak_text(args: &AudioIoArgs, speaker: &Option<Arc<dyn SpeakerSynth>>, text: Option<&str>, voice: &str) -> Result<Option<crate::drive::Drive>> {
    let (Some(text), Some(_), Some(speaker)) = (text, &args.tts_url, speaker) else { return Ok(None) };
    let original = speaker.speak(text, voice)?;
    let engine = original.to_engine_rate()?;
    Ok(Some(crate::drive::Drive { original, engine, description: format!("text-to-speech ({}, voice {voice})", speaker.describe()) }))
}

/// Keeps live audio a little ahead of the timeline's "now" (see the module docs).
struct LivePusher {
    timeline: AudioTimeline,
    lead: u64,
    /// Live devices: drop audio beyond this lead (their clock runs fast, or a burst came).
    max_lead: Option<u64>,
}

const LEAD: Duration = Duration::from_millis(40);

fn samples(d: Duration) -> u64 {
    (d.as_secs_f64() * ENGINE_RATE as f64) as u64
}

impl LivePusher {
    fn new(timeline: AudioTimeline, max_lead: Option<Duration>) -> Self {
        LivePusher { timeline, lead: samples(LEAD), max_lead: max_lead.map(samples) }
    }

    /// How far the pushed audio reaches past "now", in samples.
    fn ahead(&self) -> u64 {
        self.timeline.written().saturating_sub(self.timeline.now_sample())
    }

    fn push(&mut self, mut piece: &[f32]) -> Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        let ahead = self.ahead();
        if ahead < self.lead / 2 {
            self.timeline.push(&vec![0.0; (self.lead - ahead) as usize])?;
        } else if let Some(max) = self.max_lead.filter(|&max| ahead > max) {
            let excess = ((ahead - self.lead) as usize).min(piece.len());
            tracing::debug!("live input ahead by {ahead} samples (max {max}): {excess} dropped");
            piece = &piece[excess..];
        }
        self.timeline.push(piece)?;
        Ok(())
    }
}

/// The running live input and virtual microphone; dropping it stops them.
pub struct LiveAudio {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    failures: Receiver<anyhow::Error>,
    virtual_mic: Option<VirtualMic>,
}

impl LiveAudio {
    /// The error that ended an input (bad data on stdin, a lost device), if any.
    pub fn check(&self) -> Result<()> {
        match self.failures.try_recv() {
            Ok(e) => Err(e),
            Err(_) => Ok(()),
        }
    }
}

impl Drop for LiveAudio {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The stdin reader may sit in a blocking read: it is left to end with the process.
        for thread in self.threads.drain(..) {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        self.virtual_mic.take();
    }
}

/// Starts the live input (if any) and the virtual microphone (if asked for).
/// `camera_fps`: the camera sink's rate when one runs (its frames are held up to a frame period
/// on the way out, so the microphone waits that long too).
pub fn start(args: &AudioIoArgs, control: &EngineControl, camera_fps: Option<u32>) -> Result<LiveAudio> {
    let stop = Arc::new(AtomicBool::new(false));
    let (fail_tx, failures) = crossbeam_channel::unbounded();
    let mut threads = Vec::new();
    match &args.audio_in {
        Some(AudioIn::Mic(name)) => threads.push(start_mic(name.as_deref(), args.vad.unwrap_or(true), control, &stop, fail_tx.clone())?),
        Some(AudioIn::Stdin) => threads.push(start_stdin(args.stdin_format, args.vad.unwrap_or(false), control, &stop, fail_tx.clone())?),
        Some(AudioIn::None) | None => {}
    }
    let virtual_mic = match args.virtual_mic {
        Some(backend) => {
            let (mic, thread) = start_virtual_mic(backend, args.mic_offset_ms, control, camera_fps, &stop)?;
            threads.push(thread);
            Some(mic)
        }
        None => None,
    };
    Ok(LiveAudio { stop, threads, failures, virtual_mic })
}

/// What the virtual microphone waits: the engine's latency, the camera's hold, the user's shift.
/// A frame waits up to a camera period (half on average) for the pump's tick before it leaves;
/// half a camera period more for the microphone puts the offsets measured by
/// `livetalk dev avsync` around zero.
fn mic_delay(latency: Duration, camera_fps: Option<u32>, offset_ms: i64) -> Duration {
    let hold = camera_fps.map_or(Duration::ZERO, |fps| Duration::from_secs(1) / fps.max(1) / 2);
    let base = latency + hold;
    if offset_ms >= 0 {
        base + Duration::from_millis(offset_ms as u64)
    } else {
        base.saturating_sub(Duration::from_millis(offset_ms.unsigned_abs()))
    }
}

fn start_virtual_mic(
    backend: Backend,
    offset_ms: i64,
    control: &EngineControl,
    camera_fps: Option<u32>,
    stop: &Arc<AtomicBool>,
) -> Result<(VirtualMic, JoinHandle<()>)> {
    let tap = control.audio_tap(512);
    let origin = control.timeline().instant_of_pts(Duration::ZERO);
    let delay = mic_delay(control.status().latency, camera_fps, offset_ms);
    let mic = VirtualMic::start(backend, tap, origin, delay).context("starting the virtual microphone")?;
    eprintln!("livetalk: virtual microphone on {}, {} ms behind the audio", mic.describe(), delay.as_millis());
    // The engine's latency may grow while it runs: the microphone follows.
    let (follow, control, stop) = (mic.delay_control(), control.clone(), stop.clone());
    let thread = std::thread::Builder::new().name("livetalk-mic-delay".into()).spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let delay = mic_delay(control.status().latency, camera_fps, offset_ms);
            if delay != follow.get() {
                tracing::info!("virtual microphone delay now {} ms", delay.as_millis());
                follow.set(delay);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })?;
    Ok((mic, thread))
}

#[cfg(feature = "mic")]
fn start_mic(
    name: Option<&str>,
    vad: bool,
    control: &EngineControl,
    stop: &Arc<AtomicBool>,
    failures: Sender<anyhow::Error>,
) -> Result<JoinHandle<()>> {
    let capture = livetalk_audio::mic::open(name).context("opening the microphone")?;
    eprintln!(
        "livetalk: microphone {} ({} Hz){}",
        capture.device.name,
        capture.rate,
        if vad { ", voice activity gate on" } else { "" }
    );
    let mut resampler = StreamResampler::new(capture.rate, ENGINE_RATE)?;
    let mut gate = vad.then(NoiseGate::default);
    let mut pusher = LivePusher::new(control.timeline().clone(), Some(Duration::from_millis(200)));
    let stop = stop.clone();
    Ok(std::thread::Builder::new().name("livetalk-mic-in".into()).spawn(move || {
        let result = (|| -> Result<()> {
            while !stop.load(Ordering::SeqCst) {
                let block = match capture.blocks.recv_timeout(Duration::from_millis(200)) {
                    Ok(block) => block,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => bail!("the microphone stopped"),
                };
                let mut piece = resampler.push(&block)?;
                if let Some(gate) = gate.as_mut() {
                    piece = gate.push(&piece);
                }
                pusher.push(&piece)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = failures.send(e);
        }
    })?)
}

#[cfg(not(feature = "mic"))]
fn start_mic(_: Option<&str>, _: bool, _: &EngineControl, _: &Arc<AtomicBool>, _: Sender<anyhow::Error>) -> Result<JoinHandle<()>> {
    bail!("this livetalk was built without the microphone: cargo build --release --features livetalk/mic (needs libasound2-dev); or drive it with --audio FILE, --text, or --audio-in stdin")
}

/// Pushed audio further ahead than this makes the stdin reader wait (a whole file piped in at
/// once is not read into memory at once).
const STDIN_MAX_AHEAD: Duration = Duration::from_secs(2);

fn start_stdin(
    format: PcmFormat,
    vad: bool,
    control: &EngineControl,
    stop: &Arc<AtomicBool>,
    failures: Sender<anyhow::Error>,
) -> Result<JoinHandle<()>> {
    let mut decoder = PcmDecoder::new(format, "stdin");
    let mut resampler = StreamResampler::new(format.rate, ENGINE_RATE)?;
    let mut gate = vad.then(NoiseGate::default);
    let mut pusher = LivePusher::new(control.timeline().clone(), None);
    let stop = stop.clone();
    eprintln!("livetalk: reading {format} raw PCM from stdin");
    Ok(std::thread::Builder::new().name("livetalk-stdin".into()).spawn(move || {
        let result = (|| -> Result<()> {
            let mut stdin = std::io::stdin().lock();
            // 10 ms of input per read at most, so a live producer is not held back.
            let mut buf = vec![0u8; (format.rate as usize / 100).max(1) * format.frame_bytes()];
            let mut feed = |piece: Vec<f32>, pusher: &mut LivePusher| -> Result<()> {
                let mut piece = resampler.push(&piece)?;
                if let Some(gate) = gate.as_mut() {
                    piece = gate.push(&piece);
                }
                pusher.push(&piece)
            };
            while !stop.load(Ordering::SeqCst) {
                while pusher.ahead() > samples(STDIN_MAX_AHEAD) && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let n = match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(anyhow::Error::new(e).context("reading stdin")),
                };
                let piece = decoder.push(&buf[..n])?;
                feed(piece, &mut pusher)?;
            }
            let tail = std::mem::replace(&mut decoder, PcmDecoder::new(format, "stdin")).finish()?;
            feed(tail, &mut pusher)?;
            tracing::info!("stdin ended");
            Ok(())
        })();
        if let Err(e) = result {
            let _ = failures.send(e);
        }
    })?)
}
