//! The virtual microphone as native PipeWire objects: a `support.null-audio-sink` node with
//! media.class Audio/Source/Virtual named livetalk-mic (what apps list as a microphone), and a
//! 16 kHz mono F32 playback stream linked into it that the schedule fills.
//!
//! Why a null node rather than a bare source stream: a group of nodes without a driver is handed
//! to any running driver, and with the camera running that is the camera node, ticking 30 times a
//! second, so a bare source would be played at a third of real time. The null node is an audio
//! driver with its own clock; the call that reads the microphone and our stream follow it. The
//! stream's block is consumed within the same graph cycle, so it is filled for "now".

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pipewire as pw;
use pw::properties::properties;
use pw::proxy::ProxyT;
use pw::spa;
use spa::pod::Pod;

use super::{MicSchedule, Output, DESCRIPTION, NODE_NAME};
use crate::{AudioError, ENGINE_RATE};

/// Requested graph quantum: 10 ms keeps the added latency and the timing error small.
const LATENCY: &str = "160/16000";
/// The feeding stream's node name.
const FEED: &str = "livetalk-mic-feed";

pub(super) struct PipeWireMic {
    quit: pw::channel::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl PipeWireMic {
    pub fn start(schedule: Arc<Mutex<MicSchedule>>) -> Result<Self, AudioError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (quit, quit_rx) = pw::channel::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("livetalk-mic-pw".into())
            .spawn(move || {
                if let Err(message) = run_loop(schedule, quit_rx, &ready_tx) {
                    let _ = ready_tx.send(Err(message));
                }
            })
            .map_err(|e| AudioError::VirtualMic(format!("cannot start the PipeWire thread: {e}")))?;
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(PipeWireMic { quit, thread: Some(thread) }),
            Ok(Err(message)) => Err(AudioError::VirtualMic(message)),
            Err(_) => Err(AudioError::VirtualMic("PipeWire did not answer within 10 s".into())),
        }
    }
}

impl Output for PipeWireMic {
    fn name(&self) -> String {
        format!("PipeWire node {NODE_NAME} (\"{DESCRIPTION}\")")
    }
}

impl Drop for PipeWireMic {
    fn drop(&mut self) {
        let _ = self.quit.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_loop(
    schedule: Arc<Mutex<MicSchedule>>,
    quit_rx: pw::channel::Receiver<()>,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    pw::init();
    let mainloop = pw::main_loop::MainLoopRc::new(None).map_err(|e| format!("PipeWire main loop: {e}"))?;
    let context = pw::context::ContextRc::new(&mainloop, None).map_err(|e| format!("PipeWire context: {e}"))?;
    let core = context
        .connect_rc(None)
        .map_err(|e| format!("cannot connect to PipeWire ({e}); is it running for this user?"))?;
    // The source node; it lives as long as this connection.
    let node: pw::node::Node = core
        .create_object(
            "adapter",
            &properties! {
                "factory.name" => "support.null-audio-sink",
                *pw::keys::NODE_NAME => NODE_NAME,
                *pw::keys::NODE_DESCRIPTION => DESCRIPTION,
                *pw::keys::MEDIA_CLASS => "Audio/Source/Virtual",
                "audio.position" => "[ MONO ]",
                "monitor.channel-volumes" => "true",
                *pw::keys::NODE_LATENCY => LATENCY,
            },
        )
        .map_err(|e| format!("cannot create the PipeWire node {NODE_NAME}: {e}"))?;
    // Every port in the graph (id, node, is output), to link the feed to the node port to port.
    let ports = std::rc::Rc::new(std::cell::RefCell::new(Vec::<(u32, u32, bool)>::new()));
    let registry = core.get_registry_rc().map_err(|e| format!("PipeWire registry: {e}"))?;
    let seen = ports.clone();
    let _registry_listener = registry
        .add_listener_local()
        .global(move |global| {
            if global.type_ != pw::types::ObjectType::Port {
                return;
            }
            let Some(props) = global.props else { return };
            if let Some(node) = props.get(*pw::keys::NODE_ID).and_then(|n| n.parse().ok()) {
                seen.borrow_mut().push((global.id, node, props.get(*pw::keys::PORT_DIRECTION) == Some("out")));
            }
        })
        .register();
    let node_id = std::rc::Rc::new(std::cell::Cell::new(None));
    let bound = node_id.clone();
    let _node_listener = node.upcast_ref().add_listener_local().bound(move |id| bound.set(Some(id))).register();
    let node_id = wait_for(&mainloop, "the node", || node_id.get())?;

    // The stream into it. Session managers do not link playback streams into virtual sources,
    // so the link is made here, to exactly that node (never to the speakers).
    let stream = pw::stream::StreamRc::new(
        core.clone(),
        FEED,
        properties! {
            *pw::keys::MEDIA_TYPE => "Audio",
            *pw::keys::MEDIA_CATEGORY => "Playback",
            *pw::keys::NODE_NAME => FEED,
            *pw::keys::NODE_DESCRIPTION => "livetalk mic feed",
            *pw::keys::NODE_LATENCY => LATENCY,
        },
    )
    .map_err(|e| format!("PipeWire stream {FEED}: {e}"))?;

    let _listener = stream
        .add_local_listener_with_user_data(())
        .process(move |stream, _| {
            let Some(mut buffer) = stream.dequeue_buffer() else { return };
            let requested = buffer.requested() as usize;
            let Some(data) = buffer.datas_mut().first_mut() else { return };
            let written = match data.data() {
                Some(bytes) => {
                    let capacity = bytes.len() / 4;
                    let frames = if requested > 0 { requested.min(capacity) } else { capacity.min(160) };
                    let mut samples = vec![0.0f32; frames];
                    schedule.lock().fill(Instant::now(), &mut samples);
                    for (dst, s) in bytes.chunks_exact_mut(4).zip(&samples) {
                        dst.copy_from_slice(&s.to_le_bytes());
                    }
                    frames
                }
                None => 0,
            };
            let chunk = data.chunk_mut();
            *chunk.offset_mut() = 0;
            *chunk.stride_mut() = 4;
            *chunk.size_mut() = (written * 4) as u32;
        })
        .register()
        .map_err(|e| format!("PipeWire stream listener: {e}"))?;

    let mut info = spa::param::audio::AudioInfoRaw::new();
    info.set_format(spa::param::audio::AudioFormat::F32LE);
    info.set_rate(ENGINE_RATE);
    info.set_channels(1);
    let mut position = [0; spa::param::audio::MAX_CHANNELS];
    position[0] = spa::sys::SPA_AUDIO_CHANNEL_MONO;
    info.set_position(position);
    let bytes = spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(spa::pod::Object {
            type_: spa::sys::SPA_TYPE_OBJECT_Format,
            id: spa::sys::SPA_PARAM_EnumFormat,
            properties: info.into(),
        }),
    )
    .map_err(|e| format!("PipeWire format: {e:?}"))?
    .0
    .into_inner();
    let pod = Pod::from_bytes(&bytes).ok_or("PipeWire format pod")?;
    stream
        .connect(
            spa::utils::Direction::Output,
            None,
            pw::stream::StreamFlags::MAP_BUFFERS | pw::stream::StreamFlags::RT_PROCESS,
            &mut [pod],
        )
        .map_err(|e| format!("PipeWire stream connect: {e}"))?;
    let feed_id = wait_for(&mainloop, "the feeding stream", || {
        let ready = matches!(stream.state(), pw::stream::StreamState::Paused | pw::stream::StreamState::Streaming);
        (ready && stream.node_id() != u32::MAX).then(|| stream.node_id())
    })?;
    let port = |node: u32, output: bool| {
        ports.borrow().iter().find(|(_, n, out)| *n == node && *out == output).map(|(id, _, _)| *id)
    };
    let (out_port, in_port) = wait_for(&mainloop, "the ports", || Some((port(feed_id, true)?, port(node_id, false)?)))?;
    let mut link_props = properties! {
        "object.linger" => "false",
        // The feed alone does not keep the graph running; a reader of the microphone does.
        "link.passive" => "true",
    };
    link_props.insert("link.output.node", feed_id.to_string());
    link_props.insert("link.output.port", out_port.to_string());
    link_props.insert("link.input.node", node_id.to_string());
    link_props.insert("link.input.port", in_port.to_string());
    let _link: pw::link::Link = core
        .create_object("link-factory", &link_props)
        .map_err(|e| format!("cannot link {FEED} to {NODE_NAME}: {e}"))?;

    let quit_loop = mainloop.clone();
    let _quit = quit_rx.attach(mainloop.loop_(), move |()| quit_loop.quit());
    let _ = ready.send(Ok(()));
    mainloop.run();
    let _ = stream.disconnect();
    Ok(())
}

/// Runs the loop until `ready` gives a value (5 s at most).
fn wait_for<T>(mainloop: &pw::main_loop::MainLoopRc, what: &str, ready: impl Fn() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = ready() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("PipeWire did not set up {what} of {NODE_NAME} within 5 s"));
        }
        mainloop.loop_().iterate(pw::loop_::Timeout::Finite(Duration::from_millis(20)));
    }
}
