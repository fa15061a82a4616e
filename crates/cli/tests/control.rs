//! The control API end to end: `livetalk run --no-preview` serves it on its Unix socket;
//! `livetalk ctl …`, `livetalk say` and the API client drive it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use livetalk_control::audio::{encode_wav, pcm_bytes};
use livetalk_control::client::{Client, ClientError};

const BIN: &str = env!("CARGO_BIN_EXE_livetalk");
/// Guards against hanging forever (not timing assertions).
const GUARD: Duration = Duration::from_secs(60);

struct Running {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str, extra: &[&str]) -> Running {
    let dir = std::env::temp_dir().join(format!("livetalk-ctl-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("runtime/livetalk/control.sock");
    // Driven by a moment of silence: the speech the tests push is the only speech.
    let silence = dir.join("silence.wav");
    std::fs::write(&silence, encode_wav(&[0.0; 3200], 16_000)).unwrap();
    let child = Command::new(BIN)
        .args(["run", "--no-preview", "--persona", "anna", "--audio"])
        .arg(&silence)
        .args(extra)
        .env("XDG_RUNTIME_DIR", dir.join("runtime"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start livetalk run");
    let mut running = Running { child, dir, socket };
    let deadline = Instant::now() + GUARD;
    while Client::unix(&running.socket).call("GET", "/v1/status", None::<&()>).is_err() {
        if let Some(status) = running.child.try_wait().unwrap() {
            panic!("livetalk run exited ({status}) before serving the control API");
        }
        assert!(Instant::now() < deadline, "no control API on {} after {GUARD:?}", running.socket.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN).arg("ctl").arg("--socket").arg(socket).args(args).output().expect("run livetalk ctl")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ctl_drives_a_running_livetalk() {
    let run = start("drive", &[]);
    let mode = std::fs::metadata(&run.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let client = Client::unix(&run.socket);
    let mut events = client.events().unwrap();
    events.set_timeout(Some(GUARD)).unwrap();
    assert_eq!(events.next_event().unwrap().unwrap()["event"], "hello");

    let status: serde_json::Value = serde_json::from_str(&stdout(&ctl(&run.socket, &["status"]))).unwrap();
    assert_eq!(status["persona"], "anna");
    let personas = stdout(&ctl(&run.socket, &["personas"]));
    assert!(personas.lines().any(|l| l.starts_with("* anna")), "{personas}");
    assert!(personas.lines().any(|l| l.starts_with("  kai")), "{personas}");

    let switched = stdout(&ctl(&run.socket, &["switch", "kai"]));
    assert!(switched.contains("switching to kai"), "{switched}");
    let changed = events.wait_for(|e| e["event"] == "persona_changed").unwrap().expect("persona_changed");
    assert_eq!(changed["persona"], "kai");

    let bad = ctl(&run.socket, &["switch", "nobody"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("404") && err.contains("no persona named `nobody`"), "{err}");

    // Push a WAV file with ctl, then PCM through the API; speech-like audio makes it speak.
    let clip: Vec<f32> = (0..16_000)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            0.4 * (0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin().abs()) * (2.0 * std::f32::consts::PI * 160.0 * t).sin()
        })
        .collect();
    let wav = run.dir.join("speech.wav");
    std::fs::write(&wav, encode_wav(&clip, 16_000)).unwrap();
    let pushed = stdout(&ctl(&run.socket, &["push", wav.to_str().unwrap()]));
    assert!(pushed.starts_with("pushed 1.00 s of audio"), "{pushed}");
    let pcm = client.push_audio("audio/L16;rate=16000", &pcm_bytes(&clip)).unwrap();
    assert_eq!(pcm["samples"], 16_000);
    events.wait_for(|e| e["event"] == "speaking_started").unwrap().expect("speaking_started");

    let espeak = livetalk_audio::tts::Espeak::find();
    assert!(espeak.is_some() || std::env::var_os("CI").is_none(), "scripts/test.sh installs espeak-ng: CI must test `livetalk say`");
    if espeak.is_some() {
        let said = Command::new(BIN).arg("say").arg("--socket").arg(&run.socket).args(["hello", "there"]).output().unwrap();
        assert!(stdout(&said).contains("saying 11 characters"));
    }

    assert!(stdout(&ctl(&run.socket, &["mute"])).contains("muted"));
    assert_eq!(client.call("GET", "/v1/status", None::<&()>).unwrap()["muted"], true);
    assert!(stdout(&ctl(&run.socket, &["unmute"])).contains("unmuted"));
    stdout(&ctl(&run.socket, &["pause"]));
    events.wait_for(|e| e["state"] == "paused").unwrap().expect("paused");
    stdout(&ctl(&run.socket, &["resume"]));
    events.wait_for(|e| e["state"] == "running").unwrap().expect("running");

    let first = stdout(&ctl(&run.socket, &["events", "--count", "1"]));
    let hello: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!(hello["event"], "hello");
    assert_eq!(hello["status"]["persona"], "kai");

    // Malformed input: clear 4xx answers, and the server keeps running.
    for (ct, body, code) in [
        ("application/json", &b"{\"name\": 3}"[..], 400),
        ("application/json", &b"{\"name\": \"kai\", \"x\": 1}"[..], 400),
        ("text/plain", &b"kai"[..], 415),
    ] {
        let r = client.request("POST", "/v1/persona", Some(ct), body).unwrap();
        assert_eq!(r.status, code, "{}", r.text());
    }
    let r = client.request("POST", "/v1/audio", Some("video/mp4"), &[0; 64]).unwrap();
    assert_eq!(r.status, 415);
    let r = client.request("POST", "/v1/say", Some("application/json"), &vec![b' '; 1 << 20]).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(client.call("GET", "/v1/status", None::<&()>).unwrap()["persona"], "kai");
}

#[test]
fn tcp_control_needs_the_token_and_no_control_serves_nothing() {
    let dir = std::env::temp_dir().join(format!("livetalk-ctl-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "tok-0123456789abcdef\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let run = start("tcp", &["--control-tcp", &addr, "--token-file", token_file.to_str().unwrap()]);
    let addr = addr.parse().unwrap();
    match Client::tcp(addr, None).call("GET", "/v1/status", None::<&()>) {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let good = Client::tcp(addr, Some("tok-0123456789abcdef".into()));
    assert_eq!(good.call("GET", "/v1/status", None::<&()>).unwrap()["persona"], "anna");
    let via_ctl = Command::new(BIN)
        .args(["ctl", "--tcp", &addr.to_string(), "--token-file", token_file.to_str().unwrap(), "switch", "kai"])
        .output()
        .unwrap();
    assert!(stdout(&via_ctl).contains("switching to kai"));
    drop(run);

    let quiet = Command::new(BIN)
        .args(["run", "--no-preview", "--no-control", "--seconds", "0.2"])
        .env("XDG_RUNTIME_DIR", dir.join("quiet"))
        .output()
        .unwrap();
    assert!(quiet.status.success(), "{}", String::from_utf8_lossy(&quiet.stderr));
    assert!(!dir.join("quiet/livetalk/control.sock").exists());
    let missing = ctl(&dir.join("quiet/livetalk/control.sock"), &["status"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is `livetalk run` running"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn doctor_and_models_report_what_is_there() {
    let dir = std::env::temp_dir().join(format!("livetalk-models-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("registry")).unwrap();
    std::fs::create_dir_all(dir.join("weights/tiny")).unwrap();
    std::fs::write(
        dir.join("registry/tiny.toml"),
        "id = \"tiny\"\ndescription = \"a tiny test model\"\nsource = \"huggingface\"\nrepo = \"test/tiny\"\nrevision = \"main\"\n\
         [licence]\nname = \"MIT\"\nurl = \"https://example.invalid\"\n[[files]]\npath = \"a.bin\"\nsize = 4\n",
    )
    .unwrap();
    std::fs::write(dir.join("weights/tiny/a.bin"), b"abcd").unwrap();
    let registry = dir.join("registry");
    let weights = dir.join("weights");
    let models = |args: &[&str]| Command::new(BIN).arg("models").args(args).arg("--registry").arg(&registry).output().unwrap();

    let listed = stdout(&models(&["list", "--weights", weights.to_str().unwrap()]));
    assert!(listed.lines().any(|l| l.starts_with("tiny") && l.contains("present") && l.contains("4 B") && l.contains("licence MIT")), "{listed}");
    let verified = stdout(&models(&["verify", weights.to_str().unwrap()]));
    assert!(verified.contains("ok    tiny (1 files)"), "{verified}");

    std::fs::write(dir.join("weights/tiny/a.bin"), b"abc").unwrap();
    let bad = models(&["verify", weights.to_str().unwrap()]);
    assert!(!bad.status.success());
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains("FAIL  tiny") && out.contains("size 3 bytes, expected 4"), "{out}");

    let doctor = Command::new(BIN).args(["doctor", "--registry"]).arg(&registry).arg("--weights").arg(&weights).output().unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success(), "the CPU path needs nothing missing here: {text}");
    for section in ["livetalk (required):", "GPU:", "weights:", "camera:", "extras:"] {
        assert!(text.contains(section), "{section} missing: {text}");
    }
    assert!(text.contains("[ok  ] persona presets"), "{text}");
    assert!(text.contains("[warn] weights tiny: ") && text.contains("a.bin: size 3 bytes, expected 4"), "{text}");
    // The fix is the exact command: the bad file moved aside (download never overwrites), then fetched.
    let fix = format!(
        "fix: mv {0}/tiny/a.bin {0}/tiny/a.bin.bad && livetalk models download --weights {0} --registry {1} tiny",
        weights.display(),
        registry.display()
    );
    assert!(text.contains(&fix), "{fix} missing: {text}");
    let missing = Command::new(BIN).args(["doctor", "--registry"]).arg(&registry).arg("--weights").arg(dir.join("none")).output().unwrap();
    let text = String::from_utf8_lossy(&missing.stdout);
    assert!(text.contains(&format!("fix: livetalk models download --weights {} --registry {}", dir.join("none").display(), registry.display())), "{text}");
    // Every problem comes with its fix.
    let problems = text.lines().filter(|l| l.contains("[warn]") || l.contains("[FAIL]")).count();
    let fixes = text.lines().filter(|l| l.trim_start().starts_with("fix: ")).count();
    assert_eq!(problems, fixes, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
