"""Building blocks of the Vision-RWKV backbones (torch + mmvrwkv.ops only)."""
from .block import Block
from .block6 import Block6, ChannelMix6
from .channel_mix import ChannelMix
from .drop_path import DropPath, drop_path
from .init_modes import INIT_MODES, layer_ratios
from .patch_embed import PatchEmbed
from .shift import (SHIFT_FUNCS, TokenShift, get_shift_fn, no_shift, q_shift, q_shift_multihead,
                    token_shift)
from .spatial_mix import ATTN_DIRECTIONS, SpatialMix
from .spatial_mix6 import SpatialMix6

__all__ = ['Block', 'ChannelMix', 'SpatialMix', 'DropPath', 'drop_path', 'PatchEmbed',
           'SHIFT_FUNCS', 'TokenShift', 'get_shift_fn', 'q_shift', 'q_shift_multihead', 'token_shift', 'no_shift', 'INIT_MODES',
           'ATTN_DIRECTIONS', 'layer_ratios', 'Block6', 'ChannelMix6', 'SpatialMix6']
