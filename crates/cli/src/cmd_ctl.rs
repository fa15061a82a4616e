//! `livetalk ctl …` and `livetalk say`: a running `livetalk run` controlled over its local API
//! (crates/control), plus the options `livetalk run` serves that API with.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use livetalk_control::client::Client;
use livetalk_control::{ControlOptions, ControlServer};
use livetalk_core::PersonaLibrary;
use livetalk_engine::service::EngineControl;
use serde_json::{json, Value};

/// `livetalk run`'s control API options.
#[derive(clap::Args, Clone, Debug)]
pub struct ControlArgs {
    /// Serve the local control API (`livetalk ctl`) on a Unix socket (the default).
    #[arg(long, overrides_with = "no_control")]
    pub control: bool,
    /// Do not serve the control API.
    #[arg(long)]
    pub no_control: bool,
    /// The control socket (default: $XDG_RUNTIME_DIR/livetalk/control.sock).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Also serve the control API on this loopback TCP address (e.g. 127.0.0.1:7860); every
    /// request must carry `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    pub control_tcp: Option<SocketAddr>,
    /// The file holding the TCP token (first line, at least 16 characters).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// Starts the control API for `livetalk run` (unless `--no-control`); keep the server alive.
pub fn start_server(args: &ControlArgs, control: EngineControl, library: PersonaLibrary) -> Result<Option<ControlServer>> {
    if args.no_control {
        return Ok(None);
    }
    let token = match &args.token_file {
        Some(path) => Some(livetalk_control::read_token_file(path)?),
        None => None,
    };
    let options = ControlOptions { socket: args.control_socket.clone(), tcp: args.control_tcp, token };
    let server = livetalk_control::serve(control, library, options).context("starting the control API")?;
    eprintln!("livetalk: control API on {}{}", server.socket_path().display(),
        server.tcp_addr().map(|a| format!(" and http://{a} (token required)")).unwrap_or_default());
    Ok(Some(server))
}

/// Where `livetalk ctl` finds the running livetalk.
#[derive(clap::Args, Clone, Debug)]
pub struct ConnectArgs {
    /// The control socket (default: $XDG_RUNTIME_DIR/livetalk/control.sock).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// Use loopback TCP instead of the socket (needs --token-file).
    #[arg(long, value_name = "ADDR", global = true, requires = "token_file")]
    pub tcp: Option<SocketAddr>,
    /// The TCP token file.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

impl ConnectArgs {
    fn client(&self) -> Result<Client> {
        Ok(match self.tcp {
            Some(addr) => {
                let token = match &self.token_file {
                    Some(path) => Some(livetalk_control::read_token_file(path)?),
                    None => None,
                };
                Client::tcp(addr, token)
            }
            None => Client::unix(self.socket.clone().unwrap_or_else(livetalk_control::default_socket_path)),
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// The engine status (JSON).
    Status,
    /// The personas that can be switched to.
    Personas,
    /// Switch to another persona (cross-fades once it is ready).
    Switch { name: String },
    /// Speak text in the current persona's voice.
    Say {
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Replace incoming audio by silence.
    Mute,
    Unmute,
    /// Stop rendering (the last frame stays on the camera).
    Pause,
    Resume,
    /// Push an audio file (WAV as is; FLAC, MP3, OGG decoded here) onto the timeline.
    Push { file: PathBuf },
    /// Print events as JSON lines (speaking, persona changes, fps, errors) until Ctrl+C.
    Events {
        /// Stop after this many events (the first, `hello`, included).
        #[arg(long)]
        count: Option<usize>,
    },
}

/// `livetalk say TEXT`: the shortcut for `livetalk ctl say TEXT`.
#[derive(clap::Args, Debug)]
pub struct SayArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
}

pub fn say(args: SayArgs) -> Result<()> {
    ctl(CtlArgs { connect: args.connect, command: CtlCommand::Say { text: args.text } })
}

pub fn ctl(args: CtlArgs) -> Result<()> {
    let client = args.connect.client()?;
    let none = None::<&()>;
    match args.command {
        CtlCommand::Status => {
            let status = client.call("GET", "/v1/status", none)?;
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        CtlCommand::Personas => {
            let answer = client.call("GET", "/v1/personas", none)?;
            let current = answer["current"].as_str().unwrap_or("");
            for p in answer["personas"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap_or("?");
                let marker = if name == current { "*" } else { " " };
                let hotkey = p["hotkey"].as_str().map(|h| format!("  [{h}]")).unwrap_or_default();
                println!("{marker} {name:<16} {}  (voice {}){hotkey}", p["display_name"].as_str().unwrap_or(""), p["voice"].as_str().unwrap_or(""));
            }
        }
        CtlCommand::Switch { name } => done(client.call("POST", "/v1/persona", Some(&json!({ "name": name })))?),
        CtlCommand::Say { text } => done(client.call("POST", "/v1/say", Some(&json!({ "text": text.join(" ") })))?),
        CtlCommand::Mute => done(client.call("POST", "/v1/mute", Some(&json!({ "muted": true })))?),
        CtlCommand::Unmute => done(client.call("POST", "/v1/mute", Some(&json!({ "muted": false })))?),
        CtlCommand::Pause => done(client.call("POST", "/v1/pause", none)?),
        CtlCommand::Resume => done(client.call("POST", "/v1/resume", none)?),
        CtlCommand::Push { file } => {
            let is_wav = file.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("wav"));
            let answer = if is_wav {
                let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                client.push_audio("audio/wav", &bytes)?
            } else {
                let wave = livetalk_audio::file::read_mono(&file)?.to_engine_rate()?;
                client.push_audio("audio/L16;rate=16000", &livetalk_control::audio::pcm_bytes(&wave.samples))?
            };
            println!(
                "pushed {:.2} s of audio at {:.2} s on the timeline",
                answer["duration"].as_f64().unwrap_or(0.0),
                answer["pts"].as_f64().unwrap_or(0.0)
            );
        }
        CtlCommand::Events { count } => {
            let mut events = client.events()?;
            let mut seen = 0;
            while count.is_none_or(|c| seen < c) {
                let Some(event) = events.next_event()? else { break };
                println!("{}", serde_json::to_string(&event)?);
                seen += 1;
            }
            if count.is_some_and(|c| seen < c) {
                bail!("the event stream closed after {seen} events");
            }
        }
    }
    Ok(())
}

fn done(answer: Value) {
    println!("{}", answer["detail"].as_str().unwrap_or("ok"));
}
