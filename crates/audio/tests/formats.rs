//! Audio files in every format livetalk takes (WAV, FLAC, MP3, OGG/Vorbis), made by a real encoder
//! (ffmpeg, which scripts/test.sh installs), decode to the same tone at the engine's 16 kHz.

use std::path::Path;
use std::process::Command;

use livetalk_audio::{file, Waveform, ENGINE_RATE};

/// The dominant frequency by zero crossings, Hz.
fn tone_hz(samples: &[f32], rate: u32) -> f32 {
    let crossings = samples.windows(2).filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0)).count();
    crossings as f32 / 2.0 / (samples.len() as f32 / rate as f32)
}

fn encode(source: &Path, target: &Path, codec: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(source)
        .args(codec)
        .arg(target)
        .output()
        .expect("ffmpeg is needed for this test (sudo apt-get install ffmpeg)");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn wav_flac_mp3_and_ogg_decode_to_the_same_tone_at_16_khz() {
    let dir = tempfile::tempdir().unwrap();
    let rate = 44_100;
    let tone: Vec<f32> = (0..rate * 2).map(|i| (2.0 * std::f32::consts::PI * 500.0 * i as f32 / rate as f32).sin() * 0.5).collect();
    let source = dir.path().join("tone.wav");
    file::write_wav(&source, &Waveform { sample_rate: rate as u32, samples: tone }).unwrap();
    let cases: [(&str, &[&str]); 4] = [
        ("tone-stereo.wav", &["-ac", "2", "-ar", "48000"]),
        ("tone.flac", &["-c:a", "flac"]),
        ("tone.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"]),
        ("tone.ogg", &["-c:a", "libvorbis", "-q:a", "4"]),
    ];
    for (name, codec) in cases {
        let path = dir.path().join(name);
        encode(&source, &path, codec);
        let wave = file::read_mono(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let engine = wave.to_engine_rate().unwrap();
        assert_eq!(engine.sample_rate, ENGINE_RATE);
        // Two seconds, give or take the encoders' padding.
        let seconds = engine.duration_secs();
        assert!((1.95..2.15).contains(&seconds), "{name}: {seconds} s");
        let middle = &engine.samples[4_000..28_000];
        let hz = tone_hz(middle, ENGINE_RATE);
        assert!((hz - 500.0).abs() < 5.0, "{name}: {hz} Hz");
        let peak = middle.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        // ffmpeg spreads mono over two channels at -3 dB each; the mix-down averages them.
        assert!((0.3..0.6).contains(&peak), "{name}: peak {peak}");
    }
}
