//! `dit_block` fixture: one KV-cache forward of the causal DiT on the first block of a stream.

use candle_core::{DType, Device, Tensor};
use livetalk_model::dit::{CausalWanModel, DitConfig, DitTrace, KvCacheConfig};
use livetalk_model::fixture::{self, Fixture};

fn p_usize(fx: &Fixture, k: &str) -> usize {
    fx.params[k].as_u64().unwrap_or_else(|| panic!("fixture param {k}")) as usize
}

fn load_model(fx: &Fixture, dtype: DType, dev: &Device) -> anyhow::Result<CausalWanModel> {
    let cfg = DitConfig::from_json_file(fx.sibling(fx.params["model_config"].as_str().unwrap()))?;
    let weights = fx.sibling(fx.params["model"].as_str().unwrap());
    Ok(CausalWanModel::load(&cfg, &[weights], dtype, dev)?)
}

struct Checker {
    failures: Vec<String>,
}

impl Checker {
    fn check(&mut self, what: &str, got: &Tensor, want: &Tensor, atol: f32) {
        let got = got.to_dtype(DType::F32).unwrap();
        match fixture::max_abs_diff(&got, want) {
            Ok(d) => {
                println!("{what:40} max abs diff {d:.3e} (atol {atol:.0e})");
                if d.is_nan() || d > atol {
                    self.failures.push(format!("{what}: {d:e} > {atol:e}"));
                }
            }
            Err(e) => self.failures.push(format!("{what}: {e}")),
        }
    }
}

#[test]
fn dit_block_parity_f32() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let fx = Fixture::load(fixture::fixtures_dir(), "dit_block")?;
    let model = load_model(&fx, DType::F32, &dev)?;
    let cfg = model.config().clone();
    let frames = p_usize(&fx, "latent_frames");
    let (lh, lw) = (p_usize(&fx, "latent_h"), p_usize(&fx, "latent_w"));
    let fsl = cfg.frame_seq_length(lh, lw);
    assert_eq!(fsl, p_usize(&fx, "tokens_per_frame"));
    let kv_cfg = KvCacheConfig {
        local_attn_size: fx.params["local_attn_size"].as_i64().unwrap(),
        sink_size: p_usize(&fx, "sink_size"),
        frame_seq_length: fsl,
        batch: 1,
    };

    let x = fx.tensor("input.x")?;
    let y = fx.tensor("input.y")?;
    let audio = fx.tensor("input.audio_emb")?;
    let prompt = model.prepare_prompt(&fx.tensor("input.context")?)?;
    let mut ck = Checker { failures: vec![] };
    ck.check("intermediate.context_emb", &prompt.context_emb, &fx.tensor("intermediate.context_emb")?, 1e-5);

    let mut cache = model.new_kv_cache(kv_cfg)?;
    let mut trace = DitTrace::default();
    let out = model.forward(&x, &y, &fx.tensor("input.timestep")?, Some(&audio), &prompt, &mut cache, 0, Some(&mut trace))?;
    assert_eq!(cache.local_end_index(), frames * fsl);
    assert_eq!(cache.global_end_index(), frames * fsl);

    let d = cfg.dim;
    let pe = trace.patch_embed.unwrap();
    let pe = pe.reshape((1, frames, lh / cfg.patch_size[1], lw / cfg.patch_size[2], d))?.permute([0, 4, 1, 2, 3])?;
    ck.check("intermediate.patch_embed", &pe, &fx.tensor("intermediate.patch_embed")?, 1e-5);
    ck.check("intermediate.t_emb", trace.t_emb.as_ref().unwrap(), &fx.tensor("intermediate.t_emb")?, 1e-4);
    ck.check("intermediate.t_mod", trace.t_mod.as_ref().unwrap(), &fx.tensor("intermediate.t_mod")?, 1e-4);
    let (k0, v0) = trace.layer0_kv.clone().unwrap();
    ck.check("intermediate.kv_cache.layer0.k (trace)", &k0, &fx.tensor("intermediate.kv_cache.layer0.k")?, 1e-5);
    ck.check("intermediate.kv_cache.layer0.k (cache)", &cache.keys(0)?, &fx.tensor("intermediate.kv_cache.layer0.k")?, 1e-5);
    ck.check("intermediate.kv_cache.layer0.v (cache)", &cache.values(0)?, &fx.tensor("intermediate.kv_cache.layer0.v")?, 1e-5);
    ck.check("intermediate.kv_cache.layer0.v (trace)", &v0, &fx.tensor("intermediate.kv_cache.layer0.v")?, 1e-5);
    assert_eq!(trace.block_out.len(), cfg.num_layers);
    for (i, bo) in trace.block_out.iter().enumerate() {
        let name = format!("intermediate.block_out.{i}");
        if fx.has(&name) {
            ck.check(&name, bo, &fx.tensor(&name)?, 1e-4);
        }
    }
    ck.check("intermediate.head_out", trace.head_out.as_ref().unwrap(), &fx.tensor("intermediate.head_out")?, 1e-4);
    ck.check("expected.flow_pred", &out, &fx.tensor("expected.flow_pred")?, 1e-4);

    // per-frame timesteps (t_mod per frame), fresh cache
    let mut cache = model.new_kv_cache(kv_cfg)?;
    let out2 = model.forward(&x, &y, &fx.tensor("input.timestep_perframe")?, Some(&audio), &prompt, &mut cache, 0, None)?;
    ck.check("expected.flow_pred_perframe_t", &out2, &fx.tensor("expected.flow_pred_perframe_t")?, 1e-4);

    assert!(ck.failures.is_empty(), "parity failures:\n{}", ck.failures.join("\n"));
    Ok(())
}

/// bf16 weights and activations: same forward, loose agreement with the f32 reference.
#[test]
fn dit_block_bf16_runs_close() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let fx = Fixture::load(fixture::fixtures_dir(), "dit_block")?;
    let model = load_model(&fx, DType::BF16, &dev)?;
    let cfg = model.config().clone();
    let fsl = cfg.frame_seq_length(p_usize(&fx, "latent_h"), p_usize(&fx, "latent_w"));
    let kv_cfg = KvCacheConfig {
        local_attn_size: fx.params["local_attn_size"].as_i64().unwrap(),
        sink_size: p_usize(&fx, "sink_size"),
        frame_seq_length: fsl,
        batch: 1,
    };
    let prompt = model.prepare_prompt(&fx.tensor("input.context")?)?;
    let mut cache = model.new_kv_cache(kv_cfg)?;
    let out = model.forward(
        &fx.tensor("input.x")?,
        &fx.tensor("input.y")?,
        &fx.tensor("input.timestep")?,
        Some(&fx.tensor("input.audio_emb")?),
        &prompt,
        &mut cache,
        0,
        None,
    )?;
    assert_eq!(out.dtype(), DType::BF16);
    let want = fx.tensor("expected.flow_pred")?;
    let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
    let d = fixture::max_abs_diff(&out, &want)?;
    println!("bf16 flow_pred max abs diff {d:.3e} (max |ref| {scale:.3})");
    assert!(d < 0.1 * scale, "bf16 forward too far from the f32 reference: {d}");
    Ok(())
}

/// RoPE angles are computed on the fly: a block far past the reference's 1024-entry table gives the
/// same output as at position 0 when it only sees itself (attention depends on relative positions).
#[test]
fn rope_positions_past_table_are_relative() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let fx = Fixture::load(fixture::fixtures_dir(), "dit_block")?;
    let model = load_model(&fx, DType::F32, &dev)?;
    let cfg = model.config().clone();
    let fsl = cfg.frame_seq_length(p_usize(&fx, "latent_h"), p_usize(&fx, "latent_w"));
    let kv_cfg = KvCacheConfig { local_attn_size: fx.params["local_attn_size"].as_i64().unwrap(), sink_size: p_usize(&fx, "sink_size"), frame_seq_length: fsl, batch: 1 };
    let prompt = model.prepare_prompt(&fx.tensor("input.context")?)?;
    let (x, y, t, a) = (fx.tensor("input.x")?, fx.tensor("input.y")?, fx.tensor("input.timestep")?, fx.tensor("input.audio_emb")?);
    let mut c0 = model.new_kv_cache(kv_cfg)?;
    let out0 = model.forward(&x, &y, &t, Some(&a), &prompt, &mut c0, 0, None)?;
    for start in [1021usize, 100_000] {
        let mut c = model.new_kv_cache(kv_cfg)?;
        c.reset_at(start * fsl);
        let out = model.forward(&x, &y, &t, Some(&a), &prompt, &mut c, start, None)?;
        let d = fixture::max_abs_diff(&out, &out0)?;
        println!("start frame {start}: max abs diff to start 0: {d:.3e}");
        assert!(d < 1e-4, "start {start}: {d}");
        let frames = p_usize(&fx, "latent_frames");
        assert_eq!(c.global_end_index(), (start + frames) * fsl);
        assert_eq!(c.local_end_index(), frames * fsl);
    }
    // the on-the-fly table equals the reference formula (1/theta^(2k/d) * pos, f64) below 1024
    let rope = model.rope();
    let [df, dh, dw] = rope.dims();
    let a = rope.angles(1000, 1, 1, 2);
    let half = rope.head_dim() / 2;
    for k in 0..df / 2 {
        let fr = 1.0 / cfg.rope_theta.powf((2 * k) as f64 / df as f64);
        assert_eq!(a[k], 1000.0 * fr);
        assert_eq!(a[half + k], 1000.0 * fr);
    }
    for k in 0..dw / 2 {
        let fr = 1.0 / cfg.rope_theta.powf((2 * k) as f64 / dw as f64);
        assert_eq!(a[df / 2 + k], 0.0);
        assert_eq!(a[half + df / 2 + dh / 2 + k], fr);
    }
    Ok(())
}

/// KV-cache index arithmetic of the deployed settings (window 15, sink 9, blocks of 3, 1024
/// tokens per frame) over a long stream: fills to 15 frames, then evicts 3 frames per block by
/// overwriting them (the ring).
#[test]
fn kv_cache_plan_long_stream() -> anyhow::Result<()> {
    use livetalk_model::dit::KvCache;
    let fsl = 1024;
    let cfg = KvCacheConfig { local_attn_size: 15, sink_size: 9, frame_seq_length: fsl, batch: 1 };
    let mut c = KvCache::new(cfg, 0, 12, 128, DType::F32, &Device::Cpu)?;
    for block in 0..2000usize {
        let start = block * 3 * fsl;
        for _pass in 0..5 {
            let p = c.plan(start, 3 * fsl)?;
            c.commit(&p);
            assert_eq!(p.attend_start, 0);
            if block >= 5 {
                // the window is a ring of two block slots after the sink: frames 9..12, 12..15
                assert_eq!(p.local_end, 15 * fsl);
                assert_eq!(p.write_start, if block % 2 == 1 { 9 * fsl } else { 12 * fsl });
            } else {
                assert_eq!(p.local_end, (block + 1) * 3 * fsl);
                assert_eq!(p.write_start, block * 3 * fsl);
            }
            // nothing is ever moved: eviction overwrites the oldest block's slots
            assert!(p.shift.is_none());
        }
    }
    assert_eq!(c.global_end_index(), 2000 * 3 * fsl);
    Ok(())
}

/// The full-size configuration builds with the real checkpoint's key names and shapes (no weights
/// are allocated: every tensor is a broadcast zero), and the parameter count matches the manifest.
#[test]
fn full_size_config_matches_manifest() -> anyhow::Result<()> {
    use candle_core::Shape;
    use candle_nn::var_builder::SimpleBackend;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    struct Manifest {
        shapes: HashMap<String, Vec<usize>>,
        used: Arc<Mutex<Vec<String>>>,
    }
    impl SimpleBackend for Manifest {
        fn get(&self, s: Shape, name: &str, _h: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
            let want = self.shapes.get(name).ok_or_else(|| candle_core::Error::Msg(format!("{name} not in manifest")))?;
            if want.as_slice() != s.dims() {
                candle_core::bail!("{name}: manifest {want:?}, model asks {:?}", s.dims());
            }
            self.used.lock().unwrap().push(name.to_string());
            Tensor::zeros((), dtype, dev)?.broadcast_as(s)
        }
        fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
            candle_core::bail!("unchecked {name}")
        }
        fn contains_tensor(&self, name: &str) -> bool {
            self.shapes.contains_key(name)
        }
    }

    let m = fixture::read_json(fixture::fixtures_dir().join("manifests/livetalk_dit.manifest.json"))?;
    let cfg = DitConfig::from_json_value(&m["config"])?;
    assert_eq!(cfg, DitConfig::livetalk_1_3b());
    let shapes: HashMap<String, Vec<usize>> = m["tensors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()))
        .collect();
    let used = Arc::new(Mutex::new(vec![]));
    let backend = Manifest { shapes: shapes.clone(), used: used.clone() };
    let vb = candle_nn::VarBuilder::from_backend(Box::new(backend), DType::BF16, Device::Cpu);
    let model = CausalWanModel::new(&cfg, vb)?;
    assert_eq!(model.config().num_layers, 30);
    // every manifest tensor outside the audio encoder is used by the DiT
    let mut used = used.lock().unwrap().clone();
    used.sort();
    let mut want: Vec<String> =
        shapes.keys().filter(|k| !k.starts_with("audio_proj.") && !k.starts_with("audio_cond_projs.")).cloned().collect();
    want.sort();
    assert_eq!(used, want);
    let dit_params: usize = shapes
        .iter()
        .filter(|(k, _)| !k.starts_with("audio_proj.") && !k.starts_with("audio_cond_projs."))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(cfg.num_params(), dit_params);
    assert_eq!(cfg.audio_layers(), (2..=15).collect::<Vec<_>>());
    assert_eq!(m["num_params"].as_u64().unwrap() as usize - dit_params, 32 * 43008 + 3 * 32 + 14 * (1536 * 32 + 1536));
    Ok(())
}

/// Random weights for a config (benchmarks without files) and the FLOP count.
#[test]
fn random_model_and_flops() -> anyhow::Result<()> {
    use livetalk_model::dit::flops_per_forward;
    let dev = Device::Cpu;
    let fx = Fixture::load(fixture::fixtures_dir(), "dit_block")?;
    let cfg = DitConfig::from_json_file(fx.sibling("dit.config.json"))?;
    let model = CausalWanModel::random(&cfg, DType::F32, &dev, 7)?;
    let fsl = cfg.frame_seq_length(8, 8);
    let mut cache = model.new_kv_cache(KvCacheConfig { local_attn_size: 12, sink_size: 6, frame_seq_length: fsl, batch: 1 })?;
    let prompt = model.prepare_prompt(&Tensor::randn(0f32, 1.0, (1, 8, cfg.text_dim), &dev)?)?;
    let x = Tensor::randn(0f32, 1.0, (1, 16, 3, 8, 8), &dev)?;
    let y = Tensor::randn(0f32, 1.0, (1, 17, 3, 8, 8), &dev)?;
    let t = Tensor::full(1000f32, (1, 3), &dev)?;
    let a = Tensor::randn(0f32, 1.0, (cfg.audio_layers().len(), 3, 1, 1, cfg.dim), &dev)?;
    let out = model.forward(&x, &y, &t, Some(&a), &prompt, &mut cache, 0, None)?;
    assert_eq!(out.dims(), &[1, 16, 3, 8, 8]);
    let s = out.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(s.is_finite() && s > 0.0);

    // FLOPs of the deployed shape: 3 frames x 1024 tokens, full 15-frame cache, 512 text tokens
    let real = DitConfig::livetalk_1_3b();
    let f = flops_per_forward(&real, 3, 1024, 15 * 1024, 512);
    println!("full-size DiT forward: {:.2} TFLOP", f / 1e12);
    assert!(f > 10e12 && f < 25e12, "{f}");
    // linear part ~ 2 * params * tokens, without the cached prompt path (text embedding,
    // cross-attention K/V) and the per-frame time embedding
    let f_lin = flops_per_forward(&real, 3, 1024, 0, 0);
    let d = real.dim;
    let prompt_params = real.num_layers * 2 * (d * d + d) + (real.text_dim * d + d) + (d * d + d);
    let time_params = (real.freq_dim * d + d) + (d * d + d) + (d * 6 * d + 6 * d);
    let approx = 2.0 * (real.num_params() - prompt_params - time_params) as f64 * 3072.0;
    assert!((f_lin / approx - 1.0).abs() < 0.01, "{f_lin} vs {approx}");
    Ok(())
}

/// The ring keeps what the reference's shifting window keeps: after every block, the cache read
/// in the reference order holds the sink blocks, then the newest window blocks oldest first.
#[test]
fn kv_cache_ring_keeps_the_reference_order() -> anyhow::Result<()> {
    use livetalk_model::dit::KvCache;
    let fsl = 2;
    let cfg = KvCacheConfig { local_attn_size: 5, sink_size: 3, frame_seq_length: fsl, batch: 1 };
    let mut c = KvCache::new(cfg, 1, 1, 2, DType::F32, &Device::Cpu)?;
    let mut history: Vec<f32> = Vec::new();
    for block in 0..9usize {
        // two passes over each block, the second with the block's final values
        for pass in 0..2 {
            let value = (10 * block + pass) as f32;
            let kv = Tensor::full(value, (1, 1, fsl, 2), &Device::Cpu)?;
            let p = c.plan(block * fsl, fsl)?;
            c.layers[0].write(&p, &kv, &kv)?;
            c.commit(&p);
            assert!(p.shift.is_none() || block < 5, "block {block} shifted");
        }
        history.push((10 * block + 1) as f32);
        let kept: Vec<f32> = history.iter().take(3).chain(history.iter().skip(3).rev().take(2).rev()).copied().collect();
        let keys = c.keys(0)?.flatten_all()?.to_vec1::<f32>()?;
        let want: Vec<f32> = kept.iter().flat_map(|v| std::iter::repeat_n(*v, fsl * 2)).collect();
        assert_eq!(keys, want, "after block {block}");
        assert_eq!(c.values(0)?.flatten_all()?.to_vec1::<f32>()?, want);
    }
    Ok(())
}
