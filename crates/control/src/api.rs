//! The routes. Every answer is JSON; every error is `{"error": "..."}` with a fitting status.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use livetalk_core::PersonaLibrary;
use livetalk_engine::engine::EngineError;
use livetalk_engine::service::EngineControl;

use crate::audio::{self, AudioBodyError, MAX_AUDIO_BODY};
use crate::messages::{
    parse_json, AudioResponse, ErrorResponse, EventMessage, Hello, MuteRequest, OkResponse,
    PersonaInfo, PersonasResponse, SayRequest, SwitchRequest, MAX_JSON_BODY,
};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub control: EngineControl,
    pub library: Arc<PersonaLibrary>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorResponse { error: self.message })).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::InvalidInput(m) if m.contains("no text-to-speech") => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            EngineError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The router for one engine service.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/personas", get(personas))
        .route("/v1/persona", post(switch))
        .route("/v1/say", post(say))
        .route("/v1/mute", post(mute))
        .route("/v1/pause", post(pause))
        .route("/v1/resume", post(resume))
        .route("/v1/audio", post(push_audio).layer(DefaultBodyLimit::max(MAX_AUDIO_BODY)))
        .route("/v1/events", get(events))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route: see docs/openapi.yaml (GET /v1/status, /v1/personas, /v1/events; POST /v1/persona, /v1/say, /v1/audio, /v1/mute, /v1/pause, /v1/resume)")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method: see docs/openapi.yaml")
        })
        .with_state(state)
}

/// The body, or an error answer naming why it could not be read (too large: 413).
fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, format!("the request body is larger than this route takes ({limit} bytes)"))
        } else {
            ApiError::new(status, format!("cannot read the request body: {}", rejection.body_text()))
        }
    })
}

/// A JSON request body: the Content-Type must be JSON when given.
fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, raw: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let text = content_type.to_str().unwrap_or("");
        let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence != "application/json" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type `{text}` is not JSON: send application/json"),
            ));
        }
    }
    let raw = body(raw, MAX_JSON_BODY)?;
    parse_json(&raw).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.0))
}

async fn status(State(state): State<ApiState>) -> Json<livetalk_engine::service::EngineStatus> {
    Json(state.control.status())
}

async fn personas(State(state): State<ApiState>) -> Json<PersonasResponse> {
    let personas = state
        .library
        .iter()
        .map(|p| PersonaInfo {
            name: p.name.clone(),
            display_name: p.display_name.clone(),
            voice: p.voice.clone(),
            hotkey: p.hotkey.as_ref().map(|h| h.to_string()),
        })
        .collect();
    Json(PersonasResponse { current: state.control.status().persona, personas })
}

fn ok(detail: impl Into<String>) -> ApiResult<OkResponse> {
    Ok(Json(OkResponse { ok: true, detail: detail.into() }))
}

async fn switch(State(state): State<ApiState>, headers: HeaderMap, raw: Result<Bytes, BytesRejection>) -> ApiResult<OkResponse> {
    let request: SwitchRequest = json_body(&headers, raw)?;
    let persona = state.library.get(&request.name).map_err(|_| {
        let known: Vec<&str> = state.library.names().collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no persona named `{}` (known: {})", request.name, known.join(", ")),
        )
    })?;
    state.control.switch_persona(persona.clone())?;
    ok(format!("switching to {}; a persona_changed event follows its first frame", persona.name))
}

async fn say(State(state): State<ApiState>, headers: HeaderMap, raw: Result<Bytes, BytesRejection>) -> ApiResult<OkResponse> {
    let request: SayRequest = json_body(&headers, raw)?;
    state.control.say(&request.text)?;
    ok(format!("saying {} characters", request.text.chars().count()))
}

async fn mute(State(state): State<ApiState>, headers: HeaderMap, raw: Result<Bytes, BytesRejection>) -> ApiResult<OkResponse> {
    let request: MuteRequest = json_body(&headers, raw)?;
    // Muting takes effect at once (the worker may be inside a render block); the command then
    // brings the worker's own bookkeeping along.
    state.control.timeline().set_muted(request.muted);
    state.control.set_muted(request.muted)?;
    ok(if request.muted { "muted" } else { "unmuted" })
}

/// Pause and resume take no body (an empty one or `{}`).
fn no_body(raw: Result<Bytes, BytesRejection>) -> Result<(), ApiError> {
    let raw = body(raw, MAX_JSON_BODY)?;
    let text = String::from_utf8_lossy(&raw);
    let text = text.trim();
    if text.is_empty() || text == "{}" {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::BAD_REQUEST, "this route takes no request body (send none, or {})"))
    }
}

async fn pause(State(state): State<ApiState>, raw: Result<Bytes, BytesRejection>) -> ApiResult<OkResponse> {
    no_body(raw)?;
    state.control.pause()?;
    ok("paused")
}

async fn resume(State(state): State<ApiState>, raw: Result<Bytes, BytesRejection>) -> ApiResult<OkResponse> {
    no_body(raw)?;
    state.control.resume()?;
    ok("resumed")
}

async fn push_audio(State(state): State<ApiState>, headers: HeaderMap, raw: Result<Bytes, BytesRejection>) -> ApiResult<AudioResponse> {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)"));
    let format = audio::audio_format(content_type).map_err(audio_error)?;
    let raw = body(raw, MAX_AUDIO_BODY)?;
    // Decoding and resampling a large file is CPU work: off the async threads.
    let samples = tokio::task::spawn_blocking(move || audio::decode(format, &raw))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding the audio failed: {e}")))?
        .map_err(audio_error)?;
    let pts = state.control.push_audio(&samples)?;
    Ok(Json(AudioResponse {
        pts: pts.as_secs_f64(),
        samples: samples.len(),
        duration: samples.len() as f64 / livetalk_audio::ENGINE_RATE as f64,
    }))
}

fn audio_error(e: AudioBodyError) -> ApiError {
    match e {
        AudioBodyError::Unsupported(m) => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
        AudioBodyError::Bad(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
    }
}

async fn events(State(state): State<ApiState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.max_message_size(64 * 1024).on_upgrade(move |socket| forward_events(state, socket))
}

/// Sends `hello` (status at subscription), then every engine event, until the client leaves.
async fn forward_events(state: ApiState, mut socket: WebSocket) {
    let events = state.control.events();
    let hello = EventMessage::Hello(Hello { event: "hello", status: state.control.status() });
    let (tx, mut rx) = tokio::sync::mpsc::channel::<EventMessage>(256);
    // The engine's channel blocks: a small thread bridges it until the socket side goes away.
    let bridge = std::thread::Builder::new().name("livetalk-ctl-events".into()).spawn(move || {
        while !tx.is_closed() {
            match events.recv_timeout(Duration::from_millis(200)) {
                Ok(event) => {
                    if tx.blocking_send(EventMessage::Engine(event)).is_err() {
                        break;
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    if bridge.is_err() {
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    if send_json(&mut socket, &hello).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => {
                    if send_json(&mut socket, &event).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                // Pings are answered by the socket itself; anything else the client says is ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn send_json(socket: &mut WebSocket, message: &EventMessage) -> Result<(), ()> {
    let text = serde_json::to_string(message).map_err(|_| ())?;
    socket.send(Message::Text(text.into())).await.map_err(|_| ())
}
