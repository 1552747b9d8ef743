"""PyTorch stand-in for `fast_hadamard_transform.hadamard_transform(x, scale)`.

Computes x @ H^T * scale over the last dimension, H the Sylvester-order Hadamard matrix
(H[i][j] = (-1)^popcount(i & j)), with the butterfly done in float32 on the upcast input,
the scale applied at the end, and the result returned in the input dtype.
"""

import torch


def hadamard_transform(x, scale=1.0):
    shape = x.shape
    d = shape[-1]
    assert d & (d - 1) == 0, "the stand-in handles power-of-two sizes only"
    y = x.float().reshape(-1, d)
    h = 1
    while h < d:
        y = y.view(-1, d // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    y = y.reshape(shape) * scale
    return y.to(x.dtype)
