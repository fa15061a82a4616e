//! The timestamps the source gives OBS: one mapping from the engine's pts for both video and
//! audio, so OBS keeps them in step (it re-times the audio by the offset between each shown
//! frame's timestamp and the moment it is shown).
//!
//! Stamps live far above CLOCK_MONOTONIC: OBS takes audio stamps within 2 s of its system clock
//! as "direct" and then stops re-timing them by the video, which would break the sync. Each
//! connection to an engine is a session whose offset is fixed by its first frame; a new engine
//! (pts from 0 again) gets a new session whose first frame is stamped now, after every frame
//! of the sessions before.
//!
//! The sync buffer: OBS shows an async frame at the first tick whose clock has passed its stamp,
//! its clock running on from the frame shown before (the placeholder at first), and it places a
//! stream of audio once and then only appends to it. A frame that reaches OBS after its stamp is
//! therefore shown late while its voice plays on time: under load (a busy 2-core machine
//! recording with x264) lips trailed the voice by up to 70 ms. Engine frames are stamped
//! `buffer` after the moment they would be shown at once, so frames up to `buffer` late still
//! show at their stamp, in step with the voice; the placeholder keeps plain "now" stamps so
//! OBS's clock never starts ahead of the buffer.

use std::time::{Duration, Instant};

/// Where the source's stamps start (2^60 ns: decades away from any system's uptime).
pub const BASE_NS: u64 = 1 << 60;

#[derive(Debug)]
pub struct Timestamps {
    origin: Instant,
    offset: Option<u64>,
}

impl Default for Timestamps {
    fn default() -> Self {
        Timestamps { origin: Instant::now(), offset: None }
    }
}

impl Timestamps {
    /// The source's own clock: for frames that do not come from the engine (the placeholder).
    pub fn now(&self) -> u64 {
        BASE_NS + self.origin.elapsed().as_nanos() as u64
    }

    /// Forgets the offset: the next [`Timestamps::anchor`] starts a new session.
    pub fn new_session(&mut self) {
        self.offset = None;
    }

    pub fn is_anchored(&self) -> bool {
        self.offset.is_some()
    }

    /// Fixes the session's offset so that `pts` (the session's first frame) is stamped
    /// `buffer` from now (see the module docs: the sync buffer); true when this started the
    /// session, false when it was already anchored.
    pub fn anchor(&mut self, pts: Duration, buffer: Duration) -> bool {
        if self.offset.is_some() {
            return false;
        }
        let shown_at = self.now() + buffer.as_nanos() as u64;
        self.offset = Some(shown_at.saturating_sub(pts.as_nanos() as u64));
        true
    }

    /// The stamp of `pts` in this session (`None` before the session's first frame).
    pub fn stamp(&self, pts: Duration) -> Option<u64> {
        self.offset.map(|offset| offset + pts.as_nanos() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_and_audio_of_one_pts_share_a_stamp() {
        let mut clock = Timestamps::default();
        assert_eq!(clock.stamp(Duration::from_secs(3)), None);
        clock.anchor(Duration::from_secs(3), Duration::ZERO);
        let frame = clock.stamp(Duration::from_secs(3)).unwrap();
        let audio = clock.stamp(Duration::from_millis(3_500)).unwrap();
        assert_eq!(audio - frame, 500_000_000);
        assert!(frame >= BASE_NS && frame <= clock.now());
        // A second anchor in the same session changes nothing.
        assert!(!clock.anchor(Duration::from_secs(9), Duration::ZERO));
        assert_eq!(clock.stamp(Duration::from_secs(3)), Some(frame));
    }

    #[test]
    fn a_new_engine_starting_from_zero_does_not_go_backwards() {
        let mut clock = Timestamps::default();
        clock.anchor(Duration::from_secs(100), Duration::ZERO);
        let last_frame = clock.stamp(Duration::from_secs(100)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        clock.new_session();
        clock.anchor(Duration::ZERO, Duration::ZERO);
        let first_frame = clock.stamp(Duration::ZERO).unwrap();
        assert!(first_frame >= last_frame + 2_000_000, "the new session starts where the clock is, not at 0");
    }

    #[test]
    fn the_sync_buffer_stamps_engine_frames_ahead_of_now() {
        let mut clock = Timestamps::default();
        let before = clock.now();
        clock.anchor(Duration::from_secs(5), Duration::from_millis(100));
        let first = clock.stamp(Duration::from_secs(5)).unwrap();
        assert!(first >= before + 100_000_000, "the first frame shows 100 ms from the anchor");
        assert!(first <= clock.now() + 100_000_000);
        // Audio and later frames keep the one mapping.
        assert_eq!(clock.stamp(Duration::from_millis(5_040)).unwrap() - first, 40_000_000);
    }
}
