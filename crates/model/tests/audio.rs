//! Parity of the audio conditioning (wav2vec2 + interpolation + AudioPack + per-layer
//! projections) with the reference `audio` fixture.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use livetalk_model::audio_features::{self, AudioConditioner, AudioProjConfig, AudioTrace};
use livetalk_model::fixture::{self, Fixture};
use livetalk_model::wav2vec2::{Wav2Vec2Config, Wav2Vec2Model};

const ATOL: f32 = 1e-4;

fn param(fx: &Fixture, key: &str) -> usize {
    fx.params[key]
        .as_u64()
        .unwrap_or_else(|| panic!("audio.fixture.json: no integer `{key}`")) as usize
}

fn load_conditioner(fx: &Fixture, dtype: DType) -> anyhow::Result<AudioConditioner> {
    Ok(AudioConditioner::load(
        fx.sibling("wav2vec2.config.json"),
        fx.sibling("wav2vec2.weights.safetensors"),
        fx.sibling("dit.config.json"),
        fx.sibling("dit.weights.safetensors"),
        dtype,
        &Device::Cpu,
    )?)
}

fn waveform(fx: &Fixture) -> anyhow::Result<Vec<f32>> {
    Ok(fx.tensor("input.waveform")?.to_vec1::<f32>()?)
}

/// The fixture, its number of latent frames, a conditioner in `dtype` and the waveform.
fn setup(dtype: DType) -> anyhow::Result<(Fixture, usize, AudioConditioner, Vec<f32>)> {
    let fx = Fixture::load(fixture::fixtures_dir(), "audio")?;
    let f = param(&fx, "num_latent_frames");
    let cond = load_conditioner(&fx, dtype)?;
    let wave = waveform(&fx)?;
    Ok((fx, f, cond, wave))
}

/// Our tensors in the fixture's layouts, keyed by the fixture's `expected.*` names.
fn outputs_as_fixture(trace: &AudioTrace) -> anyhow::Result<Vec<(String, Tensor)>> {
    let mut out = vec![
        ("input_values".to_string(), trace.input_values.clone()),
        ("conv_features".to_string(), trace.conv_features.clone()),
        (
            "conv_features_interp".to_string(),
            trace.conv_features_interp.clone(),
        ),
        (
            "feature_projection".to_string(),
            trace.encoder.projected_features.clone(),
        ),
        (
            "last_hidden_state".to_string(),
            trace.encoder.last_hidden_state().clone(),
        ),
        // [1, 4F, C] -> the reference's [1, C, 4F, 1, 1]
        (
            "audio_proj_input".to_string(),
            trace
                .audio_proj_input
                .transpose(1, 2)?
                .unsqueeze(3)?
                .unsqueeze(4)?,
        ),
        // [1, F, hidden] -> [1, F, 1, 1, hidden]
        (
            "audio_proj_output".to_string(),
            trace.audio_proj_output.unsqueeze(2)?.unsqueeze(2)?,
        ),
        ("audio_emb".to_string(), trace.audio_emb.clone()),
    ];
    for (i, h) in trace.encoder.hidden_states.iter().enumerate() {
        out.push((format!("hidden_states.{i}"), h.clone()));
    }
    Ok(out)
}

#[test]
fn audio_fixture_parity_f32() -> anyhow::Result<()> {
    let fx = Fixture::load(fixture::fixtures_dir(), "audio")?;
    let num_latent_frames = param(&fx, "num_latent_frames");
    assert_eq!(
        audio_features::trimmed_num_samples(num_latent_frames),
        param(&fx, "trimmed_num_samples")
    );
    assert_eq!(
        audio_features::video_frames(num_latent_frames),
        param(&fx, "seq_len")
    );

    let cond = load_conditioner(&fx, DType::F32)?;
    assert_eq!(cond.feature_dim(), param(&fx, "feature_dim"));
    assert_eq!(cond.num_cond_projs(), param(&fx, "num_audio_cond_projs"));
    let trace = cond.trace(&waveform(&fx)?, num_latent_frames)?;
    assert_eq!(
        trace.encoder.hidden_states.len(),
        param(&fx, "num_hidden_states")
    );

    let ours = outputs_as_fixture(&trace)?;
    let expected: Vec<String> = fx
        .names()
        .into_iter()
        .filter(|n| n.starts_with("expected."))
        .collect();
    assert!(!expected.is_empty());
    let mut failures = Vec::new();
    for name in &expected {
        let key = name.trim_start_matches("expected.");
        let got = &ours
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no output compared against {name}"))
            .1;
        let want = fx.tensor(name)?;
        let d = fixture::max_abs_diff(got, &want)?;
        println!("{name:<32} {:?} max abs diff {d:.3e}", want.dims());
        if d.is_nan() || d > ATOL {
            failures.push(format!("{name}: {d:e}"));
        }
    }
    assert!(failures.is_empty(), "above atol {ATOL:e}: {failures:?}");
    Ok(())
}

/// `forward` is the last step of `trace`, and the low-level steps compose to the same result.
#[test]
fn forward_equals_composed_steps() -> anyhow::Result<()> {
    let (fx, f, cond, wave) = setup(DType::F32)?;
    let emb = cond.forward(&wave, f)?;

    let keep = audio_features::trimmed_num_samples(f);
    let input = cond.input_values(&wave[..keep])?;
    let frames = cond.frame_features(&input, audio_features::video_frames(f))?;
    let t = fx.params["audio_pack_patch"][0]
        .as_u64()
        .expect("audio_pack_patch") as usize;
    assert_eq!(cond.frames_per_token(), t);
    let frames = audio_features::prepend_first_frame(&frames, t - 1)?;
    let composed = cond.embed_frame_features(&frames)?;
    assert_eq!(fixture::max_abs_diff(&emb, &composed)?, 0.0);

    // Latent frames are independent after AudioPack: embedding the frames of the last two
    // latent frames alone gives the last two rows (up to the matmul's summation order).
    let tail = cond.embed_frame_features(&frames.narrow(1, t * (f - 2), 2 * t)?)?;
    assert!(fixture::max_abs_diff(&tail, &emb.narrow(1, f - 2, 2)?)? < 1e-5);
    Ok(())
}

#[test]
fn bf16_stays_close() -> anyhow::Result<()> {
    let (fx, f, cond, wave) = setup(DType::BF16)?;
    let emb = cond.forward(&wave, f)?;
    assert_eq!(emb.dtype(), DType::BF16);
    let want = fx.tensor("expected.audio_emb")?;
    let scale = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let d = fixture::max_abs_diff(&emb, &want)?;
    println!("bf16 audio_emb max abs diff {d:.3e} (max |value| {scale:.3})");
    assert!(
        d <= 0.05 * scale,
        "bf16 audio_emb off by {d} (max |value| {scale})"
    );
    Ok(())
}

#[test]
fn interpolation_matches_pytorch_positions() -> anyhow::Result<()> {
    // 99 -> 33: scale = 98/32 in f32; end points map exactly onto the input's end points.
    let taps = audio_features::linear_interpolation_taps(99, 33);
    assert_eq!(taps[0], (0, 1, 0.0));
    let (i0, i1, w) = taps[32];
    assert_eq!(i0, 98);
    assert_eq!(i1, 98);
    assert!(w <= 1.0);
    // Identity when sizes match, single input frame broadcasts.
    for (i, &(a, _, w)) in audio_features::linear_interpolation_taps(7, 7)
        .iter()
        .enumerate()
    {
        assert_eq!((a as usize, w), (i, 0.0));
    }
    let x = Tensor::new(&[[[2f32]]], &Device::Cpu)?;
    let y = audio_features::interpolate_linear(&x, 2, 4)?;
    assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![2.0; 4]);
    assert!(audio_features::interpolate_linear(&x, 2, 0).is_err());
    Ok(())
}

#[test]
fn normalisation_is_zero_mean_unit_variance() {
    let x: Vec<f32> = (0..1000)
        .map(|i| (i as f32 * 0.37).sin() * 0.2 + 0.05)
        .collect();
    let y = audio_features::normalize_waveform(&x);
    let n = y.len() as f64;
    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    assert!(
        mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4,
        "mean {mean} var {var}"
    );
    assert!(audio_features::normalize_waveform(&[]).is_empty());
}

#[test]
fn bad_inputs_are_errors() -> anyhow::Result<()> {
    let (_, _, cond, _) = setup(DType::F32)?;
    assert!(cond.forward(&[], 9).is_err());
    assert!(cond.forward(&[0.1; 16000], 1).is_err());
    // Shorter than the CNN's receptive field (400 samples).
    let err = cond.forward(&[0.1; 100], 9).unwrap_err();
    assert!(err.to_string().contains("receptive field"), "{err}");
    // Frame features with the wrong width / count.
    let c = cond.feature_dim();
    assert!(cond
        .embed_frame_features(&Tensor::zeros((1, 8, c + 1), DType::F32, &Device::Cpu)?)
        .is_err());
    assert!(cond
        .embed_frame_features(&Tensor::zeros((1, 6, c), DType::F32, &Device::Cpu)?)
        .is_err());
    Ok(())
}

#[test]
fn bad_files_name_the_culprit() -> anyhow::Result<()> {
    let fx = Fixture::load(fixture::fixtures_dir(), "audio")?;
    let dir = std::env::temp_dir().join(format!("livetalk-audio-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // A config with an impossible head count.
    let mut cfg = fixture::read_json(fx.sibling("wav2vec2.config.json"))?;
    cfg["num_attention_heads"] = 5.into();
    let bad_cfg = dir.join("bad.config.json");
    std::fs::write(&bad_cfg, cfg.to_string())?;
    let err = Wav2Vec2Config::from_json_file(&bad_cfg)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.config.json") && err.contains("num_attention_heads"),
        "{err}"
    );

    // A truncated weights file.
    let bytes = std::fs::read(fx.sibling("wav2vec2.weights.safetensors"))?;
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2])?;
    let err = AudioConditioner::load(
        fx.sibling("wav2vec2.config.json"),
        &corrupt,
        fx.sibling("dit.config.json"),
        fx.sibling("dit.weights.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("corrupt.safetensors"), "{err}");

    // A missing tensor is named.
    let w2v_cfg = Wav2Vec2Config::from_json_file(fx.sibling("wav2vec2.config.json"))?;
    let mut tensors =
        candle_core::safetensors::load(fx.sibling("wav2vec2.weights.safetensors"), &Device::Cpu)?;
    tensors.remove("wav2vec2.encoder.pos_conv_embed.conv.weight_g");
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let err = Wav2Vec2Model::from_ctc_checkpoint(&w2v_cfg, vb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pos_conv_embed.conv.weight_g"), "{err}");

    // The DiT's audio sizes must agree with wav2vec2.
    let mut audio_cfg = AudioProjConfig::from_json_file(fx.sibling("dit.config.json"))?;
    audio_cfg.audio_input_dim = Some(7);
    let vb_w2v = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[fx.sibling("wav2vec2.weights.safetensors")],
            DType::F32,
            &Device::Cpu,
        )?
    };
    let vb_dit = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[fx.sibling("dit.weights.safetensors")],
            DType::F32,
            &Device::Cpu,
        )?
    };
    let err = AudioConditioner::new(&w2v_cfg, &audio_cfg, vb_w2v, vb_dit)
        .unwrap_err()
        .to_string();
    assert!(err.contains("audio_input_dim"), "{err}");

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Serves the golden manifest's names and shapes (as free broadcast ones) and records which
/// tensors the model asks for.
struct ManifestBackend {
    shapes: HashMap<String, Vec<usize>>,
    used: Mutex<BTreeSet<String>>,
}

impl SimpleBackend for ManifestBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let want = self
            .shapes
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("not in manifest: {name}")))?;
        if want.as_slice() != s.dims() {
            candle_core::bail!(
                "{name}: model asks for {:?}, manifest has {want:?}",
                s.dims()
            );
        }
        self.used.lock().unwrap().insert(name.to_string());
        Tensor::ones((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let shape = self
            .shapes
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("not in manifest: {name}")))?;
        self.get(shape.clone().into(), name, Init::Const(1.0), dtype, dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }
}

/// The real checkpoint (golden manifest) has exactly the names and shapes the model asks for:
/// every tensor except the CTC head and the training-only mask embedding is used.
#[test]
fn real_checkpoint_layout_matches_manifest() -> anyhow::Result<()> {
    let manifest = fixture::read_json(
        fixture::fixtures_dir().join("manifests/wav2vec2_base_960h.manifest.json"),
    )?;
    let shapes: HashMap<String, Vec<usize>> = manifest["tensors"]
        .as_object()
        .expect("manifest: tensors")
        .iter()
        .map(|(name, info)| {
            let dims = info["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().unwrap() as usize);
            (name.clone(), dims.collect())
        })
        .collect();
    let backend = Arc::new(ManifestBackend {
        shapes: shapes.clone(),
        used: Mutex::new(BTreeSet::new()),
    });
    struct Shared(Arc<ManifestBackend>);
    impl SimpleBackend for Shared {
        fn get(
            &self,
            s: Shape,
            n: &str,
            h: Init,
            d: DType,
            dev: &Device,
        ) -> candle_core::Result<Tensor> {
            self.0.get(s, n, h, d, dev)
        }
        fn get_unchecked(&self, n: &str, d: DType, dev: &Device) -> candle_core::Result<Tensor> {
            self.0.get_unchecked(n, d, dev)
        }
        fn contains_tensor(&self, n: &str) -> bool {
            self.0.contains_tensor(n)
        }
    }
    let vb = VarBuilder::from_backend(Box::new(Shared(backend.clone())), DType::F32, Device::Cpu);
    let cfg = Wav2Vec2Config::base_960h();
    let model = Wav2Vec2Model::from_ctc_checkpoint(&cfg, vb)?;
    assert_eq!(model.config().conv_output_len(16_000), 49);

    let used = backend.used.lock().unwrap().clone();
    let unused: Vec<&String> = shapes
        .keys()
        .filter(|k| {
            !used.contains(*k)
                && !k.starts_with("lm_head.")
                && k.as_str() != "wav2vec2.masked_spec_embed"
        })
        .collect();
    assert!(
        unused.is_empty(),
        "manifest tensors the model ignores: {unused:?}"
    );
    assert_eq!(used.len(), shapes.len() - 3);
    Ok(())
}

/// Newer transformers save the positional conv's weight norm as
/// `parametrizations.weight.original0/1`; both spellings load to the same model.
#[test]
fn weight_norm_parametrization_names_load_the_same() -> anyhow::Result<()> {
    let fx = Fixture::load(fixture::fixtures_dir(), "audio")?;
    let cfg = Wav2Vec2Config::from_json_file(fx.sibling("wav2vec2.config.json"))?;
    let legacy =
        candle_core::safetensors::load(fx.sibling("wav2vec2.weights.safetensors"), &Device::Cpu)?;
    let prefix = "wav2vec2.encoder.pos_conv_embed.conv.";
    let mut renamed = legacy.clone();
    for (old, new) in [
        ("weight_g", "parametrizations.weight.original0"),
        ("weight_v", "parametrizations.weight.original1"),
    ] {
        let t = renamed
            .remove(&format!("{prefix}{old}"))
            .expect("fixture has the legacy names");
        renamed.insert(format!("{prefix}{new}"), t);
    }
    let features = fx.tensor("expected.conv_features_interp")?;
    let run = |tensors| -> anyhow::Result<Tensor> {
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let model = Wav2Vec2Model::from_ctc_checkpoint(&cfg, vb)?;
        Ok(model.encode(&features)?.hidden_states[0].clone())
    };
    let (a, b) = (run(legacy)?, run(renamed)?);
    assert_eq!(fixture::max_abs_diff(&a, &b)?, 0.0);
    assert!(fixture::max_abs_diff(&a, &fx.tensor("expected.hidden_states.0")?)? <= ATOL);
    Ok(())
}
