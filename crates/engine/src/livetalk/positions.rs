//! The unbounded position scheme: RoPE frame positions that stay inside the reference's
//! 1024-entry table for hours of streaming.
//!
//! The reference precomputes RoPE for frame positions 0..1024 and feeds absolute frame indices,
//! so it stops after 1023 latent frames (~256 s). What the model sees through attention is the
//! *relative* frame offset between a query and each key it attends to (RoPE makes `q·k` depend
//! on `p_q - p_k` only):
//! - window keys (the previous block and the current one): offsets -2..=5, the same in every
//!   block of every stream;
//! - sink keys (frames 0..9, reference frame first): offsets `p - 8 ..= p + 2`, growing with the
//!   block position `p`: in a reference stream the model meets every offset from 0 to 1023.
//!
//! The scheme: positions equal the absolute frame index while a block fits the table (frames
//! 0..1023: every block the reference can generate is generated identically). When the next block
//! would leave the table, the stream is re-based `rebase` frames back (510 by default, a multiple
//! of the 3-frame block): the window's cached keys are re-rotated by `-rebase`, the sink keeps its
//! original positions. Window offsets stay exactly what they were; sink offsets jump from ~1023
//! back to ~513, a range the model already met at ~128 s into any reference stream. Positions then
//! cycle through 513..1023 forever, so every offset the model ever sees is one it saw with the
//! reference, and no index grows with time (the absolute frame count is kept in a `u64` only for
//! bookkeeping).

use candle_core::{DType, Result, Tensor};
use livetalk_model::dit::rope::{Rope3d, RopeTables};
use livetalk_model::dit::KvCache;

/// Frame positions the reference's RoPE table covers.
pub const REFERENCE_TABLE_LEN: usize = 1024;
/// How far the deployed scheme moves back when a block would leave the table.
pub const DEFAULT_REBASE: usize = 510;

/// Where each block goes: table length, re-base distance, frames per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionScheme {
    pub table_len: usize,
    pub rebase: usize,
    pub frames_per_block: usize,
}

impl PositionScheme {
    /// The deployed scheme for blocks of `frames_per_block` frames and a cache of `sink` +
    /// `window` frames; an error when the numbers cannot work (re-based blocks would overlap the
    /// sink's positions, or the re-base is not block-aligned).
    pub fn new(frames_per_block: usize, sink: usize, window: usize) -> Result<Self> {
        Self::with(REFERENCE_TABLE_LEN, DEFAULT_REBASE, frames_per_block, sink, window)
    }

    pub fn with(
        table_len: usize,
        rebase: usize,
        frames_per_block: usize,
        sink: usize,
        window: usize,
    ) -> Result<Self> {
        if frames_per_block == 0 || rebase == 0 || !rebase.is_multiple_of(frames_per_block) {
            candle_core::bail!("positions: re-base {rebase} must be a positive multiple of the block ({frames_per_block} frames)");
        }
        // After a re-base the oldest window frame must still sit after the sink's last position.
        let lowest_after_rebase = table_len.saturating_sub(frames_per_block + rebase + window);
        if table_len < frames_per_block + rebase || lowest_after_rebase < sink {
            candle_core::bail!(
                "positions: table {table_len}, re-base {rebase}, window {window} and sink {sink} frames leave no room for re-based blocks"
            );
        }
        Ok(PositionScheme { table_len, rebase, frames_per_block })
    }

    /// Frames to move back before generating a block at `start` (0: none).
    pub fn rebase_before(&self, start: usize) -> usize {
        if start + self.frames_per_block > self.table_len {
            self.rebase
        } else {
            0
        }
    }

    /// The RoPE start position of the block that holds absolute frame `frame` (block-aligned).
    pub fn position_of(&self, frame: u64) -> usize {
        let f = self.frames_per_block as u64;
        let block_start = frame - frame % f;
        let last_fit = (self.table_len - self.frames_per_block) as u64; // highest start that fits
        let start = if block_start <= last_fit {
            block_start
        } else {
            let r = self.rebase as u64;
            let over = block_start - last_fit;
            block_start - r * over.div_ceil(r)
        };
        start as usize + (frame % f) as usize
    }
}

/// Re-rotates the non-sink keys of every layer by `-frames` frame positions and moves the cache's
/// absolute end back accordingly (the sink keeps its keys and positions).
pub fn rebase_cache(kv: &mut KvCache, rope: &Rope3d, frames: usize) -> Result<()> {
    if frames == 0 {
        return Ok(());
    }
    let fsl = kv.config.frame_seq_length;
    let sink = kv.config.sink_tokens();
    let end = kv.local_end_index();
    if end <= sink || !end.is_multiple_of(fsl) {
        candle_core::bail!("positions: re-base needs a full sink and whole frames in the cache (end {end}, sink {sink})");
    }
    let n = end - sink;
    let half = rope.head_dim() / 2;
    // Angles of frame `frames` at height/width 0: the frame group's rotation only.
    let angles = rope.angles(frames, 1, 1, 1);
    let cos: Vec<f64> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f64> = angles.iter().map(|a| -a.sin()).collect();
    for layer in kv.layers.iter_mut() {
        let (b, heads, _, d) = layer.k.dims4()?;
        let cdt = match layer.k.dtype() {
            DType::F64 | DType::F32 => DType::F64,
            _ => DType::F32,
        };
        let dev = layer.k.device().clone();
        let row = |v: &[f64]| -> Result<Tensor> {
            Tensor::from_vec(v.to_vec(), (1, half), &dev)?.to_dtype(cdt)?.repeat((n, 1))
        };
        let tables = RopeTables { cos: row(&cos)?, sin: row(&sin)? };
        let keys = layer.k.narrow(2, sink, n)?.transpose(1, 2)?.contiguous()?.reshape((b, n, heads * d))?;
        let rotated = tables.apply(&keys, heads)?;
        let rotated = rotated.reshape((b, n, heads, d))?.transpose(1, 2)?.contiguous()?;
        layer.k.slice_set(&rotated, 2, sink)?;
    }
    kv.rebase(frames * fsl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use livetalk_model::dit::KvCacheConfig;

    #[test]
    fn positions_match_the_reference_then_cycle() {
        let s = PositionScheme::new(3, 9, 6).unwrap();
        for f in 0..1023u64 {
            assert_eq!(s.position_of(f), f as usize);
        }
        assert_eq!(s.position_of(1023), 513);
        assert_eq!(s.position_of(1025), 515);
        for f in 1023..200_000u64 {
            let p = s.position_of(f);
            assert!((513..1024).contains(&p), "frame {f} at {p}");
            assert_eq!(p % 3, (f % 3) as usize);
        }
        assert_eq!(s.rebase_before(1020), 0);
        assert_eq!(s.rebase_before(1023), 510);
        assert!(PositionScheme::with(1024, 511, 3, 9, 6).is_err());
        assert!(PositionScheme::with(1024, 1014, 3, 9, 6).is_err());
    }

    /// A key rotated at frame p and re-based by d equals the key rotated at p - d.
    #[test]
    fn rebased_keys_equal_keys_rotated_at_the_new_position() -> Result<()> {
        let dev = Device::Cpu;
        let (heads, hd, fsl) = (2, 32, 4);
        let rope = Rope3d::new(hd, Some([12, 10, 10]), 10000.0)?;
        let cfg = KvCacheConfig { local_attn_size: 4, sink_size: 1, frame_seq_length: fsl, batch: 1 };
        let mut kv = KvCache::new(cfg, 1, heads, hd, DType::F32, &dev)?;
        let raw = Tensor::randn(0f32, 1.0, (1, 4 * fsl, heads * hd), &dev)?;
        let rot = |start: usize, x: &Tensor| -> Result<Tensor> {
            rope.tables(start, x.dim(1)? / fsl, 2, 2, DType::F64, &dev)?.apply(x, heads)
        };
        // sink frame at 0, window frames at 700..703
        let sink = rot(0, &raw.narrow(1, 0, fsl)?)?;
        let window = rot(700, &raw.narrow(1, fsl, 3 * fsl)?)?;
        let keys = Tensor::cat(&[&sink, &window], 1)?;
        let to_heads = |x: &Tensor| x.reshape((1, x.dim(1).unwrap(), heads, hd)).and_then(|x| x.transpose(1, 2)?.contiguous());
        kv.reset_at(699 * fsl);
        let plan = kv.plan(699 * fsl, 4 * fsl)?;
        kv.layers[0].write(&plan, &to_heads(&keys)?, &to_heads(&keys)?)?;
        kv.commit(&plan);
        rebase_cache(&mut kv, &rope, 510)?;
        assert_eq!(kv.global_end_index(), 193 * fsl);
        let expected = Tensor::cat(&[&sink, &rot(190, &raw.narrow(1, fsl, 3 * fsl)?)?], 1)?;
        let diff = (kv.keys(0)? - expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "diff {diff}");
        Ok(())
    }
}
