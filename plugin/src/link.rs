//! The link to the engine: a thread of its own that connects to `livetalk run`'s frame share,
//! reconnects whenever it can, and hands every new frame and audio block to an [`Output`] with
//! timestamps from one [`Timestamps`] mapping. While no engine feeds it (none running, stuck or
//! dead) it outputs the idle placeholder instead. OBS's threads never wait on it: they only flip
//! atomics and swap settings under a short lock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use livetalk_share::{AudioPiece, FrameRead, Health, ShareClient};
use parking_lot::Mutex;

use crate::clock::Timestamps;
use crate::placeholder::placeholder_bgra;
use crate::scale::scale_bgra;

/// A video frame for OBS.
#[derive(Debug)]
pub struct VideoOut<'a> {
    pub timestamp: u64,
    pub width: u32,
    pub height: u32,
    pub bgra: &'a [u8],
    /// The idle placeholder rather than the avatar.
    pub placeholder: bool,
}

/// Mono audio for OBS.
#[derive(Debug)]
pub struct AudioOut<'a> {
    pub timestamp: u64,
    pub rate: u32,
    pub samples: &'a [f32],
}

/// Where the link's frames and audio go (the OBS source; a recorder in tests).
pub trait Output: Send {
    fn video(&mut self, frame: &VideoOut);
    fn audio(&mut self, audio: &AudioOut);
}

/// The default sync buffer: the worst lateness measured under load (70 ms on a busy 2-core
/// machine recording with x264) with room to spare.
pub const DEFAULT_SYNC_BUFFER: Duration = Duration::from_millis(100);

/// What the link is told by the source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    /// The engine's frame socket.
    pub socket: PathBuf,
    /// Scale frames to this size (`None`: the engine's size).
    pub size: Option<(u32, u32)>,
    /// Silence from a connected engine longer than this shows the placeholder.
    pub stale_after: Duration,
    /// Pause between connection attempts.
    pub retry_every: Duration,
    /// How long engine frames are held so that late ones still show in step with the voice
    /// (see `clock`: the sync buffer).
    pub sync_buffer: Duration,
    /// Hold a session's audio until OBS has shown its first frame for two video ticks
    /// ([`LinkShared::video_tick`]): see `Worker::audio_may_flow`.
    pub audio_after_render: bool,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            socket: livetalk_share::default_socket_path(),
            size: None,
            stale_after: Duration::from_secs(2),
            retry_every: Duration::from_millis(500),
            sync_buffer: DEFAULT_SYNC_BUFFER,
            audio_after_render: false,
        }
    }
}

/// How the link stands, for the properties' status line and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// No engine yet (why, in words).
    Waiting(String),
    /// Streaming from the engine with this process id.
    Connected(u32),
    /// Connected, but the engine has been silent this long.
    Stalled(Duration),
}

/// What the link and the source share.
#[derive(Debug)]
pub struct LinkShared {
    settings: Mutex<LinkSettings>,
    watching: AtomicBool,
    stopping: AtomicBool,
    state: Mutex<LinkState>,
    video_ticks: AtomicU64,
}

impl LinkShared {
    /// Counts OBS's video ticks (the source's `video_tick` callback).
    pub fn video_tick(&self) {
        self.video_ticks.fetch_add(1, Ordering::SeqCst);
    }

    pub fn set_settings(&self, settings: LinkSettings) {
        *self.settings.lock() = settings;
    }

    /// Whether OBS shows the source now (the engine may idle while nobody does).
    pub fn set_watching(&self, watching: bool) {
        self.watching.store(watching, Ordering::SeqCst);
    }

    pub fn state(&self) -> LinkState {
        self.state.lock().clone()
    }
}

/// The running link; dropping it stops the thread.
pub struct Link {
    shared: Arc<LinkShared>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    pub fn start(settings: LinkSettings, output: Box<dyn Output>) -> std::io::Result<Link> {
        let shared = Arc::new(LinkShared {
            settings: Mutex::new(settings),
            watching: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            state: Mutex::new(LinkState::Waiting("starting".into())),
            video_ticks: AtomicU64::new(0),
        });
        let worker = Worker::new(shared.clone(), output);
        let thread = std::thread::Builder::new().name("livetalk-obs-link".into()).spawn(move || worker.run())?;
        Ok(Link { shared, thread: Some(thread) })
    }

    pub fn shared(&self) -> &Arc<LinkShared> {
        &self.shared
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Audio kept while a new session waits for its first frame (its stamps depend on it).
const MAX_PENDING_AUDIO: usize = 256;

struct Worker {
    shared: Arc<LinkShared>,
    output: Box<dyn Output>,
    clock: Timestamps,
    client: Option<ShareClient>,
    last_attempt: Option<Instant>,
    /// The placeholder is on screen at this size.
    placeholder_shown: Option<(u32, u32)>,
    /// Size of the engine's last frame (the placeholder takes it when no size is set).
    engine_size: (u32, u32),
    frame: Vec<u8>,
    scaled: Vec<u8>,
    audio: Vec<AudioPiece>,
    pending_audio: Vec<AudioPiece>,
    /// While a new session's audio waits for OBS to show its first frame.
    audio_gate: AudioGate,
}

/// Why a session's audio waits: OBS places an async source's audio stream once, with the
/// offset between the last shown frame's stamp and its tick, and then only appends to it
/// (re-placing only past 70 ms). Audio sent before OBS has shown the session's first frame is
/// placed with the placeholder's offset instead, off by up to two frames for the whole session
/// (lips trailing the voice by 53 ms were measured in CI). So audio waits until the first
/// frame is due and two more ticks have passed (one to pick the frame, one to render it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AudioGate {
    Open,
    /// The session's first frame is stamped to show at this clock reading.
    UntilShown(u64),
    /// Open from this video tick count.
    UntilTick(u64),
}

impl Worker {
    fn new(shared: Arc<LinkShared>, output: Box<dyn Output>) -> Self {
        Worker {
            shared,
            output,
            clock: Timestamps::default(),
            client: None,
            last_attempt: None,
            placeholder_shown: None,
            engine_size: (1280, 720),
            frame: Vec::new(),
            scaled: Vec::new(),
            audio: Vec::new(),
            pending_audio: Vec::new(),
            audio_gate: AudioGate::Open,
        }
    }

    fn run(mut self) {
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let settings = self.shared.settings.lock().clone();
            let busy = match self.client.is_some() {
                true => self.stream(&settings),
                false => {
                    self.try_connect(&settings);
                    false
                }
            };
            if !busy {
                std::thread::sleep(Duration::from_millis(4));
            }
        }
    }

    fn set_state(&self, state: LinkState) {
        let mut current = self.shared.state.lock();
        if *current != state {
            log::info!("{}", describe(&state));
            *current = state;
        }
    }

    fn try_connect(&mut self, settings: &LinkSettings) {
        let due = self.last_attempt.is_none_or(|at| at.elapsed() >= settings.retry_every);
        if due {
            self.last_attempt = Some(Instant::now());
            match ShareClient::connect(&settings.socket, Duration::from_millis(500)) {
                Ok(client) => {
                    self.set_state(LinkState::Connected(client.writer_pid()));
                    self.client = Some(client);
                    self.clock.new_session();
                    self.pending_audio.clear();
                    return;
                }
                Err(e) => self.set_state(LinkState::Waiting(e.to_string())),
            }
        }
        self.show_placeholder(settings);
    }

    /// One round with a connected engine; true when something was read.
    fn stream(&mut self, settings: &LinkSettings) -> bool {
        let Some(client) = self.client.as_mut() else { return false };
        match client.health(settings.stale_after) {
            Health::Gone(why) => {
                self.client = None;
                self.set_state(LinkState::Waiting(why));
                self.show_placeholder(settings);
                return false;
            }
            Health::Stalled(age) => {
                self.set_state(LinkState::Stalled(age));
                self.show_placeholder(settings);
                return false;
            }
            Health::Alive => {}
        }
        let pid = client.writer_pid();
        let watching = self.shared.watching.load(Ordering::SeqCst);
        if let Err(e) = client.set_watching(watching) {
            self.client = None;
            self.set_state(LinkState::Waiting(e.to_string()));
            return false;
        }
        let mut busy = false;
        if let FrameRead::Frame(meta) = client.reader().read_frame(&mut self.frame) {
            busy = true;
            if self.placeholder_shown.take().is_some() {
                // Back from the placeholder (a stall): stamps start again from now.
                self.clock.new_session();
                self.pending_audio.clear();
            }
            if self.clock.anchor(meta.pts, settings.sync_buffer) {
                self.audio_gate = match (settings.audio_after_render, self.clock.stamp(meta.pts)) {
                    (true, Some(shown_at)) => AudioGate::UntilShown(shown_at),
                    _ => AudioGate::Open,
                };
            }
            self.engine_size = (meta.width, meta.height);
            let timestamp = self.clock.stamp(meta.pts).unwrap_or_else(|| self.clock.now());
            let (width, height, bgra) = match settings.size {
                Some((w, h)) if (w, h) != (meta.width, meta.height) => {
                    scale_bgra(&self.frame, meta.width, meta.height, w, h, &mut self.scaled);
                    (w, h, &self.scaled)
                }
                _ => (meta.width, meta.height, &self.frame),
            };
            self.output.video(&VideoOut { timestamp, width, height, bgra, placeholder: false });
            self.set_state(LinkState::Connected(pid));
        }
        let Some(client) = self.client.as_mut() else { return busy };
        client.reader().read_audio(&mut self.audio);
        let rate = client.reader().config().audio_rate;
        busy |= !self.audio.is_empty();
        self.pending_audio.append(&mut self.audio);
        if self.clock.is_anchored() && self.audio_may_flow() {
            for piece in self.pending_audio.drain(..) {
                if let Some(timestamp) = self.clock.stamp(piece.pts) {
                    self.output.audio(&AudioOut { timestamp, rate, samples: &piece.samples });
                }
            }
        } else if self.pending_audio.len() > MAX_PENDING_AUDIO {
            let extra = self.pending_audio.len() - MAX_PENDING_AUDIO;
            self.pending_audio.drain(..extra);
        }
        busy
    }

    /// Whether the session's audio may go to OBS (see [`AudioGate`]).
    fn audio_may_flow(&mut self) -> bool {
        let ticks = self.shared.video_ticks.load(Ordering::SeqCst);
        if let AudioGate::UntilShown(at) = self.audio_gate {
            if self.clock.now() >= at {
                self.audio_gate = AudioGate::UntilTick(ticks + 2);
            }
        }
        match self.audio_gate {
            AudioGate::UntilTick(tick) if ticks >= tick => self.audio_gate = AudioGate::Open,
            _ => {}
        }
        self.audio_gate == AudioGate::Open
    }

    /// Shows the placeholder (once per size: OBS keeps showing an async source's last frame).
    fn show_placeholder(&mut self, settings: &LinkSettings) {
        let size = settings.size.unwrap_or(self.engine_size);
        if self.placeholder_shown == Some(size) {
            return;
        }
        let bgra = placeholder_bgra(size.0, size.1);
        let timestamp = self.clock.now();
        self.output.video(&VideoOut { timestamp, width: size.0, height: size.1, bgra: &bgra, placeholder: true });
        self.placeholder_shown = Some(size);
        self.clock.new_session();
    }
}

fn describe(state: &LinkState) -> String {
    match state {
        LinkState::Waiting(why) => format!("no engine ({why}): showing the placeholder"),
        LinkState::Connected(pid) => format!("streaming from livetalk (pid {pid})"),
        LinkState::Stalled(age) => format!("the engine has been silent for {:.1} s: showing the placeholder", age.as_secs_f32()),
    }
}
