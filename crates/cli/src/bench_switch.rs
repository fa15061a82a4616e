//! `livetalk bench --switches N`: the time from a persona-switch command to the first frame of
//! the new persona, through the real engine service (live pacing, cross-fade on), alternating
//! between two personas (anna and kai, or anna and the webcam with `--webcam DEVICE`).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use livetalk_core::{FrameBus, Persona};
use livetalk_engine::service::{CpuAvatarEngine, EngineEvent, EngineOptions, EngineService};
use livetalk_webcam::{PersonaRouter, WebcamEngine};

use crate::presets;

pub fn bench_switches(switches: usize, size: (u32, u32), webcam: Option<&str>) -> Result<()> {
    let library = presets::library(&[])?;
    let sized = |persona: &Persona| -> Result<Persona> {
        let mut persona = persona.clone();
        persona.size = format!("{}x{}", size.0, size.1).parse().map_err(anyhow::Error::msg)?;
        Ok(persona)
    };
    let first = sized(library.get("anna")?)?;
    let second = match webcam {
        Some(device) => {
            let text = format!("name = \"me\"\nwebcam = {device:?}\n");
            sized(&Persona::from_toml_str(&text, "<bench>/me.toml")?)?
        }
        None => sized(library.get("kai")?)?,
    };
    let bus = FrameBus::new();
    let watcher = bus.subscribe(); // something must watch, or the engine idles
    let engine = Box::new(PersonaRouter::new(Box::new(CpuAvatarEngine::new(1)), WebcamEngine::new()));
    let handle = EngineService::start(engine, first.clone(), bus.clone(), EngineOptions::live())?;
    let events = handle.events();
    handle
        .wait_for_status(Duration::from_secs(30), |s| s.frames_rendered >= 30)
        .context("the engine rendered no frames within 30 s")?;
    let mut times = Vec::with_capacity(switches);
    for i in 0..switches {
        let target = if i % 2 == 0 { &second } else { &first };
        handle.switch_persona(target.clone())?;
        let time = loop {
            match events.recv_timeout(Duration::from_secs(30)) {
                Ok(EngineEvent::PersonaChanged { persona, time_to_first_frame }) if persona == target.name => {
                    break time_to_first_frame
                }
                Ok(EngineEvent::Error { message, .. }) => bail!("switch {i} to {}: {message}", target.name),
                Ok(_) => {}
                Err(_) => bail!("switch {i} to {}: no first frame within 30 s", target.name),
            }
        };
        times.push(time);
        // Let the 300 ms cross-fade finish and the new persona settle before the next switch.
        std::thread::sleep(Duration::from_millis(700));
    }
    let latency = handle.status().latency;
    drop(watcher);
    handle.stop()?;
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "persona switch {} <-> {} at {}x{}, {} switches: command -> first frame of the new persona p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms \
         (the presenter shows it {:.0} ms later: pts + latency)",
        first.name, second.name, size.0, size.1, times.len(), ms(pick(0.5)), ms(pick(0.9)), ms(pick(1.0)), ms(latency)
    );
    Ok(())
}
