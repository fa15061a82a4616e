#!/usr/bin/env python3
"""Runs the official LiveTalk PyTorch pipeline (ref/LiveTalk, random weights) in steady state and
prints one machine-readable line per decoder:

    REFERENCE_RESULT {"decoder": "taehv", "fps": ..., "first_block_ms": ..., ...}

What runs is the reference's own code: `CausalInferencePipeline` from its
scripts/inference_example.py, built by its own __init__ from its configs/causal_inference.yaml
(KV window 15 latent frames, sink 9, 3 frames per block, 4 denoising steps + the t=0 cache
refresh), its forward() preparing the image latent (Wan VAE encoder) and audio features
(wav2vec2 -> AudioPack -> per-layer projections), and its inference() block loop. Weights are
random (see reference_shims.py for every stand-in). Its inference() decodes the whole clip once at
the end; streaming decoders are the reference's demo_utils/taehv.py and demo_utils/vae_block3.py,
driven per block as the demo these files come from (Self-Forcing's demo.py) drives them:
TAEHV decodes the previous block's 3 latents + the new 3 and keeps the last 12 frames, the cached
Wan VAE decoder carries its feature cache across blocks. Each block is decoded right after its
cache-refresh pass, by wrapping the pipeline's _generator_forward.

Timing: wall clock with device synchronisation at block ends. Block = 4 denoising passes + the
refresh pass + decoding. The first 6 blocks fill the window (15 frames) and start eviction; the
next --blocks are measured. fps = frames per block / median block time (as `livetalk bench`).
First block: a fresh stream (caches reset, weights resident, kernels warm) from inference() to
its first block decoded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", default=str(HERE.parent / "ref" / "LiveTalk"), help="the reference checkout")
    p.add_argument("--blocks", type=int, default=8, help="blocks measured after the window is full")
    p.add_argument("--decoders", default="taehv,wan", help="comma list of taehv, wan (cached Wan VAE)")
    p.add_argument("--side", type=int, default=512, help="output side in pixels")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--tiny", action="store_true",
                   help="a 4-layer DiT (same width: the reference's KV cache is hard-coded 12x128 wide), "
                        "16-token prompt, 64x64 output: for checking the script on a CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="show the reference's own prints")
    return p.parse_args()


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class BlockClock:
    """Wraps the pipeline's _generator_forward. inference() runs 5 passes per block, the last one
    the cache refresh on the denoised latents; after it the block is decoded and timestamped."""

    def __init__(self, pipe, passes_per_block, sync):
        self.inner = pipe._generator_forward
        self.passes = passes_per_block
        self.sync = sync
        pipe._generator_forward = self

    def start(self, decoder):
        self.decoder = decoder
        self.calls = 0
        self.records = []
        self.sync()
        self.t_start = self.t_prev = time.perf_counter()

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        self.calls += 1
        if self.calls % self.passes == 0:
            self.sync()
            t_dit = time.perf_counter()
            frames = self.decoder.decode_block(kwargs["noisy_image_or_video"])
            self.sync()
            t_end = time.perf_counter()
            self.records.append(dict(
                dit_ms=(t_dit - self.t_prev) * 1e3,
                decode_ms=(t_end - t_dit) * 1e3,
                block_ms=(t_end - self.t_prev) * 1e3,
                since_start_ms=(t_end - self.t_start) * 1e3,
                frames=frames,
            ))
            self.t_prev = t_end
        return out


class TaehvStream:
    """demo_utils/taehv.py as Self-Forcing's demo streams it: previous 3 latents + new 3,
    sequential decode (parallel=False), keep the frames of the new latents."""
    name = "taehv"

    def __init__(self, device, dtype):
        from demo_utils.taehv import TAEHV
        self.model = TAEHV(checkpoint_path=None).to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.dtype = dtype

    def reset(self):
        self.prev = None

    def decode_block(self, latents):
        latents = latents.to(self.dtype)
        if self.prev is None:
            x, keep_from = latents, 3
        else:
            x, keep_from = torch.cat([self.prev, latents], dim=1), 12
        self.prev = latents
        pixels = self.model.decode_video(x, parallel=False).mul_(2).sub_(1)
        return pixels[:, keep_from:].shape[1]


class WanVaeStream:
    """demo_utils/vae_block3.py's VAEDecoderWrapper with its feature cache carried across blocks,
    started from zeros shaped like demo_utils/constant.py's (which is for 480x832) at this size."""
    name = "wan"

    def __init__(self, device, dtype, lat_h, lat_w):
        from demo_utils.vae_block3 import VAEDecoderWrapper
        from demo_utils.constant import ZERO_VAE_CACHE
        self.model = VAEDecoderWrapper().to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.shapes = []
        for c in ZERO_VAE_CACHE:
            n, ch, t, h, w = c.shape
            self.shapes.append((n, ch, t, lat_h * (h // 60), lat_w * (w // 104)))
        self.device, self.dtype = device, dtype

    def reset(self):
        self.cache = [torch.zeros(s, device=self.device, dtype=self.dtype) for s in self.shapes]
        self.first = True

    def decode_block(self, latents):
        pixels, self.cache = self.model(latents.to(self.dtype), *self.cache)
        if self.first:
            pixels, self.first = pixels[:, 3:], False
        return pixels.shape[1]


def synthetic_conditioning(dit, num_frames, lat, device, dtype):
    """Image latent + mask [1, 17, F, lat, lat] and per-layer audio rows [L, F, 1, 1, dim], the
    shapes forward() produces, from random features through the DiT's own audio layers."""
    image = torch.randn([1, 16, num_frames, lat, lat], device=device, dtype=dtype)
    mask = torch.ones([1, 1, num_frames, lat, lat], device=device, dtype=dtype)
    mask[:, :, 0] = 0
    features = torch.randn([1, dit.audio_proj.proj.in_features // 4, 4 * num_frames, 1, 1], device=device, dtype=dtype)
    packed = dit.audio_proj(features)
    audio = torch.cat([proj(packed) for proj in dit.audio_cond_projs], dim=0)
    return torch.cat([image, mask], dim=1), audio


def main():
    args = parse_args()
    names = [d.strip() for d in args.decoders.split(",") if d.strip()]
    for name in names:
        if name not in ("taehv", "wan"):
            sys.exit(f"reference_bench: unknown decoder {name!r} in --decoders (taehv, wan)")
    ref = Path(args.ref).resolve()
    if not (ref / "scripts" / "inference_example.py").is_file():
        sys.exit(f"reference_bench: {ref} does not hold the LiveTalk reference "
                 "(scripts/inference_example.py missing): see docs/PERFORMANCE.md")

    import yaml
    import reference_shims as shims

    torch.set_grad_enabled(False)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    # The reference's inference config, with the sizes this run uses.
    cfg = yaml.safe_load((ref / "configs" / "causal_inference.yaml").read_text())
    side = 64 if args.tiny else args.side
    if side % 16:
        sys.exit(f"reference_bench: --side {side} must be a multiple of 16")
    lat = side // 8
    dit = dict(shims.DIT_1_3B)
    text_len = 512
    if args.tiny:
        dit.update(num_layers=4, ffn_dim=1536)
        text_len = 16
    cfg.update(num_transformer_blocks=dit["num_layers"], frame_seq_length=(lat // 2) ** 2,
               image_sizes_720=[[side, side]], max_hw=720)
    f = cfg["num_frame_per_block"]
    fill_blocks = -(-cfg["local_attn_size"] // f) + 1   # window full and evicting (as livetalk bench)
    total_blocks = fill_blocks + args.blocks
    num_frames = total_blocks * f

    work = Path(tempfile.mkdtemp(prefix="reference-bench-"))
    cfg_path = work / "causal_inference.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    wav = work / "speech.wav"
    shims.write_wav(wav, seconds=num_frames * 4 / cfg["fps"] + 1, rate=cfg["sample_rate"], seed=args.seed)

    os.chdir(ref)
    sys.path.insert(0, str(ref))
    stubbed = shims.install(ref)
    argv = sys.argv
    sys.argv = [argv[0], "--config", str(cfg_path)]
    quiet = contextlib.redirect_stdout(io.StringIO()) if not args.verbose else contextlib.nullcontext()
    with quiet:
        import scripts.inference_example as ie   # parses --config at import, as the reference does
    sys.argv = argv

    # Everything the pipeline imports lazily, while the stand-ins are in place.
    import model.causal_wan_video_dit_omniavatar as causal_dit
    import model.wan_video_dit_omniavatar  # noqa: F401  (imported by WanDiffusionWrapper)
    import wan.modules.vae as wan_vae
    import demo_utils.taehv  # noqa: F401
    import demo_utils.vae_block3  # noqa: F401
    import OmniAvatar.models.wav2vec as wav2vec
    shims.remove_third_party_stubs()
    causal_dit.CausalWanModel.from_pretrained = shims.random_dit_loader(dit)
    wan_vae._video_vae = shims.random_video_vae_builder(wan_vae)
    wav2vec.Wav2VecModel = shims.random_wav2vec(wav2vec)
    ie.Wav2Vec2FeatureExtractor = shims.default_feature_extractor()
    ie.WanTextEncoder = shims.prompt_embedding_encoder(text_len, dit["text_dim"], args.seed)

    t = time.perf_counter()
    with quiet:
        pipe = ie.CausalInferencePipeline(args=ie.args, device=device)
    build_s = time.perf_counter() - t
    # inference() ends by decoding the whole clip with the full Wan VAE: not part of streaming
    # (each block is decoded as it is ready, below).
    pipe.vae.decode_to_pixel = lambda latent, use_cache=False: latent
    passes = len(pipe.denoising_step_list) + 1
    dtype = pipe.dtype

    # Conditioning through the reference's forward(): Wan VAE encoding of its example portrait,
    # wav2vec2 features of the test signal, AudioPack + per-layer projections. Its inference() is
    # captured instead of run.
    captured = {}
    pipe.inference = lambda **kw: captured.update(kw) or torch.zeros(1)
    noise = torch.randn([1, num_frames, 16, lat, lat], device=device, dtype=dtype)
    conditioning = "reference forward(): Wan VAE image latent, wav2vec2 features"
    try:
        with quiet:
            pipe(noise=noise, text_prompts=cfg["prompt"], image_path=str(ref / cfg["image_path"]),
                 audio_path=str(wav), initial_latent=None, return_latents=False)
        img_lat, audio = captured["img_lat"], captured["audio_embed"]
    except Exception as e:  # the block loop does not depend on where these tensors come from
        conditioning = f"synthetic tensors (forward() failed: {type(e).__name__}: {e})"
        img_lat, audio = synthetic_conditioning(pipe.generator, num_frames, lat, device, dtype)
    del pipe.inference

    clock = BlockClock(pipe, passes, sync)

    def stream(decoder, blocks):
        decoder.reset()
        clock.start(decoder)
        n = blocks * f
        with quiet:
            pipe.inference(noise=noise[:, :n], text_prompts=cfg["prompt"], img_lat=img_lat[:, :, :n],
                           audio_embed=audio[:, :n], initial_latent=None, return_latents=False)
        if len(clock.records) != blocks:
            raise RuntimeError(f"expected {blocks} blocks, timed {len(clock.records)}")
        return clock.records

    print(f"reference: {ref} | device {device} {torch.cuda.get_device_name(device) if cuda else ''} | "
          f"torch {torch.__version__} | DiT {dit['num_layers']} layers dim {dit['dim']} | {side}x{side} | "
          f"window {cfg['local_attn_size']} sink 9 frames | built in {build_s:.1f} s", flush=True)
    print("reference: stand-ins: " + "; ".join(stubbed), flush=True)

    def measure(name):
        decoder = TaehvStream(device, dtype) if name == "taehv" else WanVaeStream(device, dtype, lat, lat)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        steady = stream(decoder, total_blocks)[fill_blocks:]
        # The reference's own cache bookkeeping says whether the window was full and evicting.
        cache = pipe.kv_cache1[0]
        window_frames = cache["local_end_index"].item() / pipe.frame_seq_length
        cached_frames = cache["global_end_index"].item() / pipe.frame_seq_length
        if window_frames != cfg["local_attn_size"] or cached_frames <= window_frames:
            raise RuntimeError(f"KV cache not in steady state: window {window_frames} of "
                               f"{cfg['local_attn_size']} frames after {cached_frames} frames")
        first = stream(decoder, 1)[0]
        clock.decoder = None   # free this decoder before the next one is measured
        block_ms = median([r["block_ms"] for r in steady])
        frames = median([r["frames"] for r in steady])
        result = dict(
            decoder=name,
            fps=frames / (block_ms / 1e3),
            fps_mean=sum(r["frames"] for r in steady) / (sum(r["block_ms"] for r in steady) / 1e3),
            first_block_ms=first["since_start_ms"],
            block_ms_median=block_ms,
            dit_ms_per_pass=median([r["dit_ms"] for r in steady]) / passes,
            decode_ms_median=median([r["decode_ms"] for r in steady]),
            frames_per_block=frames,
            kv_window_frames=window_frames,
            kv_frames_seen=cached_frames,
            blocks=len(steady),
            peak_allocated_gib=torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
            peak_reserved_gib=torch.cuda.max_memory_reserved(device) / 2**30 if cuda else None,
            device=torch.cuda.get_device_name(device) if cuda else "cpu",
            dtype=str(dtype).replace("torch.", ""),
            side=side,
            dit_layers=dit["num_layers"],
            torch=torch.__version__,
            conditioning=conditioning.split(" (")[0],
        )
        return result

    print(f"reference: conditioning: {conditioning}", flush=True)

    results = []
    for name in names:
        try:
            result = measure(name)
        except Exception as e:  # one decoder failing must not cost the other's figures
            print("REFERENCE_ERROR " + json.dumps(dict(decoder=name, error=f"{type(e).__name__}: {e}")), flush=True)
            continue
        results.append(result)
        print("REFERENCE_RESULT " + json.dumps(result), flush=True)
    return results


if __name__ == "__main__":
    main()
