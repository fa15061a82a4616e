//! On-disk cache of a persona's prompt embedding, so the 5.7B umT5 encoder runs once per
//! prompt and is never resident while streaming.
//!
//! One `.safetensors` file: the tensor `prompt_embeds` holds the embedding's rows up to the last
//! nonzero one (`[n, dim]`; Wan zeroes every row after the prompt's tokens, so a 20-token prompt
//! stores 20 rows, not 512), and the header's metadata holds
//!
//! | key | value |
//! |---|---|
//! | `format` | `livetalk-prompt-embedding` |
//! | `version` | `1` |
//! | `prompt` | the prompt text as given |
//! | `encoder` | fingerprint of the text encoder file ([`encoder_fingerprint`]) |
//! | `text_len` | rows of the full embedding (512); [`read`] pads back to it with zeros |
//!
//! [`load`] refuses a cache made for another prompt (compared after Wan's text cleaning, so a
//! change of spacing alone still hits) or by another encoder, with an error that says so.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use crate::umt5::clean_prompt;

pub const FORMAT: &str = "livetalk-prompt-embedding";
pub const VERSION: &str = "1";
/// Name of the embedding tensor in the file.
pub const TENSOR_NAME: &str = "prompt_embeds";

#[derive(Debug, thiserror::Error)]
pub enum PromptCacheError {
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a prompt embedding cache: {reason}", file.display())]
    Format { file: PathBuf, reason: String },
    #[error("{}: metadata field `{field}`: {reason}", file.display())]
    Field {
        file: PathBuf,
        field: &'static str,
        reason: String,
    },
    #[error("{}: tensor `{TENSOR_NAME}`: {reason}", file.display())]
    Tensor { file: PathBuf, reason: String },
    #[error("{}: cached for another prompt ({cached:?}, not {requested:?}); encode the prompt again", file.display())]
    PromptMismatch {
        file: PathBuf,
        cached: String,
        requested: String,
    },
    #[error("{}: computed by another text encoder (fingerprint {cached}, this encoder's is {requested}); encode the prompt again", file.display())]
    EncoderMismatch {
        file: PathBuf,
        cached: String,
        requested: String,
    },
}

/// A cache file's content.
#[derive(Debug, Clone)]
pub struct PromptEmbedding {
    pub prompt: String,
    pub encoder: String,
    /// `[text_len, dim]`, zero rows after the prompt's tokens.
    pub embeds: Tensor,
}

/// Fingerprint of a text encoder file: SHA-256 over its size, first MiB and last MiB.
///
/// Hashing all 11 GB would cost more than the cache saves at start-up. For the published
/// `.pth` (a zip archive) the last MiB holds the central directory with every entry's CRC-32,
/// so changed weights change the fingerprint; for `.safetensors` the header (names, shapes,
/// offsets) is in the first MiB.
pub fn encoder_fingerprint(path: impl AsRef<Path>) -> Result<String, PromptCacheError> {
    let path = path.as_ref();
    let io = |source| PromptCacheError::Io {
        file: path.to_path_buf(),
        source,
    };
    const SPAN: u64 = 1 << 20;
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut hasher = Sha256::new();
    hasher.update(size.to_le_bytes());
    let mut buf = Vec::with_capacity(SPAN as usize);
    file.by_ref().take(SPAN).read_to_end(&mut buf).map_err(io)?;
    hasher.update(&buf);
    if size > SPAN {
        buf.clear();
        file.seek(SeekFrom::Start(size.saturating_sub(SPAN).max(SPAN)))
            .map_err(io)?;
        file.read_to_end(&mut buf).map_err(io)?;
        hasher.update(&buf);
    }
    let digest = hasher.finalize();
    Ok(format!(
        "sha256-size-head-tail:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// Writes `embeds` (`[text_len, dim]`, f32/bf16/f16, any device) with its prompt and encoder
/// fingerprint. The file is written next to `path` and renamed into place, so a reader never
/// sees half a cache.
pub fn save(
    path: impl AsRef<Path>,
    prompt: &str,
    encoder: &str,
    embeds: &Tensor,
) -> Result<(), PromptCacheError> {
    let path = path.as_ref();
    let tensor_err = |reason: String| PromptCacheError::Tensor {
        file: path.to_path_buf(),
        reason,
    };
    let candle = |e: candle_core::Error| tensor_err(e.to_string());
    let (text_len, dim) = embeds
        .dims2()
        .map_err(|_| tensor_err(format!("expected [text_len, dim], got {:?}", embeds.dims())))?;
    if text_len == 0 || dim == 0 {
        return Err(tensor_err(format!("empty shape {:?}", embeds.dims())));
    }
    let embeds = embeds.to_device(&Device::Cpu).map_err(candle)?;
    let row_mass: Vec<f32> = embeds
        .to_dtype(DType::F32)
        .and_then(|t| t.abs()?.sum(1))
        .and_then(|t| t.to_vec1())
        .map_err(candle)?;
    if let Some(bad) = row_mass.iter().position(|m| !m.is_finite()) {
        return Err(tensor_err(format!("row {bad} is not finite")));
    }
    // Keep at least one row so the tensor is never empty.
    let rows = row_mass
        .iter()
        .rposition(|&m| m != 0.0)
        .map_or(1, |last| last + 1);
    let kept = embeds.narrow(0, 0, rows).map_err(candle)?;
    let (dtype, bytes) = tensor_bytes(&kept).map_err(tensor_err)?;

    let view =
        TensorView::new(dtype, vec![rows, dim], &bytes).map_err(|e| tensor_err(e.to_string()))?;
    let metadata: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("version", VERSION.to_string()),
        ("prompt", prompt.to_string()),
        ("encoder", encoder.to_string()),
        ("text_len", text_len.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    safetensors::serialize_to_file([(TENSOR_NAME, view)], Some(metadata), &tmp).map_err(|e| {
        PromptCacheError::Format {
            file: tmp.clone(),
            reason: e.to_string(),
        }
    })?;
    std::fs::rename(&tmp, path).map_err(|source| PromptCacheError::Io {
        file: path.to_path_buf(),
        source,
    })
}

fn tensor_bytes(t: &Tensor) -> Result<(StDtype, Vec<u8>), String> {
    let flat = t.flatten_all().map_err(|e| e.to_string())?;
    let err = |e: candle_core::Error| e.to_string();
    Ok(match t.dtype() {
        DType::F32 => (
            StDtype::F32,
            flat.to_vec1::<f32>()
                .map_err(err)?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::BF16 => (
            StDtype::BF16,
            flat.to_vec1::<half::bf16>()
                .map_err(err)?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::F16 => (
            StDtype::F16,
            flat.to_vec1::<half::f16>()
                .map_err(err)?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        other => return Err(format!("dtype {other:?}; expected f32, bf16 or f16")),
    })
}

/// Reads a cache file without checking what it was made for; `embeds` comes back padded to
/// `text_len` rows, on `device`, in the stored dtype.
pub fn read(path: impl AsRef<Path>, device: &Device) -> Result<PromptEmbedding, PromptCacheError> {
    let path = path.as_ref();
    let file = || path.to_path_buf();
    let bytes = std::fs::read(path).map_err(|source| PromptCacheError::Io {
        file: file(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| PromptCacheError::Format {
        file: file(),
        reason: e.to_string(),
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| PromptCacheError::Format {
        file: file(),
        reason: e.to_string(),
    })?;
    let empty = HashMap::new();
    let meta = header.metadata().as_ref().unwrap_or(&empty);
    let field = |name: &'static str| -> Result<&String, PromptCacheError> {
        meta.get(name).ok_or_else(|| PromptCacheError::Field {
            file: file(),
            field: name,
            reason: "missing".into(),
        })
    };
    let format = field("format")?;
    if format != FORMAT {
        return Err(PromptCacheError::Format {
            file: file(),
            reason: format!("format is {format:?}, expected {FORMAT:?}"),
        });
    }
    let version = field("version")?;
    if version != VERSION {
        return Err(PromptCacheError::Field {
            file: file(),
            field: "version",
            reason: format!("{version:?} is not supported (this build reads {VERSION:?})"),
        });
    }
    let prompt = field("prompt")?.clone();
    let encoder = field("encoder")?.clone();
    let text_len: usize = field("text_len")?
        .parse()
        .map_err(|e| PromptCacheError::Field {
            file: file(),
            field: "text_len",
            reason: format!("{e}"),
        })?;

    let tensor_err = |reason: String| PromptCacheError::Tensor {
        file: file(),
        reason,
    };
    let view = st
        .tensor(TENSOR_NAME)
        .map_err(|e| tensor_err(e.to_string()))?;
    let dtype = match view.dtype() {
        StDtype::F32 => DType::F32,
        StDtype::BF16 => DType::BF16,
        StDtype::F16 => DType::F16,
        other => {
            return Err(tensor_err(format!(
                "dtype {other:?}; expected F32, BF16 or F16"
            )))
        }
    };
    let &[rows, dim] = view.shape() else {
        return Err(tensor_err(format!(
            "shape {:?}; expected [rows, dim]",
            view.shape()
        )));
    };
    if rows == 0 || dim == 0 || rows > text_len {
        return Err(tensor_err(format!(
            "shape [{rows}, {dim}] does not fit text_len {text_len}"
        )));
    }
    let candle = |e: candle_core::Error| tensor_err(e.to_string());
    let stored =
        Tensor::from_raw_buffer(view.data(), dtype, &[rows, dim], &Device::Cpu).map_err(candle)?;
    let embeds = if rows < text_len {
        let zeros = Tensor::zeros((text_len - rows, dim), dtype, &Device::Cpu).map_err(candle)?;
        Tensor::cat(&[&stored, &zeros], 0).map_err(candle)?
    } else {
        stored
    };
    let embeds = embeds.to_device(device).map_err(candle)?;
    Ok(PromptEmbedding {
        prompt,
        encoder,
        embeds,
    })
}

/// The cached `[text_len, dim]` embedding of `prompt` by the encoder with fingerprint `encoder`;
/// an error naming the file when the cache was made for another prompt or encoder.
pub fn load(
    path: impl AsRef<Path>,
    prompt: &str,
    encoder: &str,
    device: &Device,
) -> Result<Tensor, PromptCacheError> {
    let path = path.as_ref();
    let cached = read(path, device)?;
    if clean_prompt(&cached.prompt) != clean_prompt(prompt) {
        return Err(PromptCacheError::PromptMismatch {
            file: path.to_path_buf(),
            cached: preview(&cached.prompt),
            requested: preview(prompt),
        });
    }
    if cached.encoder != encoder {
        return Err(PromptCacheError::EncoderMismatch {
            file: path.to_path_buf(),
            cached: cached.encoder,
            requested: encoder.to_string(),
        });
    }
    Ok(cached.embeds)
}

/// The first 80 characters, for error messages.
fn preview(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(80).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(feature = "prompt-encoder")]
pub use encode::{load_or_encode, PromptEncoderFiles, Source};

#[cfg(feature = "prompt-encoder")]
mod encode {
    use std::path::{Path, PathBuf};

    use candle_core::{DType, Device, Result, Tensor};

    use super::{encoder_fingerprint, load, save, PromptCacheError};
    use crate::checkpoint::Manifest;
    use crate::umt5::{encode_prompt, Umt5Config, Umt5Encoder, Umt5Tokenizer};

    /// The text encoder's files (Wan2.1 release layout: `models_t5_umt5-xxl-enc-bf16.pth`,
    /// `google/umt5-xxl/tokenizer.json`, and the golden manifest to check the weights against).
    #[derive(Debug, Clone)]
    pub struct PromptEncoderFiles {
        pub encoder: PathBuf,
        pub tokenizer: PathBuf,
        pub manifest: Option<PathBuf>,
        pub config: Umt5Config,
    }

    /// Where [`load_or_encode`]'s embedding came from.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Source {
        Cache,
        /// Encoded now (and written to the cache); the reason the cache was not used.
        Encoded {
            reason: String,
        },
    }

    /// The prompt's `[text_len, dim]` embedding: from `cache` when it was made for this prompt by
    /// this encoder file, else computed (encoder loaded in `dtype` on `device`, then dropped)
    /// and written to `cache`.
    pub fn load_or_encode(
        cache: &Path,
        prompt: &str,
        files: &PromptEncoderFiles,
        text_len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Source)> {
        let wrap = |e: PromptCacheError| candle_core::Error::wrap(e);
        let fingerprint = encoder_fingerprint(&files.encoder).map_err(wrap)?;
        let reason = match load(cache, prompt, &fingerprint, device) {
            Ok(embeds) if embeds.dim(0)? == text_len => return Ok((embeds, Source::Cache)),
            Ok(embeds) => format!(
                "{}: cached with text_len {}, not {text_len}",
                cache.display(),
                embeds.dim(0)?
            ),
            Err(PromptCacheError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                format!("{}: no cache yet", cache.display())
            }
            Err(e) => e.to_string(),
        };
        tracing::info!("encoding the prompt with umT5 ({reason})");
        let manifest = files
            .manifest
            .as_ref()
            .map(Manifest::load)
            .transpose()
            .map_err(candle_core::Error::wrap)?;
        let encoder = Umt5Encoder::from_checkpoint(
            &files.encoder,
            &files.config,
            manifest.as_ref(),
            dtype,
            device,
        )?;
        let tokenizer = Umt5Tokenizer::from_file(&files.tokenizer)?;
        let embeds = encode_prompt(&tokenizer, &encoder, prompt, text_len)?;
        drop(encoder);
        save(cache, prompt, &fingerprint, &embeds).map_err(wrap)?;
        Ok((embeds, Source::Encoded { reason }))
    }
}
