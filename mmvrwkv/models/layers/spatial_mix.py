"""Spatial mixer of Vision-RWKV (the attention replacement)."""
from functools import partial
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmvrwkv.ops import BACKENDS, bi_wkv
from .init_modes import check_init_mode, fancy_decay_and_first, fancy_token_mix
from .mixer import Mixer, receptance_gate
from .recompute import module_parameters

#: Valid values of ``attn_direction``.
ATTN_DIRECTIONS = ('bi', 'uni')


def check_attn_direction(attn_direction: str) -> str:
    """Return ``attn_direction`` if valid, else raise a ValueError listing the valid values."""
    if attn_direction not in ATTN_DIRECTIONS:
        raise ValueError(f'attn_direction must be one of {ATTN_DIRECTIONS}, '
                         f'got {attn_direction!r}')
    return attn_direction


class SpatialMix(Mixer):
    """Token mixer of Vision-RWKV: token shift, then Bi-WKV attention gated by the receptance.

    ``out = output(sigmoid(r) * [key_norm](BiWKV(w, u, k, v)))`` with ``k, v, r`` the key,
    value and receptance projections of the token-shift-mixed input, and
    ``w = spatial_decay / T``, ``u = spatial_first / T`` for the token count T of the current
    input (the paper's scale normalisation: the decay exponent stays bounded at any
    resolution). All Linear layers are bias-free.

    Args:
        embed_dims, shift_mode, channel_gamma, shift_pixel: the token shift, see
            :class:`~mmvrwkv.models.layers.shift.TokenShift`.
        depth, layer_id: blocks of the backbone and index of this one (for the 'fancy' init).
        init_mode: 'fancy' | 'local' | 'global' initialisation of decay/bonus/mix parameters.
        key_norm: LayerNorm on the WKV output before the receptance gate.
        attn_direction: 'bi' (Bi-WKV, all tokens) or 'uni' (causal, tokens before t only;
            an ablation of the paper).
        wkv_backend: backend argument of :func:`mmvrwkv.ops.bi_wkv`.

    Memory: see :class:`~mmvrwkv.models.layers.mixer.Mixer` (in training the backward keeps
    x, k, v, r and the WKV output; the norm, the mixed inputs and the gate are recomputed).
    """

    def __init__(self, embed_dims: int, depth: int, layer_id: int, shift_mode: str = 'q_shift',
                 channel_gamma: float = 0.25, shift_pixel: int = 1, init_mode: str = 'fancy',
                 key_norm: bool = False, attn_direction: str = 'bi',
                 wkv_backend: str = 'auto') -> None:
        super().__init__(embed_dims, ('k', 'v', 'r'), shift_mode, shift_pixel, channel_gamma)
        if wkv_backend not in BACKENDS:
            raise ValueError(f'wkv_backend must be one of {BACKENDS}, got {wkv_backend!r}')
        self.embed_dims = embed_dims
        self.depth = depth
        self.layer_id = layer_id
        self.init_mode = check_init_mode(init_mode)
        self.attn_direction = check_attn_direction(attn_direction)
        self.wkv_backend = wkv_backend

        C = embed_dims
        self.spatial_decay = nn.Parameter(torch.empty(C))
        self.spatial_first = nn.Parameter(torch.empty(C))
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.key_norm = nn.LayerNorm(C) if key_norm else None
        self.reset_mix_parameters()

    @torch.no_grad()
    def reset_mix_parameters(self) -> None:
        """(Re)initialise decay, bonus and mix coefficients according to ``init_mode``.

        'fancy' (Vision-RWKV default), with l = layer_id, L = depth, h = 0..C-1:
        ``spatial_decay[h] = -5 + 8 (h / (C-1))^(0.7 + 1.3 r01)``,
        ``spatial_first[h] = ln 0.3 + 0.5 ((h + 1) mod 3 - 1)``,
        ``mix_k = x^r10``, ``mix_v = x^r10 + 0.3 r01``, ``mix_r = x^(r10 / 2)`` with x = h / C
        (see :func:`~mmvrwkv.models.layers.init_modes.layer_ratios`).
        'local': decay = first = 1, all mix = 1 (no shift at init).
        'global': decay = first = 0, all mix = 0.5.
        """
        C = self.embed_dims
        if self.init_mode == 'fancy':
            decay, first = fancy_decay_and_first(C, self.layer_id, self.depth)
            mu = fancy_token_mix(C, self.layer_id, self.depth)
            self.spatial_decay.copy_(decay)
            self.spatial_first.copy_(first)
            for name in self.mix_names:
                getattr(self, f'spatial_mix_{name}').copy_(mu[name])
        elif self.init_mode == 'local':
            for p in (self.spatial_decay, self.spatial_first, self.spatial_mix_k,
                      self.spatial_mix_v, self.spatial_mix_r):
                p.fill_(1.0)
        else:  # 'global'
            self.spatial_decay.zero_()
            self.spatial_first.zero_()
            for p in (self.spatial_mix_k, self.spatial_mix_v, self.spatial_mix_r):
                p.fill_(0.5)

    def forward(self, x: torch.Tensor, patch_resolution: Sequence[int],
                norm: Optional[nn.Module] = None) -> torch.Tensor:
        """Mix tokens ``x [B, T, C]`` on the grid ``patch_resolution = (H, W)``; ``norm`` (a
        pre-norm block's LayerNorm) is applied to ``x`` first."""
        stages = self.stages(x)
        k, v, r = self.project_mixed(stages, x, patch_resolution, norm,
                                     (self.key, self.value, self.receptance))
        T = k.shape[1]
        wkv = bi_wkv(self.spatial_decay / T, self.spatial_first / T, k, v,
                     backend=self.wkv_backend, causal=self.attn_direction == 'uni')
        return stages(partial(self._gate, inplace=stages.inplace), (r, wkv), (self.output, ),
                      params=module_parameters(self.key_norm))[0]

    def _gate(self, r: torch.Tensor, wkv: torch.Tensor,
              inplace: bool = False) -> Tuple[torch.Tensor]:
        """``(sigmoid(r) * [key_norm](wkv), )``, the input of the output projection."""
        if self.key_norm is not None:
            wkv = self.key_norm(wkv)
        return (receptance_gate(r, wkv, inplace), )

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, layer_id={self.layer_id}, '
                f'shift_mode={self.shift_mode!r}, shift_pixel={self.shift_pixel}, '
                f'channel_gamma={self.channel_gamma}, init_mode={self.init_mode!r}, '
                f'attn_direction={self.attn_direction!r}')
