"""The Bi-WKV formula summed term by term in float64: O(T^2), for tests only.

    y_t = (sum_{i!=t} e^{-(|t-i|-1) w + k_i} v_i + e^{u + k_t} v_t)
          / (sum_{i!=t} e^{-(|t-i|-1) w + k_i}     + e^{u + k_t})

With ``causal=True`` only i < t enters (the uni-directional RWKV of the paper's ablation).
"""
import torch


def bi_wkv_reference(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     causal: bool = False) -> torch.Tensor:
    """Return y (float64, shape of ``k``) for w, u ``[C]`` and k, v ``[B, T, C]``."""
    w, u, k, v = (x.double() for x in (w, u, k, v))
    T = k.shape[1]
    t = torch.arange(T, device=k.device)
    dist = (t[:, None] - t[None, :]).abs().double()  # [T (t), T (i)]
    expo = -(dist - 1)[None, :, :, None] * w + k[:, None, :, :]  # [B, T, T, C]
    eye = torch.eye(T, dtype=torch.bool, device=k.device)[None, :, :, None]
    expo = torch.where(eye, (u + k)[:, :, None, :], expo)
    if causal:
        future = (t[None, :] > t[:, None])[None, :, :, None]
        expo = expo.masked_fill(future, float('-inf'))
    expo = expo - expo.amax(dim=2, keepdim=True)
    e = expo.exp()
    return (e * v[:, None]).sum(2) / e.sum(2)
