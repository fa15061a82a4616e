//! Golden manifests of the published checkpoints (`models/manifests/*.manifest.json`): the
//! tensors each real file holds, with shapes and, where verified, dtypes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::DType;
use md5::{Digest, Md5};
use serde::Deserialize;

use super::{parse_dtype, CheckpointError};

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestTensor {
    pub shape: Vec<usize>,
    /// Safetensors spelling ("BF16"); `None` where the manifest did not verify it.
    #[serde(default)]
    pub dtype: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Which published file this describes, e.g. "GAIR/LiveTalk-1.3B-V0.1 model.safetensors".
    pub checkpoint: String,
    pub format: String,
    /// A description of the key prefix ('' or 'wav2vec2. (...)'); the keys below are complete.
    #[serde(default)]
    pub key_prefix: String,
    pub num_tensors: usize,
    pub num_params: u64,
    pub keys_md5: String,
    /// The real model's config, where the manifest records it.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    pub tensors: BTreeMap<String, ManifestTensor>,
    /// Where it was loaded from, for error messages.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Manifest {
    /// Reads a manifest and checks it is self-consistent (counts, dtypes, key hash).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| CheckpointError::io(path, e))?;
        let mut manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| manifest_error(path, format!("invalid manifest JSON: {e}")))?;
        manifest.path = path.to_path_buf();
        manifest.check_consistency()?;
        Ok(manifest)
    }

    fn check_consistency(&self) -> Result<(), CheckpointError> {
        let fail = |reason: String| Err(manifest_error(&self.path, reason));
        if self.tensors.len() != self.num_tensors {
            return fail(format!(
                "lists {} tensors but num_tensors is {}",
                self.tensors.len(),
                self.num_tensors
            ));
        }
        let params: u64 = self
            .tensors
            .values()
            .map(|t| t.shape.iter().map(|&d| d as u64).product::<u64>())
            .sum();
        if params != self.num_params {
            return fail(format!(
                "tensors add up to {params} parameters but num_params is {}",
                self.num_params
            ));
        }
        for (name, tensor) in &self.tensors {
            if let Some(dtype) = &tensor.dtype {
                if parse_dtype(dtype).is_none() {
                    return fail(format!("tensor '{name}': unknown dtype {dtype}"));
                }
            }
        }
        let computed = keys_md5(
            self.tensors
                .iter()
                .map(|(k, t)| (k.as_str(), t.shape.as_slice())),
        );
        if computed != self.keys_md5 {
            return fail(format!(
                "keys_md5 is {} but the keys hash to {computed}",
                self.keys_md5
            ));
        }
        Ok(())
    }

    /// The manifest's dtype for `name`, if it gives one.
    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.tensors
            .get(name)?
            .dtype
            .as_deref()
            .and_then(parse_dtype)
    }

    /// A config value of the real model, e.g. `config_usize("num_layers")`.
    pub fn config_usize(&self, field: &str) -> Option<usize> {
        self.config
            .as_ref()?
            .get(field)?
            .as_u64()
            .map(|v| v as usize)
    }
}

fn manifest_error(path: &Path, reason: String) -> CheckpointError {
    CheckpointError::Manifest {
        file: path.to_path_buf(),
        reason,
    }
}

/// The DiffSynth/LiveTalk `hash_state_dict_keys` recipe: md5 of the comma-joined, sorted list
/// of `key:d0_d1_...` and `key` strings. The reference code recognises the real DiT, VAE and
/// umT5 files by this value.
pub fn keys_md5<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [usize])>) -> String {
    let mut items = Vec::new();
    for (key, shape) in tensors {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        items.push(format!("{key}:{}", dims.join("_")));
        items.push(key.to_string());
    }
    items.sort();
    let digest = Md5::digest(items.join(",").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
