//! Sample-rate conversion with rubato's synchronous FFT resampler (band-limited, exact delay, so speech keeps its
//! formants, which both wav2vec2 and the CPU avatar's viseme analysis look at).

use rubato::{FftFixedIn, Resampler};

use crate::{AudioError, Waveform};

pub fn to_rate(wave: &Waveform, rate: u32) -> Result<Waveform, AudioError> {
    if wave.sample_rate == rate {
        return Ok(wave.clone());
    }
    let err = |reason: String| AudioError::Resample { from: wave.sample_rate, to: rate, reason };
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

#[cfg(test)]
mod tests {
    use super::*;

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
