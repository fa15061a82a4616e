//! Speed of the CPU avatar on the calling thread (one core), with speech-like audio, plus the
//! synthetic speech signal that the benchmark, the examples and the tests share.

use std::time::{Duration, Instant};

use livetalk_core::look::AvatarLook;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{AvatarError, CpuAvatar, SAMPLE_RATE};

/// Video frame rate the benchmark's timeline advances at.
pub const BENCH_TIMELINE_FPS: f64 = 30.0;

#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    /// Frames per second of rendering alone (1000 / mean ms).
    pub fps: f64,
    pub ms_mean: f64,
    pub ms_p50: f64,
    pub ms_p95: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cpu avatar {}x{}: {:.0} fps on one core ({} frames; ms/frame mean {:.2}, p50 {:.2}, p95 {:.2})",
            self.width, self.height, self.fps, self.frames, self.ms_mean, self.ms_p50, self.ms_p95
        )
    }
}

/// Renders `frames` frames of the default look driven by synthetic speech and times each one.
pub fn bench_cpu_avatar(width: u32, height: u32, frames: usize) -> Result<BenchReport, AvatarError> {
    let mut avatar = CpuAvatar::new(&AvatarLook::default(), width, height, 1)?;
    let frames = frames.max(1);
    let seconds = frames as f64 / BENCH_TIMELINE_FPS + 1.0;
    let audio = synthetic_speech(seconds, 11);
    let mut out = vec![0u8; width as usize * height as usize * 4];
    let mut times = Vec::with_capacity(frames);
    for i in 0..frames {
        let t = Duration::from_secs_f64(i as f64 / BENCH_TIMELINE_FPS);
        let window = frame_window(&audio, t, BENCH_TIMELINE_FPS);
        let start = Instant::now();
        avatar.render_frame(window, t, &mut out)?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let ms_mean = times.iter().sum::<f64>() / frames as f64;
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((frames - 1) as f64 * q).round() as usize];
    Ok(BenchReport { width, height, frames, fps: 1000.0 / ms_mean, ms_mean, ms_p50: pick(0.5), ms_p95: pick(0.95) })
}

/// The samples of one video frame at `fps` centred on `t` (clipped to the signal).
pub fn frame_window(audio: &[f32], t: Duration, fps: f64) -> &[f32] {
    let centre = (t.as_secs_f64() * SAMPLE_RATE as f64) as usize;
    let half = (SAMPLE_RATE as f64 / fps / 2.0) as usize;
    let start = centre.saturating_sub(half).min(audio.len());
    let end = (centre + half).min(audio.len());
    &audio[start..end]
}

/// Speech-like audio at 16 kHz: syllables of voiced vowels (a glottal-pulse-like harmonic series
/// shaped by two formants, alternating open and rounded vowels) with pauses between phrases.
pub fn synthetic_speech(seconds: f64, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total = (seconds * SAMPLE_RATE as f64) as usize;
    let mut out = Vec::with_capacity(total);
    let mut phase = 0.0f64;
    while out.len() < total {
        // A phrase of 3..8 syllables, then a pause.
        for _ in 0..rng.gen_range(3..8) {
            let length = rng.gen_range(0.14..0.32);
            let (f1, f2) = [(750.0, 1300.0), (550.0, 1900.0), (420.0, 820.0), (330.0, 750.0), (650.0, 1100.0)]
                [rng.gen_range(0..5)];
            let f0 = rng.gen_range(110.0..210.0);
            let loudness = rng.gen_range(0.08..0.3);
            syllable(&mut out, &mut phase, length, f0, (f1, f2), loudness);
            let gap = (rng.gen_range(0.02..0.08) * SAMPLE_RATE as f64) as usize;
            out.extend(std::iter::repeat_n(0.0, gap));
        }
        let pause = (rng.gen_range(0.25..0.8) * SAMPLE_RATE as f64) as usize;
        out.extend(std::iter::repeat_n(0.0, pause));
    }
    out.truncate(total);
    out
}

/// One vowel: harmonics of `f0` weighted by two resonances, under a smooth rise-and-fall envelope.
pub fn syllable(out: &mut Vec<f32>, phase: &mut f64, seconds: f64, f0: f64, formants: (f64, f64), loudness: f64) {
    let n = (seconds * SAMPLE_RATE as f64) as usize;
    let harmonics: Vec<(f64, f64)> = (1..=(3800.0 / f0) as usize)
        .map(|k| {
            let f = f0 * k as f64;
            let resonance = |centre: f64, bandwidth: f64| 1.0 / (1.0 + ((f - centre) / bandwidth).powi(2));
            (k as f64, resonance(formants.0, 120.0) + 0.6 * resonance(formants.1, 160.0) + 0.01)
        })
        .collect();
    let norm: f64 = harmonics.iter().map(|(_, a)| a * a).sum::<f64>().sqrt();
    for i in 0..n {
        let envelope = (std::f64::consts::PI * i as f64 / n as f64).sin().powf(0.6);
        *phase += std::f64::consts::TAU * f0 / SAMPLE_RATE as f64;
        let s: f64 = harmonics.iter().map(|(k, a)| a * (k * *phase).sin()).sum();
        out.push((loudness * envelope * s / norm * std::f64::consts::SQRT_2) as f32);
    }
}
