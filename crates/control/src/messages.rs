//! The JSON the control API speaks: requests (parsed strictly: unknown fields, missing fields and
//! wrong types are refused with an error that names the field), responses and WebSocket events.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[cfg(feature = "server")]
use livetalk_engine::service::{EngineEvent, EngineStatus};

/// Largest JSON request body (bytes).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// `POST /v1/persona`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    pub name: String,
}

/// `POST /v1/say`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SayRequest {
    pub text: String,
}

/// `POST /v1/mute`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuteRequest {
    pub muted: bool,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorResponse {
    pub error: String,
}

/// A command was accepted (`ok` is always true; `detail` says what happens next).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OkResponse {
    pub ok: bool,
    pub detail: String,
}

/// One persona of `GET /v1/personas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaInfo {
    pub name: String,
    pub display_name: String,
    pub voice: String,
    pub hotkey: Option<String>,
}

/// `GET /v1/personas`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonasResponse {
    /// The persona being rendered now.
    pub current: String,
    pub personas: Vec<PersonaInfo>,
}

/// `POST /v1/audio`: where the audio landed on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioResponse {
    /// Timeline position of the first sample, seconds.
    pub pts: f64,
    /// Samples pushed (16 kHz mono, after decoding and resampling).
    pub samples: usize,
    /// Their length, seconds.
    pub duration: f64,
}

/// What `GET /v1/events` sends: first a `hello` with the status at subscription time, then every
/// engine event (`{"event": "speaking_started", ...}`, see [`EngineEvent`]).
#[cfg(feature = "server")]
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EventMessage {
    Hello(Hello),
    Engine(EngineEvent),
}

#[cfg(feature = "server")]
#[derive(Debug, Clone, Serialize)]
pub struct Hello {
    /// Always "hello".
    pub event: &'static str,
    pub status: EngineStatus,
}

/// A request body that could not be used; `Display` is the one-line answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// Parses a JSON request body strictly. The error names the field at fault (`field `muted`:
/// invalid type: string "yes", expected a boolean`), an unknown field, or a missing one.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    if body.is_empty() {
        return Err(BadRequest("the request body is empty: send a JSON object".into()));
    }
    if body.len() > MAX_JSON_BODY {
        return Err(BadRequest(format!(
            "the request body is {} bytes; JSON requests may be at most {MAX_JSON_BODY}",
            body.len()
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| BadRequest(format!("the request body is not UTF-8 text: {e}")))?;
    // Anything but an object gets one clear sentence instead of serde's "expected struct".
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| BadRequest(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(BadRequest(format!(
            "the request body must be a JSON object, not {}",
            json_kind(&value)
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            BadRequest(inner)
        } else {
            BadRequest(format!("field `{path}`: {inner}"))
        }
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_requests_parse() {
        assert_eq!(parse_json::<SwitchRequest>(br#"{"name":"kai"}"#).unwrap().name, "kai");
        assert!(parse_json::<MuteRequest>(br#"{ "muted": true }"#).unwrap().muted);
        assert_eq!(parse_json::<SayRequest>(br#"{"text":"hi"}"#).unwrap().text, "hi");
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<MuteRequest>(br#"{"muted":"yes"}"#).unwrap_err().0;
        assert!(e.starts_with("field `muted`: invalid type: string \"yes\", expected a boolean"), "{e}");
        let e = parse_json::<SwitchRequest>(br#"{"name":"kai","extra":1}"#).unwrap_err().0;
        assert!(e.contains("unknown field `extra`") && e.contains("expected `name`"), "{e}");
        let e = parse_json::<SayRequest>(br#"{}"#).unwrap_err().0;
        assert!(e.contains("missing field `text`"), "{e}");
        let e = parse_json::<SayRequest>(br#"{"text":"#).unwrap_err().0;
        assert!(e.starts_with("the request body is not valid JSON"), "{e}");
        let e = parse_json::<SayRequest>(b"[1]").unwrap_err().0;
        assert_eq!(e, "the request body must be a JSON object, not an array");
        let e = parse_json::<SayRequest>(b"").unwrap_err().0;
        assert!(e.contains("empty"), "{e}");
        let e = parse_json::<SayRequest>(b"\xff\xfe").unwrap_err().0;
        assert!(e.contains("not UTF-8"), "{e}");
    }
}
