//! DLPack export: every `unsafe` of the extension lives here.
//!
//! A tensor is handed to its consumer as a `DLManagedTensor` in a PyCapsule named "dltensor"
//! (the layout every PyTorch and NumPy reads; the versioned struct is optional for a producer,
//! so it is not offered). The managed tensor owns what keeps the memory alive — a batch buffer
//! lent from the loader's ring, or the packed small tensors — and its deleter, called by the
//! consumer when the tensor dies (or by the capsule's destructor when nobody took it), drops
//! that owner: a lent buffer goes back to the ring then.
//!
//! Layouts (dlpack.h, v0.8+): `DLDevice {int32 device_type; int32 device_id}`, `DLDataType
//! {uint8 code; uint8 bits; uint16 lanes}`, `DLTensor {void* data; DLDevice device; int32 ndim;
//! DLDataType dtype; int64* shape; int64* strides; uint64 byte_offset}`, `DLManagedTensor
//! {DLTensor dl_tensor; void* manager_ctx; void (*deleter)(DLManagedTensor*)}`.

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{c_void, CStr};

/// `kDLCPU`, `kDLCUDA`.
pub const DEVICE_CPU: i32 = 1;
pub const DEVICE_CUDA: i32 = 2;
/// `kDLUInt`, `kDLFloat` (the small tensors travel as bytes and are viewed on the Python side).
pub const CODE_UINT: u8 = 1;
pub const CODE_FLOAT: u8 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct DlDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DlDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DlTensor {
    data: *mut c_void,
    device: DlDevice,
    ndim: i32,
    dtype: DlDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DlManagedTensor {
    dl_tensor: DlTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DlManagedTensor)>,
}

/// The managed tensor and what it keeps alive; `managed` first, so a pointer to it is a pointer
/// to the whole.
#[repr(C)]
struct Managed {
    managed: DlManagedTensor,
    shape: Vec<i64>,
    _owner: Box<dyn Send>,
}

const CAPSULE: &CStr = c"dltensor";

/// What a capsule describes.
pub struct Export {
    /// Address of the first element (0 for an empty tensor is fine).
    pub address: u64,
    pub device_type: i32,
    pub device_id: i32,
    pub code: u8,
    pub bits: u8,
    pub shape: Vec<i64>,
    /// Dropped when the consumer lets go.
    pub owner: Box<dyn Send>,
}

/// Called by the consumer (or by [`capsule_destructor`]) exactly once per managed tensor.
unsafe extern "C" fn deleter(m: *mut DlManagedTensor) {
    if !m.is_null() {
        // SAFETY: `m` is the pointer `into_capsule` leaked from a `Box<Managed>` (the managed
        // tensor is its first field); DLPack calls the deleter once, so the box is rebuilt and
        // dropped once. Dropping the owner touches no Python object (no GIL needed).
        drop(unsafe { Box::from_raw(m.cast::<Managed>()) });
    }
}

/// Capsule destructor: frees the tensor when no consumer renamed the capsule (took it).
unsafe extern "C" fn capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: Python calls this with the GIL held on a live capsule object. A consumer that
    // took the tensor renamed the capsule ("used_dltensor"), then `IsValid` is false and the
    // consumer's deleter call is the one that frees it.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, CAPSULE.as_ptr()) == 1 {
            let p = ffi::PyCapsule_GetPointer(capsule, CAPSULE.as_ptr());
            deleter(p.cast::<DlManagedTensor>());
        } else {
            // IsValid/GetPointer may have set an error; a destructor must not leave one.
            ffi::PyErr_Clear();
        }
    }
}

/// Wraps `e` in a "dltensor" capsule for a consumer.
pub fn into_capsule(py: Python<'_>, e: Export) -> PyResult<Py<PyAny>> {
    if e.bits == 0 || e.shape.iter().any(|&d| d < 0) {
        return Err(PyBufferError::new_err("bad tensor description"));
    }
    let mut m = Box::new(Managed {
        managed: DlManagedTensor {
            dl_tensor: DlTensor {
                data: e.address as *mut c_void,
                device: DlDevice {
                    device_type: e.device_type,
                    device_id: e.device_id,
                },
                ndim: e.shape.len() as i32,
                dtype: DlDataType {
                    code: e.code,
                    bits: e.bits,
                    lanes: 1,
                },
                shape: std::ptr::null_mut(),
                // Null strides: compact row-major, which every tensor here is.
                strides: std::ptr::null_mut(),
                byte_offset: 0,
            },
            manager_ctx: std::ptr::null_mut(),
            deleter: Some(deleter),
        },
        shape: e.shape,
        _owner: e.owner,
    });
    // The shape lives in the same box, so its buffer outlives every read of the tensor.
    m.managed.dl_tensor.shape = m.shape.as_mut_ptr();
    let raw = Box::into_raw(m);
    // SAFETY: `raw` is a live, leaked `Managed`; `manager_ctx` may point anywhere (nobody but
    // us reads it).
    unsafe { (*raw).managed.manager_ctx = raw.cast::<c_void>() };
    // SAFETY: the name is a static C string that outlives the capsule; the destructor matches
    // PyCapsule_Destructor's signature; the GIL is held (we have `py`).
    let cap = unsafe {
        ffi::PyCapsule_New(
            raw.cast::<c_void>(),
            CAPSULE.as_ptr(),
            Some(capsule_destructor),
        )
    };
    if cap.is_null() {
        // SAFETY: the capsule was not made, so nobody else owns `raw`: free it here.
        unsafe { deleter(raw.cast::<DlManagedTensor>()) };
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `cap` is a new (owned) reference returned by PyCapsule_New.
    Ok(unsafe { Bound::from_owned_ptr(py, cap) }.unbind())
}

/// A CUDA stream handle a consumer passed to `__dlpack__`, for the core crate's
/// [`dsprep::gpu::ffi::cuda::ForeignStream`].
pub fn foreign_stream(handle: usize) -> dsprep::gpu::ffi::cuda::ForeignStream {
    // SAFETY: DLPack's contract: the consumer passes its own live stream on the tensor's device
    // (or 1 / 2 for the legacy / per-thread default stream), and `__dlpack__` is called while
    // that stream exists; the stream is used only for the wait below and for recording the
    // release event when the consumer drops the tensor, which it does on that stream's device.
    unsafe { dsprep::gpu::ffi::cuda::ForeignStream::from_raw(handle) }
}
