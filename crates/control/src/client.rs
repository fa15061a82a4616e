//! A small blocking client of the control API (for `livetalk ctl`, `livetalk say` and tests):
//! HTTP/1.1 with `Connection: close` over the Unix socket (or loopback TCP with a token), and
//! the event stream over WebSocket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::messages::ErrorResponse;

/// Where the server is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp { addr: SocketAddr, token: Option<String> },
}

/// An answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ClientError::Protocol(format!("the server's answer is not JSON ({e}): {}", self.text())))
    }

    /// The `error` of an error answer (or the whole body if it is not one).
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<ErrorResponse>(&self.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| self.text())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach livetalk at {endpoint}: {source} (is `livetalk run` running with its control API on?)")]
    Connect { endpoint: String, source: std::io::Error },
    #[error("talking to livetalk: {0}")]
    Io(#[from] std::io::Error),
    #[error("livetalk answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("unexpected answer from livetalk: {0}")]
    Protocol(String),
}

/// A stream to the server.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// The client.
#[derive(Debug, Clone)]
pub struct Client {
    pub endpoint: Endpoint,
    /// Read/write timeout of one request (`None`: wait as long as it takes).
    pub timeout: Option<Duration>,
}

impl Client {
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Client { endpoint: Endpoint::Unix(path.into()), timeout: Some(Duration::from_secs(60)) }
    }

    pub fn tcp(addr: SocketAddr, token: Option<String>) -> Self {
        Client { endpoint: Endpoint::Tcp { addr, token }, timeout: Some(Duration::from_secs(60)) }
    }

    fn describe(&self) -> String {
        match &self.endpoint {
            Endpoint::Unix(p) => p.display().to_string(),
            Endpoint::Tcp { addr, .. } => addr.to_string(),
        }
    }

    pub fn connect(&self) -> Result<Stream, ClientError> {
        let connect_error = |source| ClientError::Connect { endpoint: self.describe(), source };
        let stream = match &self.endpoint {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path).map_err(connect_error)?;
                s.set_read_timeout(self.timeout)?;
                s.set_write_timeout(self.timeout)?;
                Stream::Unix(s)
            }
            Endpoint::Tcp { addr, .. } => {
                let s = TcpStream::connect(addr).map_err(connect_error)?;
                s.set_read_timeout(self.timeout)?;
                s.set_write_timeout(self.timeout)?;
                Stream::Tcp(s)
            }
        };
        Ok(stream)
    }

    fn token(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Tcp { token, .. } => token.as_deref(),
            Endpoint::Unix(_) => None,
        }
    }

    /// One raw request; any status comes back as a response.
    pub fn request(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Result<HttpResponse, ClientError> {
        let mut stream = self.connect()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if let Some(token) = self.token() {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        // The server may answer (413, 415) before reading a large body and close: keep its answer.
        let sent = stream.write_all(body).and_then(|_| stream.flush());
        let mut raw = Vec::new();
        let read = stream.read_to_end(&mut raw);
        if raw.is_empty() {
            sent?;
            read?;
        }
        parse_response(&raw)
    }

    /// A request whose 2xx JSON answer is returned; other statuses become [`ClientError::Status`].
    pub fn call(&self, method: &str, path: &str, body: Option<&impl Serialize>) -> Result<serde_json::Value, ClientError> {
        let response = match body {
            Some(body) => {
                let json = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
                self.request(method, path, Some("application/json"), &json)?
            }
            None => self.request(method, path, None, &[])?,
        };
        checked(response)?.json()
    }

    /// Pushes audio (`audio/wav` or `audio/L16;rate=16000`).
    pub fn push_audio(&self, content_type: &str, body: &[u8]) -> Result<serde_json::Value, ClientError> {
        checked(self.request("POST", "/v1/audio", Some(content_type), body)?)?.json()
    }

    /// Opens the event stream; read it with [`Events::next_event`].
    pub fn events(&self) -> Result<Events, ClientError> {
        let stream = self.connect()?;
        // Events may be minutes apart: no read timeout on the stream itself.
        match &stream {
            Stream::Unix(s) => s.set_read_timeout(None)?,
            Stream::Tcp(s) => s.set_read_timeout(None)?,
        }
        let mut request = tungstenite::client::IntoClientRequest::into_client_request("ws://localhost/v1/events")
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if let Some(token) = self.token() {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::Protocol("the token is not a valid header value".into()))?;
            request.headers_mut().insert("Authorization", value);
        }
        let (socket, _) = tungstenite::client::client(request, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response)) => ClientError::Status {
                status: response.status().as_u16(),
                message: response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            },
            other => ClientError::Protocol(format!("opening the event stream: {other}")),
        })?;
        Ok(Events { socket })
    }
}

/// The event stream.
pub struct Events {
    socket: tungstenite::WebSocket<Stream>,
}

impl Events {
    /// Gives up reading after `timeout` (a guard against a server that never sends).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        match self.socket.get_ref() {
            Stream::Unix(s) => s.set_read_timeout(timeout)?,
            Stream::Tcp(s) => s.set_read_timeout(timeout)?,
        }
        Ok(())
    }

    /// The next event as JSON (`None` when the server closed the stream).
    pub fn next_event(&mut self) -> Result<Option<serde_json::Value>, ClientError> {
        loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    return serde_json::from_str(text.as_str())
                        .map(Some)
                        .map_err(|e| ClientError::Protocol(format!("bad event ({e}): {text}")))
                }
                Ok(tungstenite::Message::Close(_)) => return Ok(None),
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => return Ok(None),
                Err(e) => return Err(ClientError::Protocol(format!("reading events: {e}"))),
            }
        }
    }

    /// Reads events until one satisfies `want`, returning it (`None`: the stream ended).
    pub fn wait_for(&mut self, want: impl Fn(&serde_json::Value) -> bool) -> Result<Option<serde_json::Value>, ClientError> {
        while let Some(event) = self.next_event()? {
            if want(&event) {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }
}

fn checked(response: HttpResponse) -> Result<HttpResponse, ClientError> {
    if (200..300).contains(&response.status) {
        Ok(response)
    } else {
        Err(ClientError::Status { status: response.status, message: response.error_message() })
    }
}

/// Parses a whole HTTP/1.1 answer (Content-Length, chunked, or up to the close).
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, ClientError> {
    let bad = |m: &str| ClientError::Protocol(m.to_string());
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no complete HTTP header"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("the HTTP header is not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line `{status_line}`")))?;
    let mut content_type = None;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-type" => content_type = Some(value.to_string()),
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let rest = &raw[split + 4..];
    let body = if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let end = rest[at..].windows(2).position(|w| w == b"\r\n").ok_or_else(|| bad("truncated chunk"))? + at;
            let size_text = std::str::from_utf8(&rest[at..end]).map_err(|_| bad("bad chunk size"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            let start = end + 2;
            let stop = start.checked_add(size).filter(|&s| s <= rest.len()).ok_or_else(|| bad("truncated chunk"))?;
            body.extend_from_slice(&rest[start..stop]);
            at = stop + 2;
            if at > rest.len() {
                return Err(bad("truncated chunk"));
            }
        }
        body
    } else {
        match length {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(_) => return Err(bad("the answer is shorter than its Content-Length")),
            None => rest.to_vec(),
        }
    };
    Ok(HttpResponse { status, content_type, body })
}
