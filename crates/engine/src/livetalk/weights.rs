//! Finding and checking the model files: a weights directory with the published file names, or
//! the tiny fixture models.
//!
//! ```text
//! WEIGHTS_DIR/
//!   model.safetensors                  GAIR/LiveTalk-1.3B-V0.1 (DiT + audio projections)
//!   Wan2.1_VAE.pth                     Wan-AI/Wan2.1-T2V-1.3B
//!   wav2vec2-base-960h/model.safetensors, config.json
//!   taew2_1.safetensors                optional (also safetensors/taew2_1.safetensors, taew2_1.pth)
//! ```
//! [`WeightFiles::find`] checks presence and that each file opens as a checkpoint (headers only);
//! the loaders then check every tensor against the built-in manifests. Each failure is one error
//! naming the file.

use std::path::{Path, PathBuf};

use livetalk_model::checkpoint::Checkpoint;

/// A missing or unusable model file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    #[error("{what} not found: {} (expected in the weights directory {})", file.display(), dir.display())]
    Missing { what: &'static str, file: PathBuf, dir: PathBuf },
    #[error("{what} at {} is not usable: {reason}", file.display())]
    Invalid { what: &'static str, file: PathBuf, reason: String },
    #[error("the weights directory {} does not exist or is not a directory", dir.display())]
    NoDir { dir: PathBuf },
}

/// The published files of a weights directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightFiles {
    pub dir: PathBuf,
    pub dit: PathBuf,
    pub vae: PathBuf,
    pub wav2vec2_weights: PathBuf,
    pub wav2vec2_config: PathBuf,
    /// TAEW2.1 when present (the default decoder); without it the Wan VAE decodes.
    pub taehv: Option<PathBuf>,
}

pub const DIT_FILE: &str = "model.safetensors";
pub const VAE_FILE: &str = "Wan2.1_VAE.pth";
pub const WAV2VEC2_DIR: &str = "wav2vec2-base-960h";
pub const TAEHV_FILES: [&str; 3] = ["taew2_1.safetensors", "safetensors/taew2_1.safetensors", "taew2_1.pth"];

fn present(dir: &Path, what: &'static str, file: PathBuf) -> Result<PathBuf, WeightsError> {
    if file.is_file() {
        Ok(file)
    } else {
        Err(WeightsError::Missing { what, file, dir: dir.to_path_buf() })
    }
}

fn opens(what: &'static str, file: &Path) -> Result<(), WeightsError> {
    Checkpoint::open(file)
        .map(|_| ())
        .map_err(|e| WeightsError::Invalid { what, file: file.to_path_buf(), reason: e.to_string() })
}

impl WeightFiles {
    /// Finds the files in `dir` and checks that each opens (headers only, fast).
    pub fn find(dir: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(WeightsError::NoDir { dir: dir.to_path_buf() });
        }
        let dit = present(dir, "the LiveTalk model", dir.join(DIT_FILE))?;
        let vae = present(dir, "the Wan2.1 VAE", dir.join(VAE_FILE))?;
        let w2v = dir.join(WAV2VEC2_DIR);
        let wav2vec2_weights = present(dir, "the wav2vec2 weights", w2v.join("model.safetensors"))?;
        let wav2vec2_config = present(dir, "the wav2vec2 config", w2v.join("config.json"))?;
        let taehv = TAEHV_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file());
        opens("the LiveTalk model", &dit)?;
        opens("the Wan2.1 VAE", &vae)?;
        opens("the wav2vec2 weights", &wav2vec2_weights)?;
        if let Some(t) = &taehv {
            opens("TAEW2.1", t)?;
        }
        let text = std::fs::read_to_string(&wav2vec2_config).map_err(|e| WeightsError::Invalid {
            what: "the wav2vec2 config",
            file: wav2vec2_config.clone(),
            reason: e.to_string(),
        })?;
        serde_json::from_str::<serde_json::Value>(&text).map_err(|e| WeightsError::Invalid {
            what: "the wav2vec2 config",
            file: wav2vec2_config.clone(),
            reason: e.to_string(),
        })?;
        Ok(WeightFiles { dir: dir.to_path_buf(), dit, vae, wav2vec2_weights, wav2vec2_config, taehv })
    }
}

/// The tiny fixture models of a fixtures directory (`fixtures/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureFiles {
    pub dir: PathBuf,
    pub pipeline: crate::pipeline::PipelineFiles,
    pub taehv_config: PathBuf,
    pub taehv_weights: PathBuf,
}

impl FixtureFiles {
    pub fn find(dir: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(WeightsError::NoDir { dir: dir.to_path_buf() });
        }
        let pipeline = crate::pipeline::PipelineFiles::in_dir(dir);
        for (what, file) in [
            ("the fixture DiT config", &pipeline.dit_config),
            ("the fixture DiT", &pipeline.dit_weights),
            ("the fixture VAE config", &pipeline.vae_config),
            ("the fixture VAE", &pipeline.vae_weights),
            ("the fixture wav2vec2 config", &pipeline.wav2vec2_config),
            ("the fixture wav2vec2", &pipeline.wav2vec2_weights),
        ] {
            present(dir, what, file.clone())?;
        }
        let taehv_config = present(dir, "the fixture TAEHV config", dir.join("taehv.config.json"))?;
        let taehv_weights = present(dir, "the fixture TAEHV", dir.join("taehv.weights.safetensors"))?;
        Ok(FixtureFiles { dir: dir.to_path_buf(), pipeline, taehv_config, taehv_weights })
    }
}
