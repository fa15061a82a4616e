//! Raw PCM streams (stdin): a format spec such as `s16le:16000:1` and an incremental decoder to
//! mono `f32` at the stream's own rate.
//!
//! Raw PCM carries no header, so a wrong format cannot be detected in general; the decoder
//! refuses what it can recognise as wrong: a container file (WAV, FLAC, OGG, MP3 with ID3) where
//! raw samples were promised, float samples that are not finite or far outside -1..1 (integer
//! PCM read as float), and a stream that ends inside a frame.

use std::fmt;
use std::str::FromStr;

use crate::AudioError;

/// How samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    U8,
    S16Le,
    S32Le,
    F32Le,
}

impl Encoding {
    const ALL: [(&'static str, Encoding); 4] =
        [("u8", Encoding::U8), ("s16le", Encoding::S16Le), ("s32le", Encoding::S32Le), ("f32le", Encoding::F32Le)];

    pub fn bytes(self) -> usize {
        match self {
            Encoding::U8 => 1,
            Encoding::S16Le => 2,
            Encoding::S32Le | Encoding::F32Le => 4,
        }
    }

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, e)| *e == self).map_or("?", |(n, _)| n)
    }

    fn decode(self, b: &[u8]) -> f32 {
        match self {
            Encoding::U8 => (b[0] as f32 - 128.0) / 128.0,
            Encoding::S16Le => i16::from_le_bytes([b[0], b[1]]) as f32 / 32_768.0,
            Encoding::S32Le => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
            Encoding::F32Le => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    }
}

/// A raw PCM layout: `ENCODING:RATE:CHANNELS`, e.g. `s16le:16000:1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    pub encoding: Encoding,
    pub rate: u32,
    pub channels: u16,
}

impl PcmFormat {
    pub const ENGINE: PcmFormat = PcmFormat { encoding: Encoding::S16Le, rate: 16_000, channels: 1 };

    /// Bytes of one frame (one sample per channel).
    pub fn frame_bytes(&self) -> usize {
        self.encoding.bytes() * self.channels as usize
    }
}

impl fmt::Display for PcmFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.encoding.name(), self.rate, self.channels)
    }
}

const SPEC_HELP: &str = "expected ENCODING:RATE:CHANNELS with ENCODING one of u8, s16le, s32le, f32le, \
     RATE 8000 to 192000 and CHANNELS 1 to 32 (e.g. s16le:16000:1)";

impl FromStr for PcmFormat {
    type Err = AudioError;

    fn from_str(spec: &str) -> Result<Self, AudioError> {
        let bad = |reason: String| AudioError::PcmFormat { spec: spec.to_string(), reason };
        let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
        let [encoding, rate, channels] = parts[..] else {
            return Err(bad(format!("{} field(s); {SPEC_HELP}", parts.len())));
        };
        let encoding = Encoding::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(encoding))
            .map(|(_, e)| *e)
            .ok_or_else(|| bad(format!("unknown sample encoding `{encoding}`; {SPEC_HELP}")))?;
        let rate = rate
            .parse::<u32>()
            .ok()
            .filter(|r| (8_000..=192_000).contains(r))
            .ok_or_else(|| bad(format!("rate `{rate}` is not a number from 8000 to 192000")))?;
        let channels = channels
            .parse::<u16>()
            .ok()
            .filter(|c| (1..=32).contains(c))
            .ok_or_else(|| bad(format!("channels `{channels}` is not a number from 1 to 32")))?;
        Ok(PcmFormat { encoding, rate, channels })
    }
}

/// Float samples beyond this are integer PCM read as float (or garbage), not audio.
const FLOAT_LIMIT: f32 = 16.0;

/// Decodes a raw PCM byte stream piece by piece into mono samples.
#[derive(Debug)]
pub struct PcmDecoder {
    format: PcmFormat,
    /// Bytes of an incomplete frame carried to the next piece.
    partial: Vec<u8>,
    /// Frames decoded so far (for error messages).
    frames: u64,
    /// The first bytes, kept until there are enough to recognise a container header.
    head: Option<Vec<u8>>,
    source: String,
}

impl PcmDecoder {
    /// `source` names the stream in errors ("stdin").
    pub fn new(format: PcmFormat, source: &str) -> Self {
        PcmDecoder { format, partial: Vec::new(), frames: 0, head: Some(Vec::new()), source: source.into() }
    }

    pub fn format(&self) -> PcmFormat {
        self.format
    }

    /// Decodes the next piece; returns the mono samples of every whole frame so far.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<f32>, AudioError> {
        let bytes = match self.head.take() {
            Some(mut head) => {
                head.extend_from_slice(bytes);
                if head.len() < 12 {
                    self.head = Some(head);
                    return Ok(Vec::new());
                }
                self.check_not_a_file(&head)?;
                head
            }
            None => bytes.to_vec(),
        };
        self.decode(&bytes)
    }

    /// The stream ended: an incomplete frame or a stream too short to check is an error.
    pub fn finish(mut self) -> Result<Vec<f32>, AudioError> {
        let tail = match self.head.take() {
            Some(head) => {
                self.check_not_a_file(&head)?;
                self.decode(&head)?
            }
            None => Vec::new(),
        };
        if !self.partial.is_empty() {
            return Err(self.error(format!(
                "the stream ended inside a frame: {} byte(s) left over, but a {} frame is {} bytes",
                self.partial.len(),
                self.format,
                self.format.frame_bytes()
            )));
        }
        Ok(tail)
    }

    fn error(&self, reason: String) -> AudioError {
        AudioError::Pcm { stream: self.source.clone(), format: self.format.to_string(), reason }
    }

    fn check_not_a_file(&self, head: &[u8]) -> Result<(), AudioError> {
        let container = if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WAVE") {
            Some("a WAV file")
        } else if head.starts_with(b"fLaC") {
            Some("a FLAC file")
        } else if head.starts_with(b"OggS") {
            Some("an OGG file")
        } else if head.starts_with(b"ID3") {
            Some("an MP3 file")
        } else {
            None
        };
        match container {
            Some(kind) => Err(self.error(format!(
                "it holds {kind}, not raw PCM: pass the file with --audio FILE, or convert it to raw PCM \
                 (ffmpeg -i FILE -f s16le -ar 16000 -ac 1 -)"
            ))),
            None => Ok(()),
        }
    }

    fn decode(&mut self, bytes: &[u8]) -> Result<Vec<f32>, AudioError> {
        let frame_bytes = self.format.frame_bytes();
        let width = self.format.encoding.bytes();
        let channels = self.format.channels as usize;
        let mut data = std::mem::take(&mut self.partial);
        data.extend_from_slice(bytes);
        let whole = data.len() / frame_bytes * frame_bytes;
        let mut out = Vec::with_capacity(whole / frame_bytes);
        for frame in data[..whole].chunks_exact(frame_bytes) {
            let mut sum = 0.0f32;
            for sample in frame.chunks_exact(width) {
                let value = self.format.encoding.decode(sample);
                if self.format.encoding == Encoding::F32Le && (value.is_nan() || value.abs() > FLOAT_LIMIT) {
                    return Err(self.error(format!(
                        "frame {} holds {value}, which is not a float audio sample: is the data really f32le?",
                        self.frames + out.len() as u64
                    )));
                }
                sum += value;
            }
            out.push(sum / channels as f32);
        }
        self.frames += out.len() as u64;
        self.partial = data[whole..].to_vec();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_names_what_is_wrong() {
        assert_eq!("s16le:16000:1".parse::<PcmFormat>().unwrap(), PcmFormat::ENGINE);
        let f: PcmFormat = "F32LE:48000:2".parse().unwrap();
        assert_eq!((f.encoding, f.rate, f.channels, f.frame_bytes()), (Encoding::F32Le, 48_000, 2, 8));
        assert_eq!(f.to_string(), "f32le:48000:2");
        let err = |s: &str| s.parse::<PcmFormat>().unwrap_err().to_string();
        assert!(err("s16le:16000").contains("2 field(s)"), "{}", err("s16le:16000"));
        assert!(err("s24be:16000:1").contains("unknown sample encoding `s24be`"));
        assert!(err("s16le:44k:1").contains("rate `44k`"));
        assert!(err("s16le:16000:0").contains("channels `0`"));
    }

    #[test]
    fn decodes_in_pieces_and_mixes_down() {
        let format: PcmFormat = "s16le:16000:2".parse().unwrap();
        let mut decoder = PcmDecoder::new(format, "stdin");
        let frames: Vec<u8> = [(16_384i16, 0i16), (-32_768, -32_768), (100, 300)]
            .iter()
            .flat_map(|(l, r)| [l.to_le_bytes(), r.to_le_bytes()].concat())
            .collect();
        let mut out = Vec::new();
        // Odd-sized pieces: frames split across pushes come out whole.
        for piece in frames.chunks(3) {
            out.extend(decoder.push(piece).unwrap());
        }
        out.extend(decoder.finish().unwrap());
        assert_eq!(out.len(), 3);
        assert!((out[0] - 0.25).abs() < 1e-6 && (out[1] + 1.0).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn refuses_containers_partial_frames_and_bad_floats() {
        let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
        wav.extend([0u8; 32]);
        let e = PcmDecoder::new(PcmFormat::ENGINE, "stdin").push(&wav).unwrap_err().to_string();
        assert!(e.contains("stdin") && e.contains("a WAV file") && e.contains("s16le:16000:1"), "{e}");

        let mut d = PcmDecoder::new(PcmFormat::ENGINE, "stdin");
        d.push(&[0u8; 13]).unwrap();
        let e = d.finish().unwrap_err().to_string();
        assert!(e.contains("1 byte(s) left over"), "{e}");

        // 16-bit PCM read as float: huge or NaN values.
        let f32le: PcmFormat = "f32le:16000:1".parse().unwrap();
        let mut d = PcmDecoder::new(f32le, "stdin");
        let e = d.push(&[0x00, 0x7f, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("not a float audio sample"), "{e}");

        // A short stream is still checked and decoded at the end.
        let d = PcmDecoder::new(PcmFormat::ENGINE, "stdin");
        assert!(d.finish().unwrap().is_empty());
    }
}
