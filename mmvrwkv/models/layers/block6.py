"""VRWKV6 layer: the Vision-RWKV :class:`Block` with the v6 spatial mixer and the multi-head
shift in both mixers."""
from typing import Optional, Sequence, Tuple

import torch

from mmvrwkv.ops.token_shift import head_size_of
from .block import Block
from .channel_mix import ChannelMix
from .spatial_mix6 import SpatialMix6, check_v6_init_mode, split_cls_token


class ChannelMix6(ChannelMix):
    """:class:`ChannelMix` with the shift of VRWKV6: ``num_heads`` for 'q_shift_multihead'
    (quarters inside each head) and a class token at the end of the sequence left unshifted
    (a sequence of ``H * W + 1`` tokens carries one)."""

    def __init__(self, embed_dims: int, depth: int, layer_id: int, num_heads: int,
                 shift_mode: str = 'q_shift_multihead', shift_pixel: int = 1,
                 hidden_rate: float = 4, init_mode: str = 'fancy',
                 key_norm: bool = False) -> None:
        super().__init__(embed_dims, depth, layer_id, shift_mode=shift_mode,
                         shift_pixel=shift_pixel, hidden_rate=hidden_rate,
                         init_mode=init_mode, key_norm=key_norm, num_heads=num_heads)

    def mix(self, x: torch.Tensor, patch_resolution: Sequence[int]) -> Tuple[torch.Tensor, ...]:
        patches, cls_token = split_cls_token(x, patch_resolution)
        if cls_token is None:
            return super().mix(x, patch_resolution)
        # lerp(cls, cls, mu) = cls: the class token passes through unchanged.
        return tuple(torch.cat([m, cls_token], dim=1)
                     for m in super().mix(patches, patch_resolution))


class Block6(Block):
    """One VRWKV6 layer: :class:`Block` (ln0 / pre- or post-norm / layer scale / DropPath /
    checkpointing, unchanged) around :class:`SpatialMix6` and :class:`ChannelMix6`.

    Args:
        embed_dims, depth, layer_id, drop_path, hidden_rate, init_values, post_norm, key_norm,
            with_cp: as for :class:`Block`.
        num_heads: heads of the WKV6 state and of the multi-head shift.
        shift_mode, shift_pixel: token shift of both mixers.
        init_mode: 'fancy' (the only init of the original VRWKV6).
        wkv_backend: backend argument of :func:`mmvrwkv.ops.bi_wkv6`.
    """

    def __init__(self, embed_dims: int, depth: int, layer_id: int, num_heads: int,
                 shift_mode: str = 'q_shift_multihead', shift_pixel: int = 1,
                 drop_path: float = 0., hidden_rate: float = 4, init_mode: str = 'fancy',
                 init_values: Optional[float] = None, post_norm: bool = False,
                 key_norm: bool = False, with_cp: bool = False,
                 wkv_backend: str = 'auto') -> None:
        head_size_of(embed_dims, num_heads, 'Block6 (embed_dims)')
        check_v6_init_mode(init_mode)
        att = SpatialMix6(embed_dims, depth, layer_id, num_heads, shift_mode=shift_mode,
                          shift_pixel=shift_pixel, init_mode=init_mode, key_norm=key_norm,
                          wkv_backend=wkv_backend)
        ffn = ChannelMix6(embed_dims, depth, layer_id, num_heads, shift_mode=shift_mode,
                          shift_pixel=shift_pixel, hidden_rate=hidden_rate,
                          init_mode=init_mode, key_norm=key_norm)
        super().__init__(embed_dims, depth, layer_id, drop_path=drop_path,
                         init_values=init_values, post_norm=post_norm, with_cp=with_cp,
                         mixers=(att, ffn))
