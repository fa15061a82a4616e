//! `livetalk doctor`: what this machine has for each part of livetalk, each problem with the
//! command that fixes it. Exits 0 when nothing the default CPU path needs is missing (the GPU,
//! weights, camera, OBS plugin and text-to-speech are extras: reported, not required).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};
use livetalk_model::checkpoint::registry::{self, ModelEntry};
use livetalk_vcam::doctor::{doctor_checks, CheckStatus, DoctorCheck};

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// The LiveTalk weights folder to verify (default: $XDG_DATA_HOME/livetalk/weights).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// The model registry folder (default: the installed one or the checkout's models/).
    #[arg(long, value_name = "DIR")]
    pub registry: Option<PathBuf>,
}

fn check(name: &str, status: CheckStatus, detail: impl Into<String>, fix: Option<String>) -> DoctorCheck {
    DoctorCheck { name: name.to_string(), status, detail: detail.into(), fix }
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
}

fn gpu_checks() -> Vec<DoctorCheck> {
    let mut checks = Vec::new();
    let built = cfg!(feature = "cuda");
    checks.push(if built {
        check("CUDA build", CheckStatus::Ok, "this binary is built with CUDA", None)
    } else {
        check("CUDA build", CheckStatus::Warn, "this binary is built without CUDA: the LiveTalk model runs on the CPU only (slowly); the CPU avatar is unaffected",
            Some("cargo install --path crates/cli --features cuda   (needs the CUDA toolkit: sudo apt-get install nvidia-cuda-toolkit)".into()))
    });
    match on_path("nvidia-smi") {
        Some(smi) => {
            let out = Command::new(&smi).args(["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]).output();
            match out {
                Ok(o) if o.status.success() => {
                    let text = String::from_utf8_lossy(&o.stdout).trim().replace('\n', "; ");
                    checks.push(check("NVIDIA driver", CheckStatus::Ok, format!("nvidia-smi: {text}"), None));
                }
                Ok(o) => checks.push(check("NVIDIA driver", CheckStatus::Warn,
                    format!("nvidia-smi fails: {}", String::from_utf8_lossy(&o.stderr).trim()),
                    Some("sudo ubuntu-drivers autoinstall && sudo reboot".into()))),
                Err(e) => checks.push(check("NVIDIA driver", CheckStatus::Warn, format!("cannot run {}: {e}", smi.display()),
                    Some("sudo apt-get install --reinstall nvidia-utils-$(modinfo -F version nvidia | cut -d. -f1)".into()))),
            }
        }
        None => checks.push(check("NVIDIA driver", CheckStatus::Warn, "nvidia-smi is not on PATH: no NVIDIA driver (the GPU path is off)",
            Some("sudo ubuntu-drivers autoinstall && sudo reboot".into()))),
    }
    match find_library("libcuda.so.1") {
        Some(p) => checks.push(check("CUDA driver library", CheckStatus::Ok, p.display().to_string(), None)),
        None => checks.push(check("CUDA driver library", CheckStatus::Warn, "libcuda.so.1 not found", Some("sudo ubuntu-drivers autoinstall && sudo reboot".into()))),
    }
    if built {
        // candle links these; without them a CUDA build does not start at all.
        for lib in ["libcublas.so", "libcublasLt.so", "libcurand.so", "libnvrtc.so"] {
            if find_library(lib).is_none() {
                checks.push(check("CUDA libraries", CheckStatus::Warn, format!("{lib}* not found"), Some("sudo apt-get install nvidia-cuda-toolkit".into())));
            }
        }
        // Loaded at run time by the fused attention; without it attention takes the portable path.
        checks.push(match find_library("libcudnn.so") {
            Some(p) => check("cuDNN (fused attention)", CheckStatus::Ok, p.display().to_string(), None),
            None => check("cuDNN (fused attention)", CheckStatus::Warn, "libcudnn.so* not found: attention uses the slower portable path",
                Some("sudo apt-get install nvidia-cudnn   (or cudnn9-cuda-12 from NVIDIA's CUDA repository)".into())),
        });
    }
    checks
}

/// The first file whose name starts with `prefix` (`libcublas.so` matches `libcublas.so.12`) in
/// the dynamic linker's folders: LD_LIBRARY_PATH, the usual library folders, CUDA's.
fn find_library(prefix: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/wsl/lib"]
            .map(PathBuf::from),
    );
    dirs.iter().find_map(|dir| {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
        names.sort();
        names.into_iter().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
    })
}

/// `path` as one shell word.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c)) {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn weights_checks(args: &DoctorArgs) -> Vec<DoctorCheck> {
    let weights = args.weights.clone().unwrap_or_else(crate::cmd_models::default_weights_dir);
    let registry = match crate::cmd_models::registry_dir(args.registry.as_deref()) {
        Ok(r) => r,
        Err(e) => return vec![check("model registry", CheckStatus::Warn, e.to_string(), Some("livetalk doctor --registry DIR".into()))],
    };
    let mut download = format!("livetalk models download --weights {}", shell_word(&weights));
    if let Some(explicit) = &args.registry {
        download.push_str(&format!(" --registry {}", shell_word(explicit)));
    }
    if !weights.is_dir() {
        return vec![check("LiveTalk weights", CheckStatus::Warn,
            format!("{} does not exist: only the CPU avatar can run", weights.display()),
            Some(download))];
    }
    let entries = match ModelEntry::load_all(&registry) {
        Ok(entries) => entries,
        Err(e) => return vec![check("model registry", CheckStatus::Warn, e.to_string(), Some("reinstall livetalk, or pass the registry folder: livetalk doctor --registry DIR".into()))],
    };
    entries
        .iter()
        .map(|entry| {
            let name = format!("weights {}", entry.id);
            let reports = registry::verify(&crate::cmd_models::entry_dir(&weights, entry), entry);
            let problems: Vec<String> = reports.iter().filter_map(|r| r.outcome.as_ref().err().map(|e| e.to_string())).collect();
            if problems.is_empty() {
                return check(&name, CheckStatus::Ok, format!("{} files verified", reports.len()), None);
            }
            // Files in place that fail are moved aside first: download never overwrites a file.
            let mut steps: Vec<String> = reports
                .iter()
                .filter(|r| r.outcome.is_err() && r.path.exists())
                .map(|r| format!("mv {} {}", shell_word(&r.path), shell_word(&PathBuf::from(format!("{}.bad", r.path.display())))))
                .collect();
            steps.push(format!("{download} {}", entry.id));
            check(&name, CheckStatus::Warn, problems.join("; "), Some(steps.join(" && ")))
        })
        .collect()
}

/// Where the livetalk OBS plugin may be installed: the user folder (OBS 28+, also Flatpak's),
/// then the system folders (packaging/obs/install.sh puts it in one of these).
fn obs_plugin_places() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let config = std::env::var_os("XDG_CONFIG_HOME").filter(|c| !c.is_empty()).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".config")));
    let user = "obs-studio/plugins/livetalk-obs/bin/64bit/livetalk-obs.so";
    let mut places: Vec<PathBuf> = config.iter().map(|c| c.join(user)).collect();
    places.extend(home.iter().map(|h| h.join(".var/app/com.obsproject.Studio/config").join(user)));
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/lib64", "/usr/local/lib"] {
        places.push(Path::new(dir).join("obs-plugins/livetalk-obs.so"));
    }
    places
}

fn obs_plugin_check() -> DoctorCheck {
    let places = obs_plugin_places();
    let obs = on_path("obs");
    match places.iter().find(|p| p.is_file()) {
        Some(p) if obs.is_some() => check("OBS plugin", CheckStatus::Ok, format!("installed: {}", p.display()), None),
        Some(p) => check("OBS plugin", CheckStatus::Warn, format!("installed: {}, but OBS is not on PATH", p.display()), Some("sudo apt-get install obs-studio".into())),
        None => check("OBS plugin", CheckStatus::Warn,
            format!("not installed (looked for {})", places.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")),
            Some("packaging/obs/install.sh   (this user; `sudo packaging/obs/install.sh --system` for everyone; needs libobs-dev libclang-dev)".into())),
    }
}

fn extra_checks() -> Vec<DoctorCheck> {
    vec![
        match on_path("pw-cli") {
            Some(p) => check("PipeWire tools", CheckStatus::Ok, p.display().to_string(), None),
            None => check("PipeWire tools", CheckStatus::Warn, "pw-cli is not on PATH", Some("sudo apt-get install pipewire-bin".into())),
        },
        obs_plugin_check(),
        match livetalk_audio::tts::Espeak::find() {
            Some(e) => check("espeak-ng (text-to-speech)", CheckStatus::Ok, e.program().display().to_string(), None),
            None => check("espeak-ng (text-to-speech)", CheckStatus::Warn, "not found: `livetalk say` and --text use a recorded sample instead", Some("sudo apt-get install espeak-ng".into())),
        },
    ]
}

/// What the default CPU path needs: the persona presets load, and the control socket folder
/// can be made.
fn required_checks() -> Vec<DoctorCheck> {
    let mut checks = Vec::new();
    checks.push(match crate::presets::library(&[]) {
        Ok(lib) if lib.get("anna").is_ok() => check("persona presets", CheckStatus::Ok, format!("{} presets", lib.len()), None),
        Ok(_) => check("persona presets", CheckStatus::Fail, "the built-in preset `anna` is missing", Some("reinstall livetalk".into())),
        Err(e) => check("persona presets", CheckStatus::Fail, format!("{e:#}"), Some("fix or remove the preset named above (livetalk persona list)".into())),
    });
    let socket = livetalk_control::default_socket_path();
    let dir = socket.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    checks.push(if dir.is_dir() || base.is_dir() {
        check("control socket folder", CheckStatus::Ok, format!("{} (socket {})", base.display(), socket.display()), None)
    } else {
        check("control socket folder", CheckStatus::Fail, format!("{} does not exist", base.display()),
            Some("log in through a desktop session (sets XDG_RUNTIME_DIR), or: export XDG_RUNTIME_DIR=$(mktemp -d)".into()))
    });
    checks
}

pub fn doctor(args: DoctorArgs) -> Result<()> {
    let sections: Vec<(&str, Vec<DoctorCheck>, bool)> = vec![
        ("livetalk (required)", required_checks(), true),
        ("GPU", gpu_checks(), false),
        ("weights", weights_checks(&args), false),
        ("camera", doctor_checks(), false),
        ("extras", extra_checks(), false),
    ];
    let mut missing = 0;
    let mut problems = 0;
    for (title, checks, required) in &sections {
        println!("{title}:");
        for c in checks {
            println!("  {}", c.to_string().replace('\n', "\n  "));
            if c.status != CheckStatus::Ok {
                problems += 1;
                if *required && c.status == CheckStatus::Fail {
                    missing += 1;
                }
            }
        }
    }
    if missing > 0 {
        bail!("{missing} thing(s) the default CPU path needs are missing (see FAIL above)");
    }
    if problems == 0 {
        println!("everything is in place");
    } else {
        println!("the CPU avatar can run; {problems} optional part(s) need attention (fixes above)");
    }
    Ok(())
}
