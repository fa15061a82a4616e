//! The virtual microphone through PulseAudio (or pipewire-pulse): `pactl` loads a null sink and a
//! remap source on its monitor (the source apps see), and `pacat` plays the delayed audio into
//! the sink. Everything loaded is unloaded on drop. The sink's name carries the loading run's
//! pid: at start, leftovers of runs that are gone are unloaded, and a run that is still
//! publishing the microphone is left alone (this one then fails, naming it).

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{MicSchedule, Output, DESCRIPTION, NODE_NAME};
use crate::AudioError;

/// The null sink's name, followed by `-<pid>` of the run that loaded it.
const SINK_PREFIX: &str = "livetalk-mic-sink";
/// pacat's buffer: what is written now is heard about this much later.
const PACAT_LATENCY: Duration = Duration::from_millis(30);
const BLOCK: Duration = Duration::from_millis(10);

pub(super) struct PulseMic {
    modules: Vec<u32>,
    pacat: Child,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

fn pactl(args: &[&str]) -> Result<String, AudioError> {
    let out = Command::new("pactl")
        .args(args)
        .output()
        .map_err(|e| AudioError::VirtualMic(format!("cannot run pactl ({e}): install pulseaudio-utils")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(AudioError::VirtualMic(format!(
            "pactl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The virtual-microphone modules in `pactl list short modules` output: each one's line, index
/// and the pid of the run that loaded it (`None`: a run from before pids were recorded).
fn our_modules(list: &str) -> Vec<(&str, &str, Option<u32>)> {
    list.lines()
        .filter_map(|line| {
            let ours = line.contains(&format!("sink_name={SINK_PREFIX}")) || line.contains(&format!("source_name={NODE_NAME}"));
            let index = line.split_whitespace().next()?;
            let pid = line
                .split(SINK_PREFIX)
                .nth(1)
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|digits| digits.parse().ok());
            ours.then_some((line, index, pid))
        })
        .collect()
}

/// Whether `pid` is a running livetalk (a recycled pid of another program does not count).
fn livetalk_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "livetalk" || comm.starts_with("livetalk-"))
}

/// Unloads modules that runs which are gone left behind; `Err` names a run still publishing the
/// microphone (its modules stay).
fn unload_leftovers() -> Result<(), AudioError> {
    let list = pactl(&["list", "short", "modules"])?;
    let mine = std::process::id();
    let modules = our_modules(&list);
    if let Some(pid) = modules.iter().filter_map(|m| m.2).find(|&pid| pid != mine && livetalk_runs(pid)) {
        return Err(AudioError::VirtualMic(format!(
            "another livetalk (pid {pid}) is publishing the virtual microphone `{NODE_NAME}`; stop it first, or run this one without --virtual-mic"
        )));
    }
    for (line, index, _) in modules {
        tracing::info!("unloading a leftover module of an earlier run: {line}");
        let _ = pactl(&["unload-module", index]);
    }
    Ok(())
}

/// The same, quietly, where PulseAudio may not run at all.
#[cfg_attr(not(feature = "pipewire"), allow(dead_code))]
pub(super) fn unload_leftovers_if_any() {
    let answers = Command::new("pactl").arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if answers.is_ok_and(|s| s.success()) {
        let _ = unload_leftovers();
    }
}

impl PulseMic {
    pub fn start(schedule: Arc<Mutex<MicSchedule>>) -> Result<Self, AudioError> {
        pactl(&["info"]).map_err(|e| AudioError::VirtualMic(format!("PulseAudio does not answer: {e}")))?;
        unload_leftovers()?;
        let load = |args: &[&str]| -> Result<u32, AudioError> {
            let index = pactl(args)?;
            index.parse().map_err(|_| AudioError::VirtualMic(format!("pactl load-module answered `{index}`")))
        };
        let sink = format!("{SINK_PREFIX}-{}", std::process::id());
        let mut modules = Vec::new();
        let result = (|| {
            modules.push(load(&[
                "load-module",
                "module-null-sink",
                &format!("sink_name={sink}"),
                "rate=16000",
                "channels=1",
                &format!("sink_properties=device.description={sink}"),
            ])?);
            modules.push(load(&[
                "load-module",
                "module-remap-source",
                &format!("master={sink}.monitor"),
                &format!("source_name={NODE_NAME}"),
                &format!("source_properties=device.description=\"{DESCRIPTION}\""),
            ])?);
            Command::new("pacat")
                .args(["--playback", &format!("--device={sink}"), "--format=float32le", "--rate=16000", "--channels=1"])
                .arg(format!("--latency-msec={}", PACAT_LATENCY.as_millis()))
                .args(["--client-name=livetalk", "--stream-name=livetalk mic"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| AudioError::VirtualMic(format!("cannot run pacat ({e}): install pulseaudio-utils")))
        })();
        let mut pacat = match result {
            Ok(child) => child,
            Err(e) => {
                unload(&modules);
                return Err(e);
            }
        };
        let stdin = pacat.stdin.take().expect("pacat's stdin is piped");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let writer = std::thread::Builder::new()
            .name("livetalk-mic-pulse".into())
            .spawn(move || write_loop(schedule, stdin, &flag))
            .map_err(|e| AudioError::VirtualMic(format!("cannot start its thread: {e}")))?;
        Ok(PulseMic { modules, pacat, stop, writer: Some(writer) })
    }
}

/// Writes one block every 10 ms of wall time, each filled for the instant pacat will play it.
fn write_loop(schedule: Arc<Mutex<MicSchedule>>, mut stdin: ChildStdin, stop: &AtomicBool) {
    let samples_per_block = 160;
    let mut block = vec![0.0f32; samples_per_block];
    let mut bytes = Vec::with_capacity(samples_per_block * 4);
    let mut due = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        schedule.lock().fill(due + PACAT_LATENCY, &mut block);
        bytes.clear();
        bytes.extend(block.iter().flat_map(|s| s.to_le_bytes()));
        if stdin.write_all(&bytes).is_err() {
            tracing::warn!("pacat stopped: the PulseAudio virtual microphone is silent");
            return;
        }
        due += BLOCK;
        let now = Instant::now();
        match due.checked_duration_since(now) {
            Some(wait) => std::thread::sleep(wait),
            None if now - due > Duration::from_millis(200) => due = now,
            None => {}
        }
    }
}

fn unload(modules: &[u32]) {
    for index in modules.iter().rev() {
        if let Err(e) = pactl(&["unload-module", &index.to_string()]) {
            tracing::warn!("{e}");
        }
    }
}

impl Output for PulseMic {
    fn name(&self) -> String {
        format!("PulseAudio source {NODE_NAME} (\"{DESCRIPTION}\")")
    }
}

impl Drop for PulseMic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // pacat first: a writer blocked on a full pipe then fails and ends.
        let _ = self.pacat.kill();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let _ = self.pacat.wait();
        unload(&self.modules);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_ours_by_name_with_the_loading_run_s_pid() {
        let list = "\
23\tmodule-null-sink\tsink_name=livetalk-mic-sink-4242 rate=16000 channels=1 sink_properties=device.description=livetalk-mic-sink-4242
24\tmodule-remap-source\tmaster=livetalk-mic-sink-4242.monitor source_name=livetalk-mic source_properties=device.description=\"livetalk mic\"
25\tmodule-null-sink\tsink_name=livetalk-mic-sink rate=16000
26\tmodule-null-sink\tsink_name=not-livetalk
27\tmodule-native-protocol-unix\t";
        let found: Vec<(&str, Option<u32>)> = our_modules(list).into_iter().map(|(_, i, p)| (i, p)).collect();
        assert_eq!(found, vec![("23", Some(4242)), ("24", Some(4242)), ("25", None)]);
    }

    #[test]
    fn only_running_livetalk_processes_count_as_owners() {
        // this test binary is `livetalk_audio-…`, not `livetalk` or `livetalk-…`; pid 0 has no
        // /proc entry
        assert!(!livetalk_runs(std::process::id()));
        assert!(!livetalk_runs(0));
    }
}
