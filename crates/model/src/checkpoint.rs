//! Checkpoint loading: `.safetensors` and PyTorch `.pth` files, memory-mapped, read without
//! Python, checked against golden manifests of the published checkpoints.
//!
//! # Formats
//! * `.safetensors`: the header is parsed and validated by the `safetensors` crate (lengths,
//!   offsets, data section). When it refuses a file we parse the header ourselves to say which
//!   tensor runs past the end (truncated download) or has an inconsistent byte range.
//! * `.pth` (`torch.save` zip archives: `<dir>/data.pkl` + `<dir>/data/<storage>`): the pickle
//!   is run by candle's pickle VM (`candle_core::pickle::Stack`); we interpret the resulting
//!   object tree ourselves (module [`pth`]). candle's own `PthTensors` was evaluated and not
//!   used as is: it panics on malformed rebuild tuples (`Vec::remove`), prints and skips
//!   tensors it cannot read, reopens the archive for every tensor and does not check that a
//!   storage entry really holds the bytes the pickle promises. Here torch's uncompressed
//!   storages are read straight from the memory map, bounds-checked, so a `.pth` loads like a
//!   `.safetensors` file.
//!
//! # Loading
//! [`Checkpoint::var_builder`] gives a candle `VarBuilder` whose tensors are copied out of the
//! map one at a time and converted to the requested dtype on the way, so loading the 1.4B DiT
//! in bf16 needs the bf16 weights plus one f32 tensor of host memory (the pages of each tensor
//! are released from the resident set once copied). Every error names the file and the tensor: candle's
//! `VarBuilder::from_mmaped_safetensors` reports "cannot find tensor X" or "shape mismatch for
//! X" without the file, and converts a tensor before checking its shape; this backend checks
//! the shape from the header first.
//!
//! # Validation against manifests
//! `fixtures/manifests/*.manifest.json` (copied to `models/manifests/`) list the real files'
//! tensors. [`Expected`] turns a manifest into the set of tensors one file must hold:
//! * full mode (the published files): names, shapes and (where the manifest gives one) dtypes
//!   must match exactly; nothing may be missing or extra.
//! * tiny fixtures keep the real names but have smaller shapes and fewer layers. Names still
//!   must match exactly, after two config-aware rules: [`Expected::limit_layers`] keeps the
//!   layer-indexed keys `<family>N.…` only for `N < count` (the tiny DiT has 6 `blocks.` and 2
//!   `audio_cond_projs.`, the tiny wav2vec2 4 `wav2vec2.encoder.layers.`), and
//!   [`Expected::only_prefixes`] keeps a part of the file (the tiny TAEHV has `decoder.` only).
//!   Shapes are then checked through a [`DimMap`] built from the real and the tiny config (each
//!   real size maps to the tiny size, e.g. 1536 -> 64), or by rank only.
//! * files that store the model under a prefix (`model.…`): [`Expected::with_prefix`]. The
//!   manifests' own `key_prefix` field is descriptive only: their keys are complete
//!   (`wav2vec2.…`, `lm_head.…`).
//! * TAEHV's TGrow weights may be taller in real files ([`Expected::allow_larger_dim0`]).
//!
//! The first problem (in key order) becomes one error line naming the file, the tensor and the
//! manifest, with the count of further problems; [`Expected::problems`] lists them all.

mod backend;
mod expect;
pub mod manifest;
pub mod pth;
pub mod registry;
mod safetensors_file;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;

pub use expect::{DimMap, Expected, Problem, ShapeRule};
pub use manifest::{keys_md5, Manifest, ManifestTensor};
pub use registry::{sha256_file, verify, FileReport, ModelEntry, ModelFile, Verified};

/// Everything that can go wrong reading or checking a checkpoint. Each message is one line that
/// starts with the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a valid safetensors file: {reason}", file.display())]
    Safetensors { file: PathBuf, reason: String },
    #[error("{}: not a valid PyTorch checkpoint: {reason}", file.display())]
    Pth { file: PathBuf, reason: String },
    #[error("{}: tensor '{tensor}': {reason}", file.display())]
    Tensor {
        file: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error("{}: {problem} (checked against {}){}", file.display(), manifest.display(), more_problems(*more))]
    Mismatch {
        file: PathBuf,
        manifest: PathBuf,
        problem: Box<Problem>,
        more: usize,
    },
    #[error("{}: {reason}", file.display())]
    Manifest { file: PathBuf, reason: String },
    #[error("{}: {reason}", file.display())]
    Registry { file: PathBuf, reason: String },
    #[error("{}: {reason}", file.display())]
    Verify { file: PathBuf, reason: String },
}

fn more_problems(more: usize) -> String {
    match more {
        0 => String::new(),
        1 => "; 1 more problem".to_string(),
        n => format!("; {n} more problems"),
    }
}

impl CheckpointError {
    pub(crate) fn io(file: &Path, source: std::io::Error) -> Self {
        Self::Io {
            file: file.to_path_buf(),
            source,
        }
    }
    pub(crate) fn tensor(file: &Path, tensor: &str, reason: impl Into<String>) -> Self {
        Self::Tensor {
            file: file.to_path_buf(),
            tensor: tensor.to_string(),
            reason: reason.into(),
        }
    }
}

/// A tensor as a checkpoint's header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorHeader {
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorHeader {
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Where one tensor's bytes lie in the mapped file.
#[derive(Debug, Clone)]
pub(crate) struct TensorRecord {
    pub header: TensorHeader,
    pub bytes: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    Pth,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Safetensors => "safetensors",
            Format::Pth => "pth",
        })
    }
}

/// The safetensors spelling of a dtype ("F32", "BF16", ...), which the manifests use.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::U8 => "U8",
        DType::U32 => "U32",
        DType::I16 => "I16",
        DType::I32 => "I32",
        DType::I64 => "I64",
        DType::BF16 => "BF16",
        DType::F16 => "F16",
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::F8E4M3 => "F8_E4M3",
        other => other.as_str(),
    }
}

/// The dtypes a checkpoint may store (the ones candle can build a tensor from bytes with).
pub fn parse_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "U8" => DType::U8,
        "U32" => DType::U32,
        "I16" => DType::I16,
        "I32" => DType::I32,
        "I64" => DType::I64,
        "BF16" => DType::BF16,
        "F16" => DType::F16,
        "F32" => DType::F32,
        "F64" => DType::F64,
        _ => return None,
    })
}

/// An opened, memory-mapped checkpoint whose header has been parsed and checked.
#[derive(Clone)]
pub struct Checkpoint {
    path: PathBuf,
    format: Format,
    map: Arc<Mmap>,
    tensors: Arc<BTreeMap<String, TensorRecord>>,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Checkpoint {
    /// Opens a `.safetensors` or `.pth`/`.pt`/`.bin`/`.ckpt` file (by extension; otherwise by
    /// content: zip archives are PyTorch files) and checks its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        // SAFETY: the map is read-only; like every mmap loader we rely on nobody truncating the
        // file while it is open (the published weights are never rewritten in place).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))?;
        let format = detect_format(path, &map);
        let tensors = match format {
            Format::Safetensors => safetensors_file::read_records(path, &map)?,
            Format::Pth => pth::read_records(path, &map)?,
        };
        Ok(Self {
            path: path.to_path_buf(),
            format,
            map: Arc::new(map),
            tensors: Arc::new(tensors),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&TensorHeader> {
        self.tensors.get(name).map(|r| &r.header)
    }

    /// `(name, header)` for every tensor, sorted by name.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &TensorHeader)> {
        self.tensors.iter().map(|(k, r)| (k.as_str(), &r.header))
    }

    /// Total number of elements over all tensors.
    pub fn num_params(&self) -> usize {
        self.tensors.values().map(|r| r.header.num_elements()).sum()
    }

    /// The DiffSynth/LiveTalk key hash of this file (see [`keys_md5`]).
    pub fn keys_md5(&self) -> String {
        keys_md5(self.headers().map(|(k, h)| (k, h.shape.as_slice())))
    }

    /// Reads one tensor, converted to `dtype`, on `device`.
    pub fn load(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, CheckpointError> {
        let record = self
            .tensors
            .get(name)
            .ok_or_else(|| CheckpointError::tensor(&self.path, name, "not in this checkpoint"))?;
        let bytes = &self.map[record.bytes.clone()];
        let fail = |e: candle_core::Error| CheckpointError::tensor(&self.path, name, e.to_string());
        // Convert on the CPU before moving: a bf16 copy is half the transfer of an f32 one.
        let tensor = Tensor::from_raw_buffer(
            bytes,
            record.header.dtype,
            &record.header.shape,
            &Device::Cpu,
        )
        .and_then(|t| t.to_dtype(dtype))
        .map_err(fail)?;
        self.release_pages(record.bytes.clone());
        tensor.to_device(device).map_err(fail)
    }

    /// Opens `path` and checks it against `expected` (what a model loader usually wants).
    pub fn open_validated(
        path: impl AsRef<Path>,
        expected: &Expected,
    ) -> Result<Self, CheckpointError> {
        let checkpoint = Self::open(path)?;
        checkpoint.validate(expected)?;
        Ok(checkpoint)
    }

    /// Drops the mapped pages lying wholly inside `range` from this process's resident set:
    /// the tensor has been copied out, and without this the file's pages would stay resident
    /// next to the converted weights (1.5x the f32 file size for a bf16 load instead of 0.5x).
    fn release_pages(&self, range: Range<usize>) {
        const PAGE: usize = 4096;
        let start = range.start.div_ceil(PAGE) * PAGE;
        let end = range.end / PAGE * PAGE;
        if end > start {
            // SAFETY: a read-only file mapping: MADV_DONTNEED only drops clean pages, which are
            // read again from the file if touched. The range is inside the map and belongs to
            // this tensor alone (whole pages strictly inside its bytes); no slice of it is live.
            // Failure only means the pages stay resident, so the result is ignored.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }

    /// Checks this checkpoint's header against `expected`; the first problem is the error.
    pub fn validate(&self, expected: &Expected) -> Result<(), CheckpointError> {
        expected.check(&self.path, self.headers())
    }

    /// A candle `VarBuilder` reading this checkpoint lazily, tensor by tensor.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> candle_nn::VarBuilder<'static> {
        backend::var_builder(self.clone(), dtype, device)
    }
}

fn detect_format(path: &Path, bytes: &[u8]) -> Format {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("safetensors") => Format::Safetensors,
        Some("pth" | "pt" | "bin" | "ckpt") => Format::Pth,
        _ if bytes.starts_with(b"PK\x03\x04") => Format::Pth,
        _ => Format::Safetensors,
    }
}
