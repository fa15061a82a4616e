//! 3-axis rotary position embedding of the Wan DiT.
//!
//! Each head's `head_dim` channels form `head_dim/2` complex pairs `(x[2i], x[2i+1])`, split into
//! a frame group (`head_dim - 2*(head_dim/3)` channels), a height group and a width group
//! (`head_dim/3` channels each). Group `g` with `d` channels has frequencies
//! `1 / theta^(2k/d)`, k < d/2 (float64), and the rotation angle is `position * freq`.
//!
//! The reference precomputes a 1024-entry table per axis; here angles are computed on the fly for
//! any position (identical values for positions < 1024), so frame indices can grow for hours.

use candle_core::{DType, Device, Result, Tensor};

#[derive(Debug, Clone)]
pub struct Rope3d {
    head_dim: usize,
    /// Channel counts of the frame / height / width groups.
    dims: [usize; 3],
    /// Frequencies per group (float64), `dims[g]/2` entries each.
    freqs: [Vec<f64>; 3],
}

fn freqs_1d(dim: usize, theta: f64) -> Vec<f64> {
    // 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].double() / dim))
    (0..dim / 2).map(|k| 1.0 / theta.powf((2 * k) as f64 / dim as f64)).collect()
}

/// cos/sin tables for one token grid, `[L, head_dim/2]` each, in the compute dtype.
#[derive(Debug, Clone)]
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rope3d {
    /// `dims` = channels of the (frame, height, width) groups; `None` = the reference split.
    pub fn new(head_dim: usize, dims: Option<[usize; 3]>, theta: f64) -> Result<Self> {
        let dims = dims.unwrap_or([head_dim - 2 * (head_dim / 3), head_dim / 3, head_dim / 3]);
        if dims.iter().sum::<usize>() != head_dim || dims.iter().any(|d| d % 2 != 0) {
            candle_core::bail!("rope: bad split {dims:?} of head_dim {head_dim}");
        }
        let freqs = [freqs_1d(dims[0], theta), freqs_1d(dims[1], theta), freqs_1d(dims[2], theta)];
        Ok(Rope3d { head_dim, dims, freqs })
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// All `head_dim/2` pair frequencies (frame group, then height, then width).
    pub fn pair_freqs(&self) -> Vec<f64> {
        self.freqs.iter().flatten().copied().collect()
    }

    /// Pairs in the frame and height groups (the width group has the rest).
    pub fn group_pairs(&self) -> [usize; 2] {
        [self.dims[0] / 2, self.dims[1] / 2]
    }

    /// Angles (float64) for the tokens of a `f x h x w` grid whose first frame has absolute index
    /// `start_frame`; tokens are ordered frame-major then row-major; `[L * head_dim/2]`.
    pub fn angles(&self, start_frame: usize, f: usize, h: usize, w: usize) -> Vec<f64> {
        let half = self.head_dim / 2;
        let mut out = Vec::with_capacity(f * h * w * half);
        for fi in 0..f {
            let pf = (start_frame + fi) as f64;
            for hi in 0..h {
                for wi in 0..w {
                    out.extend(self.freqs[0].iter().map(|&fr| pf * fr));
                    out.extend(self.freqs[1].iter().map(|&fr| hi as f64 * fr));
                    out.extend(self.freqs[2].iter().map(|&fr| wi as f64 * fr));
                }
            }
        }
        debug_assert_eq!(out.len(), f * h * w * half);
        out
    }

    /// cos/sin tables `[L, head_dim/2]` on `device` in `dtype` (F64 for the reference precision,
    /// F32 is enough for bf16 models).
    pub fn tables(
        &self,
        start_frame: usize,
        f: usize,
        h: usize,
        w: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<RopeTables> {
        let a = self.angles(start_frame, f, h, w);
        let l = f * h * w;
        let half = self.head_dim / 2;
        let cos: Vec<f64> = a.iter().map(|x| x.cos()).collect();
        let sin: Vec<f64> = a.iter().map(|x| x.sin()).collect();
        let cos = Tensor::from_vec(cos, (l, half), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?;
        let sin = Tensor::from_vec(sin, (l, half), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?;
        Ok(RopeTables { cos, sin })
    }
}

impl RopeTables {
    /// Rotates `x` `[B, L, num_heads*head_dim]` (adjacent channel pairs), computing in the tables'
    /// dtype and returning `x`'s dtype.
    pub fn apply(&self, x: &Tensor, num_heads: usize) -> Result<Tensor> {
        let (b, l, c) = x.dims3()?;
        let half = c / num_heads / 2;
        let cdt = self.cos.dtype();
        let xr = x.to_dtype(cdt)?.reshape((b, l, num_heads, half, 2))?;
        let re = xr.narrow(4, 0, 1)?;
        let im = xr.narrow(4, 1, 1)?;
        let cos = self.cos.reshape((1, l, 1, half, 1))?;
        let sin = self.sin.reshape((1, l, 1, half, 1))?;
        // (re + i im) * (cos + i sin)
        let out_re = (re.broadcast_mul(&cos)? - im.broadcast_mul(&sin)?)?;
        let out_im = (re.broadcast_mul(&sin)? + im.broadcast_mul(&cos)?)?;
        Tensor::cat(&[out_re, out_im], 4)?.reshape((b, l, c))?.to_dtype(x.dtype())
    }
}
