"""The livetalk OBS source in a real OBS (run by tests/obs/obs-e2e.sh, which builds and installs
the plugin into a temporary XDG_CONFIG_HOME and gives this script a temporary XDG_RUNTIME_DIR).

Talks to OBS through its bundled obs-websocket (protocol v5, written here over websocket-client)
and to livetalk through its CLI. Prints one line per check and `N passed, M failed` at the end.
"""

import argparse
import base64
import io
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
import wave

import websocket
from PIL import Image

PORT = 4466
SOURCE = "Avatar"
SCENE = "Scene"
CANVAS = (640, 360)
# Colours of the placeholder (plugin/src/placeholder.rs) and of the personas (presets/*.toml).
PLACEHOLDER = {"background": (0x1D, 0x24, 0x30), "accent": (0xF2, 0x8C, 0x28)}
PERSONAS = {
    "anna": {"background": (0xCF, 0xE3, 0xE6), "shirt": (0xE0, 0x76, 0x5A)},
    "kai": {"background": (0xEC, 0xE2, 0xD0), "shirt": (0x2F, 0x5D, 0x7C)},
}

results = []


def check(name, ok, detail=""):
    results.append((name, bool(ok)))
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def wait_for(what, predicate, timeout, every=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    return last


# ---------------------------------------------------------------- OBS set-up


def write_obs_config(work):
    """global.ini (first run done, websocket on, our profile and collection), the profile
    (640x360 canvas, simple-mode x264 MKV recordings) and the scene collection with the source
    and a saved hotkey binding (Ctrl+Alt+1 for anna, as her preset says)."""
    base = os.path.join(os.environ["XDG_CONFIG_HOME"], "obs-studio")
    os.makedirs(os.path.join(base, "basic", "profiles", "livetalk-e2e"), exist_ok=True)
    os.makedirs(os.path.join(base, "basic", "scenes"), exist_ok=True)
    ws = {"server_enabled": True, "server_port": PORT, "alerts_enabled": False, "auth_required": False,
          "first_load": False, "server_password": ""}
    with open(os.path.join(base, "global.ini"), "w") as f:
        f.write(f"""[General]
FirstRun=true
LastVersion=486539264
EnableAutoUpdates=false
ConfirmOnExit=false

[Basic]
Profile=livetalk-e2e
ProfileDir=livetalk-e2e
SceneCollection=livetalk-e2e
SceneCollectionFile=livetalk-e2e
ConfigOnNewProfile=false

[BasicWindow]
SysTrayEnabled=false
ShowTransitions=false

[OBSWebSocket]
FirstLoad=false
ServerEnabled=true
ServerPort={PORT}
AlertsEnabled=false
AuthRequired=false
ServerPassword=
""")
    # Newer obs-websocket keeps its settings in a JSON file: write both.
    ws_dir = os.path.join(base, "plugin_config", "obs-websocket")
    os.makedirs(ws_dir, exist_ok=True)
    with open(os.path.join(ws_dir, "config.json"), "w") as f:
        json.dump(ws, f)
    recordings = os.path.join(work, "recordings")
    os.makedirs(recordings, exist_ok=True)
    with open(os.path.join(base, "basic", "profiles", "livetalk-e2e", "basic.ini"), "w") as f:
        f.write(f"""[General]
Name=livetalk-e2e

[Video]
BaseCX={CANVAS[0]}
BaseCY={CANVAS[1]}
OutputCX={CANVAS[0]}
OutputCY={CANVAS[1]}
FPSType=0
FPSCommon=30

[Audio]
SampleRate=48000
ChannelSetup=Stereo

[Output]
Mode=Simple

[SimpleOutput]
FilePath={recordings}
RecFormat=mkv
RecQuality=Stream
RecEncoder=x264
StreamEncoder=x264
VBitrate=2500
ABitrate=160
Preset=veryfast
""")
    avatar = {
        "id": "livetalk_avatar", "versioned_id": "livetalk_avatar", "name": SOURCE,
        "settings": {"persona": "anna", "size": f"{CANVAS[0]}x{CANVAS[1]}", "known_personas": "anna,kai"},
        "hotkeys": {"livetalk.persona.anna": [{"key": "OBS_KEY_1", "control": True, "alt": True}]},
        "enabled": True, "muted": False, "volume": 1.0, "mixers": 255, "monitoring_type": 0,
    }
    scene = {
        "id": "scene", "versioned_id": "scene", "name": SCENE,
        "settings": {"id_counter": 1, "custom_size": False, "items": [{
            "name": SOURCE, "source_uuid": "", "visible": True, "locked": False, "id": 1,
            "pos": {"x": 0.0, "y": 0.0}, "rot": 0.0, "scale": {"x": 1.0, "y": 1.0}, "align": 5,
            "bounds_type": 0, "bounds_align": 0, "bounds": {"x": 0.0, "y": 0.0},
        }]},
    }
    collection = {"name": "livetalk-e2e", "current_scene": SCENE, "current_program_scene": SCENE,
                  "scene_order": [{"name": SCENE}], "sources": [scene, avatar], "groups": [],
                  "transitions": [], "current_transition": "Fade", "transition_duration": 300}
    path = os.path.join(base, "basic", "scenes", "livetalk-e2e.json")
    with open(path, "w") as f:
        json.dump(collection, f, indent=1)
    return path


class Obs:
    """obs-websocket v5: Hello, Identify, then requests by id."""

    def __init__(self, port):
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}", timeout=20)
        hello = json.loads(self.ws.recv())
        assert hello["op"] == 0, hello
        self.version = hello["d"].get("obsWebSocketVersion")
        self.ws.send(json.dumps({"op": 1, "d": {"rpcVersion": 1, "eventSubscriptions": 0}}))
        identified = json.loads(self.ws.recv())
        assert identified["op"] == 2, identified
        self.counter = 0

    def call(self, request, **data):
        self.counter += 1
        rid = str(self.counter)
        self.ws.send(json.dumps({"op": 6, "d": {"requestType": request, "requestId": rid, "requestData": data}}))
        while True:
            message = json.loads(self.ws.recv())
            if message["op"] == 7 and message["d"]["requestId"] == rid:
                status = message["d"]["requestStatus"]
                if not status["result"]:
                    raise RuntimeError(f"{request}: {status.get('code')} {status.get('comment')}")
                return message["d"].get("responseData", {})

    def screenshot(self):
        data = self.call("GetSourceScreenshot", sourceName=SOURCE, imageFormat="png",
                         imageWidth=CANVAS[0], imageHeight=CANVAS[1])["imageData"]
        png = base64.b64decode(data.split(",", 1)[1])
        return Image.open(io.BytesIO(png)).convert("RGBA")


def start_obs(work):
    log = open(os.path.join(work, "obs-stdout.log"), "w")
    env = dict(os.environ, LIBGL_ALWAYS_SOFTWARE="1", QT_QPA_PLATFORM="xcb")
    process = subprocess.Popen(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "obs", "--collection", "livetalk-e2e",
         "--profile", "livetalk-e2e", "--disable-missing-files-check"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    obs = None

    def connect():
        nonlocal obs
        if process.poll() is not None:
            raise RuntimeError(f"OBS exited ({process.returncode}); see {log.name}")
        try:
            obs = Obs(PORT)
            return True
        except (OSError, websocket.WebSocketException):
            return False

    if not wait_for("obs-websocket", connect, 90, every=0.5):
        raise RuntimeError(f"obs-websocket did not answer within 90 s; see {log.name}")
    return process, obs


def obs_pids(process):
    """Process ids of the obs binary under xvfb-run."""
    out = subprocess.run(["pgrep", "-s", str(os.getpgid(process.pid)), "-x", "obs"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def engines_started_by(process):
    """Process ids of `livetalk run` whose parent is an obs of this test."""
    obs = set(obs_pids(process))
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if parent in obs and len(argv) > 1 and argv[1] == b"run":
            found.append(int(entry))
    return found


def stop_obs(process):
    """Ctrl+C for OBS: it closes its window and saves the scene collection; then Xvfb goes."""
    pids = obs_pids(process)
    for pid in pids:
        os.kill(pid, signal.SIGINT)
    wait_for("OBS to exit", lambda: not obs_pids(process), 30)
    try:
        os.killpg(os.getpgid(process.pid), signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(os.getpgid(process.pid), signal.SIGKILL)


# ---------------------------------------------------------------- livetalk


class Engine:
    def __init__(self, livetalk, work, persona="anna"):
        self.livetalk, self.work = livetalk, work
        silence = os.path.join(work, "silence.wav")
        write_wav(silence, [0.0] * 16000)
        self.log = open(os.path.join(work, "engine.log"), "a")
        self.process = subprocess.Popen(
            [livetalk, "run", "--engine", "cpu", "--no-preview", "-p", persona, "--audio", silence],
            stdout=self.log, stderr=subprocess.STDOUT)
        run = os.environ["XDG_RUNTIME_DIR"]
        ready = wait_for("engine sockets", lambda: all(os.path.exists(os.path.join(run, "livetalk", s)) for s in ("frames.sock", "control.sock")), 60)
        if not ready:
            raise RuntimeError("livetalk run did not serve its sockets within 60 s; see engine.log")

    def ctl(self, *args):
        out = subprocess.run([self.livetalk, "ctl", *args], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"livetalk ctl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def status(self):
        return json.loads(self.ctl("status"))

    def personas(self):
        """The engine's persona names, in its order (`livetalk ctl personas`: `* name ...`)."""
        return [line[1:].split()[0] for line in self.ctl("personas").splitlines() if line[1:].strip()]

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def write_wav(path, samples, rate=16000):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(max(-1, min(1, s)) * 32767)) for s in samples))


def vowel(seconds, rate=16000):
    """A loud voiced 'ah': harmonics of 140 Hz shaped by two formants."""
    out = []
    for i in range(int(seconds * rate)):
        t = i / rate
        s = sum(math.sin(2 * math.pi * 140 * k * t) * (1.0 / k) * (2.0 if 5 <= k <= 6 or 8 <= k <= 9 else 1.0) for k in range(1, 20))
        out.append(0.25 * s)
    return out


# ---------------------------------------------------------------- pictures


def fractions(image, colours, tolerance=28):
    small = image.resize((160, 90), Image.NEAREST)
    pixels = list(getattr(small, "get_flattened_data", small.getdata)())
    counts = {name: 0 for name in colours}
    for r, g, b, a in pixels:
        for name, (cr, cg, cb) in colours.items():
            if a > 200 and abs(r - cr) <= tolerance and abs(g - cg) <= tolerance and abs(b - cb) <= tolerance:
                counts[name] += 1
    return {name: n / len(pixels) for name, n in counts.items()}


def classify(image):
    """'placeholder', a persona's name, or None."""
    p = fractions(image, PLACEHOLDER)
    if p["background"] > 0.4 and p["accent"] > 0.01:
        return "placeholder"
    for name, colours in PERSONAS.items():
        f = fractions(image, colours)
        if f["background"] > 0.25 and f["shirt"] > 0.02:
            return name
    return None


def shows(obs, want, timeout, save=None):
    seen = []

    def probe():
        image = obs.screenshot()
        kind = classify(image)
        seen.append(kind)
        if save is not None:
            image.save(save)
        return kind == want

    ok = wait_for(f"screenshot of {want}", probe, timeout, every=0.3)
    return ok, seen[-5:]


# ---------------------------------------------------------------- audio/video sync


def onsets(levels, step, threshold, quiet_before):
    """Times at which `levels` (one value per `step` seconds) rises above `threshold` after at
    least `quiet_before` seconds below it."""
    times, quiet = [], 0.0
    for i, level in enumerate(levels):
        if level > threshold:
            if quiet >= quiet_before:
                times.append(i * step)
            quiet = 0.0
        else:
            quiet += step
    return times


def analyse_recording(path, work):
    """Onsets of the voice in the recording's audio and of the mouth's motion in its video, on
    the recording's own timeline (both streams as OBS mixed and encoded them)."""
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", path], capture_output=True, text=True, check=True).stdout)
    start = {s["codec_type"]: float(s.get("start_time", 0)) for s in probe["streams"]}
    raw_audio = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"], capture_output=True, check=True).stdout
    samples = struct.unpack(f"<{len(raw_audio) // 2}h", raw_audio)
    window = 160  # 10 ms
    levels = [math.sqrt(sum(s * s for s in samples[i:i + window]) / window) / 32768 for i in range(0, len(samples) - window, window)]
    audio_on = [start.get("audio", 0) + t for t in onsets(levels, 0.01, 0.02, 0.5)]
    # The mouth of the test persona (anna at 640x360): it darkens as the mouth opens.
    w, h, x, y = 80, 48, 280, 176
    raw_video = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:v:0", "-vf", f"crop={w}:{h}:{x}:{y}", "-pix_fmt", "gray", "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    frames = [raw_video[i:i + w * h] for i in range(0, len(raw_video) - w * h + 1, w * h)]
    fps = 30.0
    brightness = [sum(f) / (w * h) for f in frames]
    rest = sorted(brightness)[len(brightness) // 2]
    motion = [rest - b for b in brightness]  # how much darker than the closed mouth
    video_on = [start.get("video", 0) + t for t in onsets(motion, 1 / fps, 3.0, 0.5)]
    return audio_on, video_on, levels, motion


def sync_check(obs, engine, work):
    pattern = []
    for _ in range(3):
        pattern += [0.0] * 16000 + vowel(0.6)
    pattern += [0.0] * 16000
    speech = os.path.join(work, "bursts.wav")
    write_wav(speech, pattern)
    # The mouth crop is anna's: switch to her with her saved binding first.
    obs.call("TriggerHotkeyByKeySequence", keyId="OBS_KEY_1", keyModifiers={"control": True, "alt": True, "shift": False, "command": False})
    shows(obs, "anna", 20)
    time.sleep(1.0)  # the cross-fade
    latency = engine.status().get("latency")
    obs.call("StartRecord")
    time.sleep(1.5)
    engine.ctl("push", speech)
    time.sleep(len(pattern) / 16000 + 2.0)
    path = obs.call("StopRecord").get("outputPath")
    wait_for("recording closed", lambda: path and os.path.exists(path) and os.path.getsize(path) > 0, 20)
    time.sleep(1.0)
    check("OBS recorded the scene", path and os.path.exists(path), str(path))
    if not (path and os.path.exists(path)):
        return
    latency_after = engine.status().get("latency")
    audio_on, video_on, _, _ = analyse_recording(path, work)
    check("the source's voice reaches OBS's mix (3 bursts heard in the recording)", len(audio_on) == 3, f"audio onsets {[round(t, 3) for t in audio_on]}")
    offsets = []
    for a in audio_on:
        near = [v - a for v in video_on if abs(v - a) < 0.5]
        if near:
            offsets.append(min(near, key=abs))
    detail = f"video−audio offsets {[round(o * 1000) for o in offsets]} ms (engine latency L = {latency} s before recording, {latency_after} s after); video onsets {[round(t, 3) for t in video_on]}"
    # Unsynced, the lips would trail or lead the voice by the engine's latency L (~100 ms).
    check("lips move in step with the voice in OBS's recording (|offset| ≤ 50 ms)", len(offsets) == len(audio_on) == 3 and all(abs(o) <= 0.05 for o in offsets), detail)


# ---------------------------------------------------------------- the test


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--livetalk", required=True)
    parser.add_argument("--skip-sync", action="store_true")
    args = parser.parse_args()
    work = args.work
    collection = write_obs_config(work)
    obs_process, obs, engine, started = None, None, None, []
    try:
        obs_process, obs = start_obs(work)
        pids = obs_pids(obs_process)
        check("OBS starts with the plugin and obs-websocket answers", obs is not None, f"obs-websocket {obs.version}, obs pid {pids}")
        kinds = [i["inputKind"] for i in obs.call("GetInputList")["inputs"]]
        check("the scene collection's livetalk source exists", "livetalk_avatar" in kinds, str(kinds))
        hotkeys = obs.call("GetHotkeyList")["hotkeys"]
        want = {"livetalk.next", "livetalk.previous", "livetalk.persona.anna", "livetalk.persona.kai"}
        check("the source registers its hotkeys", want <= set(hotkeys), str(sorted(h for h in hotkeys if h.startswith("livetalk"))))

        ok, seen = shows(obs, "placeholder", 15, save=os.path.join(work, "placeholder.png"))
        check("no engine: the screenshot shows the placeholder", ok, f"last classified {seen}")

        engine = Engine(args.livetalk, work)
        ok, seen = shows(obs, "anna", 30, save=os.path.join(work, "anna.png"))
        check("the engine comes: GetSourceScreenshot shows the test persona (anna)", ok, f"last classified {seen}")

        obs.call("TriggerHotkeyByName", hotkeyName="livetalk.persona.kai")
        ok, seen = shows(obs, "kai", 20, save=os.path.join(work, "kai.png"))
        check("TriggerHotkeyByName livetalk.persona.kai: the next screenshots show kai", ok, f"last classified {seen}")

        obs.call("TriggerHotkeyByKeySequence", keyId="OBS_KEY_1", keyModifiers={"control": True, "alt": True, "shift": False, "command": False})
        ok, seen = shows(obs, "anna", 20)
        check("Ctrl+Alt+1 (the binding saved in the scene collection) switches back to anna", ok, f"last classified {seen}")

        # Previous steps back through the engine's own list (wrapping): from anna to whoever
        # comes before her there.
        names = engine.personas()
        before = names[(names.index("anna") - 1) % len(names)]
        obs.call("TriggerHotkeyByName", hotkeyName="livetalk.previous")
        ok, seen = shows(obs, before if before in PERSONAS else None, 20)
        check(f"TriggerHotkeyByName livetalk.previous: anna → {before} (the engine's list: {names})", ok and engine.status().get("persona") == before, f"last classified {seen}")

        # The properties: the persona list comes from the engine; choosing one switches.
        items = obs.call("GetInputPropertiesListPropertyItems", inputName=SOURCE, propertyName="persona")["propertyItems"]
        listed = [i["itemValue"] for i in items]
        check("the persona property lists the engine's personas", listed == names, f"{listed} vs the engine's {names}")
        obs.call("SetInputSettings", inputName=SOURCE, inputSettings={"persona": "anna"})
        ok, seen = shows(obs, "anna", 20)
        check("choosing persona anna in the properties switches to her", ok, f"last classified {seen}")
        native = obs.call("GetSourceScreenshot", sourceName=SOURCE, imageFormat="png")["imageData"]
        size = Image.open(io.BytesIO(base64.b64decode(native.split(",", 1)[1]))).size
        check("the source outputs at its output-size property (640x360 from the engine's 1280x720)", size == CANVAS, str(size))

        if not args.skip_sync:
            sync_check(obs, engine, work)

        engine.kill()
        ok, seen = shows(obs, "placeholder", 15, save=os.path.join(work, "placeholder-after-kill.png"))
        check("killing the engine: OBS keeps running and shows the placeholder", ok and obs_process.poll() is None and obs.call("GetVersion"), f"last classified {seen}")

        engine = Engine(args.livetalk, work)
        ok, seen = shows(obs, "anna", 30)
        same_obs = obs_pids(obs_process) == pids
        check("a restarted engine is picked up without touching OBS (same OBS process)", ok and same_obs, f"last classified {seen}, obs pids {pids} → {obs_pids(obs_process)}")

        # "Start livetalk when none is running": the source starts the engine itself.
        engine.kill()
        shows(obs, "placeholder", 15)
        obs.call("SetInputSettings", inputName=SOURCE, inputSettings={"start_engine": True, "livetalk_path": args.livetalk})
        ok, seen = shows(obs, "anna", 60)
        started = engines_started_by(obs_process)
        check("with \"Start livetalk\" ticked the source starts an engine itself", ok and len(started) == 1, f"last classified {seen}, engines started by OBS {started}")

        # OBS saves the collection on exit: the source's hotkey bindings and personas stay.
        obs.call("TriggerHotkeyByName", hotkeyName="livetalk.persona.kai")
    finally:
        if engine is not None and engine.process.poll() is None:
            engine.kill()
        if obs_process is not None:
            stop_obs(obs_process)
    if started:
        gone = wait_for("the started engine to stop", lambda: not any(os.path.exists(f"/proc/{pid}") for pid in started), 20)
        check("the engine the source started stops with OBS", gone, str(started))
        for pid in started:
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, signal.SIGKILL)
    saved = json.load(open(collection))
    avatar = next((s for s in saved["sources"] if s.get("id") == "livetalk_avatar"), {})
    bindings = avatar.get("hotkeys", {})
    check("the scene collection OBS saved keeps the source's hotkeys and personas",
          bindings.get("livetalk.persona.anna") and "livetalk.persona.kai" in bindings and "livetalk.next" in bindings
          and "kai" in avatar.get("settings", {}).get("known_personas", ""), json.dumps(bindings))

    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
