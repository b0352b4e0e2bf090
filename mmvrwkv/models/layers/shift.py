"""Token shift before the RWKV mixers, and :class:`TokenShift`, the front both mixers share.

The shift functions live with the op, :mod:`mmvrwkv.ops.token_shift` (plain PyTorch path and
fused kernels side by side); they are looked up here by ``shift_mode`` name in
:data:`SHIFT_FUNCS` (never with ``eval``), see :func:`get_shift_fn`.

Signature of every entry:
``fn(x, shift_pixel, channel_gamma, patch_resolution, *, num_heads=1) -> Tensor``.

:class:`TokenShift` owns the shift function, its arguments and the mix coefficients, and
returns the shifted tokens (:meth:`TokenShift.shift`) or the mixed inputs
(:meth:`TokenShift.mix`).
"""
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmvrwkv.ops.token_shift import (SHIFT_FUNCS, check_shift_config, head_size_of, no_shift,
                                     q_shift, q_shift_multihead, resolve_backend,
                                     shift_function, token_shift, token_shift_mix)

ShiftFn = Callable[..., torch.Tensor]

__all__ = ['SHIFT_FUNCS', 'ShiftFn', 'TokenShift', 'get_shift_fn',
           'q_shift', 'q_shift_multihead', 'token_shift', 'no_shift']


def get_shift_fn(shift_mode: str) -> ShiftFn:
    """The shift function called ``shift_mode`` (a key of :data:`SHIFT_FUNCS`); the op's
    ValueError listing the valid names otherwise."""
    return shift_function(shift_mode, 'TokenShift')


class TokenShift(nn.Module):
    """Token shift, then one learned interpolation per mixer input.

    For every name n of ``mix_names`` the module has a parameter ``spatial_mix_<n>``
    ``[1, 1, C]`` (the names of the official checkpoints) and :meth:`mix` returns
    ``lerp(shift(x), x, spatial_mix_<n>)`` (1 keeps the token itself), in ``mix_names`` order.
    Without a shift (``shift_pixel == 0`` or ``shift_mode == 'none'``) it returns ``x`` for
    every input. The mixers derive from it; each initialises the coefficients its own way.
    ``mix_names`` may be empty when the owner only uses :meth:`shift` (VRWKV6's data-dependent
    mixing).

    :meth:`mix` runs the fused op :func:`mmvrwkv.ops.token_shift_mix` (one pass over x, the
    backward keeps only x) or the shift function and one ``torch.lerp`` per input; the two
    compute the same function up to float rounding.

    Args:
        embed_dims: channels C.
        mix_names: the mixer's inputs, e.g. ``('k', 'v', 'r')``.
        shift_mode: key of :data:`SHIFT_FUNCS`.
        shift_pixel: shift distance; 0 disables the shift.
        channel_gamma: fraction of the channels per Q-Shift direction (<= 1/4).
        num_heads: heads of ``'q_shift_multihead'``; must divide ``embed_dims``.
        fused: ``None`` runs the fused op where its compiled kernel serves x's device and
            nothing is tracing or exporting (the op's ``'auto'`` rule), the PyTorch path
            elsewhere; ``True`` always the compiled kernel (error where there is none);
            ``False`` always the PyTorch path.
    """

    def __init__(self, embed_dims: int, mix_names: Sequence[str], shift_mode: str = 'q_shift',
                 shift_pixel: int = 1, channel_gamma: float = 0.25, num_heads: int = 1,
                 fused: Optional[bool] = None) -> None:
        super().__init__()
        check_shift_config(shift_mode, shift_pixel, channel_gamma, fn='TokenShift')
        head_size_of(embed_dims, num_heads, 'TokenShift (embed_dims)')
        if fused not in (None, True, False):
            raise ValueError(f'fused must be None, True or False, got {fused!r}')
        self.shift_fn = get_shift_fn(shift_mode)
        self.shift_mode = shift_mode
        self.shift_pixel = shift_pixel
        self.channel_gamma = channel_gamma
        self.num_heads = num_heads
        self.fused = fused
        self.mix_names = tuple(mix_names)
        for name in self.mix_names:
            self.register_parameter(f'spatial_mix_{name}',
                                    nn.Parameter(torch.empty(1, 1, embed_dims)))

    def mix_parameters(self) -> Tuple[nn.Parameter, ...]:
        """The mix coefficients ``spatial_mix_<n>``, in ``mix_names`` order."""
        return tuple(getattr(self, f'spatial_mix_{name}') for name in self.mix_names)

    @property
    def with_shift(self) -> bool:
        """Whether the token shift (and the mix interpolation) is active."""
        return self.shift_pixel > 0 and self.shift_mode != 'none'

    def shift(self, x: torch.Tensor, patch_resolution: Sequence[int]) -> torch.Tensor:
        """The shifted tokens ``[B, T, C]`` of ``x`` on the grid ``(H, W)`` (no mixing)."""
        return self.shift_fn(x, self.shift_pixel, self.channel_gamma, patch_resolution,
                             num_heads=self.num_heads)

    def fused_backend(self, x: torch.Tensor) -> Optional[str]:
        """The compiled backend :meth:`mix` runs for ``x``, or None for the PyTorch path."""
        if self.fused is False:
            return None
        if self.fused:
            if x.device.type not in ('cpu', 'cuda'):
                raise ValueError(f'TokenShift(fused=True): the compiled kernels serve cpu and '
                                 f'cuda tensors, got x on {x.device}')
            return resolve_backend(x.device.type, x.device)
        name = resolve_backend('auto', x.device)
        return name if name in ('cpu', 'cuda') else None

    def mix(self, x: torch.Tensor, patch_resolution: Sequence[int]) -> Tuple[torch.Tensor, ...]:
        """Mixed inputs for tokens ``x [B, T, C]`` on the grid ``(H, W)``, one per mix name."""
        if not self.with_shift or not self.mix_names:
            return (x,) * len(self.mix_names)
        coeffs = [p.to(x.dtype) for p in self.mix_parameters()]
        backend = self.fused_backend(x)
        if backend is not None:
            mix = torch.cat([c.reshape(1, -1) for c in coeffs])
            return token_shift_mix(x, mix, patch_resolution=patch_resolution,
                                   shift_mode=self.shift_mode, shift_pixel=self.shift_pixel,
                                   channel_gamma=self.channel_gamma, num_heads=self.num_heads,
                                   backend=backend).unbind(0)
        xx = self.shift(x, patch_resolution)
        return tuple(torch.lerp(xx, x, c) for c in coeffs)
