//! Persona presets: loading, defaults, round trip through TOML, one clear error per mistake,
//! and the library of preset folders.

use std::fs;
use std::path::{Path, PathBuf};

use livetalk_core::look::{AvatarLook, HairStyle, Rgb};
use livetalk_core::persona::{Background, Hotkey, OutputSize, Persona, PersonaLibrary};
use livetalk_core::Error;

/// A preset folder with a few (empty) picture files; only their existence is checked here.
fn folder_with_pictures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "anna.png",
        "idle.png",
        "talk.png",
        "blink.jpg",
        "studio.jpeg",
    ] {
        fs::write(dir.path().join(name), b"picture").unwrap();
    }
    fs::create_dir(dir.path().join("pics")).unwrap();
    fs::write(dir.path().join("pics/room.png"), b"picture").unwrap();
    dir
}

const FULL_PRESET: &str = r##"
name = "anna"
display_name = "Anna K."
image = "anna.png"
prompt = "A woman with short dark hair talks to the camera"
voice = "en-gb"
background = "pics/room.png"
size = "1920x1080"
hotkey = "ctrl+alt+1"

[pngtuber]
idle = "idle.png"
talking = "./talk.png"
blink = "blink.jpg"

[look]
hair = "#112233"
hair_style = "bun"
glasses = true
"##;

#[test]
fn full_preset_loads_with_resolved_paths() {
    let dir = folder_with_pictures();
    let path = dir.path().join("anna.toml");
    fs::write(&path, FULL_PRESET).unwrap();
    let persona = Persona::load(&path).unwrap();
    assert_eq!(persona.name, "anna");
    assert_eq!(persona.display_name, "Anna K.");
    assert_eq!(
        persona.image.as_deref(),
        Some(dir.path().join("anna.png").as_path())
    );
    assert_eq!(persona.voice, "en-gb");
    assert_eq!(
        persona.background,
        Some(Background::Picture(dir.path().join("pics/room.png")))
    );
    assert_eq!(
        persona.size,
        OutputSize {
            width: 1920,
            height: 1080
        }
    );
    assert_eq!(persona.hotkey.as_ref().unwrap().to_string(), "Ctrl+Alt+1");
    let tuber = persona.pngtuber.as_ref().unwrap();
    assert_eq!(
        tuber.talking,
        dir.path().join("talk.png"),
        "`./` is normalised away"
    );
    assert_eq!(
        tuber.blink.as_deref(),
        Some(dir.path().join("blink.jpg").as_path())
    );
    let look = persona.look.as_ref().unwrap();
    assert_eq!(
        (look.hair, look.hair_style, look.glasses),
        (Rgb::new(0x11, 0x22, 0x33), HairStyle::Bun, true)
    );
    assert_eq!(
        look.skin,
        AvatarLook::default().skin,
        "unset look fields keep their defaults"
    );
    assert_eq!(persona.folder(), dir.path());
}

#[test]
fn round_trip_through_toml() {
    let dir = folder_with_pictures();
    let path = dir.path().join("anna.toml");
    let persona = Persona::from_toml_str(FULL_PRESET, &path).unwrap();
    let text = persona.to_toml().unwrap();
    assert!(
        text.contains("image = \"anna.png\""),
        "paths are written relative again:\n{text}"
    );
    assert!(text.contains("background = \"pics/room.png\""), "{text}");
    assert!(!text.contains(&dir.path().display().to_string()), "{text}");
    assert_eq!(Persona::from_toml_str(&text, &path).unwrap(), persona);

    // A colour background and a minimal preset round-trip too.
    let plain =
        Persona::from_toml_str("background = \"#1E2430\"", dir.path().join("max.toml")).unwrap();
    assert_eq!(
        plain.background,
        Some(Background::Colour(Rgb::new(0x1e, 0x24, 0x30)))
    );
    let text = plain.to_toml().unwrap();
    assert_eq!(
        Persona::from_toml_str(&text, dir.path().join("max.toml")).unwrap(),
        plain
    );
}

#[test]
fn minimal_preset_gets_defaults() {
    let persona = Persona::from_toml_str("", "/nowhere/presets/bob.toml").unwrap();
    assert_eq!(persona.name, "bob", "the name defaults to the file's stem");
    assert_eq!(persona.display_name, "bob");
    assert_eq!(persona.voice, "en-us");
    assert_eq!(
        persona.size,
        OutputSize {
            width: 1280,
            height: 720
        }
    );
    assert_eq!(persona.prompt, "");
    assert!(persona.image.is_none() && persona.look.is_none() && persona.pngtuber.is_none());
    assert!(persona.background.is_none() && persona.hotkey.is_none());
    assert_eq!(persona.origin, Path::new("/nowhere/presets/bob.toml"));

    let demo = Persona::new("demo").unwrap();
    assert_eq!(
        (demo.name.as_str(), demo.size),
        ("demo", OutputSize::default())
    );
    assert!(demo.origin.is_absolute());
    assert!(Persona::new("no spaces").is_err());
}

/// Loads `text` as `<dir>/anna.toml` and returns the error message.
fn rejection(dir: &Path, text: &str) -> (Error, String) {
    let err = Persona::from_toml_str(text, dir.join("anna.toml")).expect_err(text);
    let message = err.to_string();
    assert!(
        message.contains(&dir.join("anna.toml").display().to_string()),
        "names the file: {message}"
    );
    (err, message)
}

fn assert_field_error(dir: &Path, text: &str, field: &str, detail: &str) {
    let (err, message) = rejection(dir, text);
    assert!(
        matches!(&err, Error::PersonaField { field: f, .. } if f == field),
        "{text}: {message}"
    );
    assert!(message.contains(&format!("field `{field}`")), "{message}");
    assert!(
        message.contains(detail),
        "{text}: expected {detail:?} in {message}"
    );
}

#[test]
fn unknown_and_mistyped_fields_are_rejected() {
    let dir = folder_with_pictures();
    let (err, message) = rejection(dir.path(), "name = \"anna\"\nvoise = \"en-us\"\n");
    assert!(matches!(err, Error::PersonaSyntax { .. }));
    assert!(
        message.contains("unknown field `voise`") && message.contains("line 2"),
        "{message}"
    );
    let (_, message) = rejection(
        dir.path(),
        "[pngtuber]\nidle = \"idle.png\"\ntalk = \"talk.png\"\n",
    );
    assert!(message.contains("unknown field `talk`"), "{message}");
    let (_, message) = rejection(dir.path(), "[pngtuber]\nidle = \"idle.png\"\n");
    assert!(message.contains("missing field `talking`"), "{message}");
    let (_, message) = rejection(dir.path(), "size = 1280\n");
    assert!(message.contains("string"), "{message}");
    let (_, message) = rejection(dir.path(), "[look]\nhat = true\n");
    assert!(message.contains("hat"), "{message}");
    let (_, message) = rejection(dir.path(), "name = \"anna\n");
    assert!(message.contains("line 1"), "{message}");
}

#[test]
fn bad_pictures_are_rejected() {
    let dir = folder_with_pictures();
    let d = dir.path();
    assert_field_error(
        d,
        "image = \"missing.png\"",
        "image",
        "picture file not found",
    );
    assert_field_error(
        d,
        "image = \"../outside.png\"",
        "image",
        "leaves the preset's folder",
    );
    assert_field_error(
        d,
        "image = \"pics/../../anna.png\"",
        "image",
        "leaves the preset's folder",
    );
    assert_field_error(
        d,
        "image = \"/etc/passwd.png\"",
        "image",
        "leaves the preset's folder",
    );
    assert_field_error(d, "image = \"anna.toml\"", "image", "not a PNG or JPEG");
    assert_field_error(d, "image = \"\"", "image", "empty");
    assert_field_error(d, "background = \"gone.png\"", "background", "not found");
    assert_field_error(
        d,
        "[pngtuber]\nidle = \"idle.png\"\ntalking = \"talk.png\"\nblink = \"../blink.png\"",
        "pngtuber.blink",
        "leaves",
    );
    // An absolute path inside the folder is fine, and so is `..` that stays inside.
    let absolute = d.join("anna.png");
    let ok = format!(
        "image = {:?}\nbackground = \"pics/../studio.jpeg\"",
        absolute.display().to_string()
    );
    let persona = Persona::from_toml_str(&ok, d.join("anna.toml")).unwrap();
    assert_eq!(persona.image, Some(absolute));
    assert_eq!(
        persona.background,
        Some(Background::Picture(d.join("studio.jpeg")))
    );
}

#[test]
fn bad_sizes_colours_hotkeys_names_and_voices_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_field_error(d, "size = \"0x720\"", "size", "non-zero");
    assert_field_error(d, "size = \"1281x720\"", "size", "even");
    assert_field_error(d, "size = \"640x481\"", "size", "even");
    assert_field_error(d, "size = \"8192x720\"", "size", "at most 4096");
    assert_field_error(d, "size = \"big\"", "size", "like \"1280x720\"");
    assert_field_error(d, "size = \"-2x4\"", "size", "like \"1280x720\"");
    assert_field_error(d, "background = \"#12345\"", "background", "#rrggbb");
    assert_field_error(d, "background = \"#gg0000\"", "background", "#rrggbb");
    assert_field_error(d, "hotkey = \"Ctrl+\"", "hotkey", "empty part");
    assert_field_error(
        d,
        "hotkey = \"Ctrl+Hyper+1\"",
        "hotkey",
        "`Hyper` is not a modifier",
    );
    assert_field_error(d, "hotkey = \"Ctrl+Ctrl+1\"", "hotkey", "appears twice");
    assert_field_error(
        d,
        "hotkey = \"Ctrl+Alt+Banana\"",
        "hotkey",
        "`Banana` is not a key",
    );
    assert_field_error(d, "hotkey = \"Alt+F25\"", "hotkey", "not a key");
    assert_field_error(d, "hotkey = \"Ctrl+Alt\"", "hotkey", "`Alt` is not a key");
    assert_field_error(d, "name = \"anna smith\"", "name", "ASCII letters");
    assert_field_error(d, "name = \"\"", "name", "ASCII letters");
    assert_field_error(d, "display_name = \"  \"", "display_name", "empty");
    assert_field_error(d, "voice = \"en us\"", "voice", "espeak-ng voice");
}

#[test]
fn hotkeys_parse_into_a_canonical_form() {
    let cases = [
        ("Ctrl+Alt+1", "Ctrl+Alt+1"),
        ("control + shift + a", "Ctrl+Shift+A"),
        ("Super+Alt+F12", "Alt+Super+F12"),
        ("win+esc", "Super+Escape"),
        ("F9", "F9"),
        ("shift+pageup", "Shift+PageUp"),
    ];
    for (text, canonical) in cases {
        let hotkey: Hotkey = text.parse().unwrap();
        assert_eq!(hotkey.to_string(), canonical);
        assert_eq!(canonical.parse::<Hotkey>().unwrap(), hotkey);
    }
    let hotkey: Hotkey = "Ctrl+Shift+x".parse().unwrap();
    assert!(hotkey.ctrl && hotkey.shift && !hotkey.alt && !hotkey.super_key);
    assert_eq!(hotkey.key, "X");
    assert!("F0".parse::<Hotkey>().is_err() && "F01".parse::<Hotkey>().is_err());
}

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn library_discovers_overrides_and_reports() {
    let shipped = tempfile::tempdir().unwrap();
    let user = tempfile::tempdir().unwrap();
    write(
        shipped.path(),
        "anna.toml",
        "display_name = \"Anna\"\nhotkey = \"Ctrl+Alt+1\"",
    );
    write(shipped.path(), "max.toml", "display_name = \"Max\"");
    write(shipped.path(), "notes.txt", "not a preset");
    write(
        user.path(),
        "my-anna.toml",
        "name = \"anna\"\ndisplay_name = \"My Anna\"",
    );
    let broken = write(user.path(), "zed.toml", "size = \"3x3\"");
    let missing_dir = user.path().join("does-not-exist");
    let dirs = [
        shipped.path().to_path_buf(),
        missing_dir,
        user.path().to_path_buf(),
    ];

    let library = PersonaLibrary::discover(&dirs).unwrap();
    assert_eq!(library.names().collect::<Vec<_>>(), ["anna", "max"]);
    assert_eq!(library.len(), 2);
    assert_eq!(
        library.get("anna").unwrap().display_name,
        "My Anna",
        "later folders override"
    );
    assert_eq!(library.get("max").unwrap().display_name, "Max");
    assert_eq!(library.errors().len(), 1);
    assert!(library.errors()[0].to_string().contains("zed.toml"));

    let err = library.get("zed").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("unknown persona `zed`; known personas: anna, max"),
        "{message}"
    );
    assert!(
        message.contains(&broken.display().to_string()),
        "mentions the broken preset: {message}"
    );

    let hotkey: Hotkey = "Ctrl+Alt+1".parse().unwrap();
    assert!(
        library.by_hotkey(&hotkey).is_none(),
        "the user's anna has no hotkey"
    );
    let only_shipped = PersonaLibrary::discover(&[shipped.path().to_path_buf()]).unwrap();
    assert_eq!(only_shipped.by_hotkey(&hotkey).unwrap().name, "anna");

    let empty = PersonaLibrary::discover(&[]).unwrap();
    assert!(empty.is_empty());
    let message = empty.get("anna").unwrap_err().to_string();
    assert_eq!(
        message,
        "unknown persona `anna`: no persona presets were found"
    );
}

#[test]
fn webcam_personas_round_trip_and_reject_bad_devices() {
    use livetalk_core::persona::Webcam;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let me = Persona::from_toml_str(
        "display_name = \"Me\"\nwebcam = \"/dev/video3\"\nhotkey = \"Ctrl+Alt+0\"",
        d.join("me.toml"),
    )
    .unwrap();
    assert_eq!(me.webcam, Some(Webcam::Device("/dev/video3".into())));
    assert_eq!(me.webcam.as_ref().unwrap().index(), Some(3));
    let text = me.to_toml().unwrap();
    assert!(text.contains("webcam = \"/dev/video3\""), "{text}");
    assert_eq!(Persona::from_toml_str(&text, d.join("me.toml")).unwrap(), me);
    for (text, webcam) in [
        ("default", Webcam::Default),
        ("2", Webcam::Index(2)),
        ("/dev/v4l/by-id/usb-cam", Webcam::Device("/dev/v4l/by-id/usb-cam".into())),
    ] {
        let persona =
            Persona::from_toml_str(&format!("webcam = {text:?}"), d.join("me.toml")).unwrap();
        assert_eq!(persona.webcam, Some(webcam));
    }
    assert_field_error(d, "webcam = \"/etc/passwd\"", "webcam", "is not a camera");
    assert_field_error(d, "webcam = \"/dev/video0/../../etc/shadow\"", "webcam", "is not a camera");
    assert_field_error(d, "webcam = \"\"", "webcam", "is not a camera");
    fs::write(d.join("idle.png"), b"picture").unwrap();
    assert_field_error(
        d,
        "webcam = \"0\"\n[pngtuber]\nidle = \"idle.png\"\ntalking = \"idle.png\"",
        "webcam",
        "remove `[pngtuber]`",
    );
}

#[cfg(unix)]
#[test]
fn a_link_inside_the_folder_cannot_lead_out_of_it() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret.png"), b"picture").unwrap();
    let dir = folder_with_pictures();
    std::os::unix::fs::symlink(outside.path().join("secret.png"), dir.path().join("face.png"))
        .unwrap();
    assert_field_error(dir.path(), "image = \"face.png\"", "image", "is a link to");
    // A link that stays inside the folder is fine.
    std::os::unix::fs::symlink(dir.path().join("anna.png"), dir.path().join("alias.png")).unwrap();
    let persona = Persona::from_toml_str("image = \"alias.png\"", dir.path().join("x.toml")).unwrap();
    assert_eq!(persona.image, Some(dir.path().join("alias.png")));
}

#[test]
fn duplicate_hotkeys_are_reported_with_both_presets() {
    let dir = tempfile::tempdir().unwrap();
    let anna = write(dir.path(), "anna.toml", "hotkey = \"Ctrl+Alt+1\"");
    let bob = write(dir.path(), "bob.toml", "hotkey = \"ctrl+alt+1\"");
    write(dir.path(), "cleo.toml", "hotkey = \"Ctrl+Alt+3\"");
    write(dir.path(), "dan.toml", "");
    let library = PersonaLibrary::discover(&[dir.path().to_path_buf()]).unwrap();
    let conflicts = library.hotkey_conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].hotkey.to_string(), "Ctrl+Alt+1");
    let names: Vec<&str> = conflicts[0].personas.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["anna", "bob"]);
    let message = conflicts[0].to_string();
    assert!(
        message.contains("hotkey Ctrl+Alt+1 is given to 2 personas")
            && message.contains(&anna.display().to_string())
            && message.contains(&bob.display().to_string())
            && message.contains("not bound"),
        "{message}"
    );
}

#[test]
fn long_runs_of_quotes_write_back_without_overflow() {
    // Found by cargo fuzz (fuzz/persona_preset): toml 0.8's writer counted runs of quotes in a
    // u8 and overflowed on 256 of them; toml 1 saturates.
    let dir = folder_with_pictures();
    let path = dir.path().join("quotes.toml");
    let text = format!("display_name = \"{}\"\nprompt = \"{}\"\n", "'".repeat(300), "\\\"".repeat(300));
    let persona = Persona::from_toml_str(&text, &path).unwrap();
    let written = persona.to_toml().unwrap();
    assert_eq!(Persona::from_toml_str(&written, &path).unwrap(), persona);
}
