//! `pipeline` fixture: the offline LiveTalk pipeline end to end (picture -> VAE latent ->
//! conditioning, audio features, block streaming, whole-sequence decode, uint8 frames), and the
//! parity runner over the whole fixture directory.

use candle_core::{DType, Device, Tensor};
use livetalk_engine::generator::SeededNoise;
use livetalk_engine::parity::{self, Outcome, ParityOptions};
use livetalk_engine::pipeline::{frames_to_uint8, OfflinePipeline, PipelineFiles, PipelineRequest};
use livetalk_model::fixture::{self, Fixture};

fn p_usize(fx: &Fixture, k: &str) -> usize {
    fx.params[k].as_u64().unwrap_or_else(|| panic!("pipeline.fixture.json: {k}")) as usize
}

fn load(dtype: DType) -> anyhow::Result<(Fixture, OfflinePipeline)> {
    let fx = Fixture::load(fixture::fixtures_dir(), "pipeline")?;
    let pipeline = OfflinePipeline::load(&PipelineFiles::in_dir(fixture::fixtures_dir()), dtype, &Device::Cpu)?;
    Ok((fx, pipeline))
}

#[test]
fn pipeline_parity_f32() -> anyhow::Result<()> {
    let (fx, pipeline) = load(DType::F32)?;
    let out = parity::run_pipeline_fixture(&fx, &pipeline)?;

    let f = p_usize(&fx, "num_latent_frames");
    let t = p_usize(&fx, "num_video_frames");
    let [h, w] = [0, 1].map(|i| fx.params["image_hw"][i].as_u64().unwrap() as usize);
    assert_eq!(out.latents.dims()[1], f);
    assert_eq!(out.video.dims(), &[1, t, 3, h, w]);
    assert_eq!(out.frames_uint8.dims(), &[t, h, w, 3]);
    assert_eq!(out.frames_uint8.dtype(), DType::U8);

    let mut failures = Vec::new();
    let mut check = |name: &str, got: &Tensor, atol: f32| {
        let want = fx.tensor(&format!("expected.{name}")).unwrap();
        match fixture::max_abs_diff(got, &want) {
            Ok(d) => {
                println!("{name:12} max abs diff {d:.3e} (atol {atol:.0e})");
                if d.is_nan() || d > atol {
                    failures.push(format!("{name}: {d:e} > {atol:e}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    };
    check("ref_image", &out.ref_image, 1e-5);
    check("ref_latent", &out.ref_latent, 1e-4);
    check("img_lat", &out.img_lat, 1e-4);
    check("audio_emb", &out.audio_emb, 1e-4);
    check("latents", &out.latents, 5e-4);
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));

    // frames: |diff| <= 1 on fewer than 0.1% of the values
    let got = out.frames_uint8.flatten_all()?.to_vec1::<u8>()?;
    let want = fx.tensor("expected.frames_uint8")?.flatten_all()?.to_vec1::<u8>()?;
    let diffs: Vec<u8> = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).collect();
    let differing = diffs.iter().filter(|&&d| d > 0).count();
    println!("frames_uint8 max |diff| {}, {differing} of {} values differ", diffs.iter().max().unwrap(), diffs.len());
    assert!(diffs.iter().all(|&d| d <= 1));
    assert!((differing as f64) < 1e-3 * diffs.len() as f64);

    // frame 0 of the latents is the reference latent (block-0 overwrite)
    assert_eq!(fixture::max_abs_diff(&out.latents.narrow(1, 0, 1)?, &out.ref_latent)?, 0.0);
    Ok(())
}

/// The uint8 conversion truncates like numpy's `astype(uint8)` and lays frames out as HWC.
#[test]
fn frames_to_uint8_truncates_and_transposes() -> anyhow::Result<()> {
    // [1, T=1, 3, H=1, W=2]: channel-major values
    let v = Tensor::new(&[0.0f32, 1.0, 0.5, 0.999, 0.00392, 0.99999], &Device::Cpu)?.reshape((1, 1, 3, 1, 2))?;
    let u = frames_to_uint8(&v)?;
    assert_eq!(u.dims(), &[1, 1, 2, 3]);
    // pixel 0 = (0.0, 0.5, 0.00392) -> (0, 127, 0); pixel 1 = (1.0, 0.999, 0.99999) -> (255, 254, 254)
    assert_eq!(u.flatten_all()?.to_vec1::<u8>()?, vec![0, 127, 0, 255, 254, 254]);
    assert!(frames_to_uint8(&Tensor::zeros((1, 2, 4, 1, 1), DType::F32, &Device::Cpu)?).is_err());
    Ok(())
}

/// Seeded noise instead of the recorded one: a whole video comes out, frame 0 is the reference.
#[test]
fn seeded_run_and_bad_requests() -> anyhow::Result<()> {
    let (fx, pipeline) = load(DType::F32)?;
    let rgb = fx.tensor("input.image_uint8")?.flatten_all()?.to_vec1::<u8>()?;
    let dims = fx.tensor("input.image_uint8")?.dims().to_vec();
    let wave = fx.tensor("input.waveform")?.to_vec1::<f32>()?;
    let generator = parity::generator_config(&fx)?;
    let nfpb = generator.num_frame_per_block;
    let mut req = PipelineRequest {
        image_rgb: &rgb,
        image_hw: [dims[0], dims[1]],
        image_sizes: vec![[dims[0], dims[1]]],
        waveform: &wave,
        prompt_embeds: fx.tensor("input.prompt_embeds")?,
        num_latent_frames: 2 * nfpb,
        generator,
    };
    let out = pipeline.run(&req, Box::new(SeededNoise::new(7)))?;
    assert_eq!(out.latents.dims()[1], 2 * nfpb);
    assert_eq!(out.frames_uint8.dims()[0], 4 * 2 * nfpb - 3);
    assert_eq!(fixture::max_abs_diff(&out.latents.narrow(1, 0, 1)?, &out.ref_latent)?, 0.0);
    let again = pipeline.run(&req, Box::new(SeededNoise::new(7)))?;
    assert_eq!(fixture::max_abs_diff(&out.latents, &again.latents)?, 0.0);

    req.num_latent_frames = nfpb + 1;
    let err = pipeline.run(&req, Box::new(SeededNoise::new(7))).unwrap_err().to_string();
    assert!(err.contains("multiple of num_frame_per_block"), "{err}");
    req.num_latent_frames = nfpb;
    req.image_rgb = &rgb[..rgb.len() - 3];
    let err = pipeline.run(&req, Box::new(SeededNoise::new(7))).unwrap_err().to_string();
    assert!(err.contains("bytes"), "{err}");
    Ok(())
}

fn run_all(dtype: DType) -> parity::ParityReport {
    let report = parity::run_dir(fixture::fixtures_dir(), &ParityOptions { device: Device::Cpu, dtype });
    for f in &report.fixtures {
        println!("{}", f.line());
    }
    report
}

/// Every fixture of the directory through the parity runner, in float32: all pass.
#[test]
fn parity_runner_f32_passes_every_fixture() {
    let report = run_all(DType::F32);
    assert_eq!(report.fixtures.len(), parity::FIXTURES.iter().filter(|n| parity::fixture_present(&report.dir, n)).count());
    assert!(!report.fixtures.is_empty());
    for f in &report.fixtures {
        let Outcome::Checked(checks) = &f.outcome else { panic!("{}", f.line()) };
        assert!(!checks.is_empty(), "{}", f.line());
    }
    assert!(report.all_passed(), "failures above");
}

/// bf16 (DiT, wav2vec2, audio projections in bf16; the conv decoders with bf16 weights on the
/// CPU): every fixture within the bf16 tolerances of docs/PARITY.md.
#[test]
fn parity_runner_bf16_passes_every_fixture() {
    let report = run_all(DType::BF16);
    assert!(report.all_passed(), "failures above");
}
