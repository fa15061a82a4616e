//! Voice activity detection for live inputs (microphone, stdin): energy against a tracked noise
//! floor plus the zero-crossing rate, in 10 ms frames at 16 kHz, with a hangover.
//!
//! It feeds the idle decisions: [`NoiseGate`] lets voice through and turns everything else
//! (room noise, fan hiss, keyboard clatter below the voice) into silence, so the avatar idles
//! instead of mumbling along with the noise, and the virtual microphone carries silence too.
//!
//! Decisions: the noise floor follows the quietest frames at once and rises slowly (10 dB/s), so
//! pauses between words keep it honest during long speech; a frame is voice when it is well
//! above both the floor and an absolute minimum, unless it is quiet and hiss-like (a high
//! zero-crossing rate without much energy is noise, not a fricative of loud speech). The frame
//! that crosses decides for itself, so the gate adds no delay beyond the 10 ms framing.

/// Frame length at 16 kHz: 10 ms.
pub const FRAME: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Never voice below this level, dBFS.
    pub min_db: f32,
    /// Voice must be this far above the noise floor, dB.
    pub margin_db: f32,
    /// Zero crossings per sample above which quiet frames count as hiss.
    pub hiss_zcr: f32,
    /// Above this level a frame is voice whatever its zero-crossing rate, dBFS.
    pub loud_db: f32,
    /// Frames that stay "voice" after the last voiced one (30 = 300 ms).
    pub hangover_frames: u32,
    /// Noise floor rise per frame, dB.
    pub floor_rise_db: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            min_db: -50.0,
            margin_db: 12.0,
            hiss_zcr: 0.35,
            loud_db: -26.0,
            hangover_frames: 30,
            floor_rise_db: 0.1,
        }
    }
}

/// Frame-by-frame voice activity.
#[derive(Debug, Clone)]
pub struct Vad {
    config: VadConfig,
    floor_db: f32,
    hang: u32,
}

impl Default for Vad {
    fn default() -> Self {
        Vad::new(VadConfig::default())
    }
}

impl Vad {
    pub fn new(config: VadConfig) -> Self {
        Vad { config, floor_db: -70.0, hang: 0 }
    }

    /// The tracked noise floor, dBFS.
    pub fn noise_floor_db(&self) -> f32 {
        self.floor_db
    }

    /// Whether this frame (any length, best [`FRAME`]) is voice, hangover included.
    pub fn is_voice(&mut self, frame: &[f32]) -> bool {
        if frame.is_empty() {
            return self.hang > 0;
        }
        let energy = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
        let level_db = 10.0 * energy.max(1e-12).log10();
        let crossings = frame.windows(2).filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0)).count();
        let zcr = crossings as f32 / frame.len() as f32;
        let c = self.config;
        let loud_enough = level_db > c.min_db && level_db > self.floor_db + c.margin_db;
        let hiss = zcr > c.hiss_zcr && level_db < c.loud_db;
        let voiced = loud_enough && !hiss;
        // Minimum tracking: fall at once, rise slowly.
        self.floor_db = if level_db < self.floor_db { level_db.max(-100.0) } else { self.floor_db + c.floor_rise_db };
        if voiced {
            self.hang = c.hangover_frames;
            true
        } else if self.hang > 0 {
            self.hang -= 1;
            true
        } else {
            false
        }
    }
}

/// Lets voice through and replaces the rest by silence (16 kHz mono, any piece sizes), with
/// 5 ms ramps so the cuts do not click.
#[derive(Debug, Clone, Default)]
pub struct NoiseGate {
    vad: Vad,
    pending: Vec<f32>,
    gain: f32,
    open: bool,
}

impl NoiseGate {
    pub fn new(config: VadConfig) -> Self {
        NoiseGate { vad: Vad::new(config), ..Default::default() }
    }

    /// Whether the last whole frame was voice.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Gates whole 10 ms frames; a partial frame waits for the next piece.
    pub fn push(&mut self, samples: &[f32]) -> Vec<f32> {
        self.pending.extend_from_slice(samples);
        let whole = self.pending.len() / FRAME * FRAME;
        let mut out: Vec<f32> = self.pending.drain(..whole).collect();
        const STEP: f32 = 1.0 / 80.0;
        for frame in out.chunks_mut(FRAME) {
            self.open = self.vad.is_voice(frame);
            let target = if self.open { 1.0 } else { 0.0 };
            for s in frame {
                self.gain = if self.gain < target { (self.gain + STEP).min(target) } else { (self.gain - STEP).max(target) };
                *s *= self.gain;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, amplitude: f32, seed: &mut u32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .map(|x| x * amplitude)
            .collect()
    }

    fn vowel(n: usize, amplitude: f32) -> Vec<f32> {
        // A 150 Hz voice with a few harmonics, like a sustained vowel.
        (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                (1..5).map(|h| (2.0 * std::f32::consts::PI * 150.0 * h as f32 * t).sin() / h as f32).sum::<f32>()
                    * amplitude
            })
            .collect()
    }

    #[test]
    fn voice_over_room_noise_opens_the_gate_and_noise_alone_does_not() {
        let mut seed = 1;
        let mut gate = NoiseGate::default();
        // 1 s of hiss at about -45 dBFS: silence comes out.
        let hiss = gate.push(&noise(16_000, 0.01, &mut seed));
        assert!(hiss[4_000..].iter().all(|&s| s == 0.0), "noise passed the gate");
        assert!(!gate.is_open());
        // Voice over the same hiss: it passes from its first frame (but for the ramp).
        let mut speech = vowel(8_000, 0.2);
        for (s, n) in speech.iter_mut().zip(noise(8_000, 0.01, &mut seed)) {
            *s += n;
        }
        let out = gate.push(&speech);
        assert!(gate.is_open());
        assert!((out[200] - speech[200]).abs() < 1e-6, "the first voiced frame is delayed");
        // After the voice stops, the hangover holds 300 ms, then silence.
        let tail = gate.push(&noise(16_000, 0.01, &mut seed));
        assert!(tail[..4_000].iter().any(|&s| s != 0.0));
        assert!(tail[6_000..].iter().all(|&s| s == 0.0));
    }

    #[test]
    fn quiet_frames_are_not_voice_whatever_the_floor() {
        let mut vad = Vad::default();
        assert!(!vad.is_voice(&vec![0.0; FRAME]));
        assert!(!vad.is_voice(&vowel(FRAME, 0.001)), "-60 dBFS is below min_db");
        assert!(vad.is_voice(&vowel(FRAME, 0.3)));
    }
}
