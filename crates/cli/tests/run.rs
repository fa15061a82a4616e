//! `livetalk run`: the live engine service behind the CLI, with and without the preview window
//! (a real X server: Xvfb).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_livetalk");

fn frames_rendered(stderr: &str) -> u64 {
    let tail = stderr.split("stopped (").nth(1).unwrap_or_else(|| panic!("no stop line in: {stderr}"));
    tail.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn run_without_preview_renders_in_real_time() {
    let out = Command::new(BIN)
        .args(["run", "--no-preview", "--no-control", "--no-share", "--seconds", "3", "--persona", "kai"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Live pacing: about 30 fps for 3 s. Bounds are loose (a 2-core CI machine), but a run that
    // renders as fast as it can (offline pacing) or stalls would fall outside them.
    let frames = frames_rendered(&stderr);
    assert!((30..=150).contains(&frames), "{frames} frames in 3 s: {stderr}");
}

struct Xvfb(Child);
impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_shows_a_preview_window_on_a_real_x_server() {
    let display = format!(":{}", 90 + std::process::id() % 100);
    let xvfb = Command::new("Xvfb")
        .args([display.as_str(), "-screen", "0", "1280x720x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb is needed for the preview test (sudo apt-get install xvfb)");
    let _xvfb = Xvfb(xvfb);
    std::thread::sleep(Duration::from_millis(1500));
    let out = Command::new(BIN)
        .args(["run", "--no-control", "--no-share", "--seconds", "2"])
        .env("DISPLAY", &display)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(frames_rendered(&stderr) > 10, "{stderr}");
}

#[test]
fn run_without_a_display_says_how_to_proceed() {
    let out = Command::new(BIN).args(["run", "--no-control", "--no-share", "--seconds", "1"]).env_remove("DISPLAY").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.trim().lines().count() == 1 && stderr.contains("--no-preview"), "{stderr}");
}
