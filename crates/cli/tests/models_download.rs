//! `livetalk models download` against a real HTTP server on loopback laid out like the Hugging
//! Face Hub (`/{repo}/resolve/{revision}/{file}` with ETag, X-Repo-Commit, Content-Range and
//! Range support) and like GitHub (`/{repo}/raw/{revision}/{file}`). The server can cut every
//! transfer after some bytes, and logs each request's Range header and the body bytes it sent.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use livetalk_model::checkpoint::registry::sha256_file;
use livetalk_model::checkpoint::Checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_livetalk");
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    range: Option<String>,
    /// Body bytes the answer carried before it ended (or was cut).
    sent: usize,
}

#[derive(Clone)]
struct Served {
    bytes: Arc<Vec<u8>>,
    etag: String,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Served>,
    /// Cut every body longer than this after this many bytes (metadata's 1-byte answers pass).
    cut_after: Option<usize>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct TestHub {
    url: String,
    state: Arc<Mutex<State>>,
}

impl TestHub {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || answer(stream, &state));
            }
        });
        TestHub { url, state }
    }

    /// Serves `bytes` at `path` with the Hub's ETag for LFS files: their sha256 (or `etag`).
    fn serve(&self, path: &str, bytes: Vec<u8>, etag: Option<&str>) {
        let etag = etag.map(str::to_string).unwrap_or_else(|| sha256_hex(&bytes));
        self.state.lock().unwrap().files.insert(path.to_string(), Served { bytes: Arc::new(bytes), etag });
    }

    fn cut_after(&self, bytes: Option<usize>) {
        self.state.lock().unwrap().cut_after = bytes;
    }

    /// The requests seen so far, forgetting them.
    fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }
}

fn answer(mut stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    // Logged on arrival, so the log is in request order; `sent` is filled in once written.
    let (served, cut_after, index) = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen { path: path.clone(), range: range.clone(), sent: 0 });
        (state.files.get(&path).cloned(), state.cut_after, state.seen.len() - 1)
    };
    let Some(served) = served else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let size = served.bytes.len();
    let (status, start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap();
            let start: usize = a.parse().unwrap();
            let end: usize = if b.is_empty() { size - 1 } else { b.parse::<usize>().unwrap().min(size - 1) };
            ("206 Partial Content", start, end)
        }
        None => ("200 OK", 0, size - 1),
    };
    let body = &served.bytes[start..=end];
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n\
         ETag: \"{}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n",
        body.len(),
        served.etag
    );
    if status.starts_with("206") {
        head.push_str(&format!("Content-Range: bytes {start}-{end}/{size}\r\n"));
    }
    head.push_str("\r\n");
    let send = match cut_after {
        Some(cut) if body.len() > 1 => cut.min(body.len()),
        _ => body.len(),
    };
    // Counted before writing: the client may have it all and exit before this thread goes on.
    if let Some(seen) = state.lock().unwrap().seen.get_mut(index) {
        seen.sent = send;
    }
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body[..send])).and_then(|_| stream.flush());
    // A cut transfer: the connection drops before the announced Content-Length.
    let _ = stream.shutdown(Shutdown::Both);
}

fn sha256_hex(bytes: &[u8]) -> String {
    let dir = scratch("sha");
    let file = dir.join("bytes");
    std::fs::write(&file, bytes).unwrap();
    let sha = sha256_file(&file).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    sha
}

fn scratch(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("livetalk-download-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_vae() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/vae.weights.safetensors")).unwrap()
}

/// Deterministic noise: a file that compresses to nothing and differs everywhere.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A registry folder: `tiny-vae` (Hub, the tiny VAE fixture checked against its own manifest,
/// plus a config file) and `tiny-gh` (GitHub, into the `gh/` sub-folder).
struct Rig {
    dir: PathBuf,
    hub: TestHub,
}

impl Rig {
    fn new(name: &str, vae_sha256: &str, gh_bytes: &[u8]) -> Self {
        let dir = scratch(name);
        let registry = dir.join("registry");
        std::fs::create_dir_all(&registry).unwrap();
        let checkpoint = Checkpoint::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/vae.weights.safetensors")).unwrap();
        let tensors: serde_json::Map<String, serde_json::Value> =
            checkpoint.headers().map(|(k, h)| (k.to_string(), serde_json::json!({"shape": h.shape}))).collect();
        let manifest = serde_json::json!({
            "checkpoint": "tiny vae", "format": "safetensors", "num_tensors": checkpoint.len(),
            "num_params": checkpoint.num_params(), "keys_md5": checkpoint.keys_md5(), "tensors": tensors
        });
        std::fs::write(registry.join("tiny_vae.manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(
            registry.join("tiny-vae.toml"),
            format!(
                "id = \"tiny-vae\"\ndescription = \"tiny VAE\"\nbundles = [\"tiny\"]\nsource = \"huggingface\"\nrepo = \"test/tiny-vae\"\nrevision = \"main\"\n\
                 [licence]\nname = \"CC-BY-NC-SA-4.0\"\nurl = \"https://example.invalid/LICENSE.md\"\nnote = \"non-commercial use only\"\n\
                 [[files]]\npath = \"weights/vae.safetensors\"\nsha256 = \"{vae_sha256}\"\nmanifest = \"tiny_vae.manifest.json\"\n\
                 [[files]]\npath = \"config.json\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            registry.join("tiny-gh.toml"),
            format!(
                "id = \"tiny-gh\"\ndescription = \"tiny GitHub file\"\nbundles = [\"tiny\"]\nsource = \"github\"\nrepo = \"someone/taehv\"\nrevision = \"main\"\nfolder = \"gh\"\n\
                 [licence]\nname = \"MIT\"\nurl = \"https://example.invalid/MIT\"\n\
                 [[files]]\npath = \"safetensors/t.bin\"\nsize = {}\nsha256 = \"{}\"\n",
                gh_bytes.len(),
                sha256_hex(gh_bytes)
            ),
        )
        .unwrap();
        let hub = TestHub::start();
        hub.serve("/test/tiny-vae/resolve/main/weights/vae.safetensors", tiny_vae(), None);
        hub.serve("/test/tiny-vae/resolve/main/config.json", b"{\"layers\": 2}\n".to_vec(), Some("a1b2c3d4e5"));
        hub.serve("/someone/taehv/raw/main/safetensors/t.bin", gh_bytes.to_vec(), None);
        Rig { dir, hub }
    }

    fn weights(&self) -> PathBuf {
        self.dir.join("weights")
    }

    fn download(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(["models", "download"])
            .args(args)
            .arg("--registry")
            .arg(self.dir.join("registry"))
            .arg("--weights")
            .arg(self.weights());
        self.environment(&mut command).stdin(Stdio::null());
        command.output().expect("run livetalk models download")
    }

    /// `models download MODEL` on a terminal (util-linux `script` makes the pty) answering the
    /// licence question with `answer`.
    fn download_on_a_terminal(&self, model: &str, answer: &str) -> Output {
        let line = format!(
            "{BIN} models download {model} --registry {} --weights {}",
            self.dir.join("registry").display(),
            self.weights().display()
        );
        let mut command = Command::new("script");
        command.args(["-q", "-e", "-c", &line, "/dev/null"]);
        self.environment(&mut command).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("run script(1) from util-linux");
        child.stdin.take().unwrap().write_all(format!("{answer}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn environment<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env("HF_ENDPOINT", &self.hub.url)
            .env("LIVETALK_GITHUB_ENDPOINT", &self.hub.url)
            .env("HF_HOME", self.dir.join("hf-home"))
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env_remove("HF_TOKEN");
        for proxy in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
            command.env_remove(proxy);
        }
        command
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &Output) -> String {
    format!("{}\n--- stderr ---\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Files under `dir` whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(listing) = std::fs::read_dir(dir) {
        for item in listing.flatten() {
            let path = item.path();
            if path.is_dir() {
                found.extend(files_ending(&path, suffix));
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn licence_first_then_a_full_download_verified_and_kept() {
    let gh = noise(40_000, 1);
    let vae_sha = sha256_hex(&tiny_vae());
    let rig = Rig::new("full", &vae_sha, &gh);

    // Not accepted, no terminal to ask: refused before any request.
    let refused = rig.download(&["tiny"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    let all = text(&refused);
    assert!(all.contains("CC-BY-NC-SA-4.0") && all.contains("https://example.invalid/LICENSE.md") && all.contains("non-commercial use only"), "{all}");
    assert!(all.contains("not accepted") && all.contains("--accept-licence"), "{all}");
    assert!(rig.hub.take_seen().is_empty(), "nothing may be fetched before the licence is accepted");
    assert!(!rig.weights().join("weights/vae.safetensors").exists());

    let done = rig.download(&["tiny", "--accept-licence"]);
    assert!(done.status.success(), "{}", text(&done));
    let out = text(&done);
    assert!(out.contains("ok    tiny-vae (2 files)") && out.contains("ok    tiny-gh (1 files)"), "{out}");
    assert!(out.contains(&format!("sha256 {vae_sha}")), "{out}");
    assert_eq!(std::fs::read(rig.weights().join("weights/vae.safetensors")).unwrap(), tiny_vae());
    assert_eq!(std::fs::read(rig.weights().join("config.json")).unwrap(), b"{\"layers\": 2}\n");
    assert_eq!(std::fs::read(rig.weights().join("gh/safetensors/t.bin")).unwrap(), gh);
    assert!(!rig.weights().join(".downloads").exists(), "the staging folder is removed when nothing waits in it");
    let record = std::fs::read_to_string(rig.dir.join("config/livetalk/accepted-licences")).unwrap();
    assert!(record.contains("tiny-vae CC-BY-NC-SA-4.0") && record.contains("tiny-gh MIT"), "{record}");
    let seen = rig.hub.take_seen();
    // hf-hub asks for the metadata with a 1-byte range, then the body; GitHub files are one GET.
    assert!(seen.iter().any(|s| s.path.ends_with("/vae.safetensors") && s.range.as_deref() == Some("bytes=0-0")), "{seen:?}");
    assert!(seen.iter().any(|s| s.path.ends_with("/t.bin") && s.range.is_none() && s.sent == gh.len()), "{seen:?}");

    // Accepted once, remembered; files that verify are kept, nothing is fetched again.
    let again = rig.download(&["tiny"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("have  tiny-vae weights/vae.safetensors"), "{}", text(&again));
    assert!(rig.hub.take_seen().is_empty());

    // A file in place that does not verify is the user's: reported and left untouched.
    std::fs::write(rig.weights().join("gh/safetensors/t.bin"), b"mine").unwrap();
    let clash = rig.download(&["tiny-gh"]);
    assert!(!clash.status.success());
    assert!(text(&clash).contains("exists but does not match the registry; it was left untouched"), "{}", text(&clash));
    assert_eq!(std::fs::read(rig.weights().join("gh/safetensors/t.bin")).unwrap(), b"mine");

    let unknown = rig.download(&["nope"]);
    assert!(!unknown.status.success());
    assert!(text(&unknown).contains("no model or bundle named `nope`") && text(&unknown).contains("tiny-gh"), "{}", text(&unknown));
}

#[test]
fn on_a_terminal_the_licence_is_asked_for() {
    let gh = noise(1_000, 4);
    let rig = Rig::new("prompt", &sha256_hex(&tiny_vae()), &gh);
    let declined = rig.download_on_a_terminal("tiny-vae", "no");
    let all = text(&declined);
    assert!(!declined.status.success(), "{all}");
    assert!(all.contains("CC-BY-NC-SA-4.0") && all.contains("Type `yes` to download"), "{all}");
    assert!(all.contains("was not accepted: nothing was downloaded"), "{all}");
    assert!(rig.hub.take_seen().is_empty());
    assert!(!rig.dir.join("config/livetalk/accepted-licences").exists());

    let accepted = rig.download_on_a_terminal("tiny-vae", "yes");
    assert!(accepted.status.success(), "{}", text(&accepted));
    assert_eq!(std::fs::read(rig.weights().join("weights/vae.safetensors")).unwrap(), tiny_vae());
    let record = std::fs::read_to_string(rig.dir.join("config/livetalk/accepted-licences")).unwrap();
    assert!(record.contains("tiny-vae CC-BY-NC-SA-4.0") && !record.contains("tiny-gh"), "{record}");
}

#[test]
fn an_interrupted_transfer_resumes_with_a_range_request() {
    let gh = noise(600_000, 2);
    let vae = tiny_vae();
    let rig = Rig::new("resume", &sha256_hex(&vae), &gh);
    const CUT: usize = 100_000;
    rig.hub.cut_after(Some(CUT));

    // Every transfer breaks after CUT bytes: each retry in the run resumes where the last
    // stopped, then the run gives up and keeps the partial files.
    let broken = rig.download(&["tiny", "--accept-licence"]);
    assert!(!broken.status.success(), "{}", text(&broken));
    assert!(text(&broken).contains("run the same command again to resume"), "{}", text(&broken));
    assert!(!rig.weights().join("weights/vae.safetensors").exists(), "a partial file is never put in place");
    assert!(!rig.weights().join("gh/safetensors/t.bin").exists());
    let parts = files_ending(&rig.weights().join(".downloads"), ".part");
    assert_eq!(parts.len(), 2, "{parts:?}");
    let first = rig.hub.take_seen();
    let vae_ranges: Vec<_> = first.iter().filter(|s| s.path.ends_with("/vae.safetensors")).filter_map(|s| s.range.clone()).collect();
    // hf-hub: the body, then 4 retries; our GitHub fetch: the body, then 3 retries.
    assert_eq!(vae_ranges, ["bytes=0-0", "bytes=0-", "bytes=100000-", "bytes=200000-", "bytes=300000-", "bytes=400000-"], "{first:?}");
    let gh_ranges: Vec<_> = first.iter().filter(|s| s.path.ends_with("/t.bin")).map(|s| s.range.clone()).collect();
    assert_eq!(gh_ranges, [None, Some("bytes=100000-".into()), Some("bytes=200000-".into()), Some("bytes=300000-".into())], "{first:?}");

    rig.hub.cut_after(None);
    let resumed = rig.download(&["tiny"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(std::fs::read(rig.weights().join("weights/vae.safetensors")).unwrap(), vae);
    assert_eq!(std::fs::read(rig.weights().join("gh/safetensors/t.bin")).unwrap(), gh);
    let second = rig.hub.take_seen();
    let body = |s: &&Seen| s.range.as_deref() != Some("bytes=0-0");
    let vae_second: Vec<_> = second.iter().filter(|s| s.path.ends_with("/vae.safetensors")).filter(body).collect();
    assert_eq!(vae_second.len(), 1, "{second:?}");
    assert_eq!(vae_second[0].range.as_deref(), Some("bytes=500000-"));
    let gh_second: Vec<_> = second.iter().filter(|s| s.path.ends_with("/t.bin")).collect();
    assert_eq!(gh_second.len(), 1, "{second:?}");
    assert_eq!(gh_second[0].range.as_deref(), Some("bytes=400000-"));
    // Not a byte was fetched twice.
    for (name, len) in [("/vae.safetensors", vae.len()), ("/t.bin", gh.len())] {
        let sent: usize = first.iter().chain(&second).filter(|s| s.path.ends_with(name)).filter(body).map(|s| s.sent).sum();
        assert_eq!(sent, len, "{name}");
    }
    assert!(!rig.weights().join(".downloads").exists());
}

#[test]
fn a_checksum_mismatch_is_detected_and_the_file_not_used() {
    let gh = noise(30_000, 3);
    let rig = Rig::new("mismatch", &"0".repeat(64), &gh);
    // The GitHub file's bytes differ from the registry's sha256 (same size).
    let mut tampered = gh.clone();
    tampered[12_345] ^= 0xff;
    rig.hub.serve("/someone/taehv/raw/main/safetensors/t.bin", tampered, None);

    let out = rig.download(&["tiny", "--accept-licence"]);
    assert!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("weights/vae.safetensors of tiny-vae was deleted, not used"), "{all}");
    assert!(all.contains(&format!("checksum mismatch: sha256 {}, the registry expects {}", sha256_hex(&tiny_vae()), "0".repeat(64))), "{all}");
    assert!(all.contains("safetensors/t.bin of tiny-gh was deleted, not used"), "{all}");
    assert!(all.contains("FAIL  tiny-vae") && all.contains("FAIL  tiny-gh"), "{all}");
    assert!(!rig.weights().join("weights/vae.safetensors").exists());
    assert!(!rig.weights().join("gh/safetensors/t.bin").exists());
    // Nothing bad is kept for a later run to resume from or pick up.
    let staged: Vec<_> = files_ending(&rig.weights().join(".downloads"), "")
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".lock") && !p.to_string_lossy().contains("/refs/"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    // The config file was fine and is in place.
    assert!(rig.weights().join("config.json").exists());

    // A server whose bytes do not match its own ETag (the sha256 of a Hub LFS file) is caught
    // even where the registry records no sha256.
    let liar = Rig::new("liar", &sha256_hex(&tiny_vae()), &gh);
    liar.hub.serve("/test/tiny-vae/resolve/main/weights/vae.safetensors", tiny_vae(), Some(&"e".repeat(64)));
    let registry = liar.dir.join("registry/tiny-vae.toml");
    let toml = std::fs::read_to_string(&registry).unwrap();
    std::fs::write(&registry, toml.replace(&format!("sha256 = \"{}\"\n", sha256_hex(&tiny_vae())), "")).unwrap();
    let out = liar.download(&["tiny-vae", "--accept-licence"]);
    assert!(!out.status.success());
    assert!(text(&out).contains(&format!("the server's ETag says {}", "e".repeat(64))), "{}", text(&out));
    assert!(!liar.weights().join("weights/vae.safetensors").exists());
}
