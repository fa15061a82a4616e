//! The engine's side: a Unix socket that hands each client the ring's memfd, and one writer
//! thread that copies the bus's newest frame (as BGRA) and the engine's audio into the ring.
//!
//! Each client holds a bus subscriber for as long as it is connected; it says whether its
//! consumer watches (`watching 1` / `watching 0` lines), so a hidden OBS source lets the engine
//! idle like an unread camera. The writer only reads the bus (never watching, never blocking the
//! engine) and does no work while no client is connected.

use std::io::{BufRead, BufReader, IoSlice, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;
use livetalk_core::convert::convert_buffer;
use livetalk_core::{AudioChunk, ColorSpec, FrameBus, PixelFormat, VideoFrame};
use parking_lot::Mutex;

use crate::ring::ShareWriter;
use crate::{RingConfig, ShareError, HELLO};

/// Where and how to serve.
#[derive(Debug, Clone, Default)]
pub struct ShareOptions {
    /// The socket; `None`: [`crate::default_socket_path`].
    pub socket: Option<PathBuf>,
    pub ring: RingConfig,
}

/// A running frame server; dropping it (or [`ShareServer::stop`]) closes the ring, disconnects
/// the clients and removes the socket.
pub struct ShareServer {
    socket: PathBuf,
    stopping: Arc<AtomicBool>,
    clients: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl ShareServer {
    /// Binds the socket now (errors come back here) and serves on threads of its own. `audio`
    /// is the engine's audio (a timeline tap), written to the ring with its pts.
    pub fn start(bus: &FrameBus, audio: Option<Receiver<AudioChunk>>, options: ShareOptions) -> Result<Self, ShareError> {
        let socket = options.socket.clone().unwrap_or_else(crate::default_socket_path);
        let listener = bind_private(&socket)?;
        let writer = ShareWriter::create(options.ring)?;
        let fd = writer.fd().try_clone_to_owned().map_err(|e| ShareError::Io { what: "sharing the memfd".into(), source: e })?;
        let stopping = Arc::new(AtomicBool::new(false));
        let clients = Arc::new(AtomicUsize::new(0));
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| ShareError::Io { what: format!("starting the {name} thread"), source: e })
        };
        let pump = FramePump { writer, bus: bus.clone(), audio, stopping: stopping.clone(), clients: clients.clone() };
        let accept = Acceptor { listener, fd: Arc::new(fd), bus: bus.clone(), stopping: stopping.clone(), clients: clients.clone(), sessions: Default::default() };
        let threads = vec![spawn("livetalk-share", Box::new(move || pump.run()))?, spawn("livetalk-share-accept", Box::new(move || accept.run()))?];
        Ok(ShareServer { socket, stopping, clients, threads })
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for ShareServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Copies the bus and the audio into the ring.
struct FramePump {
    writer: ShareWriter,
    bus: FrameBus,
    audio: Option<Receiver<AudioChunk>>,
    stopping: Arc<AtomicBool>,
    clients: Arc<AtomicUsize>,
}

impl FramePump {
    fn run(mut self) {
        let subscriber = self.bus.subscribe();
        subscriber.set_watching(false);
        let mut seen = 0;
        let mut last: Option<Arc<VideoFrame>> = None;
        let mut complained = false;
        while !self.stopping.load(Ordering::SeqCst) {
            // Short waits: the audio is drained between frames.
            let newer = subscriber.wait_newer(seen, Duration::from_millis(10));
            let serving = self.clients.load(Ordering::SeqCst) > 0;
            if let Some((seq, frame)) = newer {
                seen = seq;
                // The keeper republishes the same frame to keep sinks fed: copy it once.
                let repeated = last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &frame));
                if serving && !repeated {
                    if let Err(e) = self.write(&frame) {
                        if !complained {
                            tracing::warn!("frame share: {e}");
                            complained = true;
                        }
                    }
                }
                last = Some(frame);
            }
            if let Some(audio) = &self.audio {
                for chunk in audio.try_iter() {
                    if serving {
                        self.writer.write_audio(chunk.pts, &mono(&chunk));
                    }
                }
            }
            if !serving {
                last = None; // a client that connects later gets the current frame
            }
            self.writer.beat();
        }
        self.writer.close();
    }

    fn write(&mut self, frame: &VideoFrame) -> Result<u64, ShareError> {
        let mut failed = None;
        let number = self.writer.write_frame(frame.width, frame.height, frame.pts, |dst| match frame.format {
            // The core conversions make RGBA opaque; OBS keeps alpha, so swap by hand.
            PixelFormat::Rgba if frame.data.len() == dst.len() => {
                for (d, s) in dst.chunks_exact_mut(4).zip(frame.data.chunks_exact(4)) {
                    d.copy_from_slice(&[s[2], s[1], s[0], s[3]]);
                }
            }
            PixelFormat::Bgra if frame.data.len() == dst.len() => dst.copy_from_slice(&frame.data),
            _ => {
                if let Err(e) = convert_buffer(&frame.data, frame.format, dst, PixelFormat::Bgra, frame.width, frame.height, ColorSpec::default()) {
                    dst.fill(0);
                    failed = Some(e);
                }
            }
        })?;
        match failed {
            Some(e) => Err(ShareError::Frame(e.to_string())),
            None => Ok(number),
        }
    }
}

fn mono(chunk: &AudioChunk) -> Vec<f32> {
    let channels = chunk.channels.max(1) as usize;
    if channels == 1 {
        return chunk.samples.clone();
    }
    chunk.samples.chunks_exact(channels).map(|f| f.iter().sum::<f32>() / channels as f32).collect()
}

/// Accepts clients: each gets the hello line with the memfd, and a thread that follows its
/// `watching` lines until it disconnects.
struct Acceptor {
    listener: UnixListener,
    fd: Arc<std::os::fd::OwnedFd>,
    bus: FrameBus,
    stopping: Arc<AtomicBool>,
    clients: Arc<AtomicUsize>,
    sessions: Mutex<Vec<JoinHandle<()>>>,
}

impl Acceptor {
    fn run(self) {
        while !self.stopping.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = self.welcome(stream) {
                        tracing::warn!("frame share: a client could not be served: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    tracing::warn!("frame share: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            self.sessions.lock().retain(|s| !s.is_finished());
        }
        for session in self.sessions.lock().drain(..) {
            let _ = session.join();
        }
    }

    fn welcome(&self, stream: UnixStream) -> std::io::Result<()> {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(Duration::from_secs(1)))?;
        let fds = [self.fd.as_fd()];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        sendmsg(&stream, &[IoSlice::new(HELLO.as_bytes())], &mut control, SendFlags::NOSIGNAL)?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        let subscriber = self.bus.subscribe();
        subscriber.set_watching(false);
        self.clients.fetch_add(1, Ordering::SeqCst);
        let clients = self.clients.clone();
        let stopping = self.stopping.clone();
        let session = std::thread::Builder::new().name("livetalk-share-client".into()).spawn(move || {
            let mut lines = BufReader::new(&stream);
            let mut line = String::new();
            while !stopping.load(Ordering::SeqCst) {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) => break, // the client went away
                    Ok(_) => match line.trim() {
                        "watching 1" => subscriber.set_watching(true),
                        "watching 0" => subscriber.set_watching(false),
                        other => tracing::debug!("frame share: ignoring `{other}` from a client"),
                    },
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            let _ = (&stream).flush();
            drop(subscriber);
            clients.fetch_sub(1, Ordering::SeqCst);
        })?;
        self.sessions.lock().push(session);
        Ok(())
    }
}

/// Creates the folder (0700), clears a stale socket, binds, and makes the socket 0600.
fn bind_private(path: &Path) -> Result<UnixListener, ShareError> {
    let io = |what: String| move |source| ShareError::Io { what, source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let uid = rustix::process::getuid().as_raw();
    let meta = std::fs::metadata(dir).map_err(io(format!("reading {}", dir.display())))?;
    if meta.uid() != uid {
        return Err(ShareError::Setup(format!("{} belongs to another user: choose another socket folder (XDG_RUNTIME_DIR)", dir.display())));
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ShareError::Setup(format!("another livetalk already shares frames on {} (stop it, or run this one with --no-share)", path.display())));
        }
        std::fs::remove_file(path).map_err(io(format!("removing the stale socket {}", path.display())))?;
    }
    let listener = UnixListener::bind(path).map_err(io(format!("listening on {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(format!("making {} private", path.display())))?;
    listener.set_nonblocking(true).map_err(io("setting up the frame socket".into()))?;
    Ok(listener)
}
