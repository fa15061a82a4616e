//! The "me" persona through the real engine service: the CPU avatar and a webcam behind one
//! `PersonaRouter`, switched both ways with a cross-fade and never a black frame; the camera is
//! open only while the user is shown; a camera that sends nothing fails the switch clearly.
//!
//! The pictures come from a `CaptureFeed` (the device side is tested against a real V4L2
//! device in tests/vm). Time bounds are generous correctness bounds, not speed measurements.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use livetalk_core::{FrameBus, Persona, PixelFormat, VideoFrame};
use livetalk_engine::service::{CpuAvatarEngine, EngineEvent, EngineHandle, EngineOptions, EngineService};
use livetalk_webcam::{Capture, CaptureFeed, PersonaRouter, WebcamEngine, WebcamOpener};
use parking_lot::Mutex;

const LONG: Duration = Duration::from_secs(30);
const GREEN: [u8; 3] = [30, 200, 60];

fn persona(toml: &str, name: &str) -> Persona {
    Persona::from_toml_str(&format!("size = \"160x120\"\n{toml}"), format!("/nonexistent/{name}.toml")).unwrap()
}

fn wait_event(events: &Receiver<EngineEvent>, what: &str, matches: impl Fn(&EngineEvent) -> bool) -> EngineEvent {
    let deadline = Instant::now() + LONG;
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(event) if matches(&event) => return event,
            Ok(_) => {}
            Err(_) => panic!("no {what} event within {LONG:?}"),
        }
    }
}

fn pixel(frame: &VideoFrame, x: u32, y: u32) -> [u8; 3] {
    let rgba = frame.convert(PixelFormat::Rgba, Default::default()).unwrap();
    let i = ((y * frame.width + x) * 4) as usize;
    [rgba.data[i], rgba.data[i + 1], rgba.data[i + 2]]
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12)
}

/// A camera that sends a 16:9 green picture at 30 fps while its capture is open; it remembers
/// every feed it was opened with, so the test can see when the capture is closed.
struct FakeCamera {
    feeds: Arc<Mutex<Vec<CaptureFeed>>>,
}

impl FakeCamera {
    fn opener(sends_pictures: bool) -> (WebcamOpener, Self) {
        let feeds = Arc::new(Mutex::new(Vec::new()));
        let camera = FakeCamera { feeds: feeds.clone() };
        let opener: WebcamOpener = Arc::new(move |webcam| {
            let (capture, feed) = Capture::feed(&webcam.to_string());
            feeds.lock().push(feed.clone());
            if sends_pictures {
                thread::spawn(move || {
                    while !feed.is_stopped() {
                        feed.push(VideoFrame::solid(320, 180, PixelFormat::Rgb24, GREEN, Duration::ZERO).unwrap());
                        thread::sleep(Duration::from_millis(33));
                    }
                });
            }
            Ok(capture)
        });
        (opener, camera)
    }

    fn open_captures(&self) -> usize {
        self.feeds.lock().iter().filter(|f| !f.is_stopped()).count()
    }
}

fn start(opener: WebcamOpener, first: Persona) -> (EngineHandle, FrameBus) {
    let router = PersonaRouter::new(Box::new(CpuAvatarEngine::new(5)), WebcamEngine::with_opener(opener));
    let bus = FrameBus::new();
    let handle = EngineService::start(Box::new(router), first, bus.clone(), EngineOptions::live()).unwrap();
    (handle, bus)
}

/// Watches the bus until dropped; `true` if it ever showed a black frame.
struct BlackWatch(Arc<AtomicBool>, Arc<AtomicBool>, Option<thread::JoinHandle<()>>);

impl BlackWatch {
    fn start(bus: &FrameBus) -> Self {
        let (black, running) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(true)));
        let subscriber = bus.subscribe();
        let thread = {
            let (black, running) = (black.clone(), running.clone());
            thread::spawn(move || {
                let mut seq = 0;
                while running.load(Ordering::SeqCst) {
                    if let Some((next, frame)) = subscriber.wait_newer(seq, Duration::from_millis(50)) {
                        seq = next;
                        let rgba = frame.convert(PixelFormat::Rgba, Default::default()).unwrap();
                        let mean = rgba.data.iter().map(|&v| v as u64).sum::<u64>() / rgba.data.len() as u64;
                        if mean < 20 {
                            black.store(true, Ordering::SeqCst);
                        }
                    }
                }
            })
        };
        BlackWatch(black, running, Some(thread))
    }

    fn saw_black(mut self) -> bool {
        self.1.store(false, Ordering::SeqCst);
        self.2.take().unwrap().join().unwrap();
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn one_service_flips_between_the_avatar_and_the_webcam() {
    let (opener, camera) = FakeCamera::opener(true);
    let avatar = persona("name = \"anna\"\nbackground = \"#c03020\"", "anna");
    let me = persona("name = \"me\"\nwebcam = \"/dev/video3\"\nbackground = \"#2040c0\"", "me");
    let (handle, bus) = start(opener, avatar.clone());
    let watch = BlackWatch::start(&bus);
    let events = handle.events();
    let tap = handle.frame_tap(4096);
    handle.wait_for_status(LONG, |s| s.frames_rendered >= 10).expect("the avatar renders");
    assert_eq!(camera.open_captures(), 0, "no camera is open while the avatar is shown");
    let avatar_corner = pixel(&tap.recv_timeout(LONG).unwrap(), 1, 1);

    handle.switch_persona(me).unwrap();
    wait_event(&events, "persona changed to me", |e| matches!(e, EngineEvent::PersonaChanged { persona, .. } if persona == "me"));
    assert_eq!(camera.open_captures(), 1);
    // Past the 300 ms fade: the webcam's picture, fitted (16:9 into 4:3: bars of the backdrop).
    thread::sleep(Duration::from_millis(600));
    let mut last = None;
    while let Some(frame) = tap.try_recv() {
        last = Some(frame);
    }
    let frame = last.expect("frames after the switch");
    assert!(near(pixel(&frame, 80, 60), GREEN), "centre {:?}", pixel(&frame, 80, 60));
    assert!(near(pixel(&frame, 2, 2), [0x20, 0x40, 0xc0]), "bar {:?}", pixel(&frame, 2, 2));
    assert_eq!(handle.status().persona, "me");

    handle.switch_persona(avatar).unwrap();
    let changed = wait_event(&events, "persona changed to anna", |e| matches!(e, EngineEvent::PersonaChanged { persona, .. } if persona == "anna"));
    let EngineEvent::PersonaChanged { time_to_first_frame, .. } = changed else { unreachable!() };
    assert!(time_to_first_frame < LONG);
    let deadline = Instant::now() + Duration::from_secs(5);
    while camera.open_captures() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(camera.open_captures(), 0, "the camera is closed once the avatar is back");
    thread::sleep(Duration::from_millis(600));
    let mut last = None;
    while let Some(frame) = tap.try_recv() {
        last = Some(frame);
    }
    let corner = pixel(&last.unwrap(), 1, 1);
    assert!(near(corner, avatar_corner), "the avatar's background again: {corner:?}, before {avatar_corner:?}");
    assert!(!watch.saw_black(), "the bus showed a black frame");
    handle.stop().unwrap();
}

#[test]
fn a_silent_or_missing_webcam_fails_the_switch_and_the_avatar_streams_on() {
    let (opener, camera) = FakeCamera::opener(false);
    let avatar = persona("name = \"anna\"\nbackground = \"#c03020\"", "anna");
    let (handle, _bus) = start(opener, avatar);
    let events = handle.events();
    let _watching = handle.frame_tap(4096);
    handle.wait_for_status(LONG, |s| s.frames_rendered >= 5).expect("the avatar renders");
    handle.switch_persona(persona("name = \"me\"\nwebcam = \"2\"", "me")).unwrap();
    let error = wait_event(&events, "error", |e| matches!(e, EngineEvent::Error { .. }));
    let EngineEvent::Error { message, .. } = error else { unreachable!() };
    assert!(
        message.contains("switching to persona `me`") && message.contains("webcam 2 delivered no picture"),
        "{message}"
    );
    let before = handle.status().frames_rendered;
    handle.wait_for_status(LONG, |s| s.frames_rendered > before + 5).expect("the avatar goes on");
    assert_eq!(handle.status().persona, "anna");
    assert_eq!(camera.open_captures(), 0, "the silent camera was closed again");
    handle.stop().unwrap();

    // The real opener in a build without the feature: the error says how to get it.
    if cfg!(not(feature = "nokhwa")) {
        let router = PersonaRouter::new(Box::new(CpuAvatarEngine::new(5)), WebcamEngine::new());
        let handle = EngineService::start(
            Box::new(router),
            persona("name = \"anna\"", "anna"),
            FrameBus::new(),
            EngineOptions::live(),
        )
        .unwrap();
        let events = handle.events();
        handle.switch_persona(persona("name = \"me\"\nwebcam = \"default\"", "me")).unwrap();
        let EngineEvent::Error { message, .. } = wait_event(&events, "error", |e| matches!(e, EngineEvent::Error { .. })) else {
            unreachable!()
        };
        assert!(message.contains("--features webcam"), "{message}");
    }
}
