//! Sample-rate conversion with rubato's synchronous FFT resampler (band-limited, exact delay, so speech keeps its
//! formants, which both wav2vec2 and the CPU avatar's viseme analysis look at).

use rubato::{FftFixedIn, Resampler};

use crate::{AudioError, Waveform};

pub fn to_rate(wave: &Waveform, rate: u32) -> Result<Waveform, AudioError> {
    if wave.sample_rate == rate {
        return Ok(wave.clone());
    }
    let err = |reason: String| AudioError::Resample { from: wave.sample_rate, to: rate, reason };
    // Far beyond full scale the FFT overflows: NaN comes out, or rubato panics (found by fuzzing).
    if let Some(i) = wave.samples.iter().position(|s| !s.is_finite() || s.abs() > 1e6) {
        return Err(err(format!("sample {i} is {:e}, not audio (full scale is ±1)", wave.samples[i])));
    }
    let chunk = 1024;
    let ratio = rate as f64 / wave.sample_rate as f64;
    let mut rs = FftFixedIn::<f32>::new(wave.sample_rate as usize, rate as usize, chunk, 2, 1)
        .map_err(|e| err(e.to_string()))?;
    let delay = rs.output_delay();
    let expected = (wave.samples.len() as f64 * ratio).round() as usize;
    let mut out = Vec::with_capacity(expected + delay + chunk);
    let mut pos = 0;
    // Feed whole chunks, then zero-padded chunks until the delayed tail is out.
    while out.len() < expected + delay {
        let end = (pos + chunk).min(wave.samples.len());
        let mut block = vec![0.0f32; chunk];
        if pos < end {
            block[..end - pos].copy_from_slice(&wave.samples[pos..end]);
        }
        pos += chunk;
        let res = rs.process(&[block], None).map_err(|e| err(e.to_string()))?;
        out.extend_from_slice(&res[0]);
    }
    let samples = out[delay..delay + expected].to_vec();
    Ok(Waveform { sample_rate: rate, samples })
}

/// Resamples a live mono stream piece by piece (microphone, stdin) with a 10 ms block, so it
/// adds little latency; the resampler's own delay is dropped from the start of the output.
pub struct StreamResampler {
    from: u32,
    to: u32,
    inner: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
    skip: usize,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        let inner = if from == to {
            None
        } else {
            let block = (from as usize / 100).max(16);
            let rs = FftFixedIn::<f32>::new(from as usize, to as usize, block, 1, 1)
                .map_err(|e| AudioError::Resample { from, to, reason: e.to_string() })?;
            Some(rs)
        };
        let skip = inner.as_ref().map_or(0, |rs| rs.output_delay());
        Ok(StreamResampler { from, to, inner, pending: Vec::new(), skip })
    }

    pub fn input_rate(&self) -> u32 {
        self.from
    }

    /// Takes samples at the input rate; returns what is ready at the output rate.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<f32>, AudioError> {
        let Some(rs) = self.inner.as_mut() else { return Ok(samples.to_vec()) };
        self.pending.extend_from_slice(samples);
        let mut out = Vec::new();
        loop {
            let need = rs.input_frames_next();
            if self.pending.len() < need {
                break;
            }
            let block: Vec<f32> = self.pending.drain(..need).collect();
            let res = rs
                .process(&[block], None)
                .map_err(|e| AudioError::Resample { from: self.from, to: self.to, reason: e.to_string() })?;
            let produced = &res[0];
            let dropped = self.skip.min(produced.len());
            self.skip -= dropped;
            out.extend_from_slice(&produced[dropped..]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_far_beyond_full_scale_are_refused_not_turned_into_nan() {
        let wave = Waveform { sample_rate: 48_000, samples: vec![0.5, -4.2e37, 3.0e38, 2.0] };
        let message = to_rate(&wave, 16_000).unwrap_err().to_string();
        assert!(message.contains("sample 1 is -4.2e37"), "{message}");
    }

    #[test]
    fn stream_resampler_matches_the_whole_clip_resampler() {
        let tone: Vec<f32> = (0..48_000).map(|i| (i as f32 * 0.02).sin() * 0.5).collect();
        let mut rs = StreamResampler::new(48_000, 16_000).unwrap();
        let mut out = Vec::new();
        for piece in tone.chunks(333) {
            out.extend(rs.push(piece).unwrap());
        }
        let whole = to_rate(&Waveform { sample_rate: 48_000, samples: tone }, 16_000).unwrap();
        // Everything but the last block is out, aligned with the whole-clip result (same delay).
        assert!(out.len() > 15_600 && out.len() <= 16_000, "{}", out.len());
        let err = (200..out.len() - 200).map(|i| (out[i] - whole.samples[i]).abs()).fold(0.0f32, f32::max);
        assert!(err < 0.02, "max error {err}");
        let mut same = StreamResampler::new(16_000, 16_000).unwrap();
        assert_eq!(same.push(&[0.5, 0.25]).unwrap(), vec![0.5, 0.25]);
    }

    #[test]
    fn keeps_length_and_tone() {
        let n = 22_050;
        let f = 440.0;
        let samples: Vec<f32> =
            (0..n).map(|i| (2.0 * std::f32::consts::PI * f * i as f32 / 22_050.0).sin() * 0.5).collect();
        let out = to_rate(&Waveform { sample_rate: 22_050, samples }, 16_000).unwrap();
        assert_eq!(out.samples.len(), 16_000);
        // Compare against the ideal tone away from the edges: the phase must line up (delay removed).
        let err = (1000..15_000)
            .map(|i| (out.samples[i] - (2.0 * std::f32::consts::PI * f * i as f32 / 16_000.0).sin() * 0.5).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.01, "max error {err}");
    }
}
