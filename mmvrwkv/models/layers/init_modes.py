"""Shared pieces of the Vision-RWKV mixer initialisation ('fancy', 'local', 'global').

The mixers initialise their own decay, bonus and token-mix parameters in the constructor
(these are not Linear/LayerNorm weights, so a classifier-level ``init_cfg`` such as
``TruncNormal(layer='Linear')`` leaves them alone).
"""
import math
from typing import Dict, Tuple

import torch

#: Valid values of ``init_mode``.
INIT_MODES = ('fancy', 'local', 'global')


def check_init_mode(init_mode: str) -> str:
    """Return ``init_mode`` if valid, else raise a ValueError listing the valid values."""
    if init_mode not in INIT_MODES:
        raise ValueError(f'init_mode must be one of {INIT_MODES}, got {init_mode!r}')
    return init_mode


def layer_ratios(layer_id: int, depth: int) -> Tuple[float, float]:
    """Depth ratios of the 'fancy' init for layer ``layer_id`` of ``depth`` layers.

    Returns ``(r01, r10)`` with ``r01 = l / (L - 1)`` (0 at the first layer, 1 at the last) and
    ``r10 = 1 - l / L`` (1 at the first layer, 1/L at the last). For ``depth == 1`` the single
    layer is treated as the first one (``r01 = 0``) instead of dividing by zero.
    """
    r01 = layer_id / (depth - 1) if depth > 1 else 0.0
    r10 = 1.0 - layer_id / depth
    return r01, r10


def fancy_decay_and_first(embed_dims: int, layer_id: int, depth: int,
                          dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """'fancy' ``spatial_decay, spatial_first`` ``[C]`` (undivided by T), with h = 0..C-1:
    ``decay[h] = -5 + 8 (h / (C-1))^(0.7 + 1.3 r01)``,
    ``first[h] = ln 0.3 + 0.5 ((h + 1) mod 3 - 1)``."""
    r01, _ = layer_ratios(layer_id, depth)
    h = torch.arange(embed_dims, dtype=dtype)
    decay = -5 + 8 * (h / max(embed_dims - 1, 1)) ** (0.7 + 1.3 * r01)
    first = math.log(0.3) + ((h + 1) % 3 - 1) * 0.5
    return decay, first


def channel_positions(embed_dims: int) -> torch.Tensor:
    """``x[0, 0, i] = i / C`` for ``i = 0 .. C-1`` (shape ``[1, 1, C]``), float32."""
    return (torch.arange(embed_dims, dtype=torch.float32) / embed_dims).view(1, 1, embed_dims)


def fancy_token_mix(embed_dims: int, layer_id: int, depth: int) -> Dict[str, torch.Tensor]:
    """'fancy' interpolation weights ``mu`` of the Vision-RWKV token mix (1 keeps the token
    itself, 0 takes the shifted one), ``[1, 1, C]`` each, with x = i / C:
    ``k: x^r10``, ``v: x^r10 + 0.3 r01``, ``r: x^(r10 / 2)``.

    VRWKV6 uses the same numbers as ``maa = 1 - mu`` (its mix is ``x + (shift(x) - x) * maa``);
    its extra inputs take ``x, w <- k`` and ``g <- r``.
    """
    r01, r10 = layer_ratios(layer_id, depth)
    x = channel_positions(embed_dims)
    return dict(k=x ** r10, v=x ** r10 + 0.3 * r01, r=x ** (0.5 * r10))


def fancy_decay_and_bonus_v6(embed_dims: int, layer_id: int,
                             depth: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """'fancy' VRWKV6 ``time_decay`` and ``time_faaaa`` (flat ``[C]``, float32), n = 0..C-1:
    ``time_decay[n] = -6 + 5 (n / (C-1))^(0.7 + 1.3 r01)`` (a decay logit: the decay per token
    is ``exp(-exp(w))``), ``time_faaaa[n] = r01 (1 - n / (C-1)) + 0.1 ((n + 1) mod 3 - 1)``."""
    r01, _ = layer_ratios(layer_id, depth)
    n = torch.arange(embed_dims, dtype=torch.float32)
    ratio = n / max(embed_dims - 1, 1)
    decay = -6 + 5 * ratio ** (0.7 + 1.3 * r01)
    bonus = r01 * (1 - ratio) + 0.1 * ((n + 1) % 3 - 1)
    return decay, bonus
