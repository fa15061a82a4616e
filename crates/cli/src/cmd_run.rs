//! `livetalk run`: the live avatar. The engine service renders on its own threads and publishes
//! to the frame bus; this command feeds it audio (a file, TTS, or the default greeting) and shows
//! the bus in a preview window. Sinks (camera, OBS) attach to the same bus.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use livetalk_core::frame::{ColorSpec, PixelFormat};
use livetalk_core::FrameBus;
use livetalk_vcam::compose::Backdrop;
use livetalk_vcam::pump::{CameraPump, PumpConfig};
use livetalk_vcam::{CameraFormat, DeviceSelector, SinkConfig, V4l2Sink};
use livetalk_engine::service::{EngineOptions, EngineService};

use crate::{drive, presets, PersonaArgs};

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub persona: PersonaArgs,
    #[command(flatten)]
    pub drive: drive::DriveArgs,
    #[command(flatten)]
    pub audio_io: crate::audio_io::AudioIoArgs,
    /// No preview window (the avatar still runs for the other sinks).
    #[arg(long)]
    pub no_preview: bool,
    /// Stop after this many seconds (default: until the window is closed or Ctrl+C).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Seed for blinks and head motion.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Engine: the CPU avatar, the LiveTalk model, or LiveTalk when it can run (GPU + weights).
    #[arg(long, default_value = "auto", value_parser = ["cpu", "livetalk", "auto"])]
    pub engine: String,
    /// LiveTalk weights directory (model.safetensors, Wan2.1_VAE.pth, wav2vec2-base-960h/, taew2_1).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Run LiveTalk's tiny fixture models from this directory (demos and tests, no weights).
    #[arg(long, conflicts_with = "weights")]
    pub fixtures: Option<PathBuf>,
    /// LiveTalk device (default: cuda).
    #[arg(long, value_parser = ["cuda", "cpu"])]
    pub device: Option<String>,
    /// LiveTalk dtype (default: bf16 on cuda, f32 on cpu).
    #[arg(long, value_parser = ["bf16", "f32"])]
    pub dtype: Option<String>,
    #[command(flatten)]
    pub control_api: crate::cmd_ctl::ControlArgs,
    /// Do not share frames and audio with the OBS plugin (shared memory on a Unix socket).
    #[arg(long)]
    pub no_share: bool,
    /// The frame share socket (default: $XDG_RUNTIME_DIR/livetalk/frames.sock).
    #[arg(long, value_name = "PATH")]
    pub share_socket: Option<PathBuf>,
    #[command(flatten)]
    pub hotkeys: crate::hotkeys::HotkeyArgs,
    /// Also show the avatar as a camera: a v4l2loopback device by label ("livetalk") or path
    /// (/dev/video10), or `pipewire` for a PipeWire camera node (a build with `--features
    /// pipewire`). See packaging/README-camera.md.
    #[arg(long, value_name = "DEVICE")]
    pub camera: Option<String>,
    /// Camera pixel format.
    #[arg(long, default_value = "yuyv", value_parser = ["yuyv", "i420"])]
    pub camera_format: String,
    /// Camera frame size WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_parser = crate::cmd_demo::parse_size)]
    pub camera_size: (u32, u32),
}

/// The PipeWire camera node (`node.name=livetalk`, Video/Source, media.role=Camera) fed by the
/// same pump; a streaming link counts as a reader.
#[cfg(feature = "pipewire")]
fn start_pipewire(config: &SinkConfig, bus: &FrameBus, pump_config: PumpConfig) -> Result<CameraPump> {
    use livetalk_vcam::pipewire::{PipeWireCamera, PipeWireConfig};
    let node = PipeWireCamera::start(PipeWireConfig {
        width: config.width,
        height: config.height,
        format: config.format,
        fps: config.fps,
        ..Default::default()
    })?;
    Ok(CameraPump::start(node, bus.subscribe(), pump_config, |_| {})?)
}

#[cfg(not(feature = "pipewire"))]
fn start_pipewire(_: &SinkConfig, _: &FrameBus, _: PumpConfig) -> Result<CameraPump> {
    bail!("this livetalk was built without PipeWire: cargo build --release --features pipewire (needs libpipewire-0.3-dev and libclang-dev); or use a v4l2loopback device")
}

/// Opens the camera and starts its pump on the bus: the pump composes frames onto the persona's
/// background, paces them at 30 fps by pts, and its reader count drives the engine's pause.
fn start_camera(args: &RunArgs, bus: &FrameBus, persona: &livetalk_core::Persona) -> Result<Option<CameraPump>> {
    let Some(device) = &args.camera else { return Ok(None) };
    let (width, height) = args.camera_size;
    let config = SinkConfig {
        device: DeviceSelector::parse(device),
        width,
        height,
        format: if args.camera_format == "i420" { CameraFormat::I420 } else { CameraFormat::Yuyv },
        fps: 30,
    };
    let mut pump_config = PumpConfig::for_sink(&config);
    let colour = match &persona.background {
        Some(livetalk_core::persona::Background::Colour(c)) => Some(*c),
        _ => persona.look.as_ref().map(|l| l.background),
    };
    if let Some(c) = colour {
        pump_config.backdrop = Backdrop::Colour([c.r, c.g, c.b]);
    }
    let pump = if device == "pipewire" {
        start_pipewire(&config, bus, pump_config)?
    } else {
        CameraPump::start(V4l2Sink::open(&config)?, bus.subscribe(), pump_config, |_| {})?
    };
    eprintln!("livetalk: camera {device} ({}x{} {}, 30 fps)", width, height, args.camera_format);
    Ok(Some(pump))
}

/// The frame share for the OBS plugin (and any local consumer): the bus as BGRA and the
/// engine's audio, both with their pts, in shared memory announced on a Unix socket.
fn start_share(args: &RunArgs, bus: &FrameBus, control: &livetalk_engine::service::EngineControl) -> Result<Option<livetalk_share::ShareServer>> {
    if args.no_share {
        return Ok(None);
    }
    let options = livetalk_share::ShareOptions { socket: args.share_socket.clone(), ..Default::default() };
    let server = livetalk_share::ShareServer::start(bus, Some(control.audio_tap(256)), options).context("starting the frame share")?;
    eprintln!("livetalk: frames shared on {} (the OBS source reads them)", server.socket_path().display());
    Ok(Some(server))
}

pub fn run(args: RunArgs) -> Result<()> {
    // First, so a stop signal during start-up still ends in the clean stop below.
    let stop = crate::shutdown::StopSignals::install()?;
    let lib = presets::library(&args.persona.preset_dirs)?;
    let persona = lib.get(&args.persona.persona)?.clone();
    let speaker = crate::audio_io::speaker(&args.audio_io)?;
    // A live input replaces the greeting; --tts-url speaks --text.
    let drive = match args.audio_io.is_live() {
        true => None,
        false => match crate::audio_io::speak_text(&args.audio_io, &speaker, args.drive.text.as_deref(), &persona.voice)? {
            Some(spoken) => Some(spoken),
            None => Some(drive::resolve(args.drive.text.as_deref(), args.drive.audio.as_deref(), &persona.voice)?),
        },
    };
    if !args.no_preview && std::env::var_os("DISPLAY").is_none() {
        bail!("no X display for the preview window (DISPLAY is not set): run with --no-preview, or under a desktop session");
    }

    let bus = FrameBus::new();
    let camera = start_camera(&args, &bus, &persona).context("opening the camera")?;
    let mut options = EngineOptions::live();
    options.speech = speaker.map(|s| s as Arc<dyn livetalk_engine::service::SpeechSynth>);
    let choice = livetalk_engine::livetalk::EngineChoice {
        kind: args.engine.parse().map_err(anyhow::Error::msg)?,
        weights: args.weights.clone(),
        fixtures: args.fixtures.clone(),
        device: args.device.clone(),
        dtype: args.dtype.clone(),
        seed: args.seed,
    };
    let (engine, why) = livetalk_engine::livetalk::choose_engine(&choice, &persona).context("loading the engine")?;
    if let Some(why) = why {
        eprintln!("livetalk: {why}");
    }
    // Webcam ("me") personas are shown by the same service, so switching to the user and back
    // is an ordinary cross-faded persona switch.
    let engine = Box::new(livetalk_webcam::PersonaRouter::new(engine, livetalk_webcam::WebcamEngine::new()));
    let handle = EngineService::start(engine, persona.clone(), bus.clone(), options)
        .context("starting the engine")?;
    let control = handle.control();
    let hotkeys = crate::hotkeys::start(&args.hotkeys, &lib, control.clone())?;
    let control_api = crate::cmd_ctl::start_server(&args.control_api, control.clone(), lib)?;
    let share = start_share(&args, &bus, &control)?;
    let live = crate::audio_io::start(&args.audio_io, &control, camera.is_some().then_some(30))?;
    if let Some(drive) = &drive {
        control.push_audio(&drive.engine.samples).context("feeding the audio")?;
    }
    eprintln!(
        "livetalk: persona {} on the {} engine, driven by {}{}",
        persona.name,
        control.status().engine,
        drive.as_ref().map_or("the live input", |d| d.description.as_str()),
        if args.no_preview { "" } else { " — close the window or press Esc to stop" }
    );

    let deadline = args.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let result = if args.no_preview {
        let subscriber = bus.subscribe();
        // With a camera, its readers decide whether the engine renders (it pauses when nobody
        // reads); without one, this loop is the only watcher.
        subscriber.set_watching(camera.is_none());
        let mut seq = 0;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) || stop.received().is_some() {
                break Ok(());
            }
            if let Err(e) = live.check() {
                break Err(e);
            }
            if let Some((s, _)) = subscriber.wait_newer(seq, Duration::from_millis(200)) {
                seq = s;
            }
        }
    } else {
        preview(&bus, &persona.display_name, deadline, &live, &stop)
    };
    // Nothing new comes in, then the sinks close (the virtual microphone unloads its PulseAudio
    // modules; the sockets' files go), then the engine stops.
    drop((hotkeys, control_api, share, live));
    let status = control.status();
    if let Some(pump) = camera {
        pump.stop().context("closing the camera")?;
    }
    handle.stop().context("stopping the engine")?;
    match stop.received() {
        Some(signal) => eprintln!("livetalk: stopped on {signal} ({} frames rendered)", status.frames_rendered),
        None => eprintln!("livetalk: stopped ({} frames rendered)", status.frames_rendered),
    }
    result
}

/// A preview window at the frame size (resizable), refreshed at 30 fps from the bus.
fn preview(bus: &FrameBus, title: &str, deadline: Option<Instant>, live: &crate::audio_io::LiveAudio, stop: &crate::shutdown::StopSignals) -> Result<()> {
    let subscriber = bus.subscribe();
    let first = subscriber
        .wait_newer(0, Duration::from_secs(10))
        .map(|(_, f)| f)
        .context("the engine published no frame within 10 s")?;
    let (w, h) = (first.width as usize, first.height as usize);
    let mut window = minifb::Window::new(
        &format!("livetalk — {title}"),
        w,
        h,
        minifb::WindowOptions { resize: true, scale_mode: minifb::ScaleMode::AspectRatioStretch, ..Default::default() },
    )
    .context("opening the preview window")?;
    window.set_target_fps(30);
    let mut pixels = vec![0u32; w * h];
    while window.is_open() && !window.is_key_down(minifb::Key::Escape) {
        if deadline.is_some_and(|d| Instant::now() >= d) || stop.received().is_some() {
            break;
        }
        live.check()?;
        if let Some((_, frame)) = subscriber.latest() {
            if frame.width as usize == w && frame.height as usize == h {
                let rgba = livetalk_core::convert::convert_frame(&frame, PixelFormat::Rgba, ColorSpec::default())?;
                for (dst, px) in pixels.iter_mut().zip(rgba.data.chunks_exact(4)) {
                    *dst = (px[0] as u32) << 16 | (px[1] as u32) << 8 | px[2] as u32;
                }
            }
        }
        window.update_with_buffer(&pixels, w, h).context("drawing the preview window")?;
    }
    Ok(())
}
