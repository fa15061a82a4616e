//! The "OBS audio source" and "microphone" drivers: the audio of another OBS source (or OBS's
//! Mic/Aux channel) is captured on OBS's audio thread, brought to 16 kHz mono, and pushed to the
//! engine in 100 ms pieces through the remote (never waiting).

use std::os::raw::c_void;

use obs_wrapper::obs_sys::{self, audio_data, obs_source_t};
use parking_lot::Mutex;

use super::ffi::{cstring, source_name};
use crate::remote::{Command, Commands};
use crate::resample::{ToEngineRate, ENGINE_RATE};

/// OBS's global audio channel of the first Mic/Aux device.
const MIC_AUX_CHANNEL: u32 = 3;
/// Samples (16 kHz) per push.
const PUSH_EVERY: usize = ENGINE_RATE as usize / 10;

struct State {
    commands: Commands,
    resampler: Mutex<(ToEngineRate, Vec<i16>)>,
    channels: usize,
}

/// A running capture; dropping it detaches it.
pub struct Capture {
    source: *mut obs_source_t,
    state: *mut State,
    pub name: String,
}

unsafe impl Send for Capture {}

impl Capture {
    /// Captures the source called `name`, or OBS's Mic/Aux channel for `None`.
    pub fn start(name: Option<&str>, own: *mut obs_source_t, commands: Commands) -> Result<Capture, String> {
        // SAFETY: plain lookups; both return a new reference or null.
        let source = unsafe {
            match name {
                Some(name) => obs_sys::obs_get_source_by_name(cstring(name).as_ptr()),
                None => obs_sys::obs_get_output_source(MIC_AUX_CHANNEL),
            }
        };
        let what = name.map(|n| format!("the OBS source `{n}`")).unwrap_or_else(|| "OBS's Mic/Aux device".into());
        if source.is_null() {
            return Err(format!("{what} does not exist"));
        }
        if source == own {
            unsafe { obs_sys::obs_source_release(source) };
            return Err("the avatar cannot be driven by its own voice".into());
        }
        // SAFETY: OBS's audio output exists while sources do.
        let (rate, channels) = unsafe {
            let audio = obs_sys::obs_get_audio();
            (obs_sys::audio_output_get_sample_rate(audio), obs_sys::audio_output_get_channels(audio) as usize)
        };
        let state = Box::into_raw(Box::new(State { commands, resampler: Mutex::new((ToEngineRate::new(rate), Vec::new())), channels }));
        // SAFETY: `state` stays alive until the callback is removed in Drop.
        unsafe { obs_sys::obs_source_add_audio_capture_callback(source, Some(captured), state as *mut c_void) };
        let name = unsafe { source_name(source) };
        log::info!("driving the avatar with {what} ({name}, {rate} Hz, {channels} channels)");
        Ok(Capture { source, state, name })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: removing the callback waits out a running one (OBS holds its callback mutex),
        // so the state may go afterwards.
        unsafe {
            obs_sys::obs_source_remove_audio_capture_callback(self.source, Some(captured), self.state as *mut c_void);
            obs_sys::obs_source_release(self.source);
            drop(Box::from_raw(self.state));
        }
    }
}

unsafe extern "C" fn captured(param: *mut c_void, _source: *mut obs_source_t, audio: *const audio_data, muted: bool) {
    if param.is_null() || audio.is_null() {
        return;
    }
    let state = &*(param as *const State);
    let audio = &*audio;
    let frames = audio.frames as usize;
    let silence = vec![0f32; frames];
    let planes: Vec<&[f32]> = (0..state.channels.min(audio.data.len()))
        .map(|c| {
            let plane = audio.data[c] as *const f32;
            if muted || plane.is_null() {
                &silence[..]
            } else {
                std::slice::from_raw_parts(plane, frames)
            }
        })
        .collect();
    let mut guard = state.resampler.lock();
    let (resampler, buffer) = &mut *guard;
    resampler.push(&planes, buffer);
    if buffer.len() >= PUSH_EVERY {
        state.commands.send(Command::Audio(std::mem::take(buffer)));
    }
}
