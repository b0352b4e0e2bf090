"""VRWKV6 backbone: Vision-RWKV with RWKV-6 ("Finch") spatial mixing, for OpenMMLab 2.0.

Needs only torch and mmengine. VRWKV6 is :class:`~.vrwkv.VRWKV` with other blocks: the
construction, the patch and position embedding (and its resize), out_indices, layer ids for
lr decay, the input checks and the forward loop are VRWKV's own. What VRWKV6 sets is what
differs, through VRWKV's hooks: ``block_type`` / ``_block_kwargs`` (the
:class:`~mmvrwkv.models.layers.Block6` s and their heads), ``_add_tokens`` and ``_output``
(the optional class token), and its ``arch_zoo``.
"""
import inspect
from numbers import Integral
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from mmvrwkv.registry import MODELS
from ..layers.block6 import Block6
from .vrwkv import VRWKV, arch_table

#: Channels per head of the released VRWKV6 models (the default head count is C // 64).
HEAD_SIZE = 64
#: VRWKV arguments that VRWKV6 does not take: its blocks have no such setting.
V1_ONLY_ARGS = ('channel_gamma', 'attn_direction')
#: The VRWKV arguments VRWKV6 passes on (``**kwargs``).
_INHERITED_ARGS = frozenset(inspect.signature(VRWKV.__init__).parameters) - {
    'self', 'arch', 'shift_mode', *V1_ONLY_ARGS}


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

    Architectures (``arch``; explicit constructor arguments override these values). The
    sizes are VRWKV's; VRWKV6 adds the heads (64 channels each) and small's layer scale:

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
        with_cls_token: append a learned class token (zero-initialised) at the **end** of the
            sequence, after the position embedding, as the original; the token shift leaves
            it alone.
        output_cls_token: emit ``(feature map, class token [B, C])`` pairs instead of maps
            (needs ``with_cls_token``).
        **kwargs: the other arguments of :class:`VRWKV`, with its defaults: ``img_size``,
            ``patch_size``, ``in_channels``, ``out_indices``, ``drop_rate``, ``embed_dims``,
            ``depth``, ``drop_path_rate``, ``shift_pixel`` (token-shift distance; 0 disables
            the shift), ``init_mode`` ('fancy', the only init of the original),
            ``post_norm``, ``key_norm``, ``init_values``, ``hidden_rate``, ``final_norm``,
            ``interpolate_mode``, ``with_cp``, ``wkv_backend`` (backend of
            :func:`mmvrwkv.ops.bi_wkv6`; 'auto' picks the compiled kernel for the device when
            available) and ``init_cfg``. VRWKV's ``channel_gamma`` and ``attn_direction``
            do not exist in v6 (``TypeError``).
    """

    arch_zoo = arch_table({
        'tiny': dict(VRWKV.arch_zoo['tiny'], num_heads=3),
        'small': dict(VRWKV.arch_zoo['small'], init_values=1e-5, num_heads=6),
        'base': dict(VRWKV.arch_zoo['base'], num_heads=12),
    })
    arch_optional_keys = dict(VRWKV.arch_optional_keys, num_heads=None)
    block_type = Block6

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 *,
                 num_heads: Optional[int] = None,
                 shift_mode: str = 'q_shift_multihead',
                 with_cls_token: bool = False,
                 output_cls_token: bool = False,
                 **kwargs) -> None:
        for name in kwargs:
            if name not in _INHERITED_ARGS:  # as Python words it for a fixed signature
                raise TypeError(f'VRWKV6.__init__() got an unexpected keyword argument '
                                f'{name!r}')
        if output_cls_token and not with_cls_token:
            raise ValueError('output_cls_token=True needs with_cls_token=True')
        cfg = self._resolve_arch(arch)
        embed_dims = kwargs.get('embed_dims')
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
        # VRWKV's construction; its _build_layers makes Block6 s with _block_kwargs below.
        super().__init__(arch=cfg, shift_mode=shift_mode, **kwargs)
        self.num_heads = num_heads
        self.with_cls_token = bool(with_cls_token)
        self.output_cls_token = bool(output_cls_token)
        if self.with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def _block_kwargs(self) -> dict:
        return dict(num_heads=self.arch_settings['num_heads'])

    def _add_tokens(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        if self.with_cls_token:
            x = torch.cat([x, self.cls_token.expand(batch, -1, -1)], dim=1)
        return x

    def _output(self, x: torch.Tensor, batch: int, patch_resolution: Tuple[int, int]
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """The map of the patch tokens, or ``(map, class token [B, C])`` with
        ``output_cls_token``."""
        H, W = patch_resolution
        fmap = super()._output(x[:, :H * W], batch, patch_resolution)
        return (fmap, x[:, -1]) if self.output_cls_token else fmap
