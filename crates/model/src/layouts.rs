//! What each model's checkpoint must hold for a given config, from the golden manifests of the
//! published checkpoints (`models/manifests/`, built into the library so that validation works
//! wherever the binary runs).
//!
//! The model loaders (`CausalWanModel::load`, `WanVae::load`, `TaehvDecoder::load`,
//! `AudioConditioner::load`) build the model first, so a missing tensor is reported in the
//! order the model asks for it (file + tensor), and then check the whole file against the
//! layout: tensors the model does not read (a wrong file, a renamed key) are an error too.
//!
//! For the published configs the layout is the manifest itself (names, exact shapes, dtypes).
//! For smaller configs with the same structure (the tiny parity fixtures) the names are the
//! manifest's, narrowed to the config's layer counts; shapes are checked by rank here and
//! exactly by the loader, which compares every tensor it reads with the config's shape.
//! A config whose structure differs from the published model's (other VAE levels, ...) has no
//! manifest to compare with: [`None`].

use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, CheckpointError, Expected, Manifest, ShapeRule};
use crate::dit::DitConfig;
use crate::taehv::TaehvConfig;
use crate::wan_vae::WanVaeConfig;
use crate::wav2vec2::Wav2Vec2Config;

const DIT: (&str, &str) =
    ("livetalk_dit.manifest.json", include_str!("../../../models/manifests/livetalk_dit.manifest.json"));
const VAE: (&str, &str) =
    ("wan21_vae.manifest.json", include_str!("../../../models/manifests/wan21_vae.manifest.json"));
const TAEHV: (&str, &str) =
    ("taew2_1.manifest.json", include_str!("../../../models/manifests/taew2_1.manifest.json"));
const WAV2VEC2: (&str, &str) = (
    "wav2vec2_base_960h.manifest.json",
    include_str!("../../../models/manifests/wav2vec2_base_960h.manifest.json"),
);

/// A built-in manifest (its errors name `models/manifests/NAME`).
fn manifest((name, text): (&str, &str)) -> Result<Manifest, CheckpointError> {
    let path = PathBuf::from("models/manifests").join(name);
    let mut manifest: Manifest = serde_json::from_str(text).map_err(|e| CheckpointError::Manifest {
        file: path.clone(),
        reason: format!("built-in manifest does not parse: {e}"),
    })?;
    manifest.path = path;
    Ok(manifest)
}

/// The real model's config as recorded in a manifest, read as the model's config type.
fn real_config<T: serde::de::DeserializeOwned>(manifest: &Manifest) -> Option<T> {
    serde_json::from_value(manifest.config.clone()?).ok()
}

fn narrowed(manifest: &Manifest, exact: bool) -> Expected {
    let expected = Expected::full(manifest);
    if exact {
        expected
    } else {
        expected.shapes(ShapeRule::RankOnly).ignore_dtypes()
    }
}

/// The LiveTalk DiT file (`model.safetensors`: the DiT and its audio projections).
pub fn dit(cfg: &DitConfig) -> Result<Option<Expected>, CheckpointError> {
    let manifest = manifest(DIT)?;
    let real = real_config::<DitConfig>(&manifest);
    let exact = real.as_ref() == Some(cfg);
    Ok(Some(
        narrowed(&manifest, exact)
            .limit_layers("blocks.", cfg.num_layers)
            .limit_layers("audio_cond_projs.", cfg.audio_layers().len()),
    ))
}

/// The Wan2.1 VAE (`Wan2.1_VAE.pth`): same levels, residual blocks and attention as published.
pub fn wan_vae(cfg: &WanVaeConfig) -> Result<Option<Expected>, CheckpointError> {
    let manifest = manifest(VAE)?;
    let real = WanVaeConfig::wan21();
    let same_structure = cfg.dim_mult == real.dim_mult
        && cfg.num_res_blocks == real.num_res_blocks
        && cfg.attn_scales == real.attn_scales
        && cfg.temperal_downsample == real.temperal_downsample;
    if !same_structure {
        return Ok(None);
    }
    let exact = cfg.dim == real.dim && cfg.z_dim == real.z_dim;
    Ok(Some(narrowed(&manifest, exact)))
}

/// TAEW2.1: the decoder half (`decoder.*`), plus `encoder.*` when the file holds it.
pub fn taehv(cfg: &TaehvConfig, checkpoint: &Checkpoint) -> Result<Option<Expected>, CheckpointError> {
    let manifest = manifest(TAEHV)?;
    let exact = *cfg == TaehvConfig::taew2_1();
    let expected = narrowed(&manifest, exact).allow_larger_dim0(&[
        "decoder.7.conv.weight",
        "decoder.13.conv.weight",
        "decoder.19.conv.weight",
    ]);
    let has_encoder = checkpoint.names().any(|n| n.starts_with("encoder."));
    Ok(Some(if has_encoder { expected } else { expected.only_prefixes(&["decoder."]) }))
}

/// wav2vec2-base-960h (`Wav2Vec2ForCTC`): same feature encoder layout, fewer layers allowed.
pub fn wav2vec2(cfg: &Wav2Vec2Config) -> Result<Option<Expected>, CheckpointError> {
    let manifest = manifest(WAV2VEC2)?;
    let real = Wav2Vec2Config::base_960h();
    let same_structure = cfg.conv_dim.len() == real.conv_dim.len()
        && cfg.conv_bias == real.conv_bias
        && cfg.feat_extract_norm == real.feat_extract_norm
        && cfg.do_stable_layer_norm == real.do_stable_layer_norm;
    if !same_structure {
        return Ok(None);
    }
    let exact = *cfg == real;
    Ok(Some(
        narrowed(&manifest, exact).limit_layers("wav2vec2.encoder.layers.", cfg.num_hidden_layers),
    ))
}

/// Checks `checkpoint` against `expected` (if there is one); errors name the file, the tensor
/// and the manifest.
pub fn check(checkpoint: &Checkpoint, expected: Option<&Expected>) -> Result<(), CheckpointError> {
    match expected {
        Some(expected) => checkpoint.validate(expected),
        None => Ok(()),
    }
}

/// Opens a checkpoint, builds a model from it with `build`, then checks the file against
/// `layout` (see the module documentation for why in this order).
pub fn load_checked<M>(
    path: &Path,
    layout: impl FnOnce(&Checkpoint) -> Result<Option<Expected>, CheckpointError>,
    build: impl FnOnce(&Checkpoint) -> candle_core::Result<M>,
) -> candle_core::Result<M> {
    let checkpoint = Checkpoint::open(path).map_err(candle_core::Error::wrap)?;
    let model = build(&checkpoint)?;
    let expected = layout(&checkpoint).map_err(candle_core::Error::wrap)?;
    check(&checkpoint, expected.as_ref()).map_err(candle_core::Error::wrap)?;
    Ok(model)
}

/// The built-in manifest of the published TAEW2.1 file (e.g. to build random full-size weights
/// for a benchmark).
pub fn taehv_manifest() -> Result<Manifest, CheckpointError> {
    manifest(TAEHV)
}
