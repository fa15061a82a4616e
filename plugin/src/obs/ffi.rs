//! Small safe-ish helpers over the obs-sys calls the source makes.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

use obs_wrapper::obs_sys::{self, obs_data_t, obs_source_t};

/// A C string from Rust text (interior NULs replaced: names come from files and users).
pub fn cstring(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).expect("no NUL left")
}

/// # Safety
/// `ptr` is null or a valid C string.
pub unsafe fn text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        String::new()
    } else {
        CStr::from_ptr(ptr).to_string_lossy().into_owned()
    }
}

/// # Safety
/// `data` is a valid obs_data.
pub unsafe fn get_string(data: *mut obs_data_t, key: &str) -> String {
    text(obs_sys::obs_data_get_string(data, cstring(key).as_ptr()))
}

/// # Safety
/// `data` is a valid obs_data.
pub unsafe fn get_bool(data: *mut obs_data_t, key: &str) -> bool {
    obs_sys::obs_data_get_bool(data, cstring(key).as_ptr())
}

/// # Safety
/// `data` is a valid obs_data.
pub unsafe fn get_int(data: *mut obs_data_t, key: &str) -> i64 {
    obs_sys::obs_data_get_int(data, cstring(key).as_ptr())
}

/// # Safety
/// `data` is a valid obs_data.
pub unsafe fn set_string(data: *mut obs_data_t, key: &str, value: &str) {
    obs_sys::obs_data_set_string(data, cstring(key).as_ptr(), cstring(value).as_ptr())
}

/// The source's name.
/// # Safety
/// `source` is a valid source.
pub unsafe fn source_name(source: *mut obs_source_t) -> String {
    text(obs_sys::obs_source_get_name(source))
}

/// A source pointer that may cross threads: OBS sources are reference counted and thread-safe
/// for the calls made through it; its owner keeps it alive for as long as it is used.
#[derive(Debug, Clone, Copy)]
pub struct SourcePtr(pub *mut obs_source_t);

unsafe impl Send for SourcePtr {}
unsafe impl Sync for SourcePtr {}
