"""Vision-RWKV (VRWKV) backbone for OpenMMLab 2.0.

Needs only torch and mmengine (no mmcv / mmpretrain): the patch embedding and DropPath are
implemented in :mod:`mmvrwkv.models.layers`.

VRWKV is also the construction and forward of the other backbone families: a family sets its
``arch_zoo``, its block (``block_type`` and ``_block_kwargs``) and, where its token sequence
differs, ``_add_tokens`` / ``_output`` (VRWKV6: the class token). The adapters are
:class:`~.vrwkv_adapter.AdapterMixin` over a family.
"""
import math
from collections import OrderedDict
from numbers import Integral, Real
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule

from mmvrwkv.ops.backends import capturing_graph
from mmvrwkv.registry import MODELS
from ..layers import Block, PatchEmbed


#: Default of ``VRWKV(init_values=...)``: use the arch's value (None is a real value, "no
#: layer scale", so it cannot be the marker; a string survives config copies and pickling).
FROM_ARCH = 'from_arch'

_INTERPOLATE_MODES = ('nearest', 'nearest-exact', 'bilinear', 'bicubic', 'area')
# Entries of the pos-embed resize cache kept per module (one per recently seen patch grid).
_POS_CACHE_SIZE = 8


def _is_int(x) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 1 (not a bool), else a ``ValueError`` naming ``name``."""
    if not _is_int(value) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')
    return value


def positive_number(name: str, value: Any) -> float:
    """``value`` if it is a real number > 0 (not a bool), else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, Real) or value <= 0:
        raise ValueError(f'{name} must be a positive number, got {value!r}')
    return value


def arch_table(archs: Mapping[str, dict]) -> Dict[str, dict]:
    """An ``arch_zoo`` from ``{name: settings}``: every arch under its name and under its
    first letter ('t' for 'tiny', ...), both keys holding the same settings dict."""
    zoo: Dict[str, dict] = {}
    for name, settings in archs.items():
        zoo[name[0]] = zoo[name] = settings
    return zoo


def arch_names(arch_zoo: Mapping[str, dict]) -> List[str]:
    """The full arch names of an ``arch_zoo`` (not the one-letter aliases), in table order."""
    return [name for name in arch_zoo if len(name) > 1]


@MODELS.register_module()
class VRWKV(BaseModule):
    """Vision-RWKV backbone (Duan et al., "Vision-RWKV: Efficient and Scalable Visual
    Perception with RWKV-Like Architectures", ICLR 2025).

    A ViT-shaped backbone whose attention is replaced by Q-Shift + Bi-WKV (linear in the
    number of tokens). Images are cut into patches, a learned position embedding (resized to
    the current patch grid) is added, and ``depth`` :class:`~mmvrwkv.models.layers.Block` s
    are applied. Returns a tuple of feature maps ``[B, C, H', W']``, one per ``out_indices``
    entry, in layer order.

    Architectures (``arch``; explicit constructor arguments override these values):

    ======= ========== ===== =========== ========= =========== ======== ========
    arch    embed_dims depth hidden_rate post_norm init_values key_norm img_size
    ======= ========== ===== =========== ========= =========== ======== ========
    tiny    192        12    4           False     None        False    224
    small   384        12    4           True      1.0         False    224
    base    768        12    4           True      1e-5        False    224
    large   1024       24    4           True      1e-5        True     192
    ======= ========== ===== =========== ========= =========== ======== ========

    (the ImageNet-1k classification settings of the paper; 'large' keeps the 192-pixel
    position grid of its ImageNet-22k pre-training, as in the released checkpoint).
    ``drop_path_rate`` is a training choice and is set in configs, not by ``arch``.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' (or 't' | 's' | 'b' | 'l'), or a dict
            with at least ``embed_dims`` and ``depth`` and optionally ``hidden_rate``,
            ``post_norm``, ``init_values``, ``key_norm``, ``img_size``.
        img_size: image size (int or (H, W)) defining the stored position-embedding grid
            ``img_size // patch_size``. Other input sizes work: the embedding is resized.
        patch_size: patch side (Conv2d kernel = stride).
        in_channels: image channels.
        out_indices: block index or sequence of indices whose outputs are returned;
            negative values count from the end (``depth + i``).
        drop_rate: dropout after adding the position embedding.
        embed_dims: channels C (overrides arch).
        depth: number of blocks (overrides arch).
        drop_path_rate: stochastic depth, increasing linearly from 0 at the first block to
            this value at the last.
        channel_gamma: fraction of channels per Q-Shift direction (<= 1/4).
        shift_pixel: token-shift distance; 0 disables the shift.
        shift_mode: 'q_shift' (Q-Shift), 'token_shift' (1-D RWKV shift in raster order) or
            'none'.
        init_mode: 'fancy' | 'local' | 'global' init of the mixer decay/bonus/mix parameters.
        post_norm: norm after (True) or before (False) the mixers (overrides arch).
        key_norm: extra LayerNorms inside both mixers (overrides arch).
        init_values: layer-scale init; None for no layer scale (overrides arch; the default
            ``FROM_ARCH`` takes the arch's value).
        hidden_rate: ChannelMix hidden width factor (overrides arch).
        final_norm: apply the LayerNorm ``ln1`` to the output of the last block (before it is
            emitted, so the last feature map is normalised).
        interpolate_mode: mode of ``F.interpolate`` for resizing the position embedding.
        with_cp: gradient checkpointing of every block (saves activation memory).
        attn_direction: 'bi' (Bi-WKV) or 'uni' (causal WKV, an ablation).
        wkv_backend: backend of :func:`mmvrwkv.ops.bi_wkv` ('auto' picks the compiled kernel
            for the device when available).
        init_cfg: mmengine init config (e.g. ``dict(type='Pretrained', checkpoint=...,
            prefix='backbone.')``).
    """

    #: The architectures (the one place that states them; the docstring table above, the
    #: VRWKV6 and adapter tables and the checkpoint converter are derived from it or checked
    #: against it).
    arch_zoo: Dict[str, dict] = arch_table({
        'tiny': dict(embed_dims=192, depth=12, hidden_rate=4, post_norm=False,
                     init_values=None, key_norm=False, img_size=224),
        'small': dict(embed_dims=384, depth=12, hidden_rate=4, post_norm=True,
                      init_values=1.0, key_norm=False, img_size=224),
        'base': dict(embed_dims=768, depth=12, hidden_rate=4, post_norm=True,
                     init_values=1e-5, key_norm=False, img_size=224),
        'large': dict(embed_dims=1024, depth=24, hidden_rate=4, post_norm=True,
                      init_values=1e-5, key_norm=True, img_size=192),
    })
    #: Keys an ``arch`` dict must have, and the optional ones with their defaults.
    arch_required_keys = ('embed_dims', 'depth')
    arch_optional_keys = dict(hidden_rate=4, post_norm=False, init_values=None,
                              key_norm=False, img_size=224)
    #: The block class of this backbone family (VRWKV6: ``Block6``); :meth:`_block_kwargs`
    #: gives the arguments that only this family's block takes.
    block_type: Type[nn.Module] = Block

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Optional[Union[int, Sequence[int]]] = None,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.,
                 embed_dims: Optional[int] = None,
                 depth: Optional[int] = None,
                 drop_path_rate: float = 0.,
                 channel_gamma: float = 1 / 4,
                 shift_pixel: int = 1,
                 shift_mode: str = 'q_shift',
                 init_mode: str = 'fancy',
                 post_norm: Optional[bool] = None,
                 key_norm: Optional[bool] = None,
                 init_values: Union[float, None, str] = FROM_ARCH,
                 hidden_rate: Optional[float] = None,
                 final_norm: bool = True,
                 interpolate_mode: str = 'bicubic',
                 with_cp: bool = False,
                 attn_direction: str = 'bi',
                 wkv_backend: str = 'auto',
                 init_cfg: Optional[Union[dict, Sequence[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        cfg = self._resolve_arch(arch)
        overrides = dict(embed_dims=embed_dims, depth=depth, hidden_rate=hidden_rate,
                         post_norm=post_norm, key_norm=key_norm, img_size=img_size)
        for key, value in overrides.items():
            if value is not None:
                cfg[key] = value
        if init_values != FROM_ARCH:
            cfg['init_values'] = init_values

        # The backbone checks what it uses itself; the layers check their own arguments.
        self._check_args(cfg, patch_size=patch_size, in_channels=in_channels,
                         drop_rate=drop_rate, drop_path_rate=drop_path_rate,
                         interpolate_mode=interpolate_mode)
        self.arch_settings = cfg
        self.embed_dims = C = int(cfg['embed_dims'])
        self.num_layers = self.depth = depth = int(cfg['depth'])
        self.hidden_rate = cfg['hidden_rate']
        self.post_norm = bool(cfg['post_norm'])
        self.key_norm = bool(cfg['key_norm'])
        self.init_values = cfg['init_values']
        self.img_size = self._to_2tuple(cfg['img_size'], 'img_size')
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.shift_mode = shift_mode
        self.init_mode = init_mode
        self.final_norm = final_norm
        self.interpolate_mode = interpolate_mode
        self.with_cp = with_cp
        self.attn_direction = attn_direction
        self.wkv_backend = wkv_backend
        self.out_indices = self._normalize_out_indices(out_indices, depth)

        self.patch_embed = PatchEmbed(in_channels, C, patch_size)
        self.patch_resolution = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        if min(self.patch_resolution) < 1:
            raise ValueError(f'img_size {self.img_size} is smaller than one patch '
                             f'(patch_size={patch_size})')
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        # Zero-initialised, as in the original Vision-RWKV (nothing re-initialises it there
        # either); the configs' TruncNormal/Constant init_cfg only touch Linear/LayerNorm.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, C))
        self._register_load_state_dict_pre_hook(self._prepare_pos_embed)
        self._pos_cache: 'OrderedDict[Tuple[int, int], tuple]' = OrderedDict()
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        # Stochastic depth rising linearly from 0 (first block) to drop_path_rate (last).
        dpr = [drop_path_rate * i / (depth - 1) if depth > 1 else 0. for i in range(depth)]
        self.channel_gamma = channel_gamma
        self.shift_pixel = shift_pixel
        self.layers = self._build_layers(dpr)
        if final_norm:
            self.ln1 = nn.LayerNorm(C)

    # ------------------------------------------------------------------ construction helpers
    def _block_kwargs(self) -> dict:
        """Hook: the arguments of :attr:`block_type` that only this family has (VRWKV6: the
        head count)."""
        return dict(channel_gamma=self.channel_gamma, attn_direction=self.attn_direction)

    def _build_layers(self, drop_path_rates: Sequence[float]) -> nn.ModuleList:
        """The ``depth`` blocks (:attr:`block_type`), from the settings stored on ``self``."""
        family = self._block_kwargs()
        return nn.ModuleList([
            self.block_type(self.embed_dims, self.depth, i, shift_mode=self.shift_mode,
                            shift_pixel=self.shift_pixel, drop_path=p,
                            hidden_rate=self.hidden_rate, init_mode=self.init_mode,
                            init_values=self.init_values, post_norm=self.post_norm,
                            key_norm=self.key_norm, with_cp=self.with_cp,
                            wkv_backend=self.wkv_backend, **family)
            for i, p in enumerate(drop_path_rates)
        ])

    @classmethod
    def _resolve_arch(cls, arch: Union[str, dict]) -> dict:
        optional = cls.arch_optional_keys
        if isinstance(arch, str):
            name = arch.lower()
            if name not in cls.arch_zoo:
                raise ValueError(f'arch must be one of {sorted(set(cls.arch_zoo))} or a dict, '
                                 f'got {arch!r}')
            return dict(cls.arch_zoo[name])
        if isinstance(arch, dict):
            missing = [k for k in cls.arch_required_keys if k not in arch]
            if missing:
                raise ValueError(f'arch dict is missing the keys {missing} '
                                 f'(required: {list(cls.arch_required_keys)})')
            allowed = set(cls.arch_required_keys) | set(optional)
            unknown = sorted(set(arch) - allowed)
            if unknown:
                raise ValueError(f'arch dict has unknown keys {unknown} (allowed: '
                                 f'{sorted(allowed)})')
            cfg = dict(optional)
            cfg.update(arch)
            return cfg
        raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')

    @staticmethod
    def _to_2tuple(value, name: str) -> Tuple[int, int]:
        if _is_int(value):
            value = (value, value)
        if (not isinstance(value, Sequence) or len(value) != 2
                or not all(_is_int(v) and v > 0 for v in value)):
            raise ValueError(f'{name} must be a positive int or a pair of them, got {value!r}')
        return int(value[0]), int(value[1])

    @staticmethod
    def _check_args(cfg: dict, **kw) -> None:
        positive_int('embed_dims', cfg['embed_dims'])
        positive_int('depth', cfg['depth'])
        positive_int('patch_size', kw['patch_size'])
        positive_int('in_channels', kw['in_channels'])
        for name in ('drop_rate', 'drop_path_rate'):
            p = kw[name]
            if isinstance(p, bool) or not isinstance(p, Real) or not 0 <= p < 1:
                raise ValueError(f'{name} must be in [0, 1), got {p!r}')
        if kw['interpolate_mode'] not in _INTERPOLATE_MODES:
            raise ValueError(f'interpolate_mode must be one of {_INTERPOLATE_MODES}, '
                             f'got {kw["interpolate_mode"]!r}')

    @staticmethod
    def _normalize_out_indices(out_indices: Union[int, Sequence[int]],
                               depth: int) -> Tuple[int, ...]:
        """Non-negative, sorted, de-duplicated copy of ``out_indices`` (the caller's object is
        never modified); each index must lie in ``[-depth, depth)``."""
        if _is_int(out_indices):
            items = [out_indices]
        elif isinstance(out_indices, Sequence) and not isinstance(out_indices, str):
            items = list(out_indices)
        else:
            raise ValueError(f'out_indices must be an int or a sequence of ints, '
                             f'got {out_indices!r}')
        if not items:
            raise ValueError('out_indices must not be empty')
        result = set()
        for i in items:
            if not _is_int(i):
                raise ValueError(f'out_indices must contain ints, got {i!r} in {out_indices!r}')
            j = int(i) + depth if i < 0 else int(i)
            if not 0 <= j < depth:
                raise ValueError(f'out_indices entry {i} is out of range for depth={depth} '
                                 f'(valid: {-depth} .. {depth - 1})')
            result.add(j)
        return tuple(sorted(result))

    # ------------------------------------------------------------------ layer-wise lr decay
    #: Parameters (names inside the backbone) of the embedding "layer" 0.
    EMBED_PARAMS = ('pos_embed', 'cls_token', 'mask_token', 'visual_embed')

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """``(layer id, number of layer ids)`` of a parameter for layer-wise lr decay, as
        mmpretrain's ViT: 0 for the patch embedding and :attr:`EMBED_PARAMS`, ``i + 1`` for
        block i, ``num_layers + 1`` for everything else (an adapter's modules, heads, ...);
        ``num_layers + 2`` ids in all. ``prefix`` is the backbone's name prefix in the model
        (e.g. ``'backbone.'``); names outside it get the top id."""
        count = self.num_layers + 2
        top = count - 1
        if not param_name.startswith(prefix):
            return top, count
        name = param_name[len(prefix):]
        if name in self.EMBED_PARAMS or name.startswith('patch_embed.'):
            return 0, count
        if name.startswith('layers.'):
            index = name.split('.', 2)[1]
            if index.isdigit() and int(index) < self.num_layers:
                return int(index) + 1, count
        return top, count

    # ------------------------------------------------------------------ position embedding
    def _interpolate_pos_embed(self, pos_embed: torch.Tensor, src: Tuple[int, int],
                               dst: Tuple[int, int]) -> torch.Tensor:
        """Resize ``pos_embed [1, src_h*src_w, C]`` to ``[1, dst_h*dst_w, C]`` on the grid."""
        C = pos_embed.shape[-1]
        grid = pos_embed.reshape(1, src[0], src[1], C).permute(0, 3, 1, 2)
        align = False if self.interpolate_mode in ('bilinear', 'bicubic') else None
        grid = F.interpolate(grid, size=dst, mode=self.interpolate_mode, align_corners=align)
        return grid.flatten(2).transpose(1, 2)

    def resize_pos_embed(self, patch_resolution: Sequence[int]) -> torch.Tensor:
        """Position embedding for the patch grid ``patch_resolution``: ``[1, H'*W', C]``.

        The parameter keeps the ``img_size // patch_size`` grid; other grids are obtained with
        ``F.interpolate(mode=interpolate_mode, align_corners=False)`` (identity when the grid
        matches).

        Caching: when no gradient can flow to ``pos_embed`` (grad mode off, e.g. eval /
        inference, or the parameter frozen), the resized tensor is cached per grid and reused
        as long as the parameter is unchanged; the key holds the parameter's storage (kept
        alive by the cache, so its address cannot be reused), its version counter (bumped by
        in-place updates: optimizer steps, ``load_state_dict``), device, dtype and the
        inference-mode flag. While a gradient is needed the resize is recomputed every forward:
        a cached tensor would hold a graph that is freed after the first backward and would
        go stale after each optimizer step, and the cost (one small interpolation of a
        ``[1, C, h, w]`` grid) is negligible next to the blocks. Nothing is cached while
        tracing, scripting or compiling, where the resize must be part of the graph.
        """
        pos = self.pos_embed
        if any(isinstance(v, torch.SymInt) for v in patch_resolution):
            # A symbolic grid (export with a dynamic image size): always resize (the identity
            # on the stored grid); comparing it with the stored grid would pin its size.
            return self._interpolate_pos_embed(pos, self.patch_resolution,
                                               tuple(patch_resolution))
        dst = (int(patch_resolution[0]), int(patch_resolution[1]))
        if dst == self.patch_resolution:
            return pos
        cacheable = not (torch.is_grad_enabled() and pos.requires_grad) and not capturing_graph()
        if not cacheable:
            return self._interpolate_pos_embed(pos, self.patch_resolution, dst)
        key = (pos.device, pos.dtype, pos.data_ptr(), pos._version,
               torch.is_inference_mode_enabled(), self.interpolate_mode)
        entry = self._pos_cache.get(dst)
        if entry is not None and entry[0] == key:
            self._pos_cache.move_to_end(dst)
            return entry[2]
        with torch.no_grad():
            value = self._interpolate_pos_embed(pos, self.patch_resolution, dst)
        # entry[1] keeps the source storage alive so that its address identifies it.
        self._pos_cache[dst] = (key, pos.detach(), value)
        self._pos_cache.move_to_end(dst)
        while len(self._pos_cache) > _POS_CACHE_SIZE:
            self._pos_cache.popitem(last=False)
        return value

    def _prepare_pos_embed(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """``load_state_dict`` pre-hook: resize a checkpoint ``pos_embed`` made for another
        (square) grid, e.g. the 192-pixel grid of VRWKV-L, to this model's grid."""
        name = prefix + 'pos_embed'
        if name not in state_dict:
            return
        ckpt = state_dict[name]
        if not isinstance(ckpt, torch.Tensor) or ckpt.shape == self.pos_embed.shape:
            return
        if ckpt.dim() != 3 or ckpt.shape[-1] != self.embed_dims:
            return  # let load_state_dict report the mismatch
        n = ckpt.shape[1]
        side = math.isqrt(n)
        if side * side != n:
            return
        print_log(f'Resize the pos_embed shape from {tuple(ckpt.shape)} to '
                  f'{tuple(self.pos_embed.shape)}.', logger='current')
        with torch.no_grad():
            state_dict[name] = self._interpolate_pos_embed(
                ckpt.float(), (side, side), self.patch_resolution).to(ckpt.dtype)

    def _apply(self, fn, *args, **kwargs):
        # Moving/casting the module makes every cached resize stale: drop them.
        self._pos_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__  # VRWKV6 (and subclasses) name themselves
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'{name} expects images of shape [B, C, H, W], got {shape}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'{name} was built with in_channels={self.in_channels}, but the '
                             f'input has {x.shape[1]} channels (shape {tuple(x.shape)})')
        if not x.is_floating_point():
            raise TypeError(
                f'{name} expects floating-point images (normalised, as the data preprocessor '
                f'gives them), got dtype {x.dtype}; e.g. x = (x.float() - mean) / std')
        if x.shape[0] == 0:
            raise ValueError(f'{name} got an empty batch (shape {tuple(x.shape)}); pass at '
                             'least one image')
        H, W = x.shape[-2:]
        p = self.patch_size
        if H < p or W < p:
            raise ValueError(f'input size {(int(H), int(W))} is smaller than one patch '
                             f'(patch_size={p})')

    def _add_tokens(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """Hook: the patch tokens (position embedding added) with the tokens this family
        appends (VRWKV6: its class token); VRWKV appends none."""
        return x

    def _output(self, x: torch.Tensor, batch: int, patch_resolution: Tuple[int, int]):
        """Hook: what an ``out_indices`` block emits, from its output tokens ``[B, T, C]``:
        the map ``[B, C, H', W']`` (VRWKV6: or a (map, class token) pair)."""
        # contiguous NCHW, not a channels-last view: see VRWKVAdapter.forward
        return x.reshape(batch, patch_resolution[0], patch_resolution[1],
                         -1).permute(0, 3, 1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Images ``[B, in_channels, H, W]`` -> tuple of ``[B, C, ceil(H/p), ceil(W/p)]``."""
        self._check_input(x)
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        x = self._add_tokens(x + self.resize_pos_embed(patch_resolution), B)
        x = self.drop_after_pos(x)

        outs = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, patch_resolution)
            if i == last and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._output(x, B, patch_resolution))
        return tuple(outs)
