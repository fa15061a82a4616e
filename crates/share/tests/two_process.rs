//! The share across two real processes: this test binary re-runs itself as the engine side (a
//! `ShareServer` over a `FrameBus` fed with patterned frames and audio), and the parent reads it
//! through a `ShareClient` the way the OBS plugin does. Its own harness: the child role is
//! chosen by an environment variable, which libtest has no hook for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livetalk_core::{AudioChunk, FrameBus, PixelFormat, VideoFrame};
use livetalk_share::{FrameRead, Health, RingConfig, ShareClient, ShareOptions, ShareServer};

const CHILD_ENV: &str = "LIVETALK_SHARE_TEST_SERVE";

fn main() {
    if let Ok(socket) = std::env::var(CHILD_ENV) {
        serve(Path::new(&socket));
    }
    let tests: [(&str, fn()); 3] = [
        ("frames_and_audio_cross_processes_whole", frames_and_audio_cross_processes_whole),
        ("a_killed_engine_is_seen_at_once", a_killed_engine_is_seen_at_once),
        ("a_stopped_engine_is_stalled_then_alive_again", a_stopped_engine_is_stalled_then_alive_again),
    ];
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut passed = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        test();
        println!("test {name} ... ok");
        passed += 1;
    }
    println!("\ntest result: ok. {passed} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

/// The child: frames whose every byte is `frame number % 251` (RGBA in, so the BGRA
/// conversion runs too), one every 5 ms, and 10 ms audio chunks whose samples are their index.
fn serve(socket: &Path) -> ! {
    let bus = FrameBus::new();
    let (audio_tx, audio_rx) = crossbeam_channel::bounded(64);
    let options = ShareOptions { socket: Some(socket.to_path_buf()), ring: RingConfig { slots: 2, ..Default::default() } };
    let _server = ShareServer::start(&bus, Some(audio_rx), options).expect("serving");
    let mut n: u64 = 0;
    loop {
        n += 1;
        let pts = Duration::from_millis(n * 5);
        let value = (n % 251) as u8;
        let frame = VideoFrame::new(320, 180, PixelFormat::Rgba, vec![value; 320 * 180 * 4], pts).unwrap();
        bus.publish(Arc::new(frame));
        if n.is_multiple_of(2) {
            let first = (n / 2 - 1) * 160;
            let samples = (first..first + 160).map(|i| i as f32).collect();
            let _ = audio_tx.try_send(AudioChunk::engine_mono(samples, Duration::from_micros(first * 62_500 / 1000)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Engine {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Engine {
    fn start() -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("livetalk/frames.sock");
        let child = Command::new(std::env::current_exe().unwrap()).env(CHILD_ENV, &socket).spawn().expect("spawning the engine side");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the child never served {}", socket.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        Engine { child, socket, _dir: dir }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(engine: &Engine) -> ShareClient {
    let mut client = ShareClient::connect(&engine.socket, Duration::from_secs(5)).expect("connecting");
    client.set_watching(true).unwrap();
    client
}

fn frames_and_audio_cross_processes_whole() {
    let engine = Engine::start();
    let mut client = connect(&engine);
    assert_ne!(client.reader().writer_pid(), std::process::id());
    let mut buf = Vec::new();
    let (mut frames, mut last_no) = (0, 0);
    let mut audio = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && (frames < 100 || audio.len() < 20) {
        if let FrameRead::Frame(meta) = client.reader().read_frame(&mut buf) {
            assert!(meta.frame_no > last_no, "frames go forward");
            last_no = meta.frame_no;
            assert_eq!((meta.width, meta.height, buf.len()), (320, 180, 320 * 180 * 4));
            // Every byte of a returned frame comes from one frame: the seqlock dropped any
            // copy the writer overwrote (the ring has 2 slots and a frame every 5 ms).
            let value = ((meta.pts.as_millis() / 5) % 251) as u8;
            assert!(buf.iter().all(|&b| b == value), "a mixed frame came through (frame {} pts {:?}: want {value}, bytes {:?} … {:?})", meta.frame_no, meta.pts, &buf[..8], &buf[buf.len() - 8..]);
            frames += 1;
        }
        client.reader().read_audio(&mut audio);
        assert_eq!(client.health(Duration::from_secs(2)), Health::Alive);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(frames >= 100, "only {frames} frames in 3 s");
    assert!(audio.len() >= 20, "only {} audio blocks in 3 s", audio.len());
    // Audio arrives in order, contiguous, each block stamped with its first sample's pts.
    let samples: Vec<f32> = audio.iter().flat_map(|p| p.samples.iter().copied()).collect();
    let first = samples[0] as u64;
    assert!(samples.iter().enumerate().all(|(i, &s)| s as u64 == first + i as u64), "audio has gaps");
    for piece in &audio {
        assert_eq!(piece.pts, Duration::from_micros(piece.samples[0] as u64 * 62_500 / 1000));
    }
    assert_eq!(client.reader().lost_blocks(), 0);
}

fn a_killed_engine_is_seen_at_once() {
    let engine = Engine::start();
    let mut client = connect(&engine);
    assert_eq!(client.health(Duration::from_secs(2)), Health::Alive);
    engine.signal("-KILL");
    let killed = Instant::now();
    loop {
        match client.health(Duration::from_secs(60)) {
            Health::Gone(why) => {
                assert!(why.contains("closed"), "{why}");
                break;
            }
            other => assert!(killed.elapsed() < Duration::from_secs(2), "still {other:?} 2 s after SIGKILL"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The last frames stay readable from the mapping: the plugin decides what to show.
    let mut buf = Vec::new();
    let _ = client.reader().read_frame(&mut buf);
    assert!(ShareClient::connect(&engine.socket, Duration::from_millis(200)).is_err());
}

fn a_stopped_engine_is_stalled_then_alive_again() {
    let engine = Engine::start();
    let mut client = connect(&engine);
    let stale = Duration::from_millis(300);
    engine.signal("-STOP");
    let stopped = Instant::now();
    let stalled = loop {
        match client.health(stale) {
            Health::Stalled(age) => break age,
            other => assert!(stopped.elapsed() < Duration::from_secs(3), "still {other:?} 3 s after SIGSTOP"),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(stalled > stale);
    engine.signal("-CONT");
    let resumed = Instant::now();
    while client.health(stale) != Health::Alive {
        assert!(resumed.elapsed() < Duration::from_secs(3), "no heartbeat 3 s after SIGCONT");
        std::thread::sleep(Duration::from_millis(10));
    }
}
