"""Vision-RWKV block: SpatialMix + ChannelMix with residuals, norms and layer scale."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from .channel_mix import ChannelMix
from .drop_path import DropPath
from .spatial_mix import SpatialMix


class Block(nn.Module):
    """One Vision-RWKV layer.

    Pre-norm (``post_norm=False``)::

        x = x + DropPath(gamma1 * att(ln1(x)))
        x = x + DropPath(gamma2 * ffn(ln2(x)))

    Post-norm (``post_norm=True``, used by the S/B/L models for stability; the mixers see the
    un-normalised residual stream)::

        x = x + DropPath(gamma1 * ln1(att(x)))
        x = x + DropPath(gamma2 * ln2(ffn(x)))

    Layer 0 first normalises its input with an extra ``ln0`` (in both modes). ``gamma1`` and
    ``gamma2`` (layer scale, ``[C]``, initialised to ``init_values``) exist only when
    ``init_values`` is not None; otherwise the factor is 1.

    Args:
        embed_dims: channels C.
        depth: number of blocks of the backbone.
        layer_id: index of this block (0 adds ``ln0``; used by the 'fancy' init).
        shift_mode, channel_gamma, shift_pixel, init_mode, key_norm: see the mixers.
        drop_path: DropPath probability of both residual branches.
        hidden_rate: ChannelMix hidden width factor.
        init_values: layer-scale init, or None for no layer scale.
        post_norm: norm placement (see above).
        with_cp: recompute the whole block in backward (``torch.utils.checkpoint``) when
            training with gradients, trading compute for activation memory.
        attn_direction: 'bi' or 'uni' (SpatialMix).
        wkv_backend: backend argument of :func:`mmvrwkv.ops.bi_wkv`.
        mixers: prebuilt ``(att, ffn)`` mixers (another family, e.g. VRWKV6's), called as
            ``att(x, patch_resolution, norm=None)``; then the mixer arguments above are unused.
            Default: :class:`SpatialMix` and :class:`ChannelMix` built from them.
    """

    def __init__(self, embed_dims: int, depth: int, layer_id: int, shift_mode: str = 'q_shift',
                 channel_gamma: float = 0.25, shift_pixel: int = 1, drop_path: float = 0.,
                 hidden_rate: float = 4, init_mode: str = 'fancy',
                 init_values: Optional[float] = None, post_norm: bool = False,
                 key_norm: bool = False, with_cp: bool = False, attn_direction: str = 'bi',
                 wkv_backend: str = 'auto',
                 mixers: Optional[Tuple[nn.Module, nn.Module]] = None) -> None:
        super().__init__()
        if init_values is not None and (isinstance(init_values, bool)
                                        or not isinstance(init_values, (int, float))):
            raise ValueError(f'init_values must be a number or None, got {init_values!r}')
        self.layer_id = layer_id
        self.post_norm = post_norm
        self.with_cp = with_cp
        C = embed_dims
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C)
        self.ln1 = nn.LayerNorm(C)
        self.ln2 = nn.LayerNorm(C)
        if mixers is None:
            mixers = (SpatialMix(C, depth, layer_id, shift_mode=shift_mode,
                                 channel_gamma=channel_gamma, shift_pixel=shift_pixel,
                                 init_mode=init_mode, key_norm=key_norm,
                                 attn_direction=attn_direction, wkv_backend=wkv_backend),
                      ChannelMix(C, depth, layer_id, shift_mode=shift_mode,
                                 channel_gamma=channel_gamma, shift_pixel=shift_pixel,
                                 hidden_rate=hidden_rate, init_mode=init_mode,
                                 key_norm=key_norm))
        self.att, self.ffn = mixers
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.layer_scale = init_values is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(torch.full((C,), float(init_values)))
            self.gamma2 = nn.Parameter(torch.full((C,), float(init_values)))

    def _forward(self, x: torch.Tensor, patch_resolution: Sequence[int]) -> torch.Tensor:
        if self.layer_id == 0:
            x = self.ln0(x)
        gamma1, gamma2 = (self.gamma1, self.gamma2) if self.layer_scale else (None, None)
        x = self._residual(x, self.att, self.ln1, gamma1, patch_resolution)
        return self._residual(x, self.ffn, self.ln2, gamma2, patch_resolution)

    def _residual(self, x: torch.Tensor, mixer: nn.Module, norm: nn.Module,
                  gamma: Optional[torch.Tensor], patch_resolution: Sequence[int]) -> torch.Tensor:
        """``x + DropPath(gamma * branch)``, the branch being ``norm(mixer(x))`` (post-norm)
        or ``mixer(norm(x))`` (pre-norm, the norm applied inside the mixer)."""
        if self.post_norm:
            a = norm(mixer(x, patch_resolution))
        else:
            a = mixer(x, patch_resolution, norm=norm)
        if gamma is not None:
            a = gamma * a
        return x + self.drop_path(a)

    def forward(self, x: torch.Tensor, patch_resolution: Sequence[int]) -> torch.Tensor:
        """``x [B, T, C]`` on the grid ``patch_resolution = (H, W)`` -> ``[B, T, C]``."""
        if self.with_cp and self.training and torch.is_grad_enabled():
            # Non-reentrant checkpoint: works when only the parameters need grads and
            # restores the RNG state, so DropPath draws the same masks when recomputed.
            return cp.checkpoint(self._forward, x, patch_resolution, use_reentrant=False)
        return self._forward(x, patch_resolution)
