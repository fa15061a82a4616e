//! PyTorch `.pth` checkpoints (the zip format `torch.save` writes since PyTorch 1.6):
//! `<dir>/data.pkl` pickles the state dict, each tensor being
//! `torch._utils._rebuild_tensor_v2(persistent_id(('storage', torch.XStorage, key, location,
//! numel)), offset, size, stride, requires_grad, hooks)`, and `<dir>/data/<key>` holds the raw
//! little-endian storage. torch writes the entries uncompressed, so a storage is a byte range
//! of the file: we record it and read it from the memory map like a safetensors tensor.
//!
//! The pickle opcodes run on candle's VM (`candle_core::pickle::Stack`); everything after that
//! (finding the tensors in the object tree, checking storages against the archive) is here and
//! returns errors instead of panicking.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::DType;
use zip::{CompressionMethod, ZipArchive};

use super::{dtype_name, CheckpointError, TensorHeader, TensorRecord};

/// A state dict's pickle is a few hundred bytes per tensor; anything near this is not one.
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// A tensor as the pickle describes it, before its storage is looked up.
#[derive(Debug, Clone, PartialEq)]
struct TensorRef {
    storage_key: String,
    storage_dtype: DType,
    storage_numel: usize,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn pth_error(path: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Pth {
        file: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(crate) fn read_records(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<String, TensorRecord>, CheckpointError> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        // A bare pickle is the pre-1.6 format (torch.save(..., _use_new_zipfile_serialization=False)).
        let hint = if bytes.first() == Some(&0x80) {
            "; legacy non-zip torch files are not supported"
        } else {
            ""
        };
        pth_error(path, format!("not a zip archive ({e}){hint}"))
    })?;
    let pickle_name =
        find_pickle(&archive).ok_or_else(|| pth_error(path, "no data.pkl in the archive"))?;
    let dir = pickle_name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_string();
    let pickle = read_entry(&mut archive, &pickle_name)
        .map_err(|reason| pth_error(path, format!("{pickle_name}: {reason}")))?;
    let state_dict =
        unpickle(&pickle).map_err(|reason| pth_error(path, format!("{pickle_name}: {reason}")))?;

    let mut records = BTreeMap::new();
    for (key, value) in state_dict {
        let Object::Unicode(name) = key else { continue };
        let tensor = match tensor_ref(value) {
            Ok(Some(tensor)) => tensor,
            Ok(None) => continue, // `_metadata` and other non-tensor entries
            Err(reason) => return Err(CheckpointError::tensor(path, &name, reason)),
        };
        let bytes = storage_range(&mut archive, &dir, &tensor, bytes.len())
            .map_err(|reason| CheckpointError::tensor(path, &name, reason))?;
        let header = TensorHeader {
            shape: tensor.shape,
            dtype: tensor.storage_dtype,
        };
        records.insert(name, TensorRecord { header, bytes });
    }
    Ok(records)
}

fn find_pickle<R: Read + std::io::Seek>(archive: &ZipArchive<R>) -> Option<String> {
    archive
        .file_names()
        .filter_map(Result::ok)
        .find(|name| *name == "data.pkl" || name.ends_with("/data.pkl"))
        .map(|name| name.into_owned())
}

fn read_entry(archive: &mut ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Vec<u8>, String> {
    let entry = archive.by_name(name).map_err(|e| e.to_string())?;
    if entry.size() > MAX_PICKLE_BYTES {
        return Err(format!(
            "{} bytes, too large for a state dict pickle",
            entry.size()
        ));
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry
        .take(MAX_PICKLE_BYTES)
        .read_to_end(&mut data)
        .map_err(|e| e.to_string())?;
    Ok(data)
}

/// Runs the pickle and returns the state dict's `(key, value)` pairs.
fn unpickle(pickle: &[u8]) -> Result<Vec<(Object, Object)>, String> {
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut Cursor::new(pickle))
        .map_err(|e| format!("bad pickle: {e}"))?;
    let object = stack.finalize().map_err(|e| format!("bad pickle: {e}"))?;
    match object {
        Object::Dict(entries) => Ok(entries),
        other => Err(format!("holds {}, not a state dict", describe(&other))),
    }
}

fn describe(object: &Object) -> String {
    match object {
        Object::Class {
            module_name,
            class_name,
        } => format!("{module_name}.{class_name}"),
        Object::Reduce { callable, .. } | Object::Build { callable, .. } => {
            format!("an object built by {}", describe(callable))
        }
        Object::List(_) => "a list".into(),
        Object::Tuple(_) => "a tuple".into(),
        Object::Dict(_) => "a dict".into(),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

/// Recognises the pickled forms of a tensor; `Ok(None)` for values that are not tensors.
fn tensor_ref(value: Object) -> Result<Option<TensorRef>, String> {
    let Object::Reduce { callable, args } = value else {
        return Ok(None);
    };
    let Object::Class {
        module_name,
        class_name,
    } = *callable
    else {
        return Ok(None);
    };
    let args = match *args {
        Object::Tuple(args) => args,
        other => return Err(format!("{class_name} called with {}", describe(&other))),
    };
    match (module_name.as_str(), class_name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") => rebuild_tensor_args(args).map(Some),
        // nn.Parameter(data, requires_grad, hooks): the tensor is the first argument.
        ("torch._utils", "_rebuild_parameter") => match args.into_iter().next() {
            Some(data) => tensor_ref(data),
            None => Err("_rebuild_parameter without arguments".into()),
        },
        // Tensor subclasses: (func, type, func_args, state).
        ("torch._tensor", "_rebuild_from_type_v2") => {
            let mut args = args.into_iter();
            match (args.next(), args.next(), args.next()) {
                (Some(func), Some(_), Some(func_args)) => tensor_ref(Object::Reduce {
                    callable: Box::new(func),
                    args: Box::new(func_args),
                }),
                _ => Err("_rebuild_from_type_v2 with too few arguments".into()),
            }
        }
        (module, class) if module.starts_with("torch") => Err(format!(
            "unsupported tensor kind {module}.{class} (quantized or sparse?)"
        )),
        _ => Ok(None),
    }
}

fn rebuild_tensor_args(args: Vec<Object>) -> Result<TensorRef, String> {
    let [storage, offset, size, stride, ..] = args.as_slice() else {
        return Err(format!(
            "_rebuild_tensor_v2 with {} arguments, expected at least 4",
            args.len()
        ));
    };
    let Object::PersistentLoad(storage_id) = storage else {
        return Err(format!(
            "storage argument is {}, not a persistent id",
            describe(storage)
        ));
    };
    let Object::Tuple(storage_id) = storage_id.as_ref() else {
        return Err("storage id is not a tuple".into());
    };
    let [Object::Unicode(kind), Object::Class { class_name, .. }, Object::Unicode(key), _location, numel] =
        storage_id.as_slice()
    else {
        return Err("storage id is not ('storage', type, key, location, numel)".into());
    };
    if kind != "storage" {
        return Err(format!(
            "persistent id of kind '{kind}', expected 'storage'"
        ));
    }
    Ok(TensorRef {
        storage_key: key.clone(),
        storage_dtype: storage_dtype(class_name)?,
        storage_numel: to_usize(numel, "storage size")?,
        offset: to_usize(offset, "storage offset")?,
        shape: to_usizes(size, "size")?,
        stride: to_usizes(stride, "stride")?,
    })
}

fn storage_dtype(class_name: &str) -> Result<DType, String> {
    Ok(match class_name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "ByteStorage" => DType::U8,
        "ShortStorage" => DType::I16,
        "IntStorage" => DType::I32,
        "LongStorage" => DType::I64,
        other => return Err(format!("unsupported storage type {other}")),
    })
}

fn to_usize(object: &Object, what: &str) -> Result<usize, String> {
    let value = match object {
        Object::Int(v) => i64::from(*v),
        Object::Long(v) => *v,
        other => return Err(format!("{what} is {}, not an integer", describe(other))),
    };
    usize::try_from(value).map_err(|_| format!("{what} is negative ({value})"))
}

fn to_usizes(object: &Object, what: &str) -> Result<Vec<usize>, String> {
    match object {
        Object::Tuple(items) => items.iter().map(|item| to_usize(item, what)).collect(),
        other => Err(format!("{what} is {}, not a tuple", describe(other))),
    }
}

/// The file byte range of `tensor`, after checking the storage entry holds it.
fn storage_range(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    dir: &str,
    tensor: &TensorRef,
    file_len: usize,
) -> Result<std::ops::Range<usize>, String> {
    let element_size = tensor.storage_dtype.size_in_bytes();
    let entry_name = format!("{dir}data/{}", tensor.storage_key);
    let entry = archive
        .by_name_raw(entry_name.as_bytes())
        .map_err(|e| format!("storage {entry_name}: {e}"))?;
    if entry.compression() != CompressionMethod::Stored {
        return Err(format!(
            "storage {entry_name} is compressed ({}); torch.save stores it raw",
            entry.compression()
        ));
    }
    let entry_start = entry
        .data_start()
        .ok_or_else(|| format!("storage {entry_name}: no data offset"))?;
    let entry_len = entry.size();
    let storage_bytes = (tensor.storage_numel as u64).checked_mul(element_size as u64);
    if storage_bytes.is_none_or(|needed| needed > entry_len) {
        return Err(format!(
            "storage {entry_name} holds {entry_len} bytes, the pickle declares {} elements of {}: \
             the file is truncated or corrupt",
            tensor.storage_numel,
            dtype_name(tensor.storage_dtype)
        ));
    }
    if entry_start
        .checked_add(entry_len)
        .is_none_or(|end| end > file_len as u64)
    {
        return Err(format!(
            "storage {entry_name} runs past the end of the file: truncated"
        ));
    }
    if !is_contiguous(&tensor.shape, &tensor.stride) {
        return Err(format!(
            "non-contiguous layout (shape {:?}, stride {:?}) is not supported",
            tensor.shape, tensor.stride
        ));
    }
    let numel = tensor
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d));
    let end_element = numel.and_then(|n| n.checked_add(tensor.offset));
    if end_element.is_none_or(|end| end > tensor.storage_numel) {
        return Err(format!(
            "shape {:?} at offset {} does not fit its storage of {} elements",
            tensor.shape, tensor.offset, tensor.storage_numel
        ));
    }
    // Both fit in the entry, which fits in the file: no overflow past here.
    let begin = entry_start as usize + tensor.offset * element_size;
    let len = numel.unwrap_or(0) * element_size;
    Ok(begin..begin + len)
}

/// Row-major strides, ignoring dimensions of size 1 (whose stride torch leaves arbitrary).
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    if shape.len() != stride.len() {
        return false;
    }
    let mut expected = 1;
    for (&dim, &step) in shape.iter().zip(stride).rev() {
        if dim != 1 && step != expected {
            return false;
        }
        expected *= dim;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_unit_dims() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[2, 1, 3], &[3, 7, 1]));
        assert!(is_contiguous(&[], &[]));
        assert!(!is_contiguous(&[2, 3], &[1, 2]));
        assert!(!is_contiguous(&[2, 3], &[3]));
    }

    #[test]
    fn malformed_rebuild_args_are_errors_not_panics() {
        let short = vec![Object::Int(0)];
        assert!(rebuild_tensor_args(short)
            .unwrap_err()
            .contains("at least 4"));
        let bad_storage = vec![
            Object::Int(0),
            Object::Int(0),
            Object::Tuple(vec![]),
            Object::Tuple(vec![]),
        ];
        assert!(rebuild_tensor_args(bad_storage)
            .unwrap_err()
            .contains("persistent id"));
    }
}
