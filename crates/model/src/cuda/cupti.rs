//! A GPU activity trace through CUPTI (libcupti, loaded at run time like cuDNN): every kernel,
//! copy and memset with its GPU start/end, and every CUDA driver call with its host start/end.
//! `livetalk bench --profile` uses it to split a block into kernel time per kind, copies and
//! idle gaps, and to count the driver calls the host makes per block: the profile the lent GPU
//! machines cannot make with Nsight Systems.
//!
//! CUPTI is process-wide: one trace at a time. Record layouts are read by field offset from the
//! prefix every CUPTI version since CUDA 11 shares (CUPTI appends fields, never moves them).

use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::sync::{Arc, Mutex, OnceLock};

pub use crate::gpu_trace::Activity;

type CuptiResult = i32;
type BufferRequested = extern "C" fn(*mut *mut u8, *mut usize, *mut usize);
type BufferCompleted = extern "C" fn(*mut std::ffi::c_void, u32, *mut u8, usize, usize);

const KIND_MEMCPY: u32 = 1;
const KIND_MEMSET: u32 = 2;
const KIND_DRIVER: u32 = 4;
const KIND_CONCURRENT_KERNEL: u32 = 10;
const MAX_LIMIT_REACHED: CuptiResult = 12;
const BUFFER_BYTES: usize = 8 << 20;

struct Lib {
    _lib: libloading::Library,
    enable: unsafe extern "C" fn(u32) -> CuptiResult,
    disable: unsafe extern "C" fn(u32) -> CuptiResult,
    flush_all: unsafe extern "C" fn(u32) -> CuptiResult,
    next_record: unsafe extern "C" fn(*mut u8, usize, *mut *mut u8) -> CuptiResult,
    timestamp: unsafe extern "C" fn(*mut u64) -> CuptiResult,
    register: unsafe extern "C" fn(BufferRequested, BufferCompleted) -> CuptiResult,
}

static LIB: OnceLock<std::result::Result<Lib, String>> = OnceLock::new();
static RECORDS: Mutex<Vec<Activity>> = Mutex::new(Vec::new());
static NAMES: Mutex<Option<HashMap<usize, Arc<str>>>> = Mutex::new(None);

fn lib() -> std::result::Result<&'static Lib, String> {
    LIB.get_or_init(|| unsafe {
        let lib = ["libcupti.so.13", "libcupti.so.12", "libcupti.so"]
            .iter()
            .find_map(|n| libloading::Library::new(n).ok())
            .ok_or_else(|| "libcupti.so (13 or 12) not found on the library path".to_string())?;
        macro_rules! sym {
            ($name:literal) => {
                *lib.get($name).map_err(|e| format!("libcupti: {e}"))?
            };
        }
        Ok(Lib {
            enable: sym!(b"cuptiActivityEnable\0"),
            disable: sym!(b"cuptiActivityDisable\0"),
            flush_all: sym!(b"cuptiActivityFlushAll\0"),
            next_record: sym!(b"cuptiActivityGetNextRecord\0"),
            timestamp: sym!(b"cuptiGetTimestamp\0"),
            register: sym!(b"cuptiActivityRegisterCallbacks\0"),
            _lib: lib,
        })
    })
    .as_ref()
    .map_err(|e| e.clone())
}

fn check(what: &str, r: CuptiResult) -> std::result::Result<(), String> {
    if r == 0 {
        Ok(())
    } else {
        Err(format!("CUPTI {what} failed (status {r})"))
    }
}

extern "C" fn buffer_requested(buffer: *mut *mut u8, size: *mut usize, max_records: *mut usize) {
    let layout = std::alloc::Layout::from_size_align(BUFFER_BYTES, 8).expect("constant layout");
    unsafe {
        *buffer = std::alloc::alloc(layout);
        *size = if (*buffer).is_null() { 0 } else { BUFFER_BYTES };
        *max_records = 0;
    }
}

fn read<T: Copy>(rec: *const u8, offset: usize) -> T {
    unsafe { std::ptr::read_unaligned(rec.add(offset) as *const T) }
}

fn kernel_name(p: *const c_char) -> Arc<str> {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names
        .get_or_insert_with(HashMap::new)
        .entry(p as usize)
        .or_insert_with(|| if p.is_null() { "?".into() } else { unsafe { CStr::from_ptr(p) }.to_string_lossy().into() })
        .clone()
}

/// Decodes one record (offsets of CUpti_ActivityKernel*, Memcpy*, Memset*, API).
fn decode(rec: *const u8) -> Option<Activity> {
    match read::<u32>(rec, 0) {
        KIND_CONCURRENT_KERNEL => Some(Activity::Kernel {
            start: read(rec, 16),
            end: read(rec, 24),
            stream: read(rec, 48),
            name: kernel_name(read::<*const c_char>(rec, 104)),
        }),
        KIND_MEMCPY => Some(Activity::Copy { kind: read(rec, 4), bytes: read(rec, 8), start: read(rec, 16), end: read(rec, 24), stream: read(rec, 40) }),
        KIND_MEMSET => Some(Activity::Memset { bytes: read(rec, 8), start: read(rec, 16), end: read(rec, 24), stream: read(rec, 40) }),
        KIND_DRIVER => Some(Activity::Driver { call: read(rec, 4), start: read(rec, 8), end: read(rec, 16) }),
        _ => None,
    }
}

extern "C" fn buffer_completed(_ctx: *mut std::ffi::c_void, _stream: u32, buffer: *mut u8, _size: usize, valid: usize) {
    if buffer.is_null() {
        return;
    }
    if let Ok(l) = lib() {
        let mut out = Vec::new();
        let mut rec: *mut u8 = std::ptr::null_mut();
        loop {
            let r = unsafe { (l.next_record)(buffer, valid, &mut rec) };
            if r == MAX_LIMIT_REACHED || r != 0 {
                break;
            }
            out.extend(decode(rec));
        }
        RECORDS.lock().unwrap_or_else(|e| e.into_inner()).extend(out);
    }
    let layout = std::alloc::Layout::from_size_align(BUFFER_BYTES, 8).expect("constant layout");
    unsafe { std::alloc::dealloc(buffer, layout) };
}

/// Starts tracing kernels, copies, memsets and driver calls (process-wide).
pub fn start() -> std::result::Result<(), String> {
    let l = lib()?;
    unsafe {
        check("register callbacks", (l.register)(buffer_requested, buffer_completed))?;
        for kind in [KIND_CONCURRENT_KERNEL, KIND_MEMCPY, KIND_MEMSET, KIND_DRIVER] {
            check("enable", (l.enable)(kind))?;
        }
    }
    Ok(())
}

/// Everything traced since the last call (the device should be synchronised first).
pub fn take() -> Vec<Activity> {
    if let Ok(l) = lib() {
        unsafe { (l.flush_all)(1) };
    }
    std::mem::take(&mut *RECORDS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Stops tracing and drops what was not taken.
pub fn stop() {
    if let Ok(l) = lib() {
        unsafe {
            for kind in [KIND_CONCURRENT_KERNEL, KIND_MEMCPY, KIND_MEMSET, KIND_DRIVER] {
                (l.disable)(kind);
            }
            (l.flush_all)(1);
        }
    }
    RECORDS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Now on the clock of the traced timestamps (ns).
pub fn now_ns() -> u64 {
    let mut t = 0u64;
    if let Ok(l) = lib() {
        unsafe { (l.timestamp)(&mut t) };
    }
    t
}
