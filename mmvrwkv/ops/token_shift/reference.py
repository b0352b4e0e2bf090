"""The shift-and-mix written as an explicit gather in float64, for tests only.

Every output element reads one source element: ``src[t, c]`` is the token channel c of token
t is taken from (or an appended zero token where that lies outside the grid), built from the
grid coordinates rather than by moving slices as the other paths do. Then
``out[m] = xs + mix[m] * (x - xs)`` (``torch.lerp(xs, x, mix[m])``).
"""
from typing import Sequence

import torch

from .portable import quarter_split

#: Source offsets (rows, columns) of the four Q-Shift channel groups, then "unchanged".
QUAD_OFFSETS = ((0, -1), (0, 1), (-1, 0), (1, 0), (0, 0))


def source_tokens(T: int, C: int, grid: Sequence[int], shift_mode: str, shift_pixel: int,
                  channel_gamma: float, num_heads: int) -> torch.Tensor:
    """``[T, C]`` index of the source token of every element; ``T`` stands for zero."""
    s = int(shift_pixel)
    t = torch.arange(T)[:, None].expand(T, C)
    if shift_mode == 'none' or s == 0:
        return t.clone()
    if shift_mode == 'token_shift':
        return torch.where(t >= s, t - s, torch.full_like(t, T))
    H, W = int(grid[0]), int(grid[1])
    heads = num_heads if shift_mode == 'q_shift_multihead' else 1
    N, q = quarter_split(C, channel_gamma, heads)
    within = torch.arange(C) % N
    group = torch.where(within < 4 * q, within // max(q, 1), torch.full_like(within, 4))
    offsets = torch.tensor(QUAD_OFFSETS)[group] * s  # [C, 2]
    h = t // W + offsets[None, :, 0]
    w = t % W + offsets[None, :, 1]
    inside = (h >= 0) & (h < H) & (w >= 0) & (w < W)
    return torch.where(inside, h * W + w, torch.full_like(t, T))


def token_shift_mix_reference(x: torch.Tensor, mix: torch.Tensor, *, patch_resolution=None,
                              shift_mode: str = 'q_shift', shift_pixel: int = 1,
                              channel_gamma: float = 0.25, num_heads: int = 1) -> torch.Tensor:
    """``[M, B, T, C]`` float64 mixed inputs for ``x [B, T, C]`` and ``mix [M, C]``
    (arguments as :func:`mmvrwkv.ops.token_shift_mix`, unchecked)."""
    x, mix = x.double(), mix.double()
    B, T, C = x.shape
    src = source_tokens(T, C, patch_resolution, shift_mode, shift_pixel, channel_gamma,
                        num_heads).to(x.device)
    padded = torch.cat([x, x.new_zeros(B, 1, C)], dim=1)
    xs = torch.gather(padded, 1, src[None].expand(B, T, C))
    return xs[None] + mix[:, None, None, :] * (x - xs)[None]
