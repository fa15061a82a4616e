//! The engine service around the real CPU avatar engine (wrapped in the fault injector where
//! faults are needed): pts, persona switch, idling, fault recovery, determinism.
//!
//! Time bounds here are correctness bounds with generous slack (the CI machine has two slow
//! cores), never speed measurements.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use livetalk_core::{FrameBus, Persona, PixelFormat, VideoFrame};
use livetalk_engine::engine::{AvatarEngine, EngineError};
use livetalk_engine::service::faults::{Fault, FaultInjector, FaultSwitch};
use livetalk_engine::service::{
    CpuAvatarEngine, EngineEvent, EngineHandle, EngineOptions, EngineService, EngineState,
    SpeechSynth,
};

const WIDTH: u32 = 160;
const HEIGHT: u32 = 120;
/// Generous: the CI machine has two slow cores and runs these tests side by side.
const LONG: Duration = Duration::from_secs(30);

fn persona(name: &str, background: &str) -> Persona {
    let toml =
        format!("name = \"{name}\"\nbackground = \"{background}\"\nsize = \"{WIDTH}x{HEIGHT}\"\n");
    Persona::from_toml_str(&toml, format!("/nonexistent/{name}.toml")).unwrap()
}

/// Voice-like test audio: a 220 Hz tone whose loudness swings three times a second.
fn speech(seconds: f32) -> Vec<f32> {
    let count = (seconds * 16_000.0) as usize;
    (0..count)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let envelope = 0.5 + 0.5 * (std::f32::consts::TAU * 3.0 * t).sin();
            0.4 * envelope * (std::f32::consts::TAU * 220.0 * t).sin()
        })
        .collect()
}

fn cpu_engine(seed: u64) -> Box<dyn AvatarEngine> {
    Box::new(CpuAvatarEngine::new(seed))
}

fn faulty_engine(seed: u64) -> (Box<dyn AvatarEngine>, FaultSwitch) {
    let (engine, switch) = FaultInjector::new(cpu_engine(seed));
    (Box::new(engine), switch)
}

/// Waits for the first event that `matches`, failing the test after [`LONG`].
fn wait_event(
    events: &Receiver<EngineEvent>,
    what: &str,
    matches: impl Fn(&EngineEvent) -> bool,
) -> EngineEvent {
    let deadline = Instant::now() + LONG;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if matches(&event) => return event,
            Ok(_) => {}
            Err(_) => panic!("no {what} event within {LONG:?}"),
        }
    }
}

fn wait_status(
    handle: &EngineHandle,
    what: &str,
    condition: impl Fn(&livetalk_engine::service::EngineStatus) -> bool,
) {
    if handle.wait_for_status(LONG, condition).is_none() {
        panic!("status never became {what}: {:?}", handle.status());
    }
}

/// The RGB of the top-left pixel (the background, which nothing moves over).
fn corner(frame: &VideoFrame) -> [u8; 3] {
    assert_eq!(frame.format, PixelFormat::Rgba);
    [frame.data[0], frame.data[1], frame.data[2]]
}

/// Mean of the RGB bytes: near 0 for a black frame.
fn brightness(frame: &VideoFrame) -> f64 {
    let rgb: u64 = frame
        .data
        .chunks_exact(4)
        .map(|p| p[0] as u64 + p[1] as u64 + p[2] as u64)
        .sum();
    rgb as f64 / (frame.data.len() / 4 * 3) as f64
}

/// Renders `audio` offline and returns every frame (through a lossless frame tap).
fn render_offline(seed: u64, audio: &[f32]) -> Vec<Arc<VideoFrame>> {
    let bus = FrameBus::new();
    let handle = EngineService::start(
        cpu_engine(seed),
        persona("anna", "#336699"),
        bus,
        EngineOptions::offline(),
    )
    .unwrap();
    let events = handle.events();
    let tap = handle.frame_tap(4);
    handle.push_audio(audio).unwrap();
    handle.finish_audio();
    let mut frames = Vec::new();
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(frame) = tap.recv_timeout(Duration::from_millis(50)) {
            frames.push(frame);
            continue;
        }
        if events
            .try_iter()
            .any(|e| matches!(e, EngineEvent::Finished { .. }))
        {
            while let Some(frame) = tap.try_recv() {
                frames.push(frame);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "offline rendering did not finish"
        );
    }
    handle.stop().unwrap();
    frames
}

#[test]
fn offline_frames_carry_the_pts_of_their_audio_in_order() {
    let frames = render_offline(7, &speech(1.0));
    // 1 s of audio at 30 fps, one frame per block.
    assert_eq!(frames.len(), 30);
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame.pts,
            Duration::from_nanos(i as u64 * 1_000_000_000 / 30),
            "frame {i}"
        );
        assert_eq!(
            (frame.width, frame.height, frame.format),
            (WIDTH, HEIGHT, PixelFormat::Rgba)
        );
    }
    // The audio drives the picture: the mouth moves, so frames differ.
    let distinct = frames.windows(2).filter(|w| w[0].data != w[1].data).count();
    assert!(
        distinct > 10,
        "only {distinct} frame changes in 1 s of speech"
    );
}

#[test]
fn offline_rendering_is_deterministic_for_a_seed() {
    let audio = speech(0.8);
    let first = render_offline(11, &audio);
    let second = render_offline(11, &audio);
    assert_eq!(first.len(), 24);
    assert_eq!(first.len(), second.len());
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        assert!(
            a == b,
            "frame {i} differs between two runs with the same seed"
        );
    }
}

#[test]
fn status_and_events_report_the_run() {
    let bus = FrameBus::new();
    let handle = EngineService::start(
        cpu_engine(1),
        persona("anna", "#336699"),
        bus.clone(),
        EngineOptions::offline(),
    )
    .unwrap();
    let events = handle.events();
    let _watcher = bus.subscribe();
    handle.push_audio(&speech(0.5)).unwrap();
    handle.finish_audio();
    wait_event(&events, "speaking started", |e| {
        matches!(e, EngineEvent::SpeakingStarted { .. })
    });
    let finished = wait_event(&events, "finished", |e| {
        matches!(e, EngineEvent::Finished { .. })
    });
    assert_eq!(
        finished,
        EngineEvent::Finished {
            pts: Duration::from_millis(500)
        }
    );
    let status = handle.status();
    assert_eq!(status.engine, "cpu-avatar");
    assert_eq!(status.persona, "anna");
    assert_eq!(status.target_fps, 30);
    assert_eq!(status.frames_rendered, 15);
    assert_eq!(
        status.state,
        EngineState::Idle,
        "offline audio used up: the engine idles"
    );
    assert_eq!(
        status.last_pts,
        Duration::from_nanos(14 * 1_000_000_000 / 30)
    );
    assert!(status.latency >= Duration::from_nanos(1_000_000_000 / 30));
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["state"], "idle");
    assert_eq!(json["frames_rendered"], 15);
    // The presenter publishes the last frame on the bus, and it stays there.
    let deadline = Instant::now() + LONG;
    while bus.latest().map(|(_, frame)| frame.pts) != Some(status.last_pts) {
        assert!(
            Instant::now() < deadline,
            "the last frame never reached the bus"
        );
        thread::sleep(Duration::from_millis(5));
    }
    // Bad audio is one clear error; the service is unaffected.
    assert!(matches!(
        handle.push_audio(&[f32::NAN]),
        Err(EngineError::InvalidInput(_))
    ));
    assert!(handle.say("hello").is_err(), "no text-to-speech configured");
    handle.stop().unwrap();
}

#[test]
fn persona_switch_cross_fades_without_a_black_frame() {
    // The CPU avatar offers siblings: the new persona is prepared while the old one streams.
    check_switch_cross_fades(cpu_engine(3));
}

#[test]
fn persona_switch_in_place_cross_fades_too() {
    check_switch_cross_fades(Box::new(WithoutSiblings(cpu_engine(3))));
}

/// An engine that cannot have siblings, so the service must prepare a new persona in place.
struct WithoutSiblings(Box<dyn AvatarEngine>);

impl AvatarEngine for WithoutSiblings {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn prepare(&mut self, persona: &Persona) -> livetalk_engine::engine::Result<()> {
        self.0.prepare(persona)
    }
    fn fps(&self) -> u32 {
        self.0.fps()
    }
    fn frames_per_block(&self) -> usize {
        self.0.frames_per_block()
    }
    fn audio_context(&self) -> livetalk_engine::engine::AudioContext {
        self.0.audio_context()
    }
    fn render(
        &mut self,
        audio: &livetalk_engine::engine::AudioWindow,
    ) -> livetalk_engine::engine::Result<Vec<VideoFrame>> {
        self.0.render(audio)
    }
    fn latency_budget(&self) -> Duration {
        self.0.latency_budget()
    }
}

fn check_switch_cross_fades(engine: Box<dyn AvatarEngine>) {
    let bus = FrameBus::new();
    let mut options = EngineOptions::offline();
    options.crossfade = Duration::from_millis(300);
    let handle =
        EngineService::start(engine, persona("red", "#c03020"), bus.clone(), options).unwrap();
    let events = handle.events();
    let tap = handle.frame_tap(1024);
    // Everything the bus shows, too: no black frame may ever appear there.
    let bus_black = Arc::new(AtomicBool::new(false));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let subscriber = bus.subscribe();
        let (black, watching) = (bus_black.clone(), watching.clone());
        thread::spawn(move || {
            let mut seq = 0;
            while watching.load(Ordering::SeqCst) {
                if let Some((next, frame)) = subscriber.wait_newer(seq, Duration::from_millis(50)) {
                    seq = next;
                    if brightness(&frame) < 20.0 {
                        black.store(true, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    handle.push_audio(&speech(0.5)).unwrap();
    wait_status(&handle, "15 frames rendered", |s| s.frames_rendered >= 15);
    handle.switch_persona(persona("blue", "#2040c0")).unwrap();
    // The old persona goes on rendering audio until the new one is prepared. Offline, the
    // worker renders only pushed audio, so keep feeding it (a tenth of a second at a time)
    // until the switch lands, however slow preparing is on a loaded machine.
    let mut pushed_tenths = 5; // the 0.5 s above
    let deadline = Instant::now() + LONG;
    let changed = loop {
        handle.push_audio(&speech(0.1)).unwrap();
        pushed_tenths += 1;
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(e @ EngineEvent::PersonaChanged { .. }) => break e,
            Ok(_) | Err(_) => assert!(Instant::now() < deadline, "no persona changed event within {LONG:?}"),
        }
    };
    let EngineEvent::PersonaChanged {
        persona: name,
        time_to_first_frame,
    } = changed
    else {
        unreachable!()
    };
    assert_eq!(name, "blue");
    assert!(time_to_first_frame < LONG);
    // A second more after the switch, so the 300 ms fade always completes inside the stream.
    handle.push_audio(&speech(1.0)).unwrap();
    handle.finish_audio();
    wait_event(&events, "finished", |e| {
        matches!(e, EngineEvent::Finished { .. })
    });
    let frames: Vec<_> = std::iter::from_fn(|| tap.try_recv()).collect();
    watching.store(false, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(
        !bus_black.load(Ordering::SeqCst),
        "the bus showed a black frame"
    );

    let status = handle.status();
    assert_eq!(status.persona, "blue");
    assert_eq!(status.last_switch_time, Some(time_to_first_frame));
    handle.stop().unwrap();

    pushed_tenths += 10; // the second after the switch
    assert_eq!(
        frames.len(),
        pushed_tenths * 3,
        "{pushed_tenths} tenths of a second of audio at 30 fps, nothing lost in the switch"
    );
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame.pts,
            Duration::from_nanos(i as u64 * 1_000_000_000 / 30)
        );
        assert!(brightness(frame) > 20.0, "frame {i} is black");
    }
    let corners: Vec<[u8; 3]> = frames.iter().map(|f| corner(f)).collect();
    let old = corners[0];
    let new = *corners.last().unwrap();
    assert!(
        old[0] > new[0] + 60 && new[2] > old[2] + 60,
        "{old:?} → {new:?}"
    );
    let first_changed = corners.iter().position(|c| *c != old).unwrap();
    let faded: Vec<[u8; 3]> = corners[first_changed..]
        .iter()
        .take_while(|c| **c != new)
        .copied()
        .collect();
    // 300 ms at 30 fps: 9 blended frames, red falling and blue rising all the way.
    assert_eq!(faded.len(), 9, "{corners:?}");
    for pair in faded.windows(2) {
        assert!(
            pair[1][0] < pair[0][0] && pair[1][2] > pair[0][2],
            "not a monotonic fade: {faded:?}"
        );
    }
    assert!(faded[0][0] < old[0] && faded[8][0] > new[0]);
    assert!(corners[first_changed + 9..].iter().all(|c| *c == new));
}

#[test]
fn a_failed_switch_keeps_the_old_persona_streaming() {
    let bus = FrameBus::new();
    let (engine, faults) = faulty_engine(12);
    let handle = EngineService::start(
        engine,
        persona("red", "#c03020"),
        bus.clone(),
        EngineOptions::offline(),
    )
    .unwrap();
    let events = handle.events();
    let tap = handle.frame_tap(1024);
    handle.push_audio(&speech(0.3)).unwrap();
    wait_status(&handle, "9 frames rendered", |s| s.frames_rendered >= 9);
    faults.inject(Fault::PrepareError);
    handle.switch_persona(persona("blue", "#2040c0")).unwrap();
    let error = wait_event(&events, "error", |e| matches!(e, EngineEvent::Error { .. }));
    let EngineEvent::Error { message, .. } = error else {
        unreachable!()
    };
    assert!(
        message.contains("switching to persona `blue`") && message.contains("injected fault"),
        "{message}"
    );
    handle.push_audio(&speech(0.3)).unwrap();
    handle.finish_audio();
    wait_event(&events, "finished", |e| {
        matches!(e, EngineEvent::Finished { .. })
    });
    let status = handle.status();
    assert_eq!(status.persona, "red");
    assert_eq!(status.switching_to, None);
    assert_eq!(status.state, EngineState::Idle);
    assert_eq!(
        status.restarts, 0,
        "the streaming engine was never disturbed"
    );
    let frames: Vec<_> = std::iter::from_fn(|| tap.try_recv()).collect();
    assert_eq!(frames.len(), 18);
    assert!(
        frames.iter().all(|f| corner(f) == corner(&frames[0])),
        "the red persona throughout"
    );
    handle.stop().unwrap();
}

#[test]
fn rendering_pauses_while_nobody_watches_and_resumes() {
    let bus = FrameBus::new();
    let handle = EngineService::start(
        cpu_engine(5),
        persona("anna", "#336699"),
        bus.clone(),
        EngineOptions::live(),
    )
    .unwrap();
    let subscriber = bus.subscribe();
    handle.push_audio(&speech(5.0)).unwrap();
    wait_status(&handle, "rendering", |s| {
        s.frames_rendered >= 5 && s.state == EngineState::Running
    });
    let skipped_before = handle.status().blocks_skipped;

    subscriber.set_watching(false);
    wait_status(&handle, "idle", |s| s.state == EngineState::Idle);
    let rendered = handle.status().frames_rendered;
    let published = bus.seq();
    thread::sleep(Duration::from_millis(400));
    // At most the frames already handed to the presenter come out after the idle.
    let frames_per_latency = 1 + (handle.status().latency.as_secs_f64() * 30.0).ceil() as u64;
    assert_eq!(
        handle.status().frames_rendered,
        rendered,
        "rendered while nobody watched"
    );
    assert!(
        bus.seq() <= published + frames_per_latency,
        "the keeper kept publishing to nobody"
    );
    let (_, last) = bus.latest().expect("the last frame stays on the bus");
    let paused_at = last.pts;

    subscriber.set_watching(true);
    wait_status(&handle, "running again", |s| {
        s.frames_rendered > rendered + 3
    });
    // Live: it picks up at the clock, not where it stopped.
    let status = handle.status();
    assert!(
        status.last_pts >= paused_at + Duration::from_millis(300),
        "{:?} vs {paused_at:?}",
        status.last_pts
    );
    // 400 ms idle would be 12 blocks: idling is not counted as falling behind.
    assert!(status.blocks_skipped < skipped_before + 12, "{status:?}");

    // A user pause: no rendering, but the keeper keeps feeding the watcher.
    handle.pause().unwrap();
    wait_status(&handle, "paused", |s| s.state == EngineState::Paused);
    let rendered = handle.status().frames_rendered;
    let seq = bus.seq();
    // 30 keeper periods; asking for a few publishes leaves room for a starved machine.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(handle.status().frames_rendered, rendered);
    assert!(bus.seq() > seq + 3, "the keeper stopped while paused");
    handle.resume().unwrap();
    wait_status(&handle, "running after resume", |s| {
        s.frames_rendered > rendered + 3
    });
    handle.stop().unwrap();
}

/// Collects the gaps between new frames on the bus as seen by a watching subscriber.
struct GapMeter {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(Duration, u64)>,
}

impl GapMeter {
    fn start(bus: &FrameBus) -> Self {
        let subscriber = bus.subscribe();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let (mut seq, _) = subscriber.wait_newer(0, LONG).expect("a first frame");
            let mut last = Instant::now();
            let (mut max_gap, mut frames) = (Duration::ZERO, 0);
            while !flag.load(Ordering::SeqCst) {
                if let Some((next, frame)) = subscriber.wait_newer(seq, Duration::from_millis(20)) {
                    assert!(brightness(&frame) > 20.0, "a black frame on the bus");
                    max_gap = max_gap.max(last.elapsed());
                    last = Instant::now();
                    seq = next;
                    frames += 1;
                }
            }
            max_gap = max_gap.max(last.elapsed());
            (max_gap, frames)
        });
        GapMeter { stop, thread }
    }

    fn finish(self) -> (Duration, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

#[test]
fn error_nan_and_panic_each_restart_the_engine_while_the_bus_stays_fed() {
    let bus = FrameBus::new();
    let (engine, faults) = faulty_engine(9);
    let mut options = EngineOptions::live();
    // A restart slower than the sink period many times over: only the keeper can bridge it.
    options.restart_backoff = Duration::from_millis(1500);
    options.max_restart_backoff = Duration::from_millis(1500);
    let keepalive = options.keepalive;
    let handle =
        EngineService::start(engine, persona("anna", "#336699"), bus.clone(), options).unwrap();
    let events = handle.events();
    let meter = GapMeter::start(&bus);
    handle.push_audio(&speech(30.0)).unwrap();
    wait_status(&handle, "rendering", |s| s.frames_rendered >= 10);

    let expected = [
        (Fault::RenderError, "out of memory"),
        (Fault::NonFinite, "non-finite"),
        (Fault::Panic, "panicked"),
    ];
    for (attempt, (fault, message)) in expected.iter().enumerate() {
        faults.inject(*fault);
        let error = wait_event(&events, "error", |e| matches!(e, EngineEvent::Error { .. }));
        let EngineEvent::Error {
            message: text,
            consecutive_failures,
        } = error
        else {
            unreachable!()
        };
        assert!(text.contains(message), "{fault:?}: {text}");
        assert_eq!(consecutive_failures, 1);
        wait_event(&events, "restarted", |e| {
            matches!(e, EngineEvent::Restarted { .. })
        });
        let rendered = handle.status().frames_rendered;
        wait_status(&handle, "rendering after the restart", |s| {
            s.frames_rendered > rendered + 5
        });
        assert_eq!(handle.status().restarts, attempt as u64 + 1);
    }
    let (max_gap, frames) = meter.finish();
    eprintln!("longest gap between frames on the bus: {max_gap:?} over {frames} frames");
    let status = handle.status();
    assert_eq!(status.state, EngineState::Running);
    assert_eq!(status.consecutive_failures, 0);
    assert!(status.last_error.as_deref().unwrap().contains("panicked"));
    assert!(frames > 30);
    // Correctness bound: a frame every sink period, with slack for a slow shared machine; a
    // restart alone takes 1.5 s.
    assert!(
        max_gap < keepalive + Duration::from_millis(400),
        "longest gap between frames: {max_gap:?}"
    );
    handle.stop().unwrap();
}

#[test]
fn gives_up_after_repeated_failures_but_keeps_idle_frames_on_the_bus() {
    let bus = FrameBus::new();
    let (engine, faults) = faulty_engine(2);
    let mut options = EngineOptions::live();
    options.max_consecutive_failures = 2;
    options.restart_backoff = Duration::from_millis(20);
    let handle =
        EngineService::start(engine, persona("anna", "#336699"), bus.clone(), options).unwrap();
    let events = handle.events();
    let _watcher = bus.subscribe();
    handle.push_audio(&speech(30.0)).unwrap();
    wait_status(&handle, "rendering", |s| s.frames_rendered >= 5);

    // A render error, then both restarts fail to prepare: three failures in a row.
    faults.inject(Fault::PrepareError);
    faults.inject(Fault::PrepareError);
    faults.inject(Fault::RenderError);
    wait_event(&events, "failed", |e| {
        *e == EngineEvent::StateChanged {
            state: EngineState::Failed,
        }
    });
    let status = handle.status();
    assert_eq!(status.consecutive_failures, 3);
    assert!(status
        .last_error
        .as_deref()
        .unwrap()
        .contains("injected fault"));
    let rendered = status.frames_rendered;
    let seq = bus.seq();
    // 30 keeper periods; asking for a few publishes leaves room for a starved machine.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        handle.status().frames_rendered,
        rendered,
        "a failed engine renders nothing"
    );
    assert!(bus.seq() > seq + 3, "idle frames stopped while failed");
    assert!(brightness(&bus.latest().unwrap().1) > 20.0);

    // A restart command tries again.
    handle.restart().unwrap();
    wait_status(&handle, "running after a manual restart", |s| {
        s.state == EngineState::Running && s.frames_rendered > rendered + 3
    });
    handle.stop().unwrap();
}

#[test]
fn a_failing_first_prepare_is_retried() {
    let bus = FrameBus::new();
    let (engine, faults) = faulty_engine(4);
    faults.inject(Fault::PrepareError);
    let mut options = EngineOptions::offline();
    options.restart_backoff = Duration::from_millis(10);
    let handle =
        EngineService::start(engine, persona("anna", "#336699"), bus.clone(), options).unwrap();
    let events = handle.events();
    let tap = handle.frame_tap(64);
    handle.push_audio(&speech(0.2)).unwrap();
    handle.finish_audio();
    wait_event(&events, "finished", |e| {
        matches!(e, EngineEvent::Finished { .. })
    });
    let frames: Vec<_> = std::iter::from_fn(|| tap.try_recv()).collect();
    assert_eq!(frames.len(), 6);
    assert_eq!(handle.status().restarts, 1);
    handle.stop().unwrap();
}

/// A speech synthesiser that "speaks" a loud tone of 10 ms per character.
struct ToneSpeech;

impl SpeechSynth for ToneSpeech {
    fn synthesize(&self, text: &str, voice: &str) -> livetalk_engine::engine::Result<Vec<f32>> {
        assert_eq!(voice, "en-us", "the persona's voice");
        Ok(speech(text.len() as f32 * 0.01))
    }
}

#[test]
fn say_speaks_through_the_timeline_and_mute_silences() {
    let bus = FrameBus::new();
    let mut options = EngineOptions::offline();
    options.speech = Some(Arc::new(ToneSpeech));
    let handle = EngineService::start(
        cpu_engine(6),
        persona("anna", "#336699"),
        bus.clone(),
        options,
    )
    .unwrap();
    let events = handle.events();
    let _watcher = bus.subscribe();
    assert!(handle.say("   ").is_err(), "empty text");
    handle.say(&"a".repeat(50)).unwrap(); // 0.5 s
    let started = wait_event(&events, "speaking started", |e| {
        matches!(e, EngineEvent::SpeakingStarted { .. })
    });
    assert!(
        matches!(started, EngineEvent::SpeakingStarted { pts } if pts < Duration::from_millis(100))
    );
    wait_status(&handle, "all spoken", |s| s.frames_rendered >= 15);
    assert_eq!(handle.timeline().written(), 8000);

    handle.set_muted(true).unwrap();
    wait_status(&handle, "muted", |s| s.muted);
    let pts = handle.push_audio(&speech(0.5)).unwrap();
    assert_eq!(pts, Duration::from_millis(500));
    assert!(handle
        .timeline()
        .read(8000..16_000)
        .iter()
        .all(|&s| s == 0.0));
    handle.finish_audio();
    wait_event(&events, "speaking stopped", |e| {
        matches!(e, EngineEvent::SpeakingStopped { .. })
    });
    handle.stop().unwrap();
}

#[test]
fn live_audio_tap_and_frames_share_one_clock() {
    let bus = FrameBus::new();
    let handle = EngineService::start(
        cpu_engine(8),
        persona("anna", "#336699"),
        bus.clone(),
        EngineOptions::live(),
    )
    .unwrap();
    let tap = handle.audio_tap(1024);
    let watcher = bus.subscribe();
    let pushed_at = handle.push_audio(&speech(1.0)).unwrap();
    wait_status(&handle, "rendering", |s| s.frames_rendered >= 3);
    // Each new frame appears on the bus at its pts + L on the timeline's clock, never before.
    let initial_latency = handle.status().latency;
    let (mut seq, mut last_pts, mut delays) = (0, None, Vec::new());
    while delays.len() < 20 {
        let (next, frame) = watcher.wait_newer(seq, LONG).expect("frames keep coming");
        seq = next;
        if last_pts != Some(frame.pts) && frame.pts > Duration::ZERO {
            last_pts = Some(frame.pts);
            let shown_at = Instant::now();
            let due = handle.timeline().instant_of_pts(frame.pts) + initial_latency;
            assert!(
                shown_at + Duration::from_millis(2) >= due,
                "frame at {:?} published {:?} early",
                frame.pts,
                due - shown_at
            );
            delays.push(shown_at.saturating_duration_since(due));
        }
    }
    delays.sort();
    let final_latency = handle.status().latency;
    assert!(
        delays[delays.len() / 2] <= final_latency - initial_latency + Duration::from_millis(150),
        "median lateness {:?} (latency {initial_latency:?} → {final_latency:?})",
        delays[delays.len() / 2]
    );
    let chunks: Vec<_> = tap.try_iter().collect();
    assert!(!chunks.is_empty());
    for pair in chunks.windows(2) {
        assert_eq!(pair[1].pts, pair[0].end_pts(), "tap chunks are contiguous");
    }
    // The newest frame on the bus is not ahead of the audio clock: pts + L is its show time.
    let (_, frame) = bus.latest().unwrap();
    assert!(frame.pts <= handle.timeline().now());
    assert!(
        pushed_at <= Duration::from_millis(500),
        "pushed right after start: {pushed_at:?}"
    );
    let control = handle.control();
    handle.stop().unwrap();
    assert!(matches!(control.pause(), Err(EngineError::Stopped)));
}
