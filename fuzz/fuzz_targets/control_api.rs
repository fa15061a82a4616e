//! Everything the control API parses from a peer: JSON request bodies, the audio route's
//! Content-Type and body (raw PCM, WAV with resampling), and on the client side the HTTP answer
//! and the WebSocket event text. The first byte picks the parser; none may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use livetalk_control::audio::{audio_format, decode, AudioFormat};
use livetalk_control::client::parse_response;
use livetalk_control::messages::{parse_json, MuteRequest, SayRequest, SwitchRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    match selector % 6 {
        0 => {
            let _ = parse_json::<SwitchRequest>(body);
            let _ = parse_json::<SayRequest>(body);
            let _ = parse_json::<MuteRequest>(body);
        }
        1 => {
            let _ = audio_format(Some(&String::from_utf8_lossy(body)));
        }
        2 => {
            let _ = decode(AudioFormat::Pcm16k, body);
        }
        3 => {
            if let Ok(samples) = decode(AudioFormat::Wav, body) {
                assert!(samples.iter().all(|s| s.is_finite()), "a decoded WAV sample is not finite");
            }
        }
        4 => {
            let _ = parse_response(body);
        }
        _ => {
            // What `Events::next_event` does with a text message.
            if let Ok(text) = std::str::from_utf8(body) {
                let _ = serde_json::from_str::<serde_json::Value>(text);
            }
        }
    }
});
