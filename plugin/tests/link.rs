//! The plugin's link against a real frame share (livetalk-share's server over a FrameBus, as
//! `livetalk run` serves it): placeholder while no engine, the engine's frames and audio with
//! one timestamp mapping once it is there, the placeholder again when it goes, and a reconnect
//! when it comes back, all without the output ever waiting.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use livetalk_core::{AudioChunk, FrameBus, PixelFormat, VideoFrame};
use livetalk_obs::link::{AudioOut, Link, LinkSettings, LinkState, Output, VideoOut};
use livetalk_obs::placeholder::BACKGROUND;
use livetalk_share::{ShareOptions, ShareServer};

#[derive(Debug, Clone)]
enum Out {
    Video { timestamp: u64, size: (u32, u32), first_pixel: [u8; 4], placeholder: bool },
    Audio { timestamp: u64, first_sample: f32, len: usize },
}

struct Recorder(Sender<Out>);

impl Output for Recorder {
    fn video(&mut self, f: &VideoOut) {
        let first_pixel = [f.bgra[0], f.bgra[1], f.bgra[2], f.bgra[3]];
        let _ = self.0.send(Out::Video { timestamp: f.timestamp, size: (f.width, f.height), first_pixel, placeholder: f.placeholder });
    }
    fn audio(&mut self, a: &AudioOut) {
        assert_eq!(a.rate, 16_000);
        let _ = self.0.send(Out::Audio { timestamp: a.timestamp, first_sample: a.samples[0], len: a.samples.len() });
    }
}

fn next_where(rx: &Receiver<Out>, what: &str, want: impl Fn(&Out) -> bool) -> Out {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(out) if want(&out) => return out,
            Ok(_) => {}
            Err(_) => panic!("no {what} within 10 s"),
        }
    }
}

/// An engine stand-in: frames whose pts is their number × 40 ms and colour their number, and
/// audio whose samples carry their own pts in ms, so the test can check the stamp mapping.
struct Engine {
    server: Option<ShareServer>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Engine {
    fn start(socket: &Path) -> Engine {
        let bus = FrameBus::new();
        let (tx, rx) = crossbeam_channel::bounded(64);
        let server = ShareServer::start(&bus, Some(rx), ShareOptions { socket: Some(socket.into()), ..Default::default() }).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let pts = Duration::from_millis(n * 40);
                let frame = VideoFrame::solid(64, 36, PixelFormat::Rgba, [n as u8, 0, 0], pts).unwrap();
                bus.publish(Arc::new(frame));
                let audio_pts = pts + Duration::from_millis(200); // the audio runs ahead, as in the engine
                let _ = tx.try_send(AudioChunk::engine_mono(vec![audio_pts.as_millis() as f32; 640], audio_pts));
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        Engine { server: Some(server), stop, thread: Some(thread) }
    }

    fn kill(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn placeholder_then_engine_then_placeholder_then_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("livetalk/frames.sock");
    let (tx, rx) = crossbeam_channel::unbounded();
    let sync_buffer = Duration::from_millis(100);
    let settings = LinkSettings { socket: socket.clone(), size: None, stale_after: Duration::from_secs(1), retry_every: Duration::from_millis(50), sync_buffer, audio_after_render: false };
    let link = Link::start(settings, Box::new(Recorder(tx))).unwrap();

    // No engine: the placeholder, at the default size.
    let Out::Video { size, first_pixel, timestamp: placeholder_stamp, .. } = next_where(&rx, "placeholder", |o| matches!(o, Out::Video { placeholder: true, .. })) else { unreachable!() };
    assert_eq!(size, (1280, 720));
    assert_eq!(first_pixel, [BACKGROUND[2], BACKGROUND[1], BACKGROUND[0], 255]);
    assert!(matches!(link.shared().state(), LinkState::Waiting(_)));

    // The engine comes: its frames (BGRA of the RGBA it published) and its audio.
    let mut engine = Engine::start(&socket);
    let mut frame_stamps = Vec::new();
    let mut audio = Vec::new();
    while frame_stamps.len() < 10 || audio.len() < 10 {
        match next_where(&rx, "engine output", |_| true) {
            Out::Video { timestamp, size, first_pixel, placeholder } => {
                assert!(!placeholder, "placeholder while the engine runs");
                assert_eq!(size, (64, 36));
                // Blue, green, red, alpha: red carries the frame number n, pts n × 40 ms.
                frame_stamps.push((timestamp, first_pixel[2] as u64 * 40));
            }
            Out::Audio { timestamp, first_sample, len } => {
                assert_eq!(len, 640);
                audio.push((timestamp, first_sample as u64));
            }
        }
    }
    assert!(matches!(link.shared().state(), LinkState::Connected(pid) if pid == std::process::id()));
    // The sync buffer: the engine's first frame is stamped that long after the placeholder
    // (stamped when shown), so OBS holds it and frames up to that late still show in step.
    assert!(frame_stamps[0].0 >= placeholder_stamp + sync_buffer.as_nanos() as u64, "first frame not held by the sync buffer");
    // One mapping for both: stamp − pts is the same for every frame and every audio block.
    let offset = |(stamp, pts_ms): (u64, u64)| stamp as i128 - pts_ms as i128 * 1_000_000;
    let first = offset(frame_stamps[0]);
    for item in frame_stamps.iter().chain(&audio) {
        assert!((offset(*item) - first).abs() < 1_000_000, "stamp off the shared mapping: {item:?}");
    }

    // The engine dies: the placeholder, at the engine's last size; the link keeps running.
    engine.kill();
    let Out::Video { size, .. } = next_where(&rx, "placeholder after the engine died", |o| matches!(o, Out::Video { placeholder: true, .. })) else { unreachable!() };
    assert_eq!(size, (64, 36));

    // A new engine: the link reconnects by itself; its frames are stamped after the old ones.
    let _engine = Engine::start(&socket);
    let Out::Video { timestamp, .. } = next_where(&rx, "frames from the new engine", |o| matches!(o, Out::Video { placeholder: false, .. })) else { unreachable!() };
    assert!(timestamp > frame_stamps.last().unwrap().0);
    assert!(matches!(link.shared().state(), LinkState::Connected(_)));
}

/// OBS places a stream's audio by the last frame it showed: a new session's audio waits until
/// its first frame is due and OBS has ticked twice more, so it is placed by that frame.
#[test]
fn audio_waits_until_obs_has_shown_the_first_frame() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("livetalk/frames.sock");
    let (tx, rx) = crossbeam_channel::unbounded();
    let sync_buffer = Duration::from_millis(60);
    let settings = LinkSettings { socket: socket.clone(), size: None, stale_after: Duration::from_secs(1), retry_every: Duration::from_millis(50), sync_buffer, audio_after_render: true };
    let link = Link::start(settings, Box::new(Recorder(tx))).unwrap();
    next_where(&rx, "placeholder", |o| matches!(o, Out::Video { placeholder: true, .. }));
    let _engine = Engine::start(&socket);
    let Out::Video { timestamp: first_frame, first_pixel, .. } = next_where(&rx, "the engine's first frame", |o| matches!(o, Out::Video { placeholder: false, .. })) else { unreachable!() };
    let frame_offset = first_frame as i128 - first_pixel[2] as i128 * 40 * 1_000_000;
    let first_frame_seen = Instant::now();

    // No ticks: frames keep coming, audio does not, well past the frame's due time.
    let until = Instant::now() + sync_buffer + Duration::from_millis(400);
    let mut frames = 0;
    while Instant::now() < until {
        if let Ok(out) = rx.recv_timeout(Duration::from_millis(20)) {
            match out {
                Out::Audio { .. } => panic!("audio before OBS showed the first frame"),
                Out::Video { .. } => frames += 1,
            }
        }
    }
    assert!(frames >= 5, "frames stopped while audio waited: {frames}");

    // Two ticks after the frame is due: the held audio follows, on the session's mapping.
    link.shared().video_tick();
    link.shared().video_tick();
    let Out::Audio { timestamp, first_sample, .. } = next_where(&rx, "audio after two ticks", |o| matches!(o, Out::Audio { .. })) else { unreachable!() };
    assert!(first_frame_seen.elapsed() >= sync_buffer);
    // The held audio keeps the session's mapping: stamp − pts as for the first frame.
    let audio_offset = timestamp as i128 - first_sample as i128 * 1_000_000;
    assert!((audio_offset - frame_offset).abs() < 1_000_000, "audio stamped off the session's mapping");
}
