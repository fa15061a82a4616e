//! Life in the avatar: blinks, breathing, head sway, glances and mouth shapes, all deterministic
//! for a seed and a sequence of frame times.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::analysis::{smoothing, MouthShape, VoiceFrame};
use super::features::{EyePose, MouthPose};

/// Blink length and the part of it spent closing.
const BLINK_SECONDS: f64 = 0.15;
const BLINK_CLOSING_SECONDS: f64 = 0.06;
/// Seconds between blinks.
const BLINK_INTERVAL: (f64, f64) = (2.0, 6.0);
/// Chance that a blink is followed by a second one.
const DOUBLE_BLINK_CHANCE: f64 = 0.15;
/// Relaxed lids cover the top of the iris a little.
const RESTING_CLOSURE: f32 = 0.1;
const BREATH_SECONDS: f32 = 4.6;

/// Everything that moves in one frame. Offsets are in design units (see `layout`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub head: (f32, f32),
    pub body_dy: f32,
    pub eyes: EyePose,
    pub mouth: MouthPose,
}

#[derive(Debug, Clone)]
pub(crate) struct Animator {
    seed: u64,
    rng: ChaCha8Rng,
    last_t: Option<f64>,
    next_blink: f64,
    blink_started: Option<f64>,
    double_blink: Option<f64>,
    next_glance: f64,
    glance_until: f64,
    glance_target: (f32, f32),
    gaze: (f32, f32),
    /// 0 = silent for a while, 1 = talking (smoothed voice activity).
    activity: f32,
    silent_since: Option<f64>,
    mouth: MouthPose,
    brow_lift: f32,
}

impl Animator {
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let next_blink = rng.gen_range(0.8..BLINK_INTERVAL.1 * 0.6);
        let next_glance = rng.gen_range(2.0..5.0);
        Self {
            seed,
            rng,
            last_t: None,
            next_blink,
            blink_started: None,
            double_blink: None,
            next_glance,
            glance_until: 0.0,
            glance_target: (0.0, 0.0),
            gaze: (0.0, 0.0),
            activity: 0.0,
            silent_since: Some(0.0),
            mouth: MouthPose::RESTING,
            brow_lift: 0.0,
        }
    }

    pub fn update(&mut self, t: Duration, voice: &VoiceFrame) -> Pose {
        let now = t.as_secs_f64();
        if self.last_t.is_some_and(|prev| now < prev) {
            // Time went backwards (a restart): replay from the seed for a deterministic result.
            *self = Animator::new(self.seed);
        }
        let dt = match self.last_t {
            Some(prev) => (now - prev) as f32,
            None => f32::INFINITY,
        };
        self.last_t = Some(now);
        let tf = now as f32;

        let talking = if voice.speaking { 1.0 } else { 0.0 };
        self.activity += (talking - self.activity) * smoothing(dt, Duration::from_millis(600));
        if voice.speaking {
            self.silent_since = None;
        } else if self.silent_since.is_none() {
            self.silent_since = Some(now);
        }

        let breath = (std::f32::consts::TAU * tf / BREATH_SECONDS).sin();
        let sway = 3.5 + 4.5 * self.activity;
        let head_x = sway * (0.7 * self.noise(1, tf * 0.23) + 0.3 * self.noise(2, tf * 0.71));
        let nod = 2.5 + 3.0 * self.activity;
        let head_y = 1.8 * breath + nod * (0.6 * self.noise(3, tf * 0.31) + 0.4 * self.noise(4, tf * 0.93))
            - 2.0 * voice.openness * self.activity;

        let eyes = EyePose { closure: self.blink_closure(now), gaze: self.gaze(now, dt), brow_lift: self.brows(voice, dt) };
        Pose { head: (head_x, head_y), body_dy: 2.2 * breath, eyes, mouth: self.mouth_pose(voice, dt) }
    }

    fn blink_closure(&mut self, now: f64) -> f32 {
        if let Some(at) = self.double_blink {
            if now >= at {
                self.blink_started = Some(at);
                self.double_blink = None;
            }
        }
        while now >= self.next_blink {
            self.blink_started = Some(self.next_blink);
            if self.rng.gen_bool(DOUBLE_BLINK_CHANCE) {
                self.double_blink = Some(self.next_blink + BLINK_SECONDS + 0.1);
            }
            self.next_blink += self.rng.gen_range(BLINK_INTERVAL.0..BLINK_INTERVAL.1);
        }
        let lid = match self.blink_started {
            Some(start) if now - start < BLINK_SECONDS => {
                let s = now - start;
                if s < BLINK_CLOSING_SECONDS {
                    s / BLINK_CLOSING_SECONDS
                } else {
                    1.0 - (s - BLINK_CLOSING_SECONDS) / (BLINK_SECONDS - BLINK_CLOSING_SECONDS)
                }
            }
            _ => 0.0,
        } as f32;
        RESTING_CLOSURE + (1.0 - RESTING_CLOSURE) * ease(lid)
    }

    /// Looks at the camera while talking; glances away now and then when quiet.
    fn gaze(&mut self, now: f64, dt: f32) -> (f32, f32) {
        let quiet_for = self.silent_since.map_or(0.0, |since| now - since);
        if now >= self.next_glance {
            if quiet_for > 1.5 {
                self.glance_target = (self.rng.gen_range(-0.9..0.9), self.rng.gen_range(-0.5..0.35));
                self.glance_until = now + self.rng.gen_range(0.6..1.6);
            }
            self.next_glance = now + self.rng.gen_range(2.5..7.0);
        }
        let target = if now < self.glance_until && quiet_for > 0.0 { self.glance_target } else { (0.0, 0.0) };
        // Eyes jump quickly (saccades).
        let k = smoothing(dt, Duration::from_millis(35));
        self.gaze.0 += (target.0 - self.gaze.0) * k;
        self.gaze.1 += (target.1 - self.gaze.1) * k;
        self.gaze
    }

    fn brows(&mut self, voice: &VoiceFrame, dt: f32) -> f32 {
        let target = ((voice.openness - 0.55) * 2.0).clamp(0.0, 1.0) * self.activity;
        self.brow_lift += (target - self.brow_lift) * smoothing(dt, Duration::from_millis(180));
        self.brow_lift
    }

    fn mouth_pose(&mut self, voice: &VoiceFrame, dt: f32) -> MouthPose {
        let (width, smile, roundness) = match voice.shape {
            MouthShape::Closed => (1.0, 1.0, 0.0),
            MouthShape::Half => (0.96, 0.55, 0.1),
            MouthShape::Open => (1.0, 0.35, 0.0),
            MouthShape::Rounded => (0.62, 0.0, 1.0),
        };
        let k = smoothing(dt, Duration::from_millis(55));
        let m = &mut self.mouth;
        m.width += (width - m.width) * k;
        m.smile += (smile - m.smile) * k;
        m.roundness += (roundness - m.roundness) * k;
        m.openness = voice.openness;
        *m
    }

    /// Smooth value noise in -1..1, one stream per `channel`.
    fn noise(&self, channel: u64, x: f32) -> f32 {
        let cell = x.floor();
        let frac = x - cell;
        let at = |i: i64| lattice(self.seed ^ channel.wrapping_mul(0x9e37_79b9_7f4a_7c15), i);
        let (a, b) = (at(cell as i64), at(cell as i64 + 1));
        a + (b - a) * ease(frac)
    }
}

fn ease(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// A hashed value in -1..1 for an integer lattice point (splitmix64).
fn lattice(seed: u64, i: i64) -> f32 {
    let mut z = seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence() -> VoiceFrame {
        VoiceFrame { level_db: -120.0, openness: 0.0, shape: MouthShape::Closed, speaking: false, rms_frequency_hz: 0.0 }
    }

    #[test]
    fn blinks_come_every_two_to_six_seconds() {
        let mut a = Animator::new(7);
        let mut starts = Vec::new();
        let mut was_closed = false;
        for i in 0..(60 * 100) {
            let closure = a.update(Duration::from_millis(10 * i), &silence()).eyes.closure;
            let closed = closure > 0.8;
            if closed && !was_closed {
                starts.push(i as f64 * 0.01);
            }
            was_closed = closed;
        }
        assert!(starts.len() >= 10, "{starts:?}");
        let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g > 0.2 && g < 6.2), "{gaps:?}");
    }

    #[test]
    fn noise_stays_in_range_and_is_continuous() {
        let a = Animator::new(3);
        let mut prev = a.noise(1, 0.0);
        for i in 1..5000 {
            let v = a.noise(1, i as f32 * 0.01);
            assert!((-1.0..=1.0).contains(&v));
            assert!((v - prev).abs() < 0.05);
            prev = v;
        }
    }
}
