//! Hours in a minute: the LiveTalk engine's real block loop (streaming audio features, generator
//! with KV cache + sink + window, the unbounded position scheme, TAEHV decoding) on the tiny
//! fixture model at a 2x2 latent (16x16 pictures), for more than 4,000 latent frames — four
//! times past the reference's 1024-entry RoPE table. Nothing may overflow or drift: latents stay
//! finite with bounded statistics, positions and cache indices stay in range, and the frames at
//! latent frame 4000 are as well-formed as those at frame 10.
//!
//! `LIVETALK_LONG_RUN_BLOCKS` overrides the block count (default 1,336 blocks = 4,008 latent
//! frames = 16.7 minutes of stream).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use livetalk_core::{Persona, VideoFrame};
use livetalk_engine::engine::{AudioWindow, AvatarEngine};
use livetalk_engine::livetalk::{AudioStreamConfig, LiveTalkEngine, LiveTalkOptions};

/// Voiced audio as a function of the sample index (no 16-minute buffer).
fn voiced_sample(i: u64) -> f32 {
    let t = i as f64 / 16_000.0;
    let f0 = 140.0 + 40.0 * (std::f64::consts::TAU * 0.07 * t).sin();
    // phase of a slowly gliding pitch: integral of f0
    let phase = std::f64::consts::TAU * (140.0 * t - 40.0 / (std::f64::consts::TAU * 0.07) * ((std::f64::consts::TAU * 0.07 * t).cos() - 1.0));
    let _ = f0;
    let env = (0.5 + 0.5 * (std::f64::consts::TAU * 3.3 * t).sin()).powi(2);
    let pause = if (t % 11.0) > 9.0 { 0.0 } else { 1.0 };
    let tone: f64 = (1..6).map(|h| (phase * h as f64).sin() / h as f64).sum();
    (0.3 * env * pause * tone) as f32
}

/// (mean, std) of a frame's bytes.
fn pixel_stats(f: &VideoFrame) -> (f64, f64) {
    let n = f.data.len() as f64;
    let mean = f.data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = f.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn four_thousand_latent_frames_without_overflow_or_drift() {
    // The tiny model's ops are far too small to share between threads: one thread is 4x less
    // CPU time (this binary has one test, so the pool is not started yet).
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let blocks: u64 = std::env::var("LIVETALK_LONG_RUN_BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(1336);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let models = LiveTalkEngine::fixture_models(&fixtures, [16, 16]).unwrap();
    // The fast mode: 0.5 s of audio context instead of 2.5 s (the audio features are the same
    // code; their accuracy is audio_stream.rs's subject, not this test's).
    let audio = AudioStreamConfig { context_frames: 8, ..Default::default() };
    let opts = LiveTalkOptions { seed: 7, audio, ..Default::default() };
    let mut engine = LiveTalkEngine::new(Arc::new(models), opts).unwrap();
    let samples: Vec<f32> = (0..(blocks + 1) * 12_000).map(voiced_sample).collect();

    let dir = std::env::temp_dir().join(format!("livetalk-long-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 15) as u8, (y * 15) as u8, 128])).save(dir.join("p.png")).unwrap();
    std::fs::write(dir.join("p.toml"), "name = \"p\"\nimage = \"p.png\"\n").unwrap();
    let persona = Persona::load(dir.join("p.toml")).unwrap();
    engine.prepare(&persona).unwrap();

    let ctx = engine.audio_context();
    let started = Instant::now();
    let mut early: Vec<(f32, f32)> = Vec::new(); // latent (std, max|x|) of blocks 3..30
    let mut early_pixels: Vec<(f64, f64)> = Vec::new();
    let mut worst_std_ratio = (f32::MAX, 0f32);
    let mut worst_max = 0f32;
    let mut last_rebases = 0;
    let mut positions_seen = (usize::MAX, 0usize);
    let mut frame_10: Option<VideoFrame> = None;
    let mut frame_4000: Option<VideoFrame> = None;
    for block in 0..blocks {
        let window = AudioWindow::for_block(block, 12, 16, ctx, |r| samples[r.start as usize..(r.end as usize).min(samples.len())].to_vec());
        let position = engine.stream_stats().unwrap().next_position;
        let frames = engine.render(&window).unwrap_or_else(|e| panic!("block {block}: {e}"));
        assert_eq!(frames.len(), 12);
        let s = engine.stream_stats().unwrap();
        // every latent finite, statistics bounded
        assert!(s.latent_mean.is_finite() && s.latent_std.is_finite() && s.latent_max_abs.is_finite(), "block {block}: {s:?}");
        // positions inside the reference's table, cache indices in range
        let used = if s.rebases > last_rebases { s.next_position - 3 } else { position };
        positions_seen = (positions_seen.0.min(used), positions_seen.1.max(used + 2));
        assert!(used + 3 <= 1024, "block {block} at position {used}");
        assert!(s.cache_local_end <= s.cache_capacity, "block {block}: {s:?}");
        assert_eq!(s.cache_global_end, s.next_position, "block {block}: cache end {s:?}");
        if block >= 4 {
            assert_eq!(s.cache_local_end, s.cache_capacity, "block {block}: a full window");
        }
        if s.rebases > last_rebases {
            assert_eq!(position, 1023, "re-based at {position}");
            assert_eq!(s.next_position, 516);
            last_rebases = s.rebases;
        }
        if (3..30).contains(&block) {
            early.push((s.latent_std, s.latent_max_abs));
            early_pixels.extend(frames.iter().map(pixel_stats));
        } else if block >= 30 {
            let std0 = early.iter().map(|e| e.0).sum::<f32>() / early.len() as f32;
            let r = s.latent_std / std0;
            worst_std_ratio = (worst_std_ratio.0.min(r), worst_std_ratio.1.max(r));
            worst_max = worst_max.max(s.latent_max_abs);
        }
        // stream frame 12b+i shows latent frame (12b+i-3+3)/4 ≈ b*3 + i/4
        if block == 20 {
            println!("block 20: audio {:?}, generate {:?}, decode {:?}", s.audio_time, s.generate_time, s.decode_time);
        }
        if block == 3 {
            frame_10 = Some(frames[7].clone()); // latent frame 10
        }
        if block == 1333 {
            frame_4000 = Some(frames[7].clone()); // latent frame 4000
        }
    }
    let elapsed = started.elapsed();
    let s = engine.stream_stats().unwrap();
    let early_max = early.iter().map(|e| e.1).fold(0f32, f32::max);
    println!(
        "long run: {} latent frames ({} blocks, {:.1} min of stream) in {:?}; {} re-bases; positions used {}..={}; latent std ratio to blocks 3..30: {:.3}..{:.3}; max |latent| {:.3} (early {:.3}); cache {}/{} tokens",
        s.latent_frames,
        blocks,
        blocks as f64 * 0.75 / 60.0,
        elapsed,
        s.rebases,
        positions_seen.0,
        positions_seen.1,
        worst_std_ratio.0,
        worst_std_ratio.1,
        worst_max,
        early_max,
        s.cache_local_end,
        s.cache_capacity
    );
    assert_eq!(s.latent_frames, 3 * blocks);
    if blocks >= 1336 {
        assert!(s.latent_frames >= 4000);
        assert_eq!(s.rebases, (s.latent_frames - 1023).div_ceil(510));
        // bounded statistics: the spread of the latents stays within a factor 1.5 of the start
        assert!(worst_std_ratio.0 > 0.67 && worst_std_ratio.1 < 1.5, "latent std drifted: {worst_std_ratio:?}");
        assert!(worst_max < 2.0 * early_max, "latent magnitude grew: {worst_max} vs {early_max}");
        // the frame at latent frame 4000 is as well-formed as the one at frame 10
        let (f10, f4000) = (frame_10.unwrap(), frame_4000.unwrap());
        assert_eq!((f10.width, f10.height, f10.format), (f4000.width, f4000.height, f4000.format));
        let (m10, s10) = pixel_stats(&f10);
        let (m4000, s4000) = pixel_stats(&f4000);
        let mean_px = early_pixels.iter().map(|p| p.0).sum::<f64>() / early_pixels.len() as f64;
        let std_px = early_pixels.iter().map(|p| p.1).sum::<f64>() / early_pixels.len() as f64;
        println!("pixels: frame 10 mean {m10:.1} std {s10:.1}; frame 4000 mean {m4000:.1} std {s4000:.1}; blocks 3..30 mean {mean_px:.1} std {std_px:.1}");
        assert!((m4000 - mean_px).abs() < 40.0, "frame 4000 mean {m4000} vs {mean_px}");
        assert!(s4000 > 0.5 * std_px && s4000 < 2.0 * std_px, "frame 4000 contrast {s4000} vs {std_px}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
