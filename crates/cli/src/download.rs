//! Fetching the registry's files: Hugging Face repositories through the hf-hub crate
//! (`HF_ENDPOINT` and `HF_TOKEN` honoured), GitHub files with resumable range requests of our
//! own. Both download into a staging folder inside the weights folder (`.downloads/`, so the
//! final move is a rename), keep partial transfers there for the next run to resume, and hand
//! over a file only after its size and sha256 were checked: a file that fails is deleted, never
//! left where `livetalk run` would read it.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Repo, RepoType};
use indicatif::{ProgressBar, ProgressStyle};
use livetalk_model::checkpoint::registry::{sha256_file, ModelEntry, ModelFile, Source};

/// Where GitHub files come from; tests point it at a local server.
pub const GITHUB_ENDPOINT_VAR: &str = "LIVETALK_GITHUB_ENDPOINT";
/// Transfers that break are retried this often within one run (each retry resumes).
const RETRIES: usize = 3;
/// The staging folder's name inside the weights folder.
pub const STAGING: &str = ".downloads";

/// A downloaded, checked file, waiting in the staging folder.
struct Staged {
    path: PathBuf,
    /// Files to delete once `path` has been moved away (hf-hub's snapshot link and lock).
    leftovers: Vec<PathBuf>,
    /// The size the server announced.
    announced: Option<u64>,
    /// The sha256 the server vouches for (the Hub's ETag of a Git LFS file is its sha256).
    server_sha256: Option<String>,
}

pub struct Downloader {
    staging: PathBuf,
    hub: Api,
    github: ureq::Agent,
    github_endpoint: String,
}

impl Downloader {
    pub fn new(weights: &Path) -> Result<Self> {
        let staging = weights.join(STAGING);
        std::fs::create_dir_all(&staging).with_context(|| format!("creating the download folder {}", staging.display()))?;
        let mut builder = ApiBuilder::from_env()
            .with_cache_dir(staging.join("hub"))
            .with_progress(false)
            .with_retries(RETRIES)
            .with_user_agent("livetalk", env!("CARGO_PKG_VERSION"));
        if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
            builder = builder.with_token(Some(token.trim().to_string()));
        }
        let hub = builder.build().context("setting up the Hugging Face client")?;
        let github = ureq::AgentBuilder::new()
            .try_proxy_from_env(true)
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(60))
            .build();
        let github_endpoint = std::env::var(GITHUB_ENDPOINT_VAR)
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "https://github.com".into());
        Ok(Self { staging, hub, github, github_endpoint: github_endpoint.trim_end_matches('/').to_string() })
    }

    /// Downloads `file` of `entry` to `dest` (which must not exist yet), checked against the
    /// registry's size and sha256 and the server's own. Returns the file's sha256.
    pub fn fetch(&self, entry: &ModelEntry, file: &ModelFile, dest: &Path) -> Result<String> {
        let bar = progress_bar(&file.path);
        let staged = match entry.source {
            Source::Huggingface => self.fetch_hub(entry, file, &bar),
            Source::Github => self.fetch_github(entry, file, &bar),
        };
        bar.finish_and_clear();
        let staged = staged.with_context(|| {
            format!("downloading {} of {} failed; run the same command again to resume", file.path, entry.id)
        })?;
        let checked = check_staged(&staged, file);
        if let Err(e) = checked {
            for gone in std::iter::once(&staged.path).chain(&staged.leftovers) {
                let _ = std::fs::remove_file(gone);
            }
            return Err(e.context(format!("{} of {} was deleted, not used", file.path, entry.id)));
        }
        let sha256 = checked?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        move_file(&staged.path, dest).with_context(|| format!("moving {} to {}", staged.path.display(), dest.display()))?;
        for gone in &staged.leftovers {
            let _ = std::fs::remove_file(gone);
        }
        Ok(sha256)
    }

    /// Removes the staging folder when no partial transfer waits in it.
    pub fn tidy(&self) {
        if !holds_partial(&self.staging) {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }

    fn fetch_hub(&self, entry: &ModelEntry, file: &ModelFile, bar: &ProgressBar) -> Result<Staged> {
        let repo = Repo::with_revision(entry.repo.clone(), RepoType::Model, entry.revision.clone());
        // hf-hub resumes from its `<blob>.part` with a Range request, in this run and the next.
        let pointer = self.hub.repo(repo).download_with_progress(&file.path, HubProgress(bar.clone()))?;
        let blob = std::fs::canonicalize(&pointer).with_context(|| format!("resolving {}", pointer.display()))?;
        let etag = blob.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let lock = blob.with_extension("lock");
        Ok(Staged {
            leftovers: vec![pointer, lock],
            announced: bar.length(),
            server_sha256: is_sha256(&etag).then_some(etag),
            path: blob,
        })
    }

    fn fetch_github(&self, entry: &ModelEntry, file: &ModelFile, bar: &ProgressBar) -> Result<Staged> {
        let url = format!("{}/{}/raw/{}/{}", self.github_endpoint, entry.repo, entry.revision, file.path);
        let part = self
            .staging
            .join("github")
            .join(entry.repo.replace('/', "--"))
            .join(&entry.revision)
            .join(format!("{}.part", file.path));
        if let Some(parent) = part.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut attempt = 0;
        let total = loop {
            match self.github_range(&url, &part, bar) {
                Ok(total) => break total,
                Err(e) if attempt < RETRIES && e.downcast_ref::<std::io::Error>().is_some() => {
                    attempt += 1;
                    tracing::warn!("{url}: {e:#}; resuming (try {attempt} of {RETRIES})");
                    std::thread::sleep(Duration::from_millis(300 * attempt as u64));
                }
                Err(e) => return Err(e),
            }
        };
        let done = part.with_extension("");
        std::fs::rename(&part, &done)?;
        Ok(Staged { path: done, leftovers: Vec::new(), announced: Some(total), server_sha256: None })
    }

    /// Continues `part` from its length with a Range request (a server that ignores the range
    /// answers 200 and the transfer restarts from zero). Returns the file's total size. Broken
    /// transfers are `std::io::Error`s: retried, and the part is kept.
    fn github_range(&self, url: &str, part: &Path, bar: &ProgressBar) -> Result<u64> {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut request = self.github.get(url).set("Accept-Encoding", "identity");
        if have > 0 {
            request = request.set("Range", &format!("bytes={have}-"));
        }
        let response = match request.call() {
            Ok(r) => r,
            // The part already holds the whole file (an earlier run stopped before the rename).
            Err(ureq::Error::Status(416, r)) if have > 0 && content_range_total(&r) == Some(have) => {
                return Ok(have);
            }
            Err(ureq::Error::Status(code, r)) => bail!("{url}: HTTP {code} {}", r.status_text()),
            Err(ureq::Error::Transport(t)) => return Err(std::io::Error::other(t.to_string()).into()),
        };
        let length: Option<u64> = response.header("Content-Length").and_then(|v| v.trim().parse().ok());
        let (start, total) = match response.status() {
            206 => {
                let start = content_range_start(&response).with_context(|| format!("{url}: a 206 answer without a usable Content-Range"))?;
                if start != have {
                    bail!("{url}: asked for bytes from {have}, the server sent from {start}");
                }
                (have, content_range_total(&response).or(length.map(|l| have + l)))
            }
            _ => (0, length),
        };
        let mut out = OpenOptions::new().create(true).write(true).truncate(start == 0).append(start > 0).open(part)?;
        bar.set_length(total.unwrap_or(0));
        bar.set_position(start);
        let mut body = response.into_reader();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            out.write_all(&buffer[..n])?;
            bar.inc(n as u64);
        }
        out.flush()?;
        let got = out.metadata()?.len();
        Ok(total.unwrap_or(got))
    }
}

/// Size and sha256 against what the server announced and what the registry says; the sha256.
fn check_staged(staged: &Staged, file: &ModelFile) -> Result<String> {
    let size = std::fs::metadata(&staged.path)?.len();
    if let Some(announced) = staged.announced.filter(|&a| a != size) {
        bail!("{size} bytes arrived, the server announced {announced}");
    }
    if let Some(expected) = file.size.filter(|&e| e != size) {
        bail!("size {size} bytes, the registry expects {expected}");
    }
    let sha256 = sha256_file(&staged.path)?;
    if let Some(expected) = file.sha256.as_ref().filter(|e| **e != sha256) {
        bail!("checksum mismatch: sha256 {sha256}, the registry expects {expected}");
    }
    if let Some(expected) = staged.server_sha256.as_ref().filter(|e| **e != sha256) {
        bail!("checksum mismatch: sha256 {sha256}, the server's ETag says {expected}");
    }
    Ok(sha256)
}

/// A rename; a copy under a temporary name then a rename where `dest` lies on another file
/// system (a model folder linked elsewhere), so a half-copied file never has the final name.
fn move_file(from: &Path, dest: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, dest) {
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let partial = dest.with_file_name(format!(".{}.partial", dest.file_name().unwrap_or_default().to_string_lossy()));
            std::fs::copy(from, &partial)?;
            std::fs::rename(&partial, dest)?;
            std::fs::remove_file(from)
        }
        other => other,
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn content_range_start(response: &ureq::Response) -> Option<u64> {
    let range = response.header("Content-Range")?.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

fn content_range_total(response: &ureq::Response) -> Option<u64> {
    response.header("Content-Range")?.rsplit('/').next()?.trim().parse().ok()
}

fn holds_partial(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|listing| {
        listing.flatten().any(|item| {
            let path = item.path();
            if path.is_dir() && !path.is_symlink() {
                holds_partial(&path)
            } else {
                path.extension().is_some_and(|e| e == "part")
            }
        })
    })
}

fn progress_bar(name: &str) -> ProgressBar {
    // Drawn on stderr only when it is a terminal.
    let bar = ProgressBar::new(0).with_message(name.to_string());
    if let Ok(style) = ProgressStyle::with_template("{msg:30!} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// hf-hub's progress callbacks onto our bar (hf-hub's own restyles it and cuts names mid-char).
struct HubProgress(ProgressBar);

impl hf_hub::api::Progress for HubProgress {
    fn init(&mut self, size: usize, _filename: &str) {
        self.0.set_length(size as u64);
        self.0.set_position(0);
    }
    fn update(&mut self, size: usize) {
        self.0.inc(size as u64);
    }
    fn finish(&mut self) {}
}
