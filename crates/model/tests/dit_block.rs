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
                if !(d <= atol) {
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
    let pe = pe.reshape((1, frames, lh / 2, lw / 2, d))?.permute([0, 4, 1, 2, 3])?;
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
