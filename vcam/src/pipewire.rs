//! A PipeWire camera node (feature `pipewire`): a `Video/Source` stream with `media.role=Camera`,
//! so portal-based apps (browsers through xdg-desktop-portal's Camera portal), OBS's PipeWire
//! camera source and `pw-v4l2` can read livetalk without any kernel module.
//!
//! The node drives its own graph: every frame the pump writes triggers `process` at once (the
//! pump paces them at the camera's frame rate), so a frame leaves as soon as it is due rather
//! than up to a frame period later on a free-running timer; lip-sync counts on that. A linked
//! consumer that is streaming counts as a reader; the pump turns that into [`crate::pump::Demand`].

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pipewire as pw;
use pw::properties::properties;
use pw::spa;
use spa::pod::{Object, Pod, Property, Value};

use crate::error::{Result, VcamError};
use crate::pump::CameraOutput;
use crate::v4l2::CameraFormat;

/// What the node offers and how it is named in PipeWire.
#[derive(Clone, Debug)]
pub struct PipeWireConfig {
    pub width: u32,
    pub height: u32,
    pub format: CameraFormat,
    pub fps: u32,
    /// `node.name` (what `target-object=` and pw-cli use).
    pub node_name: String,
    /// `node.description` (what apps show in their camera list).
    pub description: String,
}

impl Default for PipeWireConfig {
    fn default() -> Self {
        PipeWireConfig {
            width: 1280,
            height: 720,
            format: CameraFormat::Yuyv,
            fps: 30,
            node_name: "livetalk".into(),
            description: "livetalk avatar".into(),
        }
    }
}

/// State shared between the pump (writer) and the PipeWire loop thread.
struct Shared {
    latest: Mutex<Vec<u8>>,
    streaming: AtomicBool,
    node_id: AtomicU32,
    failure: Mutex<Option<String>>,
}

/// The running node. Dropping it disconnects the stream and ends the loop thread.
pub struct PipeWireCamera {
    shared: Arc<Shared>,
    quit: pw::channel::Sender<()>,
    /// Tells the loop a new frame is there.
    written: pw::channel::Sender<()>,
    thread: Option<JoinHandle<()>>,
    frame_len: usize,
    name: String,
}

const NO_NODE: u32 = u32::MAX;

impl PipeWireCamera {
    /// Connects to the user's PipeWire daemon and publishes the node; returns once the stream
    /// is connected (or with the reason it could not be).
    pub fn start(config: PipeWireConfig) -> Result<Self> {
        if !config.width.is_multiple_of(2) || !config.height.is_multiple_of(2) || config.width == 0 || config.height == 0 {
            return Err(VcamError::PipeWire(format!(
                "node {}: size {}x{} must be even and non-zero",
                config.node_name, config.width, config.height
            )));
        }
        let frame_len = config.format.frame_len(config.width, config.height);
        let shared = Arc::new(Shared {
            latest: Mutex::new(vec![0; frame_len]),
            streaming: AtomicBool::new(false),
            node_id: AtomicU32::new(NO_NODE),
            failure: Mutex::new(None),
        });
        let (ready_tx, ready_rx) = mpsc::channel::<std::result::Result<(), String>>();
        let (quit, quit_rx) = pw::channel::channel::<()>();
        let (written, written_rx) = pw::channel::channel::<()>();
        let thread_shared = shared.clone();
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("livetalk-pipewire".into())
            .spawn(move || {
                if let Err(message) = run_loop(&thread_config, thread_shared.clone(), quit_rx, written_rx, &ready_tx) {
                    let _ = ready_tx.send(Err(message.clone()));
                    if let Ok(mut failure) = thread_shared.failure.lock() {
                        *failure = Some(message);
                    }
                }
            })
            .map_err(|e| VcamError::PipeWire(format!("cannot start the PipeWire thread: {e}")))?;
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(VcamError::PipeWire(message)),
            Err(_) => return Err(VcamError::PipeWire("PipeWire did not answer within 10 s".into())),
        }
        Ok(PipeWireCamera { shared, quit, written, thread: Some(thread), frame_len, name: config.node_name })
    }

    /// The node's id in the PipeWire graph, once the server assigned one.
    pub fn node_id(&self) -> Option<u32> {
        Some(self.shared.node_id.load(Ordering::SeqCst)).filter(|&id| id != NO_NODE)
    }

    fn check_failed(&self) -> Result<()> {
        match self.shared.failure.lock().ok().and_then(|f| f.clone()) {
            Some(message) => Err(VcamError::PipeWire(message)),
            None => Ok(()),
        }
    }
}

impl CameraOutput for PipeWireCamera {
    fn write_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.check_failed()?;
        if frame.len() != self.frame_len {
            return Err(VcamError::PipeWire(format!(
                "node {}: frame has {} bytes, the negotiated format needs {}",
                self.name,
                frame.len(),
                self.frame_len
            )));
        }
        if let Ok(mut latest) = self.shared.latest.lock() {
            latest.copy_from_slice(frame);
        }
        let _ = self.written.send(());
        Ok(())
    }

    fn has_readers(&mut self) -> Result<bool> {
        self.check_failed()?;
        Ok(self.shared.streaming.load(Ordering::SeqCst))
    }
}

impl Drop for PipeWireCamera {
    fn drop(&mut self) {
        let _ = self.quit.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const CONNECT_FIX: &str = "is PipeWire running for this user? Fix: systemctl --user start pipewire wireplumber \
     (Debian: sudo apt install pipewire wireplumber)";

fn run_loop(
    config: &PipeWireConfig,
    shared: Arc<Shared>,
    quit_rx: pw::channel::Receiver<()>,
    written_rx: pw::channel::Receiver<()>,
    ready: &mpsc::Sender<std::result::Result<(), String>>,
) -> std::result::Result<(), String> {
    pw::init();
    let mainloop = pw::main_loop::MainLoopRc::new(None).map_err(|e| format!("PipeWire main loop: {e}"))?;
    let context = pw::context::ContextRc::new(&mainloop, None).map_err(|e| format!("PipeWire context: {e}"))?;
    let core = context.connect_rc(None).map_err(|e| format!("cannot connect to PipeWire ({e}): {CONNECT_FIX}"))?;

    let stream = pw::stream::StreamRc::new(
        core,
        &config.node_name,
        properties! {
            *pw::keys::MEDIA_TYPE => "Video",
            *pw::keys::MEDIA_CATEGORY => "Capture",
            *pw::keys::MEDIA_ROLE => "Camera",
            *pw::keys::MEDIA_CLASS => "Video/Source",
            *pw::keys::NODE_NAME => config.node_name.as_str(),
            *pw::keys::NODE_DESCRIPTION => config.description.as_str(),
        },
    )
    .map_err(|e| format!("PipeWire stream {}: {e}", config.node_name))?;

    let (stride, size) = match config.format {
        CameraFormat::Yuyv => (config.width * 2, config.format.frame_len(config.width, config.height)),
        CameraFormat::I420 => (config.width, config.format.frame_len(config.width, config.height)),
    };
    let process_shared = shared.clone();
    let state_shared = shared.clone();
    let _listener = stream
        .add_local_listener_with_user_data(())
        .state_changed(move |stream, _, _old, new| {
            let streaming = matches!(new, pw::stream::StreamState::Streaming);
            state_shared.streaming.store(streaming, Ordering::SeqCst);
            state_shared.node_id.store(stream.node_id(), Ordering::SeqCst);
            if let pw::stream::StreamState::Error(message) = new {
                if let Ok(mut failure) = state_shared.failure.lock() {
                    *failure = Some(format!("PipeWire stream error: {message}"));
                }
            }
        })
        .param_changed(move |stream, _, id, param| {
            if id != spa::param::ParamType::Format.as_raw() || param.is_none() {
                return;
            }
            // The consumer fixed the format: say how big our buffers are.
            if let Ok(bytes) = serialize(buffers_param(size as i32, stride as i32)) {
                if let Some(pod) = Pod::from_bytes(&bytes) {
                    let _ = stream.update_params(&mut [pod]);
                }
            }
        })
        .process(move |stream, _| {
            let Some(mut buffer) = stream.dequeue_buffer() else { return };
            let Some(data) = buffer.datas_mut().first_mut() else { return };
            let written = match (data.data(), process_shared.latest.lock()) {
                (Some(dst), Ok(latest)) => {
                    let n = dst.len().min(latest.len());
                    dst[..n].copy_from_slice(&latest[..n]);
                    n
                }
                _ => 0,
            };
            let chunk = data.chunk_mut();
            *chunk.offset_mut() = 0;
            *chunk.size_mut() = written as u32;
            *chunk.stride_mut() = stride as i32;
        })
        .register()
        .map_err(|e| format!("PipeWire stream listener: {e}"))?;

    let format_bytes = serialize(format_param(config)).map_err(|e| format!("PipeWire format: {e}"))?;
    let format_pod = Pod::from_bytes(&format_bytes).ok_or("PipeWire format pod")?;
    stream
        .connect(
            spa::utils::Direction::Output,
            None,
            pw::stream::StreamFlags::DRIVER | pw::stream::StreamFlags::MAP_BUFFERS,
            &mut [format_pod],
        )
        .map_err(|e| format!("PipeWire stream connect: {e}"))?;

    // As the driver, the node sets the pace: one process() per frame the pump writes.
    let trigger_stream = stream.clone();
    let _written = written_rx.attach(mainloop.loop_(), move |()| {
        if matches!(trigger_stream.state(), pw::stream::StreamState::Streaming) {
            let _ = trigger_stream.trigger_process();
        }
    });

    let quit_loop = mainloop.clone();
    let _quit = quit_rx.attach(mainloop.loop_(), move |()| quit_loop.quit());
    let _ = ready.send(Ok(()));
    mainloop.run();
    let _ = stream.disconnect();
    Ok(())
}

fn serialize(object: Object) -> std::result::Result<Vec<u8>, String> {
    spa::pod::serialize::PodSerializer::serialize(std::io::Cursor::new(Vec::new()), &Value::Object(object))
        .map(|(cursor, _)| cursor.into_inner())
        .map_err(|e| format!("{e:?}"))
}

/// EnumFormat: raw video of exactly our format, size and rate.
fn format_param(config: &PipeWireConfig) -> Object {
    use spa::param::format::{FormatProperties, MediaSubtype, MediaType};
    use spa::param::video::VideoFormat;
    let format = match config.format {
        CameraFormat::Yuyv => VideoFormat::YUY2,
        CameraFormat::I420 => VideoFormat::I420,
    };
    spa::pod::object!(
        spa::utils::SpaTypes::ObjectParamFormat,
        spa::param::ParamType::EnumFormat,
        spa::pod::property!(FormatProperties::MediaType, Id, MediaType::Video),
        spa::pod::property!(FormatProperties::MediaSubtype, Id, MediaSubtype::Raw),
        spa::pod::property!(FormatProperties::VideoFormat, Id, format),
        spa::pod::property!(
            FormatProperties::VideoSize,
            Rectangle,
            spa::utils::Rectangle { width: config.width, height: config.height }
        ),
        spa::pod::property!(
            FormatProperties::VideoFramerate,
            Fraction,
            spa::utils::Fraction { num: config.fps, denom: 1 }
        ),
    )
}

/// Buffers: 2–8 buffers of one block holding a whole frame.
fn buffers_param(size: i32, stride: i32) -> Object {
    let int = |key: u32, value: i32| Property::new(key, Value::Int(value));
    Object {
        type_: spa::sys::SPA_TYPE_OBJECT_ParamBuffers,
        id: spa::sys::SPA_PARAM_Buffers,
        properties: vec![
            Property::new(
                spa::sys::SPA_PARAM_BUFFERS_buffers,
                Value::Choice(spa::pod::ChoiceValue::Int(spa::utils::Choice(
                    spa::utils::ChoiceFlags::empty(),
                    spa::utils::ChoiceEnum::Range { default: 4, min: 2, max: 8 },
                ))),
            ),
            int(spa::sys::SPA_PARAM_BUFFERS_blocks, 1),
            int(spa::sys::SPA_PARAM_BUFFERS_size, size),
            int(spa::sys::SPA_PARAM_BUFFERS_stride, stride),
        ],
    }
}
