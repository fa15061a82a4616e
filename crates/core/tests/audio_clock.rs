//! Audio chunks and the clocks built on the audio timeline.

use std::time::Duration;

use livetalk_core::clock::{source_frame_for_output, AudioClock, FrameClock, FramePicker};
use livetalk_core::{AudioChunk, Error, ENGINE_FPS, ENGINE_SAMPLE_RATE};

#[test]
fn chunk_duration_and_end() {
    let chunk = AudioChunk::new(48_000, 2, vec![0.0; 48_000], Duration::from_secs(2)).unwrap();
    assert_eq!(chunk.frames(), 24_000);
    assert_eq!(chunk.duration(), Duration::from_millis(500));
    assert_eq!(chunk.end_pts(), Duration::from_millis(2500));
    let engine = AudioChunk::engine_mono(vec![0.0; 12_000], Duration::ZERO);
    assert_eq!(engine.sample_rate, ENGINE_SAMPLE_RATE);
    assert_eq!(
        engine.duration(),
        Duration::from_millis(750),
        "one generator block of audio"
    );
}

#[test]
fn invalid_chunks_are_rejected() {
    let err = AudioChunk::new(16_000, 2, vec![0.0; 3], Duration::ZERO).unwrap_err();
    assert!(matches!(err, Error::InvalidAudio(_)));
    assert_eq!(
        err.to_string(),
        "audio chunk: 3 samples do not divide into 2 channels"
    );
    assert!(AudioChunk::new(0, 1, vec![], Duration::ZERO).is_err());
    assert!(AudioChunk::new(16_000, 0, vec![], Duration::ZERO).is_err());
    // Helpers stay total on a chunk built by hand with a zero channel count.
    let broken = AudioChunk {
        sample_rate: 16_000,
        channels: 0,
        samples: vec![0.5; 4],
        pts: Duration::ZERO,
    };
    assert_eq!(broken.frames(), 0);
    assert_eq!(broken.duration(), Duration::ZERO);
}

#[test]
fn mono_mixdown_rms_and_peak() {
    let stereo = AudioChunk::new(
        16_000,
        2,
        vec![1.0, 0.0, -0.5, -0.5, 0.25, 0.75],
        Duration::from_millis(10),
    )
    .unwrap();
    let mono = stereo.to_mono();
    assert_eq!(mono.channels, 1);
    assert_eq!(mono.samples, [0.5, -0.5, 0.5]);
    assert_eq!(mono.pts, stereo.pts);
    assert_eq!(mono.duration(), stereo.duration());
    assert!((mono.rms() - 0.5).abs() < 1e-6);
    assert_eq!(stereo.peak(), 1.0);
    assert_eq!(AudioChunk::engine_mono(vec![], Duration::ZERO).rms(), 0.0);
    // A full-scale sine has an RMS of 1/√2.
    let sine: Vec<f32> = (0..16_000)
        .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin())
        .collect();
    let rms = AudioChunk::engine_mono(sine, Duration::ZERO).rms();
    assert!(
        (rms - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-3,
        "{rms}"
    );
}

#[test]
fn i16_samples_convert_both_ways() {
    let chunk =
        AudioChunk::from_i16(16_000, 1, &[0, 16_384, -32_768, 32_767], Duration::ZERO).unwrap();
    assert_eq!(chunk.samples[..3], [0.0, 0.5, -1.0]);
    assert_eq!(chunk.to_i16(), [0, 16_384, -32_768, 32_767]);
    let loud = AudioChunk::engine_mono(vec![2.0, -2.0], Duration::ZERO);
    assert_eq!(loud.to_i16(), [32_767, -32_768], "clipped, not wrapped");
    let silence = AudioChunk::silence(48_000, 2, 480, Duration::ZERO).unwrap();
    assert_eq!(
        (silence.samples.len(), silence.duration()),
        (960, Duration::from_millis(10))
    );
}

#[test]
fn audio_clock_counts_samples_into_pts() {
    let mut clock = AudioClock::new(ENGINE_SAMPLE_RATE);
    assert_eq!(clock.advance(12_000), Duration::ZERO);
    assert_eq!(clock.advance(12_000), Duration::from_millis(750));
    assert_eq!(clock.now(), Duration::from_millis(1500));
    assert_eq!(clock.samples(), 24_000);
    assert_eq!(clock.sample_at(Duration::from_millis(1000)), 16_000);
    // 44.1 kHz in 441-sample chunks for an hour: exact, no drift from summed rounding.
    let mut cd = AudioClock::starting_at(44_100, Duration::from_secs(5));
    for _ in 0..360_000 {
        cd.advance(441);
    }
    assert_eq!(cd.now(), Duration::from_secs(3605));
    assert_eq!(
        cd.pts_of_sample(1),
        Duration::from_secs(5) + Duration::from_nanos(22_675)
    );
    assert_eq!(cd.sample_at(Duration::from_secs(1)), 0, "before the origin");
}

#[test]
fn frame_clock_maps_indices_and_pts() {
    let clock = FrameClock::default();
    assert_eq!(clock.fps(), ENGINE_FPS);
    assert_eq!(clock.frame_duration(), Duration::from_micros(62_500));
    assert_eq!(clock.pts_of(12), Duration::from_millis(750));
    assert_eq!(clock.index_at(Duration::from_millis(750)), 12);
    assert_eq!(clock.index_at(Duration::from_millis(749)), 11);
    for index in [0, 1, 15, 16, 1_000_003] {
        assert_eq!(clock.index_at(clock.pts_of(index)), index);
    }
    // Ten hours in: still exact.
    assert_eq!(clock.pts_of(16 * 36_000), Duration::from_secs(36_000));
    let late = FrameClock::starting_at(16, Duration::from_secs(10));
    assert_eq!(late.pts_of(8), Duration::from_millis(10_500));
    assert_eq!(late.index_at(Duration::from_secs(3)), 0);
}

#[test]
fn thirty_fps_output_repeats_sixteen_fps_frames() {
    let picks: Vec<u64> = (0..16)
        .map(|i| source_frame_for_output(i, 30, 16))
        .collect();
    assert_eq!(picks, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8]);
    // Every source frame is shown at least once, and one second maps to one second.
    assert_eq!(source_frame_for_output(30, 30, 16), 16);
    let shown: std::collections::BTreeSet<u64> = (0..300)
        .map(|i| source_frame_for_output(i, 30, 16))
        .collect();
    assert_eq!(shown.len(), 160);
    // Matches the pts rule: the latest source frame with pts <= the output tick's time.
    let (source, output) = (FrameClock::new(16), FrameClock::new(30));
    for i in 0..100 {
        assert_eq!(
            source_frame_for_output(i, 30, 16),
            source.index_at(output.pts_of(i))
        );
    }
}

#[test]
fn frame_picker_shows_the_latest_due_frame() {
    let clock = FrameClock::new(16);
    let mut picker = FramePicker::new();
    assert_eq!(
        picker.pick(Duration::from_secs(1)),
        None,
        "nothing published yet"
    );
    // A burst of a whole block (12 frames) arrives at once, ahead of time.
    for index in 0..12u64 {
        picker.push(clock.pts_of(index), index);
    }
    let output = FrameClock::new(30);
    let shown: Vec<u64> = (0..8)
        .map(|i| *picker.pick(output.pts_of(i)).unwrap())
        .collect();
    assert_eq!(shown, [0, 0, 1, 1, 2, 2, 3, 3]);
    assert_eq!(picker.current_pts(), Some(clock.pts_of(3)));
    assert_eq!(picker.pending(), 8);
    // Past the last frame, the last one stays on screen.
    assert_eq!(picker.pick(Duration::from_secs(5)), Some(&11));
    assert_eq!(picker.pending(), 0);
    // The timeline restarts (older pts than queued): the queue starts over.
    picker.push(Duration::from_secs(9), 100);
    picker.push(Duration::from_secs(1), 200);
    assert_eq!(picker.pending(), 1);
    assert_eq!(picker.pick(Duration::from_secs(1)), Some(&200));
}
