//! `livetalk models list|download|verify`: the model registry (models/*.toml), downloading its
//! files (after their licence was accepted) and checking a weights folder against it (size,
//! sha256, tensor manifests).

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
    /// Download models (ids or bundles; default: the livetalk-1.3b bundle) into the weights
    /// folder, resuming interrupted transfers, then verify them. Honours HF_ENDPOINT and HF_TOKEN.
    Download {
        /// Model ids or bundle names from `livetalk models list`.
        #[arg(value_name = "MODEL")]
        models: Vec<String>,
        /// Accept the models' licences without asking (for scripts; read them first).
        #[arg(long)]
        accept_licence: bool,
        #[command(flatten)]
        args: ModelsArgs,
    },
}

/// What `livetalk models download` fetches when no model is named: everything the avatar needs.
pub const DEFAULT_BUNDLE: &str = "livetalk-1.3b";

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
    xdg_livetalk_dir("XDG_DATA_HOME", ".local/share").join("weights")
}

/// `$VAR/livetalk`, or `~/HOME_RELATIVE/livetalk` when the XDG variable is unset.
pub fn xdg_livetalk_dir(var: &str, home_relative: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(home_relative)))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("livetalk")
}

/// Where an entry's files live in a weights folder: the registry's `folder` (`wav2vec2-base-960h/`),
/// else a sub-folder named after its id when there is one, else the folder itself.
pub fn entry_dir(weights: &Path, entry: &ModelEntry) -> PathBuf {
    if let Some(folder) = &entry.folder {
        return weights.join(folder);
    }
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
    Ok(entries.into_iter().map(|entry| check_entry(weights, entry)).collect())
}

fn check_entry(weights: &Path, entry: ModelEntry) -> EntryCheck {
    let reports = registry::verify(&entry_dir(weights, &entry), &entry);
    let verified = reports.iter().filter(|r| r.outcome.is_ok()).count();
    let problems = reports.into_iter().filter_map(|r| r.outcome.err().map(|e| e.to_string())).collect();
    EntryCheck { entry, verified, problems }
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
            let bad = check_weights(&registry, &weights)?.iter().filter(|c| !print_check(c)).count();
            if bad > 0 {
                bail!("{bad} model(s) in {} are missing files or do not match the registry", weights.display());
            }
            Ok(())
        }
        ModelsCommand::Download { models, accept_licence, args } => {
            let registry = registry_dir(args.registry.as_deref())?;
            let weights = args.weights.clone().unwrap_or_else(default_weights_dir);
            download(&registry, &weights, &models, accept_licence)
        }
    }
}

/// Prints one entry's verification (`ok` or `FAIL` and its problems); true when it is good.
fn print_check(check: &EntryCheck) -> bool {
    if check.problems.is_empty() {
        println!("ok    {} ({} files)", check.entry.id, check.verified);
        return true;
    }
    println!("FAIL  {} ({} of {} files good)", check.entry.id, check.verified, check.entry.files.len());
    for p in &check.problems {
        println!("      {p}");
    }
    false
}

/// The entries `names` (ids or bundles) stand for, in registry order.
fn select<'a>(entries: &'a [ModelEntry], names: &[String]) -> Result<Vec<&'a ModelEntry>> {
    let default = [DEFAULT_BUNDLE.to_string()];
    let names = if names.is_empty() { &default[..] } else { names };
    for name in names {
        if !entries.iter().any(|e| &e.id == name || e.bundles.contains(name)) {
            let mut known: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
            known.extend(entries.iter().flat_map(|e| e.bundles.iter().map(String::as_str)));
            known.sort();
            known.dedup();
            bail!("no model or bundle named `{name}` in the registry (known: {})", known.join(", "));
        }
    }
    Ok(entries.iter().filter(|e| names.iter().any(|n| &e.id == n || e.bundles.contains(n))).collect())
}

/// `livetalk models download`: licences first, then each missing file (present ones that verify
/// are kept; present ones that do not are left untouched and reported), then `verify`.
fn download(registry: &Path, weights: &Path, names: &[String], accept_licence: bool) -> Result<()> {
    let entries = ModelEntry::load_all(registry).with_context(|| format!("reading the model registry {}", registry.display()))?;
    let chosen = select(&entries, names)?;
    crate::licence::ensure_accepted(&chosen, accept_licence)?;
    let downloader = crate::download::Downloader::new(weights)?;
    let mut failures = Vec::new();
    for entry in &chosen {
        let dir = entry_dir(weights, entry);
        for (file, report) in entry.files.iter().zip(registry::verify(&dir, entry)) {
            match report.outcome {
                Ok(_) => println!("have  {} {}", entry.id, file.path),
                Err(_) if report.path.exists() => failures.push(format!(
                    "{} exists but does not match the registry; it was left untouched (see `livetalk models verify`): move it away and run again",
                    report.path.display()
                )),
                Err(_) => {
                    println!("get   {} {} from {}", entry.id, file.path, entry.download_url(file));
                    match downloader.fetch(entry, file, &report.path) {
                        Ok(sha256) => println!("      sha256 {sha256}"),
                        Err(e) => failures.push(crate::format_chain(&e)),
                    }
                }
            }
        }
    }
    downloader.tidy();
    let bad = chosen.iter().filter(|entry| !print_check(&check_entry(weights, (**entry).clone()))).count();
    for failure in &failures {
        eprintln!("error: {failure}");
    }
    if !failures.is_empty() || bad > 0 {
        bail!("{} download(s) failed, {bad} model(s) do not verify in {}", failures.len(), weights.display());
    }
    println!("all {} model(s) downloaded and verified in {}", chosen.len(), weights.display());
    Ok(())
}
