//! `livetalk bench --engine livetalk` on the CPU: the tiny fixture DiT with each full-size
//! decoder (random weights) at 16x16, through the sequential, overlapped and two-stream loops.
//! Checks what was decoded, never how fast.

use std::path::Path;

use candle_core::{DType, Device};
use livetalk_engine::bench::{bench_livetalk, LiveTalkBenchOptions, LiveTalkBenchReport};
use livetalk_engine::livetalk::DecoderKind;
use livetalk_model::dit::DitConfig;

const BLOCKS: usize = 2;

fn bench(decoder: DecoderKind) -> LiveTalkBenchReport {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dit.config.json");
    let opts = LiveTalkBenchOptions {
        device: Device::Cpu,
        dtype: DType::F32,
        size: 16,
        blocks: BLOCKS,
        text_len: 8,
        config: Some(DitConfig::from_json_file(&config).unwrap()),
        streams: 2,
        decoder,
        overlap_decode: true,
        profile_blocks: 1,
    };
    bench_livetalk(&opts).unwrap()
}

fn check_decoded(report: &LiveTalkBenchReport, name: &str) {
    // every measured block: 3 latents -> 12 frames of 16x16 (x8 up-sampling of a 2x2 latent)
    assert_eq!(report.frames_per_block, 12);
    assert_eq!(report.frames_decoded, BLOCKS * 12);
    assert_eq!(report.overlapped_frames_decoded, BLOCKS * 12);
    assert_eq!(report.frame_size, (16, 16));
    assert_eq!(report.decode_ms.len(), BLOCKS);
    assert!(report.decode_ms.iter().all(|ms| *ms > 0.0), "{:?}", report.decode_ms);
    assert!(report.pixel_mean.is_finite() && (0.0..=1.0).contains(&report.pixel_mean), "{}", report.pixel_mean);
    assert!(report.overlapped_block_ms.is_some_and(|ms| ms > 0.0));
    assert!(report.multi_stream.is_some_and(|(n, fps)| n == 2 && fps > 0.0));
    assert!(report.fps().is_finite() && report.fps() > 0.0);

    let text = report.to_string();
    assert!(text.contains(&format!("{name} decoder, steady state")), "{text}");
    assert!(text.contains(&format!("    {name} decode ")), "{text}");
    assert!(text.contains(&format!("(DiT + {name} decode per stream)")), "{text}");
    assert!(text.contains("decoded frames       24 of 16x16"), "{text}");
    // no trace on the CPU, and the report says why
    assert!(matches!(&report.profile, Some(Err(why)) if why.contains("CUDA")), "{:?}", report.profile);
    assert!(text.contains("profile: not made (tracing needs a CUDA build"), "{text}");
}

#[test]
fn bench_decodes_every_block_with_the_wan_vae() {
    let report = bench(DecoderKind::WanVae);
    assert_eq!(report.decoder, DecoderKind::WanVae);
    check_decoded(&report, "Wan VAE");
}

#[test]
fn bench_decodes_every_block_with_taehv() {
    let report = bench(DecoderKind::Taehv);
    assert_eq!(report.decoder, DecoderKind::Taehv);
    check_decoded(&report, "TAEHV");
}
