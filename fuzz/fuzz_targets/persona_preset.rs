//! Persona preset TOML: parse and validate from a folder holding one picture of each kind; a
//! preset that loads must write back (`to_toml`) to text that loads into an equal persona, and
//! its pictures must stay inside the folder.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use livetalk_core::persona::{Background, Persona};

fn folder() -> &'static PathBuf {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("livetalk-fuzz-presets-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("fuzz preset folder");
        // Existence is all the loader checks; the bytes need not decode.
        for name in ["a.png", "b.jpg", "c.jpeg", "sub/d.png"] {
            std::fs::write(dir.join(name), b"not decoded").expect("fuzz picture");
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let origin = folder().join("fuzz.toml");
    let Ok(persona) = Persona::from_toml_str(text, &origin) else { return };
    let pictures = persona
        .image
        .iter()
        .chain(persona.pngtuber.iter().flat_map(|t| [Some(&t.idle), Some(&t.talking), t.blink.as_ref()].into_iter().flatten()))
        .chain(match &persona.background {
            Some(Background::Picture(path)) => Some(path),
            _ => None,
        });
    for picture in pictures {
        assert!(picture.starts_with(folder()), "picture {} escaped the preset folder", picture.display());
    }
    let written = persona.to_toml().expect("a loaded persona writes back as TOML");
    let again = Persona::from_toml_str(&written, &origin).expect("the written preset loads again");
    assert_eq!(again, persona, "round trip changed the persona:\n{written}");
});
