//! Audio files through symphonia (WAV, FLAC, MP3, OGG/Vorbis), mixed down to mono.

use std::fs::File;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymErr;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::{AudioError, Waveform};

/// Reads a whole audio file as mono f32 at its own sample rate.
pub fn read_mono(path: &Path) -> Result<Waveform, AudioError> {
    let file = File::open(path).map_err(|e| AudioError::File { path: path.into(), reason: e.to_string() })?;
    let ext = path.extension().and_then(|e| e.to_str());
    decode_mono(Box::new(file), path, ext)
}

/// Decodes audio held in memory (an HTTP answer); `label` names it in errors.
pub fn decode_mono_bytes(bytes: Vec<u8>, label: &Path, ext: Option<&str>) -> Result<Waveform, AudioError> {
    decode_mono(Box::new(std::io::Cursor::new(bytes)), label, ext)
}

fn decode_mono(source: Box<dyn MediaSource>, path: &Path, ext: Option<&str>) -> Result<Waveform, AudioError> {
    let not_audio = |reason: String| AudioError::NotAudio { path: path.into(), reason };
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = ext {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| not_audio(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| not_audio("no audio track".into()))?;
    let track_id = track.id;
    let sample_rate = track.codec_params.sample_rate.ok_or_else(|| not_audio("no sample rate".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| not_audio(e.to_string()))?;

    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymErr::ResetRequired) => break,
            Err(e) => return Err(not_audio(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet: skip it, as players do.
            Err(SymErr::DecodeError(_)) => continue,
            Err(e) => return Err(not_audio(e.to_string())),
        };
        let channels = decoded.spec().channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, *decoded.spec());
        buf.copy_interleaved_ref(decoded);
        samples.extend(buf.samples().chunks(channels).map(|f| f.iter().sum::<f32>() / channels as f32));
    }
    if samples.is_empty() {
        return Err(AudioError::Empty { path: path.into() });
    }
    Ok(Waveform { sample_rate, samples })
}

/// Writes 16-bit PCM mono WAV (used for the shipped TTS sample and test signals).
pub fn write_wav(path: &Path, wave: &Waveform) -> Result<(), AudioError> {
    let err = |e: hound::Error| AudioError::Write { path: path.into(), reason: e.to_string() };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: wave.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in &wave.samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).map_err(err)?;
    }
    w.finalize().map_err(err)
}
