//! `dit_stream` fixture: block-autoregressive generation with the KV cache (sink + rolling window,
//! eviction), re-noising with recorded noise, block-0 reference overwrite and t=0 refresh passes.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use livetalk_engine::generator::{GeneratorConfig, RecordedNoise, StreamGenerator};
use livetalk_model::dit::{CausalWanModel, DitConfig};
use livetalk_model::fixture::{self, Fixture};
use livetalk_model::schedule::ScheduleConfig;

fn p_usize(fx: &Fixture, k: &str) -> usize {
    fx.params[k].as_u64().unwrap_or_else(|| panic!("fixture param {k}")) as usize
}

#[test]
fn dit_stream_parity_f32() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let fx = Fixture::load(fixture::fixtures_dir(), "dit_stream")?;
    let cfg = DitConfig::from_json_file(fx.sibling(fx.params["model_config"].as_str().unwrap()))?;
    let dit = Arc::new(CausalWanModel::load(
        &cfg,
        &[fx.sibling(fx.params["model"].as_str().unwrap())],
        DType::F32,
        &dev,
    )?);

    let nfpb = p_usize(&fx, "num_frame_per_block");
    let num_blocks = p_usize(&fx, "num_blocks");
    let fsl = p_usize(&fx, "frame_seq_length");
    let (lh, lw) = (p_usize(&fx, "latent_h"), p_usize(&fx, "latent_w"));
    assert_eq!(cfg.frame_seq_length(lh, lw), fsl);
    let steps: Vec<f32> = fx.params["denoising_step_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let schedule = ScheduleConfig { shift: fx.params["scheduler_shift"].as_f64().unwrap(), num_inference_steps: steps.len(), ..Default::default() };
    let gcfg = GeneratorConfig {
        num_frame_per_block: nfpb,
        local_attn_size: fx.params["local_attn_size"].as_i64().unwrap(),
        sink_size: p_usize(&fx, "sink_size"),
        schedule,
        denoising_steps: None,
        refresh_timestep: fx.params["refresh_timestep"].as_f64().unwrap() as f32,
        record_steps: true,
    };

    let img_lat = fx.tensor("input.img_lat")?; // [B, 17, F_total, h, w]
    let c = cfg.out_dim;
    // reference latent [B, 1, C, h, w] = first frame of the conditioning's latent channels
    let ref_latent = img_lat.narrow(1, 0, c)?.narrow(2, 0, 1)?.permute([0, 2, 1, 3, 4])?.contiguous()?;
    let noise = RecordedNoise { initial: fx.tensor("input.noise")?, renoise: fx.tensor("input.renoise")?, frames_per_block: nfpb };
    let mut gen = StreamGenerator::new(dit.clone(), gcfg, &ref_latent, &fx.tensor("input.prompt_embeds")?, Box::new(noise))?;
    assert_eq!(gen.denoising_steps(), steps.as_slice(), "sampler timesteps");
    assert_eq!(gen.kv_cache().capacity(), p_usize(&fx, "kv_cache_tokens"));
    let sigmas: Vec<f32> = steps.iter().map(|&t| gen.scheduler().sigma_x0(t) as f32).collect();
    let want_sigmas: Vec<f32> = fx.params["sigmas_used"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(sigmas, want_sigmas);

    let audio = fx.tensor("input.audio_emb")?; // [n, F_total, 1, 1, dim]
    let step_ts = fx.tensor("intermediate.step_timestep")?;
    let step_x0 = fx.tensor("intermediate.step_x0")?;
    let want_local: Vec<i64> = fx.tensor("intermediate.kv_local_end_index")?.to_vec1()?;
    let want_global: Vec<i64> = fx.tensor("intermediate.kv_global_end_index")?.to_vec1()?;
    let want_latents = fx.tensor("expected.latents")?;

    let mut failures = Vec::new();
    let mut check = |what: String, got: &Tensor, want: &Tensor, atol: f32| {
        let d = fixture::max_abs_diff(&got.to_dtype(DType::F32).unwrap(), want).unwrap();
        println!("{what:48} max abs diff {d:.3e}");
        if d.is_nan() || d > atol {
            failures.push(format!("{what}: {d:e} > {atol:e}"));
        }
    };

    let mut blocks = Vec::new();
    for b in 0..num_blocks {
        // the conditioning this block gets must be the fixture's
        let y = gen.conditioning(gen.current_start_frame(), nfpb)?;
        check(format!("img_lat block {b}"), &y, &img_lat.narrow(2, b * nfpb, nfpb)?, 0.0);

        let a = audio.narrow(1, b * nfpb, nfpb)?;
        let x0 = gen.generate_block(Some(&a))?;
        let rec = gen.last_block().unwrap();
        assert_eq!(rec.timesteps, step_ts.get(b)?.to_vec1::<f32>()?, "timesteps of block {b}");
        for s in 0..rec.step_x0.len().min(step_x0.dim(1)?) {
            let want = step_x0.get(b)?.get(s)?; // [B*F, C, h, w]
            check(format!("step_x0 block {b} step {s}"), &rec.step_x0[s].flatten_to(1)?, &want, 2e-4);
        }
        check(format!("latents block {b}"), &x0, &want_latents.narrow(1, b * nfpb, nfpb)?, 2e-4);
        let kv = gen.kv_cache();
        assert_eq!(kv.local_end_index() as i64, want_local[b], "local end index after block {b}");
        assert_eq!(kv.global_end_index() as i64, want_global[b], "global end index after block {b}");
        let name = format!("intermediate.kv_cache.layer0.k.after_block{b}");
        if fx.has(&name) {
            check(name.clone(), &kv.keys(0)?, &fx.tensor(&name)?, 2e-4);
        }
        blocks.push(x0);
    }
    let all = Tensor::cat(&blocks, 1)?;
    check("expected.latents".into(), &all, &want_latents, 2e-4);
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
    Ok(())
}

fn stream_setup(dtype: DType) -> anyhow::Result<(Fixture, Arc<CausalWanModel>, GeneratorConfig, Tensor)> {
    let fx = Fixture::load(fixture::fixtures_dir(), "dit_stream")?;
    let cfg = DitConfig::from_json_file(fx.sibling(fx.params["model_config"].as_str().unwrap()))?;
    let dit = Arc::new(CausalWanModel::load(&cfg, &[fx.sibling(fx.params["model"].as_str().unwrap())], dtype, &Device::Cpu)?);
    let gcfg = GeneratorConfig {
        num_frame_per_block: p_usize(&fx, "num_frame_per_block"),
        local_attn_size: fx.params["local_attn_size"].as_i64().unwrap(),
        sink_size: p_usize(&fx, "sink_size"),
        schedule: ScheduleConfig { shift: fx.params["scheduler_shift"].as_f64().unwrap(), ..Default::default() },
        ..Default::default()
    };
    let img_lat = fx.tensor("input.img_lat")?;
    let ref_latent = img_lat.narrow(1, 0, cfg.out_dim)?.narrow(2, 0, 1)?.permute([0, 2, 1, 3, 4])?.contiguous()?;
    Ok((fx, dit, gcfg, ref_latent))
}

/// bf16 weights/activations through the whole stream: loose agreement with the f32 reference.
#[test]
fn dit_stream_bf16_close() -> anyhow::Result<()> {
    let (fx, dit, gcfg, ref_latent) = stream_setup(DType::BF16)?;
    let nfpb = gcfg.num_frame_per_block;
    let noise = RecordedNoise { initial: fx.tensor("input.noise")?, renoise: fx.tensor("input.renoise")?, frames_per_block: nfpb };
    let mut gen = StreamGenerator::new(dit, gcfg, &ref_latent, &fx.tensor("input.prompt_embeds")?, Box::new(noise))?;
    let audio = fx.tensor("input.audio_emb")?;
    let mut blocks = vec![];
    for b in 0..p_usize(&fx, "num_blocks") {
        blocks.push(gen.generate_block(Some(&audio.narrow(1, b * nfpb, nfpb)?))?);
    }
    let all = Tensor::cat(&blocks, 1)?;
    let want = fx.tensor("expected.latents")?;
    let d = fixture::max_abs_diff(&all, &want)?;
    let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
    println!("bf16 stream: max abs diff {d:.3e}, max |ref| {scale:.3}");
    assert!(d < 0.15 * scale, "{d}");
    Ok(())
}

/// Seeded noise: reproducible streams, reset/restart replays the same stream, and a stream runs
/// on past many evictions with the cache capped at its window.
#[test]
fn seeded_stream_is_reproducible_and_bounded() -> anyhow::Result<()> {
    use livetalk_engine::generator::SeededNoise;
    let (fx, dit, gcfg, ref_latent) = stream_setup(DType::F32)?;
    let nfpb = gcfg.num_frame_per_block;
    let cap = gcfg.local_attn_size as usize * p_usize(&fx, "frame_seq_length");
    let prompt = fx.tensor("input.prompt_embeds")?;
    let audio = fx.tensor("input.audio_emb")?.narrow(1, 0, nfpb)?;
    let run = |gen: &mut StreamGenerator, n: usize| -> anyhow::Result<Vec<Tensor>> {
        (0..n).map(|_| Ok(gen.generate_block(Some(&audio))?)).collect()
    };
    let mut g1 = StreamGenerator::new(dit.clone(), gcfg.clone(), &ref_latent, &prompt, Box::new(SeededNoise::new(42)))?;
    let mut g2 = StreamGenerator::new(dit.clone(), gcfg.clone(), &ref_latent, &prompt, Box::new(SeededNoise::new(42)))?;
    let a = run(&mut g1, 12)?;
    let b = run(&mut g2, 12)?;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(fixture::max_abs_diff(x, y)?, 0.0);
    }
    assert_eq!(g1.current_start_frame(), 12 * nfpb);
    assert_eq!(g1.kv_cache().local_end_index(), cap);
    assert_eq!(g1.kv_cache().global_end_index(), 12 * nfpb * p_usize(&fx, "frame_seq_length"));
    // frame 0 of block 0 is the reference latent
    assert_eq!(fixture::max_abs_diff(&a[0].narrow(1, 0, 1)?, &ref_latent)?, 0.0);
    for x in &a {
        assert!(x.abs()?.max_all()?.to_scalar::<f32>()?.is_finite());
    }
    // restart with the same reference + fresh seed replays the stream
    g1.restart(&ref_latent, None)?;
    g1.set_noise_source(Box::new(SeededNoise::new(42)));
    let c = run(&mut g1, 3)?;
    for (x, y) in c.iter().zip(&a) {
        assert_eq!(fixture::max_abs_diff(x, y)?, 0.0);
    }
    Ok(())
}
