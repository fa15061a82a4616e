//! Speaking detection for the "speaking started/stopped" events: loudness per frame of audio
//! against a threshold, with a hangover so pauses between words do not flicker.

use std::time::Duration;

use super::status::EngineEvent;

/// RMS above which a frame's audio counts as speech.
pub const SPEAKING_THRESHOLD: f32 = 0.02;
/// How long the audio must stay quiet before speaking counts as stopped.
pub const SPEAKING_HANGOVER: Duration = Duration::from_millis(400);

#[derive(Debug, Clone)]
pub(crate) struct SpeakingDetector {
    threshold: f32,
    speaking: bool,
    quiet_since: Option<Duration>,
}

impl SpeakingDetector {
    pub fn new(threshold: f32) -> Self {
        SpeakingDetector {
            threshold,
            speaking: false,
            quiet_since: None,
        }
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Feeds the audio shown with the frame at `pts`; returns an event when speaking starts or
    /// stops.
    pub fn update(&mut self, pts: Duration, samples: &[f32]) -> Option<EngineEvent> {
        let loud = rms(samples) > self.threshold;
        match (self.speaking, loud) {
            (false, true) => {
                self.speaking = true;
                self.quiet_since = None;
                Some(EngineEvent::SpeakingStarted { pts })
            }
            (true, true) => {
                self.quiet_since = None;
                None
            }
            (true, false) => {
                let since = *self.quiet_since.get_or_insert(pts);
                if pts.saturating_sub(since) >= SPEAKING_HANGOVER {
                    self.speaking = false;
                    self.quiet_since = None;
                    Some(EngineEvent::SpeakingStopped { pts: since })
                } else {
                    None
                }
            }
            (false, false) => None,
        }
    }
}

fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_loud_audio_and_stops_after_the_hangover() {
        let mut detector = SpeakingDetector::new(SPEAKING_THRESHOLD);
        let loud = vec![0.3; 1000];
        let quiet = vec![0.0; 1000];
        let ms = Duration::from_millis;
        assert_eq!(detector.update(ms(0), &quiet), None);
        assert_eq!(
            detector.update(ms(100), &loud),
            Some(EngineEvent::SpeakingStarted { pts: ms(100) })
        );
        assert_eq!(detector.update(ms(200), &quiet), None);
        assert_eq!(
            detector.update(ms(300), &loud),
            None,
            "a short pause is not a stop"
        );
        assert_eq!(detector.update(ms(400), &quiet), None);
        assert_eq!(detector.update(ms(700), &quiet), None);
        assert_eq!(
            detector.update(ms(800), &quiet),
            Some(EngineEvent::SpeakingStopped { pts: ms(400) })
        );
        assert!(!detector.is_speaking());
    }
}
