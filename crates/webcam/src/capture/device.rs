//! The V4L2 side of a capture through nokhwa: open the device on the capture thread (nokhwa's
//! camera is not `Send`), pick a format, stream, decode each buffer into the slot.

use std::path::Path;
use std::sync::mpsc;

use livetalk_core::persona::Webcam;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use nokhwa::Camera;

use super::{Capture, CaptureFeed, WebcamError};
use crate::decode::{decode, SourceFormat};

/// Formats we decode, most preferred first (YUYV costs no decoding).
const FORMATS: [FrameFormat; 6] = [
    FrameFormat::YUYV,
    FrameFormat::MJPEG,
    FrameFormat::NV12,
    FrameFormat::RAWRGB,
    FrameFormat::RAWBGR,
    FrameFormat::GRAY,
];
/// Pictures larger than this cost decoding time for nothing: cameras are shown at ≤ 1280×720.
const MAX_PIXELS: u32 = 1280 * 720;

pub(super) fn open(webcam: &Webcam) -> Result<Capture, WebcamError> {
    let device = webcam.to_string();
    let fail = |reason: String| WebcamError::Open {
        device: device.clone(),
        reason,
    };
    let index = device_index(webcam).map_err(&fail)?;
    let (capture, feed) = Capture::feed(&device);
    let (opened_tx, opened_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("livetalk-webcam".into())
        .spawn(move || stream(index, feed, opened_tx))
        .map_err(|e| fail(format!("cannot start the capture thread: {e}")))?;
    let capture = capture.with_thread(thread);
    match opened_rx.recv() {
        Ok(Ok(format)) => {
            tracing::info!(%device, %format, "webcam open");
            Ok(capture)
        }
        Ok(Err(reason)) => Err(fail(reason)),
        Err(_) => Err(fail("the capture thread ended while opening".into())),
    }
}

/// The V4L2 index: `/dev/videoN` (links such as /dev/v4l/by-id/… resolved), an index, or the
/// first camera the system lists.
fn device_index(webcam: &Webcam) -> Result<u32, String> {
    match webcam {
        Webcam::Default => {
            let cameras = nokhwa::query(ApiBackend::Video4Linux)
                .map_err(|e| format!("cannot list cameras: {e}"))?;
            let first = cameras
                .first()
                .ok_or("no camera found (is one plugged in?)")?;
            first.index().as_index().map_err(|e| e.to_string())
        }
        Webcam::Index(index) => Ok(*index),
        Webcam::Device(path) => {
            let real = std::fs::canonicalize(Path::new(path))
                .map_err(|e| format!("{path}: {e}"))?;
            Webcam::Device(real.display().to_string())
                .index()
                .ok_or_else(|| format!("{} is not a /dev/videoN device", real.display()))
        }
    }
}

fn stream(index: u32, feed: CaptureFeed, opened: mpsc::Sender<Result<CameraFormat, String>>) {
    let mut camera = match start(index) {
        Ok(camera) => camera,
        Err(reason) => {
            let _ = opened.send(Err(reason));
            return;
        }
    };
    let format = camera.camera_format();
    let _ = opened.send(Ok(format));
    let source = match format.format() {
        FrameFormat::YUYV => SourceFormat::Yuyv,
        FrameFormat::MJPEG => SourceFormat::Mjpeg,
        FrameFormat::NV12 => SourceFormat::Nv12,
        FrameFormat::GRAY => SourceFormat::Gray,
        FrameFormat::RAWRGB => SourceFormat::Rgb,
        FrameFormat::RAWBGR => SourceFormat::Bgr,
    };
    let (width, height) = (format.resolution().width(), format.resolution().height());
    let mut bad_in_a_row = 0;
    while !feed.is_stopped() {
        let buffer = match camera.frame_raw() {
            Ok(buffer) => buffer,
            Err(e) => {
                feed.fail(format!("reading a picture: {e}"));
                break;
            }
        };
        match decode(source, width, height, &buffer) {
            Ok(frame) => {
                bad_in_a_row = 0;
                feed.push(frame);
            }
            // A torn MJPEG buffer now and then is normal; a stream of them is not.
            Err(e) => {
                bad_in_a_row += 1;
                if bad_in_a_row >= 30 {
                    feed.fail(e.to_string());
                    break;
                }
            }
        }
    }
    let _ = camera.stop_stream();
}

fn start(index: u32) -> Result<Camera, String> {
    let requested = RequestedFormat::with_formats(RequestedFormatType::None, &FORMATS);
    let mut camera = Camera::new(CameraIndex::Index(index), requested)
        .map_err(|e| format!("/dev/video{index}: {e}"))?;
    if let Some(best) = best_format(camera.compatible_camera_formats().unwrap_or_default()) {
        if best != camera.camera_format() {
            let exact = RequestedFormat::with_formats(RequestedFormatType::Exact(best), &FORMATS);
            if let Err(e) = camera.set_camera_requset(exact) {
                tracing::debug!(%e, %best, "webcam kept its format");
            }
        }
    }
    camera
        .open_stream()
        .map_err(|e| format!("/dev/video{index}: starting the stream: {e}"))?;
    Ok(camera)
}

/// The largest size up to 1280×720 at the highest rate up to 30 fps, in the preferred format.
fn best_format(formats: Vec<CameraFormat>) -> Option<CameraFormat> {
    formats
        .into_iter()
        .filter(|f| FORMATS.contains(&f.format()))
        .max_by_key(|f| {
            let pixels = f.resolution().width() * f.resolution().height();
            let preference = FORMATS.len() - FORMATS.iter().position(|x| *x == f.format()).unwrap_or(0);
            (pixels <= MAX_PIXELS, f.frame_rate().min(30), pixels.min(MAX_PIXELS), preference)
        })
}
