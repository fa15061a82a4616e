//! Test driver for the camera end-to-end tests (tests/vm, tests/pipewire).
//!
//! `livetalk-vcam-test write`: a stand-in engine publishes the test pattern (crate
//! `test_pattern`) at 16 fps on a real frame bus, pausing whenever the bus has no watcher, and
//! the real camera pump writes it to a v4l2loopback device. It prints one line per event:
//!   OPENED <path> card=<label> version=<v> usage=<events|scan> fps=<n/d>
//!   DEMAND watching|idle t=<s>      (the pump saw readers come or go)
//!   ENGINE paused|resumed frame=<n> t=<s>
//!   STATS written=<n> composed=<n> published=<n>   (on SIGTERM/SIGINT or --seconds)
//!   ERROR <message>                  (exit status 2 on open errors, 3 on errors while writing)
//! `livetalk-vcam-test doctor`: the camera doctor checks; exit status 1 if one failed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use livetalk_core::bus::FrameBus;
use livetalk_core::clock::FrameClock;
use livetalk_vcam::compose::Backdrop;
use livetalk_vcam::pump::{CameraOutput, CameraPump, Demand, PumpConfig};
use livetalk_vcam::{doctor, test_pattern, CameraFormat, DeviceSelector, SinkConfig, UsageSource, V4l2Sink};

#[derive(Parser)]
#[command(about = "livetalk camera test driver")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the test pattern to a v4l2loopback device until SIGTERM or --seconds.
    Write {
        /// A device path (/dev/video10) or a card label (livetalk).
        #[arg(long, default_value = "livetalk")]
        device: String,
        #[arg(long, default_value = "1280x720")]
        size: String,
        /// yuyv or i420
        #[arg(long, default_value = "yuyv")]
        format: String,
        #[arg(long, default_value_t = 30)]
        fps: u32,
        /// Stop after this many seconds (0: run until signalled).
        #[arg(long, default_value_t = 0.0)]
        seconds: f64,
    },
    /// Publish the test pattern as a PipeWire camera node (feature `pipewire`).
    #[cfg(feature = "pipewire")]
    Pipewire {
        #[arg(long, default_value = "livetalk")]
        node_name: String,
        #[arg(long, default_value = "1280x720")]
        size: String,
        #[arg(long, default_value = "yuyv")]
        format: String,
        #[arg(long, default_value_t = 30)]
        fps: u32,
        #[arg(long, default_value_t = 0.0)]
        seconds: f64,
    },
    /// Print the camera doctor checks.
    Doctor,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() {
    let args = Args::parse();
    let code = match args.command {
        Command::Doctor => {
            let checks = doctor::doctor_checks();
            for check in &checks {
                println!("{check}");
            }
            if doctor::all_passed(&checks) { 0 } else { 1 }
        }
        Command::Write { device, size, format, fps, seconds } => write(&device, &size, &format, fps, seconds),
        #[cfg(feature = "pipewire")]
        Command::Pipewire { node_name, size, format, fps, seconds } => {
            pipewire_node(&node_name, &size, &format, fps, seconds)
        }
    };
    std::process::exit(code);
}

fn parse_size_format(size: &str, format: &str) -> Option<(u32, u32, CameraFormat)> {
    let Some((width, height)) = size.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?))) else {
        println!("ERROR --size {size:?} is not WIDTHxHEIGHT, e.g. 1280x720");
        return None;
    };
    let Some(format) = CameraFormat::parse(format) else {
        println!("ERROR --format {format:?} is neither yuyv nor i420");
        return None;
    };
    Some((width, height, format))
}

fn write(device: &str, size: &str, format: &str, fps: u32, seconds: f64) -> i32 {
    let Some((width, height, format)) = parse_size_format(size, format) else { return 2 };
    let config = SinkConfig { device: DeviceSelector::parse(device), width, height, format, fps };
    let sink = match V4l2Sink::open(&config) {
        Ok(sink) => sink,
        Err(e) => {
            println!("ERROR {e}");
            return 2;
        }
    };
    let info = sink.info();
    println!(
        "OPENED {} card={:?} version={} usage={} fps={}/{}",
        info.path.display(),
        info.card,
        info.module_version.as_deref().unwrap_or("0.12.x"),
        if info.usage_source == UsageSource::ClientUsageEvents { "events" } else { "scan" },
        info.fps.0,
        info.fps.1
    );
    run_pattern(sink, PumpConfig::for_sink(&config), seconds)
}

#[cfg(feature = "pipewire")]
fn pipewire_node(node_name: &str, size: &str, format: &str, fps: u32, seconds: f64) -> i32 {
    use livetalk_vcam::pipewire::{PipeWireCamera, PipeWireConfig};
    let Some((width, height, format)) = parse_size_format(size, format) else { return 2 };
    let config = PipeWireConfig { width, height, format, fps, node_name: node_name.into(), ..Default::default() };
    let camera = match PipeWireCamera::start(config) {
        Ok(camera) => camera,
        Err(e) => {
            println!("ERROR {e}");
            return 2;
        }
    };
    println!("OPENED pipewire node={node_name} {width}x{height} {format} fps={fps}/1");
    let sink = SinkConfig { width, height, format, fps, ..Default::default() };
    run_pattern(camera, PumpConfig::for_sink(&sink), seconds)
}

/// Runs the stand-in engine and the camera pump into `output` until signalled or `seconds`.
fn run_pattern(output: impl CameraOutput + 'static, mut pump_config: PumpConfig, seconds: f64) -> i32 {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }

    let start = Instant::now();
    let bus = FrameBus::new();
    let published = Arc::new(AtomicU64::new(0));
    // Subscribe before the engine starts, so it does not begin paused.
    let subscriber = bus.subscribe();
    let engine = {
        let (bus, published) = (bus.clone(), published.clone());
        std::thread::spawn(move || stand_in_engine(&bus, &published, start))
    };
    pump_config.backdrop = Backdrop::Colour(test_pattern::BACKDROP);
    let on_demand = move |demand: Demand| {
        let what = if demand == Demand::Watching { "watching" } else { "idle" };
        println!("DEMAND {what} t={:.3}", start.elapsed().as_secs_f64());
    };
    let pump = match CameraPump::start(output, subscriber, pump_config, on_demand) {
        Ok(pump) => pump,
        Err(e) => {
            println!("ERROR {e}");
            return 2;
        }
    };
    while !STOP.load(Ordering::SeqCst) && pump.is_running() && (seconds <= 0.0 || start.elapsed().as_secs_f64() < seconds) {
        std::thread::sleep(Duration::from_millis(20));
    }
    STOP.store(true, Ordering::SeqCst);
    let result = pump.stop();
    let _ = engine.join();
    match result {
        Ok(stats) => {
            println!(
                "STATS written={} composed={} published={}",
                stats.written,
                stats.composed,
                published.load(Ordering::SeqCst)
            );
            0
        }
        Err(e) => {
            println!("ERROR {e}");
            3
        }
    }
}

/// Publishes pattern frames at 16 fps with pts on the frame clock, like the engine: it parks
/// while nobody watches, and its clock stands still meanwhile (pts continue where they stopped).
fn stand_in_engine(bus: &FrameBus, published: &AtomicU64, start: Instant) {
    let clock = FrameClock::default();
    let mut origin = Instant::now();
    let mut number = 0u64;
    while !STOP.load(Ordering::SeqCst) {
        if bus.watcher_count() == 0 {
            println!("ENGINE paused frame={number} t={:.3}", start.elapsed().as_secs_f64());
            let paused_at = Instant::now();
            // Parks on the bus; wakes every 100 ms only to see whether it should stop.
            while !STOP.load(Ordering::SeqCst) {
                if bus.wait_for_watchers(Duration::from_millis(100)) {
                    break;
                }
            }
            origin += paused_at.elapsed();
            println!("ENGINE resumed frame={number} t={:.3}", start.elapsed().as_secs_f64());
            continue;
        }
        let pts = clock.pts_of(number);
        bus.publish(Arc::new(test_pattern::frame(number, pts)));
        published.fetch_add(1, Ordering::SeqCst);
        number += 1;
        let due = origin + clock.pts_of(number);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}
