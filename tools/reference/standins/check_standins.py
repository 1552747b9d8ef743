#!/usr/bin/env python3
"""Self-check of the stand-in kernels against plain float64 formulas (run: python check_standins.py)."""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fast_hadamard_transform as fht  # noqa: E402
import kernel  # noqa: E402


def main():
    g = torch.Generator().manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)

    # act_quant, UE8M0: scale from the float32 product amax * f32(1/448), ceil(log2) off its bits
    x = (torch.randn(64, 256, generator=g, dtype=torch.float32) * torch.logspace(-6, 3, 64).unsqueeze(1)).bfloat16()
    x[0, :128] = 448.0  # amax * f32(1/448) lands right next to 1.0
    x[1, :128] = 0.0  # amax floor 1e-4
    y, s = kernel.act_quant(x.contiguous(), 128, "ue8m0")
    inv = float(torch.tensor(1 / 448.0, dtype=torch.float32))
    for r in range(x.shape[0]):
        for b in range(2):
            amax = max(float(x[r, b * 128 : (b + 1) * 128].float().abs().max()), float(torch.tensor(1e-4)))
            t = float(torch.tensor(amax, dtype=torch.float32) * torch.tensor(inv, dtype=torch.float32))
            m, e = math.frexp(t)  # t = m * 2^e, m in [0.5, 1)
            want = 2.0 ** (e - 1) if m == 0.5 else 2.0 ** e
            assert float(s[r, b]) == want, (r, b, t, float(s[r, b]), want)
    ref = (x.float().view(64, 2, 128) / s.unsqueeze(-1)).clamp(-448, 448).view(64, 256)
    assert torch.equal(y.float(), ref.to(torch.float8_e4m3fn).float())
    err = (y.float().view(64, 2, 128) * s.unsqueeze(-1)).view(64, 256) - x.float()
    assert (err.abs() <= x.float().abs() * 2**-4 + 1e-30 + s.repeat_interleave(128, 1) * 2**-9).all()

    # fp8_gemm: blockwise float32 accumulation vs a float64 product of the dequantized operands
    a = torch.randn(5, 3, 384, generator=g, dtype=torch.float32).bfloat16()
    aq, as_ = kernel.act_quant(a, 128, "ue8m0")
    w = torch.randn(200, 384, generator=g, dtype=torch.float32) / 20
    ws = torch.tensor([[2.0**-9, 2.0**-8, 2.0**-10], [2.0**-7, 2.0**-9, 2.0**-9]])
    wq = (w / ws.repeat_interleave(128, 0)[:200].repeat_interleave(128, 1)).clamp(-448, 448).to(torch.float8_e4m3fn)
    c = kernel.fp8_gemm(aq, as_, wq, ws)
    assert c.dtype == torch.bfloat16 and c.shape == (5, 3, 200)
    ad = (aq.double().view(5, 3, 3, 128) * as_.double().unsqueeze(-1)).view(5, 3, 384)
    wd = wq.double() * ws.double().repeat_interleave(128, 0)[:200].repeat_interleave(128, 1)
    ref = ad @ wd.T
    assert ((c.double() - ref).abs() <= ref.abs() * 2**-8 + 1e-6).all()

    # fp8_index
    q = torch.randn(1, 4, 8, 128, generator=g, dtype=torch.float32).to(torch.float8_e4m3fn)
    k = torch.randn(1, 7, 128, generator=g, dtype=torch.float32).to(torch.float8_e4m3fn)
    qs = torch.rand(1, 4, 8, 1, generator=g, dtype=torch.float32)
    ks = torch.rand(1, 7, 1, generator=g, dtype=torch.float32)
    o = kernel.fp8_index(q, qs, k, ks)
    ref = torch.zeros(1, 4, 7, dtype=torch.float64)
    for m in range(4):
        for n in range(7):
            ref[0, m, n] = ks[0, n, 0].double() * sum(
                max(float(q[0, m, h].double() @ k[0, n].double()), 0.0) * qs[0, m, h, 0].double() for h in range(8))
    assert o.dtype == torch.float32 and torch.allclose(o.double(), ref, rtol=1e-6, atol=1e-6)

    # Hadamard: Sylvester order, scaled, fp32 inside, input dtype out
    d = 128
    H = torch.tensor([[(-1) ** bin(i & j).count("1") for j in range(d)] for i in range(d)], dtype=torch.float64)
    v = torch.randn(3, 5, d, generator=g, dtype=torch.float32).bfloat16()
    out = fht.hadamard_transform(v, scale=d**-0.5)
    ref = (v.double() @ H.T) * d**-0.5
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref.float().bfloat16())
    print("stand-in kernels: all checks passed")


if __name__ == "__main__":
    main()
