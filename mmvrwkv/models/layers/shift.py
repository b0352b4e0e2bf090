"""Token-shift functions used before the RWKV mixers.

A shift function takes tokens ``x`` of shape ``[B, T, C]`` (raster order over a patch grid of
``patch_resolution = (H, W)``, ``T = H * W``) and returns a tensor of the same shape in which
(some) channels of every token are taken from a neighbouring token, with zeros where the
neighbour lies outside the grid. The mixers then interpolate between ``x`` and the shifted
tensor with learned per-channel weights. Functions are looked up by name in
:data:`SHIFT_FUNCS` (never with ``eval``), see :func:`get_shift_fn`.

Signature of every entry: ``fn(x, shift_pixel, channel_gamma, patch_resolution) -> Tensor``.

:class:`TokenShift` is the front both mixers share: it owns the shift function, its arguments
and the mix coefficients, and returns the mixed inputs.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

ShiftFn = Callable[[torch.Tensor, int, float, Optional[Sequence[int]]], torch.Tensor]


def q_shift(x: torch.Tensor, shift_pixel: int = 1, channel_gamma: float = 0.25,
            patch_resolution: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Quad-directional shift (Q-Shift) of Vision-RWKV.

    With ``q = int(C * channel_gamma)`` and ``s = shift_pixel``, every token takes

    * channels ``[0, q)`` from the token ``s`` columns to its left,
    * channels ``[q, 2q)`` from the token ``s`` columns to its right,
    * channels ``[2q, 3q)`` from the token ``s`` rows above,
    * channels ``[3q, 4q)`` from the token ``s`` rows below,

    with zeros where that token is outside the grid; channels ``[4q, C)`` are copied unchanged.
    It gives each token a local 2-D receptive field for O(T*C) work.

    Args:
        x: tokens ``[B, T, C]`` in raster (row-major) order.
        shift_pixel: shift distance in patches (``>= 0``; 0 returns ``x``).
        channel_gamma: fraction of the channels per direction (``<= 1/4``).
        patch_resolution: ``(H, W)`` of the patch grid, ``H * W == T``.
    """
    B, T, C = x.shape
    if patch_resolution is None:
        raise ValueError('q_shift needs patch_resolution=(H, W)')
    H, W = int(patch_resolution[0]), int(patch_resolution[1])
    if H * W != T:
        raise ValueError(f'q_shift: patch_resolution {tuple(patch_resolution)} does not match '
                         f'the token count T={T}')
    s = int(shift_pixel)
    if s == 0:
        return x
    q = int(C * channel_gamma)
    g = x.reshape(B, H, W, C)
    out = torch.zeros_like(g)
    # Clamp the copied extents so that shifts larger than the grid give zeros (a negative
    # slice end would wrap around in Python).
    sw, sh = min(s, W), min(s, H)
    out[:, :, sw:, 0:q] = g[:, :, :W - sw, 0:q]                   # from the left
    out[:, :, :W - sw, q:2 * q] = g[:, :, sw:, q:2 * q]           # from the right
    out[:, sh:, :, 2 * q:3 * q] = g[:, :H - sh, :, 2 * q:3 * q]   # from above
    out[:, :H - sh, :, 3 * q:4 * q] = g[:, sh:, :, 3 * q:4 * q]   # from below
    out[..., 4 * q:] = g[..., 4 * q:]
    return out.view(B, T, C)


def token_shift(x: torch.Tensor, shift_pixel: int = 1, channel_gamma: float = 0.25,
                patch_resolution: Optional[Sequence[int]] = None) -> torch.Tensor:
    """1-D RWKV token shift: every token takes all channels of the token ``shift_pixel``
    positions earlier in raster order (zeros for the first ``shift_pixel`` tokens).

    ``channel_gamma`` and ``patch_resolution`` are accepted for a uniform signature and unused.
    """
    B, T, C = x.shape
    s = min(int(shift_pixel), T)
    if s == 0:
        return x
    return torch.cat([x.new_zeros(B, s, C), x[:, :T - s]], dim=1)


def no_shift(x: torch.Tensor, shift_pixel: int = 1, channel_gamma: float = 0.25,
             patch_resolution: Optional[Sequence[int]] = None) -> torch.Tensor:
    """No token shift (identity); the mixers then skip the interpolation entirely."""
    return x


#: Shift functions by ``shift_mode`` name.
SHIFT_FUNCS: Dict[str, ShiftFn] = {
    'q_shift': q_shift,
    'token_shift': token_shift,
    'none': no_shift,
}


def get_shift_fn(shift_mode: str) -> ShiftFn:
    """Return the shift function called ``shift_mode`` (a key of :data:`SHIFT_FUNCS`).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    try:
        return SHIFT_FUNCS[shift_mode]
    except (KeyError, TypeError):
        raise ValueError(f'shift_mode must be one of {sorted(SHIFT_FUNCS)}, '
                         f'got {shift_mode!r}') from None


def check_shift_args(shift_pixel: int, channel_gamma: float) -> None:
    """Validate the token-shift arguments (ValueError naming the argument)."""
    if isinstance(shift_pixel, bool) or not isinstance(shift_pixel, int) or shift_pixel < 0:
        raise ValueError(f'shift_pixel must be an int >= 0, got {shift_pixel!r}')
    if not isinstance(channel_gamma, (int, float)) or not 0 < channel_gamma <= 0.25:
        raise ValueError(f'channel_gamma must be in (0, 1/4] (one share per shift direction), '
                         f'got {channel_gamma!r}')


class TokenShift(nn.Module):
    """Token shift, then one learned interpolation per mixer input.

    For every name n of ``mix_names`` the module has a parameter ``spatial_mix_<n>``
    ``[1, 1, C]`` (the names of the official checkpoints) and :meth:`mix` returns
    ``lerp(shift(x), x, spatial_mix_<n>)`` (1 keeps the token itself), in ``mix_names`` order.
    Without a shift (``shift_pixel == 0`` or ``shift_mode == 'none'``) it returns ``x`` for
    every input. The mixers derive from it; each initialises the coefficients its own way.

    Args:
        embed_dims: channels C.
        mix_names: the mixer's inputs, e.g. ``('k', 'v', 'r')``.
        shift_mode: key of :data:`SHIFT_FUNCS`.
        shift_pixel: shift distance; 0 disables the shift.
        channel_gamma: fraction of the channels per Q-Shift direction (<= 1/4).
    """

    def __init__(self, embed_dims: int, mix_names: Sequence[str], shift_mode: str = 'q_shift',
                 shift_pixel: int = 1, channel_gamma: float = 0.25) -> None:
        super().__init__()
        check_shift_args(shift_pixel, channel_gamma)
        self.shift_fn = get_shift_fn(shift_mode)
        self.shift_mode = shift_mode
        self.shift_pixel = shift_pixel
        self.channel_gamma = channel_gamma
        self.mix_names = tuple(mix_names)
        for name in self.mix_names:
            self.register_parameter(f'spatial_mix_{name}',
                                    nn.Parameter(torch.empty(1, 1, embed_dims)))

    @property
    def with_shift(self) -> bool:
        """Whether the token shift (and the mix interpolation) is active."""
        return self.shift_pixel > 0 and self.shift_mode != 'none'

    def mix(self, x: torch.Tensor, patch_resolution: Sequence[int]) -> Tuple[torch.Tensor, ...]:
        """Mixed inputs for tokens ``x [B, T, C]`` on the grid ``(H, W)``, one per mix name."""
        if not self.with_shift:
            return (x,) * len(self.mix_names)
        xx = self.shift_fn(x, self.shift_pixel, self.channel_gamma, patch_resolution)
        return tuple(torch.lerp(xx, x, getattr(self, f'spatial_mix_{name}').to(x.dtype))
                     for name in self.mix_names)
