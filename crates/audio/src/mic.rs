//! The microphone through cpal (feature `mic`). cpal's default host is used: PipeWire when the
//! build has `pipewire` and PipeWire runs (devices are its nodes: sources, and sinks whose
//! monitor is captured), ALSA otherwise. A device is chosen by name: its description or its id,
//! exactly (any case), else the one device whose name contains the text; the default input
//! device when no name is given.
//!
//! The capture callback only mixes down to mono and hands the block on; resampling, the noise
//! gate and pushing to the timeline happen on the caller's thread.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SizedSample};
use crossbeam_channel::{Receiver, Sender};

use crate::AudioError;

/// An input device as the user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDevice {
    /// The human-readable name.
    pub name: String,
    /// The host's id (PipeWire: the node name; ALSA: the PCM name).
    pub id: String,
}

impl InputDevice {
    fn label(&self) -> String {
        if self.name == self.id {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.id)
        }
    }
}

/// The host cpal picked and its input devices.
pub fn list_inputs() -> Result<(String, Vec<InputDevice>), AudioError> {
    let host = cpal::default_host();
    let devices = input_devices(&host)?;
    Ok((host.id().name().to_string(), devices.into_iter().map(|(d, _)| d).collect()))
}

fn input_devices(host: &cpal::Host) -> Result<Vec<(InputDevice, cpal::Device)>, AudioError> {
    let devices = host
        .input_devices()
        .map_err(|e| AudioError::Device(format!("cannot list the {} input devices: {e}", host.id().name())))?;
    Ok(devices
        .map(|device| {
            let name = device.description().map(|d| d.name().to_string()).unwrap_or_else(|_| device.to_string());
            let id = device.id().map(|id| id.to_string()).unwrap_or_else(|_| name.clone());
            // DeviceId prints as "host:id"; users know the part after the host.
            let id = id.split_once(':').map_or(id.clone(), |(_, rest)| rest.to_string());
            (InputDevice { name, id }, device)
        })
        .collect())
}

/// Picks the device `wanted` names (see the module docs).
fn choose<'a, T>(wanted: &str, devices: &'a [(InputDevice, T)]) -> Result<&'a (InputDevice, T), AudioError> {
    let exact: Vec<_> = devices
        .iter()
        .filter(|(d, _)| d.name.eq_ignore_ascii_case(wanted) || d.id.eq_ignore_ascii_case(wanted))
        .collect();
    let lower = wanted.to_lowercase();
    let partial: Vec<_> = devices
        .iter()
        .filter(|(d, _)| d.name.to_lowercase().contains(&lower) || d.id.to_lowercase().contains(&lower))
        .collect();
    match (exact.as_slice(), partial.as_slice()) {
        ([one, ..], _) | ([], [one]) => Ok(one),
        ([], many) => Err(AudioError::UnknownDevice {
            kind: "input device",
            name: wanted.to_string(),
            available: devices.iter().map(|(d, _)| d.label()).collect(),
            ambiguous: !many.is_empty(),
        }),
    }
}

/// A running capture: mono blocks at `rate`. Dropping it stops the device.
pub struct MicCapture {
    pub device: InputDevice,
    pub rate: u32,
    pub blocks: Receiver<Vec<f32>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MicCapture {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens `name` (or the default input device) and starts capturing.
pub fn open(name: Option<&str>) -> Result<MicCapture, AudioError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (block_tx, blocks) = crossbeam_channel::bounded(256);
    let wanted = name.map(str::to_string);
    // cpal streams may not move between threads: this thread owns it until stopped.
    let thread = std::thread::Builder::new()
        .name("livetalk-mic".into())
        .spawn(move || match start_stream(wanted.as_deref(), block_tx) {
            Ok((stream, device, rate)) => {
                let _ = ready_tx.send(Ok((device, rate)));
                let _ = stop_rx.recv();
                drop(stream);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| AudioError::Device(format!("cannot start the microphone thread: {e}")))?;
    match ready_rx.recv_timeout(Duration::from_secs(15)) {
        Ok(Ok((device, rate))) => Ok(MicCapture { device, rate, blocks, stop: Some(stop_tx), thread: Some(thread) }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(AudioError::Device("the microphone did not open within 15 s".into())),
    }
}

fn start_stream(
    wanted: Option<&str>,
    blocks: Sender<Vec<f32>>,
) -> Result<(cpal::Stream, InputDevice, u32), AudioError> {
    let host = cpal::default_host();
    let devices = input_devices(&host)?;
    let (info, device) = match wanted {
        Some(wanted) => {
            let (info, device) = choose(wanted, &devices)?;
            (info.clone(), device.clone())
        }
        None => {
            let device = host.default_input_device().ok_or_else(|| AudioError::UnknownDevice {
                kind: "default input device",
                name: "default".into(),
                available: devices.iter().map(|(d, _)| d.label()).collect(),
                ambiguous: false,
            })?;
            let info = devices
                .iter()
                .find(|(_, d)| *d == device)
                .map(|(i, _)| i.clone())
                .unwrap_or_else(|| InputDevice { name: device.to_string(), id: device.to_string() });
            (info, device)
        }
    };
    let failed = |what: &str, e: cpal::Error| AudioError::Device(format!("microphone `{}`: {what}: {e}", info.label()));
    let config = device.default_input_config().map_err(|e| failed("no usable input format", e))?;
    let format = config.sample_format();
    let config: cpal::StreamConfig = config.into();
    let rate = config.sample_rate;
    let stream = match format {
        cpal::SampleFormat::F32 => build::<f32>(&device, &config, blocks),
        cpal::SampleFormat::I16 => build::<i16>(&device, &config, blocks),
        cpal::SampleFormat::I32 => build::<i32>(&device, &config, blocks),
        cpal::SampleFormat::U8 => build::<u8>(&device, &config, blocks),
        cpal::SampleFormat::F64 => build::<f64>(&device, &config, blocks),
        other => {
            return Err(AudioError::Device(format!("microphone `{}`: sample format {other} is not supported", info.label())))
        }
    }
    .map_err(|e| failed("cannot open it", e))?;
    stream.play().map_err(|e| failed("cannot start it", e))?;
    Ok((stream, info, rate))
}

fn build<T>(device: &cpal::Device, config: &cpal::StreamConfig, blocks: Sender<Vec<f32>>) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = config.channels.max(1) as usize;
    device.build_input_stream::<T, _, _>(
        *config,
        move |data: &[T], _| {
            let mono: Vec<f32> = data
                .chunks(channels)
                .map(|frame| frame.iter().map(|s| s.to_sample::<f32>()).sum::<f32>() / channels as f32)
                .collect();
            // A full queue means nobody keeps up: losing a block beats blocking the audio thread.
            let _ = blocks.try_send(mono);
        },
        |error| tracing::warn!("microphone: {error}"),
        Some(Duration::from_secs(5)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_then_uniquely_and_errors_list_the_devices() {
        let dev = |name: &str, id: &str| (InputDevice { name: name.into(), id: id.into() }, ());
        let devices = vec![dev("Built-in Audio Analog Stereo", "alsa_input.pci"), dev("USB Mic", "alsa_input.usb"), dev("default", "default")];
        assert_eq!(choose("usb mic", &devices).unwrap().0.id, "alsa_input.usb");
        assert_eq!(choose("alsa_input.pci", &devices).unwrap().0.name, "Built-in Audio Analog Stereo");
        assert_eq!(choose("built-in", &devices).unwrap().0.id, "alsa_input.pci");
        let e = choose("headset", &devices).unwrap_err().to_string();
        assert!(e.contains("no input device named `headset`") && e.contains("`USB Mic (alsa_input.usb)`") && e.contains("`default`"), "{e}");
        let e = choose("alsa_input", &devices).unwrap_err().to_string();
        assert!(e.contains("fits several"), "{e}");
    }
}
