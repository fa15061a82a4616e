//! The plugin's side of the control API (the client of crates/control): the persona list and
//! the current persona, refreshed in the background, and the commands (switch, next/previous,
//! say, push audio) sent from a thread of its own, so OBS's UI, hotkey and audio threads never
//! wait on the engine. It can also start an engine when none answers.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use livetalk_control::client::Client;
use livetalk_control::messages::{PersonaInfo, PersonasResponse, SayRequest, SwitchRequest};
use parking_lot::Mutex;

use crate::resample::l16_bytes;

/// What the source asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Switch(String),
    /// +1: the next persona in the engine's list, -1: the previous (wrapping).
    Step(i32),
    Say(String),
    /// 16 kHz mono samples to drive the avatar with.
    Audio(Vec<i16>),
}

/// What the source knows about the engine (read by the properties and the hotkeys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteView {
    pub personas: Vec<PersonaInfo>,
    pub current: Option<String>,
    /// The last problem talking to the engine, if the last attempt failed.
    pub error: Option<String>,
    /// Process id of the engine this source started, while it runs.
    pub started_engine: Option<u32>,
}

/// How to start an engine when none answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Where the engine's output goes.
    pub log: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    pub control_socket: PathBuf,
    pub launch: Option<Launcher>,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        RemoteSettings { control_socket: livetalk_control::default_socket_path(), launch: None }
    }
}

/// Called on the remote thread whenever the engine's persona list changes.
pub type PersonasChanged = Box<dyn FnMut(&[PersonaInfo]) + Send>;

/// A cloneable way to queue commands (for hotkeys and the audio capture).
#[derive(Debug, Clone)]
pub struct Commands(Sender<Option<Command>>);

impl Commands {
    /// Queues a command; never waits (audio is dropped when the engine cannot keep up).
    pub fn send(&self, command: Command) {
        if let Err(TrySendError::Full(Some(command))) = self.0.try_send(Some(command)) {
            if !matches!(command, Command::Audio(_)) {
                log::warn!("the engine is not answering: {command:?} dropped");
            }
        }
    }
}

/// The running remote; dropping it stops its thread and any engine it started.
pub struct Remote {
    commands: Sender<Option<Command>>,
    view: Arc<Mutex<RemoteView>>,
    settings: Arc<Mutex<RemoteSettings>>,
    thread: Option<JoinHandle<()>>,
}

impl Remote {
    pub fn start(settings: RemoteSettings, on_personas: PersonasChanged) -> std::io::Result<Remote> {
        let (commands, receiver) = crossbeam_channel::bounded(256);
        let view = Arc::new(Mutex::new(RemoteView::default()));
        let settings = Arc::new(Mutex::new(settings));
        let worker = Worker { view: view.clone(), settings: settings.clone(), on_personas, engine: None, unreachable_since: None };
        let thread = std::thread::Builder::new().name("livetalk-obs-control".into()).spawn(move || worker.run(receiver))?;
        Ok(Remote { commands, view, settings, thread: Some(thread) })
    }

    /// Queues a command; never waits.
    pub fn send(&self, command: Command) {
        self.commands().send(command);
    }

    pub fn commands(&self) -> Commands {
        Commands(self.commands.clone())
    }

    pub fn view(&self) -> RemoteView {
        self.view.lock().clone()
    }

    /// The view itself, for callbacks that must read it without the remote (hotkeys).
    pub fn view_handle(&self) -> Arc<Mutex<RemoteView>> {
        self.view.clone()
    }

    pub fn set_settings(&self, settings: RemoteSettings) {
        *self.settings.lock() = settings;
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.commands.send(None);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How often the persona list is refreshed.
const REFRESH: Duration = Duration::from_secs(1);
/// How long no engine answers before one is started (when allowed).
const LAUNCH_AFTER: Duration = Duration::from_secs(2);

struct Worker {
    view: Arc<Mutex<RemoteView>>,
    settings: Arc<Mutex<RemoteSettings>>,
    on_personas: PersonasChanged,
    engine: Option<Child>,
    unreachable_since: Option<Instant>,
}

impl Worker {
    fn run(mut self, commands: Receiver<Option<Command>>) {
        let mut next_refresh = Instant::now();
        loop {
            match commands.recv_timeout(next_refresh.saturating_duration_since(Instant::now())) {
                Ok(Some(command)) => self.execute(command),
                Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.refresh();
                    self.launch_if_needed();
                    next_refresh = Instant::now() + REFRESH;
                }
            }
        }
        if let Some(mut engine) = self.engine.take() {
            log::info!("stopping the engine this source started (pid {})", engine.id());
            stop_engine(&mut engine, ENGINE_STOP_GRACE);
        }
    }

    fn client(&self) -> Client {
        let mut client = Client::unix(self.settings.lock().control_socket.clone());
        client.timeout = Some(Duration::from_secs(2));
        client
    }

    fn refresh(&mut self) {
        let answer = self
            .client()
            .call("GET", "/v1/personas", None::<&()>)
            .map_err(|e| e.to_string())
            .and_then(|json| serde_json::from_value::<PersonasResponse>(json).map_err(|e| format!("unexpected persona list: {e}")));
        let mut view = self.view.lock();
        match answer {
            Ok(list) => {
                self.unreachable_since = None;
                let changed = view.personas != list.personas;
                view.personas = list.personas;
                view.current = Some(list.current);
                view.error = None;
                if changed {
                    let personas = view.personas.clone();
                    drop(view);
                    (self.on_personas)(&personas);
                }
            }
            Err(e) => {
                self.unreachable_since.get_or_insert_with(Instant::now);
                view.error = Some(e);
            }
        }
    }

    fn execute(&mut self, command: Command) {
        let client = self.client();
        let result = match &command {
            Command::Switch(name) => self.switch(&client, name),
            Command::Step(step) => {
                let view = self.view.lock().clone();
                match step_persona(&view, *step) {
                    Some(name) => self.switch(&client, &name),
                    None => Err("no persona list from the engine yet".into()),
                }
            }
            Command::Say(text) => client.call("POST", "/v1/say", Some(&SayRequest { text: text.clone() })).map(drop).map_err(|e| e.to_string()),
            Command::Audio(samples) => client.push_audio("audio/L16;rate=16000", &l16_bytes(samples)).map(drop).map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            if !matches!(command, Command::Audio(_)) {
                log::warn!("{command:?} failed: {e}");
            }
            self.view.lock().error = Some(e);
        }
    }

    fn switch(&self, client: &Client, name: &str) -> Result<(), String> {
        client.call("POST", "/v1/persona", Some(&SwitchRequest { name: name.to_string() })).map_err(|e| e.to_string())?;
        log::info!("switching to persona {name}");
        // At once, so a quick second "next" steps from here rather than from the old one.
        self.view.lock().current = Some(name.to_string());
        Ok(())
    }

    /// Starts the configured engine once no engine has answered for a while (and ours is dead).
    fn launch_if_needed(&mut self) {
        if let Some(engine) = &mut self.engine {
            if let Ok(Some(status)) = engine.try_wait() {
                log::warn!("the engine this source started exited ({status})");
                self.engine = None;
                self.view.lock().started_engine = None;
            }
        }
        let launch = self.settings.lock().launch.clone();
        let (Some(launch), None) = (launch, &self.engine) else { return };
        if self.unreachable_since.is_none_or(|t| t.elapsed() < LAUNCH_AFTER) {
            return;
        }
        let log_file = OpenOptions::new().create(true).append(true).open(&launch.log);
        let spawned = log_file.and_then(|out| {
            let err = out.try_clone()?;
            Process::new(&launch.program).args(&launch.args).stdin(Stdio::null()).stdout(out).stderr(err).spawn()
        });
        match spawned {
            Ok(child) => {
                log::info!("started {} {} (pid {}; output in {})", launch.program.display(), launch.args.join(" "), child.id(), launch.log.display());
                self.view.lock().started_engine = Some(child.id());
                self.engine = Some(child);
            }
            Err(e) => {
                let why = format!("cannot start {}: {e}", launch.program.display());
                log::warn!("{why}");
                self.view.lock().error = Some(why);
            }
        }
        self.unreachable_since = Some(Instant::now());
    }
}

/// How long an engine this source started gets to stop cleanly after SIGTERM (unload its virtual
/// microphone, remove its sockets; well under a second normally) before it is killed.
const ENGINE_STOP_GRACE: Duration = Duration::from_secs(5);

/// Stops a child engine: SIGTERM, which `livetalk run` answers with a clean stop, then SIGKILL if
/// it is still there after `grace`. Returns how it ended.
fn stop_engine(engine: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    use rustix::process::{kill_process, Pid, Signal};
    if kill_process(Pid::from_child(engine), Signal::TERM).is_ok() {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match engine.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        log::warn!("the engine (pid {}) did not stop within {} s of SIGTERM: killing it", engine.id(), grace.as_secs_f32());
    }
    let _ = engine.kill();
    engine.wait().ok()
}

/// The persona `step` places after the current one in the engine's list (wrapping).
pub fn step_persona(view: &RemoteView, step: i32) -> Option<String> {
    let count = view.personas.len() as i64;
    if count == 0 {
        return None;
    }
    let at = view.current.as_ref().and_then(|c| view.personas.iter().position(|p| &p.name == c)).unwrap_or(0) as i64;
    Some(view.personas[(at + step as i64).rem_euclid(count) as usize].name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona(name: &str) -> PersonaInfo {
        PersonaInfo { name: name.into(), display_name: name.to_uppercase(), voice: "en".into(), hotkey: None }
    }

    /// A real child shell that answers SIGTERM as `trap_action` says, once the trap is set.
    fn child_with_term_trap(trap_action: &str) -> Child {
        use std::io::BufRead;
        let script = format!("trap '{trap_action}' TERM; echo ready; while :; do sleep 0.02; done");
        let mut child = Process::new("sh").args(["-c", &script]).stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        child
    }

    #[test]
    fn an_engine_is_asked_to_stop_with_sigterm_first() {
        let mut engine = child_with_term_trap("exit 0");
        let status = stop_engine(&mut engine, Duration::from_secs(20)).unwrap();
        assert_eq!(status.code(), Some(0), "the engine was not given SIGTERM to stop cleanly: {status}");
    }

    #[test]
    fn an_engine_ignoring_sigterm_is_killed_after_the_grace() {
        use std::os::unix::process::ExitStatusExt;
        let mut engine = child_with_term_trap("");
        let asked = Instant::now();
        let status = stop_engine(&mut engine, Duration::from_millis(300)).unwrap();
        assert_eq!(status.signal(), Some(9), "{status}");
        assert!(asked.elapsed() >= Duration::from_millis(300), "killed before the grace ran out");
    }

    #[test]
    fn next_and_previous_wrap_around_the_list() {
        let view = RemoteView { personas: vec![persona("anna"), persona("kai"), persona("zoe")], current: Some("zoe".into()), ..Default::default() };
        assert_eq!(step_persona(&view, 1).as_deref(), Some("anna"));
        assert_eq!(step_persona(&view, -1).as_deref(), Some("kai"));
        assert_eq!(step_persona(&RemoteView::default(), 1), None);
    }

    #[test]
    fn no_engine_is_reported_and_commands_do_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let settings = RemoteSettings { control_socket: dir.path().join("control.sock"), launch: None };
        let remote = Remote::start(settings, Box::new(|_| {})).unwrap();
        let sent = Instant::now();
        for _ in 0..1000 {
            remote.send(Command::Step(1));
        }
        assert!(sent.elapsed() < Duration::from_millis(500), "sending waited on the engine");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !remote.view().error.is_some_and(|e| e.contains("control.sock")) {
            assert!(Instant::now() < deadline, "the missing engine was not reported: {:?}", remote.view());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_missing_engine_program_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launcher { program: dir.path().join("no-such-livetalk"), args: vec![], log: dir.path().join("engine.log") };
        let settings = RemoteSettings { control_socket: dir.path().join("control.sock"), launch: Some(launch) };
        let remote = Remote::start(settings, Box::new(|_| {})).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !remote.view().error.is_some_and(|e| e.contains("cannot start")) {
            assert!(Instant::now() < deadline, "the failed start was not reported: {:?}", remote.view());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(remote.view().started_engine, None);
    }
}
