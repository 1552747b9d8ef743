#!/usr/bin/env python3
"""Writes tests/data/quant/vectors.txt: PyTorch's own f32 -> float8_e4m3fn / float8_e5m2 / bfloat16 /
float16 conversions of a few thousand interesting f32 values, and the official activation quantization
rule (DeepSeek-V3.2 inference/kernel.py act_quant, scale_fmt ue8m0 and none) evaluated with torch ops.
tests/unit/test_quant.c reads the file and compares dsrt's codecs bit for bit.

Run once on any machine with torch (not part of CI):
    python tools/reference/make_quant_vectors.py [--out tests/data/quant/vectors.txt]

Where torch and dsrt differ the file keeps torch's answer and the C test checks dsrt's documented rule:
  * e4m3 overflow: dsrt saturates to +-448 (the official quantizer clamps to +-448 before its cast).
    torch 2.15 on CPU saturates too (inf included); some torch versions' casts give NaN (0x7F/0xFF) for
    |x| > 464, which the test accepts as the known difference.
  * NaN inputs: torch's NaN codes differ from dsrt's (e5m2 0x7F vs 0x7E, bf16 0x7FC0 without sign,
    f16 canonical); the test only checks that both are NaN.
"""
import argparse
import os

import numpy as np
import torch

F32 = np.float32


def f32(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def grid_values(ebits, mbits, bias, fn):
    """Positive finite values of a minifloat format, from its definition."""
    vals = []
    for e in range(1 << ebits):
        for m in range(1 << mbits):
            if e == (1 << ebits) - 1 and (not fn or m == (1 << mbits) - 1):
                continue
            v = m * 2.0 ** (1 - bias - mbits) if e == 0 else ((1 << mbits) + m) * 2.0 ** (e - bias - mbits)
            vals.append(v)
    return np.array(sorted(vals), dtype=np.float64)


def around(x):
    """x and its f32 neighbours."""
    x = np.asarray(x, dtype=F32)
    return np.concatenate([x, np.nextafter(x, F32(np.inf)), np.nextafter(x, F32(0))])


def conversion_inputs(rng):
    parts = []
    for ebits, mbits, bias, fn in ((4, 3, 7, True), (5, 2, 15, False)):
        v = grid_values(ebits, mbits, bias, fn)
        mid = (v[:-1] + v[1:]) / 2  # ties: exact in f32
        parts += [v.astype(F32), around(mid.astype(F32))]
    # bf16 and f16 ties at random codes over every binade (normal and subnormal)
    bf = rng.integers(0, 0x7F7F, 300, dtype=np.uint32)
    parts.append(around(f32((bf << 16) | 0x8000)))
    hv = grid_values(5, 10, 15, False)
    idx = rng.integers(0, len(hv) - 1, 300)
    parts.append(around(((hv[idx] + hv[idx + 1]) / 2).astype(F32)))
    parts.append(around(F32([448, 464, 480, 57344, 61440, 65504, 65520, 2.0**-9, 2.0**-10, 2.0**-16,
                             2.0**-17, 2.0**-24, 2.0**-25, 2.0**-133, 2.0**-134, 1e-4, 3.0e38])))
    parts.append(F32([0.0, -0.0, np.inf, -np.inf, 1e30, np.finfo(F32).max, np.finfo(F32).tiny]))
    parts.append(f32([0x00000001, 0x00008000, 0x00018000, 0x7F7F7FFF, 0x7F7F8000, 0x7FC00000, 0xFFC00000,
                      0x7F800001, 0x7FA00000]))
    parts.append((rng.standard_normal(300) * 10.0 ** rng.uniform(-6, 6, 300)).astype(F32))
    parts.append(f32(rng.integers(0, 2**32, 200, dtype=np.uint64).astype(np.uint32)))
    x = np.concatenate(parts).astype(F32)
    # a random sign per value keeps both signs covered at half the size
    sign = rng.integers(0, 2, len(x), dtype=np.uint32) << 31
    return (x.view(np.uint32) ^ sign).view(F32)


def codes(x, dtype, width):
    t = torch.from_numpy(x).to(dtype)
    return t.view(torch.uint8 if width == 8 else torch.int16).numpy().astype(np.uint32) & ((1 << width) - 1)


def official_act_quant(x, pow2, block=128):
    """inference/kernel.py act_quant written with torch ops: fp32 throughout, s = amax * fl(1/448)."""
    x = torch.from_numpy(x).view(-1, block)
    amax = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-4)
    r = amax * torch.tensor(1.0 / 448.0, dtype=torch.float32)
    if pow2:
        bits = r.view(torch.int32)
        e = ((bits >> 23) & 0xFF) - 127 + ((bits & 0x7FFFFF) != 0).to(torch.int32)
        s = ((e + 127) << 23).view(torch.float32)
    else:
        s = r
    q = (x / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return s.flatten().numpy(), q.view(torch.uint8).flatten().numpy()


def act_rows(rng):
    """Rows of 128 bf16-valued activations (as the official code sees them) with amax on or near the
    scale boundaries 448 * 2^k, tiny rows below the 1e-4 floor, and ordinary random rows."""
    rows = []
    for kind in range(8):
        x = rng.standard_normal(128).astype(F32)
        x = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
        if kind < 3:  # amax 448 * 2^k (k = -3, 0, 5), exactly or one bf16 ulp (2^(k+1)) above or below
            k = (-3, 0, 5)[kind]
            x = x / np.abs(x).max() * F32(400.0 * 2.0**k)
            x[int(rng.integers(0, 128))] = F32((448.0, 450.0, 446.0)[kind] * 2.0**k)
        elif kind == 3:
            x = x * F32(1e-6)  # below the floor
        else:
            x = x * F32(10.0 ** rng.uniform(-3, 4))
        rows.append(torch.from_numpy(x.astype(F32)).to(torch.bfloat16).float().numpy())
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "quant", "vectors.txt"))
    args = ap.parse_args()
    rng = np.random.default_rng(20251117)

    x = conversion_inputs(rng)
    e4 = codes(x, torch.float8_e4m3fn, 8)
    e5 = codes(x, torch.float8_e5m2, 8)
    bf = codes(x, torch.bfloat16, 16)
    hf = codes(x, torch.float16, 16)
    lines = [
        "# dsrt quant reference vectors, written by tools/reference/make_quant_vectors.py with torch %s"
        % torch.__version__,
        "# C <f32 bits> <torch e4m3fn> <torch e5m2> <torch bf16> <torch f16>   (hex)",
        "# S <row> <pow2 0|1> <f32 bits of the row's scale>, then 128 lines A <row> <f32 bits of x> <e4m3 code>",
    ]
    for xi, a, b, c, d in zip(x.view(np.uint32), e4, e5, bf, hf):
        lines.append("C %08x %02x %02x %04x %04x" % (xi, a, b, c, d))
    for r, row in enumerate(act_rows(rng)):
        pow2 = r < 3 or r % 2 == 0  # rows 3, 5, 7 use plain f32 scales (scale_fmt none)
        s, q = official_act_quant(row, pow2)
        lines.append("S %d %d %08x" % (r, int(pow2), s.view(np.uint32)[0]))
        for xi, qi in zip(row.view(np.uint32), q):
            lines.append("A %d %08x %02x" % (r, xi, qi))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d conversions, %d bytes" % (args.out, len(x), os.path.getsize(args.out)))


if __name__ == "__main__":
    main()
