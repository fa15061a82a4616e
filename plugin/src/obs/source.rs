//! The "livetalk avatar" source: an asynchronous video + audio input. The link thread outputs
//! frames (`obs_source_output_video`, BGRA) and the voice (`obs_source_output_audio`, 16 kHz
//! mono float) with timestamps from one mapping of the engine's pts, so OBS shows and mixes them
//! in step. Every callback here returns at once: the engine is only reached from the link and
//! remote threads.

use std::os::raw::{c_char, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use obs_wrapper::obs_sys::{self, obs_data_t, obs_source_info, obs_source_t};
use parking_lot::Mutex;

use super::capture::Capture;
use super::ffi::{get_bool, get_int, get_string, set_string, SourcePtr};
use super::hotkeys::Hotkeys;
use crate::link::{AudioOut, Link, LinkSettings, Output, VideoOut};
use crate::remote::{Command, Launcher, Remote, RemoteSettings};

/// Settings keys.
pub mod key {
    pub const PERSONA: &str = "persona";
    pub const DRIVER: &str = "driver";
    pub const AUDIO_SOURCE: &str = "audio_source";
    pub const PLAY_VOICE: &str = "play_voice";
    pub const SIZE: &str = "size";
    pub const SYNC_BUFFER_MS: &str = "sync_buffer_ms";
    pub const SAY_TEXT: &str = "say_text";
    pub const START_ENGINE: &str = "start_engine";
    pub const LIVETALK_PATH: &str = "livetalk_path";
    pub const KNOWN_PERSONAS: &str = "known_personas";
}

/// The largest sync buffer the property offers, ms.
pub const MAX_SYNC_BUFFER_MS: i64 = 500;

/// Driver values.
pub mod driver {
    pub const TEXT: &str = "text";
    pub const MICROPHONE: &str = "microphone";
    pub const OBS_SOURCE: &str = "obs_source";
}

pub struct AvatarSource {
    pub source: SourcePtr,
    link: Option<Link>,
    pub remote: Option<Remote>,
    hotkeys: Arc<Hotkeys>,
    play_voice: Arc<AtomicBool>,
    capture: Mutex<Option<Capture>>,
    /// The persona last chosen in the properties or by a hotkey.
    last_persona: Arc<Mutex<Option<String>>>,
}

/// Sends the link's output into OBS.
struct ObsOutput {
    source: SourcePtr,
    play_voice: Arc<AtomicBool>,
}

impl Output for ObsOutput {
    fn video(&mut self, frame: &VideoOut) {
        // SAFETY: zeroed is a valid obs_source_frame (null planes, no flags).
        let mut out: obs_sys::obs_source_frame = unsafe { std::mem::zeroed() };
        out.data[0] = frame.bgra.as_ptr() as *mut u8;
        out.linesize[0] = frame.width * 4;
        out.width = frame.width;
        out.height = frame.height;
        out.timestamp = frame.timestamp;
        out.format = obs_sys::video_format_VIDEO_FORMAT_BGRA;
        out.full_range = true;
        // SAFETY: the source lives until the link is dropped (first thing in destroy); OBS
        // copies the frame before returning.
        unsafe { obs_sys::obs_source_output_video(self.source.0, &out) };
    }

    fn audio(&mut self, audio: &AudioOut) {
        if !self.play_voice.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: as above; OBS copies the samples.
        let mut out: obs_sys::obs_source_audio = unsafe { std::mem::zeroed() };
        out.data[0] = audio.samples.as_ptr() as *const u8;
        out.frames = audio.samples.len() as u32;
        out.speakers = obs_sys::speaker_layout_SPEAKERS_MONO;
        out.format = obs_sys::audio_format_AUDIO_FORMAT_FLOAT;
        out.samples_per_sec = audio.rate;
        out.timestamp = audio.timestamp;
        unsafe { obs_sys::obs_source_output_audio(self.source.0, &out) };
    }
}

impl AvatarSource {
    /// # Safety
    /// `settings` and `source` are OBS's, valid for the call.
    unsafe fn new(settings: *mut obs_data_t, source: *mut obs_source_t) -> std::io::Result<Self> {
        let source = SourcePtr(source);
        let play_voice = Arc::new(AtomicBool::new(true));
        let link = Link::start(LinkSettings::default(), Box::new(ObsOutput { source, play_voice: play_voice.clone() }))?;
        // The remote needs the hotkeys (to add personas) and the hotkeys the remote's commands:
        // make the remote first with a slot the hotkeys fill in.
        let slot: Arc<Mutex<Option<Arc<Hotkeys>>>> = Arc::default();
        let filled = slot.clone();
        let remote = Remote::start(
            RemoteSettings::default(),
            Box::new(move |personas| {
                if let Some(hotkeys) = filled.lock().as_ref() {
                    hotkeys.add_personas(personas.iter().map(|p| (p.name.as_str(), p.display_name.as_str())));
                }
            }),
        )?;
        let last_persona: Arc<Mutex<Option<String>>> = Arc::default();
        let hotkeys = Hotkeys::new(source, remote.commands(), remote.view_handle(), last_persona.clone());
        let known = get_string(settings, key::KNOWN_PERSONAS);
        hotkeys.add_personas(known.split(',').map(str::trim).filter(|n| !n.is_empty()).map(|n| (n, n)));
        *slot.lock() = Some(hotkeys.clone());
        let me = AvatarSource { source, link: Some(link), remote: Some(remote), hotkeys, play_voice, capture: Mutex::new(None), last_persona };
        me.update(settings);
        Ok(me)
    }

    fn remote(&self) -> &Remote {
        self.remote.as_ref().expect("the remote lives until destroy")
    }

    /// # Safety
    /// `settings` is valid for the call.
    unsafe fn update(&self, settings: *mut obs_data_t) {
        let size = parse_size(&get_string(settings, key::SIZE));
        let sync_buffer = Duration::from_millis(get_int(settings, key::SYNC_BUFFER_MS).clamp(0, MAX_SYNC_BUFFER_MS) as u64);
        if let Some(link) = &self.link {
            link.shared().set_settings(LinkSettings { size, sync_buffer, audio_after_render: true, ..LinkSettings::default() });
        }
        self.play_voice.store(get_bool(settings, key::PLAY_VOICE), Ordering::Relaxed);
        let persona = get_string(settings, key::PERSONA);
        let launch = get_bool(settings, key::START_ENGINE).then(|| launcher(&get_string(settings, key::LIVETALK_PATH), &persona));
        self.remote().set_settings(RemoteSettings { launch, ..RemoteSettings::default() });
        // A persona picked in the properties: switch once (hotkeys set it as they switch).
        let mut last = self.last_persona.lock();
        if !persona.is_empty() && last.as_deref() != Some(persona.as_str()) {
            if last.is_some() || self.remote().view().current.as_deref().is_some_and(|c| c != persona) {
                self.remote().send(Command::Switch(persona.clone()));
            }
            *last = Some(persona);
        }
        drop(last);
        self.update_capture(&get_string(settings, key::DRIVER), &get_string(settings, key::AUDIO_SOURCE));
    }

    fn update_capture(&self, driver: &str, audio_source: &str) {
        let wanted = match driver {
            driver::MICROPHONE => Some(None),
            driver::OBS_SOURCE if !audio_source.is_empty() => Some(Some(audio_source)),
            _ => None,
        };
        let mut capture = self.capture.lock();
        let same = match (&*capture, wanted) {
            (Some(c), Some(Some(name))) => c.name == name,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        *capture = None;
        if let Some(name) = wanted {
            match Capture::start(name, self.source.0, self.remote().commands()) {
                Ok(c) => *capture = Some(c),
                Err(e) => log::warn!("cannot drive the avatar: {e}"),
            }
        }
    }

    /// Says the text of the say box.
    pub fn say(&self) {
        // SAFETY: the source is alive during its callbacks; get_settings returns a new reference.
        let text = unsafe {
            let settings = obs_sys::obs_source_get_settings(self.source.0);
            let text = get_string(settings, key::SAY_TEXT);
            obs_sys::obs_data_release(settings);
            text
        };
        if text.trim().is_empty() {
            log::warn!("nothing to say: the say box is empty");
        } else {
            self.remote().send(Command::Say(text));
        }
    }

    /// The status line of the properties.
    pub fn status(&self) -> String {
        let view = self.remote().view();
        let link = self.link.as_ref().map(|l| l.shared().state());
        let mut parts = Vec::new();
        match link {
            Some(crate::link::LinkState::Connected(pid)) => parts.push(format!("Streaming from livetalk (pid {pid})")),
            Some(crate::link::LinkState::Stalled(age)) => parts.push(format!("livetalk is not answering ({:.0} s): placeholder shown", age.as_secs_f32())),
            _ => parts.push("No livetalk running: placeholder shown (start `livetalk run`, or tick “Start livetalk”)".into()),
        }
        if let Some(current) = view.current {
            parts.push(format!("persona: {current}"));
        }
        if let Some(pid) = view.started_engine {
            parts.push(format!("started by this source: pid {pid}"));
        }
        if let Some(error) = view.error.filter(|_| parts.len() > 1) {
            parts.push(format!("last problem: {error}"));
        }
        parts.join(" · ")
    }

    pub fn hotkey_personas(&self) -> Vec<String> {
        self.hotkeys.personas()
    }
}

impl Drop for AvatarSource {
    fn drop(&mut self) {
        // Order matters: nothing may call into OBS with this source once it is gone.
        self.link = None;
        *self.capture.lock() = None;
        self.remote = None;
        self.hotkeys.unregister_all();
    }
}

/// `WIDTHxHEIGHT`, or `None` for the engine's own size.
fn parse_size(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once('x')?;
    let (w, h) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (w > 0 && h > 0 && w <= 8192 && h <= 8192).then_some((w, h))
}

fn launcher(program: &str, persona: &str) -> Launcher {
    let program = if program.trim().is_empty() { "livetalk" } else { program.trim() };
    let mut args = vec!["run".to_string(), "--no-preview".to_string()];
    if !persona.is_empty() {
        args.extend(["--persona".to_string(), persona.to_string()]);
    }
    let log = livetalk_share::default_socket_path().with_file_name("obs-engine.log");
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    Launcher { program: PathBuf::from(program), args, log }
}

// ---- the obs_source_info callbacks ----

pub fn source_info() -> obs_source_info {
    obs_source_info {
        id: c"livetalk_avatar".as_ptr(),
        type_: obs_sys::obs_source_type_OBS_SOURCE_TYPE_INPUT,
        output_flags: obs_sys::OBS_SOURCE_ASYNC_VIDEO | obs_sys::OBS_SOURCE_AUDIO | obs_sys::OBS_SOURCE_DO_NOT_DUPLICATE,
        get_name: Some(get_name),
        create: Some(create),
        destroy: Some(destroy),
        get_defaults: Some(get_defaults),
        get_properties: Some(super::properties::get_properties),
        update: Some(update),
        show: Some(show),
        video_tick: Some(video_tick),
        hide: Some(hide),
        save: Some(save),
        icon_type: obs_sys::obs_icon_type_OBS_ICON_TYPE_CAMERA,
        ..Default::default()
    }
}

unsafe extern "C" fn get_name(_type_data: *mut c_void) -> *const c_char {
    c"livetalk avatar".as_ptr()
}

unsafe extern "C" fn create(settings: *mut obs_data_t, source: *mut obs_source_t) -> *mut c_void {
    match AvatarSource::new(settings, source) {
        Ok(me) => Box::into_raw(Box::new(me)) as *mut c_void,
        Err(e) => {
            log::error!("cannot create the livetalk avatar source: {e}");
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn destroy(data: *mut c_void) {
    if !data.is_null() {
        drop(Box::from_raw(data as *mut AvatarSource));
    }
}

unsafe extern "C" fn update(data: *mut c_void, settings: *mut obs_data_t) {
    if let Some(me) = (data as *const AvatarSource).as_ref() {
        me.update(settings);
    }
}

unsafe extern "C" fn video_tick(data: *mut c_void, _seconds: f32) {
    if let Some(link) = (data as *const AvatarSource).as_ref().and_then(|me| me.link.as_ref()) {
        link.shared().video_tick();
    }
}

unsafe extern "C" fn show(data: *mut c_void) {
    if let Some(link) = (data as *const AvatarSource).as_ref().and_then(|me| me.link.as_ref()) {
        link.shared().set_watching(true);
    }
}

unsafe extern "C" fn hide(data: *mut c_void) {
    if let Some(link) = (data as *const AvatarSource).as_ref().and_then(|me| me.link.as_ref()) {
        link.shared().set_watching(false);
    }
}

/// Keeps the personas that have hotkeys, so their hotkeys (and saved bindings) exist at the
/// next start even before an engine answers.
unsafe extern "C" fn save(data: *mut c_void, settings: *mut obs_data_t) {
    if let Some(me) = (data as *const AvatarSource).as_ref() {
        set_string(settings, key::KNOWN_PERSONAS, &me.hotkey_personas().join(","));
    }
}

unsafe extern "C" fn get_defaults(settings: *mut obs_data_t) {
    let set = |k: &str, v: &str| obs_sys::obs_data_set_default_string(settings, super::ffi::cstring(k).as_ptr(), super::ffi::cstring(v).as_ptr());
    set(key::DRIVER, driver::TEXT);
    set(key::SIZE, "engine");
    set(key::SAY_TEXT, "Hello! I am your livetalk avatar.");
    set(key::LIVETALK_PATH, "livetalk");
    obs_sys::obs_data_set_default_bool(settings, super::ffi::cstring(key::PLAY_VOICE).as_ptr(), true);
    obs_sys::obs_data_set_default_int(settings, super::ffi::cstring(key::SYNC_BUFFER_MS).as_ptr(), crate::link::DEFAULT_SYNC_BUFFER.as_millis() as i64);
    obs_sys::obs_data_set_default_bool(settings, super::ffi::cstring(key::START_ENGINE).as_ptr(), false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1280x720"), Some((1280, 720)));
        assert_eq!(parse_size("engine"), None);
        assert_eq!(parse_size("0x5"), None);
    }
}
