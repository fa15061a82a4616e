//! The `.safetensors` header: validated by the `safetensors` crate; when it refuses a file, a
//! lenient parse of our own finds the tensor at fault so the error can name it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{SafeTensorError, SafeTensors};
use serde::Deserialize;

use super::{dtype_name, parse_dtype, CheckpointError, TensorHeader, TensorRecord};

const LENGTH_PREFIX: usize = 8;

pub(crate) fn read_records(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<String, TensorRecord>, CheckpointError> {
    let (header_len, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| diagnose(path, bytes, e))?;
    let data_start = LENGTH_PREFIX + header_len;
    let mut records = BTreeMap::new();
    for (name, info) in metadata.tensors() {
        let dtype_label = format!("{:?}", info.dtype);
        let dtype = parse_dtype(&dtype_label).ok_or_else(|| {
            CheckpointError::tensor(path, &name, format!("unsupported dtype {dtype_label}"))
        })?;
        let (begin, end) = info.data_offsets;
        let header = TensorHeader {
            shape: info.shape.clone(),
            dtype,
        };
        records.insert(
            name,
            TensorRecord {
                header,
                bytes: data_start + begin..data_start + end,
            },
        );
    }
    Ok(records)
}

/// One header entry as written in the file, read without the crate's checks.
#[derive(Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

fn safetensors_error(path: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Safetensors {
        file: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Turns the crate's refusal into a message naming the tensor at fault where there is one.
fn diagnose(path: &Path, bytes: &[u8], error: SafeTensorError) -> CheckpointError {
    let file_len = bytes.len();
    match error {
        SafeTensorError::HeaderTooSmall => {
            safetensors_error(path, format!("the file is only {file_len} bytes long"))
        }
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => {
            let declared = bytes
                .get(..LENGTH_PREFIX)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; LENGTH_PREFIX])));
            safetensors_error(
                path,
                format!(
                    "the header length {} runs past the end of the file ({file_len} bytes): \
                     truncated, or not a safetensors file",
                    declared.unwrap_or(0)
                ),
            )
        }
        SafeTensorError::InvalidHeader(e) => {
            safetensors_error(path, format!("the header is not UTF-8: {e}"))
        }
        SafeTensorError::InvalidHeaderDeserialization(e) => {
            safetensors_error(path, format!("the header is not valid JSON: {e}"))
        }
        other => match raw_header(bytes) {
            Some((data_len, infos)) => find_bad_tensor(path, data_len, &infos)
                .unwrap_or_else(|| safetensors_error(path, format!("{other:?}"))),
            None => safetensors_error(path, format!("{other:?}")),
        },
    }
}

/// The data section's length and the header entries, if the header itself is readable.
fn raw_header(bytes: &[u8]) -> Option<(usize, HashMap<String, RawInfo>)> {
    let header_len = usize::try_from(u64::from_le_bytes(
        bytes.get(..LENGTH_PREFIX)?.try_into().ok()?,
    ))
    .ok()?;
    let header_end = LENGTH_PREFIX.checked_add(header_len)?;
    let mut entries: HashMap<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(LENGTH_PREFIX..header_end)?).ok()?;
    entries.remove("__metadata__");
    let infos = entries
        .into_iter()
        .map(|(name, value)| Some((name, serde_json::from_value(value).ok()?)))
        .collect::<Option<HashMap<_, _>>>()?;
    Some((bytes.len() - header_end, infos))
}

/// Walks the tensors in file order and reports the first whose bytes do not fit.
fn find_bad_tensor(
    path: &Path,
    data_len: usize,
    infos: &HashMap<String, RawInfo>,
) -> Option<CheckpointError> {
    let mut by_offset: Vec<_> = infos.iter().collect();
    by_offset.sort_by_key(|(name, info)| (info.data_offsets, name.as_str()));
    let mut expected_begin = 0;
    for (name, info) in &by_offset {
        let (begin, end) = info.data_offsets;
        let element_size = parse_dtype(&info.dtype).map(|d| d.size_in_bytes());
        let needed = info.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if let (Some(size), Some(count)) = (element_size, needed) {
            if end.checked_sub(begin) != count.checked_mul(size) {
                let reason = format!(
                    "byte range {begin}..{end} does not hold shape {:?} of {}",
                    info.shape,
                    dtype_name(parse_dtype(&info.dtype)?),
                );
                return Some(CheckpointError::tensor(path, name, reason));
            }
        }
        if begin != expected_begin {
            let reason =
                format!("data starts at byte {begin}, expected {expected_begin} (gap or overlap)");
            return Some(CheckpointError::tensor(path, name, reason));
        }
        if end > data_len {
            let reason = format!(
                "data ends at byte {end} of the data section but the file holds only {data_len} \
                 data bytes: the file is truncated"
            );
            return Some(CheckpointError::tensor(path, name, reason));
        }
        expected_begin = end;
    }
    (expected_begin < data_len).then(|| {
        safetensors_error(
            path,
            format!(
                "{} bytes follow the last tensor's data",
                data_len - expected_begin
            ),
        )
    })
}
