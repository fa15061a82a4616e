//! Checkpoint loading and validation on the tiny fixtures, and on damaged copies of them written
//! to the temp directory (the fixtures themselves are never modified).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};
use livetalk_model::checkpoint::{
    keys_md5, verify, Checkpoint, DimMap, Expected, Format, Manifest, ModelEntry, ShapeRule,
};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn fixture(name: &str) -> PathBuf {
    repo_path("fixtures").join(name)
}

fn manifest(name: &str) -> Manifest {
    Manifest::load(repo_path("models/manifests").join(format!("{name}.manifest.json"))).unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A file under the temp directory, unique per test process and call, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("livetalk-checkpoint-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir.join(name))
    }
    fn with_bytes(name: &str, bytes: &[u8]) -> Self {
        let file = Self::new(name);
        std::fs::write(&file.0, bytes).unwrap();
        file
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn error_text<T: std::fmt::Debug>(result: Result<T, impl std::fmt::Display>) -> String {
    result.expect_err("expected an error").to_string()
}

// ---- what each tiny fixture must hold -------------------------------------------------------

/// The tiny DiT: 6 of 30 blocks, 2 of 14 audio projections, sizes from dit.config.json.
fn tiny_dit_expected() -> Expected {
    let real = manifest("livetalk_dit");
    let tiny = json(&fixture("dit.config.json"));
    let size = |config: &serde_json::Value, field: &str| config[field].as_u64().unwrap() as usize;
    let real_config = real.config.clone().unwrap();
    // Direct sizes, plus the two derived ones: time_projection (6*dim) and the packed audio
    // input of audio_proj (4*audio_input_dim).
    let dims = DimMap::from_configs(
        &real_config,
        &tiny,
        &["dim", "ffn_dim", "text_dim", "audio_hidden_size"],
    )
    .and_then(|m| m.with(6 * size(&real_config, "dim"), 6 * size(&tiny, "dim")))
    .and_then(|m| {
        m.with(
            4 * size(&real_config, "audio_input_dim"),
            4 * size(&tiny, "audio_input_dim"),
        )
    })
    .unwrap();
    Expected::full(&real)
        .limit_layers("blocks.", size(&tiny, "num_layers"))
        .limit_layers("audio_cond_projs.", size(&tiny, "num_audio_cond_projs"))
        .shapes(ShapeRule::Scaled(dims))
}

/// Copies dit.weights.safetensors through the safetensors crate, letting `edit` change the
/// `name -> (dtype, shape, bytes)` table first.
fn rewrite_dit(
    name: &str,
    edit: impl FnOnce(&mut BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
) -> TempFile {
    let bytes = std::fs::read(fixture("dit.weights.safetensors")).unwrap();
    let parsed = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: BTreeMap<_, _> = parsed
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut tensors);
    let views = tensors.iter().map(|(k, (dtype, shape, data))| {
        (
            k.clone(),
            TensorView::new(*dtype, shape.clone(), data).unwrap(),
        )
    });
    TempFile::with_bytes(name, &safetensors::serialize(views, None).unwrap())
}

/// Validates an edited copy of the tiny DiT against the tiny expectation; returns the error,
/// after checking it names the copy.
fn dit_validation_error(
    name: &str,
    edit: impl FnOnce(&mut BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
) -> String {
    let file = rewrite_dit(name, edit);
    let checkpoint = Checkpoint::open(file.path()).unwrap();
    let message = error_text(checkpoint.validate(&tiny_dit_expected()));
    assert!(message.contains(name), "{message}");
    assert!(message.contains("livetalk_dit.manifest.json"), "{message}");
    message
}

// ---- safetensors ----------------------------------------------------------------------------

#[test]
fn good_dit_file_opens_validates_and_loads() {
    let expected = tiny_dit_expected();
    assert_eq!(expected.len(), 185);
    let checkpoint =
        Checkpoint::open_validated(fixture("dit.weights.safetensors"), &expected).unwrap();
    assert_eq!(checkpoint.format(), Format::Safetensors);
    assert_eq!(checkpoint.len(), 185);
    assert_eq!(
        expected.expected_shape("text_embedding.0.weight"),
        Some(vec![64, 32])
    );
    assert_eq!(
        expected.expected_shape("blocks.0.modulation"),
        Some(vec![1, 6, 64])
    );

    // Values through the VarBuilder equal the raw little-endian floats of the file.
    let bytes = std::fs::read(fixture("dit.weights.safetensors")).unwrap();
    let raw = SafeTensors::deserialize(&bytes).unwrap();
    let view = raw.tensor("text_embedding.0.weight").unwrap();
    let want: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let vb = checkpoint.var_builder(DType::F32, &Device::Cpu);
    let got = vb
        .pp("text_embedding")
        .pp("0")
        .get((64, 32), "weight")
        .unwrap();
    assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);

    // Converted on the fly: bf16 values are the bf16 rounding of the f32 ones.
    let vb16 = checkpoint.var_builder(DType::BF16, &Device::Cpu);
    let got16 = vb16.get((64, 32), "text_embedding.0.weight").unwrap();
    assert_eq!(got16.dtype(), DType::BF16);
    let want16: Vec<half::bf16> = want.iter().map(|&v| half::bf16::from_f32(v)).collect();
    assert_eq!(
        got16
            .flatten_all()
            .unwrap()
            .to_vec1::<half::bf16>()
            .unwrap(),
        want16
    );
}

/// Resident pages of mapped files, in MiB.
fn file_resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

#[test]
fn loading_releases_the_mapped_pages() {
    // 64 MiB of f32 in 16 tensors, loaded as bf16. Without releasing each tensor's mapped pages
    // the whole file would stay resident next to the 32 MiB of converted weights (measured on
    // its own: resident memory grows by 34 MiB with the release; 1.6 GiB f32 -> bf16 peaked at
    // 835 MiB with it, 2419 MiB without). Other tests map the small fixtures meanwhile, hence
    // the margin.
    let data: Vec<u8> = (0..1usize << 20)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let views = (0..16).map(|i| {
        let view = TensorView::new(Dtype::F32, vec![1024, 1024], &data).unwrap();
        (format!("layer.{i:02}.weight"), view)
    });
    let file = TempFile::with_bytes(
        "large.safetensors",
        &safetensors::serialize(views, None).unwrap(),
    );
    drop(data);
    let checkpoint = Checkpoint::open(file.path()).unwrap();
    let vb = checkpoint.var_builder(DType::BF16, &Device::Cpu);
    let before = file_resident_mib();
    let tensors: Vec<Tensor> = (0..16)
        .map(|i| {
            vb.get((1024, 1024), &format!("layer.{i:02}.weight"))
                .unwrap()
        })
        .collect();
    let grown = file_resident_mib() - before;
    assert!(
        grown < 16.0,
        "mapped pages resident after loading: {grown:.1} MiB of a 64 MiB file"
    );
    let last = tensors[15].get(1023).unwrap().get(1023).unwrap();
    assert_eq!(
        last.to_dtype(DType::F32)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        1048576.0
    );
}

#[test]
fn var_builder_errors_name_file_and_tensor() {
    let checkpoint = Checkpoint::open(fixture("dit.weights.safetensors")).unwrap();
    let vb = checkpoint.var_builder(DType::F32, &Device::Cpu);
    let wrong = error_text(vb.get((32, 64), "text_embedding.0.weight"));
    assert!(wrong.contains("dit.weights.safetensors"), "{wrong}");
    assert!(wrong.contains("text_embedding.0.weight"), "{wrong}");
    assert!(
        wrong.contains("[64, 32]") && wrong.contains("[32, 64]"),
        "{wrong}"
    );
    let missing = error_text(vb.pp("blocks").pp("6").get(64, "norm3.weight"));
    assert!(missing.contains("dit.weights.safetensors"), "{missing}");
    assert!(missing.contains("blocks.6.norm3.weight"), "{missing}");
}

#[test]
fn every_tiny_fixture_has_the_real_key_names() {
    let config = |name: &str| json(&fixture(name));
    // Wan VAE: every key of the real file; channels from dim 96 -> 3 (times the multipliers).
    let vae_dim = config("vae.config.json")["dim"].as_u64().unwrap() as usize;
    let mut vae_dims = DimMap::new();
    for mult in [1, 2, 4, 8, 12] {
        vae_dims = vae_dims.with(96 * mult, vae_dim * mult).unwrap();
    }
    let vae = Expected::full(&manifest("wan21_vae")).shapes(ShapeRule::Scaled(vae_dims));
    Checkpoint::open(fixture("vae.weights.safetensors"))
        .unwrap()
        .validate(&vae)
        .unwrap();

    // wav2vec2: 4 of 12 encoder layers.
    let w2v = config("wav2vec2.config.json");
    let real_w2v = manifest("wav2vec2_base_960h");
    let groups = 16;
    let w2v_dims = DimMap::from_configs(
        real_w2v.config.as_ref().unwrap(),
        &w2v,
        &["hidden_size", "intermediate_size"],
    )
    .and_then(|m| m.with(512, w2v["conv_dim"][0].as_u64().unwrap() as usize))
    .and_then(|m| {
        m.with(
            768 / groups,
            w2v["hidden_size"].as_u64().unwrap() as usize / groups,
        )
    })
    .unwrap();
    let layers = w2v["num_hidden_layers"].as_u64().unwrap() as usize;
    let expected = Expected::full(&real_w2v)
        .limit_layers("wav2vec2.encoder.layers.", layers)
        .shapes(ShapeRule::Scaled(w2v_dims));
    assert_eq!(expected.len(), 85);
    Checkpoint::open(fixture("wav2vec2.weights.safetensors"))
        .unwrap()
        .validate(&expected)
        .unwrap();

    // TAEHV: the decoder half, names and ranks.
    let taehv = Expected::full(&manifest("taew2_1"))
        .only_prefixes(&["decoder."])
        .shapes(ShapeRule::RankOnly);
    assert_eq!(taehv.len(), 64);
    Checkpoint::open(fixture("taehv.weights.safetensors"))
        .unwrap()
        .validate(&taehv)
        .unwrap();
}

#[test]
fn truncated_safetensors_names_the_tensor_cut_off() {
    let bytes = std::fs::read(fixture("dit.weights.safetensors")).unwrap();
    // Cut inside text_embedding.0.weight, whose data starts at 1324480 of the data section.
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let cut = header_end + 1_324_480 + 100;
    let file = TempFile::with_bytes("dit-truncated.safetensors", &bytes[..cut]);
    let message = error_text(Checkpoint::open(file.path()));
    assert!(message.contains("dit-truncated.safetensors"), "{message}");
    assert!(message.contains("text_embedding.0.weight"), "{message}");
    assert!(message.contains("truncated"), "{message}");

    let file = TempFile::with_bytes("dit-header-cut.safetensors", &bytes[..1000]);
    let message = error_text(Checkpoint::open(file.path()));
    assert!(
        message.contains("dit-header-cut.safetensors") && message.contains("truncated"),
        "{message}"
    );
}

#[test]
fn bad_header_json_is_reported() {
    let mut bytes = std::fs::read(fixture("dit.weights.safetensors")).unwrap();
    bytes[8] = b'[';
    bytes[20] = b'}';
    let file = TempFile::with_bytes("dit-bad-json.safetensors", &bytes);
    let message = error_text(Checkpoint::open(file.path()));
    assert!(
        message.contains("dit-bad-json.safetensors") && message.contains("not valid JSON"),
        "{message}"
    );
}

#[test]
fn header_pointing_past_the_end_names_the_tensor() {
    let file = rewrite_dit("dit-past-end.safetensors", |_| {});
    let mut bytes = std::fs::read(file.path()).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    // Same-length edit: the last tensor's end offset grows past the data section.
    let data_len = bytes.len() - 8 - header_len;
    let edited = header.replacen(&format!(",{data_len}]"), &format!(",{}]", data_len + 4), 1);
    assert_ne!(edited, header);
    bytes.splice(8..8 + header_len, edited.bytes());
    bytes[..8].copy_from_slice(&(edited.len() as u64).to_le_bytes());
    std::fs::write(file.path(), &bytes).unwrap();
    let message = error_text(Checkpoint::open(file.path()));
    assert!(message.contains("dit-past-end.safetensors"), "{message}");
    assert!(message.contains("tensor '"), "{message}");
}

#[test]
fn missing_tensor_is_named() {
    let message = dit_validation_error("dit-missing.safetensors", |tensors| {
        assert!(tensors.remove("blocks.3.ffn.0.bias").is_some());
    });
    assert!(
        message.contains("tensor 'blocks.3.ffn.0.bias' is missing"),
        "{message}"
    );
}

#[test]
fn wrong_shape_reports_expected_and_found() {
    let message = dit_validation_error("dit-shape.safetensors", |tensors| {
        let entry = tensors.get_mut("text_embedding.0.weight").unwrap();
        entry.1 = vec![32, 64];
    });
    assert!(
        message.contains("tensor 'text_embedding.0.weight' has shape [32, 64], expected [64, 32]"),
        "{message}"
    );
}

#[test]
fn extra_tensor_is_unexpected() {
    let message = dit_validation_error("dit-extra.safetensors", |tensors| {
        let norm = tensors["blocks.5.norm3.weight"].clone();
        tensors.insert("blocks.6.norm3.weight".into(), norm);
    });
    assert!(
        message.contains("unexpected tensor 'blocks.6.norm3.weight'"),
        "{message}"
    );
}

#[test]
fn prefixed_checkpoint_keys() {
    let file = rewrite_dit("dit-prefixed.safetensors", |tensors| {
        *tensors = std::mem::take(tensors)
            .into_iter()
            .map(|(name, tensor)| (format!("model.{name}"), tensor))
            .collect();
    });
    let checkpoint = Checkpoint::open(file.path()).unwrap();
    checkpoint
        .validate(&tiny_dit_expected().with_prefix("model."))
        .unwrap();
    let message = error_text(checkpoint.validate(&tiny_dit_expected()));
    assert!(
        message.contains("tensor 'audio_cond_projs.0.bias' is missing"),
        "{message}"
    );
    let vb = checkpoint.var_builder(DType::F32, &Device::Cpu).pp("model");
    assert_eq!(
        vb.get((64, 32), "text_embedding.0.weight").unwrap().dims(),
        &[64, 32]
    );
}

#[test]
fn several_problems_are_counted_in_one_line() {
    let file = rewrite_dit("dit-many.safetensors", |tensors| {
        tensors.remove("head.head.bias");
        tensors.remove("head.head.weight");
    });
    let checkpoint = Checkpoint::open(file.path()).unwrap();
    let message = error_text(checkpoint.validate(&tiny_dit_expected()));
    assert!(
        message.contains("tensor 'head.head.bias' is missing")
            && message.ends_with("; 1 more problem"),
        "{message}"
    );
    assert!(!message.contains('\n'));
    let problems = tiny_dit_expected().problems(checkpoint.headers());
    assert_eq!(problems.len(), 2);
    assert_eq!(problems[1].tensor(), "head.head.weight");
}

#[test]
fn dtype_mismatch_against_a_manifest_that_gives_dtypes() {
    // A one-tensor manifest that says BF16 (as umT5's does), and an F32 file.
    let dir_file = TempFile::new("bf16.manifest.json");
    let shape = [64usize];
    let body = serde_json::json!({
        "checkpoint": "test", "format": "safetensors", "key_prefix": "",
        "num_tensors": 1, "num_params": 64,
        "keys_md5": keys_md5([("patch_embedding.bias", &shape[..])]),
        "tensors": {"patch_embedding.bias": {"shape": [64], "dtype": "BF16"}}
    });
    std::fs::write(dir_file.path(), body.to_string()).unwrap();
    let manifest = Manifest::load(dir_file.path()).unwrap();
    let file = rewrite_dit("dit-dtype.safetensors", |tensors| {
        tensors.retain(|k, _| k == "patch_embedding.bias")
    });
    let checkpoint = Checkpoint::open(file.path()).unwrap();
    let message = error_text(checkpoint.validate(&Expected::full(&manifest)));
    assert!(message.contains("dit-dtype.safetensors"), "{message}");
    assert!(
        message.contains("tensor 'patch_embedding.bias' has dtype F32, expected BF16"),
        "{message}"
    );
    checkpoint
        .validate(&Expected::full(&manifest).ignore_dtypes())
        .unwrap();
}

// ---- manifests and registry -----------------------------------------------------------------

#[test]
fn manifests_hash_to_the_reference_constants() {
    // Manifest::load recomputes keys_md5; these are the constants the reference code uses.
    assert_eq!(
        manifest("livetalk_dit").keys_md5,
        "2bf9513c7a3e908015f11a800fc9b820"
    );
    assert_eq!(
        manifest("wan21_vae").keys_md5,
        "ccc42284ea13e1ad04693284c7a09be6"
    );
    assert_eq!(
        manifest("umt5_xxl_enc").keys_md5,
        "9c8818c2cbea55eca56c7b447df170da"
    );
    assert_eq!(
        manifest("umt5_xxl_enc").dtype("norm.weight"),
        Some(DType::BF16)
    );
    assert_eq!(manifest("livetalk_dit").num_params, 1_421_187_232);
    // The registry's copies are the fixtures' manifests.
    for name in [
        "livetalk_dit",
        "taew2_1",
        "umt5_xxl_enc",
        "wan21_vae",
        "wav2vec2_base_960h",
    ] {
        let file = format!("{name}.manifest.json");
        assert_eq!(
            std::fs::read(repo_path("models/manifests").join(&file)).unwrap(),
            std::fs::read(fixture("manifests").join(&file)).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn registry_entries_load_and_reference_existing_manifests() {
    let entries = ModelEntry::load_all(repo_path("models")).unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "livetalk-1.3b-v0.1",
            "taew2_1",
            "wan2.1-t2v-1.3b",
            "wav2vec2-base-960h"
        ]
    );
    let checkpoints: usize = entries
        .iter()
        .flat_map(|e| &e.files)
        .filter(|f| f.manifest.is_some())
        .count();
    assert_eq!(checkpoints, 5);
    for entry in &entries {
        assert!(!entry.licence.name.is_empty() && entry.licence.url.starts_with("https://"));
        for file in entry.files.iter().filter(|f| f.manifest.is_some()) {
            Manifest::load(entry.manifest_path(file).unwrap()).unwrap();
        }
    }
    let dit = &entries[0];
    assert_eq!(
        dit.download_url(&dit.files[0]),
        "https://huggingface.co/GAIR/LiveTalk-1.3B-V0.1/resolve/main/model.safetensors"
    );
}

/// A registry directory with one entry for the tiny VAE, whose manifest is the tiny file's own.
fn tiny_registry(size: u64, sha256: &str) -> (TempFile, ModelEntry) {
    let registry = TempFile::new("tiny-vae.toml");
    let dir = registry.path().parent().unwrap().to_path_buf();
    let checkpoint = Checkpoint::open(fixture("vae.weights.safetensors")).unwrap();
    let tensors: serde_json::Map<String, serde_json::Value> = checkpoint
        .headers()
        .map(|(k, h)| {
            (
                k.to_string(),
                serde_json::json!({"shape": h.shape, "dtype": "F32"}),
            )
        })
        .collect();
    let manifest = serde_json::json!({
        "checkpoint": "tiny vae", "format": "safetensors", "num_tensors": checkpoint.len(),
        "num_params": checkpoint.num_params(), "keys_md5": checkpoint.keys_md5(), "tensors": tensors
    });
    std::fs::write(dir.join("tiny_vae.manifest.json"), manifest.to_string()).unwrap();
    let toml = format!(
        "id = \"tiny-vae\"\ndescription = \"test\"\nsource = \"huggingface\"\nrepo = \"test/tiny\"\n\
         revision = \"main\"\n[licence]\nname = \"Apache-2.0\"\nurl = \"https://www.apache.org/licenses/LICENSE-2.0\"\n\
         [[files]]\npath = \"weights/vae.safetensors\"\nsize = {size}\nsha256 = \"{sha256}\"\n\
         manifest = \"tiny_vae.manifest.json\"\n"
    );
    std::fs::write(registry.path(), toml).unwrap();
    let entry = ModelEntry::load(registry.path()).unwrap();
    (registry, entry)
}

const TINY_VAE_SHA256: &str = "244729d9bddfe2fbaf5a53341421d5be55ea85d0aad2000ac9a6dd757b39d959";
const TINY_VAE_SIZE: u64 = 587_316;

#[test]
fn verify_checks_presence_size_sha256_and_header() {
    let (registry, entry) = tiny_registry(TINY_VAE_SIZE, TINY_VAE_SHA256);
    let models = registry.path().parent().unwrap().join("download");

    let reports = verify(&models, &entry);
    let message = reports[0].outcome.as_ref().unwrap_err().to_string();
    assert!(
        message.contains("vae.safetensors") && message.contains("missing"),
        "{message}"
    );
    assert!(
        message.contains("https://huggingface.co/test/tiny/resolve/main/weights/vae.safetensors"),
        "{message}"
    );

    std::fs::create_dir_all(models.join("weights")).unwrap();
    std::fs::copy(
        fixture("vae.weights.safetensors"),
        models.join("weights/vae.safetensors"),
    )
    .unwrap();
    let verified = verify(&models, &entry).remove(0).outcome.unwrap();
    assert_eq!(verified.size, TINY_VAE_SIZE);
    assert!(verified.sha256_checked);
    assert_eq!(verified.tensors_checked, 194);

    let (_other, wrong_hash) = tiny_registry(TINY_VAE_SIZE, &"0".repeat(64));
    let message = verify(&models, &wrong_hash)
        .remove(0)
        .outcome
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("sha256 244729d9") && message.contains("expected 0000"),
        "{message}"
    );

    let (_other, wrong_size) = tiny_registry(TINY_VAE_SIZE + 1, TINY_VAE_SHA256);
    let message = verify(&models, &wrong_size)
        .remove(0)
        .outcome
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("size 587316 bytes, expected 587317"),
        "{message}"
    );

    // Same size and hash check skipped: the header check still catches a wrong file.
    let (_other, mut header_only) = tiny_registry(0, TINY_VAE_SHA256);
    header_only.files[0].size = None;
    header_only.files[0].sha256 = None;
    std::fs::copy(
        fixture("taehv.weights.safetensors"),
        models.join("weights/vae.safetensors"),
    )
    .unwrap();
    let message = verify(&models, &header_only)
        .remove(0)
        .outcome
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("vae.safetensors") && message.contains("tiny_vae.manifest.json"),
        "{message}"
    );
}

// ---- .pth -----------------------------------------------------------------------------------

mod pth_writer {
    //! Writes `.pth` files the way `torch.save` does (zip, protocol-2 pickle of an OrderedDict
    //! state dict with `_metadata`, `_rebuild_tensor_v2` with persistent storage ids, raw
    //! little-endian storages under `<dir>/data/<key>`, 64-byte aligned, stored uncompressed).

    use std::io::Write;
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    pub struct Storage {
        pub class: &'static str,
        pub bytes: Vec<u8>,
        pub numel: usize,
    }

    pub struct Entry {
        pub name: String,
        pub storage: usize,
        pub offset: usize,
        pub shape: Vec<usize>,
        pub stride: Vec<usize>,
    }

    pub fn contiguous_stride(shape: &[usize]) -> Vec<usize> {
        let mut stride = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        stride
    }

    #[derive(Default)]
    struct Pickle {
        out: Vec<u8>,
        memo: Vec<String>,
    }

    impl Pickle {
        fn put(&mut self) {
            self.out.push(b'q');
            self.out.push(self.memo.len() as u8);
        }
        /// GLOBAL, memoised like pickle does: later uses are BINGETs.
        fn global(&mut self, module: &str, name: &str) {
            let key = format!("{module}\n{name}\n");
            if let Some(i) = self.memo.iter().position(|m| *m == key) {
                self.out.extend([b'h', i as u8]);
                return;
            }
            self.out.push(b'c');
            self.out.extend(key.as_bytes());
            self.put();
            self.memo.push(key);
        }
        fn unicode(&mut self, s: &str) {
            self.out.push(b'X');
            self.out.extend((s.len() as u32).to_le_bytes());
            self.out.extend(s.as_bytes());
        }
        fn int(&mut self, v: usize) {
            if v < 256 {
                self.out.extend([b'K', v as u8]);
            } else if v < 65536 {
                self.out.push(b'M');
                self.out.extend((v as u16).to_le_bytes());
            } else if v < (1 << 31) {
                self.out.push(b'J');
                self.out.extend((v as i32).to_le_bytes());
            } else {
                self.out.extend([0x8a, 8]);
                self.out.extend((v as i64).to_le_bytes());
            }
        }
        fn int_tuple(&mut self, values: &[usize]) {
            match values.len() {
                0 => self.out.push(b')'),
                1..=3 => {
                    values.iter().for_each(|&v| self.int(v));
                    self.out.push(0x84 + values.len() as u8);
                }
                _ => {
                    self.out.push(b'(');
                    values.iter().for_each(|&v| self.int(v));
                    self.out.push(b't');
                }
            }
        }
        fn empty_ordered_dict(&mut self) {
            self.global("collections", "OrderedDict");
            self.out.extend([b')', b'R']);
        }
    }

    pub fn pickle_state_dict(storages: &[Storage], entries: &[Entry]) -> Vec<u8> {
        let mut p = Pickle::default();
        p.out.extend([0x80, 2]);
        p.empty_ordered_dict();
        p.out.push(b'(');
        for entry in entries {
            let storage = &storages[entry.storage];
            p.unicode(&entry.name);
            p.global("torch._utils", "_rebuild_tensor_v2");
            p.out.push(b'(');
            // persistent id ('storage', torch.XStorage, key, 'cpu', numel)
            p.out.push(b'(');
            p.unicode("storage");
            p.global("torch", storage.class);
            p.unicode(&entry.storage.to_string());
            p.unicode("cpu");
            p.int(storage.numel);
            p.out.extend([b't', b'Q']);
            p.int(entry.offset);
            p.int_tuple(&entry.shape);
            p.int_tuple(&entry.stride);
            p.out.push(0x89); // requires_grad False
            p.empty_ordered_dict(); // backward hooks
            p.out.extend([b't', b'R']);
        }
        p.out.push(b'u');
        // state: {'_metadata': OrderedDict({'': {'version': 1}})}, as nn.Module.state_dict()
        p.out.push(b'}');
        p.unicode("_metadata");
        p.empty_ordered_dict();
        p.unicode("");
        p.out.push(b'}');
        p.unicode("version");
        p.int(1);
        p.out.extend([b's', b's', b's', b'b', b'.']);
        p.out
    }

    pub fn write(path: &std::path::Path, dir: &str, pickle: &[u8], storages: &[Storage]) {
        let mut zip = ZipWriter::new(std::fs::File::create(path).unwrap());
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .with_alignment(64);
        let mut add = |name: String, bytes: &[u8]| {
            zip.start_file(name, options).unwrap();
            zip.write_all(bytes).unwrap();
        };
        add(format!("{dir}/data.pkl"), pickle);
        add(format!("{dir}/byteorder"), b"little");
        for (i, storage) in storages.iter().enumerate() {
            add(format!("{dir}/data/{i}"), &storage.bytes);
        }
        add(format!("{dir}/version"), b"3\n");
        add(format!("{dir}/.data/serialization_id"), b"1234567890");
        zip.finish().unwrap();
    }
}

use pth_writer::{contiguous_stride, Entry, Storage};

/// Every tensor of a safetensors file as its own f32 storage.
fn pth_from_safetensors(source: &Path, name: &str, dir: &str) -> TempFile {
    let bytes = std::fs::read(source).unwrap();
    let parsed = SafeTensors::deserialize(&bytes).unwrap();
    let mut storages = Vec::new();
    let mut entries = Vec::new();
    let mut tensors = parsed.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, view) in tensors {
        assert_eq!(view.dtype(), Dtype::F32);
        let numel = view.shape().iter().product();
        entries.push(Entry {
            name: key,
            storage: storages.len(),
            offset: 0,
            shape: view.shape().to_vec(),
            stride: contiguous_stride(view.shape()),
        });
        storages.push(Storage {
            class: "FloatStorage",
            bytes: view.data().to_vec(),
            numel,
        });
    }
    let file = TempFile::new(name);
    pth_writer::write(
        file.path(),
        dir,
        &pth_writer::pickle_state_dict(&storages, &entries),
        &storages,
    );
    file
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn pth_round_trip_matches_the_safetensors() {
    let source = fixture("vae.weights.safetensors");
    let file = pth_from_safetensors(&source, "Wan2.1_VAE.pth", "Wan2.1_VAE");
    let pth = Checkpoint::open(file.path()).unwrap();
    let st = Checkpoint::open(&source).unwrap();
    assert_eq!(pth.format(), Format::Pth);
    assert_eq!(pth.len(), 194);
    assert_eq!(pth.keys_md5(), st.keys_md5());
    let names: Vec<&str> = pth.names().collect();
    assert_eq!(names, st.names().collect::<Vec<_>>());
    for name in names {
        assert_eq!(pth.header(name), st.header(name), "{name}");
        let a = pth.load(name, DType::F32, &Device::Cpu).unwrap();
        let b = st.load(name, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(values(&a), values(&b), "{name}");
    }
    // The .pth validates against the real VAE's key list like the safetensors does.
    let expected = Expected::full(&manifest("wan21_vae")).shapes(ShapeRule::RankOnly);
    pth.validate(&expected).unwrap();
    let vb = pth.var_builder(DType::F32, &Device::Cpu);
    let gamma = vb.get((3, 1, 1, 1), "decoder.head.0.gamma").unwrap();
    assert_eq!(
        values(&gamma),
        values(
            &st.load("decoder.head.0.gamma", DType::F32, &Device::Cpu)
                .unwrap()
        )
    );
}

#[test]
fn pth_bf16_and_shared_storage_views() {
    // One bf16 storage of 10 values holding two tensors (like umT5's bf16 file), plus an i64.
    let source: Vec<f32> = (0..10).map(|i| i as f32 * 0.3 - 1.1).collect();
    let bf16: Vec<half::bf16> = source.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let bytes: Vec<u8> = bf16.iter().flat_map(|v| v.to_le_bytes()).collect();
    let storages = vec![
        Storage {
            class: "BFloat16Storage",
            bytes,
            numel: 10,
        },
        Storage {
            class: "LongStorage",
            bytes: 70000i64.to_le_bytes().to_vec(),
            numel: 1,
        },
    ];
    let entries = vec![
        tensor("a.weight", 0, &[2, 3], &[3, 1]),
        tensor("b.weight", 6, &[4], &[1]),
        Entry {
            storage: 1,
            ..tensor("steps", 0, &[], &[])
        },
    ];
    let file = TempFile::new("umt5-like.pth");
    pth_writer::write(
        file.path(),
        "archive",
        &pth_writer::pickle_state_dict(&storages, &entries),
        &storages,
    );
    let pth = Checkpoint::open(file.path()).unwrap();
    assert_eq!(pth.header("a.weight").unwrap().dtype, DType::BF16);
    let a = pth.load("a.weight", DType::BF16, &Device::Cpu).unwrap();
    assert_eq!(a.dims(), &[2, 3]);
    assert_eq!(
        a.flatten_all().unwrap().to_vec1::<half::bf16>().unwrap(),
        bf16[..6]
    );
    let b = pth.load("b.weight", DType::F32, &Device::Cpu).unwrap();
    let want: Vec<f32> = bf16[6..].iter().map(|v| v.to_f32()).collect();
    assert_eq!(b.to_vec1::<f32>().unwrap(), want);
    let steps = pth.load("steps", DType::I64, &Device::Cpu).unwrap();
    assert_eq!(steps.to_scalar::<i64>().unwrap(), 70000);
}

#[test]
fn corrupt_pth_files_error_cleanly() {
    let good = pth_from_safetensors(
        &fixture("taehv.weights.safetensors"),
        "taew2_1.pth",
        "taew2_1",
    );
    let bytes = std::fs::read(good.path()).unwrap();

    // Truncated: the zip directory at the end is gone.
    let cut = TempFile::with_bytes("taew2_1-cut.pth", &bytes[..bytes.len() / 2]);
    let message = error_text(Checkpoint::open(cut.path()));
    assert!(
        message.contains("taew2_1-cut.pth") && message.contains("not a zip archive"),
        "{message}"
    );

    // Not a zip at all.
    let junk = TempFile::with_bytes("junk.pth", b"this is not a checkpoint");
    let message = error_text(Checkpoint::open(junk.path()));
    assert!(
        message.contains("junk.pth") && message.contains("not a valid PyTorch checkpoint"),
        "{message}"
    );

    // A bare pickle: the pre-1.6 torch format.
    let legacy = TempFile::with_bytes("legacy.pth", &[0x80, 0x02, b'}', b'.']);
    let message = error_text(Checkpoint::open(legacy.path()));
    assert!(
        message.contains("legacy.pth") && message.contains("legacy non-zip torch files"),
        "{message}"
    );

    // Storage and layout problems: named by file and tensor.
    let complex = Storage {
        class: "ComplexFloatStorage",
        bytes: vec![0; 8],
        numel: 1,
    };
    let cases = [
        // a storage shorter than the pickle says
        (
            "short-storage.pth",
            float_storage(12, 4),
            tensor("decoder.0.weight", 0, &[4], &[1]),
            "archive/data/0 holds 12 bytes",
        ),
        // a view reaching past its storage
        (
            "overrun.pth",
            float_storage(16, 4),
            tensor("decoder.1.bias", 2, &[3], &[1]),
            "does not fit its storage",
        ),
        // a transposed tensor
        (
            "strided.pth",
            float_storage(24, 6),
            tensor("decoder.2.weight", 0, &[2, 3], &[1, 2]),
            "non-contiguous",
        ),
        (
            "complex.pth",
            complex,
            tensor("x", 0, &[1], &[1]),
            "unsupported storage type ComplexFloatStorage",
        ),
    ];
    for (file_name, storage, entry, reason) in cases {
        let tensor_name = format!("tensor '{}'", entry.name);
        let message = one_tensor_pth_error(file_name, storage, entry);
        for part in [file_name, tensor_name.as_str(), reason] {
            assert!(message.contains(part), "{message}");
        }
    }

    // A pickle cut short, and one with an unknown opcode.
    let storages = [float_storage(4, 1)];
    let pickle = pth_writer::pickle_state_dict(&storages, &[tensor("x", 0, &[1], &[1])]);
    for (label, bad) in [
        ("cut", pickle[..pickle.len() / 2].to_vec()),
        ("opcode", [&pickle[..2], &[0xff][..]].concat()),
    ] {
        let file = TempFile::new(&format!("bad-pickle-{label}.pth"));
        pth_writer::write(file.path(), "archive", &bad, &storages);
        let message = error_text(Checkpoint::open(file.path()));
        assert!(
            message.contains(&format!("bad-pickle-{label}.pth")),
            "{message}"
        );
        assert!(
            message.contains("archive/data.pkl: bad pickle"),
            "{message}"
        );
    }
}

fn float_storage(bytes: usize, numel: usize) -> Storage {
    Storage {
        class: "FloatStorage",
        bytes: vec![0; bytes],
        numel,
    }
}

fn tensor(name: &str, offset: usize, shape: &[usize], stride: &[usize]) -> Entry {
    Entry {
        name: name.into(),
        storage: 0,
        offset,
        shape: shape.to_vec(),
        stride: stride.to_vec(),
    }
}

/// Writes a .pth holding one tensor on one storage and returns the error opening it.
fn one_tensor_pth_error(file_name: &str, storage: Storage, entry: Entry) -> String {
    let file = TempFile::new(file_name);
    let storages = [storage];
    let pickle = pth_writer::pickle_state_dict(&storages, &[entry]);
    pth_writer::write(file.path(), "archive", &pickle, &storages);
    error_text(Checkpoint::open(file.path()))
}

#[test]
fn registry_paths_must_stay_inside_the_weights_folder() {
    let registry = TempFile::new("escape.toml");
    let head = "id = \"x\"\ndescription = \"test\"\nsource = \"huggingface\"\nrepo = \"test/x\"\nrevision = \"main\"\n";
    let licence = "[licence]\nname = \"MIT\"\nurl = \"https://example.invalid\"\n";
    for (extra, file, complaint) in [
        ("", "../outside.bin", "file path `../outside.bin`"),
        ("", "/etc/passwd", "file path `/etc/passwd`"),
        ("folder = \"../up\"\n", "a.bin", "folder `../up`"),
    ] {
        std::fs::write(registry.path(), format!("{head}{extra}{licence}[[files]]\npath = \"{file}\"\n")).unwrap();
        let message = ModelEntry::load(registry.path()).unwrap_err().to_string();
        assert!(message.contains(complaint) && message.contains("without `..`"), "{message}");
    }
    std::fs::write(registry.path(), format!("{head}folder = \"sub/dir\"\n{licence}[[files]]\npath = \"a/b.bin\"\n")).unwrap();
    assert_eq!(ModelEntry::load(registry.path()).unwrap().folder.as_deref(), Some("sub/dir"));
}
