"""Stand-ins that let the official LiveTalk code run without its checkpoints and without the
optional packages a bare GPU machine lacks.

The reference code itself lives in ref/LiveTalk (ignored by git, never committed: see
docs/PERFORMANCE.md). Nothing here changes what the reference computes per block: its DiT, KV
cache, denoising loop, TAEHV and cached Wan VAE decoder are used as they are. What is replaced:

- weight loading: the DiT, the Wan VAE and wav2vec2 are built with random weights (no files);
- umT5: never built; a fixed random prompt embedding of the same shape stands in (the encoder
  runs once per persona, outside the block loop, and is not resident during streaming);
- imports of packages the benchmark never calls (xfuser's sequence parallelism, diffusers'
  config mixins, soundfile, librosa) when they are missing;
- OmniAvatar: LiveTalk's inference script imports a few OmniAvatar modules that its
  `scripts/add_patch.sh` overwrites with files from `utils/Omniavatarpatch/`; those patched files
  are loaded under the OmniAvatar names here, and the two image helpers the script imports from
  OmniAvatar's own `scripts/inference.py` (absent here) are written below.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import sys
import types
import wave
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _package(name: str, path: Path | None = None) -> types.ModuleType:
    """Registers a package without running its __init__.py (the reference's package inits import
    its training code and heavy optional dependencies)."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__path__ = module.__spec__.submodule_search_locations = [str(path)] if path is not None else []
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


def _load_file_as(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def _unused(what: str):
    def fail(*_args, **_kwargs):
        raise RuntimeError(f"reference bench: {what} is not available here and should not be called")
    return fail


# --- audio and image helpers the inference script imports -------------------------------------

def read_wav(path, sr=None, **_kwargs):
    """`librosa.load` for the 16-bit mono PCM files the driver writes."""
    with wave.open(str(path), "rb") as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: the librosa stand-in reads 16-bit mono PCM only")
    audio = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if sr is not None and sr != rate:
        raise ValueError(f"{path}: sample rate {rate}, expected {sr} (the stand-in does not resample)")
    return audio, rate


def write_wav(path, seconds: float, rate: int = 16000, seed: int = 0) -> None:
    """A speech-like test signal: noise under a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t)
    pcm = np.clip(rng.standard_normal(n) * 0.2 * envelope, -1, 1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((pcm * 32767).astype("<i2").tobytes())


def match_size(sizes, h, w):
    """The candidate (height, width) whose aspect ratio is closest to the image's."""
    aspect = h / w
    return min(sizes, key=lambda s: abs(math.log((s[0] / s[1]) / aspect)))


def resize_pad(image, ori_size, tgt_size):
    """Fits a [B, C, h, w] image inside tgt_size keeping its aspect ratio, centred on black."""
    h, w = ori_size
    th, tw = tgt_size
    scale = min(th / h, tw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    image = F.interpolate(image, size=(nh, nw), mode="bilinear", align_corners=False)
    top, left = (th - nh) // 2, (tw - nw) // 2
    return F.pad(image, (left, tw - nw - left, top, th - nh - top))


# --- module stand-ins, installed before the reference is imported -----------------------------

THIRD_PARTY_STUBS = []


def _stub_missing(root: str, modules: dict, note: str, stubbed: list) -> None:
    """Stubs package `root` (a dict of submodule -> attributes) when it is not installed."""
    if not _missing(root):
        return
    for name, attrs in modules.items():
        if attrs is None:
            _package(name)
        else:
            _module(name, **attrs)
        THIRD_PARTY_STUBS.append(name)
    stubbed.append(note)


def install(ref_root: Path) -> list[str]:
    """Registers the stand-ins before the reference is imported; returns what was stubbed."""
    stubbed = []

    # Path-only packages: the reference's model/ and wan/ package inits pull in training code.
    _package("model", ref_root / "model")
    _package("wan", ref_root / "wan")
    _package("wan.modules", ref_root / "wan" / "modules")
    _package("scripts", ref_root / "scripts")
    _module("scripts.inference", match_size=match_size, resize_pad=resize_pad)
    stubbed.append("OmniAvatar scripts.inference (match_size, resize_pad: ours)")

    # The OmniAvatar modules LiveTalk's inference script imports, as its add_patch.sh leaves them
    # (loaded before any third-party stub exists, so transformers sees the real environment).
    patch = ref_root / "utils" / "Omniavatarpatch"
    for name in ("OmniAvatar", "OmniAvatar.utils", "OmniAvatar.schedulers", "OmniAvatar.models"):
        _package(name)
    _load_file_as("OmniAvatar.utils.args_config", patch / "args_config.py")
    _load_file_as("OmniAvatar.schedulers.flow_match", patch / "flow_match.py")
    _load_file_as("OmniAvatar.models.wav2vec", patch / "wav2vec.py")

    class ConfigMixin:  # imported by the reference's model files, unused by the causal DiT
        pass

    _stub_missing("xfuser", {
        "xfuser": None, "xfuser.core": None,
        "xfuser.core.distributed": dict(
            get_sequence_parallel_rank=lambda: 0,
            get_sequence_parallel_world_size=lambda: 1,
            get_sp_group=_unused("xfuser sequence parallelism")),
    }, "xfuser (sequence parallel rank 0 of 1)", stubbed)
    _stub_missing("diffusers", {
        "diffusers": None,
        "diffusers.configuration_utils": dict(ConfigMixin=ConfigMixin, register_to_config=lambda f: f),
        "diffusers.models": None,
        "diffusers.models.modeling_utils": dict(ModelMixin=torch.nn.Module),
    }, "diffusers (ConfigMixin, ModelMixin: imported, unused)", stubbed)
    _stub_missing("soundfile", {"soundfile": dict(read=_unused("soundfile.read"), write=_unused("soundfile.write"))},
                  "soundfile (imported, unused)", stubbed)
    _stub_missing("librosa", {"librosa": dict(load=read_wav)}, "librosa (load: a 16-bit PCM WAV reader)", stubbed)
    _stub_missing("imageio", {"imageio": dict(mimsave=_unused("imageio.mimsave"))}, "imageio (imported, unused)",
                  stubbed)
    return stubbed


def remove_third_party_stubs() -> None:
    """Once the reference modules hold their references, other libraries (transformers checks
    which optional packages exist) must see the real environment again."""
    for name in THIRD_PARTY_STUBS:
        sys.modules.pop(name, None)


# --- random weights in place of checkpoint loading ---------------------------------------------

# The 1.3B configuration, as the reference's WanModelStateDictConverter reports it for the
# published LiveTalk checkpoint.
DIT_1_3B = dict(
    has_image_input=False, use_audio=True, patch_size=(1, 2, 2), in_dim=33, dim=1536, ffn_dim=8960,
    freq_dim=256, text_dim=4096, out_dim=16, num_heads=12, num_layers=30, eps=1e-6,
    audio_hidden_size=32,
)


def random_dit_loader(config: dict):
    """A replacement for CausalWanModel.from_pretrained that builds `config` with random weights."""
    def from_pretrained(cls, _path, local_attn_size=-1, sink_size=0, freeze_audio=False):
        return cls(**config, local_attn_size=local_attn_size, sink_size=sink_size, freeze_audio=freeze_audio)
    return classmethod(from_pretrained)


def random_video_vae_builder(vae_module):
    """A replacement for wan.modules.vae._video_vae: the same architecture, random weights."""
    def build(pretrained_path=None, z_dim=None, device="cpu", **kwargs):
        cfg = dict(dim=96, z_dim=z_dim, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                   temperal_downsample=[False, True, True], dropout=0.0)
        cfg.update(kwargs)
        return vae_module.WanVAE_(**cfg)
    return build


def random_wav2vec(wav2vec_module):
    """Wav2VecModel whose from_pretrained builds wav2vec2-base (12 layers, 768 wide: 13 hidden
    states + the last = 10,752 features, what the DiT's AudioPack expects) with random weights."""
    from transformers import Wav2Vec2Config

    base = wav2vec_module.Wav2VecModel
    attrs = {"from_pretrained": classmethod(lambda cls, *_a, **_k: cls(Wav2Vec2Config()).eval())}
    try:
        from transformers.utils.output_capturing import capture_outputs
    except ImportError:  # transformers 4 (what the reference pins): its encoder returns hidden states
        capture_outputs = None
    if capture_outputs is not None:
        # transformers 5 collects hidden states with hooks that only its own decorated forward
        # sets up; the reference's forward (written for 4.x) is wrapped the same way.
        attrs["forward"] = capture_outputs(tie_last_hidden_states=False)(base.forward)
    return type("RandomWav2VecModel", (base,), attrs)


def default_feature_extractor():
    """Wav2Vec2FeatureExtractor whose from_pretrained gives wav2vec2-base-960h's settings
    (16 kHz, zero-mean unit-variance normalisation), which are the class defaults."""
    from transformers import Wav2Vec2FeatureExtractor

    class DefaultFeatureExtractor(Wav2Vec2FeatureExtractor):
        @classmethod
        def from_pretrained(cls, *_args, **_kwargs):
            return cls()

    return DefaultFeatureExtractor


def prompt_embedding_encoder(text_len: int, text_dim: int, seed: int = 0):
    """A WanTextEncoder stand-in: a fixed random umT5 output [B, text_len, text_dim]."""
    class PromptEmbeddings(torch.nn.Module):
        def __init__(self, text_encoder_path=None, tokenizer_path=None):
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            self.register_buffer("embeds", torch.randn(1, text_len, text_dim, generator=g) * 0.1)

        def forward(self, text_prompts):
            return {"prompt_embeds": self.embeds.expand(len(text_prompts), -1, -1)}

    return PromptEmbeddings
