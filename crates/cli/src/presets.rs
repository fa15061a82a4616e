//! Where persona presets come from: the built-in ones (compiled into the binary, so a fresh
//! install works from any folder), then the system and user folders, then `--presets DIR`.
//! Later folders override earlier ones by name.

use std::path::PathBuf;

use anyhow::{Context, Result};
use livetalk_core::{Persona, PersonaLibrary};

/// The presets shipped in `presets/`, embedded at build time.
const BUILT_IN: &[(&str, &str)] = &[
    ("anna.toml", include_str!("../../../presets/anna.toml")),
    ("kai.toml", include_str!("../../../presets/kai.toml")),
];

/// The folders searched for presets, in order.
pub fn search_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/share/livetalk/presets")];
    // Running from a source checkout: the repo's presets/ (pictures for PNGTuber personas).
    if let Ok(exe) = std::env::current_exe() {
        if let Some(repo) = exe.ancestors().find(|p| p.join("presets").is_dir() && p.join("Cargo.toml").is_file()) {
            dirs.push(repo.join("presets"));
        }
    }
    dirs.extend(user_dir());
    dirs.extend(extra.iter().cloned());
    dirs
}

/// The user's own presets: `$XDG_CONFIG_HOME/livetalk/personas` (default `~/.config/…`).
pub fn user_dir() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("livetalk/personas"))
}

pub fn library(extra: &[PathBuf]) -> Result<PersonaLibrary> {
    for dir in extra {
        if !dir.is_dir() {
            anyhow::bail!("preset folder {} does not exist", dir.display());
        }
    }
    let existing: Vec<PathBuf> = search_dirs(extra).into_iter().filter(|d| d.is_dir()).collect();
    let mut lib = PersonaLibrary::discover(&existing).context("loading persona presets")?;
    for (file, text) in BUILT_IN {
        let name = file.trim_end_matches(".toml");
        if lib.get(name).is_err() {
            let origin = PathBuf::from("<built-in>").join(file);
            let persona = Persona::from_toml_str(text, &origin)
                .with_context(|| format!("built-in preset {file}"))?;
            lib.insert(persona);
        }
    }
    for err in lib.errors() {
        tracing::warn!("skipped a preset: {err}");
    }
    for conflict in lib.hotkey_conflicts() {
        tracing::warn!("{conflict}");
    }
    Ok(lib)
}
