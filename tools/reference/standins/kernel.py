"""PyTorch stand-ins for the three TileLang kernels that DeepSeek's official V3.2 inference
code imports as `from kernel import act_quant, fp8_gemm, fp8_index`.

They follow the kernels' arithmetic step for step, so that the official model.py runs on
any PyTorch device (CPU included) with the same FP8 numerics:

* act_quant: per row and 1x128 block, amax = max(|x|) floored at 1e-4. With a scale format
  (the checkpoints' "ue8m0") the scale is 2^ceil(log2(amax * (1/448 as f32))), the ceiling
  read off the float32 bits (exponent, plus one if any mantissa bit is set); without one it
  is amax * (1/448). y = clamp(x / s, -448, 448) cast to e4m3 (round to nearest even).
* fp8_gemm: C = A_q B_q^T where each 128-wide K block is multiplied in float32 and added as
  partial * (sa * sb) into a float32 accumulator, K blocks in order; C is returned in the
  default dtype (bf16 under the official code).
* fp8_index: score[b, m, n] = k_s[b, n] * sum_h relu(q8[b, m, h] . k8[b, n]) * q_s[b, m, h]
  in float32.
"""

import torch

FP8_MAX = 448.0
BLOCK = 128
# the kernel's constant 1/448, held as float32
_FP8_MAX_INV_F32 = torch.tensor(1.0 / FP8_MAX, dtype=torch.float32)


def _pow2_ceil_scale(amax):
    """2^ceil(log2(amax * 1/448)) computed on the float32 bit pattern, as fast_round_scale does."""
    t = amax * _FP8_MAX_INV_F32.to(amax.device)  # float32 multiply, round to nearest
    bits = t.view(torch.int32)
    exp = (bits >> 23) & 0xFF
    man = bits & ((1 << 23) - 1)
    e = exp - 127 + (man != 0).to(torch.int32)
    return ((e + 127) << 23).to(torch.int32).view(torch.float32)


def act_quant(x, block_size=128, scale_fmt=None):
    assert x.is_contiguous(), "Input tensor must be contiguous"
    assert x.size(-1) % block_size == 0, f"last dim {x.size(-1)} is not a multiple of {block_size}"
    n = x.size(-1)
    xb = x.view(-1, n // block_size, block_size).float()
    amax = xb.abs().amax(dim=-1).clamp_min(1e-4)  # float32 compare with the constant 1e-4
    if scale_fmt is not None:
        s = _pow2_ceil_scale(amax)
    else:
        s = amax * _FP8_MAX_INV_F32.to(amax.device)
    y = (xb / s.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return y.view(x.shape), s.view(*x.shape[:-1], n // block_size)


def fp8_gemm(a, a_s, b, b_s):
    assert a.is_contiguous() and b.is_contiguous(), "Input tensors must be contiguous"
    assert a_s.is_contiguous() and b_s.is_contiguous(), "Scaling factor tensors must be contiguous"
    k = a.size(-1)
    m = a.numel() // k
    n = b.size(0)
    kb = (k + BLOCK - 1) // BLOCK
    af = a.view(m, k).float()
    bf = b.float()
    sa = a_s.view(m, -1).float()
    # weight scale of output row r is b_s[r // 128]
    sb = b_s.float().repeat_interleave(BLOCK, dim=0)[:n]
    acc = torch.zeros(m, n, dtype=torch.float32, device=a.device)
    for i in range(kb):
        lo, hi = i * BLOCK, min(k, (i + 1) * BLOCK)
        partial = af[:, lo:hi] @ bf[:, lo:hi].T
        acc += partial * (sa[:, i : i + 1] * sb[:, i].unsqueeze(0))
    return acc.to(torch.get_default_dtype()).view(*a.shape[:-1], n)


def fp8_index(q, q_s, k, k_s):
    b, m, h, d = q.shape
    n = k.size(1)
    qf = q.float()
    kf = k.float()
    logits = torch.einsum("bmhd,bnd->bmnh", qf, kf)
    weighted = logits.clamp_min(0) * q_s.reshape(b, m, 1, h).float()
    return weighted.sum(dim=-1) * k_s.reshape(b, 1, n).float()
