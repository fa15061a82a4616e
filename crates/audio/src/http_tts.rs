//! The adaptor for an external text-to-speech service over HTTP (`--tts-url`).
//!
//! The protocol (docs/tts-http.md) is the smallest one most TTS servers can be wrapped into:
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! Accept: audio/wav
//!
//! {"text": "Hello there", "voice": "en-us"}
//!
//! 200 OK, Content-Type: audio/wav (or audio/flac, audio/mpeg, audio/ogg): the speech, any rate,
//! any channel count (mixed down and resampled by livetalk)
//! anything else: an error; a text or JSON body's `error` is shown to the user
//! ```
//!
//! `voice` is the persona preset's `voice` field; the service may ignore it.

use std::path::PathBuf;
use std::time::Duration;

use crate::tts::Speaker;
use crate::{file, AudioError, Waveform};

/// Largest answer taken (64 MiB: minutes of 48 kHz stereo WAV).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct HttpTts {
    url: String,
    agent: ureq::Agent,
}

#[derive(serde::Serialize)]
struct SpeakRequest<'a> {
    text: &'a str,
    voice: &'a str,
}

impl HttpTts {
    /// Checks the URL's form (http://, or https:// in builds with `tts-https`); connects only
    /// when asked to speak.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, AudioError> {
        let bad = |reason: &str| AudioError::Tts(format!("TTS URL `{url}`: {reason}"));
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if let Some(rest) = url.strip_prefix("https://") {
            if !cfg!(feature = "tts-https") {
                return Err(bad("https:// needs a livetalk built with --features livetalk/tts-https; use http:// for a local service"));
            }
            rest
        } else {
            return Err(bad("it must start with http:// (e.g. http://127.0.0.1:5002/speak)"));
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("no host"));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(HttpTts { url: url.to_string(), agent })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Speaker for HttpTts {
    fn speak(&self, text: &str, voice: &str) -> Result<Waveform, AudioError> {
        if text.trim().is_empty() {
            return Err(AudioError::Tts("the text to speak is empty".into()));
        }
        let failed = |reason: String| AudioError::Tts(format!("the TTS service at {} {reason}", self.url));
        let body = serde_json::to_string(&SpeakRequest { text, voice }).map_err(|e| failed(e.to_string()))?;
        let mut answer = self
            .agent
            .post(&self.url)
            .header("Accept", "audio/wav")
            .content_type("application/json")
            .send(body)
            .map_err(|e| failed(format!("could not be reached: {e}")))?;
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let bytes = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| failed(format!("sent an answer that could not be read: {e}")))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&bytes);
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| text.trim().chars().take(300).collect());
            return Err(failed(format!("answered {status}: {message}")));
        }
        let ext = match content_type.split(';').next().unwrap_or("").trim() {
            "audio/flac" | "audio/x-flac" => Some("flac"),
            "audio/mpeg" | "audio/mp3" => Some("mp3"),
            "audio/ogg" => Some("ogg"),
            _ => Some("wav"),
        };
        let label = PathBuf::from(format!("the answer of the TTS service at {}", self.url));
        file::decode_mono_bytes(bytes, &label, ext)
    }

    fn describe(&self) -> String {
        format!("the TTS service at {}", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// A one-request HTTP server on loopback: returns its URL and a handle yielding the request
    /// body it received.
    fn serve_once(status: &'static str, content_type: &'static str, body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/speak", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut request = vec![0; length];
            reader.read_exact(&mut request).unwrap();
            let mut stream = stream;
            write!(stream, "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
            stream.write_all(&body).unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, handle)
    }

    fn wav_bytes(rate: u32, samples: &[f32]) -> Vec<u8> {
        let path = crate::tts::tempfile_path("http-tts-test", "wav");
        file::write_wav(&path, &Waveform { sample_rate: rate, samples: samples.to_vec() }).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        bytes
    }

    #[test]
    fn posts_text_and_voice_and_decodes_the_wav_answer() {
        let tone: Vec<f32> = (0..22_050).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let (url, server) = serve_once("200 OK", "audio/wav", wav_bytes(22_050, &tone));
        let tts = HttpTts::new(&url, Duration::from_secs(10)).unwrap();
        let wave = tts.speak("Hello \"there\"", "en-gb").unwrap();
        assert_eq!(wave.sample_rate, 22_050);
        assert_eq!(wave.samples.len(), tone.len());
        let request: serde_json::Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(request, serde_json::json!({"text": "Hello \"there\"", "voice": "en-gb"}));
    }

    #[test]
    fn errors_name_the_service_and_its_reason() {
        let (url, server) = serve_once("503 Service Unavailable", "application/json", br#"{"error":"model loading"}"#.to_vec());
        let e = HttpTts::new(&url, Duration::from_secs(10)).unwrap().speak("hi", "en").unwrap_err().to_string();
        server.join().unwrap();
        assert!(e.contains(&url) && e.contains("503") && e.contains("model loading"), "{e}");

        let (url, server) = serve_once("200 OK", "audio/wav", b"<html>not audio</html>".to_vec());
        let e = HttpTts::new(&url, Duration::from_secs(10)).unwrap().speak("hi", "en").unwrap_err().to_string();
        server.join().unwrap();
        assert!(e.contains("TTS service") && e.contains("not an audio file"), "{e}");

        // Nobody listens on a port that was just freed.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = HttpTts::new(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5)).unwrap().speak("hi", "en").unwrap_err();
        assert!(e.to_string().contains("could not be reached"), "{e}");

        assert!(HttpTts::new("ftp://x", Duration::from_secs(1)).unwrap_err().to_string().contains("http://"));
    }
}
