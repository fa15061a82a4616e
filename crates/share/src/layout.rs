//! Where everything lies in the shared memory, and typed access to it.
//!
//! ```text
//! 0      header (4 KiB): magic, version, ring sizes, writer pid, closed flag, heartbeat,
//!        newest frame number, audio blocks written
//! 4096   frame slot headers (64 B each): seqlock, frame number, pts, width, height, length
//!        audio block headers (64 B each): seqlock, block number, pts, sample count
//! page   frame slots (BGRA pixels, `slot_capacity` bytes each, page aligned)
//!        audio blocks (`block_samples` f32 mono samples each)
//! ```
//!
//! Every field a reader may see change is an atomic; only the pixel and sample payloads are
//! plain bytes, guarded by their slot's seqlock (odd while the writer is inside).

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use memmap2::MmapRaw;

use crate::ShareError;

pub(crate) const MAGIC: [u8; 8] = *b"LTSHARE1";
pub(crate) const VERSION: u32 = 1;
const HEADER_LEN: usize = 4096;
const SLOT_HEADER_LEN: usize = 64;
const BLOCK_HEADER_LEN: usize = 64;
const PAGE: usize = 4096;

/// Sizes of a ring; the writer picks them, readers learn them from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Frame slots (at least 2: readers copy one while the writer fills the next).
    pub slots: u32,
    /// Bytes of one frame slot: the largest BGRA frame the ring carries.
    pub slot_capacity: u64,
    /// Audio blocks in the audio ring.
    pub audio_blocks: u32,
    /// Mono f32 samples per audio block.
    pub block_samples: u32,
    /// Sample rate of the audio ring.
    pub audio_rate: u32,
}

impl Default for RingConfig {
    /// 3 slots of up to 3840×2160 BGRA (memory is only used for the pages frames touch) and
    /// 256 blocks of 1024 samples at 16 kHz (at least 8 s of audio at the engine's ~33 ms
    /// chunks).
    fn default() -> Self {
        RingConfig {
            slots: 3,
            slot_capacity: 3840 * 2160 * 4,
            audio_blocks: 256,
            block_samples: 1024,
            audio_rate: livetalk_core::ENGINE_SAMPLE_RATE,
        }
    }
}

/// Byte offsets of one ring's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub config: RingConfig,
    pub slot_headers: usize,
    pub block_headers: usize,
    pub slot_data: usize,
    pub slot_stride: usize,
    pub block_data: usize,
    pub block_stride: usize,
    pub total_len: usize,
}

impl Layout {
    pub fn new(config: RingConfig) -> Result<Self, ShareError> {
        let bad = |why: &str| Err(ShareError::Layout(format!("{why} ({config:?})")));
        if config.slots < 2 || config.slots > 64 {
            return bad("frame slots must be 2..=64");
        }
        if config.audio_blocks < 2 || config.audio_blocks > 65_536 || config.block_samples == 0 || config.block_samples > 1 << 20 {
            return bad("audio blocks must be 2..=65536 of 1..=1M samples");
        }
        if config.slot_capacity == 0 || config.slot_capacity > 1 << 30 || config.audio_rate == 0 {
            return bad("a frame slot must hold 1 byte..1 GiB and the audio rate must be set");
        }
        let slot_headers = HEADER_LEN;
        let block_headers = slot_headers + config.slots as usize * SLOT_HEADER_LEN;
        let slot_data = round_up(block_headers + config.audio_blocks as usize * BLOCK_HEADER_LEN, PAGE);
        let slot_stride = round_up(config.slot_capacity as usize, PAGE);
        let block_data = slot_data + config.slots as usize * slot_stride;
        let block_stride = round_up(config.block_samples as usize * 4, 64);
        let total_len = round_up(block_data + config.audio_blocks as usize * block_stride, PAGE);
        Ok(Layout { config, slot_headers, block_headers, slot_data, slot_stride, block_data, block_stride, total_len })
    }
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Header fields (byte offsets into the header).
pub(crate) mod header {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const HEADER_LEN: usize = 12;
    pub const SLOTS: usize = 16;
    pub const AUDIO_BLOCKS: usize = 20;
    pub const SLOT_CAPACITY: usize = 24;
    pub const BLOCK_SAMPLES: usize = 32;
    pub const AUDIO_RATE: usize = 36;
    pub const WRITER_PID: usize = 40;
    pub const CLOSED: usize = 44;
    pub const HEARTBEAT_NS: usize = 48;
    pub const LATEST_FRAME: usize = 56;
    pub const BLOCKS_WRITTEN: usize = 64;
    pub const TOTAL_LEN: usize = 72;
}

/// Frame slot header fields (offsets from the slot's header).
pub(crate) mod slot {
    pub const SEQ: usize = 0;
    pub const FRAME_NO: usize = 8;
    pub const PTS_NS: usize = 16;
    pub const WIDTH: usize = 24;
    pub const HEIGHT: usize = 28;
    pub const LEN: usize = 32;
}

/// Audio block header fields (offsets from the block's header).
pub(crate) mod block {
    pub const SEQ: usize = 0;
    pub const BLOCK_NO: usize = 8;
    pub const PTS_NS: usize = 16;
    pub const SAMPLES: usize = 24;
}

/// A mapped ring and its layout.
pub(crate) struct Shm {
    pub map: MmapRaw,
    pub layout: Layout,
}

// The mapping is shared memory: every access goes through atomics or seqlock-guarded copies.
unsafe impl Send for Shm {}
unsafe impl Sync for Shm {}

impl Shm {
    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.map.len());
        // SAFETY: in bounds, aligned (the mapping is page aligned), and the memory lives as
        // long as `self`; AtomicU32 has the layout of u32.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU32) }
    }

    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.map.len());
        // SAFETY: as in `u32_at`.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU64) }
    }

    /// A raw pointer to `len` bytes at `offset` (bounds checked).
    pub fn bytes(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.map.len()));
        // SAFETY: in bounds of the mapping.
        unsafe { self.map.as_mut_ptr().add(offset) }
    }

    pub fn slot_header(&self, index: u32) -> usize {
        self.layout.slot_headers + index as usize * SLOT_HEADER_LEN
    }

    pub fn slot_data(&self, index: u32) -> usize {
        self.layout.slot_data + index as usize * self.layout.slot_stride
    }

    pub fn block_header(&self, index: u32) -> usize {
        self.layout.block_headers + index as usize * BLOCK_HEADER_LEN
    }

    pub fn block_data(&self, index: u32) -> usize {
        self.layout.block_data + index as usize * self.layout.block_stride
    }
}

/// CLOCK_MONOTONIC now: the heartbeat clock, the same for every process on the machine.
pub(crate) fn monotonic_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_page_aligned_and_ordered() {
        let layout = Layout::new(RingConfig::default()).unwrap();
        assert_eq!(layout.slot_data % PAGE, 0);
        assert_eq!(layout.slot_stride % PAGE, 0);
        assert!(layout.block_headers > layout.slot_headers);
        assert!(layout.slot_data >= layout.block_headers + 256 * BLOCK_HEADER_LEN);
        assert_eq!(layout.block_data, layout.slot_data + 3 * layout.slot_stride);
        assert_eq!(layout.total_len % PAGE, 0);
    }

    #[test]
    fn bad_configs_are_refused() {
        for config in [
            RingConfig { slots: 1, ..Default::default() },
            RingConfig { audio_blocks: 0, ..Default::default() },
            RingConfig { block_samples: 0, ..Default::default() },
            RingConfig { slot_capacity: 0, ..Default::default() },
        ] {
            assert!(matches!(Layout::new(config), Err(ShareError::Layout(_))), "{config:?}");
        }
    }
}
