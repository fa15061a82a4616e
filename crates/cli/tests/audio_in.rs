//! `livetalk run`'s live audio without a sound server: raw PCM on stdin drives the avatar (seen
//! through the control API), and bad input gets one clear error: an unreadable file, a wrong
//! stdin format, a microphone in a build without one. The microphone and the virtual microphone
//! against real sound servers are tested by tests/audio/audio-io.sh.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use livetalk_control::client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_livetalk");

/// `livetalk` with its own runtime folder (control and frame-share sockets of its own).
fn livetalk() -> Command {
    static RUNTIME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| tempfile::tempdir().unwrap());
    let dir = runtime.path().join(format!("{:?}", std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(BIN);
    command.env("XDG_RUNTIME_DIR", dir);
    command
}

fn tone_s16le_stereo_48k(seconds: f32) -> Vec<u8> {
    (0..(48_000.0 * seconds) as usize)
        .flat_map(|i| {
            let s = ((i as f32 * 2.0 * std::f32::consts::PI * 300.0 / 48_000.0).sin() * 0.4 * 32767.0) as i16;
            [s.to_le_bytes(), s.to_le_bytes()].concat()
        })
        .collect()
}

/// Runs `livetalk run --no-preview --no-control` with `input` on stdin.
fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = livetalk()
        .args(["run", "--no-preview", "--no-control", "--seconds", "20"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The process may have refused the input already (broken pipe): its answer is what counts.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// The one error line of a failed run.
fn one_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_string()
}

#[test]
fn raw_pcm_on_stdin_drives_the_avatar() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let mut child = livetalk()
        .args(["run", "--no-preview", "--seconds", "20", "--persona", "kai", "--audio-in", "stdin"])
        .args(["--stdin-format", "s16le:48000:2", "--control-socket"])
        .arg(&socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Client::unix(&socket).call("GET", "/v1/status", None::<&()>).is_err() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("no control API: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = |socket: &Path| Client::unix(socket).call("GET", "/v1/status", None::<&()>).unwrap();
    assert_eq!(status(&socket)["speaking"], false, "nothing was piped yet");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&tone_s16le_stereo_48k(3.0)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    while status(&socket)["speaking"] != true {
        assert!(Instant::now() < deadline, "the piped tone never made the avatar speak: {}", status(&socket));
        std::thread::sleep(Duration::from_millis(50));
    }
    // End of stdin is not an error: the avatar idles on.
    drop(stdin);
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "livetalk stopped at the end of stdin");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_wav_file_on_stdin_is_not_raw_pcm() {
    let mut wav = b"RIFF\x24\x7d\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00".to_vec();
    wav.extend(vec![0u8; 4000]);
    let error = one_error(&run_with_stdin(&["--audio-in", "stdin"], &wav));
    assert!(error.contains("stdin is not s16le:16000:1 raw PCM: it holds a WAV file"), "{error}");
    assert!(error.contains("--audio FILE"), "the error says what to do instead: {error}");
}

#[test]
fn stdin_ending_inside_a_frame_is_an_error() {
    let error = one_error(&run_with_stdin(&["--audio-in", "stdin", "--stdin-format", "s16le:16000:2"], &[0u8; 4003]));
    assert!(error.contains("s16le:16000:2") && error.contains("3 byte(s) left over"), "{error}");
}

#[test]
fn a_malformed_stdin_format_is_refused() {
    let out = livetalk().args(["run", "--no-preview", "--audio-in", "stdin", "--stdin-format", "s24be:16000:1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown sample encoding `s24be`") && stderr.contains("s16le"), "{stderr}");
    let out = livetalk().args(["run", "--no-preview", "--audio-in", "speakers"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`speakers` is not an audio input"), "{stderr}");
}

#[test]
fn an_unreadable_audio_file_is_named() {
    let out = livetalk().args(["run", "--no-preview", "--no-control", "--audio", "/nonexistent/voice.wav"]).output().unwrap();
    let error = one_error(&out);
    assert!(error.contains("cannot read audio file /nonexistent/voice.wav"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.mp3");
    std::fs::write(&text, "these are notes, not sound").unwrap();
    let out = livetalk().args(["run", "--no-preview", "--no-control", "--audio"]).arg(&text).output().unwrap();
    let error = one_error(&out);
    assert!(error.contains(&format!("{} is not an audio file", text.display())), "{error}");
}

#[cfg(not(feature = "mic"))]
#[test]
fn the_microphone_needs_a_build_with_it() {
    let out = livetalk().args(["run", "--no-preview", "--no-control", "--audio-in", "mic"]).output().unwrap();
    let error = one_error(&out);
    assert!(error.contains("built without the microphone") && error.contains("--features livetalk/mic"), "{error}");
}

#[test]
fn an_unreachable_tts_service_is_one_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/speak");
    let out = livetalk().args(["run", "--no-preview", "--no-control", "--text", "hello", "--tts-url", &url]).output().unwrap();
    let error = one_error(&out);
    assert!(error.contains(&url) && error.contains("could not be reached"), "{error}");
}
