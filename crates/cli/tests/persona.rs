//! `livetalk persona new`: a face-centred preset in the user's folder (XDG_CONFIG_HOME), never
//! overwriting the user's files, one clear error per bad input, nothing left behind on failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{DynamicImage, GenericImageView, RgbImage};

const BIN: &str = env!("CARGO_BIN_EXE_livetalk");
const ASTRONAUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/astronaut.jpg");
const FACE_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/face/seeta_fd_frontal_v1.0.bin");

fn livetalk(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN).env("XDG_CONFIG_HOME", config).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn personas_dir(config: &Path) -> PathBuf {
    config.join("livetalk/personas")
}

/// The folder's entries, sorted (hidden staging folders included).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The largest face in a picture, by the same detector, as (centre x, centre y, height).
fn face(picture: &DynamicImage) -> (f32, f32, f32) {
    let model = rustface::read_model(fs::File::open(FACE_MODEL).unwrap()).unwrap();
    let mut detector = rustface::create_detector_with_model(model);
    detector.set_min_face_size(40);
    let gray = picture.to_luma8();
    let faces = detector.detect(&rustface::ImageData::new(&gray, gray.width(), gray.height()));
    let b = faces.iter().max_by_key(|f| f.bbox().width()).expect("a face").bbox();
    (b.x() as f32 + b.width() as f32 / 2.0, b.y() as f32 + b.height() as f32 / 2.0, b.height() as f32)
}

#[test]
fn new_persona_from_a_photo_is_face_centred_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    // The portrait placed off-centre on a wide grey canvas: the crop must find the face anyway.
    let astronaut = image::open(ASTRONAUT).unwrap();
    let mut canvas = RgbImage::from_pixel(900, 420, image::Rgb([90, 90, 90]));
    image::imageops::overlay(&mut canvas, &astronaut.to_rgb8(), 560, 60);
    let photo = tmp.path().join("holiday photo.jpg");
    canvas.save(&photo).unwrap();
    let (fx, _, _) = face(&DynamicImage::ImageRgb8(canvas));
    assert!(fx > 600.0, "the face is far right in the photo: {fx}");

    let config = tmp.path().join("config");
    let out = livetalk(&config, &["persona", "new", "astro", "--image", photo.to_str().unwrap(), "--display-name", "Astro",
        "--hotkey", "ctrl+alt+7", "--voice", "en-us", "--prompt", "An astronaut talks to the camera"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("face found at"), "{}", text(&out));
    let dir = personas_dir(&config);
    assert_eq!(entries(&dir), ["astro.png", "astro.toml"], "only the preset and its picture");

    let picture = image::open(dir.join("astro.png")).unwrap();
    assert_eq!(picture.dimensions(), (512, 512));
    let (cx, cy, height) = face(&picture);
    assert!((cx - 256.0).abs() < 40.0, "face centre x {cx} in the 512 crop");
    // The crop sits a little below the face's centre (chin and shoulders): the face is just above the middle.
    assert!((cy - 226.0).abs() < 45.0, "face centre y {cy}");
    assert!((150.0..260.0).contains(&height), "face height {height} of 512 (2.6 face heights a side)");

    let persona = livetalk_core::Persona::load(dir.join("astro.toml")).unwrap();
    assert_eq!(persona.display_name, "Astro");
    assert_eq!(persona.hotkey.unwrap().to_string(), "Ctrl+Alt+7");
    assert_eq!(persona.image.as_deref(), Some(dir.join("astro.png").as_path()));
    let look = persona.look.expect("a look sampled from the photo");
    assert_ne!(look.skin, livetalk_core::look::AvatarLook::default().skin, "skin sampled from the face");
    // The astronaut's backdrop is a light grey-beige.
    assert!(look.background.r > 150 && look.background.g > 150 && look.background.b > 140, "{:?}", look.background);

    // The library finds it in the user's folder, over XDG_CONFIG_HOME.
    let shown = livetalk(&config, &["persona", "show", "astro"]);
    assert!(shown.status.success() && text(&shown).contains("image = \"astro.png\""), "{}", text(&shown));
    let listed = livetalk(&config, &["persona", "list"]);
    assert!(text(&listed).contains(&dir.join("astro.toml").display().to_string()), "{}", text(&listed));
}

#[test]
fn an_existing_persona_is_replaced_only_with_force_and_kept_as_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let dir = personas_dir(&config);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("me.toml"), "display_name = \"My own words\"\n").unwrap();
    fs::write(dir.join("me.png"), b"my own picture").unwrap();

    let out = livetalk(&config, &["persona", "new", "me", "--image", ASTRONAUT]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(message.contains("persona `me` already exists") && message.contains("--force"), "{message}");
    assert_eq!(fs::read_to_string(dir.join("me.toml")).unwrap(), "display_name = \"My own words\"\n");
    assert_eq!(fs::read(dir.join("me.png")).unwrap(), b"my own picture");

    let out = livetalk(&config, &["persona", "new", "me", "--image", ASTRONAUT, "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(entries(&dir), ["me.png", "me.png.bak", "me.toml", "me.toml.bak"]);
    assert_eq!(fs::read_to_string(dir.join("me.toml.bak")).unwrap(), "display_name = \"My own words\"\n");
    assert_eq!(fs::read(dir.join("me.png.bak")).unwrap(), b"my own picture");
    assert!(livetalk_core::Persona::load(dir.join("me.toml")).is_ok());
    // A second replacement keeps both older versions.
    let out = livetalk(&config, &["persona", "new", "me", "--image", ASTRONAUT, "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(entries(&dir).contains(&"me.toml.bak.2".to_string()), "{:?}", entries(&dir));
    assert_eq!(fs::read_to_string(dir.join("me.toml.bak")).unwrap(), "display_name = \"My own words\"\n");

    // Another preset file that already defines the name.
    fs::write(dir.join("other.toml"), "name = \"astro\"\n").unwrap();
    let out = livetalk(&config, &["persona", "new", "astro", "--image", ASTRONAUT]);
    assert!(!out.status.success());
    assert!(text(&out).contains("other.toml already defines persona `astro`"), "{}", text(&out));
}

#[test]
fn bad_input_gets_one_clear_error_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let small = tmp.path().join("small.png");
    RgbImage::new(100, 90).save(&small).unwrap();
    let not_a_picture = tmp.path().join("notes.jpg");
    fs::write(&not_a_picture, "just text").unwrap();
    let missing = tmp.path().join("missing.jpg");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["bad name", "--image", ASTRONAUT], "`bad name` is not a usable persona name"),
        (vec!["x", "--image", missing.to_str().unwrap()], "does not exist"),
        (vec!["x", "--image", not_a_picture.to_str().unwrap()], "cannot read the photo"),
        (vec!["x", "--image", small.to_str().unwrap()], "the picture is 100x90: it must be at least 128x128"),
        (vec!["x", "--image", ASTRONAUT, "--hotkey", "Ctrl+Hyper+1"], "field `hotkey`: `Ctrl+Hyper+1` is not a hotkey"),
        (vec!["x", "--image", ASTRONAUT, "--voice", "en us"], "field `voice`"),
        (vec!["x"], "--image"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["persona", "new"];
        full.extend(args.iter().copied());
        let out = livetalk(&config, &full);
        let message = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded: {message}");
        assert!(message.contains(expected), "{args:?}: expected {expected:?} in {message}");
        assert!(!message.contains("panicked"), "{message}");
        assert!(entries(&personas_dir(&config)).is_empty(), "{args:?} left {:?}", entries(&personas_dir(&config)));
    }

    // No face: a warning and the centre square, still a usable persona.
    let flat = tmp.path().join("wall.png");
    RgbImage::from_fn(400, 300, |x, _| image::Rgb([(x / 2) as u8, 120, 160])).save(&flat).unwrap();
    let out = livetalk(&config, &["persona", "new", "wall", "--image", flat.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("warning: no face found") && text(&out).contains("centre 300x300 square"), "{}", text(&out));
    assert_eq!(image::open(personas_dir(&config).join("wall.png")).unwrap().dimensions(), (512, 512));
}
