//! Bodies of `POST /v1/audio`: raw PCM (`audio/L16;rate=16000`, signed 16-bit little-endian
//! mono) or a WAV file (`audio/wav`: PCM 8/16/24/32-bit or float 32/64, any channel count
//! (mixed down), any rate from 8 to 192 kHz (resampled to 16 kHz)).

use livetalk_audio::{Waveform, ENGINE_RATE};

/// Largest audio body (bytes): 64 MiB, over half an hour of 16 kHz PCM.
pub const MAX_AUDIO_BODY: usize = 64 * 1024 * 1024;

/// Largest float sample magnitude taken (full scale is 1; louder is clipped audio, not noise).
pub const MAX_FLOAT_SAMPLE: f32 = 16.0;

/// Why an audio body was refused; the status code follows the kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioBodyError {
    /// The content type is not one the route takes (415).
    #[error("{0}")]
    Unsupported(String),
    /// The body does not hold what its content type says (400).
    #[error("{0}")]
    Bad(String),
}

/// What a content type announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Pcm16k,
    Wav,
}

const ACCEPTED: &str = "send audio/L16;rate=16000 (signed 16-bit little-endian mono PCM at 16 kHz) or audio/wav";

/// Reads a `Content-Type` header value.
pub fn audio_format(content_type: Option<&str>) -> Result<AudioFormat, AudioBodyError> {
    let Some(content_type) = content_type else {
        return Err(AudioBodyError::Unsupported(format!("no Content-Type header: {ACCEPTED}")));
    };
    let mut parts = content_type.split(';').map(str::trim);
    let essence = parts.next().unwrap_or("").to_ascii_lowercase();
    match essence.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Ok(AudioFormat::Wav),
        "audio/l16" => {
            let mut rate = None;
            for param in parts.filter(|p| !p.is_empty()) {
                let (key, value) = param.split_once('=').unwrap_or((param, ""));
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "rate" => rate = Some(value.to_string()),
                    "channels" if value == "1" => {}
                    "channels" => {
                        return Err(AudioBodyError::Unsupported(format!(
                            "audio/L16 with channels={value} is not taken: raw PCM must be mono; send a WAV file for other layouts"
                        )))
                    }
                    other => {
                        return Err(AudioBodyError::Unsupported(format!(
                            "unknown audio/L16 parameter `{other}`: {ACCEPTED}"
                        )))
                    }
                }
            }
            match rate.as_deref() {
                Some("16000") => Ok(AudioFormat::Pcm16k),
                Some(other) => Err(AudioBodyError::Unsupported(format!(
                    "audio/L16 at rate={other} is not taken: raw PCM must be 16000 Hz; send a WAV file for other rates"
                ))),
                None => Err(AudioBodyError::Unsupported(format!(
                    "audio/L16 needs rate=16000: {ACCEPTED}"
                ))),
            }
        }
        _ => Err(AudioBodyError::Unsupported(format!(
            "Content-Type `{content_type}` is not audio this route takes: {ACCEPTED}"
        ))),
    }
}

/// Decodes a body into 16 kHz mono samples.
pub fn decode(format: AudioFormat, body: &[u8]) -> Result<Vec<f32>, AudioBodyError> {
    if body.is_empty() {
        return Err(AudioBodyError::Bad("the request body is empty: no audio to push".into()));
    }
    match format {
        AudioFormat::Pcm16k => pcm_s16le(body),
        AudioFormat::Wav => {
            let wave = decode_wav(body)?;
            if wave.sample_rate == ENGINE_RATE {
                Ok(wave.samples)
            } else {
                wave.to_engine_rate()
                    .map(|w| w.samples)
                    .map_err(|e| AudioBodyError::Bad(e.to_string()))
            }
        }
    }
}

fn pcm_s16le(body: &[u8]) -> Result<Vec<f32>, AudioBodyError> {
    if !body.len().is_multiple_of(2) {
        return Err(AudioBodyError::Bad(format!(
            "the PCM body is {} bytes, not a whole number of 16-bit samples",
            body.len()
        )));
    }
    Ok(body
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect())
}

fn bad(message: impl Into<String>) -> AudioBodyError {
    AudioBodyError::Bad(message.into())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A WAV file in memory, mixed down to mono at its own rate.
pub fn decode_wav(bytes: &[u8]) -> Result<Waveform, AudioBodyError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("the body is not a WAV file (no RIFF/WAVE header)"));
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut data: Option<&[u8]> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4) as usize;
        let start = at + 8;
        // Streams written on the fly may announce a data size past the end: take what is there.
        let end = start.saturating_add(size).min(bytes.len());
        let chunk = &bytes[start..end];
        match id {
            b"fmt " => {
                if chunk.len() < 16 {
                    return Err(bad("the WAV fmt chunk is shorter than 16 bytes"));
                }
                let mut tag = u16_at(chunk, 0);
                if tag == 0xFFFE && chunk.len() >= 26 {
                    tag = u16_at(chunk, 24); // WAVE_FORMAT_EXTENSIBLE: the sub-format's first 2 bytes
                }
                fmt = Some((tag, u16_at(chunk, 2), u32_at(chunk, 4), u16_at(chunk, 14)));
            }
            b"data" => {
                data = Some(chunk);
                break;
            }
            _ => {}
        }
        at = start.saturating_add(size).saturating_add(size & 1);
    }
    let (tag, channels, rate, bits) = fmt.ok_or_else(|| bad("the WAV file has no fmt chunk before its data"))?;
    let data = data.ok_or_else(|| bad("the WAV file has no data chunk"))?;
    if channels == 0 || channels > 32 {
        return Err(bad(format!("the WAV file has {channels} channels (1 to 32 are taken)")));
    }
    if !(8_000..=192_000).contains(&rate) {
        return Err(bad(format!("the WAV file's rate is {rate} Hz (8000 to 192000 are taken)")));
    }
    let decode_one: fn(&[u8]) -> f32 = match (tag, bits) {
        (1, 8) => |b| (b[0] as f32 - 128.0) / 128.0,
        (1, 16) => |b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0,
        (1, 24) => |b| (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
        (1, 32) => |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
        (3, 32) => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        (3, 64) => |b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
        (tag, bits) => {
            return Err(AudioBodyError::Unsupported(format!(
                "WAV format {tag} with {bits}-bit samples is not taken (PCM 8/16/24/32-bit or float 32/64 are)"
            )))
        }
    };
    let width = bits as usize / 8;
    let frame = width * channels as usize;
    let samples: Vec<f32> = data
        .chunks_exact(frame)
        .map(|f| f.chunks_exact(width).map(decode_one).sum::<f32>() / channels as f32)
        .collect();
    if samples.is_empty() {
        return Err(bad("the WAV file holds no audio samples"));
    }
    if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
        return Err(bad(format!("WAV sample {i} is not a finite number")));
    }
    // Float audio runs from -1 to 1; far outside it the resampler's FFT overflows (NaN out, or
    // a panic inside rubato), so such files are refused.
    if let Some((i, s)) = samples.iter().enumerate().find(|(_, s)| s.abs() > MAX_FLOAT_SAMPLE) {
        let value = if s.abs() < 1e6 { format!("{s}") } else { format!("{s:e}") };
        return Err(bad(format!(
            "WAV sample {i} is {value}: float samples must lie within ±{MAX_FLOAT_SAMPLE} (full scale is ±1)"
        )));
    }
    Ok(Waveform { sample_rate: rate, samples })
}

/// A 16-bit PCM mono WAV file of `samples` (for clients and tests).
pub fn encode_wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = samples.len() * 2;
    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    out.extend(pcm_bytes(samples));
    out
}

/// Samples as signed 16-bit little-endian PCM.
pub fn pcm_bytes(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(audio_format(Some("audio/L16;rate=16000")), Ok(AudioFormat::Pcm16k));
        assert_eq!(audio_format(Some("audio/l16; rate=16000; channels=1")), Ok(AudioFormat::Pcm16k));
        assert_eq!(audio_format(Some("audio/wav")), Ok(AudioFormat::Wav));
        assert!(matches!(audio_format(Some("audio/L16;rate=48000")), Err(AudioBodyError::Unsupported(m)) if m.contains("rate=48000")));
        assert!(matches!(audio_format(Some("audio/L16")), Err(AudioBodyError::Unsupported(_))));
        assert!(matches!(audio_format(Some("audio/mpeg")), Err(AudioBodyError::Unsupported(m)) if m.contains("audio/mpeg")));
        assert!(matches!(audio_format(None), Err(AudioBodyError::Unsupported(_))));
    }

    #[test]
    fn wav_round_trip_and_resample() {
        let tone: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let back = decode(AudioFormat::Wav, &encode_wav(&tone, 16_000)).unwrap();
        assert_eq!(back.len(), 1600);
        assert!(back.iter().zip(&tone).all(|(a, b)| (a - b).abs() < 1e-4));
        let resampled = decode(AudioFormat::Wav, &encode_wav(&vec![0.25; 4800], 48_000)).unwrap();
        assert!((resampled.len() as i64 - 1600).abs() <= 2, "{}", resampled.len());
        let pcm = decode(AudioFormat::Pcm16k, &pcm_bytes(&tone)).unwrap();
        assert_eq!(pcm.len(), 1600);
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert!(matches!(decode(AudioFormat::Pcm16k, &[1, 2, 3]), Err(AudioBodyError::Bad(m)) if m.contains("3 bytes")));
        assert!(matches!(decode(AudioFormat::Wav, b"not a wav at all"), Err(AudioBodyError::Bad(_))));
        assert!(matches!(decode(AudioFormat::Wav, &[]), Err(AudioBodyError::Bad(_))));
        let mut truncated = encode_wav(&[0.1; 10], 16_000);
        truncated.truncate(30);
        assert!(decode(AudioFormat::Wav, &truncated).is_err());
        // Found by fuzzing (fuzz/control_api): finite float samples far outside -1..1 made the
        // resampler's FFT overflow and panic; they are refused with the sample named.
        let mut huge = encode_wav(&[0.0; 8], 48_000);
        huge[20..22].copy_from_slice(&3u16.to_le_bytes()); // IEEE float
        huge[34..36].copy_from_slice(&32u16.to_le_bytes());
        huge[32..34].copy_from_slice(&4u16.to_le_bytes());
        huge[40..44].copy_from_slice(&16u32.to_le_bytes());
        huge.truncate(44);
        for s in [0.5f32, -4.2e37, 3.0e38, 2.0] {
            huge.extend_from_slice(&s.to_le_bytes());
        }
        assert!(matches!(decode(AudioFormat::Wav, &huge), Err(AudioBodyError::Bad(m)) if m.contains("WAV sample 1 is -4.2e37")), "{:?}", decode(AudioFormat::Wav, &huge));
        // Every prefix of a good file is either an error or decodes: never a panic.
        let good = encode_wav(&[0.1; 10], 16_000);
        for n in 0..good.len() {
            let _ = decode(AudioFormat::Wav, &good[..n]);
        }
    }
}
