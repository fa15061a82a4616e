//! `livetalk dev avsync`: lip-sync as a number, measured end to end through a real PipeWire graph.
//!
//! It runs the real `livetalk run` (CPU avatar, PipeWire camera node, virtual microphone, raw PCM
//! on stdin) and feeds it tone bursts separated by silence in real time, noting when each burst
//! goes in. Two real consumers read the outputs: GStreamer's `pipewiresrc` the camera node
//! "livetalk" and `parecord` (through pipewire-pulse, as browsers do) the virtual microphone
//! "livetalk-mic"; every frame and audio block
//! is stamped on arrival with one monotonic clock. Mouth-open onsets are found in the frames with
//! the avatar's own mouth meter, sound onsets in the recording, and per burst it reports:
//! - the A/V offset: mouth onset − sound onset as the consumers get them (positive: lips late);
//! - mouth-to-camera latency: mouth onset − the instant the burst went into livetalk;
//! - voice-to-mic latency: sound onset − the same instant.
//!
//! Audio arrival: a block's samples are timed from the earliest-arriving block (`t(k) = c + k/rate`
//! with `c` the smallest arrival − first-sample time), so pipe and scheduling jitter do not smear
//! the onsets. Video arrival: the frame's own arrival instant (a camera frame is shown when it
//! comes).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use livetalk_core::frame::{ColorSpec, PixelFormat};
use livetalk_core::Persona;
use livetalk_engine::avatar::MouthMeter;

#[derive(clap::Args, Debug)]
pub struct AvsyncArgs {
    /// Tone bursts to send.
    #[arg(long, default_value_t = 16)]
    pub bursts: usize,
    /// Length of each burst, ms.
    #[arg(long, default_value_t = 300)]
    pub burst_ms: u64,
    /// Silence between bursts, ms. With the default 300 ms bursts a burst starts every 36.3
    /// frames, so the bursts sweep the frame grid and the median does not hang on one phase.
    #[arg(long, default_value_t = 910)]
    pub gap_ms: u64,
    /// Virtual microphone backend for the run: pipewire or pulse.
    #[arg(long, default_value = "pipewire", value_parser = ["pipewire", "pulse"])]
    pub mic_backend: String,
    /// The livetalk binary to measure (default: this one; it needs the `pipewire` feature).
    #[arg(long)]
    pub livetalk: Option<PathBuf>,
    /// Largest |median A/V offset| that passes, ms.
    #[arg(long, default_value_t = 40.0)]
    pub max_offset_ms: f64,
    /// Keep the work folder (livetalk's log, the recording) and print its path.
    #[arg(long)]
    pub keep: bool,
}

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const RATE: u32 = 16_000;
/// Silence before the first burst, once both consumers stream.
const LEAD_IN: Duration = Duration::from_millis(1500);
const CHUNK: usize = 160;

/// The test persona: Kai drawn at the camera's size (no scaling between engine and camera).
fn persona_preset(dir: &Path) -> Result<Persona> {
    let text = include_str!("../../../presets/kai.toml")
        .replace("name = \"kai\"", "name = \"avsync\"")
        .replace("size = \"1280x720\"", &format!("size = \"{WIDTH}x{HEIGHT}\""))
        .replace("hotkey = \"Ctrl+Alt+2\"", "");
    let path = dir.join("avsync.toml");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(Persona::from_toml_str(&text, &path)?)
}

/// A voice-like tone (1 kHz and 2 kHz: an open vowel to the avatar's analysis).
fn burst(samples: usize) -> Vec<f32> {
    (0..samples)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            let ramp = (i as f32 / 32.0).min(1.0);
            ramp * (0.4 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin() + 0.15 * (2.0 * std::f32::consts::PI * 2000.0 * t).sin())
        })
        .collect()
}

/// Arrival log of one consumer.
#[derive(Default)]
struct Arrivals {
    /// Video: (arrival, mouth openness) per frame.
    frames: Vec<(Instant, f32)>,
    /// Audio: (arrival, index of the block's first sample), and all samples.
    blocks: Vec<(Instant, usize)>,
    samples: Vec<f32>,
}

fn spawn_quiet(program: &str, args: &[&str], log: &Path) -> Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot run {program} (Debian: gstreamer1.0-tools gstreamer1.0-pipewire pulseaudio-utils pipewire-pulse)"))
}

fn read_video(mut out: ChildStdout, meter: MouthMeter, log: Arc<Mutex<Arrivals>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let len = (WIDTH * HEIGHT * 2) as usize;
        let mut frame = vec![0u8; len];
        let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
        while out.read_exact(&mut frame).is_ok() {
            let at = Instant::now();
            let openness = livetalk_core::convert::convert_buffer(
                &frame,
                PixelFormat::Yuyv,
                &mut rgb,
                PixelFormat::Rgb24,
                WIDTH,
                HEIGHT,
                ColorSpec::BT601_LIMITED,
            )
            .ok()
            .and_then(|_| meter.measure_rgb(&rgb).ok())
            .unwrap_or(0.0);
            log.lock().unwrap_or_else(|e| e.into_inner()).frames.push((at, openness));
        }
    })
}

fn read_audio(mut out: ChildStdout, log: Arc<Mutex<Arrivals>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut header_done = false;
        let mut count = 0usize;
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let at = Instant::now();
            pending.extend_from_slice(&buf[..n]);
            if !header_done {
                // A recorder that writes a WAV header to the pipe: skip to the data chunk.
                if pending.starts_with(b"RIFF") {
                    match pending.windows(4).position(|w| w == b"data") {
                        Some(p) if pending.len() >= p + 8 => {
                            pending.drain(..p + 8);
                        }
                        _ => continue,
                    }
                } else if pending.len() < 4 {
                    continue;
                }
                header_done = true;
            }
            let whole = pending.len() / 2 * 2;
            let samples: Vec<f32> =
                pending.drain(..whole).collect::<Vec<u8>>().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect();
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.blocks.push((at, count));
            count += samples.len();
            log.samples.extend(samples);
        }
    })
}

/// The consumers we started; dropping ends them (and so their readers).
struct Consumers(Vec<Child>);

impl Drop for Consumers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn node_exists(name: &str) -> bool {
    Command::new("pw-dump")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("\"node.name\": \"{name}\"")))
        .unwrap_or(false)
}

/// When each audio block's first sample reached us: its arrival, or earlier when a block up to
/// 200 ms later came so soon after that this one must have been there (reads that found several
/// blocks waiting). Local, so a sound server clock that drifts from ours does not add up.
fn block_times(blocks: &[(Instant, usize)]) -> Vec<Instant> {
    let window = RATE as usize / 5;
    (0..blocks.len())
        .map(|j| {
            let (_, first) = blocks[j];
            blocks[j..]
                .iter()
                .take_while(|(_, k)| *k <= first + window)
                .map(|(at, k)| *at - Duration::from_secs_f64((k - first) as f64 / RATE as f64))
                .min()
                .unwrap_or(blocks[j].0)
        })
        .collect()
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// Instants where a signal rises above `threshold` after at least `quiet` below it.
fn onsets(series: &[(Instant, f32)], threshold: f32, quiet: Duration) -> Vec<Instant> {
    let mut found = Vec::new();
    let mut below_since: Option<Instant> = series.first().map(|(t, _)| *t);
    for &(t, v) in series {
        if v >= threshold {
            if below_since.is_some_and(|since| t.duration_since(since) >= quiet) {
                found.push(t);
            }
            below_since = None;
        } else if below_since.is_none() {
            below_since = Some(t);
        }
    }
    found
}

pub fn avsync(args: AvsyncArgs) -> Result<()> {
    if args.bursts < 3 {
        bail!("--bursts must be at least 3");
    }
    let work = std::env::temp_dir().join(format!("livetalk-avsync-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let persona = persona_preset(&work)?;
    let look = persona.look.clone().unwrap_or_default();
    let meter = MouthMeter::new(&look, WIDTH, HEIGHT)?;
    let exe = match &args.livetalk {
        Some(path) => path.clone(),
        None => std::env::current_exe()?,
    };
    let pattern_len = LEAD_IN + Duration::from_millis((args.burst_ms + args.gap_ms) * args.bursts as u64) + Duration::from_secs(1);
    // Long enough for start-up and the pattern; it ends by itself (a PulseAudio virtual
    // microphone unloads its modules then).
    let run_for = pattern_len + Duration::from_secs(8);
    let run_log = work.join("livetalk-run.log");
    let mut livetalk = Command::new(&exe)
        .args(["run", "--no-preview", "--no-control", "--engine", "cpu", "--persona", "avsync", "--presets"])
        .arg(&work)
        .args(["--camera", "pipewire", "--camera-size", &format!("{WIDTH}x{HEIGHT}"), "--virtual-mic", &args.mic_backend])
        .args(["--audio-in", "stdin", "--stdin-format", "s16le:16000:1", "--seconds", &format!("{}", run_for.as_secs())])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&run_log)?)
        .spawn()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let result = measure(&args, &mut livetalk, &work, meter);
    let deadline = Instant::now() + run_for;
    while livetalk.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = livetalk.kill();
    let _ = livetalk.wait();
    if result.is_err() || args.keep {
        eprintln!("work folder kept: {} (livetalk-run.log)", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn measure(args: &AvsyncArgs, livetalk: &mut Child, work: &Path, meter: MouthMeter) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(node_exists("livetalk") && node_exists("livetalk-mic")) {
        if let Some(status) = livetalk.try_wait()? {
            bail!("livetalk run exited ({status}) before its nodes appeared: see {}", work.join("livetalk-run.log").display());
        }
        if Instant::now() > deadline {
            bail!("the nodes livetalk and livetalk-mic did not appear within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let video_log = Arc::new(Mutex::new(Arrivals::default()));
    let audio_log = Arc::new(Mutex::new(Arrivals::default()));
    let caps = format!("video/x-raw,format=YUY2,width={WIDTH},height={HEIGHT}");
    let gst = spawn_quiet(
        "gst-launch-1.0",
        &["-q", "pipewiresrc", "target-object=livetalk", "!", &caps, "!", "fdsink", "fd=1", "sync=false"],
        &work.join("gst.log"),
    )?;
    // parecord (pipewire-pulse) hands out 10 ms fragments as they come, the way browsers
    // read a microphone; pw-record writes 2048-frame pieces, too coarse to time.
    let rec = spawn_quiet(
        "parecord",
        &["--raw", "--latency-msec=10", "-d", "livetalk-mic", "--rate=16000", "--channels=1", "--format=s16le"],
        &work.join("parecord.log"),
    )?;
    let mut consumers = Consumers(vec![gst, rec]);
    let video = read_video(consumers.0[0].stdout.take().context("gst's stdout")?, meter, video_log.clone());
    let audio = read_audio(consumers.0[1].stdout.take().context("parecord's stdout")?, audio_log.clone());

    // Both consumers stream before the pattern starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while video_log.lock().unwrap_or_else(|e| e.into_inner()).frames.len() < 15 || audio_log.lock().unwrap_or_else(|e| e.into_inner()).samples.len() < RATE as usize / 2 {
        if Instant::now() > deadline {
            bail!(
                "the consumers did not stream within 20 s ({} frames, {} samples): see gst.log and parecord.log in {}",
                video_log.lock().unwrap_or_else(|e| e.into_inner()).frames.len(),
                audio_log.lock().unwrap_or_else(|e| e.into_inner()).samples.len(),
                work.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // The pattern, in real time, 10 ms a write; each burst's start instant noted.
    let burst_len = (args.burst_ms * RATE as u64 / 1000) as usize / CHUNK * CHUNK;
    let gap_len = (args.gap_ms * RATE as u64 / 1000) as usize / CHUNK * CHUNK;
    let lead = (LEAD_IN.as_millis() as usize * RATE as usize / 1000) / CHUNK * CHUNK;
    let mut pattern = vec![0.0f32; lead];
    let mut starts = Vec::new();
    for _ in 0..args.bursts {
        starts.push(pattern.len());
        pattern.extend(burst(burst_len));
        pattern.extend(std::iter::repeat_n(0.0, gap_len));
    }
    pattern.extend(std::iter::repeat_n(0.0, RATE as usize));
    let mut stdin = livetalk.stdin.take().context("livetalk's stdin")?;
    let mut inputs = Vec::new();
    let begin = Instant::now();
    for (i, chunk) in pattern.chunks(CHUNK).enumerate() {
        let due = begin + Duration::from_secs_f64((i * CHUNK) as f64 / RATE as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| ((s * 32767.0) as i16).to_le_bytes()).collect();
        if starts.contains(&(i * CHUNK)) {
            inputs.push(Instant::now());
        }
        stdin.write_all(&bytes).context("writing to livetalk's stdin")?;
    }
    std::thread::sleep(Duration::from_millis(1500));
    drop(stdin);
    drop(consumers);
    video.join().map_err(|_| anyhow::anyhow!("the video reader panicked"))?;
    audio.join().map_err(|_| anyhow::anyhow!("the audio reader panicked"))?;

    let video = std::mem::take(&mut *video_log.lock().unwrap_or_else(|e| e.into_inner()));
    let audio = std::mem::take(&mut *audio_log.lock().unwrap_or_else(|e| e.into_inner()));
    report(args, &inputs, &video, &audio, work)
}

fn report(args: &AvsyncArgs, inputs: &[Instant], video: &Arrivals, audio: &Arrivals, work: &Path) -> Result<()> {
    let origin = inputs[0];
    if audio.blocks.is_empty() {
        bail!("no audio was recorded");
    }
    let block_times = block_times(&audio.blocks);
    if args.keep {
        let wave = livetalk_audio::Waveform { sample_rate: RATE, samples: audio.samples.clone() };
        livetalk_audio::file::write_wav(&work.join("livetalk-mic.wav"), &wave)?;
    }
    let peak = audio.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak < 0.05 {
        bail!("the virtual microphone carried no bursts (peak {peak:.3})");
    }
    let mut block = 0;
    let envelope: Vec<(Instant, f32)> = audio
        .samples
        .iter()
        .enumerate()
        .map(|(k, s)| {
            while block + 1 < audio.blocks.len() && audio.blocks[block + 1].1 <= k {
                block += 1;
            }
            let into = (k - audio.blocks[block].1) as f64 / RATE as f64;
            (block_times[block] + Duration::from_secs_f64(into), s.abs())
        })
        .collect();
    let sound = onsets(&envelope, peak * 0.25, Duration::from_millis(300));

    let mut openness: Vec<f32> = video.frames.iter().map(|(_, o)| *o).collect();
    openness.sort_by(|a, b| a.total_cmp(b));
    let closed = openness[openness.len() / 4];
    let open = openness[openness.len() * 97 / 100];
    if open - closed < 0.2 {
        bail!("the mouth never opened in the camera frames (openness {closed:.2} .. {open:.2})");
    }
    let mouth = onsets(&video.frames, closed + 0.5 * (open - closed), Duration::from_millis(300));

    let ms = |d: f64| d * 1000.0;
    let signed = |a: Instant, b: Instant| if a >= b { (a - b).as_secs_f64() } else { -(b - a).as_secs_f64() };
    let list = |l: &[Instant]| l.iter().map(|t| format!("{:.0}", ms(signed(*t, origin)))).collect::<Vec<_>>().join(" ");
    println!("sound onsets (ms): {}", list(&sound));
    println!("mouth onsets (ms): {} (openness closed {closed:.2}, open {open:.2})", list(&mouth));
    let first_after = |list: &[Instant], from: Instant| list.iter().copied().find(|t| *t + Duration::from_millis(100) >= from);
    let (mut offsets, mut camera, mut mic) = (Vec::new(), Vec::new(), Vec::new());
    println!("burst  input_ms  sound_ms  mouth_ms  offset_ms");
    for (i, &input) in inputs.iter().enumerate() {
        let window_end = inputs.get(i + 1).copied().unwrap_or(input + Duration::from_secs(3));
        let (Some(s), Some(m)) = (first_after(&sound, input), first_after(&mouth, input)) else {
            println!("{i:>5}  {:>8.1}  missing", ms(signed(input, origin)));
            continue;
        };
        if s >= window_end || m >= window_end {
            println!("{i:>5}  {:>8.1}  missing (onset after the next burst)", ms(signed(input, origin)));
            continue;
        }
        let offset = signed(m, s);
        offsets.push(ms(offset));
        camera.push(ms(signed(m, input)));
        mic.push(ms(signed(s, input)));
        println!("{i:>5}  {:>8.1}  {:>8.1}  {:>8.1}  {:>9.1}", ms(signed(input, origin)), ms(signed(s, origin)), ms(signed(m, origin)), ms(offset));
    }
    let matched = offsets.len();
    if matched + 1 < inputs.len() {
        bail!("only {matched} of {} bursts were found in both outputs (work folder {})", inputs.len(), work.display());
    }
    let median = percentile(&offsets, 50.0);
    let abs: Vec<f64> = offsets.iter().map(|o| o.abs()).collect();
    println!(
        "AVSYNC bursts={matched}/{} offset_median_ms={median:.1} offset_abs_p95_ms={:.1} mouth_to_camera_p50_ms={:.1} mouth_to_camera_p95_ms={:.1} voice_to_mic_p50_ms={:.1} voice_to_mic_p95_ms={:.1} mic={} frames={} audio_s={:.1}",
        inputs.len(),
        percentile(&abs, 95.0),
        percentile(&camera, 50.0),
        percentile(&camera, 95.0),
        percentile(&mic, 50.0),
        percentile(&mic, 95.0),
        args.mic_backend,
        video.frames.len(),
        audio.samples.len() as f64 / RATE as f64,
    );
    if median.abs() > args.max_offset_ms {
        bail!("A/V offset {median:.1} ms is outside ±{} ms", args.max_offset_ms);
    }
    Ok(())
}
