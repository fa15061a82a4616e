//! The ring's two ends: one writer (the engine process) and any number of readers (OBS
//! sources), each in its own process, over one shared mapping.
//!
//! Frames: the writer fills slot `n % slots` for frame `n` inside that slot's seqlock and then
//! publishes `n` as the newest frame; a reader copies the newest slot and keeps the copy only if
//! the seqlock did not move meanwhile (a torn read is retried, never returned). Audio: blocks
//! numbered from 0, each with its pts; a reader walks them in order and learns how many it lost
//! when it fell more than a ring behind. Neither end ever waits for the other.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use memmap2::MmapRaw;

use crate::layout::{block, header, monotonic_now, slot, Layout, RingConfig, Shm, MAGIC, VERSION};
use crate::ShareError;

/// A frame's description as read from the ring (its BGRA bytes go to the caller's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// 1 for the first frame the writer wrote, then +1.
    pub frame_no: u64,
    /// The engine's pts of the frame (the audio timeline position that drove it).
    pub pts: Duration,
    pub width: u32,
    pub height: u32,
}

/// Audio read from the ring: mono f32 samples at the ring's rate starting at `pts`.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioPiece {
    pub pts: Duration,
    pub samples: Vec<f32>,
}

/// The writing end. Creates the shared memory (a sealed-size memfd) it hands to readers.
pub struct ShareWriter {
    shm: Shm,
    fd: OwnedFd,
    next_frame: u64,
    next_block: u64,
}

impl ShareWriter {
    /// A new ring in a fresh memfd.
    pub fn create(config: RingConfig) -> Result<Self, ShareError> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let layout = Layout::new(config)?;
        let fd = rustix::fs::memfd_create("livetalk-frames", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(|e| ShareError::Io { what: "creating the shared memory (memfd)".into(), source: e.into() })?;
        rustix::fs::ftruncate(&fd, layout.total_len as u64)
            .map_err(|e| ShareError::Io { what: format!("sizing the shared memory to {} bytes", layout.total_len), source: e.into() })?;
        // Readers map the whole size: sealing it means no one can shrink it under them.
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(|e| ShareError::Io { what: "sealing the shared memory".into(), source: e.into() })?;
        let map = MmapRaw::map_raw(&fd).map_err(|e| ShareError::Io { what: "mapping the shared memory".into(), source: e })?;
        let shm = Shm { map, layout };
        // SAFETY: the mapping is ours alone until the fd is handed out; the header is in bounds.
        unsafe { std::ptr::copy_nonoverlapping(MAGIC.as_ptr(), shm.bytes(header::MAGIC, 8), 8) };
        shm.u32_at(header::VERSION).store(VERSION, Ordering::Relaxed);
        shm.u32_at(header::HEADER_LEN).store(layout.slot_headers as u32, Ordering::Relaxed);
        shm.u32_at(header::SLOTS).store(config.slots, Ordering::Relaxed);
        shm.u32_at(header::AUDIO_BLOCKS).store(config.audio_blocks, Ordering::Relaxed);
        shm.u64_at(header::SLOT_CAPACITY).store(config.slot_capacity, Ordering::Relaxed);
        shm.u32_at(header::BLOCK_SAMPLES).store(config.block_samples, Ordering::Relaxed);
        shm.u32_at(header::AUDIO_RATE).store(config.audio_rate, Ordering::Relaxed);
        shm.u32_at(header::WRITER_PID).store(std::process::id(), Ordering::Relaxed);
        shm.u64_at(header::TOTAL_LEN).store(layout.total_len as u64, Ordering::Relaxed);
        let writer = ShareWriter { shm, fd, next_frame: 1, next_block: 0 };
        writer.beat();
        Ok(writer)
    }

    /// The memfd to hand to readers (they map it read-only... in spirit: the seqlocks are theirs to read).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn config(&self) -> RingConfig {
        self.shm.layout.config
    }

    /// Tells readers the writer is alive (call at least every few hundred ms).
    pub fn beat(&self) {
        self.shm.u64_at(header::HEARTBEAT_NS).store(monotonic_now().as_nanos() as u64, Ordering::Release);
    }

    /// Writes a `width`×`height` BGRA frame; `fill` writes its `width * height * 4` bytes.
    /// Returns the frame's number.
    pub fn write_frame(&mut self, width: u32, height: u32, pts: Duration, fill: impl FnOnce(&mut [u8])) -> Result<u64, ShareError> {
        let len = width as u64 * height as u64 * 4;
        if width == 0 || height == 0 || len > self.shm.layout.config.slot_capacity {
            return Err(ShareError::FrameTooLarge { width, height, capacity: self.shm.layout.config.slot_capacity });
        }
        let frame_no = self.next_frame;
        let index = (frame_no % self.shm.layout.config.slots as u64) as u32;
        let head = self.shm.slot_header(index);
        let seq = self.shm.u64_at(head + slot::SEQ);
        let before = seq.fetch_add(1, Ordering::Acquire); // odd: writing
        fence(Ordering::Release);
        self.shm.u64_at(head + slot::FRAME_NO).store(frame_no, Ordering::Relaxed);
        self.shm.u64_at(head + slot::PTS_NS).store(pts.as_nanos() as u64, Ordering::Relaxed);
        self.shm.u32_at(head + slot::WIDTH).store(width, Ordering::Relaxed);
        self.shm.u32_at(head + slot::HEIGHT).store(height, Ordering::Relaxed);
        self.shm.u64_at(head + slot::LEN).store(len, Ordering::Relaxed);
        // SAFETY: the slot's bytes are in bounds and only this writer writes them; readers that
        // copy concurrently see the seqlock move and drop their copy.
        let data = unsafe { std::slice::from_raw_parts_mut(self.shm.bytes(self.shm.slot_data(index), len as usize), len as usize) };
        fill(data);
        seq.store(before + 2, Ordering::Release);
        self.shm.u64_at(header::LATEST_FRAME).store(frame_no, Ordering::Release);
        self.next_frame += 1;
        self.beat();
        Ok(frame_no)
    }

    /// Appends mono samples that start at `pts` (split into blocks as needed).
    pub fn write_audio(&mut self, pts: Duration, samples: &[f32]) {
        let config = self.shm.layout.config;
        let mut start = 0usize;
        while start < samples.len() {
            let piece = &samples[start..(start + config.block_samples as usize).min(samples.len())];
            let piece_pts = pts + Duration::from_nanos(start as u64 * 1_000_000_000 / config.audio_rate as u64);
            let block_no = self.next_block;
            let index = (block_no % config.audio_blocks as u64) as u32;
            let head = self.shm.block_header(index);
            let seq = self.shm.u64_at(head + block::SEQ);
            let before = seq.fetch_add(1, Ordering::Acquire);
            fence(Ordering::Release);
            self.shm.u64_at(head + block::BLOCK_NO).store(block_no, Ordering::Relaxed);
            self.shm.u64_at(head + block::PTS_NS).store(piece_pts.as_nanos() as u64, Ordering::Relaxed);
            self.shm.u32_at(head + block::SAMPLES).store(piece.len() as u32, Ordering::Relaxed);
            // SAFETY: in bounds (a block holds `block_samples` f32); f32 has no invalid bits.
            unsafe {
                std::ptr::copy_nonoverlapping(piece.as_ptr() as *const u8, self.shm.bytes(self.shm.block_data(index), piece.len() * 4), piece.len() * 4)
            };
            seq.store(before + 2, Ordering::Release);
            self.next_block += 1;
            self.shm.u64_at(header::BLOCKS_WRITTEN).store(self.next_block, Ordering::Release);
            start += piece.len();
        }
    }

    /// Marks the ring closed: readers stop at once rather than after the heartbeat goes stale.
    pub fn close(&self) {
        self.shm.u32_at(header::CLOSED).store(1, Ordering::Release);
    }
}

impl Drop for ShareWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// Result of one attempt to read the newest frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRead {
    /// A frame newer than the last one read; its bytes are in the buffer.
    Frame(FrameMeta),
    /// Nothing newer than the last frame read.
    Nothing,
    /// The writer overwrote the slot while it was being copied, every try: try again later.
    Torn,
}

/// A reading end.
pub struct ShareReader {
    shm: Shm,
    last_frame: u64,
    next_block: u64,
    torn: u64,
    lost_blocks: u64,
}

impl ShareReader {
    /// Maps a ring received from a writer, checking it is one (magic, version, sizes).
    pub fn open(fd: impl AsFd) -> Result<Self, ShareError> {
        let map = MmapRaw::map_raw(&fd.as_fd()).map_err(|e| ShareError::Io { what: "mapping the shared memory".into(), source: e })?;
        if map.len() < 4096 {
            return Err(ShareError::Layout(format!("the shared memory is {} bytes: not a livetalk ring", map.len())));
        }
        let mut magic = [0u8; 8];
        // SAFETY: the mapping is at least a page long.
        unsafe { std::ptr::copy_nonoverlapping(map.as_ptr(), magic.as_mut_ptr(), 8) };
        if magic != MAGIC {
            return Err(ShareError::Layout("the shared memory is not a livetalk ring (bad magic)".into()));
        }
        let probe = Shm { layout: Layout::new(RingConfig::default())?, map };
        let version = probe.u32_at(header::VERSION).load(Ordering::Relaxed);
        if version != VERSION {
            return Err(ShareError::Layout(format!("the engine's ring is version {version}; this reader speaks version {VERSION} (update livetalk and the plugin together)")));
        }
        let config = RingConfig {
            slots: probe.u32_at(header::SLOTS).load(Ordering::Relaxed),
            slot_capacity: probe.u64_at(header::SLOT_CAPACITY).load(Ordering::Relaxed),
            audio_blocks: probe.u32_at(header::AUDIO_BLOCKS).load(Ordering::Relaxed),
            block_samples: probe.u32_at(header::BLOCK_SAMPLES).load(Ordering::Relaxed),
            audio_rate: probe.u32_at(header::AUDIO_RATE).load(Ordering::Relaxed),
        };
        let layout = Layout::new(config)?;
        if layout.total_len > probe.map.len() {
            return Err(ShareError::Layout(format!("the ring needs {} bytes but the shared memory has {}", layout.total_len, probe.map.len())));
        }
        let shm = Shm { map: probe.map, layout };
        let next_block = shm.u64_at(header::BLOCKS_WRITTEN).load(Ordering::Acquire);
        Ok(ShareReader { shm, last_frame: 0, next_block, torn: 0, lost_blocks: 0 })
    }

    pub fn config(&self) -> RingConfig {
        self.shm.layout.config
    }

    /// Process id of the writer.
    pub fn writer_pid(&self) -> u32 {
        self.shm.u32_at(header::WRITER_PID).load(Ordering::Relaxed)
    }

    /// How long ago the writer last showed a sign of life.
    pub fn heartbeat_age(&self) -> Duration {
        let beat = Duration::from_nanos(self.shm.u64_at(header::HEARTBEAT_NS).load(Ordering::Acquire));
        monotonic_now().saturating_sub(beat)
    }

    /// The writer closed the ring on purpose.
    pub fn writer_closed(&self) -> bool {
        self.shm.u32_at(header::CLOSED).load(Ordering::Acquire) != 0
    }

    /// Torn copies seen (and dropped) so far.
    pub fn torn_reads(&self) -> u64 {
        self.torn
    }

    /// Audio blocks lost because this reader fell more than a ring behind.
    pub fn lost_blocks(&self) -> u64 {
        self.lost_blocks
    }

    /// Copies the newest frame into `out` (resized to its BGRA length) if it is newer than the
    /// last one read. A torn copy is retried a few times, then reported as [`FrameRead::Torn`].
    pub fn read_frame(&mut self, out: &mut Vec<u8>) -> FrameRead {
        self.read_frame_with(out, || {})
    }

    /// [`ShareReader::read_frame`] running `between` after the copy and before its check (tests
    /// use it to overwrite the slot at the worst moment).
    #[doc(hidden)]
    pub fn read_frame_with(&mut self, out: &mut Vec<u8>, mut between: impl FnMut()) -> FrameRead {
        for _ in 0..4 {
            let latest = self.shm.u64_at(header::LATEST_FRAME).load(Ordering::Acquire);
            if latest == 0 || latest <= self.last_frame {
                return FrameRead::Nothing;
            }
            let index = (latest % self.shm.layout.config.slots as u64) as u32;
            let head = self.shm.slot_header(index);
            let seq = self.shm.u64_at(head + slot::SEQ);
            let before = seq.load(Ordering::Acquire);
            if !before.is_multiple_of(2) {
                self.torn += 1;
                continue;
            }
            let meta = FrameMeta {
                frame_no: self.shm.u64_at(head + slot::FRAME_NO).load(Ordering::Relaxed),
                pts: Duration::from_nanos(self.shm.u64_at(head + slot::PTS_NS).load(Ordering::Relaxed)),
                width: self.shm.u32_at(head + slot::WIDTH).load(Ordering::Relaxed),
                height: self.shm.u32_at(head + slot::HEIGHT).load(Ordering::Relaxed),
            };
            let len = self.shm.u64_at(head + slot::LEN).load(Ordering::Relaxed);
            if len > self.shm.layout.config.slot_capacity || len != meta.width as u64 * meta.height as u64 * 4 {
                self.torn += 1;
                continue;
            }
            out.resize(len as usize, 0);
            // SAFETY: in bounds (len <= slot capacity); the bytes may change under the copy, in
            // which case the seqlock check below throws the copy away.
            unsafe { std::ptr::copy_nonoverlapping(self.shm.bytes(self.shm.slot_data(index), len as usize), out.as_mut_ptr(), len as usize) };
            between();
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) != before || meta.frame_no < latest {
                self.torn += 1;
                continue;
            }
            self.last_frame = meta.frame_no;
            return FrameRead::Frame(meta);
        }
        FrameRead::Torn
    }

    /// Every audio block written since the last call, in order, appended to `out`.
    pub fn read_audio(&mut self, out: &mut Vec<AudioPiece>) {
        let config = self.shm.layout.config;
        let written = self.shm.u64_at(header::BLOCKS_WRITTEN).load(Ordering::Acquire);
        if written < self.next_block {
            // A new writer behind the same mapping cannot happen; a reset can: follow it.
            self.next_block = written;
        }
        // Blocks more than a ring (minus the one being written) behind are gone.
        let oldest = written.saturating_sub(config.audio_blocks as u64 - 1);
        if self.next_block < oldest {
            self.lost_blocks += oldest - self.next_block;
            self.next_block = oldest;
        }
        while self.next_block < written {
            let block_no = self.next_block;
            self.next_block += 1;
            let index = (block_no % config.audio_blocks as u64) as u32;
            let head = self.shm.block_header(index);
            let seq = self.shm.u64_at(head + block::SEQ);
            let before = seq.load(Ordering::Acquire);
            let samples = self.shm.u32_at(head + block::SAMPLES).load(Ordering::Relaxed).min(config.block_samples) as usize;
            let pts = Duration::from_nanos(self.shm.u64_at(head + block::PTS_NS).load(Ordering::Relaxed));
            let number = self.shm.u64_at(head + block::BLOCK_NO).load(Ordering::Relaxed);
            let mut data = vec![0f32; samples];
            // SAFETY: in bounds; validated by the seqlock below.
            unsafe { std::ptr::copy_nonoverlapping(self.shm.bytes(self.shm.block_data(index), samples * 4), data.as_mut_ptr() as *mut u8, samples * 4) };
            fence(Ordering::Acquire);
            if !before.is_multiple_of(2) || seq.load(Ordering::Relaxed) != before || number != block_no {
                self.lost_blocks += 1;
                continue;
            }
            out.push(AudioPiece { pts, samples: data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> RingConfig {
        RingConfig { slots: 2, slot_capacity: 64 * 64 * 4, audio_blocks: 4, block_samples: 8, audio_rate: 16_000 }
    }

    fn reader_of(writer: &ShareWriter) -> ShareReader {
        ShareReader::open(writer.fd().try_clone_to_owned().unwrap()).unwrap()
    }

    #[test]
    fn frames_round_trip_newest_first() {
        let mut writer = ShareWriter::create(small()).unwrap();
        let mut reader = reader_of(&writer);
        let mut buf = Vec::new();
        assert_eq!(reader.read_frame(&mut buf), FrameRead::Nothing);
        for value in 1..=3u8 {
            writer.write_frame(4, 2, Duration::from_millis(value as u64 * 40), |d| d.fill(value)).unwrap();
        }
        // Only the newest frame is read; older ones were skipped.
        let FrameRead::Frame(meta) = reader.read_frame(&mut buf) else { panic!("no frame") };
        assert_eq!((meta.frame_no, meta.width, meta.height, meta.pts), (3, 4, 2, Duration::from_millis(120)));
        assert_eq!(buf, vec![3u8; 32]);
        assert_eq!(reader.read_frame(&mut buf), FrameRead::Nothing);
    }

    #[test]
    fn too_large_frames_are_refused() {
        let mut writer = ShareWriter::create(small()).unwrap();
        let err = writer.write_frame(65, 64, Duration::ZERO, |_| {}).unwrap_err();
        assert!(err.to_string().contains("65x64"), "{err}");
    }

    #[test]
    fn a_copy_overwritten_midway_is_detected_and_dropped() {
        let mut writer = ShareWriter::create(small()).unwrap();
        let mut reader = reader_of(&writer);
        let mut buf = Vec::new();
        writer.write_frame(4, 4, Duration::ZERO, |d| d.fill(1)).unwrap();
        // Frames 3, 5, 7… land in the slot of frame 1 while the reader copies it: every try of
        // this read is torn, and the half-copied frame is never returned.
        let writer = std::cell::RefCell::new(writer);
        let read = reader.read_frame_with(&mut buf, || {
            let mut w = writer.borrow_mut();
            w.write_frame(4, 4, Duration::ZERO, |d| d.fill(2)).unwrap();
            w.write_frame(4, 4, Duration::ZERO, |d| d.fill(3)).unwrap();
        });
        assert_eq!(read, FrameRead::Torn);
        assert_eq!(reader.torn_reads(), 4);
        // Once the writer is quiet the newest frame reads whole.
        let FrameRead::Frame(meta) = reader.read_frame(&mut buf) else { panic!("no frame") };
        assert_eq!(meta.frame_no, 9);
        assert_eq!(buf, vec![3u8; 64]);
    }

    #[test]
    fn a_slot_mid_write_is_not_read() {
        let mut writer = ShareWriter::create(small()).unwrap();
        let mut reader = reader_of(&writer);
        writer.write_frame(2, 2, Duration::ZERO, |d| d.fill(9)).unwrap();
        // The writer starts frame 3 in frame 1's slot and publishes frame 3 as latest only
        // after; simulate a reader arriving while the seqlock is odd.
        let head = writer.shm.slot_header(1);
        writer.shm.u64_at(head + slot::SEQ).fetch_add(1, Ordering::AcqRel);
        let mut buf = Vec::new();
        assert_eq!(reader.read_frame(&mut buf), FrameRead::Torn);
        writer.shm.u64_at(head + slot::SEQ).fetch_add(1, Ordering::AcqRel);
        assert!(matches!(reader.read_frame(&mut buf), FrameRead::Frame(_)));
    }

    #[test]
    fn audio_in_order_with_pts_and_losses_counted() {
        let mut writer = ShareWriter::create(small()).unwrap();
        let mut reader = reader_of(&writer);
        let samples: Vec<f32> = (0..20).map(|i| i as f32).collect();
        writer.write_audio(Duration::from_secs(1), &samples); // blocks of 8, 8, 4
        let mut out = Vec::new();
        reader.read_audio(&mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].pts, Duration::from_secs(1) + Duration::from_micros(500)); // 8 samples at 16 kHz
        assert_eq!(out.iter().flat_map(|p| p.samples.clone()).collect::<Vec<_>>(), samples);
        assert_eq!(reader.lost_blocks(), 0);
        // Ten blocks while the reader looks away: only the last ring-minus-one survive.
        writer.write_audio(Duration::from_secs(2), &[0.5; 80]);
        out.clear();
        reader.read_audio(&mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(reader.lost_blocks(), 7);
        assert!(out.iter().all(|p| p.samples == vec![0.5; 8]));
    }

    #[test]
    fn heartbeat_and_close_are_seen() {
        let writer = ShareWriter::create(small()).unwrap();
        let reader = reader_of(&writer);
        assert!(reader.heartbeat_age() < Duration::from_secs(5));
        assert_eq!(reader.writer_pid(), std::process::id());
        assert!(!reader.writer_closed());
        drop(writer);
        assert!(reader.writer_closed());
    }

    #[test]
    fn a_foreign_memory_is_refused() {
        let fd = rustix::fs::memfd_create("not-a-ring", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 8192).unwrap();
        let err = ShareReader::open(&fd).err().unwrap();
        assert!(err.to_string().contains("bad magic"), "{err}");
    }
}
