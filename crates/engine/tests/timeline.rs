//! The audio timeline (master clock) and the audio windows cut from it.

use std::time::{Duration, Instant};

use livetalk_core::{AudioChunk, ENGINE_SAMPLE_RATE};
use livetalk_engine::engine::{block_sample_range, AudioContext, AudioWindow, EngineError};
use livetalk_engine::timeline::{AudioTimeline, Pacing, Readiness, MAX_HISTORY};

fn ramp(len: usize, offset: f32) -> Vec<f32> {
    (0..len).map(|i| offset + i as f32 * 1e-5).collect()
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[test]
fn offline_pushes_are_back_to_back_and_read_back_exactly() {
    let timeline = AudioTimeline::offline();
    let first = ramp(1600, 0.1);
    let second = ramp(800, -0.2);
    assert_eq!(timeline.push(&first).unwrap(), Duration::ZERO);
    assert_eq!(timeline.push(&second).unwrap(), ms(100));
    assert_eq!(timeline.written(), 2400);
    assert_eq!(timeline.read(0..1600), first);
    assert_eq!(timeline.read(1600..2400), second);
    // Past the pushed audio: silence.
    let tail = timeline.read(2300..2500);
    assert_eq!(&tail[..100], &second[700..]);
    assert!(tail[100..].iter().all(|&s| s == 0.0));
}

#[test]
fn offline_readiness_waits_for_audio_then_reports_exhaustion() {
    let timeline = AudioTimeline::offline();
    timeline.push(&vec![0.5; 1000]).unwrap();
    assert_eq!(timeline.readiness(0, 1000), Readiness::Ready);
    assert_eq!(timeline.readiness(1000, 2000), Readiness::WaitForInput);
    timeline.finish();
    // The partial block at the end still renders (padded with silence) ...
    assert_eq!(timeline.readiness(500, 1500), Readiness::Ready);
    // ... and nothing after it.
    assert_eq!(timeline.readiness(1000, 2000), Readiness::Exhausted);
    assert!(matches!(
        timeline.push(&[0.0]),
        Err(EngineError::InvalidInput(_))
    ));
}

#[test]
fn offline_now_follows_the_reader() {
    let timeline = AudioTimeline::offline();
    timeline.push(&vec![0.1; 16_000]).unwrap();
    assert_eq!(timeline.now(), Duration::ZERO);
    timeline.reader_progress(8000, 7000);
    assert_eq!(timeline.now(), ms(500));
    // Progress never goes back.
    timeline.reader_progress(4000, 3000);
    assert_eq!(timeline.now(), ms(500));
}

#[test]
fn manual_pacing_inserts_silence_for_gaps() {
    let timeline = AudioTimeline::manual();
    assert_eq!(timeline.pacing(), Pacing::Manual);
    timeline.advance_clock(ms(250));
    let pts = timeline.push(&vec![0.25; 160]).unwrap();
    assert_eq!(pts, ms(250), "audio pushed after a silent gap starts now");
    let audio = timeline.read(0..4160);
    assert!(audio[..4000].iter().all(|&s| s == 0.0));
    assert!(audio[4000..].iter().all(|&s| s == 0.25));
    // Pushing again while now has not moved appends after the previous push.
    assert_eq!(timeline.push(&[0.5; 16]).unwrap(), ms(260));
    assert_eq!(timeline.readiness(0, 4000), Readiness::Ready);
    assert_eq!(timeline.readiness(4000, 4001), Readiness::WaitForInput);
}

#[test]
fn tap_delivers_every_sample_in_order_with_pts_including_silence() {
    let timeline = AudioTimeline::manual();
    let tap = timeline.tap(64);
    let speech = ramp(1600, 0.3);
    timeline.push(&speech).unwrap();
    timeline.advance_clock(ms(50));
    timeline.advance_clock(ms(100));
    timeline.advance_clock(ms(50)); // 200 ms: 100 ms of speech, then 100 ms of silence
    let chunks: Vec<AudioChunk> = tap.try_iter().collect();
    assert_eq!(chunks.len(), 3);
    let mut expected_pts = Duration::ZERO;
    let mut all = Vec::new();
    for chunk in &chunks {
        assert_eq!(chunk.sample_rate, ENGINE_SAMPLE_RATE);
        assert_eq!(chunk.channels, 1);
        assert_eq!(chunk.pts, expected_pts);
        expected_pts = chunk.end_pts();
        all.extend_from_slice(&chunk.samples);
    }
    assert_eq!(all.len(), 3200);
    assert_eq!(&all[..1600], &speech[..]);
    assert!(all[1600..].iter().all(|&s| s == 0.0));
}

#[test]
fn mute_turns_pushed_audio_into_silence_of_the_same_length() {
    let timeline = AudioTimeline::offline();
    timeline.set_muted(true);
    assert!(timeline.is_muted());
    timeline.push(&vec![0.9; 400]).unwrap();
    timeline.set_muted(false);
    assert_eq!(timeline.push(&vec![0.9; 400]).unwrap(), ms(25));
    let audio = timeline.read(0..800);
    assert!(audio[..400].iter().all(|&s| s == 0.0));
    assert!(audio[400..].iter().all(|&s| s == 0.9));
}

#[test]
fn bad_audio_is_refused_with_one_clear_error() {
    let timeline = AudioTimeline::offline();
    let error = timeline.push(&[0.0, f32::NAN, 0.1]).unwrap_err();
    assert!(
        error.to_string().contains("sample 1 of 3 is NaN"),
        "{error}"
    );
    assert!(timeline.push(&[f32::INFINITY]).is_err());
    assert_eq!(timeline.written(), 0, "nothing of a refused push lands");

    let wrong_rate = AudioChunk::engine_mono(vec![0.1; 10], Duration::ZERO);
    let wrong_rate = AudioChunk {
        sample_rate: 44_100,
        ..wrong_rate
    };
    let error = timeline.push_chunk(&wrong_rate).unwrap_err();
    assert!(error.to_string().contains("44100 Hz"), "{error}");

    let stereo = AudioChunk::new(16_000, 2, vec![0.2, 0.4, 0.6, 0.8], Duration::ZERO).unwrap();
    timeline.push_chunk(&stereo).unwrap();
    let mono = timeline.read(0..2);
    assert!((mono[0] - 0.3).abs() < 1e-6 && (mono[1] - 0.7).abs() < 1e-6);
}

#[test]
fn old_samples_are_let_go_but_recent_ones_kept() {
    let timeline = AudioTimeline::manual();
    let seconds = MAX_HISTORY.as_secs() as usize + 5;
    timeline.push(&vec![0.5; 16_000 * seconds]).unwrap();
    timeline.advance_clock(Duration::from_secs(seconds as u64));
    let end = 16_000 * seconds as u64;
    timeline.reader_progress(end, end - 16_000);
    assert!(
        timeline.read(0..10).iter().all(|&s| s == 0.0),
        "older than the history"
    );
    assert!(timeline.read(end - 16_000..end).iter().all(|&s| s == 0.5));
}

#[test]
fn live_clock_follows_the_wall_clock() {
    let timeline = AudioTimeline::live();
    let started = Instant::now();
    std::thread::sleep(ms(120));
    let now = timeline.now();
    assert!(now >= ms(120), "{now:?}");
    assert!(now <= started.elapsed() + ms(5), "{now:?}");
    // Nobody pushed: the push lands at now, after silence.
    let pts = timeline.push(&[0.1; 16]).unwrap();
    assert!(pts >= now, "{pts:?} < {now:?}");
    match timeline.readiness(0, timeline.now_sample() + 16_000) {
        Readiness::After(wait) => assert!(wait > ms(900) && wait <= ms(1000), "{wait:?}"),
        other => panic!("live readiness of the future: {other:?}"),
    }
}

#[test]
fn block_ranges_tile_the_timeline_exactly() {
    // 30 fps does not divide 16 kHz: boundaries round, but blocks never overlap or leave gaps.
    let mut end = 0;
    for block in 0..300 {
        let (start, next) = block_sample_range(block, 1, 30);
        assert_eq!(start, end);
        assert!(next - start == 533 || next - start == 534);
        end = next;
    }
    assert_eq!(end, 160_000, "300 frames at 30 fps are exactly 10 s");
    assert_eq!(block_sample_range(2, 12, 16), (24_000, 36_000));
}

#[test]
fn window_carries_context_block_and_lookahead() {
    let timeline = AudioTimeline::offline();
    let audio = ramp(40_000, 0.0);
    timeline.push(&audio).unwrap();
    let context = AudioContext {
        before: 2000,
        after: 500,
    };
    // Block 0: the context before the timeline's start is silence.
    let first = AudioWindow::for_block(0, 12, 16, context, |r| timeline.read(r));
    assert_eq!(first.samples().len(), 2000 + 12_000 + 500);
    assert!(first.context_before().iter().all(|&s| s == 0.0));
    assert_eq!(first.block(), &audio[..12_000]);
    assert_eq!(first.lookahead(), &audio[12_000..12_500]);
    assert_eq!(first.frame_count(), 12);

    let second = AudioWindow::for_block(1, 12, 16, context, |r| timeline.read(r));
    assert_eq!(second.context_before(), &audio[10_000..12_000]);
    assert_eq!(second.block(), &audio[12_000..24_000]);
    assert_eq!(second.pts(), ms(750));
    assert_eq!(second.first_frame_index(), 12);
    for i in 0..12 {
        assert_eq!(
            second.frame_pts(i),
            ms(750) + Duration::from_nanos(62_500_000 * i as u64)
        );
        let start = 12_000 + i * 1000;
        assert_eq!(second.frame_audio(i), &audio[start..start + 1000]);
    }
    assert!(second.frame_audio(12).is_empty());
}
