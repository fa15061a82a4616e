// Fused row kernels of the DiT block (bf16 storage, float32 math). Each replaces a chain of
// 5-12 elementwise candle kernels that each read and wrote the whole activation.
// One thread block per token row; rows are `B*L` tokens of `cols` channels.
#include <cuda_bf16.h>
#include <stdint.h>

#define THREADS 256

// Sum of `v` over the thread block (THREADS threads).
__device__ __forceinline__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float total = 0.f;
    for (int w = 0; w < THREADS / 32; ++w) total += shared[w];
    return total;
}

// y = LayerNorm(x) [* w + b] [* (1 + scale[frame]) + shift[frame]], float32 two-pass statistics.
// The result is rounded to bf16 after the normalisation+affine (as the unfused path does) and
// once more after the modulation.
extern "C" __global__ void layer_norm_modulate_bf16(
    const __nv_bfloat16* __restrict__ x, __nv_bfloat16* __restrict__ y,
    const __nv_bfloat16* __restrict__ w, const __nv_bfloat16* __restrict__ b,
    const __nv_bfloat16* __restrict__ shift, const __nv_bfloat16* __restrict__ scale,
    int cols, int rows_per_frame, long long mod_frame_stride, float eps) {
    __shared__ float shared[THREADS / 32];
    const long long row = blockIdx.x;
    const __nv_bfloat16* xr = x + row * cols;
    __nv_bfloat16* yr = y + row * cols;
    float s = 0.f;
    for (int c = threadIdx.x; c < cols; c += THREADS) s += __bfloat162float(xr[c]);
    const float mean = block_sum(s, shared) / cols;
    float q = 0.f;
    for (int c = threadIdx.x; c < cols; c += THREADS) {
        float d = __bfloat162float(xr[c]) - mean;
        q += d * d;
    }
    const float rstd = 1.f / sqrtf(block_sum(q, shared) / cols + eps);
    const long long frame = row / rows_per_frame;
    for (int c = threadIdx.x; c < cols; c += THREADS) {
        float v = (__bfloat162float(xr[c]) - mean) * rstd;
        if (w) v = v * __bfloat162float(w[c]);
        if (b) v = v + __bfloat162float(b[c]);
        if (shift) {
            v = __bfloat162float(__float2bfloat16(v));
            float sc = __bfloat162float(scale[frame * mod_frame_stride + c]);
            float sh = __bfloat162float(shift[frame * mod_frame_stride + c]);
            v = v * (1.f + sc) + sh;
        }
        yr[c] = __float2bfloat16(v);
    }
}

// y = RMSNorm(x) * w, rounded to bf16, then the 3-axis rotary embedding of the Wan DiT applied to
// each head's adjacent channel pairs. Token t of a batch row lies at (frame, row, col) of an
// f x gh x gw grid whose first frame has absolute index start_frame; pair j of a head uses
// freqs[j] (float64) times the frame / row / col position for j in the frame / height / width
// group ([0, n0), [n0, n0 + n1), the rest).
// x + bias (bias may be null), rounded to bf16 like a separate bias-add kernel would.
__device__ __forceinline__ float with_bias(const __nv_bfloat16* x, const __nv_bfloat16* bias, long long i, int c) {
    float v = __bfloat162float(x[i]);
    return bias ? __bfloat162float(__float2bfloat16(v + __bfloat162float(bias[c]))) : v;
}

extern "C" __global__ void rms_norm_rope_bf16(
    const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ bias, __nv_bfloat16* __restrict__ y,
    const __nv_bfloat16* __restrict__ w, const double* __restrict__ freqs,
    int cols, int head_dim, int tokens, int gh, int gw, int start_frame, int n0, int n1, float eps) {
    __shared__ float shared[THREADS / 32];
    const long long row = blockIdx.x;
    const __nv_bfloat16* xr = x + row * cols;
    __nv_bfloat16* yr = y + row * cols;
    float q = 0.f;
    for (int c = threadIdx.x; c < cols; c += THREADS) {
        float v = with_bias(xr, bias, c, c);
        q += v * v;
    }
    const float r = rsqrtf(block_sum(q, shared) / cols + eps);
    const int t = (int)(row % tokens);
    const int fi = t / (gh * gw), hi = (t / gw) % gh, wi = t % gw;
    const int half = head_dim / 2;
    for (int p = threadIdx.x; p < cols / 2; p += THREADS) {
        const int c = 2 * p;
        const int j = p % half;
        const double pos = j < n0 ? (double)(start_frame + fi) : (j < n0 + n1 ? (double)hi : (double)wi);
        double sn = 0.0, cs = 1.0;  // no freqs: RMSNorm only
        if (freqs) sincos(pos * freqs[j], &sn, &cs);
        const float cf = (float)cs, sf = (float)sn;
        const float re = __bfloat162float(__float2bfloat16(with_bias(xr, bias, c, c) * r * __bfloat162float(w[c])));
        const float im = __bfloat162float(__float2bfloat16(with_bias(xr, bias, c + 1, c + 1) * r * __bfloat162float(w[c + 1])));
        yr[c] = __float2bfloat16(re * cf - im * sf);
        yr[c + 1] = __float2bfloat16(re * sf + im * cf);
    }
}

// out = x + (y + bias) * gate[frame]; bias and gate may be null (no bias / gate 1).
extern "C" __global__ void gated_residual_bf16(
    const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ y,
    const __nv_bfloat16* __restrict__ bias, const __nv_bfloat16* __restrict__ gate, __nv_bfloat16* __restrict__ out,
    int cols, int rows_per_frame, long long gate_frame_stride) {
    const long long row = blockIdx.x;
    const long long frame = row / rows_per_frame;
    for (int c = threadIdx.x; c < cols; c += THREADS) {
        const long long i = row * cols + c;
        const float g = gate ? __bfloat162float(gate[frame * gate_frame_stride + c]) : 1.f;
        out[i] = __float2bfloat16(__bfloat162float(x[i]) + with_bias(y, bias, i, c) * g);
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
// bias add and the two cache copies in one pass.
extern "C" __global__ void kv_write_bf16(
    const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v, const __nv_bfloat16* __restrict__ v_bias,
    __nv_bfloat16* __restrict__ k_cache, __nv_bfloat16* __restrict__ v_cache,
    long long total, int n, int heads, int head_dim, int cap, int start) {
    const int cols = heads * head_dim;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(i % cols);
        const long long bt = i / cols;
        const int t = (int)(bt % n);
        const long long b = bt / n;
        const int h = c / head_dim, d = c % head_dim;
        const long long dst = ((b * heads + h) * cap + start + t) * head_dim + d;
        k_cache[dst] = k[i];
        v_cache[dst] = __float2bfloat16(with_bias(v, v_bias, i, c));
    }
}
