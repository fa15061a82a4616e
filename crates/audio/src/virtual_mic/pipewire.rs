//! The virtual microphone as a native PipeWire node: an output stream with media.class
//! Audio/Source (apps list it as a microphone), 16 kHz mono F32 (PipeWire converts for each
//! consumer), not linked anywhere by itself. Each graph cycle asks for a block of samples, which
//! the schedule fills for "now": the block is consumed within the same cycle.

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pipewire as pw;
use pw::properties::properties;
use pw::spa;
use spa::pod::Pod;

use super::{MicSchedule, Output, DESCRIPTION, NODE_NAME};
use crate::{AudioError, ENGINE_RATE};

/// Requested graph quantum: 10 ms keeps the added latency and the timing error small.
const LATENCY: &str = "160/16000";

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
    let stream = pw::stream::StreamRc::new(
        core,
        NODE_NAME,
        properties! {
            *pw::keys::MEDIA_TYPE => "Audio",
            *pw::keys::MEDIA_CATEGORY => "Playback",
            *pw::keys::MEDIA_CLASS => "Audio/Source",
            *pw::keys::NODE_NAME => NODE_NAME,
            *pw::keys::NODE_DESCRIPTION => DESCRIPTION,
            *pw::keys::NODE_LATENCY => LATENCY,
            *pw::keys::AUDIO_CHANNELS => "1",
        },
    )
    .map_err(|e| format!("PipeWire stream {NODE_NAME}: {e}"))?;

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
    // No AUTOCONNECT: a source waits for consumers (a call) to link to it.
    stream
        .connect(
            spa::utils::Direction::Output,
            None,
            pw::stream::StreamFlags::MAP_BUFFERS | pw::stream::StreamFlags::RT_PROCESS,
            &mut [pod],
        )
        .map_err(|e| format!("PipeWire stream connect: {e}"))?;

    let quit_loop = mainloop.clone();
    let _quit = quit_rx.attach(mainloop.loop_(), move |()| quit_loop.quit());
    let _ = ready.send(Ok(()));
    mainloop.run();
    let _ = stream.disconnect();
    Ok(())
}
