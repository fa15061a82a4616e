//! `livetalk dev parity DIR` on a copy of the fixture directory, and on damaged copies: every
//! problem is a FAIL line naming the file and the tensor / field, with a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use livetalk_model::fixture::fixtures_dir;

const BIN: &str = env!("CARGO_BIN_EXE_livetalk");

/// A copy of the fixture directory (fixtures_dir() honours LIVETALK_FIXTURES_DIR), removed on drop.
struct FixtureCopy(PathBuf);

impl FixtureCopy {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("livetalk-parity-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&fixtures_dir(), &dir);
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for FixtureCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn parity(dir: &Path, extra: &[&str]) -> (Output, String, String) {
    let out = Command::new(BIN).args(["dev", "parity"]).arg(dir).args(extra).output().expect("run livetalk");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{stdout}{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out, stdout, stderr)
}

/// The line of fixture `name`.
fn line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{stdout}"))
}

const ALL: &[&str] = &["schedule", "image_preprocess", "dit_block", "dit_stream", "audio", "vae", "taehv", "pipeline"];

#[test]
fn copied_fixture_directory_passes() {
    let copy = FixtureCopy::new();
    let (out, stdout, _) = parity(&copy.0, &[]);
    assert!(out.status.success(), "{stdout}");
    for name in ALL {
        let l = line(&stdout, name);
        assert!(l.contains("max_err=") && l.contains("tol="), "{l}");
        assert_eq!(l.split_whitespace().nth(3), Some("PASS"), "{l}");
    }
}

/// Rewrites a safetensors file without tensor `drop` (header and data section rebuilt, so the
/// file stays valid: only the tensor is missing).
fn remove_tensor(path: &Path, drop: &str) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    assert!(header.contains_key(drop), "{drop} is not in {}", path.display());
    let mut entries: Vec<(String, serde_json::Value)> =
        header.into_iter().filter(|(k, _)| k != "__metadata__" && k != drop).collect();
    let range = |v: &serde_json::Value| {
        let o = v["data_offsets"].as_array().unwrap();
        (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize)
    };
    entries.sort_by_key(|(_, v)| range(v).0);
    let mut new_data = Vec::new();
    let mut new_header = serde_json::Map::new();
    for (k, mut v) in entries {
        let (a, b) = range(&v);
        let start = new_data.len();
        new_data.extend_from_slice(&data[a..b]);
        v["data_offsets"] = serde_json::json!([start, new_data.len()]);
        new_header.insert(k, v);
    }
    let mut h = serde_json::to_vec(&new_header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&new_data);
    std::fs::write(path, out).unwrap();
}

#[test]
fn dit_weights_without_a_tensor_fail_with_file_and_tensor() {
    let copy = FixtureCopy::new();
    let tensor = "blocks.1.self_attn.q.weight";
    remove_tensor(&copy.file("dit.weights.safetensors"), tensor);
    let (out, stdout, stderr) = parity(&copy.0, &[]);
    assert!(!out.status.success());
    assert!(stderr.contains("fixtures failed"), "{stderr}");
    for name in ["dit_block", "dit_stream", "pipeline"] {
        let l = line(&stdout, name);
        assert!(l.contains("FAIL"), "{l}");
        assert!(l.contains("dit.weights.safetensors") && l.contains(tensor), "{l}");
    }
    // the models that do not read the DiT file still pass
    for name in ["schedule", "image_preprocess", "vae", "taehv"] {
        assert!(line(&stdout, name).contains("PASS"), "{stdout}");
    }
}

#[test]
fn truncated_and_missing_weights_fail_with_the_file_named() {
    let copy = FixtureCopy::new();
    let vae = copy.file("vae.weights.safetensors");
    let bytes = std::fs::read(&vae).unwrap();
    std::fs::write(&vae, &bytes[..bytes.len() - 1000]).unwrap();
    std::fs::remove_file(copy.file("taehv.weights.safetensors")).unwrap();
    let (out, stdout, _) = parity(&copy.0, &[]);
    assert!(!out.status.success());
    for name in ["vae", "pipeline"] {
        let l = line(&stdout, name);
        assert!(l.contains("FAIL") && l.contains("vae.weights.safetensors"), "{l}");
        assert!(l.contains("truncated") && l.contains("tensor"), "{l}");
    }
    let l = line(&stdout, "taehv");
    assert!(l.contains("FAIL") && l.contains("taehv.weights.safetensors"), "{l}");
    assert!(line(&stdout, "dit_stream").contains("PASS"), "{stdout}");
}

#[test]
fn broken_fixture_files_fail_with_the_field_or_tensor_named() {
    let copy = FixtureCopy::new();
    // a parameter missing from the fixture JSON
    let json = copy.file("dit_stream.fixture.json");
    let mut params: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    params.as_object_mut().unwrap().remove("sink_size");
    std::fs::write(&json, serde_json::to_vec(&params).unwrap()).unwrap();
    // an input tensor missing from the fixture data
    remove_tensor(&copy.file("taehv.io.safetensors"), "input.latents");
    // an io file that is not a safetensors file at all
    std::fs::write(copy.file("schedule.io.safetensors"), b"not a safetensors file").unwrap();
    // a config whose sizes do not match the weights (shape mismatch)
    let cfg = copy.file("vae.config.json");
    let mut vae: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    vae["dim"] = serde_json::json!(4);
    std::fs::write(&cfg, serde_json::to_vec(&vae).unwrap()).unwrap();

    let (out, stdout, _) = parity(&copy.0, &[]);
    assert!(!out.status.success());
    let l = line(&stdout, "dit_stream");
    assert!(l.contains("FAIL") && l.contains("dit_stream.fixture.json") && l.contains("sink_size"), "{l}");
    let l = line(&stdout, "taehv");
    assert!(l.contains("FAIL") && l.contains("input.latents"), "{l}");
    let l = line(&stdout, "schedule");
    assert!(l.contains("FAIL") && l.contains("schedule.io.safetensors"), "{l}");
    let l = line(&stdout, "vae");
    assert!(l.contains("FAIL") && l.contains("vae.weights.safetensors") && l.contains("shape"), "{l}");
    assert!(line(&stdout, "dit_block").contains("PASS"), "{stdout}");
}

#[test]
fn empty_directory_and_bad_arguments_exit_non_zero() {
    let dir = std::env::temp_dir().join(format!("livetalk-parity-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, _, stderr) = parity(&dir, &[]);
    assert!(!out.status.success());
    assert!(stderr.contains("no parity fixture found"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);

    let (out, _, stderr) = parity(Path::new("/nonexistent/fixtures"), &[]);
    assert!(!out.status.success());
    assert!(stderr.contains("not a directory"), "{stderr}");

    if !cfg!(feature = "cuda") {
        let (out, _, stderr) = parity(&fixtures_dir(), &["--device", "cuda"]);
        assert!(!out.status.success());
        assert!(stderr.contains("without CUDA support") && stderr.contains("--features cuda"), "{stderr}");
    }
}

#[test]
fn bf16_run_passes_with_its_own_tolerances() {
    let copy = FixtureCopy::new();
    let (out, stdout, _) = parity(&copy.0, &["--dtype", "bf16", "--tensors"]);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("all 8 fixtures passed (bf16 on cpu)"), "{stdout}");
    // per-tensor lines under each fixture
    assert!(stdout.contains("    expected.flow_pred  max_err="), "{stdout}");
}

/// A tensor the DiT forward never reads (the audio projection lives in the same file) is still
/// required: the file is checked against the published checkpoint's manifest.
#[test]
fn dit_file_is_checked_against_the_manifest() {
    let copy = FixtureCopy::new();
    let tensor = "audio_proj.norm_out.weight";
    remove_tensor(&copy.file("dit.weights.safetensors"), tensor);
    let (out, stdout, _) = parity(&copy.0, &[]);
    assert!(!out.status.success());
    let l = line(&stdout, "dit_block");
    assert!(l.contains("FAIL") && l.contains("dit.weights.safetensors") && l.contains(tensor), "{l}");
    assert!(l.contains("livetalk_dit.manifest.json"), "{l}");
    let l = line(&stdout, "audio");
    assert!(l.contains("FAIL") && l.contains(tensor), "{l}");
}
