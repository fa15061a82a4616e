//! The few cuDNN (v9) backend-API entry points the fused attention needs, loaded at run time with
//! libloading: a machine without libcudnn still runs the model (attention falls back to
//! matmul–softmax–matmul), and the binary has no link-time dependency on cuDNN.
//!
//! Enum values are the C API's (cudnn_graph.h); they are stable across cuDNN 9 releases.

use std::ffi::{c_char, c_void, CStr};
use std::sync::OnceLock;

pub type Status = i32;
pub type Handle = *mut c_void;
pub type BackendDesc = *mut c_void;

pub const STATUS_SUCCESS: Status = 0;

// cudnnBackendDescriptorType_t
pub const POINTWISE_DESCRIPTOR: i32 = 0;
pub const CONVOLUTION_DESCRIPTOR: i32 = 1;
pub const ENGINECFG_DESCRIPTOR: i32 = 3;
pub const ENGINEHEUR_DESCRIPTOR: i32 = 4;
pub const EXECUTION_PLAN_DESCRIPTOR: i32 = 5;
pub const OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR: i32 = 10;
pub const OPERATION_POINTWISE_DESCRIPTOR: i32 = 13;
pub const OPERATIONGRAPH_DESCRIPTOR: i32 = 15;
pub const VARIANT_PACK_DESCRIPTOR: i32 = 16;
pub const TENSOR_DESCRIPTOR: i32 = 17;
pub const MATMUL_DESCRIPTOR: i32 = 18;
pub const OPERATION_MATMUL_DESCRIPTOR: i32 = 19;
pub const REDUCTION_DESCRIPTOR: i32 = 21;
pub const OPERATION_REDUCTION_DESCRIPTOR: i32 = 22;

// cudnnBackendAttributeType_t
pub const TYPE_HANDLE: i32 = 0;
pub const TYPE_DATA_TYPE: i32 = 1;
pub const TYPE_BOOLEAN: i32 = 2;
pub const TYPE_INT64: i32 = 3;
pub const TYPE_FLOAT: i32 = 4;
pub const TYPE_CONVOLUTION_MODE: i32 = 7;
pub const TYPE_VOID_PTR: i32 = 6;
pub const TYPE_HEUR_MODE: i32 = 8;
pub const TYPE_POINTWISE_MODE: i32 = 14;
pub const TYPE_BACKEND_DESCRIPTOR: i32 = 15;
pub const TYPE_REDUCTION_OPERATOR_TYPE: i32 = 18;

// cudnnBackendAttributeName_t
pub const ATTR_POINTWISE_MODE: i32 = 0;
pub const ATTR_POINTWISE_MATH_PREC: i32 = 1;
pub const ATTR_CONVOLUTION_COMP_TYPE: i32 = 100;
pub const ATTR_CONVOLUTION_CONV_MODE: i32 = 101;
pub const ATTR_CONVOLUTION_DILATIONS: i32 = 102;
pub const ATTR_CONVOLUTION_FILTER_STRIDES: i32 = 103;
pub const ATTR_CONVOLUTION_POST_PADDINGS: i32 = 104;
pub const ATTR_CONVOLUTION_PRE_PADDINGS: i32 = 105;
pub const ATTR_CONVOLUTION_SPATIAL_DIMS: i32 = 106;
pub const ATTR_ENGINEHEUR_MODE: i32 = 200;
pub const ATTR_ENGINEHEUR_OPERATION_GRAPH: i32 = 201;
pub const ATTR_ENGINEHEUR_RESULTS: i32 = 202;
pub const ATTR_EXECUTION_PLAN_HANDLE: i32 = 400;
pub const ATTR_EXECUTION_PLAN_ENGINE_CONFIG: i32 = 401;
pub const ATTR_EXECUTION_PLAN_WORKSPACE_SIZE: i32 = 402;
pub const ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA: i32 = 700;
pub const ATTR_OPERATION_CONVOLUTION_FORWARD_BETA: i32 = 701;
pub const ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC: i32 = 702;
pub const ATTR_OPERATION_CONVOLUTION_FORWARD_W: i32 = 703;
pub const ATTR_OPERATION_CONVOLUTION_FORWARD_X: i32 = 704;
pub const ATTR_OPERATION_CONVOLUTION_FORWARD_Y: i32 = 705;
pub const ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR: i32 = 750;
pub const ATTR_OPERATION_POINTWISE_XDESC: i32 = 751;
pub const ATTR_OPERATION_POINTWISE_BDESC: i32 = 752;
pub const ATTR_OPERATION_POINTWISE_YDESC: i32 = 753;
pub const ATTR_OPERATIONGRAPH_HANDLE: i32 = 800;
pub const ATTR_OPERATIONGRAPH_OPS: i32 = 801;
pub const ATTR_TENSOR_BYTE_ALIGNMENT: i32 = 900;
pub const ATTR_TENSOR_DATA_TYPE: i32 = 901;
pub const ATTR_TENSOR_DIMENSIONS: i32 = 902;
pub const ATTR_TENSOR_STRIDES: i32 = 903;
pub const ATTR_TENSOR_UNIQUE_ID: i32 = 906;
pub const ATTR_TENSOR_IS_VIRTUAL: i32 = 907;
pub const ATTR_TENSOR_IS_BY_VALUE: i32 = 908;
pub const ATTR_VARIANT_PACK_UNIQUE_IDS: i32 = 1000;
pub const ATTR_VARIANT_PACK_DATA_POINTERS: i32 = 1001;
pub const ATTR_VARIANT_PACK_WORKSPACE: i32 = 1003;
pub const ATTR_MATMUL_COMP_TYPE: i32 = 1500;
pub const ATTR_OPERATION_MATMUL_ADESC: i32 = 1520;
pub const ATTR_OPERATION_MATMUL_BDESC: i32 = 1521;
pub const ATTR_OPERATION_MATMUL_CDESC: i32 = 1522;
pub const ATTR_OPERATION_MATMUL_DESC: i32 = 1523;
pub const ATTR_REDUCTION_OPERATOR: i32 = 1600;
pub const ATTR_REDUCTION_COMP_TYPE: i32 = 1601;
pub const ATTR_OPERATION_REDUCTION_XDESC: i32 = 1610;
pub const ATTR_OPERATION_REDUCTION_YDESC: i32 = 1611;
pub const ATTR_OPERATION_REDUCTION_DESC: i32 = 1612;

// cudnnDataType_t
pub const DATA_FLOAT: i32 = 0;
pub const DATA_HALF: i32 = 2;
pub const DATA_BFLOAT16: i32 = 9;

// cudnnPointwiseMode_t
pub const PW_ADD: i32 = 0;
pub const PW_MUL: i32 = 1;
pub const PW_DIV: i32 = 6;
pub const PW_SUB: i32 = 9;
pub const PW_EXP: i32 = 13;
pub const PW_LOG: i32 = 15;
pub const PW_RELU_FWD: i32 = 100;

// cudnnConvolutionMode_t
pub const CROSS_CORRELATION: i32 = 1;

// cudnnReduceTensorOp_t
pub const REDUCE_ADD: i32 = 0;
pub const REDUCE_MAX: i32 = 3;

// cudnnBackendHeurMode_t
pub const HEUR_MODE_A: i32 = 3;

type FnCreate = unsafe extern "C" fn(*mut Handle) -> Status;
type FnSetStream = unsafe extern "C" fn(Handle, *mut c_void) -> Status;
type FnErrorString = unsafe extern "C" fn(Status) -> *const c_char;
type FnLastError = unsafe extern "C" fn(*mut c_char, usize);
type FnCreateDesc = unsafe extern "C" fn(i32, *mut BackendDesc) -> Status;
type FnDestroyDesc = unsafe extern "C" fn(BackendDesc) -> Status;
type FnFinalize = unsafe extern "C" fn(BackendDesc) -> Status;
type FnSetAttr = unsafe extern "C" fn(BackendDesc, i32, i32, i64, *const c_void) -> Status;
type FnGetAttr = unsafe extern "C" fn(BackendDesc, i32, i32, i64, *mut i64, *mut c_void) -> Status;
type FnExecute = unsafe extern "C" fn(Handle, BackendDesc, BackendDesc) -> Status;

/// The loaded library and its entry points.
pub struct Api {
    _lib: libloading::Library,
    pub create: FnCreate,
    pub set_stream: FnSetStream,
    error_string: FnErrorString,
    last_error: Option<FnLastError>,
    pub create_desc: FnCreateDesc,
    pub destroy_desc: FnDestroyDesc,
    pub finalize: FnFinalize,
    pub set_attr: FnSetAttr,
    pub get_attr: FnGetAttr,
    pub execute: FnExecute,
}

const CANDIDATES: [&str; 2] = ["libcudnn.so.9", "libcudnn.so"];

fn load() -> Result<Api, String> {
    let mut errors = Vec::new();
    for name in CANDIDATES {
        // SAFETY: loading cuDNN runs its (well-behaved) initialisers only.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => return unsafe { resolve(lib) }.map_err(|e| format!("{name}: {e}")),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(errors.join("; "))
}

unsafe fn resolve(lib: libloading::Library) -> Result<Api, libloading::Error> {
    macro_rules! sym {
        ($name:literal) => {
            *lib.get($name)?
        };
    }
    Ok(Api {
        create: sym!(b"cudnnCreate\0"),
        set_stream: sym!(b"cudnnSetStream\0"),
        error_string: sym!(b"cudnnGetErrorString\0"),
        last_error: lib.get::<FnLastError>(b"cudnnGetLastErrorString\0").ok().map(|s| *s),
        create_desc: sym!(b"cudnnBackendCreateDescriptor\0"),
        destroy_desc: sym!(b"cudnnBackendDestroyDescriptor\0"),
        finalize: sym!(b"cudnnBackendFinalize\0"),
        set_attr: sym!(b"cudnnBackendSetAttribute\0"),
        get_attr: sym!(b"cudnnBackendGetAttribute\0"),
        execute: sym!(b"cudnnBackendExecute\0"),
        _lib: lib,
    })
}

/// cuDNN, loaded once per process; `Err` says why it is unavailable.
pub fn api() -> Result<&'static Api, &'static str> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|e| e.as_str())
}

impl Api {
    /// `what: STATUS_NAME (last error message)` for a failed call.
    pub fn describe(&self, what: &str, status: Status) -> String {
        let name = unsafe { CStr::from_ptr((self.error_string)(status)) }.to_string_lossy().into_owned();
        let mut detail = String::new();
        if let Some(last) = self.last_error {
            let mut buf = vec![0 as c_char; 1024];
            unsafe { last(buf.as_mut_ptr(), buf.len()) };
            detail = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().trim().to_string();
        }
        if detail.is_empty() {
            format!("{what}: {name}")
        } else {
            format!("{what}: {name} ({detail})")
        }
    }

    pub fn check(&self, what: &str, status: Status) -> Result<(), String> {
        if status == STATUS_SUCCESS {
            Ok(())
        } else {
            Err(self.describe(what, status))
        }
    }
}

/// An owned backend descriptor (destroyed on drop).
pub struct Desc {
    pub raw: BackendDesc,
    api: &'static Api,
}

impl Desc {
    pub fn new(api: &'static Api, kind: i32) -> Result<Self, String> {
        let mut raw = std::ptr::null_mut();
        api.check("cudnnBackendCreateDescriptor", unsafe { (api.create_desc)(kind, &mut raw) })?;
        Ok(Desc { raw, api })
    }

    fn set_raw(&self, attr: i32, ty: i32, count: usize, ptr: *const c_void) -> Result<(), String> {
        let st = unsafe { (self.api.set_attr)(self.raw, attr, ty, count as i64, ptr) };
        self.api.check(&format!("cudnnBackendSetAttribute({attr})"), st)
    }

    /// An enum-valued or int32 attribute (C enums are `int`).
    pub fn set_enum(&self, attr: i32, ty: i32, value: i32) -> Result<(), String> {
        self.set_raw(attr, ty, 1, &value as *const i32 as *const c_void)
    }

    pub fn set_f32(&self, attr: i32, value: f32) -> Result<(), String> {
        self.set_raw(attr, TYPE_FLOAT, 1, &value as *const f32 as *const c_void)
    }

    pub fn set_i64s(&self, attr: i32, values: &[i64]) -> Result<(), String> {
        self.set_raw(attr, TYPE_INT64, values.len(), values.as_ptr() as *const c_void)
    }

    pub fn set_bool(&self, attr: i32, value: bool) -> Result<(), String> {
        self.set_raw(attr, TYPE_BOOLEAN, 1, &value as *const bool as *const c_void)
    }

    pub fn set_handle(&self, attr: i32, handle: Handle) -> Result<(), String> {
        self.set_raw(attr, TYPE_HANDLE, 1, &handle as *const Handle as *const c_void)
    }

    pub fn set_descs(&self, attr: i32, descs: &[&Desc]) -> Result<(), String> {
        let raws: Vec<BackendDesc> = descs.iter().map(|d| d.raw).collect();
        self.set_raw(attr, TYPE_BACKEND_DESCRIPTOR, raws.len(), raws.as_ptr() as *const c_void)
    }

    pub fn set_ptrs(&self, attr: i32, ptrs: &[*mut c_void]) -> Result<(), String> {
        self.set_raw(attr, TYPE_VOID_PTR, ptrs.len(), ptrs.as_ptr() as *const c_void)
    }

    pub fn finalize(&self, what: &str) -> Result<(), String> {
        self.api.check(what, unsafe { (self.api.finalize)(self.raw) })
    }

    pub fn get_i64(&self, attr: i32) -> Result<i64, String> {
        let mut value = 0i64;
        let mut count = 0i64;
        let st = unsafe {
            (self.api.get_attr)(self.raw, attr, TYPE_INT64, 1, &mut count, &mut value as *mut i64 as *mut c_void)
        };
        self.api.check(&format!("cudnnBackendGetAttribute({attr})"), st)?;
        Ok(value)
    }
}

impl Drop for Desc {
    fn drop(&mut self) {
        unsafe { (self.api.destroy_desc)(self.raw) };
    }
}

// Descriptors are plain heap objects of cuDNN, used under a mutex by one thread at a time.
unsafe impl Send for Desc {}
