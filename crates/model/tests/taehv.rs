//! Parity of the TAEHV decoder with the reference (`fixtures/taehv.*`, README section "taehv").

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use livetalk_model::fixture::{self, Fixture};
use livetalk_model::taehv::{TaehvConfig, TaehvDecoder};

#[path = "support/manifest_backend.rs"]
mod manifest_backend;
use manifest_backend::ManifestModel;

const ATOL: f32 = 1e-4;

fn load() -> anyhow::Result<(Fixture, TaehvConfig, TaehvDecoder)> {
    let fx = Fixture::load(fixture::fixtures_dir(), "taehv")?;
    let file = |key: &str| fx.sibling(fx.params[key].as_str().expect("fixture names its files"));
    let cfg = TaehvConfig::from_file(file("model_config"))?;
    let dec = TaehvDecoder::load(&cfg, file("model"), DType::F32, &Device::Cpu)?;
    Ok((fx, cfg, dec))
}

fn num_frames(fx: &Fixture) -> usize {
    fx.params["num_frames"]
        .as_u64()
        .expect("taehv.fixture.json: num_frames") as usize
}

#[test]
fn parallel_decode_matches_reference() -> anyhow::Result<()> {
    let (fx, _, dec) = load()?;
    let frames = dec.decode(&fx.tensor("input.latents")?)?;
    assert_eq!(frames.dim(1)?, num_frames(&fx));
    let d = fixture::assert_close(
        "decode_parallel",
        &frames,
        &fx.tensor("expected.decode_parallel")?,
        ATOL,
    )?;
    println!("decode_parallel max abs diff {d:e}");
    Ok(())
}

#[test]
fn streaming_decode_matches_reference_and_sequential() -> anyhow::Result<()> {
    let (fx, _, dec) = load()?;
    let latents = fx.tensor("input.latents")?;
    let mut stream = dec.stream_decoder();
    let mut frames = Vec::new();
    let mut per_latent = Vec::new();
    for i in 0..latents.dim(1)? {
        let out = stream.push(&latents.narrow(1, i, 1)?)?;
        per_latent.push(out.dim(1)? as i64);
        frames.push(out);
    }
    assert_eq!(
        per_latent,
        fx.tensor("expected.stream_frames_per_latent")?
            .to_vec1::<i64>()?
    );
    let streamed = Tensor::cat(&frames, 1)?;
    assert_eq!(streamed.dim(1)?, num_frames(&fx));
    let d = fixture::assert_close(
        "decode_streaming",
        &streamed,
        &fx.tensor("expected.decode_streaming")?,
        ATOL,
    )?;
    println!("decode_streaming max abs diff {d:e}");

    // decode_video(parallel=False) is the streaming decoder run to the end: bitwise equal.
    let sequential = dec.decode_sequential(&latents)?;
    assert_eq!(fixture::max_abs_diff(&sequential, &streamed)?, 0.0);

    // After a reset the stream starts over.
    stream.reset();
    let first = stream.push(&latents.narrow(1, 0, 1)?)?;
    assert_eq!(
        fixture::max_abs_diff(&first, &streamed.narrow(1, 0, 1)?)?,
        0.0
    );
    Ok(())
}

/// A real taew2_1 file may hold a TGrow conv with more rows than `C*stride`; the decoder must
/// use the LAST rows. Pad each TGrow weight with junk rows in front and expect the same output.
#[test]
fn wide_tgrow_weights_keep_last_rows() -> anyhow::Result<()> {
    let (fx, cfg, dec) = load()?;
    let path = fixture::fixtures_dir().join("taehv.weights.safetensors");
    let mut tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)?;
    for idx in [7, 13, 19] {
        let key = format!("decoder.{idx}.conv.weight");
        let w = tensors.remove(&key).expect("fixture has the TGrow weights");
        let junk = (w.ones_like()? * 1e3)?;
        tensors.insert(key, Tensor::cat(&[&junk, &w], 0)?);
    }
    let wide = TaehvDecoder::new(
        &cfg,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )?;
    let latents = fx.tensor("input.latents")?;
    assert_eq!(
        fixture::max_abs_diff(&wide.decode(&latents)?, &dec.decode(&latents)?)?,
        0.0
    );
    Ok(())
}

#[test]
fn rejects_bad_config_input_and_weights() -> anyhow::Result<()> {
    let (_, cfg, dec) = load()?;
    let wrong = Tensor::zeros((1, 2, 4, 4, 4), DType::F32, &Device::Cpu)?;
    let err = dec.decode(&wrong).unwrap_err().to_string();
    assert!(err.contains("[N,T,16,h,w]"), "{err}");

    let mut bad = cfg.clone();
    bad.frames_to_trim = Some(2);
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("frames_to_trim"));

    // Narrow TGrow weights name the tensor.
    let path = fixture::fixtures_dir().join("taehv.weights.safetensors");
    let mut tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)?;
    let w = tensors["decoder.13.conv.weight"].narrow(0, 0, 3)?;
    tensors.insert("decoder.13.conv.weight".into(), w);
    let err = TaehvDecoder::new(
        &cfg,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("decoder.13.conv.weight"), "{err}");
    Ok(())
}

/// Half precision end to end (f16 on the CPU, which has no bf16 matmul; bf16 on CUDA).
fn half_decode_stays_close(dtype: DType, device: &Device) -> anyhow::Result<()> {
    let fx = Fixture::load(fixture::fixtures_dir(), "taehv")?;
    let dir = fixture::fixtures_dir();
    let cfg = TaehvConfig::from_file(dir.join("taehv.config.json"))?;
    let dec = TaehvDecoder::load(&cfg, dir.join("taehv.weights.safetensors"), dtype, device)?;
    let frames = dec.decode(&fx.tensor("input.latents")?.to_device(device)?)?;
    assert_eq!(frames.dtype(), dtype);
    let d = fixture::max_abs_diff(&frames, &fx.tensor("expected.decode_parallel")?)?;
    println!("{dtype:?} decode max abs diff {d:e}");
    assert!(d < 0.05, "{dtype:?} decode drifted by {d}");
    Ok(())
}

#[test]
fn f16_decode_stays_close() -> anyhow::Result<()> {
    half_decode_stays_close(DType::F16, &Device::Cpu)
}

#[cfg(feature = "cuda")]
#[test]
fn bf16_decode_stays_close_on_cuda() -> anyhow::Result<()> {
    half_decode_stays_close(DType::BF16, &Device::new_cuda(0)?)
}

/// The real TAEW2.1 widths ask for exactly the `decoder.*` tensors of `taew2_1`, with their
/// shapes, and decode at that width (zero weights: shapes only).
#[test]
fn real_config_matches_manifest() -> anyhow::Result<()> {
    let manifest = ManifestModel::open("taew2_1.manifest.json", DType::F32)?;
    let real = &manifest.config;
    let cfg: TaehvConfig = serde_json::from_value(real.clone())?;
    assert_eq!(cfg.decoder_widths, TaehvConfig::taew2_1().decoder_widths);
    let dec = TaehvDecoder::new(&cfg, manifest.vb.clone())?;
    let decoder_keys: Vec<String> = manifest
        .shapes
        .keys()
        .filter(|k| k.starts_with("decoder."))
        .cloned()
        .collect();
    assert_eq!(manifest.used(), decoder_keys);

    let latents = Tensor::zeros((1, 2, 16, 2, 2), DType::F32, &Device::Cpu)?;
    assert_eq!(dec.decode(&latents)?.dims(), &[1, 5, 3, 16, 16]);
    Ok(())
}

/// Full-size speed on a GPU (random weights, bf16): 512x512 frames, streamed one latent at a
/// time, and the parallel decode of a 3-latent block.
#[cfg(feature = "cuda")]
#[test]
fn real_scale_speed_on_cuda() -> anyhow::Result<()> {
    use std::time::Instant;
    let dev = Device::new_cuda(0)?;
    let manifest = ManifestModel::open_random("taew2_1.manifest.json", DType::BF16, &dev, 0.05)?;
    let dec = TaehvDecoder::new(&TaehvConfig::taew2_1(), manifest.vb.clone())?;
    let latents = Tensor::randn(0f32, 1.0, (1, 9, 16, 64, 64), &dev)?;
    for round in 0..2 {
        let mut stream = dec.stream_decoder();
        let mut times = Vec::new();
        for i in 0..latents.dim(1)? {
            let start = Instant::now();
            stream.push(&latents.narrow(1, i, 1)?)?;
            dev.synchronize()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        println!("round {round}: TAEHV stream decode ms per latent (512x512, bf16): {times:.1?}");
        let start = Instant::now();
        let frames = dec.decode(&latents.narrow(1, 0, 3)?)?;
        dev.synchronize()?;
        println!(
            "TAEHV parallel decode of 3 latents: {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        assert_eq!(frames.dims(), &[1, 9, 3, 512, 512]);
    }
    Ok(())
}
