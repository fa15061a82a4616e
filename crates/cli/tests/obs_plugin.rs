//! `livetalk doctor` reports whether the OBS plugin is installed, where packaging/obs/install.sh
//! puts it for a user ($XDG_CONFIG_HOME/obs-studio/plugins/livetalk-obs/bin/64bit/).

use std::path::Path;
use std::process::Command;

fn doctor_obs_line(config: &Path, home: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_livetalk"))
        .arg("doctor")
        .env("XDG_CONFIG_HOME", config)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find(|l| l.contains("OBS plugin")).unwrap_or_else(|| panic!("no OBS plugin line in:\n{text}")).to_string()
}

#[test]
fn doctor_finds_the_plugin_in_the_user_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let line = doctor_obs_line(&config, dir.path());
    assert!(line.contains("not installed"), "{line}");
    let module = config.join("obs-studio/plugins/livetalk-obs/bin/64bit/livetalk-obs.so");
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::write(&module, b"\x7fELF").unwrap();
    let line = doctor_obs_line(&config, dir.path());
    assert!(line.contains(&format!("installed: {}", module.display())), "{line}");
}
