//! The latest-frame bus under threads: the producer never waits for readers, every reader gets
//! the newest frame, and the watcher count tells the engine when to idle.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use livetalk_core::{FrameBus, PixelFormat, VideoFrame};

fn frame(index: u64) -> Arc<VideoFrame> {
    let pts = Duration::from_millis(index * 62);
    Arc::new(VideoFrame::solid(64, 36, PixelFormat::Rgb24, [index as u8, 0, 0], pts).unwrap())
}

#[test]
fn empty_bus_and_timeouts() {
    let bus = FrameBus::new();
    let subscriber = bus.subscribe();
    assert!(subscriber.latest().is_none());
    assert_eq!(bus.seq(), 0);
    let started = Instant::now();
    assert!(subscriber
        .wait_newer(0, Duration::from_millis(50))
        .is_none());
    assert!(started.elapsed() >= Duration::from_millis(50));

    assert_eq!(bus.publish(frame(1)), 1);
    // A frame already newer than `last_seq` comes back at once.
    let (seq, got) = subscriber.wait_newer(0, Duration::from_secs(5)).unwrap();
    assert_eq!((seq, got.data[0]), (1, 1));
    assert!(subscriber
        .wait_newer(1, Duration::from_millis(20))
        .is_none());
    assert_eq!(bus.latest().unwrap().0, 1);
}

#[test]
fn a_slow_subscriber_never_blocks_the_producer() {
    let bus = FrameBus::new();
    let slow = bus.subscribe();
    let reading = Arc::new(Barrier::new(2));
    let reader = {
        let reading = reading.clone();
        thread::spawn(move || {
            let (seq, held) = slow.wait_newer(0, Duration::from_secs(5)).unwrap();
            reading.wait();
            // Holds the frame and does not read for a long time, like a stalled consumer.
            thread::sleep(Duration::from_millis(500));
            let (newest, _) = slow.latest().unwrap();
            (seq, held.data[0], newest)
        })
    };
    bus.publish(frame(0));
    reading.wait();
    let started = Instant::now();
    for index in 1..=2000 {
        bus.publish(frame(index));
    }
    let publishing = started.elapsed();
    assert!(
        publishing < Duration::from_millis(400),
        "2000 publishes took {publishing:?} while a reader stalled"
    );
    let (first_seq, first_pixel, newest) = reader.join().unwrap();
    assert_eq!(
        (first_seq, first_pixel),
        (1, 0),
        "the held frame stayed intact"
    );
    assert_eq!(
        newest, 2001,
        "after the stall the reader jumps to the newest frame"
    );
}

#[test]
fn every_subscriber_sees_the_newest_frame() {
    const FRAMES: u64 = 300;
    let bus = FrameBus::new();
    let readers: Vec<_> = (0..6)
        .map(|reader| {
            let subscriber = bus.subscribe();
            thread::spawn(move || {
                let mut last = 0;
                let mut seen = 0;
                while last < FRAMES {
                    let Some((seq, frame)) = subscriber.wait_newer(last, Duration::from_secs(10))
                    else {
                        panic!("reader {reader} timed out after seq {last}");
                    };
                    assert!(seq > last, "sequence numbers only grow");
                    assert_eq!(
                        frame.data[0],
                        (seq - 1) as u8,
                        "seq and frame belong together"
                    );
                    last = seq;
                    seen += 1;
                    if reader % 2 == 1 {
                        thread::sleep(Duration::from_millis(3)); // slow readers skip frames
                    }
                }
                (last, seen)
            })
        })
        .collect();
    assert_eq!(bus.subscriber_count(), 6);
    for index in 0..FRAMES {
        bus.publish(frame(index));
        if index % 10 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    for reader in readers {
        let (last, seen) = reader.join().unwrap();
        assert_eq!(last, FRAMES, "every reader ends on the newest frame");
        assert!((1..=FRAMES).contains(&seen));
    }
    assert_eq!(bus.subscriber_count(), 0, "dropped subscribers unregister");
}

#[test]
fn subscriber_and_watcher_counts() {
    let bus = FrameBus::new();
    assert_eq!((bus.subscriber_count(), bus.watcher_count()), (0, 0));
    let camera = bus.subscribe();
    let preview = camera.clone();
    assert_eq!((bus.subscriber_count(), bus.watcher_count()), (2, 2));
    camera.set_watching(false); // the camera device has no reader now
    camera.set_watching(false); // repeated calls count once
    assert_eq!((bus.subscriber_count(), bus.watcher_count()), (2, 1));
    let idle_copy = camera.clone();
    assert!(!idle_copy.is_watching());
    drop(preview);
    assert_eq!((bus.subscriber_count(), bus.watcher_count()), (2, 0));
    drop(idle_copy);
    drop(camera);
    assert_eq!((bus.subscriber_count(), bus.watcher_count()), (0, 0));
}

#[test]
fn the_engine_wakes_when_someone_starts_watching() {
    let bus = FrameBus::new();
    assert!(!bus.wait_for_watchers(Duration::from_millis(20)));
    let sink = bus.subscribe();
    sink.set_watching(false);
    let engine = {
        let bus = bus.clone();
        thread::spawn(move || {
            let started = Instant::now();
            (
                bus.wait_for_watchers(Duration::from_secs(10)),
                started.elapsed(),
            )
        })
    };
    thread::sleep(Duration::from_millis(50));
    sink.set_watching(true);
    let (woke, waited) = engine.join().unwrap();
    assert!(woke);
    assert!(
        waited < Duration::from_secs(5),
        "woken by the change, not the timeout"
    );
    assert!(bus.wait_for_watchers(Duration::ZERO));
}
