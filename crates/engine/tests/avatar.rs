//! The CPU avatar end to end: audio in, pixels out, measured back from the pixels.

use std::time::Duration;

use image::{Rgba, RgbaImage};
use livetalk_core::look::{AvatarLook, LookError, Rgb};
use livetalk_engine::avatar::bench::{frame_window, syllable, synthetic_speech};
use livetalk_engine::avatar::pngtuber::PngTuberState;
use livetalk_engine::avatar::{AvatarError, CpuAvatar, MouthMeter, MouthShape, PngTuber, SAMPLE_RATE};

const FPS: f64 = 30.0;
const W: u32 = 320;
const H: u32 = 180;

fn frame_time(i: usize) -> Duration {
    Duration::from_secs_f64(i as f64 / FPS)
}

/// Renders `audio` at 30 fps and returns each frame's RGBA bytes.
fn render_all(avatar: &mut CpuAvatar, audio: &[f32]) -> Vec<Vec<u8>> {
    let frames = (audio.len() as f64 / SAMPLE_RATE as f64 * FPS) as usize;
    (0..frames)
        .map(|i| {
            let mut out = vec![0u8; (avatar.width() * avatar.height() * 4) as usize];
            let t = frame_time(i);
            avatar.render_frame(frame_window(audio, t, FPS), t, &mut out).unwrap();
            out
        })
        .collect()
}

/// A steady voiced vowel (harmonics of 150 Hz shaped by two formants) of `seconds`.
fn vowel(seconds: f64, formants: (f64, f64), loudness: f64) -> Vec<f32> {
    let mut out = Vec::new();
    let mut phase = 0.0;
    syllable(&mut out, &mut phase, seconds, 150.0, formants, loudness);
    // Flatten the syllable's rise and fall: keep the steady middle, repeated.
    let middle = out[out.len() / 4..out.len() * 3 / 4].to_vec();
    middle.iter().chain(middle.iter()).copied().collect()
}

fn correlation(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() as f32;
    let (ma, mb) = (a.iter().sum::<f32>() / n, b.iter().sum::<f32>() / n);
    let cov: f32 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f32 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f32 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn measured_mouth_follows_a_loudness_envelope() {
    let look = AvatarLook::default();
    let mut avatar = CpuAvatar::new(&look, W, H, 3).unwrap();
    let meter = MouthMeter::new(&look, W, H).unwrap();
    // Bursts of an open vowel at different loudness, separated by silence.
    let mut audio = Vec::new();
    for loudness in [0.0, 0.3, 0.0, 0.08, 0.0, 0.03, 0.15, 0.0, 0.25, 0.05, 0.0, 0.12, 0.0] {
        let mut burst = vowel(0.6, (750.0, 1300.0), loudness);
        burst.truncate((0.4 * SAMPLE_RATE) as usize);
        audio.extend(burst);
    }
    let frames = render_all(&mut avatar, &audio);
    let mut measured = Vec::new();
    let mut loudness = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        measured.push(meter.measure_rgba(frame).unwrap());
        let (db, _) = livetalk_engine::avatar::analysis::level_and_rms_frequency(frame_window(&audio, frame_time(i), FPS));
        loudness.push(((db + 48.0) / 34.0).clamp(0.0, 1.0));
    }
    let r = correlation(&measured, &loudness);
    assert!(r >= 0.8, "correlation {r}\nmeasured {measured:?}\nloudness {loudness:?}");
    let loudest = measured.iter().cloned().fold(0.0, f32::max);
    assert!(loudest > 0.6, "the mouth opens wide on loud bursts: {loudest}");
}

#[test]
fn silence_and_noise_below_the_gate_keep_the_mouth_closed() {
    let look = AvatarLook::default();
    let mut avatar = CpuAvatar::new(&look, W, H, 4).unwrap();
    let meter = MouthMeter::new(&look, W, H).unwrap();
    // Room noise at about -60 dBFS.
    let audio: Vec<f32> = (0..3 * SAMPLE_RATE as usize).map(|i| 0.0014 * ((i * 7919 % 1000) as f32 / 500.0 - 1.0)).collect();
    for frame in render_all(&mut avatar, &audio) {
        assert_eq!(meter.measure_rgba(&frame).unwrap(), 0.0);
        assert!(avatar.mouth_openness() < 0.01);
        let voice = avatar.last_voice().unwrap();
        assert_eq!(voice.shape, MouthShape::Closed);
        assert!(!voice.speaking);
    }
}

/// Pixels close to the iris colour: they vanish when the lids close.
fn iris_pixels(frame: &[u8], iris: Rgb) -> usize {
    frame
        .chunks_exact(4)
        .filter(|p| {
            let d = |a: u8, b: u8| (a as i32 - b as i32).pow(2);
            d(p[0], iris.r) + d(p[1], iris.g) + d(p[2], iris.b) < 30 * 30
        })
        .count()
}

#[test]
fn eyes_blink_within_six_seconds() {
    let look = AvatarLook::default();
    let mut avatar = CpuAvatar::new(&look, 640, 360, 9).unwrap();
    let frames = render_all(&mut avatar, &vec![0.0; 6 * SAMPLE_RATE as usize]);
    let counts: Vec<usize> = frames.iter().map(|f| iris_pixels(f, look.eyes)).collect();
    let open = *counts.iter().max().unwrap();
    let shut = *counts.iter().min().unwrap();
    assert!(open > 50, "irises are visible: {open}");
    assert!(shut * 5 < open, "a blink hides the irises: {shut} of {open}");
}

#[test]
fn same_seed_gives_the_same_pixels() {
    let look = AvatarLook::default();
    let audio = synthetic_speech(2.0, 1);
    let a = render_all(&mut CpuAvatar::new(&look, W, H, 42).unwrap(), &audio);
    let b = render_all(&mut CpuAvatar::new(&look, W, H, 42).unwrap(), &audio);
    assert!(a == b, "same seed, same frames");
    let c = render_all(&mut CpuAvatar::new(&look, W, H, 43).unwrap(), &audio);
    assert!(a != c, "another seed moves differently");
}

#[test]
fn low_formant_vowels_are_rounded_and_high_formant_vowels_open() {
    let look = AvatarLook::default();
    for (formants, expected) in [((330.0, 750.0), MouthShape::Rounded), ((750.0, 1300.0), MouthShape::Open)] {
        let mut avatar = CpuAvatar::new(&look, W, H, 5).unwrap();
        let audio = vowel(1.2, formants, 0.25);
        let mut out = vec![0u8; (W * H * 4) as usize];
        let mut shapes = Vec::new();
        for i in 3..30 {
            let t = frame_time(i);
            avatar.render_frame(frame_window(&audio, t, FPS), t, &mut out).unwrap();
            shapes.push(avatar.last_voice().unwrap().shape);
        }
        let hits = shapes.iter().filter(|&&s| s == expected).count();
        assert!(hits * 10 >= shapes.len() * 9, "{formants:?}: {shapes:?}");
    }
}

#[test]
fn meter_reads_back_drawn_openness_for_light_and_dark_skin() {
    let light = AvatarLook { hair_style: livetalk_core::look::HairStyle::Bob, glasses: true, ..AvatarLook::default() };
    let dark = AvatarLook {
        skin: Rgb::new(0x4a, 0x2a, 0x20),
        lips: Rgb::new(0x5a, 0x2c, 0x2c),
        hair_style: livetalk_core::look::HairStyle::Bun,
        ..AvatarLook::default()
    };
    for look in [light, dark] {
        meter_reads_back(&look);
    }
}

fn meter_reads_back(look: &AvatarLook) {
    let look = look.clone();
    let mut avatar = CpuAvatar::new(&look, 640, 360, 1).unwrap();
    let meter = MouthMeter::new(&look, 640, 360).unwrap();
    let mut out = vec![0u8; 640 * 360 * 4];
    avatar.render_frame(&[], Duration::ZERO, &mut out).unwrap();
    let mut pose = avatar.last_pose().unwrap();
    let mut previous = -1.0;
    for openness in [0.0, 0.25, 0.5, 0.75, 1.0] {
        pose.mouth.openness = openness;
        pose.mouth.smile = 0.35;
        pose.head = (9.0, -8.0); // the widest sway still lands in the meter's box
        avatar.draw_pose(&pose, &mut out);
        let measured = meter.measure_rgba(&out).unwrap();
        assert!(measured > previous, "{openness} → {measured}");
        previous = measured;
    }
    assert!(previous > 0.95, "fully open reads as open: {previous}");
}

fn picture(colour: [u8; 3]) -> RgbaImage {
    RgbaImage::from_fn(40, 60, |x, y| {
        // A rounded blob on a transparent canvas.
        let (dx, dy) = (x as f32 - 20.0, y as f32 - 30.0);
        let alpha = if dx * dx / 400.0 + dy * dy / 900.0 <= 1.0 { 255 } else { 0 };
        Rgba([colour[0], colour[1], colour[2], alpha])
    })
}

#[test]
fn pngtuber_switches_pictures_with_voice_and_blinks() {
    let bg = Rgb::new(10, 20, 30);
    let (w, h) = (160u32, 90u32);
    let mut tuber =
        PngTuber::from_images(&picture([250, 0, 0]), Some(&picture([0, 250, 0])), Some(&picture([0, 0, 250])), w, h, bg, 2)
            .unwrap();
    let mut audio = vec![0.0; 7 * SAMPLE_RATE as usize];
    audio.extend(vowel(1.5, (750.0, 1300.0), 0.25));
    let mut out = vec![0u8; (w * h * 4) as usize];
    let centre = |out: &[u8]| {
        let i = ((h / 2 * w + w / 2) * 4) as usize;
        [out[i], out[i + 1], out[i + 2]]
    };
    let mut seen = Vec::new();
    let mut talking_tops = Vec::new();
    for i in 0..(8.5 * FPS) as usize {
        let t = frame_time(i);
        let state = tuber.render_frame(frame_window(&audio, t, FPS), t, &mut out).unwrap();
        let expected = match state {
            PngTuberState::Idle => [250, 0, 0],
            PngTuberState::Talking => [0, 250, 0],
            PngTuberState::Blink => [0, 0, 250],
        };
        let got = centre(&out);
        assert!(got.iter().zip(expected).all(|(&a, b)| a.abs_diff(b) <= 3), "frame {i} {state:?}: {got:?}");
        assert_eq!(&out[..3], &[10, 20, 30], "background");
        if state == PngTuberState::Talking {
            // First row holding the picture: moves while talking (the bounce).
            talking_tops.push((0..h).find(|&y| out[((y * w + w / 2) * 4 + 1) as usize] > 200).unwrap());
        }
        seen.push((t.as_secs_f64(), state));
    }
    assert!(seen.iter().any(|&(t, s)| t < 6.0 && s == PngTuberState::Blink), "blinks while idle");
    assert!(seen.iter().all(|&(t, s)| t >= 6.9 || s != PngTuberState::Talking), "quiet is not talking");
    assert!(seen.iter().filter(|&&(t, _)| t > 7.2).all(|&(_, s)| s == PngTuberState::Talking), "voice is talking");
    let (lo, hi) = (talking_tops.iter().min().unwrap(), talking_tops.iter().max().unwrap());
    assert!(hi - lo >= 1, "bounces while talking: {talking_tops:?}");
}

#[test]
fn missing_pngtuber_picture_names_the_file() {
    let err = PngTuber::from_files(std::path::Path::new("/nonexistent/idle.png"), None, None, 64, 64, Rgb::new(0, 0, 0), 1)
        .err()
        .unwrap();
    assert!(matches!(err, AvatarError::Picture { .. }));
    assert!(err.to_string().contains("/nonexistent/idle.png"), "{err}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let err = AvatarLook::from_toml_str("skin = \"#12345\"").unwrap_err();
    assert!(matches!(err, LookError::Toml(_)));
    let text = err.to_string();
    assert!(text.contains("#12345") && text.contains("#rrggbb"), "{text}");
    assert!(matches!(CpuAvatar::new(&AvatarLook::default(), 0, 720, 1), Err(AvatarError::Size { width: 0, .. })));
    let mut avatar = CpuAvatar::new(&AvatarLook::default(), 64, 64, 1).unwrap();
    let err = avatar.render_frame(&[], Duration::ZERO, &mut [0u8; 10]).unwrap_err();
    assert!(err.to_string().contains("16384"), "{err}");
}

#[test]
fn every_preset_loads_and_renders() {
    use livetalk_core::persona::{Background, Persona};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../presets");
    let mut looks = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let persona = Persona::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let background = match persona.background {
            Some(Background::Colour(c)) => c,
            _ => Rgb::new(0, 0, 0),
        };
        let mut out = vec![0u8; (W * H * 4) as usize];
        if let Some(pictures) = &persona.pngtuber {
            let mut tuber = PngTuber::from_files(&pictures.idle, Some(&pictures.talking), pictures.blink.as_deref(), W, H, background, 1)
                .unwrap();
            tuber.render_frame(&[], Duration::ZERO, &mut out).unwrap();
        } else {
            let look = persona.look.clone().unwrap_or_default();
            CpuAvatar::new(&look, W, H, 1).unwrap().render_frame(&[], Duration::ZERO, &mut out).unwrap();
            looks.push(look);
        }
    }
    assert!(looks.len() >= 2, "at least two drawn personas");
    assert!(looks.windows(2).all(|w| w[0] != w[1]), "personas look different");
}
