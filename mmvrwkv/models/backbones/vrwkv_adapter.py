"""VRWKV with a ViT-Adapter-style multi-scale adapter, for detection and segmentation.

Imports with torch + mmengine only: the deformable attention uses mmcv's op when mmcv is
installed and a PyTorch fallback otherwise (see :mod:`mmvrwkv.models.layers.adapter_modules`).
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmvrwkv.registry import MODELS
from ..layers.adapter_modules import (InteractionBlock, MSDeformAttn, SpatialPriorModule,
                                      deform_inputs, init_adapter_weights)
from ..layers.norm import build_norm2d
from .vrwkv import VRWKV, _is_int, arch_names, arch_table, positive_int, positive_number
from .vrwkv6 import VRWKV6

FUSION_MODES = ('final', 'per_stage')
#: Top-level children/parameters that exist only in the adapter (not in a VRWKV checkpoint).
ADAPTER_PREFIXES = ('level_embed', 'spm.', 'interactions.', 'up.', 'norm1.', 'norm2.',
                    'norm3.', 'norm4.')


#: The adapter's own settings per size, the same for every backbone family: heads and value
#: width ratio of the deformable attentions (OpenGVLab/Vision-RWKV,
#: detection/configs/mask_rcnn/mask_rcnn_vrwkv_adapter_{tiny,small,base,large}_fpn_1x_coco.py;
#: the segmentation configs use the same values).
DEFORM_ARCHS: Dict[str, dict] = {
    'tiny': dict(deform_num_heads=6, deform_ratio=1.0),
    'small': dict(deform_num_heads=6, deform_ratio=1.0),
    'base': dict(deform_num_heads=12, deform_ratio=0.5),
    'large': dict(deform_num_heads=16, deform_ratio=0.5),
}


def adapter_arch_zoo(family: Type[VRWKV], **overrides: dict) -> Dict[str, dict]:
    """The ``arch_zoo`` of the adapter around ``family``: every arch of ``family.arch_zoo``
    with the :data:`DEFORM_ARCHS` of its size and the ``overrides`` of its size (e.g.
    ``tiny=dict(init_values=1.0)``, a value of the detection/segmentation recipes)."""
    return arch_table({name: dict(family.arch_zoo[name], **overrides.get(name, {}),
                                  **DEFORM_ARCHS[name])
                       for name in arch_names(family.arch_zoo)})


class AdapterMixin:
    """The ViT-Adapter of Vision-RWKV, written once for every backbone family: listed before
    the backbone class (``class VRWKVAdapter(AdapterMixin, VRWKV)``,
    ``class VRWKV6Adapter(AdapterMixin, VRWKV6)``), it builds the backbone (without its final
    norm) through ``super().__init__`` and adds the spatial prior module, the interactions,
    ``up`` and the output norms; its forward runs the backbone's blocks inside the
    interactions. The concrete class sets ``arch_zoo`` (:func:`adapter_arch_zoo`) and
    ``arch_optional_keys``. Documented at :class:`VRWKVAdapter`.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 conv_inplane: int = 64,
                 n_points: int = 4,
                 deform_num_heads: Optional[int] = None,
                 deform_ratio: Optional[float] = None,
                 init_values_inject: float = 0.,
                 interaction_indexes: Optional[Sequence[Sequence[int]]] = None,
                 with_cffn: bool = True,
                 cffn_ratio: float = 0.25,
                 use_extra_extractor: bool = True,
                 add_rwkv_feature: bool = True,
                 rwkv_feature_fusion: str = 'final',
                 norm_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 **kwargs) -> None:
        for name in ('final_norm', 'out_indices'):
            if name in kwargs:
                raise TypeError(f'{type(self).__name__} does not take {name!r}: it always '
                                f'returns the four multi-scale maps and has no final norm')
        if pretrained is not None:
            if kwargs.get('init_cfg') is not None:
                raise ValueError('give either pretrained or init_cfg, not both')
            kwargs['init_cfg'] = dict(type='Pretrained', checkpoint=pretrained,
                                      prefix='backbone.')
        super().__init__(arch=arch, final_norm=False, **kwargs)
        C = self.embed_dims
        settings = self.arch_settings
        if rwkv_feature_fusion not in FUSION_MODES:
            raise ValueError(f'rwkv_feature_fusion must be one of {FUSION_MODES}, got '
                             f'{rwkv_feature_fusion!r}')
        self.conv_inplane = positive_int('conv_inplane', conv_inplane)
        self.n_points = positive_int('n_points', n_points)
        self.deform_num_heads = positive_int('deform_num_heads', settings['deform_num_heads']
                                             if deform_num_heads is None else deform_num_heads)
        self.deform_ratio = positive_number('deform_ratio', settings['deform_ratio']
                                            if deform_ratio is None else deform_ratio)
        self.cffn_ratio = positive_number('cffn_ratio', cffn_ratio)
        self.interaction_indexes = self._check_interaction_indexes(interaction_indexes,
                                                                   self.depth)
        if (add_rwkv_feature and rwkv_feature_fusion == 'per_stage'
                and len(self.interaction_indexes) != 4):
            raise ValueError(f"rwkv_feature_fusion='per_stage' adds the output of interaction "
                             f"i to level i and needs exactly 4 interactions, got "
                             f"{len(self.interaction_indexes)}: {self.interaction_indexes}")
        self.norm_cfg = dict(type='BN') if norm_cfg is None else dict(norm_cfg)
        self.init_values_inject = init_values_inject
        self.with_cffn = with_cffn
        self.use_extra_extractor = use_extra_extractor
        self.add_rwkv_feature = add_rwkv_feature
        self.rwkv_feature_fusion = rwkv_feature_fusion
        interaction_drop_path = float(kwargs.get('drop_path_rate', 0.))

        self.level_embed = nn.Parameter(torch.zeros(3, C))
        self.spm = SpatialPriorModule(conv_inplane, C, self.norm_cfg)
        last = len(self.interaction_indexes) - 1
        self.interactions = nn.ModuleList([
            InteractionBlock(C, num_heads=self.deform_num_heads, n_points=n_points,
                             deform_ratio=self.deform_ratio, init_values=init_values_inject,
                             drop_path=interaction_drop_path, with_cffn=with_cffn,
                             cffn_ratio=cffn_ratio,
                             extra_extractor=use_extra_extractor and i == last,
                             with_cp=self.with_cp)
            for i in range(len(self.interaction_indexes))
        ])
        self.up = nn.ConvTranspose2d(C, C, 2, 2)
        self.norm1 = build_norm2d(self.norm_cfg, C)
        self.norm2 = build_norm2d(self.norm_cfg, C)
        self.norm3 = build_norm2d(self.norm_cfg, C)
        self.norm4 = build_norm2d(self.norm_cfg, C)
        self._init_adapter()

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _check_interaction_indexes(indexes, depth: int) -> Tuple[Tuple[int, int], ...]:
        if indexes is None:
            if depth % 4:
                raise ValueError(f'interaction_indexes must be given when depth ({depth}) is '
                                 f'not a multiple of 4')
            g = depth // 4
            return tuple((i * g, i * g + g - 1) for i in range(4))
        try:
            pairs = [tuple(p) for p in indexes]
        except TypeError:
            pairs = None
        if (not pairs or any(len(p) != 2 or not all(_is_int(v) for v in p) for p in pairs)):
            raise ValueError(f'interaction_indexes must be a non-empty list of [start, end] '
                             f'int pairs, got {indexes!r}')
        expected_start = 0
        for start, end in pairs:
            if start != expected_start or end < start:
                raise ValueError(
                    f'interaction_indexes {indexes!r} must be contiguous inclusive ranges '
                    f'covering blocks 0..{depth - 1} in order (each start = previous end + 1, '
                    f'end >= start)')
            expected_start = end + 1
        if expected_start != depth:
            raise ValueError(f'interaction_indexes {indexes!r} must cover blocks '
                             f'0..{depth - 1} (depth={depth}), they end at {expected_start - 1}')
        return tuple((int(a), int(b)) for a, b in pairs)

    def _init_adapter(self) -> None:
        for module in (self.spm, self.interactions, self.up, self.norm1, self.norm2,
                       self.norm3, self.norm4):
            module.apply(init_adapter_weights)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    # ------------------------------------------------------------------ pretrained weights
    def load_pretrained(self, checkpoint: Union[str, dict], prefix: str = 'backbone.',
                        map_location: Union[str, torch.device] = 'cpu',
                        logger: Union[str, logging.Logger, None] = 'current'
                        ) -> Dict[str, List[str]]:
        """Load a VRWKV classification checkpoint (or any state dict) into this backbone.

        ``checkpoint`` is a path/URL (read with mmengine's ``CheckpointLoader``) or an
        already loaded dict; weights are taken from its ``state_dict``, ``model`` or
        ``module`` entry, or the dict itself. Keys starting with ``prefix`` are kept with the
        prefix removed (when no key has the prefix, all keys are used as they are); the
        others (classifier head, ...) are dropped. ``pos_embed`` is resized when the grid
        differs (VRWKV's load hook). Tensor shape mismatches raise. Everything else is
        reported through ``print_log`` (and returned):

        * ``new``: parameters/buffers of this model absent from the checkpoint (the adapter,
          layer-scale gammas of a checkpoint trained without them, ...), kept at their init;
        * ``unused``: checkpoint keys this model has no place for (e.g. ``ln1``);
        * ``loaded`` and ``dropped`` (keys outside ``prefix``).

        The loader is the checkpoint package's
        (:func:`mmvrwkv.engine.checkpoint.pretrained.load_pretrained_weights`).
        """
        from mmvrwkv.engine.checkpoint.pretrained import load_pretrained_weights
        return load_pretrained_weights(self, checkpoint, prefix=prefix,
                                       map_location=map_location, logger=logger,
                                       own_prefixes=ADAPTER_PREFIXES, own_name='adapter')

    def init_weights(self) -> None:
        """mmengine init; a ``Pretrained`` ``init_cfg`` goes through :meth:`load_pretrained`
        (reported keys, pos-embed resize) instead of mmengine's silent non-strict load."""
        cfgs = self.init_cfg
        cfg_list = [cfgs] if isinstance(cfgs, dict) else list(cfgs or [])
        pretrained = [c for c in cfg_list if c.get('type') == 'Pretrained']
        if not pretrained or self.is_init:
            return super().init_weights()
        others = [c for c in cfg_list if c.get('type') != 'Pretrained']
        self.init_cfg = others or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = cfgs
        for c in pretrained:
            self.load_pretrained(c['checkpoint'], prefix=c.get('prefix', 'backbone.'),
                                 map_location=c.get('map_location', 'cpu'))

    # ------------------------------------------------------------------ forward
    def _check_adapter_input(self, x: torch.Tensor) -> None:
        self._check_input(x)
        H, W = (int(s) for s in x.shape[-2:])
        if H % 32 or W % 32:
            raise ValueError(
                f'{type(self).__name__} needs input height and width that are multiples of '
                f'32, got input size {(H, W)} (shape {tuple(x.shape)}); pad or resize the images '
                f'(e.g. size_divisor=32 in the data preprocessor)')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Images ``[B, 3, H, W]`` (H, W multiples of 32) -> four maps ``[B, C, H/s, W/s]``,
        s = 4, 8, 16, 32."""
        self._check_adapter_input(x)
        B = x.shape[0]
        c1, c2, c3, c4 = self.spm(x)
        level_shapes = [tuple(c.shape[-2:]) for c in (c2, c3, c4)]
        c = torch.cat([lvl.flatten(2).transpose(1, 2) + self.level_embed[i]
                       for i, lvl in enumerate((c2, c3, c4))], dim=1)

        x, grid = self.patch_embed(x)
        x = x + self.resize_pos_embed(grid)
        x = self.drop_after_pos(x)
        inj_inputs, ext_inputs = deform_inputs(grid, level_shapes, device=x.device)

        stage_outs = []
        for interaction, (start, end) in zip(self.interactions, self.interaction_indexes):
            x, c = interaction(x, c, self.layers[start:end + 1], grid, inj_inputs, ext_inputs,
                               level_shapes)
            stage_outs.append(x)

        sizes = [h * w for h, w in level_shapes]
        c2, c3, c4 = (part.transpose(1, 2).reshape(B, -1, h, w)
                      for part, (h, w) in zip(c.split(sizes, dim=1), level_shapes))
        c1 = self.up(c2) + c1
        maps = [c1, c2, c3, c4]

        if self.add_rwkv_feature:
            feats = stage_outs if self.rwkv_feature_fusion == 'per_stage' \
                else [stage_outs[-1]] * 4
            for i, f in enumerate(feats):
                f = f.transpose(1, 2).reshape(B, -1, grid[0], grid[1])
                size = tuple(maps[i].shape[-2:])
                if tuple(f.shape[-2:]) != size:
                    f = F.interpolate(f, size=size, mode='bilinear', align_corners=False)
                maps[i] = maps[i] + f
        norms = (self.norm1, self.norm2, self.norm3, self.norm4)
        # The token -> map reshapes above give channels-last strided views, which norms and
        # convs carry through. Downstream ops may assume NCHW-contiguous memory: mmcv's
        # RoIAlign reads such a tensor as if it were NCHW and returns wrong features without
        # an error (open-mmlab/mmcv#2203; Mask R-CNN then cannot learn: the shapes demo was
        # stuck at 0.003 bbox mAP). So the maps leave here contiguous.
        return tuple(norm(m).contiguous() for norm, m in zip(norms, maps))


@MODELS.register_module()
class VRWKVAdapter(AdapterMixin, VRWKV):
    """VRWKV backbone with the ViT-Adapter of Vision-RWKV for dense prediction.

    :class:`AdapterMixin` over :class:`VRWKV`: the patch embedding, position embedding (and
    its resize) and the ``layers`` are VRWKV's own, so a classification checkpoint loads into
    the same keys. Around groups of blocks (``interaction_indexes``) it adds

    * a spatial prior module ``spm`` (conv stem, strides 4/8/16/32, norm from ``norm_cfg``,
      1x1 projections to C) whose stride-8/16/32 tokens (+ ``level_embed [3, C]``) form the
      multi-scale feature sequence ``c``;
    * per interaction an injector (``x += gamma * deform_attn(x -> c)``, 3 levels) before the
      blocks and an extractor (``c += deform_attn(c -> x)`` + ConvFFN with a depthwise 3x3
      conv per level) after them; the last interaction has two extra extractors
      (``use_extra_extractor``);
    * ``up`` (2x2 transposed conv) giving the stride-4 map ``c1 = up(c2) + spm_c1``;
    * output norms ``norm1..norm4`` (``norm_cfg``).

    Returns four maps ``[B, C, H/s, W/s]`` for s = 4, 8, 16, 32.

    The final LayerNorm ``ln1`` of VRWKV is not part of the adapter (it is never built, so the
    state dict has no ``ln1`` and a classification checkpoint's ``ln1`` is reported unused).

    Architectures (``arch``) use the detection/segmentation settings of the paper
    (explicit arguments override them): VRWKV's sizes, the :data:`DEFORM_ARCHS` of each size,
    and a layer-scale init of 1.0 for tiny (no layer scale in classification) and 1e-5 for
    small (1.0 in classification):

    ====== ========== ===== ========= =========== ======== ================ ============ ========
    arch   embed_dims depth post_norm init_values key_norm deform_num_heads deform_ratio img_size
    ====== ========== ===== ========= =========== ======== ================ ============ ========
    tiny   192        12    False     1.0         False    6                1.0          224
    small  384        12    True      1e-5        False    6                1.0          224
    base   768        12    True      1e-5        False    12               0.5          224
    large  1024       24    True      1e-5        True     16               0.5          192
    ====== ========== ===== ========= =========== ======== ================ ============ ========

    Input size: height and width must be multiples of 32 (the four output strides must tile
    the image exactly); anything else raises a ``ValueError`` naming the size. mmdet pads
    batches to 32 (``pad_size_divisor=32``); for mmseg use crops / ``ResizeToMultiple`` or a
    data preprocessor ``size_divisor`` of 32. Any ``patch_size`` works (the RWKV tokens are
    resampled to every level); the paper uses 16.

    Stochastic depth of the interactions: every extractor's ConvFFN branch uses the same
    DropPath rate, ``drop_path_rate`` (the backbone's maximum), as in the original code and
    the recipes of the paper's results; the blocks keep VRWKV's linear ramp.

    Args:
        arch: see the table; or a dict with ``embed_dims``, ``depth`` and optionally the
            other columns plus ``hidden_rate``.
        conv_inplane: width of the spatial prior stem (64).
        n_points: sampling points per head and level of the deformable attentions.
        deform_num_heads: heads of the deformable attentions (default: from arch).
        deform_ratio: value width ratio of the deformable attentions (default: from arch).
        init_values_inject: init of the injectors' ``gamma`` (0 = start as identity).
        interaction_indexes: ``[[start, end], ...]`` inclusive block ranges, contiguous and
            covering all blocks; default: four equal groups (needs ``depth % 4 == 0``).
        with_cffn: ConvFFN in the extractors.
        cffn_ratio: ConvFFN hidden width ratio.
        use_extra_extractor: two extra extractors after the last interaction.
        add_rwkv_feature: add RWKV token features (bilinearly resized) to the four maps.
        rwkv_feature_fusion: which features: 'final' (detection recipe: the last block's
            output added to all four levels) or 'per_stage' (segmentation recipe: the output
            of interaction i added to level i; needs exactly 4 interactions).
        norm_cfg: norm of the spatial prior module and of ``norm1..norm4``
            (``dict(type='BN')``; multi-GPU configs use ``dict(type='SyncBN')``).
        pretrained: checkpoint path/URL, short for ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained, prefix='backbone.')`` (mmseg's ``EncoderDecoder`` passes
            its ``pretrained`` here).
        **kwargs: the other :class:`VRWKV` arguments (``img_size``, ``patch_size``,
            ``drop_path_rate``, ``post_norm``, ``init_values``, ``with_cp``, ``init_cfg``, ...).
            ``with_cp`` also checkpoints the injectors/extractors. ``final_norm`` and
            ``out_indices`` do not apply.

    Pretrained weights: :meth:`load_pretrained`, or ``init_cfg=dict(type='Pretrained',
    checkpoint=..., prefix='backbone.')`` (handled by the same method at ``init_weights``),
    loads a VRWKV classification checkpoint, resizes ``pos_embed`` to this model's grid and
    logs the keys that were new (adapter parameters, layer-scale gammas missing from the
    checkpoint, ...) and the checkpoint keys that were unused (e.g. ``ln1``).
    """

    arch_zoo = adapter_arch_zoo(VRWKV, tiny=dict(init_values=1.0),
                                small=dict(init_values=1e-5))
    #: An arch dict without deformable-attention settings gets tiny's.
    arch_optional_keys = dict(VRWKV.arch_optional_keys, **DEFORM_ARCHS['tiny'])


@MODELS.register_module()
class VRWKV6Adapter(AdapterMixin, VRWKV6):
    """The adapter of :class:`VRWKVAdapter` (:class:`AdapterMixin`) around a
    :class:`VRWKV6` (its blocks, heads, cls-token-free tokens): the same spatial prior
    module, injectors / extractors, ``up`` and output norms, returning four maps
    ``[B, C, H/s, W/s]`` for s = 4, 8, 16, 32; a VRWKV6 classification checkpoint loads
    through :meth:`load_pretrained` (adapter keys reported as new, ``ln1`` as unused).

    The original has no VRWKV6 detection / segmentation recipe. ``arch`` takes VRWKV6's
    classification settings (so an ImageNet checkpoint fills every backbone key, layer scale
    included) and the deformable-attention settings of the VRWKV adapter of the same size
    (:data:`DEFORM_ARCHS`):

    ====== ========== ===== ========= ========= =========== ================ ============
    arch   embed_dims depth num_heads post_norm init_values deform_num_heads deform_ratio
    ====== ========== ===== ========= ========= =========== ================ ============
    tiny   192        12    3         False     None        6                1.0
    small  384        12    6         True      1e-5        6                1.0
    base   768        12    12        True      1e-5        12               0.5
    ====== ========== ===== ========= ========= =========== ================ ============

    Args: those of :class:`VRWKVAdapter` and of :class:`VRWKV6` (``num_heads``,
    ``shift_mode``, ``wkv_backend``, ...), except ``with_cls_token`` / ``output_cls_token``
    (the adapter works on the patch tokens only).
    """

    arch_zoo = adapter_arch_zoo(VRWKV6)
    arch_optional_keys = dict(VRWKV6.arch_optional_keys, **DEFORM_ARCHS['tiny'])

    def __init__(self, arch: Union[str, dict] = 'tiny', **kwargs) -> None:
        for name in ('with_cls_token', 'output_cls_token'):
            if kwargs.get(name):
                raise TypeError(f'VRWKV6Adapter does not take {name}=True: the adapter works '
                                f'on the patch tokens only')
        super().__init__(arch=arch, **kwargs)
