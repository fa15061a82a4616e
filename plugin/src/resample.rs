//! OBS audio (any rate, planar f32) to what the engine takes: 16 kHz mono signed 16-bit
//! little-endian PCM (`audio/L16;rate=16000`). Each output sample is the mean of the input
//! samples it covers (a box filter against aliasing, enough to drive lip motion).

pub const ENGINE_RATE: u32 = 16_000;

#[derive(Debug)]
pub struct ToEngineRate {
    step: f64,
    position: f64,
    sum: f32,
    count: u32,
}

impl ToEngineRate {
    pub fn new(input_rate: u32) -> Self {
        ToEngineRate { step: ENGINE_RATE as f64 / input_rate.max(1) as f64, position: 0.0, sum: 0.0, count: 0 }
    }

    /// Mixes `channels` (planar, equal lengths) to mono and appends the 16 kHz samples to `out`.
    pub fn push(&mut self, channels: &[&[f32]], out: &mut Vec<i16>) {
        let frames = channels.iter().map(|c| c.len()).min().unwrap_or(0);
        let scale = 1.0 / channels.len().max(1) as f32;
        for i in 0..frames {
            self.sum += channels.iter().map(|c| c[i]).sum::<f32>() * scale;
            self.count += 1;
            self.position += self.step;
            while self.position >= 1.0 {
                self.position -= 1.0;
                let mean = self.sum / self.count.max(1) as f32;
                out.push((mean.clamp(-1.0, 1.0) * 32767.0).round() as i16);
                self.sum = 0.0;
                self.count = 0;
            }
        }
    }
}

/// Little-endian bytes of `samples` (the L16 body).
pub fn l16_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_at_48k_stereo_is_a_second_at_16k_mono() {
        let left = vec![0.5f32; 48_000];
        let right = vec![-0.25f32; 48_000];
        let mut resampler = ToEngineRate::new(48_000);
        let mut out = Vec::new();
        // In uneven pieces, as OBS delivers them.
        for range in [0..1000, 1000..1024, 1024..30_000, 30_000..48_000] {
            resampler.push(&[&left[range.clone()], &right[range]], &mut out);
        }
        assert_eq!(out.len(), 16_000);
        assert!(out.iter().all(|&s| s == (0.125f32 * 32767.0).round() as i16));
    }

    #[test]
    fn l16_is_little_endian() {
        assert_eq!(l16_bytes(&[1, -2]), vec![1, 0, 0xfe, 0xff]);
    }
}
