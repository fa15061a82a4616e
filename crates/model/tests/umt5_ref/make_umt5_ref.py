#!/usr/bin/env python3
"""Independent reference for the umT5 encoder test (crates/model/tests/umt5.rs).

Plain Python (no torch, no numpy): a tiny umT5 encoder written from the architecture
description, in float64 on float32-rounded weights, written with its inputs and outputs to
umt5_ref.safetensors next to this script. Run it again to regenerate (deterministic):

    python3 crates/model/tests/umt5_ref/make_umt5_ref.py

Architecture (umT5 = T5 v1.1 encoder with a relative position table in every layer):
    x = E[ids]
    per layer: x += O(attn(Q n1(x), K n1(x), V n1(x)) with logits q.k + table[bucket(j - i)]
                      and masked keys excluded; no 1/sqrt(d) scaling)
               x += W2((W1 n2(x)) * gelu_tanh(G n2(x)))
    out = n(x), n(x) = w * x / sqrt(mean(x^2) + eps)
Wan's prompt embedding then zeroes every row from the valid length (count of mask) on.
"""
import json
import math
import random
import struct
from pathlib import Path

OUT = Path(__file__).with_name("umt5_ref.safetensors")


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def randn(rng, shape, std, mean=0.0):
    n = 1
    for d in shape:
        n *= d
    flat = [f32(mean + std * rng.gauss(0.0, 1.0)) for _ in range(n)]
    return reshape(flat, shape)


def reshape(flat, shape):
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def flatten(x):
    if isinstance(x, list):
        out = []
        for v in x:
            out.extend(flatten(v))
        return out
    return [x]


def shape_of(x):
    s = []
    while isinstance(x, list):
        s.append(len(x))
        x = x[0]
    return s


# ---- the model, from the description -------------------------------------------------------

def bucket(rel, num_buckets, max_distance):
    """Bidirectional T5 bucket of rel = key - query."""
    half = num_buckets // 2
    out = half if rel > 0 else 0
    n = abs(rel)
    exact = half // 2
    if n < exact:
        return out + n
    # log-spaced from `exact` to `max_distance`, cut at the last bucket of the half
    step = int(math.log(n / exact) / math.log(max_distance / exact) * (half - exact))
    return out + min(exact + step, half - 1)


def matvec(w, x):  # w: [out][in]
    return [sum(wi * xi for wi, xi in zip(row, x)) for row in w]


def rms(x, w, eps):
    s = math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [wi * v / s for wi, v in zip(w, x)]


def gelu_tanh(v):
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))


def encode(cfg, p, ids, mask):
    h, d = cfg["num_heads"], cfg["dim_attn"] // cfg["num_heads"]
    length = len(ids)
    x = [list(p["token_embedding.weight"][t]) for t in ids]
    for layer in range(cfg["num_layers"]):
        pre = f"blocks.{layer}."
        table = p[pre + "pos_embedding.embedding.weight"]  # [buckets][heads]
        n1 = [rms(v, p[pre + "norm1.weight"], cfg["eps"]) for v in x]
        q = [matvec(p[pre + "attn.q.weight"], v) for v in n1]
        k = [matvec(p[pre + "attn.k.weight"], v) for v in n1]
        v_ = [matvec(p[pre + "attn.v.weight"], v) for v in n1]
        att = [[0.0] * (h * d) for _ in range(length)]
        for i in range(length):
            for head in range(h):
                sl = slice(head * d, (head + 1) * d)
                logits = []
                for j in range(length):
                    if not mask[j]:
                        logits.append(None)
                        continue
                    b = bucket(j - i, cfg["num_buckets"], cfg["max_distance"])
                    logits.append(sum(a * c for a, c in zip(q[i][sl], k[j][sl])) + table[b][head])
                top = max(l for l in logits if l is not None)
                weights = [0.0 if l is None else math.exp(l - top) for l in logits]
                total = sum(weights)
                for j in range(length):
                    if weights[j]:
                        for c in range(d):
                            att[i][head * d + c] += weights[j] / total * v_[j][head * d + c]
        o = [matvec(p[pre + "attn.o.weight"], a) for a in att]
        x = [[a + b for a, b in zip(xi, oi)] for xi, oi in zip(x, o)]
        n2 = [rms(v, p[pre + "norm2.weight"], cfg["eps"]) for v in x]
        ff = []
        for v in n2:
            g = [gelu_tanh(t) for t in matvec(p[pre + "ffn.gate.0.weight"], v)]
            u = matvec(p[pre + "ffn.fc1.weight"], v)
            ff.append(matvec(p[pre + "ffn.fc2.weight"], [a * b for a, b in zip(u, g)]))
        x = [[a + b for a, b in zip(xi, fi)] for xi, fi in zip(x, ff)]
    return [rms(v, p["norm.weight"], cfg["eps"]) for v in x]


def make_params(cfg, rng):
    dim, da, df, h = cfg["dim"], cfg["dim_attn"], cfg["dim_ffn"], cfg["num_heads"]
    hd = da // h
    p = {"token_embedding.weight": randn(rng, [cfg["vocab_size"], dim], 1.0)}
    for layer in range(cfg["num_layers"]):
        pre = f"blocks.{layer}."
        p[pre + "norm1.weight"] = randn(rng, [dim], 0.1, 1.0)
        p[pre + "attn.q.weight"] = randn(rng, [da, dim], dim ** -0.5)
        p[pre + "attn.k.weight"] = randn(rng, [da, dim], dim ** -0.5)
        p[pre + "attn.v.weight"] = randn(rng, [da, dim], dim ** -0.5)
        p[pre + "attn.o.weight"] = randn(rng, [dim, da], da ** -0.5)
        p[pre + "norm2.weight"] = randn(rng, [dim], 0.1, 1.0)
        p[pre + "ffn.gate.0.weight"] = randn(rng, [df, dim], dim ** -0.5)
        p[pre + "ffn.fc1.weight"] = randn(rng, [df, dim], dim ** -0.5)
        p[pre + "ffn.fc2.weight"] = randn(rng, [dim, df], df ** -0.5)
        # large enough that a wrong bucket shows in the output
        p[pre + "pos_embedding.embedding.weight"] = randn(rng, [cfg["num_buckets"], h], 1.0)
    p["norm.weight"] = randn(rng, [dim], 0.1, 1.0)
    return p


# ---- cases ---------------------------------------------------------------------------------

CASES = {
    # the real bucket settings (32 / 128), two prompts padded to one length
    "a": dict(cfg=dict(vocab_size=50, dim=16, dim_attn=16, dim_ffn=24, num_heads=2, num_layers=2,
                       num_buckets=32, max_distance=128, eps=1e-6),
              lens=[19, 7], length=24, seed=1),
    # dim_attn != dim, 3 layers, 8 buckets / distance 8: distances reach the shared last bucket
    "b": dict(cfg=dict(vocab_size=30, dim=12, dim_attn=8, dim_ffn=20, num_heads=2, num_layers=3,
                       num_buckets=8, max_distance=8, eps=1e-6),
              lens=[12], length=12, seed=2),
}


def main():
    tensors = {}  # name -> (dtype, shape, flat values)
    meta = {}
    for name, case in CASES.items():
        cfg, rng = case["cfg"], random.Random(case["seed"])
        meta[f"{name}.config"] = json.dumps(cfg, sort_keys=True)
        params = make_params(cfg, rng)
        for key, value in params.items():
            tensors[f"{name}.weights.{key}"] = ("F32", shape_of(value), flatten(value))
        length = case["length"]
        ids, masks, hidden, embeds = [], [], [], []
        for valid in case["lens"]:
            row = [rng.randrange(2, cfg["vocab_size"]) for _ in range(valid - 1)] + [1]  # ... </s>
            row += [0] * (length - valid)  # <pad>
            mask = [1] * valid + [0] * (length - valid)
            out = encode(cfg, params, row, mask)
            ids.append(row)
            masks.append(mask)
            hidden.append(out)
            embeds.append([v if i < valid else [0.0] * cfg["dim"] for i, v in enumerate(out)])
        b = len(case["lens"])
        tensors[f"{name}.ids"] = ("I64", [b, length], flatten(ids))
        tensors[f"{name}.mask"] = ("I64", [b, length], flatten(masks))
        tensors[f"{name}.hidden"] = ("F32", [b, length, cfg["dim"]], flatten(hidden))
        tensors[f"{name}.embeds"] = ("F32", [b, length, cfg["dim"]], flatten(embeds))
        grid = [bucket(j - i, cfg["num_buckets"], cfg["max_distance"]) for i in range(length) for j in range(length)]
        tensors[f"{name}.buckets"] = ("I64", [length, length], grid)
    write_safetensors(OUT, tensors, meta)
    print(f"wrote {OUT}")


def write_safetensors(path, tensors, meta):
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        dtype, shape, values = tensors[name]
        fmt = "<%d%s" % (len(values), "f" if dtype == "F32" else "q")
        blob = struct.pack(fmt, *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


if __name__ == "__main__":
    main()
