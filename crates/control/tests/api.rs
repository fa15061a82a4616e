//! The control API over its Unix socket (and TCP with a token) against a running engine service
//! (the CPU avatar, live).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use livetalk_control::audio::{encode_wav, pcm_bytes};
use livetalk_control::client::{Client, ClientError};
use livetalk_control::{serve, ControlOptions, ControlServer};
use livetalk_core::{FrameBus, FrameSubscriber, Persona, PersonaLibrary};
use livetalk_engine::service::{CpuAvatarEngine, EngineHandle, EngineOptions, EngineService, SpeechSynth};
use serde_json::{json, Value};

/// A guard against hanging forever if an event never comes (not a timing assertion).
const EVENT_GUARD: Duration = Duration::from_secs(60);

struct Rig {
    server: ControlServer,
    _watcher: FrameSubscriber,
    handle: Option<EngineHandle>,
    dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop().expect("the engine stops cleanly");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("livetalk-control-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn library() -> PersonaLibrary {
    let mut lib = PersonaLibrary::discover(&[]).unwrap();
    lib.insert(Persona::new("anna").unwrap());
    lib.insert(Persona::new("kai").unwrap());
    lib
}

fn rig_with(tcp: bool, speech: Option<Arc<dyn SpeechSynth>>) -> Rig {
    let bus = FrameBus::new();
    let watcher = bus.subscribe(); // someone watches: the engine renders
    let mut options = EngineOptions::live();
    options.speech = speech;
    let handle = EngineService::start(Box::new(CpuAvatarEngine::new(3)), Persona::new("anna").unwrap(), bus, options).unwrap();
    let dir = temp_dir();
    let server = serve(
        handle.control(),
        library(),
        ControlOptions {
            socket: Some(dir.join("run/control.sock")),
            tcp: tcp.then(|| "127.0.0.1:0".parse().unwrap()),
            token: tcp.then(|| "s3cret-token-0123456789".to_string()),
        },
    )
    .unwrap();
    Rig { server, _watcher: watcher, handle: Some(handle), dir }
}

fn rig() -> Rig {
    rig_with(false, None)
}

impl Rig {
    fn client(&self) -> Client {
        Client::unix(self.server.socket_path())
    }
}

/// A voiced, speech-like 16 kHz clip: a 140 Hz buzz with harmonics under a syllable envelope.
fn speech_like(seconds: f32) -> Vec<f32> {
    let n = (seconds * 16_000.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let envelope = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 4.0 * t).sin().abs();
            let buzz: f32 = (1..6).map(|h| (2.0 * std::f32::consts::PI * 140.0 * h as f32 * t).sin() / h as f32).sum();
            0.3 * envelope * buzz
        })
        .collect()
}

fn error_of(r: Result<Value, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Status { status, message }) => (status, message),
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[test]
fn socket_is_private_and_status_personas_switch_work() {
    let rig = rig();
    let mode = std::fs::metadata(rig.server.socket_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let dir_mode = std::fs::metadata(rig.server.socket_path().parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "socket folder mode {dir_mode:o}");

    let client = rig.client();
    let status = client.call("GET", "/v1/status", None::<&()>).unwrap();
    assert_eq!(status["persona"], "anna");
    assert_eq!(status["engine"], "cpu-avatar");
    assert_eq!(status["muted"], false);

    let personas = client.call("GET", "/v1/personas", None::<&()>).unwrap();
    assert_eq!(personas["current"], "anna");
    let names: Vec<&str> = personas["personas"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["anna", "kai"]);

    let mut events = client.events().unwrap();
    events.set_timeout(Some(EVENT_GUARD)).unwrap();
    let hello = events.next_event().unwrap().unwrap();
    assert_eq!(hello["event"], "hello");
    assert_eq!(hello["status"]["persona"], "anna");

    let answer = client.call("POST", "/v1/persona", Some(&json!({"name": "kai"}))).unwrap();
    assert_eq!(answer["ok"], true);
    let changed = events.wait_for(|e| e["event"] == "persona_changed").unwrap().expect("a persona_changed event");
    assert_eq!(changed["persona"], "kai");
    assert!(changed["time_to_first_frame"].as_f64().unwrap() >= 0.0);
    assert_eq!(client.call("GET", "/v1/status", None::<&()>).unwrap()["persona"], "kai");

    let (code, message) = error_of(client.call("POST", "/v1/persona", Some(&json!({"name": "nobody"}))));
    assert_eq!(code, 404);
    assert!(message.contains("no persona named `nobody`") && message.contains("anna, kai"), "{message}");

    client.call("POST", "/v1/mute", Some(&json!({"muted": true}))).unwrap();
    assert_eq!(client.call("GET", "/v1/status", None::<&()>).unwrap()["muted"], true);
    client.call("POST", "/v1/mute", Some(&json!({"muted": false}))).unwrap();
    assert_eq!(client.call("GET", "/v1/status", None::<&()>).unwrap()["muted"], false);

    client.call("POST", "/v1/pause", None::<&()>).unwrap();
    events.wait_for(|e| e["event"] == "state_changed" && e["state"] == "paused").unwrap().expect("paused");
    client.call("POST", "/v1/resume", None::<&()>).unwrap();
    events.wait_for(|e| e["event"] == "state_changed" && e["state"] == "running").unwrap().expect("running again");
}

#[test]
fn pushed_audio_lands_on_the_timeline_and_speaks() {
    let rig = rig();
    let client = rig.client();
    let mut events = client.events().unwrap();
    events.set_timeout(Some(EVENT_GUARD)).unwrap();
    assert_eq!(events.next_event().unwrap().unwrap()["event"], "hello");

    let clip = speech_like(1.0);
    let wav = client.push_audio("audio/wav", &encode_wav(&clip, 16_000)).unwrap();
    assert_eq!(wav["samples"], 16_000);
    assert_eq!(wav["duration"], 1.0);
    let pcm = client.push_audio("audio/L16;rate=16000", &pcm_bytes(&clip[..8000])).unwrap();
    assert_eq!(pcm["samples"], 8000);
    // The PCM lands after the WAV on the live timeline.
    assert!(pcm["pts"].as_f64().unwrap() >= wav["pts"].as_f64().unwrap() + 1.0 - 1e-6, "{wav} then {pcm}");
    // A 48 kHz stereo WAV is mixed down and resampled.
    let stereo_48k = {
        let mut bytes = encode_wav(&clip[..4800], 48_000);
        // Rewrite as 2 channels of 2400 frames: channels=2, byte rate, block align.
        bytes[22..24].copy_from_slice(&2u16.to_le_bytes());
        bytes[28..32].copy_from_slice(&(48_000u32 * 4).to_le_bytes());
        bytes[32..34].copy_from_slice(&4u16.to_le_bytes());
        bytes
    };
    let mixed = client.push_audio("audio/wav", &stereo_48k).unwrap();
    assert!((mixed["samples"].as_i64().unwrap() - 800).abs() <= 2, "{mixed}");

    let started = events.wait_for(|e| e["event"] == "speaking_started").unwrap().expect("a speaking_started event");
    assert!(started["pts"].as_f64().unwrap() >= wav["pts"].as_f64().unwrap() - 0.1, "{started} vs {wav}");
}

#[test]
fn malformed_requests_get_clear_4xx_and_the_server_keeps_running() {
    let rig = rig();
    let client = rig.client();
    // method, path, content type, body, expected status, expected words in the error
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", "/v1/mute", Some("application/json"), b"{\"muted\": tru".to_vec(), 400, "not valid JSON"),
        ("POST", "/v1/mute", Some("application/json"), b"{\"muted\": true, \"loud\": 1}".to_vec(), 400, "unknown field `loud`"),
        ("POST", "/v1/mute", Some("application/json"), b"{\"muted\": \"yes\"}".to_vec(), 400, "field `muted`: invalid type: string \"yes\", expected a boolean"),
        ("POST", "/v1/persona", Some("application/json"), b"{}".to_vec(), 400, "missing field `name`"),
        ("POST", "/v1/persona", Some("application/json"), b"[\"kai\"]".to_vec(), 400, "must be a JSON object, not an array"),
        ("POST", "/v1/say", Some("application/json"), vec![b'a'; 200_000], 413, "larger than this route takes"),
        ("POST", "/v1/say", Some("text/plain"), b"{\"text\":\"hi\"}".to_vec(), 415, "is not JSON"),
        ("POST", "/v1/say", Some("application/json"), b"{\"text\":\"hi\"}".to_vec(), 503, "no text-to-speech"),
        ("POST", "/v1/audio", Some("audio/mpeg"), vec![0; 100], 415, "audio/mpeg"),
        ("POST", "/v1/audio", None, vec![0; 100], 415, "no Content-Type"),
        ("POST", "/v1/audio", Some("audio/L16;rate=44100"), vec![0; 100], 415, "rate=44100"),
        ("POST", "/v1/audio", Some("audio/L16;rate=16000"), vec![0; 101], 400, "not a whole number of 16-bit samples"),
        ("POST", "/v1/audio", Some("audio/wav"), b"RIFF....WAVEjunk".to_vec(), 400, "no fmt chunk"),
        ("POST", "/v1/audio", Some("audio/wav"), vec![], 400, "empty"),
        ("POST", "/v1/pause", None, b"stuff".to_vec(), 400, "takes no request body"),
        ("GET", "/v1/nothing", None, vec![], 404, "no such route"),
        ("DELETE", "/v1/status", None, vec![], 405, "does not take that method"),
        ("GET", "/v1/events", None, vec![], 400, ""),
    ];
    for (method, path, content_type, body, code, needle) in cases {
        let response = client.request(method, path, content_type, &body).unwrap();
        assert_eq!(response.status, code, "{method} {path} {content_type:?}: {}", response.text());
        if !needle.is_empty() {
            assert!(response.content_type.as_deref().unwrap_or("").starts_with("application/json"), "{method} {path}: {:?}", response.content_type);
            let message = response.error_message();
            assert!(message.contains(needle), "{method} {path}: {message:?} lacks {needle:?}");
        }
    }
    // Garbage that is not HTTP at all.
    {
        use std::io::{Read, Write};
        let mut raw = std::os::unix::net::UnixStream::connect(rig.server.socket_path()).unwrap();
        raw.set_read_timeout(Some(EVENT_GUARD)).unwrap();
        raw.write_all(b"\x00\x01\x02 not http\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
    }
    assert_eq!(client.call("GET", "/v1/status", None::<&()>).unwrap()["persona"], "anna");
}

#[test]
fn tcp_needs_the_token() {
    let rig = rig_with(true, None);
    let addr = rig.server.tcp_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let (code, message) = error_of(Client::tcp(addr, None).call("GET", "/v1/status", None::<&()>));
    assert_eq!(code, 401);
    assert!(message.contains("Authorization: Bearer"), "{message}");
    let (code, _) = error_of(Client::tcp(addr, Some("wrong-token-0123456789".into())).call("GET", "/v1/status", None::<&()>));
    assert_eq!(code, 401);
    let (code, _) = error_of(Client::tcp(addr, None).call("POST", "/v1/pause", None::<&()>));
    assert_eq!(code, 401);
    assert!(rig.handle.as_ref().unwrap().status().state != livetalk_engine::service::EngineState::Paused);
    match Client::tcp(addr, None).events() {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, 401),
        Err(other) => panic!("expected 401, got {other}"),
        Ok(_) => panic!("a token-less event stream was accepted"),
    }

    let good = Client::tcp(addr, Some("s3cret-token-0123456789".into()));
    assert_eq!(good.call("GET", "/v1/status", None::<&()>).unwrap()["persona"], "anna");
    let mut events = good.events().unwrap();
    events.set_timeout(Some(EVENT_GUARD)).unwrap();
    assert_eq!(events.next_event().unwrap().unwrap()["event"], "hello");
    // The Unix socket needs no token.
    assert_eq!(rig.client().call("GET", "/v1/status", None::<&()>).unwrap()["persona"], "anna");
}

#[test]
fn tcp_refuses_other_addresses_and_missing_tokens() {
    let bus = FrameBus::new();
    let handle = EngineService::start(Box::new(CpuAvatarEngine::new(3)), Persona::new("anna").unwrap(), bus, EngineOptions::live()).unwrap();
    let dir = temp_dir();
    let err = serve(
        handle.control(),
        library(),
        ControlOptions { socket: Some(dir.join("a.sock")), tcp: Some("0.0.0.0:0".parse().unwrap()), token: Some("s3cret-token-0123456789".into()) },
    )
    .err()
    .expect("0.0.0.0 refused");
    assert!(err.to_string().contains("loopback"), "{err}");
    let err = serve(handle.control(), library(), ControlOptions { socket: Some(dir.join("b.sock")), tcp: Some("127.0.0.1:0".parse().unwrap()), token: None })
        .err()
        .expect("no token refused");
    assert!(err.to_string().contains("token"), "{err}");
    // A second server on a live socket is refused; a stale socket file is replaced.
    let first = serve(handle.control(), library(), ControlOptions { socket: Some(dir.join("c.sock")), ..Default::default() }).unwrap();
    let err = serve(handle.control(), library(), ControlOptions { socket: Some(dir.join("c.sock")), ..Default::default() })
        .err()
        .expect("a second server refused");
    assert!(err.to_string().contains("already listens"), "{err}");
    drop(first);
    assert!(!dir.join("c.sock").exists(), "the socket file is removed on stop");
    drop(std::os::unix::net::UnixListener::bind(dir.join("c.sock")).unwrap()); // stale
    let again = serve(handle.control(), library(), ControlOptions { socket: Some(dir.join("c.sock")), ..Default::default() }).unwrap();
    assert_eq!(Client::unix(again.socket_path()).call("GET", "/v1/status", None::<&()>).unwrap()["persona"], "anna");
    drop(again);
    handle.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn say_speaks_with_espeak() {
    let Some(espeak) = livetalk_audio::tts::Espeak::find() else {
        assert!(std::env::var_os("CI").is_none(), "scripts/test.sh installs espeak-ng: CI must test say");
        // CI installs espeak-ng; without it `say` must refuse clearly (checked in the malformed test).
        eprintln!("espeak-ng is not installed: say over the API is covered by its 503 answer only");
        return;
    };
    let rig = rig_with(false, Some(Arc::new(espeak)));
    let client = rig.client();
    let mut events = client.events().unwrap();
    events.set_timeout(Some(EVENT_GUARD)).unwrap();
    assert_eq!(events.next_event().unwrap().unwrap()["event"], "hello");
    let answer = client.call("POST", "/v1/say", Some(&json!({"text": "Hello there, this is a test."}))).unwrap();
    assert_eq!(answer["ok"], true);
    events.wait_for(|e| e["event"] == "speaking_started").unwrap().expect("speech from say");
    let (code, message) = error_of(client.call("POST", "/v1/say", Some(&json!({"text": "   "}))));
    assert_eq!(code, 400);
    assert!(message.contains("empty"), "{message}");
}
