//! `livetalk doctor`'s camera checks: is v4l2loopback installed and loaded, with livetalk's
//! options, are its devices there, and may this user write to them. Each problem comes with the
//! command that fixes it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{GROUP_FIX, MODPROBE_FIX};
use crate::v4l2::{Sysfs, VideoNode};

/// The label livetalk's Chrome-friendly device carries (exclusive_caps=1).
pub const CAMERA_LABEL: &str = "livetalk";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    Ok,
    /// Works, with a limitation the user may want to fix.
    Warn,
    /// The camera will not work until this is fixed.
    Fail,
}

#[derive(Clone, Debug)]
pub struct DoctorCheck {
    /// Short name: "v4l2loopback module", "camera device /dev/video10", ...
    pub name: String,
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// The command (or step) that fixes it; `None` when nothing needs fixing.
    pub fix: Option<String>,
}

impl DoctorCheck {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        DoctorCheck { name: name.into(), status: CheckStatus::Ok, detail: detail.into(), fix: None }
    }
    fn problem(status: CheckStatus, name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        DoctorCheck { name: name.into(), status, detail: detail.into(), fix: Some(fix.into()) }
    }
}

impl std::fmt::Display for DoctorCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = match self.status {
            CheckStatus::Ok => "ok  ",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
        };
        write!(f, "[{mark}] {}: {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n       fix: {fix}")?;
        }
        Ok(())
    }
}

/// The camera checks on this machine: the v4l2loopback ones, then the PipeWire camera's.
pub fn doctor_checks() -> Vec<DoctorCheck> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut checks = doctor_checks_with(&Sysfs::system(), Path::new("/lib/modules").join(release.trim()).as_path());
    checks.push(pipewire_check(std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from).as_deref()));
    checks
}

/// The PipeWire camera needs the user's PipeWire daemon (its socket in XDG_RUNTIME_DIR).
/// Only a warning: the v4l2loopback camera works without it.
pub fn pipewire_check(runtime_dir: Option<&Path>) -> DoctorCheck {
    let name = "PipeWire (camera without a kernel module)";
    let socket = runtime_dir.map(|dir| dir.join("pipewire-0"));
    match socket {
        Some(socket) if socket.exists() => DoctorCheck::ok(name, format!("running ({})", socket.display())),
        _ => DoctorCheck::problem(
            CheckStatus::Warn,
            name,
            "no PipeWire daemon for this user: the PipeWire camera node is unavailable",
            "sudo apt install pipewire wireplumber && systemctl --user enable --now pipewire wireplumber",
        ),
    }
}

/// The checks against a given sysfs and module tree (`/lib/modules/<release>`).
pub fn doctor_checks_with(sysfs: &Sysfs, module_tree: &Path) -> Vec<DoctorCheck> {
    let mut checks = Vec::new();
    if !sysfs.module_loaded() {
        checks.push(if module_installed(module_tree) {
            DoctorCheck::problem(CheckStatus::Fail, "v4l2loopback module", "installed but not loaded", MODPROBE_FIX)
        } else {
            DoctorCheck::problem(
                CheckStatus::Fail,
                "v4l2loopback module",
                format!("not installed for this kernel ({})", module_tree.display()),
                format!("sudo apt install v4l2loopback-dkms linux-headers-$(uname -r), then {MODPROBE_FIX}"),
            )
        });
        return checks;
    }
    checks.push(match sysfs.module_version() {
        Some(version) => DoctorCheck::ok("v4l2loopback module", format!("loaded, version {version}")),
        None => DoctorCheck::problem(
            CheckStatus::Warn,
            "v4l2loopback module",
            "loaded, version 0.12.x (no reader events: livetalk watches open handles instead; with \
             exclusive_caps=1 a restarted livetalk needs the module reloaded)",
            "upgrade v4l2loopback-dkms to 0.13 or later; until then, after restarting livetalk: \
             sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback",
        ),
    });

    let devices = device_options(sysfs);
    let reload = format!("sudo modprobe -r v4l2loopback && {MODPROBE_FIX}");
    if devices.is_empty() {
        checks.push(DoctorCheck::problem(CheckStatus::Fail, "camera devices", "the module created no devices", reload));
        return checks;
    }
    match devices.iter().find(|(node, _)| node.label == CAMERA_LABEL) {
        Some((node, Some(true))) => checks.push(DoctorCheck::ok(
            "camera for Chrome-based apps",
            format!("{} \"{}\" with exclusive_caps=1", node.path.display(), node.label),
        )),
        Some((node, _)) => checks.push(DoctorCheck::problem(
            CheckStatus::Warn,
            "camera for Chrome-based apps",
            format!("{} \"{}\" has exclusive_caps=0: Chrome, Meet and Teams will not list it", node.path.display(), node.label),
            reload.clone(),
        )),
        None => checks.push(DoctorCheck::problem(
            CheckStatus::Fail,
            "camera for Chrome-based apps",
            format!("no loopback device is labelled \"{CAMERA_LABEL}\" (found: {})", sysfs.describe_loopback_nodes()),
            reload.clone(),
        )),
    }
    match devices.iter().find(|(_, exclusive)| *exclusive == Some(false)) {
        Some((node, _)) => checks.push(DoctorCheck::ok(
            "camera for Zoom, OBS and several readers",
            format!("{} \"{}\" with exclusive_caps=0", node.path.display(), node.label),
        )),
        None => checks.push(DoctorCheck::problem(
            CheckStatus::Warn,
            "camera for Zoom, OBS and several readers",
            "no loopback device with exclusive_caps=0 (Zoom and the pw-v4l2/PipeWire bridge may not see an exclusive one)",
            reload,
        )),
    }
    for (node, _) in &devices {
        checks.push(permission_check(node));
    }
    checks
}

/// Whether the running kernel has a v4l2loopback module file anywhere in its module tree.
fn module_installed(tree: &Path) -> bool {
    fn walk(dir: &Path, depth: usize) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else { return false };
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("v4l2loopback.ko")
                || (depth < 8 && e.file_type().is_ok_and(|t| t.is_dir()) && walk(&e.path(), depth + 1))
        })
    }
    walk(tree, 0)
}

/// Each loopback node with its exclusive_caps setting (from the module's parameter arrays).
fn device_options(sysfs: &Sysfs) -> Vec<(VideoNode, Option<bool>)> {
    let numbers: Vec<i64> = sysfs
        .module_param("video_nr")
        .map(|s| s.split(',').map(|n| n.trim().parse().unwrap_or(-1)).collect())
        .unwrap_or_default();
    let exclusive: Vec<bool> = sysfs
        .module_param("exclusive_caps")
        .map(|s| s.split(',').map(|b| b.trim() == "Y").collect())
        .unwrap_or_default();
    let nodes = sysfs.loopback_nodes();
    // Nodes asked for by number get that entry's option; the others take the remaining entries
    // in order (the module creates devices in parameter order, auto-numbered ones ascending).
    let mut unclaimed: Vec<usize> = (0..exclusive.len()).filter(|&i| numbers.get(i).is_none_or(|&n| n < 0)).collect();
    unclaimed.reverse();
    nodes
        .into_iter()
        .map(|node| {
            let number: i64 = node
                .path
                .file_name()
                .and_then(|n| n.to_str()?.strip_prefix("video")?.parse().ok())
                .unwrap_or(-1);
            let index = numbers.iter().position(|&n| n == number).or_else(|| unclaimed.pop());
            let option = index.and_then(|i| exclusive.get(i).copied());
            (node, option)
        })
        .collect()
}

fn permission_check(node: &VideoNode) -> DoctorCheck {
    let name = format!("access to {}", node.path.display());
    if !node.path.exists() {
        return DoctorCheck::problem(
            CheckStatus::Fail,
            name,
            "the device node is missing although sysfs lists it",
            "sudo udevadm trigger --subsystem-match=video4linux",
        );
    }
    let Ok(c_path) = CString::new(node.path.as_os_str().as_bytes()) else {
        return DoctorCheck::problem(CheckStatus::Fail, name, "unusable path", "rename the device");
    };
    // SAFETY: access() only reads the NUL-terminated path.
    let writable = unsafe { libc::access(c_path.as_ptr(), libc::R_OK | libc::W_OK) } == 0;
    if writable {
        DoctorCheck::ok(name, "readable and writable by this user")
    } else {
        DoctorCheck::problem(CheckStatus::Fail, name, format!("this user may not open {}", node.path.display()), GROUP_FIX)
    }
}

/// True when no check failed.
pub fn all_passed(checks: &[DoctorCheck]) -> bool {
    checks.iter().all(|c| c.status != CheckStatus::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sysfs_with(root: &Path, devices: &[(u32, &str)], video_nr: &str, exclusive: &str) -> Sysfs {
        let sys = root.join("sys");
        let dev = root.join("dev");
        fs::create_dir_all(&dev).unwrap();
        fs::create_dir_all(sys.join("class/video4linux")).unwrap();
        for (n, label) in devices {
            let dir = sys.join(format!("devices/virtual/video4linux/video{n}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("name"), label).unwrap();
            std::os::unix::fs::symlink(
                format!("../../devices/virtual/video4linux/video{n}"),
                sys.join(format!("class/video4linux/video{n}")),
            )
            .unwrap();
            fs::write(dev.join(format!("video{n}")), b"").unwrap();
        }
        let params = sys.join("module/v4l2loopback/parameters");
        fs::create_dir_all(&params).unwrap();
        fs::write(params.join("video_nr"), video_nr).unwrap();
        fs::write(params.join("exclusive_caps"), exclusive).unwrap();
        Sysfs { sys, dev }
    }

    #[test]
    fn not_installed_and_not_loaded_say_how_to_install_and_load() {
        let tmp = tempfile::tempdir().unwrap();
        let sysfs = Sysfs { sys: tmp.path().join("sys"), dev: tmp.path().join("dev") };
        let tree = tmp.path().join("lib/modules/6.1.0-56-amd64");
        let checks = doctor_checks_with(&sysfs, &tree);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, CheckStatus::Fail);
        assert!(checks[0].fix.as_ref().unwrap().contains("apt install v4l2loopback-dkms"));

        fs::create_dir_all(tree.join("updates/dkms")).unwrap();
        fs::write(tree.join("updates/dkms/v4l2loopback.ko.xz"), b"").unwrap();
        let checks = doctor_checks_with(&sysfs, &tree);
        assert_eq!(checks[0].detail, "installed but not loaded");
        assert!(checks[0].fix.as_ref().unwrap().starts_with("sudo modprobe v4l2loopback devices=2"));
        assert!(!all_passed(&checks));
    }

    #[test]
    fn recommended_options_pass_and_the_old_module_is_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let sysfs = sysfs_with(tmp.path(), &[(10, "livetalk"), (11, "livetalk shared")], "10,11,-1,-1", "Y,N,N,N");
        let checks = doctor_checks_with(&sysfs, tmp.path());
        let text: Vec<String> = checks.iter().map(|c| c.to_string()).collect();
        assert!(all_passed(&checks), "{text:#?}");
        assert_eq!(checks[0].status, CheckStatus::Warn, "no version file = 0.12.x");
        assert_eq!(checks[1].status, CheckStatus::Ok, "{}", text[1]);
        assert!(checks[1].detail.contains("video10"));
        assert_eq!(checks[2].status, CheckStatus::Ok, "{}", text[2]);
        assert!(checks[2].detail.contains("video11"));
        assert_eq!(checks.len(), 5, "{text:#?}");
    }

    #[test]
    fn pipewire_socket_decides_the_pipewire_check() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(pipewire_check(None).status, CheckStatus::Warn);
        assert_eq!(pipewire_check(Some(tmp.path())).status, CheckStatus::Warn);
        fs::write(tmp.path().join("pipewire-0"), b"").unwrap();
        assert_eq!(pipewire_check(Some(tmp.path())).status, CheckStatus::Ok);
    }

    #[test]
    fn wrong_options_name_the_reload_command() {
        let tmp = tempfile::tempdir().unwrap();
        // Module loaded with defaults: one auto-numbered device, default label, exclusive_caps=0.
        let sysfs = sysfs_with(tmp.path(), &[(0, "Dummy video device (0x0000)")], "-1,-1", "N,N");
        fs::write(sysfs.sys.join("module/v4l2loopback/version"), "0.13.2").unwrap();
        let checks = doctor_checks_with(&sysfs, tmp.path());
        assert_eq!(checks[0].status, CheckStatus::Ok);
        assert_eq!(checks[1].status, CheckStatus::Fail);
        assert!(checks[1].fix.as_ref().unwrap().contains("modprobe -r v4l2loopback"));
        assert_eq!(checks[2].status, CheckStatus::Ok, "the default device is a shared one");

        let tmp = tempfile::tempdir().unwrap();
        let sysfs = sysfs_with(tmp.path(), &[(10, "livetalk")], "10", "N");
        let checks = doctor_checks_with(&sysfs, tmp.path());
        assert_eq!(checks[1].status, CheckStatus::Warn);
        assert!(checks[1].detail.contains("exclusive_caps=0"));
    }
}
