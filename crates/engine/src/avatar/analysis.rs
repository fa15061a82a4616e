//! Per-frame voice analysis of 16 kHz mono audio: loudness → mouth openness (noise gate, fast
//! attack, slower release), spectral shape → mouth shape, and voice activity with hangover.
//!
//! Spectral shape uses the signal's RMS frequency, `fs/π · asin(√(E[Δx²]/E[x²]) / 2)`: the
//! power-weighted frequency of the window (exact for a pure tone). Rounded vowels (o, u) keep
//! their energy below about 800 Hz; open vowels (a, e) have a high first/second formant; hissing
//! consonants (s, f) sit far above both.

use std::time::Duration;

/// Sample rate the analysis expects.
pub const SAMPLE_RATE: f32 = 16_000.0;

/// The mouth's shape class for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MouthShape {
    Closed,
    /// Slightly open, or teeth together on hissing sounds.
    Half,
    /// Wide open (a, e).
    Open,
    /// Lips pushed into an "o" (o, u).
    Rounded,
}

/// The analysis of one video frame's audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoiceFrame {
    /// RMS level of the window, dBFS.
    pub level_db: f32,
    /// Smoothed mouth openness in 0..=1.
    pub openness: f32,
    pub shape: MouthShape,
    /// Voice activity, held for a short hangover after the voice stops.
    pub speaking: bool,
    /// Smoothed RMS frequency of voiced frames, Hz.
    pub rms_frequency_hz: f32,
}

/// Tuning of the analysis (defaults suit speech at normal microphone and TTS levels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalysisConfig {
    /// Below this RMS level the window counts as silence.
    pub gate_db: f32,
    /// At this level the mouth is fully open.
    pub full_db: f32,
    pub attack: Duration,
    pub release: Duration,
    /// How long "speaking" lasts after the last voiced frame.
    pub hangover: Duration,
    /// Below this RMS frequency voiced frames are rounded.
    pub rounded_below_hz: f32,
    /// Above this RMS frequency (hiss) the mouth is half open with teeth together.
    pub hiss_above_hz: f32,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            gate_db: -48.0,
            full_db: -14.0,
            attack: Duration::from_millis(25),
            release: Duration::from_millis(90),
            hangover: Duration::from_millis(350),
            rounded_below_hz: 760.0,
            hiss_above_hz: 2800.0,
        }
    }
}

/// Openness below which the mouth counts as closed, and the band between half and open.
const CLOSED_BELOW: f32 = 0.06;
const OPEN_ABOVE: f32 = 0.38;
const HALF_BELOW: f32 = 0.30;
/// Hysteresis around `rounded_below_hz`, as a ratio.
const ROUNDED_HYSTERESIS: f32 = 1.08;

/// Stateful analyser: call [`VoiceAnalyzer::analyze`] once per video frame, in time order.
#[derive(Debug, Clone)]
pub struct VoiceAnalyzer {
    config: AnalysisConfig,
    openness: f32,
    rms_frequency_hz: f32,
    shape: MouthShape,
    last_voiced: Option<f64>,
    last_t: Option<f64>,
}

impl Default for VoiceAnalyzer {
    fn default() -> Self {
        Self::new(AnalysisConfig::default())
    }
}

impl VoiceAnalyzer {
    pub fn new(config: AnalysisConfig) -> Self {
        Self { config, openness: 0.0, rms_frequency_hz: 1000.0, shape: MouthShape::Closed, last_voiced: None, last_t: None }
    }

    /// Analyses the samples around the frame at `t` (any length; empty means silence).
    pub fn analyze(&mut self, samples: &[f32], t: Duration) -> VoiceFrame {
        let now = t.as_secs_f64();
        // A first frame or a jump in time (seek, restart) starts from the new value directly.
        let dt = match self.last_t {
            Some(prev) if now > prev && now - prev < 0.5 => (now - prev) as f32,
            _ => f32::INFINITY,
        };
        self.last_t = Some(now);

        let (level_db, rms_frequency) = level_and_rms_frequency(samples);
        let cfg = self.config;
        let target = ((level_db - cfg.gate_db) / (cfg.full_db - cfg.gate_db)).clamp(0.0, 1.0);
        let tau = if target > self.openness { cfg.attack } else { cfg.release };
        self.openness += (target - self.openness) * smoothing(dt, tau);

        let voiced = level_db > cfg.gate_db + 3.0;
        if voiced {
            self.last_voiced = Some(now);
            // Smooth in the log domain so a single noisy window does not flip the shape.
            let log = self.rms_frequency_hz.ln();
            let next = log + (rms_frequency.max(50.0).ln() - log) * smoothing(dt, Duration::from_millis(40));
            self.rms_frequency_hz = next.exp();
        }
        let speaking = self.last_voiced.is_some_and(|at| now - at <= cfg.hangover.as_secs_f64());
        self.shape = self.classify();
        VoiceFrame { level_db, openness: self.openness, shape: self.shape, speaking, rms_frequency_hz: self.rms_frequency_hz }
    }

    fn classify(&self) -> MouthShape {
        let cfg = &self.config;
        let open = self.openness;
        if open < CLOSED_BELOW {
            return MouthShape::Closed;
        }
        let hz = self.rms_frequency_hz;
        if hz > cfg.hiss_above_hz {
            return MouthShape::Half;
        }
        let rounded_limit = if self.shape == MouthShape::Rounded {
            cfg.rounded_below_hz * ROUNDED_HYSTERESIS
        } else {
            cfg.rounded_below_hz / ROUNDED_HYSTERESIS
        };
        if hz < rounded_limit {
            return MouthShape::Rounded;
        }
        match self.shape {
            MouthShape::Open if open > HALF_BELOW => MouthShape::Open,
            _ if open > OPEN_ABOVE => MouthShape::Open,
            _ => MouthShape::Half,
        }
    }
}

/// Fraction of the way to move towards a target after `dt` seconds with time constant `tau`.
pub(crate) fn smoothing(dt: f32, tau: Duration) -> f32 {
    if !dt.is_finite() {
        return 1.0;
    }
    1.0 - (-dt / tau.as_secs_f32().max(1e-4)).exp()
}

/// RMS level in dBFS (DC removed) and RMS frequency in Hz of a window.
pub fn level_and_rms_frequency(samples: &[f32]) -> (f32, f32) {
    if samples.len() < 2 {
        return (-120.0, 0.0);
    }
    let n = samples.len() as f64;
    let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / n;
    let power = samples.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / n;
    let diff_power =
        samples.windows(2).map(|w| (w[1] as f64 - w[0] as f64).powi(2)).sum::<f64>() / (n - 1.0);
    let level_db = (10.0 * (power + 1e-12).log10()) as f32;
    let ratio = if power > 1e-12 { (diff_power / power).sqrt() / 2.0 } else { 0.0 };
    let rms_frequency = (SAMPLE_RATE as f64 / std::f64::consts::PI) * ratio.min(1.0).asin();
    (level_db, rms_frequency as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, amplitude: f32, n: usize) -> Vec<f32> {
        (0..n).map(|i| amplitude * (std::f32::consts::TAU * hz * i as f32 / SAMPLE_RATE).sin()).collect()
    }

    #[test]
    fn rms_frequency_of_a_tone_is_its_frequency() {
        for hz in [300.0, 1000.0, 3000.0] {
            let (_, f) = level_and_rms_frequency(&tone(hz, 0.5, 1600));
            assert!((f - hz).abs() < hz * 0.03, "{hz} → {f}");
        }
    }

    #[test]
    fn level_of_a_full_scale_sine_is_minus_3_db() {
        let (db, _) = level_and_rms_frequency(&tone(440.0, 1.0, 1600));
        assert!((db + 3.01).abs() < 0.1, "{db}");
        assert_eq!(level_and_rms_frequency(&[]).0, -120.0);
    }

    #[test]
    fn attack_is_faster_than_release_and_speech_hangs_over() {
        let mut a = VoiceAnalyzer::default();
        let frame = |i: u32| Duration::from_millis(40 * i as u64);
        a.analyze(&vec![0.0; 640], frame(0));
        let up = a.analyze(&tone(1000.0, 0.3, 640), frame(1)).openness;
        let mut b = VoiceAnalyzer::default();
        b.analyze(&tone(1000.0, 0.3, 640), frame(0));
        let v = b.analyze(&vec![0.0; 640], frame(1));
        assert!(up > 0.7, "attack reached {up}");
        assert!(1.0 - v.openness < up, "release fell to {}", v.openness);
        assert!(v.speaking, "hangover keeps speaking");
        let later = b.analyze(&vec![0.0; 640], frame(20));
        assert!(!later.speaking && later.shape == MouthShape::Closed);
    }
}
