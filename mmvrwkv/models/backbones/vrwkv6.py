"""VRWKV6 backbone: Vision-RWKV with RWKV-6 ("Finch") spatial mixing, for OpenMMLab 2.0.

Needs only torch and mmengine. Everything but the blocks is :class:`~.vrwkv.VRWKV`'s own
(patch embedding, position embedding and its resize, out_indices, layer ids for lr decay,
input checks); the blocks are :class:`~mmvrwkv.models.layers.Block6`.
"""
from numbers import Integral
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from mmvrwkv.registry import MODELS
from ..layers.block6 import Block6
from .vrwkv import FROM_ARCH, VRWKV

#: Channels per head of the released VRWKV6 models (the default head count is C // 64).
HEAD_SIZE = 64


@MODELS.register_module()
class VRWKV6(VRWKV):
    """VRWKV6 backbone, the RWKV-6 family of Vision-RWKV (classification models of the
    official repository: ImageNet-1k top-1 76.6 / 81.1 / 82.6 for T / S / B).

    Same layout as :class:`VRWKV` (patches, learned position embedding resized to the current
    grid, ``depth`` blocks, final LayerNorm ``ln1``; a tuple of feature maps
    ``[B, C, H', W']`` at ``out_indices``), with :class:`~mmvrwkv.models.layers.Block6`: the
    spatial mixer has data-dependent token mixing and decay (LoRA), a bidirectional WKV6 over
    heads (:func:`mmvrwkv.ops.bi_wkv6`, no limit on the token count), a per-head GroupNorm and
    a SiLU gate; both mixers shift quarters of every head ('q_shift_multihead').

    Architectures (``arch``; explicit constructor arguments override these values):

    ======= ========== ===== ========= =========== ========= =========== ======== ========
    arch    embed_dims depth num_heads hidden_rate post_norm init_values key_norm img_size
    ======= ========== ===== ========= =========== ========= =========== ======== ========
    tiny    192        12    3         4           False     None        False    224
    small   384        12    6         4           True      1e-5        False    224
    base    768        12    12        4           True      1e-5        False    224
    ======= ========== ===== ========= =========== ========= =========== ======== ========

    Args:
        arch: 'tiny' | 'small' | 'base' (or 't' | 's' | 'b'), or a dict with at least
            ``embed_dims`` and ``depth`` and optionally the other columns.
        num_heads: WKV6 heads (overrides arch; default ``embed_dims // 64`` when
            ``embed_dims`` is given, which then must be a multiple of 64).
        shift_mode: 'q_shift_multihead' (the original), or another key of
            :data:`~mmvrwkv.models.layers.shift.SHIFT_FUNCS`.
        shift_pixel: token-shift distance; 0 disables the shift.
        init_mode: 'fancy' (the only init of the original).
        with_cls_token: append a learned class token (zero-initialised) at the **end** of the
            sequence, after the position embedding, as the original; the token shift leaves
            it alone.
        output_cls_token: emit ``(feature map, class token [B, C])`` pairs instead of maps
            (needs ``with_cls_token``).
        wkv_backend: backend of :func:`mmvrwkv.ops.bi_wkv6` ('auto' picks the compiled kernel
            for the device when available).
        img_size, patch_size, in_channels, out_indices, drop_rate, embed_dims, depth,
            drop_path_rate, post_norm, key_norm, init_values, hidden_rate, final_norm,
            interpolate_mode, with_cp, init_cfg: as for :class:`VRWKV`.
    """

    _TINY = dict(embed_dims=192, depth=12, num_heads=3, hidden_rate=4, post_norm=False,
                 init_values=None, key_norm=False, img_size=224)
    _SMALL = dict(embed_dims=384, depth=12, num_heads=6, hidden_rate=4, post_norm=True,
                  init_values=1e-5, key_norm=False, img_size=224)
    _BASE = dict(embed_dims=768, depth=12, num_heads=12, hidden_rate=4, post_norm=True,
                 init_values=1e-5, key_norm=False, img_size=224)
    arch_zoo: Dict[str, dict] = {
        **dict.fromkeys(['t', 'tiny'], _TINY),
        **dict.fromkeys(['s', 'small'], _SMALL),
        **dict.fromkeys(['b', 'base'], _BASE),
    }
    arch_optional_keys = dict(VRWKV.arch_optional_keys, num_heads=None)

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Optional[Union[int, Sequence[int]]] = None,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.,
                 embed_dims: Optional[int] = None,
                 depth: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 drop_path_rate: float = 0.,
                 shift_pixel: int = 1,
                 shift_mode: str = 'q_shift_multihead',
                 init_mode: str = 'fancy',
                 post_norm: Optional[bool] = None,
                 key_norm: Optional[bool] = None,
                 init_values: Union[float, None, str] = FROM_ARCH,
                 hidden_rate: Optional[float] = None,
                 with_cls_token: bool = False,
                 output_cls_token: bool = False,
                 final_norm: bool = True,
                 interpolate_mode: str = 'bicubic',
                 with_cp: bool = False,
                 wkv_backend: str = 'auto',
                 init_cfg: Optional[Union[dict, Sequence[dict]]] = None) -> None:
        if output_cls_token and not with_cls_token:
            raise ValueError('output_cls_token=True needs with_cls_token=True')
        cfg = self._resolve_arch(arch)
        if num_heads is None and embed_dims is None:
            num_heads = cfg['num_heads']
        if num_heads is None:  # an arch dict without heads, or another width
            width = cfg['embed_dims'] if embed_dims is None else embed_dims
            if not isinstance(width, Integral) or width < 1 or width % HEAD_SIZE:
                raise ValueError(f'num_heads must be given when embed_dims ({width!r}) is not '
                                 f'a positive multiple of {HEAD_SIZE} (the head size of the '
                                 f'released models)')
            num_heads = int(width) // HEAD_SIZE
        cfg['num_heads'] = num_heads
        # VRWKV's construction, with the blocks from _build_layers below (which reads
        # arch_settings['num_heads']); channel_gamma / attn_direction do not exist in v6.
        super().__init__(arch=cfg, img_size=img_size, patch_size=patch_size,
                         in_channels=in_channels, out_indices=out_indices, drop_rate=drop_rate,
                         embed_dims=embed_dims, depth=depth, drop_path_rate=drop_path_rate,
                         shift_pixel=shift_pixel, shift_mode=shift_mode, init_mode=init_mode,
                         post_norm=post_norm, key_norm=key_norm, init_values=init_values,
                         hidden_rate=hidden_rate, final_norm=final_norm,
                         interpolate_mode=interpolate_mode, with_cp=with_cp,
                         wkv_backend=wkv_backend, init_cfg=init_cfg)
        self.num_heads = num_heads
        self.with_cls_token = bool(with_cls_token)
        self.output_cls_token = bool(output_cls_token)
        if self.with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def _build_layers(self, drop_path_rates: Sequence[float]) -> nn.ModuleList:
        """The ``depth`` :class:`Block6` s."""
        return nn.ModuleList([
            Block6(self.embed_dims, self.depth, i, self.arch_settings['num_heads'],
                   shift_mode=self.shift_mode, shift_pixel=self.shift_pixel, drop_path=p,
                   hidden_rate=self.hidden_rate, init_mode=self.init_mode,
                   init_values=self.init_values, post_norm=self.post_norm,
                   key_norm=self.key_norm, with_cp=self.with_cp, wkv_backend=self.wkv_backend)
            for i, p in enumerate(drop_path_rates)
        ])

    def forward(self, x: torch.Tensor) -> Tuple[Union[torch.Tensor, Tuple[torch.Tensor,
                                                                           torch.Tensor]], ...]:
        """Images ``[B, in_channels, H, W]`` -> tuple of ``[B, C, ceil(H/p), ceil(W/p)]``
        (or of ``(map, class token [B, C])`` with ``output_cls_token``)."""
        self._check_input(x)
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        x = x + self.resize_pos_embed(patch_resolution)
        if self.with_cls_token:
            x = torch.cat([x, self.cls_token.expand(B, -1, -1)], dim=1)
        x = self.drop_after_pos(x)

        H, W = patch_resolution
        outs = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, patch_resolution)
            if i == last and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                fmap = x[:, :H * W].reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
                outs.append((fmap, x[:, -1]) if self.output_cls_token else fmap)
        return tuple(outs)
