//! The model registry (`models/*.toml`, one per published model) and [`verify`], which checks a
//! downloaded copy: every file present, sizes and sha256 where the registry knows them, and
//! each checkpoint's header against its manifest.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Checkpoint, CheckpointError, Expected, Manifest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Huggingface,
    Github,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Licence {
    /// SPDX-style name, e.g. "Apache-2.0".
    pub name: String,
    pub url: String,
    /// Caveats the user must see with the licence.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Path inside the repository, also the path inside the local model directory.
    pub path: String,
    /// Exact size in bytes, where known.
    #[serde(default)]
    pub size: Option<u64>,
    /// Lower-case hex sha256 of the file, where known.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Manifest of the tensors, relative to the registry directory (checkpoints only).
    #[serde(default)]
    pub manifest: Option<String>,
    /// Tensors whose first dimension may be a multiple of the manifest's.
    #[serde(default)]
    pub larger_dim0: Vec<String>,
    /// What the file is for.
    #[serde(default)]
    pub purpose: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The name users type: `livetalk models download <id or bundle>`.
    pub id: String,
    pub description: String,
    /// Bundles this model belongs to (e.g. "livetalk-1.3b" = everything the avatar needs).
    #[serde(default)]
    pub bundles: Vec<String>,
    pub source: Source,
    /// "owner/name" on the source.
    pub repo: String,
    pub revision: String,
    /// Sub-folder of the weights folder the files go in (`wav2vec2-base-960h`, whose
    /// `model.safetensors` would clash with LiveTalk's); none: the weights folder itself.
    #[serde(default)]
    pub folder: Option<String>,
    pub licence: Licence,
    pub files: Vec<ModelFile>,
    /// The registry directory this entry was read from (manifests are relative to it).
    #[serde(skip)]
    pub registry_dir: PathBuf,
}

fn registry_error(file: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Registry {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

impl ModelEntry {
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| CheckpointError::io(path, e))?;
        let mut entry: ModelEntry =
            toml::from_str(&text).map_err(|e| registry_error(path, e.message().to_string()))?;
        entry.registry_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some(folder) = entry.folder.as_deref().filter(|f| !is_plain_relative(f)) {
            return Err(registry_error(
                path,
                format!("folder `{folder}` must be a relative path without `..`"),
            ));
        }
        for file in &entry.files {
            if !is_plain_relative(&file.path) {
                return Err(registry_error(
                    path,
                    format!("file path `{}` must be a relative path without `..`", file.path),
                ));
            }
            if let Some(sha) = &file.sha256 {
                if sha.len() != 64
                    || !sha
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(registry_error(
                        path,
                        format!("{}: sha256 is not 64 lower-case hex digits", file.path),
                    ));
                }
            }
            if let Some(manifest) = entry.manifest_path(file) {
                if !manifest.is_file() {
                    return Err(registry_error(
                        path,
                        format!("{}: manifest {} not found", file.path, manifest.display()),
                    ));
                }
            }
        }
        Ok(entry)
    }

    /// Every `*.toml` in `dir`, sorted by id.
    pub fn load_all(dir: impl AsRef<Path>) -> Result<Vec<Self>, CheckpointError> {
        let dir = dir.as_ref();
        let listing = std::fs::read_dir(dir).map_err(|e| CheckpointError::io(dir, e))?;
        let mut entries = Vec::new();
        for item in listing {
            let path = item.map_err(|e| CheckpointError::io(dir, e))?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                entries.push(Self::load(&path)?);
            }
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(entries)
    }

    pub fn manifest_path(&self, file: &ModelFile) -> Option<PathBuf> {
        file.manifest.as_ref().map(|m| self.registry_dir.join(m))
    }

    /// Where the file is downloaded from.
    pub fn download_url(&self, file: &ModelFile) -> String {
        match self.source {
            Source::Huggingface => format!(
                "https://huggingface.co/{}/resolve/{}/{}",
                self.repo, self.revision, file.path
            ),
            Source::Github => format!(
                "https://github.com/{}/raw/{}/{}",
                self.repo, self.revision, file.path
            ),
        }
    }
}

/// A path that stays below the folder it is joined to: relative, no `..`, not empty.
fn is_plain_relative(path: &str) -> bool {
    let path = Path::new(path);
    path.components().next().is_some()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// What [`verify`] found for one file.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub outcome: Result<Verified, CheckpointError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    /// Computed only when the registry gives one to compare with.
    pub sha256_checked: bool,
    /// Tensors checked against the manifest (0 for files without one).
    pub tensors_checked: usize,
}

/// Checks the files of `entry` in `dir` (laid out as in the repository). One report per file.
pub fn verify(dir: &Path, entry: &ModelEntry) -> Vec<FileReport> {
    entry
        .files
        .iter()
        .map(|file| {
            let path = dir.join(&file.path);
            let outcome = verify_file(&path, entry, file);
            FileReport { path, outcome }
        })
        .collect()
}

fn verify_file(
    path: &Path,
    entry: &ModelEntry,
    file: &ModelFile,
) -> Result<Verified, CheckpointError> {
    let fail = |reason: String| CheckpointError::Verify {
        file: path.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            fail(format!("missing (download {})", entry.download_url(file)))
        }
        _ => CheckpointError::io(path, e),
    })?;
    let size = metadata.len();
    if let Some(expected) = file.size {
        if size != expected {
            return Err(fail(format!(
                "size {size} bytes, expected {expected}: incomplete or different file"
            )));
        }
    }
    if let Some(expected) = &file.sha256 {
        let found = sha256_file(path)?;
        if &found != expected {
            return Err(fail(format!("sha256 {found}, expected {expected}")));
        }
    }
    let mut tensors_checked = 0;
    if let Some(manifest_path) = entry.manifest_path(file) {
        let manifest = Manifest::load(&manifest_path)?;
        let expected = Expected::full(&manifest).allow_larger_dim0(&file.larger_dim0);
        Checkpoint::open(path)?.validate(&expected)?;
        tensors_checked = expected.len();
    }
    Ok(Verified {
        size,
        sha256_checked: file.sha256.is_some(),
        tensors_checked,
    })
}

/// Lower-case hex sha256 of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<String, CheckpointError> {
    let mut file = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| CheckpointError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
