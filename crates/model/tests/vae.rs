//! Parity of the Wan2.1 VAE with the reference (`fixtures/vae.*`, README section "vae").

use candle_core::{DType, Device, Tensor};
use livetalk_model::fixture::{self, Fixture};
use livetalk_model::wan_vae::{WanVae, WanVaeConfig};

const ATOL: f32 = 1e-4;

fn load() -> anyhow::Result<(Fixture, WanVae)> {
    let fx = Fixture::load(fixture::fixtures_dir(), "vae")?;
    let file = |key: &str| fx.sibling(fx.params[key].as_str().expect("fixture names its files"));
    let cfg = WanVaeConfig::from_file(file("model_config"))?;
    let vae = WanVae::load(&cfg, file("model"), DType::F32, &Device::Cpu)?;
    Ok((fx, vae))
}

fn param(fx: &Fixture, key: &str) -> usize {
    fx.params[key]
        .as_u64()
        .unwrap_or_else(|| panic!("vae.fixture.json: no `{key}`")) as usize
}

#[test]
fn encodes_image_and_video() -> anyhow::Result<()> {
    let (fx, vae) = load()?;
    let image_latent = vae.encode(&fx.tensor("input.image")?)?;
    let d = fixture::assert_close(
        "image_latent",
        &image_latent,
        &fx.tensor("expected.image_latent")?,
        ATOL,
    )?;
    println!("image_latent max abs diff {d:e}");

    let video_latent = vae.encode(&fx.tensor("input.video")?)?;
    assert_eq!(video_latent.dim(1)?, param(&fx, "encode_video_latents"));
    let d = fixture::assert_close(
        "video_latent",
        &video_latent,
        &fx.tensor("expected.video_latent")?,
        ATOL,
    )?;
    println!("video_latent max abs diff {d:e}");
    Ok(())
}

/// The pipeline fixture encodes its 64x64 reference picture with the same tiny VAE.
#[test]
fn encodes_pipeline_reference_image() -> anyhow::Result<()> {
    let (_, vae) = load()?;
    let fx = Fixture::load(fixture::fixtures_dir(), "pipeline")?;
    let latent = vae.encode(&fx.tensor("expected.ref_image")?)?;
    let d = fixture::assert_close(
        "ref_latent",
        &latent,
        &fx.tensor("expected.ref_latent")?,
        ATOL,
    )?;
    println!("pipeline ref_latent max abs diff {d:e}");
    Ok(())
}

#[test]
fn decodes_whole_sequence_and_streamed() -> anyhow::Result<()> {
    let (fx, vae) = load()?;
    let latents = fx.tensor("input.latents")?;
    assert_eq!(latents.dim(1)?, param(&fx, "num_latents"));

    let video = vae.decode(&latents)?;
    assert_eq!(video.dim(1)?, param(&fx, "num_video_frames"));
    let d = fixture::assert_close("decode", &video, &fx.tensor("expected.decode")?, ATOL)?;
    println!("decode max abs diff {d:e}");

    let mut stream = vae.stream_decoder();
    let mut frames = Vec::new();
    let mut per_latent = Vec::new();
    for i in 0..latents.dim(1)? {
        let out = stream.push(&latents.narrow(1, i, 1)?)?;
        per_latent.push(out.dim(1)? as i64);
        frames.push(out);
    }
    let streamed = Tensor::cat(&frames, 1)?;
    let want_counts = fx
        .tensor("expected.stream_frames_per_latent")?
        .to_vec1::<i64>()?;
    assert_eq!(per_latent, want_counts);
    let d = fixture::assert_close(
        "stream_decode",
        &streamed,
        &fx.tensor("expected.stream_decode")?,
        ATOL,
    )?;
    println!("stream_decode max abs diff {d:e}");
    // Same computation as the whole-sequence decode, so bitwise equal.
    assert_eq!(fixture::max_abs_diff(&streamed, &video)?, 0.0);
    Ok(())
}

/// The channels-last decoder (what CUDA runs in bf16) against the fixture, on the CPU: its
/// portable fallbacks (row norm, tap-sum convolution between permutes, token projections,
/// channels-last up-sampling and time doubling) give the reference's frames.
#[test]
fn decodes_channels_last() -> anyhow::Result<()> {
    let (fx, vae) = load()?;
    let latents = fx.tensor("input.latents")?;
    let mut stream = vae.stream_decoder().with_channels_last(true);
    let frames = (0..latents.dim(1)?)
        .map(|i| stream.push(&latents.narrow(1, i, 1)?))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let d = fixture::assert_close("stream_decode (channels-last)", &Tensor::cat(&frames, 1)?, &fx.tensor("expected.stream_decode")?, ATOL)?;
    println!("channels-last stream_decode max abs diff {d:e}");
    Ok(())
}

#[test]
fn rejects_bad_input() -> anyhow::Result<()> {
    let (_fx, vae) = load()?;
    let wrong_channels = Tensor::zeros((1, 3, 8, 4, 4), DType::F32, &Device::Cpu)?;
    let err = vae.decode(&wrong_channels).unwrap_err().to_string();
    assert!(err.contains("[B,F,16,h,w]"), "{err}");
    let two_frames = Tensor::zeros((1, 3, 2, 32, 32), DType::F32, &Device::Cpu)?;
    let err = vae.encode(&two_frames).unwrap_err().to_string();
    assert!(err.contains("1+4k"), "{err}");
    Ok(())
}

#[test]
fn reports_missing_tensor_and_bad_config() -> anyhow::Result<()> {
    let dir = fixture::fixtures_dir();
    let cfg = WanVaeConfig::from_file(dir.join("vae.config.json"))?;
    // The DiT weights do not hold a VAE: the error names the file and the missing tensor.
    let err = WanVae::load(
        &cfg,
        dir.join("dit.weights.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("dit.weights.safetensors") && err.contains("encoder.conv1.weight"),
        "{err}"
    );

    let mut bad = cfg.clone();
    bad.latents_std.pop();
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("latents_std"));
    Ok(())
}

/// Half precision through the whole decoder. candle's CPU matmul has no bf16 kernel, so on the
/// CPU the half-precision path is exercised with f16; bf16 runs on CUDA (`--features cuda`).
fn half_decode_stays_close(dtype: DType, device: &Device) -> anyhow::Result<()> {
    let fx = Fixture::load(fixture::fixtures_dir(), "vae")?;
    let dir = fixture::fixtures_dir();
    let cfg = WanVaeConfig::from_file(dir.join("vae.config.json"))?;
    let vae = WanVae::load(&cfg, dir.join("vae.weights.safetensors"), dtype, device)?;
    let video = vae.decode(&fx.tensor("input.latents")?.to_device(device)?)?;
    assert_eq!(video.dtype(), dtype);
    let want = fx.tensor("expected.decode")?;
    let max = fixture::max_abs_diff(&video, &want)?;
    let diff = (video.to_device(&Device::Cpu)?.to_dtype(DType::F32)? - &want)?.abs()?;
    let mean = diff.mean_all()?.to_scalar::<f32>()?;
    println!("{dtype:?} decode abs diff: max {max:e}, mean {mean:e}");
    // f16 keeps 11 significant bits, bf16 8: the tiny random model (most outputs at the clamp)
    // amplifies the rounding of its activations a little.
    let (max_tol, mean_tol) = if dtype == DType::BF16 {
        (0.4, 0.03)
    } else {
        (0.1, 0.005)
    };
    assert!(
        max < max_tol && mean < mean_tol,
        "{dtype:?} decode drifted: max {max}, mean {mean}"
    );
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

#[path = "support/manifest_backend.rs"]
mod manifest_backend;
use manifest_backend::ManifestModel;

/// The real Wan2.1 VAE (dim 96) asks for exactly the tensors of `Wan2.1_VAE.pth`, with their
/// shapes, and runs at that width (zero weights: shapes only).
#[test]
fn real_config_matches_manifest() -> anyhow::Result<()> {
    let manifest = ManifestModel::open("wan21_vae.manifest.json", DType::F32)?;
    let cfg: WanVaeConfig = serde_json::from_value(manifest.config.clone())?;
    assert_eq!(cfg, WanVaeConfig::wan21());
    let vae = WanVae::new(&cfg, manifest.vb.clone())?;
    assert_eq!(
        manifest.used(),
        manifest.shapes.keys().cloned().collect::<Vec<_>>()
    );

    let latents = Tensor::zeros((1, 2, 16, 2, 2), DType::F32, &Device::Cpu)?;
    assert_eq!(vae.decode(&latents)?.dims(), &[1, 5, 3, 16, 16]);
    let pixels = Tensor::zeros((1, 3, 5, 16, 16), DType::F32, &Device::Cpu)?;
    assert_eq!(vae.encode(&pixels)?.dims(), &[1, 2, 16, 2, 2]);
    Ok(())
}

/// Full-size speed on a GPU (random weights, bf16): 512x512 frames, streamed one latent at a
/// time as the engine does, and the reference-image encode.
#[cfg(feature = "cuda")]
#[test]
fn real_scale_speed_on_cuda() -> anyhow::Result<()> {
    use std::time::Instant;
    let dev = Device::new_cuda(0)?;
    let manifest = ManifestModel::open_random("wan21_vae.manifest.json", DType::BF16, &dev, 0.02)?;
    let vae = WanVae::new(&WanVaeConfig::wan21(), manifest.vb.clone())?;
    let latents = Tensor::randn(0f32, 1.0, (1, 9, 16, 64, 64), &dev)?;
    for round in 0..2 {
        let mut stream = vae.stream_decoder();
        let mut times = Vec::new();
        for i in 0..latents.dim(1)? {
            let start = Instant::now();
            let frames = stream.push(&latents.narrow(1, i, 1)?)?;
            dev.synchronize()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            assert_eq!(frames.dims()[3..], [512, 512]);
        }
        println!("round {round}: VAE stream decode ms per latent (512x512, bf16): {times:.1?}");
    }
    let image = Tensor::randn(0f32, 0.5, (1, 3, 1, 512, 512), &dev)?.to_dtype(DType::BF16)?;
    for _ in 0..2 {
        let start = Instant::now();
        let z = vae.encode(&image)?;
        dev.synchronize()?;
        println!(
            "VAE encode 1 frame 512x512: {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        assert_eq!(z.dims(), &[1, 1, 16, 64, 64]);
    }
    Ok(())
}
