//! Global hotkeys against a real X server (Xvfb) and real key events (xdotool): `livetalk run`
//! grabs each preset's hotkey plus next/previous, and a key press switches the persona, seen
//! through the control API's status and events. Duplicate hotkeys are reported and not bound.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use livetalk_control::client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_livetalk");
const LONG: Duration = Duration::from_secs(60);

/// Processes killed when the test ends, pass or fail.
struct Reaper(Vec<Child>);
impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn xvfb(display: &str) -> Child {
    let child = Command::new("Xvfb")
        .args([display, "-screen", "0", "640x480x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb is installed (scripts/test.sh installs xvfb)");
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{}", &display[1..]));
    let deadline = Instant::now() + LONG;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "Xvfb {display} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn key(display: &str, keys: &str) {
    let status = Command::new("xdotool")
        .env("DISPLAY", display)
        .args(["key", keys])
        .status()
        .expect("xdotool is installed (scripts/test.sh installs it)");
    assert!(status.success(), "xdotool key {keys}");
}

fn wait_for_line(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + LONG;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn persona_of(client: &Client) -> String {
    client.call("GET", "/v1/status", None::<&()>).unwrap()["persona"].as_str().unwrap().to_string()
}

/// Starts `livetalk run` with hotkeys on `display`; returns its control client and log.
fn run(display: &str, runtime: &Path, presets: &Path, reaper: &mut Reaper) -> (Client, PathBuf) {
    let log = runtime.join("run.log");
    let child = Command::new(BIN)
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_RUNTIME_DIR", runtime)
        .env("XDG_CONFIG_HOME", runtime.join("config"))
        .args(["run", "--engine", "cpu", "--no-preview", "--seconds", "120", "--hotkeys", "x11", "--persona", "anna"])
        .arg("--presets")
        .arg(presets)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    reaper.0.push(child);
    wait_for_line(&log, "control API on");
    (Client::unix(runtime.join("livetalk/control.sock")), log)
}

#[test]
fn hotkeys_switch_personas_through_x11_grabs() {
    let display = format!(":{}", 200 + std::process::id() % 300);
    let tmp = tempfile::tempdir().unwrap();
    let presets = tmp.path().join("presets");
    fs::create_dir(&presets).unwrap();
    fs::write(presets.join("zoe.toml"), "display_name = \"Zoe\"\nhotkey = \"Ctrl+Shift+F5\"\nbackground = \"#203040\"\n").unwrap();
    let mut reaper = Reaper(vec![xvfb(&display)]);
    let (client, log) = run(&display, tmp.path(), &presets, &mut reaper);
    let text = wait_for_line(&log, "hotkeys (X11)");
    assert!(text.contains("Ctrl+Alt+1") && text.contains("Ctrl+Shift+F5") && text.contains("Ctrl+Alt+PageDown"), "{text}");
    assert_eq!(persona_of(&client), "anna");
    let mut events = client.events().unwrap();
    events.set_timeout(Some(LONG)).unwrap();

    // A preset's own hotkey (Caps Lock on must not matter: the grab covers the lock variants).
    let pressed = Instant::now();
    key(&display, "ctrl+shift+F5");
    let changed = events
        .wait_for(|e| e["event"] == "persona_changed")
        .unwrap()
        .expect("a persona_changed event");
    let after_key = pressed.elapsed();
    assert_eq!(changed["persona"], "zoe");
    assert_eq!(persona_of(&client), "zoe");
    eprintln!(
        "key → first frame of zoe: {after_key:?} (service: {} s from the command)",
        changed["time_to_first_frame"]
    );

    // Next wraps around the library's name order (… zoe, then anna), previous goes back.
    key(&display, "ctrl+alt+Next");
    let changed = events.wait_for(|e| e["event"] == "persona_changed").unwrap().unwrap();
    assert_eq!(changed["persona"], "anna");
    key(&display, "ctrl+alt+Prior");
    let changed = events.wait_for(|e| e["event"] == "persona_changed").unwrap().unwrap();
    assert_eq!(changed["persona"], "zoe");
    key(&display, "ctrl+alt+2");
    let changed = events.wait_for(|e| e["event"] == "persona_changed").unwrap().unwrap();
    assert_eq!(changed["persona"], "kai");
    assert_eq!(persona_of(&client), "kai");
    // Keys without a binding do nothing.
    key(&display, "ctrl+alt+9");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(persona_of(&client), "kai");
}

#[test]
fn duplicate_hotkeys_are_reported_and_not_bound() {
    let display = format!(":{}", 500 + std::process::id() % 300);
    let tmp = tempfile::tempdir().unwrap();
    let presets = tmp.path().join("presets");
    fs::create_dir(&presets).unwrap();
    // Both claim kai's Ctrl+Alt+2.
    fs::write(presets.join("max.toml"), "hotkey = \"ctrl+alt+2\"\n").unwrap();
    fs::write(presets.join("zoe.toml"), "hotkey = \"Ctrl+Shift+F5\"\n").unwrap();
    let mut reaper = Reaper(vec![xvfb(&display)]);
    let (client, log) = run(&display, tmp.path(), &presets, &mut reaper);
    let text = wait_for_line(&log, "hotkeys (X11)");
    assert!(
        text.contains("warning: hotkey Ctrl+Alt+2 is given to persona kai") && text.contains("persona max")
            && text.contains("max.toml") && text.contains("it is not bound"),
        "{text}"
    );
    key(&display, "ctrl+alt+2");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(persona_of(&client), "anna", "the ambiguous key switches nothing");
    // The other keys still work.
    let mut events = client.events().unwrap();
    events.set_timeout(Some(LONG)).unwrap();
    key(&display, "ctrl+shift+F5");
    let changed = events.wait_for(|e| e["event"] == "persona_changed").unwrap().unwrap();
    assert_eq!(changed["persona"], "zoe");
}
