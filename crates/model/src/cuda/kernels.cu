// Fused row kernels of the DiT block (bf16 storage, float32 math). Each replaces a chain of
// 5-12 elementwise candle kernels that each read and wrote the whole activation.
// Rows are `B*L` tokens of `cols` channels.
#include <cuda_bf16.h>
#include <stdint.h>

#define THREADS 256

typedef __nv_bfloat162 bf2;

// Rounded to bf16 and back, where the unfused path stores an intermediate.
__device__ __forceinline__ float rbf(float v) { return __bfloat162float(__float2bfloat16(v)); }

// LayerNorm, RMSNorm+RoPE and the gated residual run one warp per row, 8 rows per thread block: a lane holds
// 8-channel vectors (16-byte loads) of the row in registers, and the row statistics are warp
// shuffles, no block barriers. Rows: a multiple of 8 channels, at most 32 * 8 * MAXV.
#define WARP_ROWS 8
#define MAXV 6

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float* out) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const bf2* h = reinterpret_cast<const bf2*>(&raw);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const float2 f = __bfloat1622float2(h[k]);
        out[2 * k] = f.x;
        out[2 * k + 1] = f.y;
    }
}
__device__ __forceinline__ void store8(__nv_bfloat16* p, const float* v) {
    uint4 raw;
    bf2* h = reinterpret_cast<bf2*>(&raw);
#pragma unroll
    for (int k = 0; k < 4; ++k) h[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
    *reinterpret_cast<uint4*>(p) = raw;
}

// Loads this lane's 8-channel vectors of a row into `v` (+ `bias` when given, rounded to bf16
// like a separate bias add); returns the lane's sum of squares.
__device__ __forceinline__ float load_row_squares(
    const __nv_bfloat16* xr, const __nv_bfloat16* bias, int lane, int nv, float (&v)[MAXV][8]) {
    float q = 0.f;
#pragma unroll
    for (int i = 0; i < MAXV; ++i) {
        const int vi = lane + 32 * i;
        if (vi < nv) {
            load8(xr + 8 * vi, v[i]);
            if (bias) {
                float bc[8];
                load8(bias + 8 * vi, bc);
#pragma unroll
                for (int k = 0; k < 8; ++k) v[i][k] = rbf(v[i][k] + bc[k]);
            }
#pragma unroll
            for (int k = 0; k < 8; ++k) q += v[i][k] * v[i][k];
        }
    }
    return q;
}

// y = LayerNorm(x) [* w + b] [* (1 + scale[frame]) + shift[frame]], float32 two-pass statistics.
// The result is rounded to bf16 after the normalisation+affine (as the unfused path does) and
// once more after the modulation.
extern "C" __global__ void layer_norm_modulate_bf16(
    const __nv_bfloat16* __restrict__ x, __nv_bfloat16* __restrict__ y,
    const __nv_bfloat16* __restrict__ w, const __nv_bfloat16* __restrict__ b,
    const __nv_bfloat16* __restrict__ shift, const __nv_bfloat16* __restrict__ scale,
    int cols, long long rows, int rows_per_frame, long long mod_frame_stride, float eps) {
    const int lane = threadIdx.x % 32;
    const long long row = (long long)blockIdx.x * WARP_ROWS + threadIdx.x / 32;
    if (row >= rows) return;
    const __nv_bfloat16* xr = x + row * cols;
    __nv_bfloat16* yr = y + row * cols;
    const int nv = cols / 8;
    float v[MAXV][8];
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < MAXV; ++i) {
        const int vi = lane + 32 * i;
        if (vi < nv) {
            load8(xr + 8 * vi, v[i]);
#pragma unroll
            for (int k = 0; k < 8; ++k) s += v[i][k];
        }
    }
    const float mean = warp_sum(s) / cols;
    float q = 0.f;
#pragma unroll
    for (int i = 0; i < MAXV; ++i) {
        if (lane + 32 * i < nv) {
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                const float d = v[i][k] - mean;
                q += d * d;
            }
        }
    }
    const float rstd = 1.f / sqrtf(warp_sum(q) / cols + eps);
    const long long frame = row / rows_per_frame;
#pragma unroll
    for (int i = 0; i < MAXV; ++i) {
        const int vi = lane + 32 * i;
        if (vi >= nv) continue;
        const int c = 8 * vi;
        float o[8], t[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) o[k] = (v[i][k] - mean) * rstd;
        if (w) {
            load8(w + c, t);
#pragma unroll
            for (int k = 0; k < 8; ++k) o[k] *= t[k];
        }
        if (b) {
            load8(b + c, t);
#pragma unroll
            for (int k = 0; k < 8; ++k) o[k] += t[k];
        }
        if (shift) {
            float sh[8];
            load8(scale + frame * mod_frame_stride + c, t);
            load8(shift + frame * mod_frame_stride + c, sh);
#pragma unroll
            for (int k = 0; k < 8; ++k) o[k] = rbf(o[k]) * (1.f + t[k]) + sh[k];
        }
        store8(yr + c, o);
    }
}

// The rotation of each (token, pair) of a f x gh x gw token grid whose first frame has absolute
// index start_frame, as (cos, sin): pair j of a head turns by freqs[j] (float64) times the frame
// / row / col position for j in the frame / height / width group ([0, n0), [n0, n0 + n1), the
// rest). Computed in float64 once per forward; every layer's q and k rotations read it.
extern "C" __global__ void rope_table_f32(
    const double* __restrict__ freqs, float2* __restrict__ out,
    int tokens, int half, int gh, int gw, int start_frame, int n0, int n1) {
    const long long total = (long long)tokens * half;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const int t = (int)(i / half), j = (int)(i % half);
        const int fi = t / (gh * gw), hi = (t / gw) % gh, wi = t % gw;
        const double pos = j < n0 ? (double)(start_frame + fi) : (j < n0 + n1 ? (double)hi : (double)wi);
        double sn, cs;
        sincos(pos * freqs[j], &sn, &cs);
        out[i] = make_float2((float)cs, (float)sn);
    }
}

// y = RMSNorm(x + bias) * w, rounded to bf16, then (when `table` is given) each head's adjacent
// channel pairs rotated by the token's entry of `table` ([tokens, head_dim/2] (cos, sin)); x's
// rows are batches of `tokens` tokens. The bias sum is rounded to bf16 like a separate bias add.
extern "C" __global__ void rms_norm_rope_bf16(
    const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ bias, __nv_bfloat16* __restrict__ y,
    const __nv_bfloat16* __restrict__ w, const float2* __restrict__ table,
    int cols, long long rows, int head_dim, int tokens, float eps) {
    const int lane = threadIdx.x % 32;
    const long long row = (long long)blockIdx.x * WARP_ROWS + threadIdx.x / 32;
    if (row >= rows) return;
    const __nv_bfloat16* xr = x + row * cols;
    __nv_bfloat16* yr = y + row * cols;
    const int nv = cols / 8;
    float v[MAXV][8];
    const float r = rsqrtf(warp_sum(load_row_squares(xr, bias, lane, nv, v)) / cols + eps);
    const int half = head_dim / 2;
    const float2* rot = table ? table + (long long)(row % tokens) * half : nullptr;
#pragma unroll
    for (int i = 0; i < MAXV; ++i) {
        const int vi = lane + 32 * i;
        if (vi >= nv) continue;
        const int c = 8 * vi;
        float wc[8], o[8];
        load8(w + c, wc);
#pragma unroll
        for (int k = 0; k < 8; k += 2) {
            const float re = rbf(v[i][k] * r * wc[k]), im = rbf(v[i][k + 1] * r * wc[k + 1]);
            if (rot) {
                const float2 cs = rot[((c + k) / 2) % half];
                o[k] = re * cs.x - im * cs.y;
                o[k + 1] = re * cs.y + im * cs.x;
            } else {
                o[k] = re;
                o[k + 1] = im;
            }
        }
        store8(yr + c, o);
    }
}

// x + bias (bias may be null), rounded to bf16 like a separate bias-add kernel would.
__device__ __forceinline__ float with_bias(const __nv_bfloat16* x, const __nv_bfloat16* bias, long long i, int c) {
    float v = __bfloat162float(x[i]);
    return bias ? __bfloat162float(__float2bfloat16(v + __bfloat162float(bias[c]))) : v;
}

// out = x + (y + bias) * gate[frame] [then + add[frame]]; bias, gate and add may be null (no
// bias / gate 1 / nothing added). `add` is the next layer's audio row, added to the residual
// stream here instead of by a broadcast kernel of its own (rounded in between, as there). One
// warp per row, 8-channel vectors.
extern "C" __global__ void gated_residual_bf16(
    const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ y,
    const __nv_bfloat16* __restrict__ bias, const __nv_bfloat16* __restrict__ gate,
    const __nv_bfloat16* __restrict__ add, __nv_bfloat16* __restrict__ out,
    int cols, long long rows, int rows_per_frame, long long gate_frame_stride, long long add_frame_stride) {
    const int lane = threadIdx.x % 32;
    const long long row = (long long)blockIdx.x * WARP_ROWS + threadIdx.x / 32;
    if (row >= rows) return;
    const long long frame = row / rows_per_frame;
    const long long base = row * cols;
    for (int c = 8 * lane; c < cols; c += 8 * 32) {
        float xv[8], yv[8], t[8];
        load8(x + base + c, xv);
        load8(y + base + c, yv);
        if (bias) {
            load8(bias + c, t);
#pragma unroll
            for (int k = 0; k < 8; ++k) yv[k] = rbf(yv[k] + t[k]);
        }
        if (gate) {
            load8(gate + frame * gate_frame_stride + c, t);
#pragma unroll
            for (int k = 0; k < 8; ++k) xv[k] += yv[k] * t[k];
        } else {
#pragma unroll
            for (int k = 0; k < 8; ++k) xv[k] += yv[k];
        }
        if (add) {
            load8(add + frame * add_frame_stride + c, t);
#pragma unroll
            for (int k = 0; k < 8; ++k) xv[k] = rbf(xv[k]) + t[k];
        }
        store8(out + base + c, xv);
    }
}

// out = gelu_tanh(x + bias) over rows of `cols` (candle's `gelu`, the tanh approximation).
extern "C" __global__ void bias_gelu_bf16(
    const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ bias, __nv_bfloat16* __restrict__ out,
    long long n, int cols) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float v = with_bias(x, bias, i, (int)(i % cols));
        const float inner = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        out[i] = __float2bfloat16(0.5f * v * (1.f + tanhf(inner)));
    }
}

// Writes a block's keys and values (+ the value projection's bias, may be null), `[B, n, H*D]`
// each, into the KV cache `[B, H, cap, D]` at slots [start, start + n): the head transpose, the
// bias add and the two cache copies in one pass; one thread block per token, 8-channel vectors
// (head_dim a multiple of 8).
extern "C" __global__ void kv_write_bf16(
    const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v, const __nv_bfloat16* __restrict__ v_bias,
    __nv_bfloat16* __restrict__ k_cache, __nv_bfloat16* __restrict__ v_cache,
    int n, int heads, int head_dim, int cap, int start) {
    const int cols = heads * head_dim;
    const long long row = blockIdx.x;
    const long long b = row / n;
    const int t = (int)(row % n);
    for (int c = 8 * threadIdx.x; c < cols; c += 8 * THREADS) {
        const int h = c / head_dim, d = c % head_dim;
        const long long dst = ((b * heads + h) * cap + start + t) * head_dim + d;
        *reinterpret_cast<uint4*>(k_cache + dst) = *reinterpret_cast<const uint4*>(k + row * cols + c);
        float vv[8];
        load8(v + row * cols + c, vv);
        if (v_bias) {
            float bc[8];
            load8(v_bias + c, bc);
#pragma unroll
            for (int i = 0; i < 8; ++i) vv[i] += bc[i];
        }
        store8(v_cache + dst, vv);
    }
}

// Nearest-neighbour upscaling of channels-last frames `[B, H, W, C]` by `f` (C a multiple of 8):
// one thread per output 8-channel vector, 16-byte loads and stores.
extern "C" __global__ void upsample_nearest_nhwc_bf16(
    const __nv_bfloat16* __restrict__ x, __nv_bfloat16* __restrict__ y,
    long long out_vectors, int h, int w, int c, int f) {
    const int cv = c / 8;
    const long long ow = (long long)w * f, oh = (long long)h * f;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < out_vectors; i += (long long)gridDim.x * blockDim.x) {
        const int v = (int)(i % cv);
        const long long px = i / cv;
        const long long ox = px % ow, oy = (px / ow) % oh, b = px / (ow * oh);
        const long long src = ((b * h + oy / f) * w + ox / f) * c + 8 * v;
        *reinterpret_cast<uint4*>(y + i * 8) = *reinterpret_cast<const uint4*>(x + src);
    }
}

// The Wan VAE's RMS norm over the channels of channels-last frames `[rows, C]`, optionally
// followed by SiLU: y = x / max(||x||, 1e-12) * gain[c], float32 math, rounded once. One warp
// per row like LayerNorm (C a multiple of 8, at most 32 * 8 * MAXV).
extern "C" __global__ void row_rms_norm_bf16(
    const __nv_bfloat16* __restrict__ x, __nv_bfloat16* __restrict__ y, const float* __restrict__ gain,
    int cols, long long rows, int silu) {
    const int lane = threadIdx.x % 32;
    const long long row = (long long)blockIdx.x * WARP_ROWS + threadIdx.x / 32;
    if (row >= rows) return;
    const __nv_bfloat16* xr = x + row * cols;
    __nv_bfloat16* yr = y + row * cols;
    const int nv = cols / 8;
    float v[MAXV][8];
    const float inv = 1.f / fmaxf(sqrtf(warp_sum(load_row_squares(xr, nullptr, lane, nv, v))), 1e-12f);
#pragma unroll
    for (int i = 0; i < MAXV; ++i) {
        const int vi = lane + 32 * i;
        if (vi >= nv) continue;
        float o[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            float t = v[i][k] * inv * gain[8 * vi + k];
            if (silu) t = t / (1.f + __expf(-t));
            o[k] = t;
        }
        store8(yr + 8 * vi, o);
    }
}
