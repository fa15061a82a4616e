//! The source's properties: status, persona (the engine's list), driver (text / microphone /
//! an OBS audio source), whether the source plays the voice, output size, the say box and its
//! button, and starting an engine. Built from what the source already knows: never waits.

use std::os::raw::c_void;

use obs_wrapper::obs_sys::{self, obs_data_t, obs_properties_t, obs_property_t, obs_source_t};

use super::ffi::{cstring, get_string, source_name};
use super::source::{driver, key, AvatarSource, MAX_SYNC_BUFFER_MS};

const SIZES: [(&str, &str); 5] = [
    ("engine", "As the engine renders"),
    ("1920x1080", "1920×1080"),
    ("1280x720", "1280×720"),
    ("960x540", "960×540"),
    ("640x360", "640×360"),
];

unsafe fn add_list(props: *mut obs_properties_t, name: &str, description: &str, items: &[(String, String)]) -> *mut obs_property_t {
    let list = obs_sys::obs_properties_add_list(
        props,
        cstring(name).as_ptr(),
        cstring(description).as_ptr(),
        obs_sys::obs_combo_type_OBS_COMBO_TYPE_LIST,
        obs_sys::obs_combo_format_OBS_COMBO_FORMAT_STRING,
    );
    for (value, label) in items {
        obs_sys::obs_property_list_add_string(list, cstring(label).as_ptr(), cstring(value).as_ptr());
    }
    list
}

pub unsafe extern "C" fn get_properties(data: *mut c_void) -> *mut obs_properties_t {
    let props = obs_sys::obs_properties_create();
    let Some(me) = (data as *const AvatarSource).as_ref() else { return props };
    let view = me.remote.as_ref().map(|r| r.view()).unwrap_or_default();

    obs_sys::obs_properties_add_text(props, cstring("status").as_ptr(), cstring(&me.status()).as_ptr(), obs_sys::obs_text_type_OBS_TEXT_INFO);

    let mut personas: Vec<(String, String)> = view.personas.iter().map(|p| (p.name.clone(), p.display_name.clone())).collect();
    if personas.is_empty() {
        personas = me.hotkey_personas().into_iter().map(|n| (n.clone(), n)).collect();
    }
    add_list(props, key::PERSONA, "Persona", &personas);

    let drivers = [
        (driver::TEXT, "Text: the say box below (text-to-speech)"),
        (driver::MICROPHONE, "Microphone: OBS's Mic/Aux device"),
        (driver::OBS_SOURCE, "An OBS audio source"),
    ]
    .map(|(v, l)| (v.to_string(), l.to_string()));
    let driver_list = add_list(props, key::DRIVER, "Voice driving the avatar", &drivers);
    obs_sys::obs_property_set_modified_callback(driver_list, Some(driver_changed));
    let sources = audio_sources(me.source.0);
    let source_list = add_list(props, key::AUDIO_SOURCE, "OBS audio source", &sources.iter().map(|n| (n.clone(), n.clone())).collect::<Vec<_>>());
    obs_sys::obs_property_set_visible(source_list, false);
    obs_sys::obs_properties_add_bool(props, cstring(key::PLAY_VOICE).as_ptr(), cstring("Play the avatar's voice through this source (in sync with the lips)").as_ptr());

    add_list(props, key::SIZE, "Output size", &SIZES.map(|(v, l)| (v.to_string(), l.to_string())));
    let buffer = obs_sys::obs_properties_add_int_slider(props, cstring(key::SYNC_BUFFER_MS).as_ptr(), cstring("Sync buffer (ms)").as_ptr(), 0, MAX_SYNC_BUFFER_MS as i32, 10);
    obs_sys::obs_property_set_long_description(buffer, cstring("Holds the avatar's frames this long so that frames delayed by a busy machine still show in step with the voice. Raise it if the lips trail the voice; lower it for less delay.").as_ptr());

    obs_sys::obs_properties_add_text(props, cstring(key::SAY_TEXT).as_ptr(), cstring("Say").as_ptr(), obs_sys::obs_text_type_OBS_TEXT_MULTILINE);
    obs_sys::obs_properties_add_button(props, cstring("say").as_ptr(), cstring("Say it").as_ptr(), Some(say_clicked));

    obs_sys::obs_properties_add_bool(props, cstring(key::START_ENGINE).as_ptr(), cstring("Start livetalk when none is running").as_ptr());
    obs_sys::obs_properties_add_path(
        props,
        cstring(key::LIVETALK_PATH).as_ptr(),
        cstring("livetalk program").as_ptr(),
        obs_sys::obs_path_type_OBS_PATH_FILE,
        std::ptr::null(),
        std::ptr::null(),
    );
    props
}

/// Names of the OBS sources that have audio, but this one.
unsafe fn audio_sources(own: *mut obs_source_t) -> Vec<String> {
    struct Search {
        own: *mut obs_source_t,
        names: Vec<String>,
    }
    unsafe extern "C" fn visit(param: *mut c_void, source: *mut obs_source_t) -> bool {
        let search = &mut *(param as *mut Search);
        if source != search.own && obs_sys::obs_source_get_output_flags(source) & obs_sys::OBS_SOURCE_AUDIO != 0 {
            search.names.push(source_name(source));
        }
        true
    }
    let mut search = Search { own, names: Vec::new() };
    obs_sys::obs_enum_sources(Some(visit), &mut search as *mut Search as *mut c_void);
    search.names.sort();
    search.names
}

unsafe extern "C" fn driver_changed(props: *mut obs_properties_t, _p: *mut obs_property_t, settings: *mut obs_data_t) -> bool {
    let chosen = get_string(settings, key::DRIVER) == driver::OBS_SOURCE;
    let list = obs_sys::obs_properties_get(props, cstring(key::AUDIO_SOURCE).as_ptr());
    obs_sys::obs_property_set_visible(list, chosen);
    true
}

unsafe extern "C" fn say_clicked(_props: *mut obs_properties_t, _p: *mut obs_property_t, data: *mut c_void) -> bool {
    if let Some(me) = (data as *const AvatarSource).as_ref() {
        me.say();
    }
    false
}
