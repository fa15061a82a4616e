//! Finding v4l2loopback devices through sysfs, without opening them.

use std::fs;
use std::path::{Path, PathBuf};

/// A video device node as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoNode {
    /// `/dev/videoN`
    pub path: PathBuf,
    /// The card label (`card_label=` module option for loopback devices).
    pub label: String,
    /// True when the node hangs off `/sys/devices/virtual` (where v4l2loopback puts its devices).
    pub is_virtual: bool,
}

/// Where to look; `Sysfs::system()` is `/sys` and `/dev`, tests point it elsewhere.
#[derive(Clone, Debug)]
pub struct Sysfs {
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Sysfs {
    pub fn system() -> Self {
        Sysfs { sys: PathBuf::from("/sys"), dev: PathBuf::from("/dev") }
    }

    pub fn module_loaded(&self) -> bool {
        self.sys.join("module/v4l2loopback").exists()
    }

    /// The module's version string (`/sys/module/v4l2loopback/version`, present from 0.13 on).
    pub fn module_version(&self) -> Option<String> {
        read_trimmed(&self.sys.join("module/v4l2loopback/version"))
    }

    /// A module parameter as the kernel shows it (e.g. `exclusive_caps` → "Y,N,N,...").
    pub fn module_param(&self, name: &str) -> Option<String> {
        read_trimmed(&self.sys.join("module/v4l2loopback/parameters").join(name))
    }

    /// All video nodes, sorted by number.
    pub fn video_nodes(&self) -> Vec<VideoNode> {
        let class = self.sys.join("class/video4linux");
        let Ok(entries) = fs::read_dir(&class) else { return Vec::new() };
        let mut nodes: Vec<(u32, VideoNode)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let number: u32 = name.strip_prefix("video")?.parse().ok()?;
                let label = read_trimmed(&entry.path().join("name")).unwrap_or_default();
                let target = fs::canonicalize(entry.path()).unwrap_or_else(|_| entry.path());
                let is_virtual = target.starts_with(self.sys.join("devices/virtual"))
                    || fs::read_link(entry.path())
                        .map(|l| l.to_string_lossy().contains("devices/virtual/"))
                        .unwrap_or(false);
                Some((number, VideoNode { path: self.dev.join(&name), label, is_virtual }))
            })
            .collect();
        nodes.sort_by_key(|(n, _)| *n);
        nodes.into_iter().map(|(_, node)| node).collect()
    }

    /// The loopback devices (virtual video nodes).
    pub fn loopback_nodes(&self) -> Vec<VideoNode> {
        self.video_nodes().into_iter().filter(|n| n.is_virtual).collect()
    }

    /// The loopback node whose label is `label` (exact match first, then case-insensitive).
    pub fn find_by_label(&self, label: &str) -> Option<VideoNode> {
        let nodes = self.loopback_nodes();
        nodes
            .iter()
            .find(|n| n.label == label)
            .or_else(|| nodes.iter().find(|n| n.label.eq_ignore_ascii_case(label)))
            .cloned()
    }

    /// "video10 (livetalk), video11 (livetalk shared)" for error messages.
    pub fn describe_loopback_nodes(&self) -> String {
        let nodes = self.loopback_nodes();
        if nodes.is_empty() {
            return "no loopback devices".into();
        }
        nodes
            .iter()
            .map(|n| format!("{} ({})", n.path.display(), n.label))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// How many processes other than this one hold `device` open (scans /proc/*/fd).
///
/// v4l2loopback before 0.13 has no reader events; this is the fallback that tells whether anyone
/// is using the camera. Processes of other users are invisible without privileges, which only
/// undercounts readers that a desktop user could not start anyway.
pub fn other_openers(device: &Path) -> usize {
    let Ok(device) = fs::canonicalize(device) else { return 0 };
    let me = std::process::id().to_string();
    let Ok(procs) = fs::read_dir("/proc") else { return 0 };
    procs
        .flatten()
        .filter(|p| {
            let name = p.file_name();
            let name = name.to_string_lossy();
            name.bytes().all(|b| b.is_ascii_digit()) && name != me.as_str()
        })
        .filter(|p| {
            let Ok(fds) = fs::read_dir(p.path().join("fd")) else { return false };
            fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == device))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs tree shaped like the kernel's: class links into devices/virtual and devices/platform.
    fn fake_sysfs(root: &Path) -> Sysfs {
        let sys = root.join("sys");
        for (n, parent, label) in [
            (11, "devices/virtual/video4linux", "livetalk shared"),
            (10, "devices/virtual/video4linux", "livetalk"),
            (0, "devices/platform/vivid.0/video4linux", "vivid-000-vid-cap"),
        ] {
            let dir = sys.join(parent).join(format!("video{n}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("name"), format!("{label}\n")).unwrap();
            fs::create_dir_all(sys.join("class/video4linux")).unwrap();
            std::os::unix::fs::symlink(
                format!("../../{parent}/video{n}"),
                sys.join("class/video4linux").join(format!("video{n}")),
            )
            .unwrap();
        }
        fs::create_dir_all(sys.join("module/v4l2loopback/parameters")).unwrap();
        fs::write(sys.join("module/v4l2loopback/parameters/exclusive_caps"), "Y,N,N\n").unwrap();
        Sysfs { sys, dev: PathBuf::from("/dev") }
    }

    #[test]
    fn lists_only_virtual_nodes_in_number_order_and_finds_labels() {
        let tmp = tempfile::tempdir().unwrap();
        let sysfs = fake_sysfs(tmp.path());
        assert!(sysfs.module_loaded());
        assert_eq!(sysfs.module_version(), None);
        assert_eq!(sysfs.module_param("exclusive_caps").as_deref(), Some("Y,N,N"));
        let all = sysfs.video_nodes();
        assert_eq!(all.len(), 3);
        let loopback = sysfs.loopback_nodes();
        let paths: Vec<_> = loopback.iter().map(|n| n.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["/dev/video10", "/dev/video11"]);
        assert_eq!(sysfs.find_by_label("livetalk").unwrap().path, Path::new("/dev/video10"));
        assert_eq!(sysfs.find_by_label("LIVETALK SHARED").unwrap().path, Path::new("/dev/video11"));
        assert!(sysfs.find_by_label("vivid-000-vid-cap").is_none());
        assert_eq!(
            sysfs.describe_loopback_nodes(),
            "/dev/video10 (livetalk), /dev/video11 (livetalk shared)"
        );
    }

    #[test]
    fn counts_other_processes_holding_a_file_open() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("node");
        fs::write(&file, b"x").unwrap();
        assert_eq!(other_openers(&file), 0);
        // A child process keeps the file open on its stdin.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(fs::File::open(&file).unwrap())
            .spawn()
            .unwrap();
        let mut seen = 0;
        for _ in 0..50 {
            seen = other_openers(&file);
            if seen == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(seen, 1);
        // Our own descriptors do not count.
        let _mine = fs::File::open(&file).unwrap();
        assert_eq!(other_openers(&file), 0);
    }
}
