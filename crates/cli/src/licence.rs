//! The weights' licences, shown and accepted before their first download. Acceptances are kept
//! in `$XDG_CONFIG_HOME/livetalk/accepted-licences` (one `model-id licence` line each), so a
//! licence is asked for once per model; a new licence name for the same model asks again.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use livetalk_model::checkpoint::registry::ModelEntry;

/// `$XDG_CONFIG_HOME/livetalk` (or `~/.config/livetalk`).
pub fn config_dir() -> PathBuf {
    crate::cmd_models::xdg_livetalk_dir("XDG_CONFIG_HOME", ".config")
}

pub fn record_path() -> PathBuf {
    config_dir().join("accepted-licences")
}

fn record_line(entry: &ModelEntry) -> String {
    format!("{} {}", entry.id, entry.licence.name)
}

fn accepted() -> Vec<String> {
    std::fs::read_to_string(record_path())
        .map(|text| text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty() && !l.starts_with('#')).collect())
        .unwrap_or_default()
}

fn record(entries: &[&ModelEntry]) -> Result<()> {
    let path = record_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let fresh = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("recording the licence acceptance in {}", path.display()))?;
    let mut text = String::new();
    if fresh {
        text.push_str("# Model licences accepted with `livetalk models download` (model id, licence).\n");
    }
    for entry in entries {
        text.push_str(&record_line(entry));
        text.push('\n');
    }
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Shows the licences of `entries` not accepted yet and asks for them (or takes `accept_flag`);
/// refuses when nobody can be asked. Returns once every licence is accepted and recorded.
pub fn ensure_accepted(entries: &[&ModelEntry], accept_flag: bool) -> Result<()> {
    let known = accepted();
    let pending: Vec<&ModelEntry> = entries.iter().copied().filter(|e| !known.contains(&record_line(e))).collect();
    if pending.is_empty() {
        return Ok(());
    }
    println!("Before the first download, read the licence of each model:");
    for entry in &pending {
        println!("  {} ({}): {}  {}", entry.id, entry.repo, entry.licence.name, entry.licence.url);
        if let Some(note) = &entry.licence.note {
            println!("      {note}");
        }
    }
    let names = pending.iter().map(|e| format!("{} ({})", e.id, e.licence.name)).collect::<Vec<_>>().join(", ");
    if !accept_flag {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!("the licence of {names} is not accepted yet and there is no terminal to ask: read it, then run again with --accept-licence");
        }
        print!("Do you accept these licences? Type `yes` to download: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y") {
            bail!("the licence of {names} was not accepted: nothing was downloaded");
        }
    }
    record(&pending)?;
    println!("accepted; recorded in {}", record_path().display());
    Ok(())
}
