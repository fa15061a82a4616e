//! `livetalk models list` and `livetalk models verify [DIR]`: the model registry (models/*.toml)
//! and the downloaded weights checked against it (size, sha256, tensor manifests).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use livetalk_model::checkpoint::registry::{self, ModelEntry};

#[derive(clap::Subcommand, Debug)]
pub enum ModelsCommand {
    /// The registry's models: licence, sizes, and whether they are in the weights folder.
    List(ModelsArgs),
    /// Check the weights folder (default: the data folder) against the registry.
    Verify {
        /// The weights folder (laid out as `livetalk run --weights DIR` reads it).
        dir: Option<PathBuf>,
        #[command(flatten)]
        args: ModelsArgs,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct ModelsArgs {
    /// The registry folder (default: the installed one, or models/ of a source checkout).
    #[arg(long, value_name = "DIR")]
    pub registry: Option<PathBuf>,
    /// The weights folder for `list` (default: $XDG_DATA_HOME/livetalk/weights).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
}

/// The registry folder: `/usr/share/livetalk/models`, or `models/` of the source checkout the
/// binary runs from.
pub fn registry_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(repo) = exe.ancestors().find(|p| p.join("models").is_dir() && p.join("Cargo.toml").is_file()) {
            return Ok(repo.join("models"));
        }
    }
    let installed = PathBuf::from("/usr/share/livetalk/models");
    if installed.is_dir() {
        return Ok(installed);
    }
    bail!("no model registry found (looked in /usr/share/livetalk/models and a source checkout's models/): pass --registry DIR")
}

/// `$XDG_DATA_HOME/livetalk/weights` (or `~/.local/share/livetalk/weights`).
pub fn default_weights_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("livetalk/weights")
}

/// Where an entry's files live in a weights folder: its own sub-folder when there is one
/// (`wav2vec2-base-960h/`), else the folder itself.
pub fn entry_dir(weights: &Path, entry: &ModelEntry) -> PathBuf {
    let own = weights.join(&entry.id);
    if own.is_dir() { own } else { weights.to_path_buf() }
}

/// Per entry: files verified, and the problems found (one line each).
pub struct EntryCheck {
    pub entry: ModelEntry,
    pub verified: usize,
    pub problems: Vec<String>,
}

pub fn check_weights(registry: &Path, weights: &Path) -> Result<Vec<EntryCheck>> {
    let entries = ModelEntry::load_all(registry).with_context(|| format!("reading the model registry {}", registry.display()))?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let reports = registry::verify(&entry_dir(weights, &entry), &entry);
            let verified = reports.iter().filter(|r| r.outcome.is_ok()).count();
            let problems = reports.into_iter().filter_map(|r| r.outcome.err().map(|e| e.to_string())).collect();
            EntryCheck { entry, verified, problems }
        })
        .collect())
}

fn size_text(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) => format!("{b} B"),
        None => "size not recorded".into(),
    }
}

pub fn models(command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List(args) => {
            let registry = registry_dir(args.registry.as_deref())?;
            let weights = args.weights.clone().unwrap_or_else(default_weights_dir);
            println!("registry {}; weights {}", registry.display(), weights.display());
            for check in check_weights(&registry, &weights)? {
                let e = &check.entry;
                let known: Vec<u64> = e.files.iter().filter_map(|f| f.size).collect();
                let total = (known.len() == e.files.len()).then(|| known.iter().sum());
                let present = if check.problems.is_empty() {
                    "present".to_string()
                } else if check.verified == 0 {
                    "missing".to_string()
                } else {
                    format!("incomplete ({} of {} files)", check.verified, e.files.len())
                };
                println!("{:<22} {present:<12} {} files, {}  licence {}  ({}:{})", e.id, e.files.len(), size_text(total), e.licence.name, e.repo, e.revision);
                println!("    {}", e.description);
                if let Some(note) = &e.licence.note {
                    println!("    licence note: {note}");
                }
                for f in &e.files {
                    println!("    - {} ({})", f.path, size_text(f.size));
                }
            }
            Ok(())
        }
        ModelsCommand::Verify { dir, args } => {
            let registry = registry_dir(args.registry.as_deref())?;
            let weights = dir.or(args.weights).unwrap_or_else(default_weights_dir);
            if !weights.is_dir() {
                bail!("the weights folder {} does not exist (download the models, or pass the folder: livetalk models verify DIR)", weights.display());
            }
            let mut bad = 0;
            for check in check_weights(&registry, &weights)? {
                if check.problems.is_empty() {
                    println!("ok    {} ({} files)", check.entry.id, check.verified);
                } else {
                    bad += 1;
                    println!("FAIL  {} ({} of {} files good)", check.entry.id, check.verified, check.entry.files.len());
                    for p in &check.problems {
                        println!("      {p}");
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} model(s) in {} are missing files or do not match the registry", weights.display());
            }
            Ok(())
        }
    }
}
