"""Spatial mixer of VRWKV6 (RWKV-6 "Finch" style: data-dependent token mix and decay)."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmvrwkv.ops import BACKENDS, bi_wkv6
from .init_modes import fancy_decay_and_bonus_v6, fancy_token_mix
from .mixer import Mixer
from .recompute import module_parameters

#: Names of the five data-dependent token mixes, in the order of ``time_maa_w2``.
MIX_BRANCHES = ('w', 'k', 'v', 'r', 'g')
#: LoRA rank of each token-mix branch (``time_maa_w1 [C, 5 * 32]``, ``time_maa_w2 [5, 32, C]``).
TOKEN_MIX_RANK = 32
#: LoRA rank of the data-dependent decay (``time_decay_w1 [C, 64]``, ``time_decay_w2 [64, C]``).
DECAY_RANK = 64
#: ``init_mode`` values VRWKV6 implements (the original has only 'fancy').
V6_INIT_MODES = ('fancy',)


def check_v6_init_mode(init_mode: str) -> str:
    """Return ``init_mode`` if VRWKV6 implements it, else raise a ValueError."""
    if init_mode not in V6_INIT_MODES:
        raise ValueError(f'init_mode must be one of {V6_INIT_MODES} for VRWKV6, '
                         f'got {init_mode!r}')
    return init_mode


def split_cls_token(x: torch.Tensor, patch_resolution: Sequence[int]
                    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(patch tokens, class token or None)`` of ``x [B, T, C]``: a sequence of
    ``H * W + 1`` tokens carries a class token at its end (VRWKV6 ``with_cls_token``), which
    the token shift leaves alone (as in the original); any other T goes to the shift whole
    (which checks it against the grid)."""
    if x.shape[1] == int(patch_resolution[0]) * int(patch_resolution[1]) + 1:
        return x[:, :-1], x[:, -1:]
    return x, None


class SpatialMix6(Mixer):
    """Token mixer of VRWKV6: multi-head Q-Shift, LoRA token mixing, data-dependent decay,
    bidirectional WKV6, per-head GroupNorm and a SiLU gate.

    With ``xx = shift(x) - x`` (zero for a disabled shift)::

        x_b   = x + xx * (time_maa_b + m_b),  b in (w, k, v, r, g)
        m     = tanh((x + xx * time_maa_x) @ time_maa_w1) split in 5, each @ time_maa_w2[b]
        w     = time_decay + tanh(x_w @ time_decay_w1) @ time_decay_w2      (decay logits)
        y     = bi_wkv6(receptance(x_r), key(x_k), value(x_v), w, u=time_faaaa)
        out   = output(ln_x([key_norm](y)) * silu(gate(x_g)))

    the decay per token and channel being ``exp(-exp(w))`` (no division by T, unlike v1),
    ``ln_x`` a GroupNorm over the heads. Parameter names are the official ones, so released
    checkpoints load by name. All Linear layers are bias-free.

    Args:
        embed_dims: channels C.
        depth: number of blocks of the backbone (for the 'fancy' init).
        layer_id: index of this block (for the 'fancy' init).
        num_heads: heads H of the WKV6 state (C / H channels each; 64 in the released models).
        shift_mode: key of :data:`~mmvrwkv.models.layers.shift.SHIFT_FUNCS`
            ('q_shift_multihead': Q-Shift quarters inside each head).
        shift_pixel: shift distance; 0 disables the token shift.
        init_mode: 'fancy' (the only init of the original).
        key_norm: LayerNorm on the WKV6 output before ``ln_x``.
        wkv_backend: backend argument of :func:`mmvrwkv.ops.bi_wkv6`.

    Memory: see :class:`~mmvrwkv.models.layers.mixer.Mixer`; :meth:`mix` is the
    data-dependent token mix (in training the backward keeps x, r, k, v, the gate and LoRA
    projections and the WKV6 output; the norm, the token mix, ``ln_x`` and the gate are
    recomputed).
    """

    def __init__(self, embed_dims: int, depth: int, layer_id: int, num_heads: int,
                 shift_mode: str = 'q_shift_multihead', shift_pixel: int = 1,
                 init_mode: str = 'fancy', key_norm: bool = False,
                 wkv_backend: str = 'auto') -> None:
        # (TokenShift checks num_heads against embed_dims)
        super().__init__(embed_dims, (), shift_mode, shift_pixel, num_heads=num_heads)
        if wkv_backend not in BACKENDS:
            raise ValueError(f'wkv_backend must be one of {BACKENDS}, got {wkv_backend!r}')
        self.embed_dims = C = embed_dims
        self.depth = depth
        self.layer_id = layer_id
        self.num_heads = num_heads
        self.head_size = C // num_heads
        self.init_mode = check_v6_init_mode(init_mode)
        self.wkv_backend = wkv_backend

        for name in ('x', ) + MIX_BRANCHES:
            self.register_parameter(f'time_maa_{name}', nn.Parameter(torch.empty(1, 1, C)))
        n_mix = len(MIX_BRANCHES)
        self.time_maa_w1 = nn.Parameter(torch.empty(C, n_mix * TOKEN_MIX_RANK))
        self.time_maa_w2 = nn.Parameter(torch.empty(n_mix, TOKEN_MIX_RANK, C))
        self.time_decay = nn.Parameter(torch.empty(1, 1, C))
        self.time_decay_w1 = nn.Parameter(torch.empty(C, DECAY_RANK))
        self.time_decay_w2 = nn.Parameter(torch.empty(DECAY_RANK, C))
        self.time_faaaa = nn.Parameter(torch.empty(num_heads, self.head_size))

        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.gate = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.key_norm = nn.LayerNorm(C) if key_norm else None
        self.ln_x = nn.GroupNorm(num_heads, C, eps=1e-5)
        self.reset_mix_parameters()

    @torch.no_grad()
    def reset_mix_parameters(self) -> None:
        """'fancy' init of the original, with x = i / C and the depth ratios r01, r10:
        ``time_maa_{x,w,k} = 1 - x^r10``, ``time_maa_v = 1 - (x^r10 + 0.3 r01)``,
        ``time_maa_{r,g} = 1 - x^(r10 / 2)``; the four LoRA matrices U(-1e-4, 1e-4);
        ``time_decay`` and ``time_faaaa`` from
        :func:`~mmvrwkv.models.layers.init_modes.fancy_decay_and_bonus_v6`."""
        mu = fancy_token_mix(self.embed_dims, self.layer_id, self.depth)
        source = dict(x='k', w='k', k='k', v='v', r='r', g='r')
        for name, key in source.items():
            getattr(self, f'time_maa_{name}').copy_(1 - mu[key])
        for p in (self.time_maa_w1, self.time_maa_w2, self.time_decay_w1, self.time_decay_w2):
            nn.init.uniform_(p, -1e-4, 1e-4)
        decay, bonus = fancy_decay_and_bonus_v6(self.embed_dims, self.layer_id, self.depth)
        self.time_decay.copy_(decay.view_as(self.time_decay))
        self.time_faaaa.copy_(bonus.view_as(self.time_faaaa))

    def token_mix(self, x: torch.Tensor,
                  patch_resolution: Sequence[int]) -> Tuple[torch.Tensor, ...]:
        """The five data-dependent mixes ``(x_w, x_k, x_v, x_r, x_g)`` of ``x [B, T, C]``."""
        if not self.with_shift:
            return (x, ) * len(MIX_BRANCHES)
        B, T, C = x.shape
        patches, cls_token = split_cls_token(x, patch_resolution)
        xx = self.shift(patches, patch_resolution)
        if cls_token is not None:
            xx = torch.cat([xx, cls_token], dim=1)
        xx = xx - x
        lora = torch.tanh((x + xx * self.time_maa_x) @ self.time_maa_w1)
        lora = lora.view(B * T, len(MIX_BRANCHES), TOKEN_MIX_RANK).transpose(0, 1)
        lora = torch.bmm(lora, self.time_maa_w2).view(len(MIX_BRANCHES), B, T, C)
        return tuple(x + xx * (getattr(self, f'time_maa_{name}') + m)
                     for name, m in zip(MIX_BRANCHES, lora.unbind(0)))

    def mix(self, x: torch.Tensor, patch_resolution: Sequence[int]) -> Tuple[torch.Tensor, ...]:
        """The mixer's inputs from the tokens, :meth:`token_mix` in the order of the forward's
        projections: ``(x_w, x_g, x_v, x_k, x_r)``."""
        xw, xk, xv, xr, xg = self.token_mix(x, patch_resolution)
        return xw, xg, xv, xk, xr

    def mix_parameters(self) -> Tuple[nn.Parameter, ...]:
        """The parameters :meth:`token_mix` reads."""
        return tuple(getattr(self, f'time_maa_{name}') for name in ('x', ) + MIX_BRANCHES) \
            + (self.time_maa_w1, self.time_maa_w2)

    def forward(self, x: torch.Tensor, patch_resolution: Sequence[int],
                norm: Optional[nn.Module] = None) -> torch.Tensor:
        """Mix tokens ``x [B, T, C]`` on the grid ``patch_resolution = (H, W)`` (T = H * W,
        or H * W + 1 with a class token at the end); ``norm`` (a pre-norm block's LayerNorm)
        is applied to ``x`` first."""
        stages = self.stages(x)
        # (without a shift the five inputs are one tensor: in this order the training path
        # sums its five gradients as plain autograd did before the recompute path existed)
        w, g, v, k, r = self.project_mixed(
            stages, x, patch_resolution, norm,
            (self.time_decay_w1, self.gate, self.value, self.key, self.receptance))
        w = self.time_decay + torch.tanh(w) @ self.time_decay_w2
        # w (decay logits) and u keep their dtype: the op forms the decays in fp32
        y = bi_wkv6(r, k, v, w, self.time_faaaa, backend=self.wkv_backend)
        return stages(self._gate, (y, g), (self.output, ),
                      params=module_parameters(self.key_norm) + module_parameters(self.ln_x))[0]

    def _gate(self, y: torch.Tensor, g: torch.Tensor) -> Tuple[torch.Tensor]:
        """``(ln_x([key_norm](y)) * silu(g), )``, the input of the output projection. (No
        in-place variant: without autograd the peak is the token mix, not this stage.)"""
        B, T, C = y.shape
        if self.key_norm is not None:
            y = self.key_norm(y)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        return (y * F.silu(g), )

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'layer_id={self.layer_id}, shift_mode={self.shift_mode!r}, '
                f'shift_pixel={self.shift_pixel}')
