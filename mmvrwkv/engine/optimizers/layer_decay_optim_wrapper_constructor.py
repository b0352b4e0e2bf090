"""Layer-wise learning-rate decay for VRWKV / VRWKVAdapter fine-tuning (mmengine)."""
from typing import List, Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from mmvrwkv.registry import OPTIM_WRAPPER_CONSTRUCTORS

def is_no_decay(name: str, param: nn.Parameter, prefix: str = 'backbone.') -> bool:
    """True for parameters trained without weight decay: 1-D tensors (norm weights and
    biases, Bi-WKV ``spatial_decay``/``spatial_first``, layer-scale gammas), names ending in
    ``.bias``, and the backbone's embedding parameters (``VRWKV.EMBED_PARAMS``: pos_embed,
    cls/mask tokens). ``spatial_mix_*`` (``[1, 1, C]``) and ``level_embed`` (``[3, C]``) keep
    weight decay."""
    from mmvrwkv.models.backbones.vrwkv import VRWKV
    if param.ndim <= 1 or name.endswith('.bias'):
        return True
    short = name[len(prefix):] if name.startswith(prefix) else name
    return short in VRWKV.EMBED_PARAMS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper with layer-wise learning-rate decay (BEiT-style) for VRWKV backbones.

    Use from an mmdet / mmseg / mmpretrain config (which keeps its own default scope)::

        optim_wrapper = dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
            constructor='mmvrwkv.LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.85))

    With N = ``num_layers + 2`` and the layer ids of the backbone's ``get_layer_depth``
    (0 = embeddings, i + 1 = block i, N - 1 = everything else), a parameter's learning rate is
    ``base_lr * layer_decay_rate ** (N - 1 - layer_id)``: the embeddings get
    ``rate ** (num_layers + 1)``, block i ``rate ** (num_layers - i)`` and all non-backbone
    parameters (adapter, neck, heads) the full ``base_lr``. Weight decay is the optimizer's
    ``weight_decay`` except for the parameters of :func:`is_no_decay` (0).

    Every parameter group carries ``lr`` (already scaled), ``lr_scale`` and
    ``weight_decay``; mmengine's parameter schedulers scale each group's own initial lr, so
    the decay survives warm-up and lr schedules. Frozen parameters (``requires_grad=False``)
    are left out of the optimizer.

    Difference from the original Vision-RWKV constructor: its "no weight decay" name check
    compared full names (``backbone.pos_embed``) with bare ones (``pos_embed``), so it never
    matched and ``pos_embed`` was decayed; here the ``backbone.`` prefix is removed first, so
    ``pos_embed`` (and cls/mask tokens) really get no weight decay.

    ``paramwise_cfg`` keys:
        num_layers (int): blocks of the backbone (12 for T/S/B, 24 for L). If omitted, the
            model's ``backbone.num_layers`` is used.
        layer_decay_rate (float): decay per layer, in (0, 1].
        backbone_prefix (str, optional): name prefix of the backbone's parameters
            (default ``'backbone.'``; ``''`` when the model is the bare backbone).
    """

    _KEYS = ('num_layers', 'layer_decay_rate', 'backbone_prefix')

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = sorted(set(paramwise_cfg) - set(self._KEYS))
        if unknown:
            raise ValueError(f'LayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys '
                             f'{unknown} (allowed: {list(self._KEYS)})')
        if 'layer_decay_rate' not in paramwise_cfg:
            raise ValueError('LayerDecayOptimWrapperConstructor needs '
                             'paramwise_cfg=dict(layer_decay_rate=..., num_layers=...)')
        rate = paramwise_cfg['layer_decay_rate']
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'layer_decay_rate must be in (0, 1], got {rate!r}')
        num_layers = paramwise_cfg.get('num_layers')
        if num_layers is not None and (isinstance(num_layers, bool)
                                       or not isinstance(num_layers, int) or num_layers < 1):
            raise ValueError(f'num_layers must be a positive int, got {num_layers!r}')
        # The base class validates only its own keys; keep ours out of its sight.
        super().__init__(optim_wrapper_cfg, None)
        self.paramwise_cfg = paramwise_cfg
        if self.base_lr is None:
            raise ValueError('LayerDecayOptimWrapperConstructor needs optimizer.lr')

    def __call__(self, model: nn.Module):
        # The base class builds the optimizer from model.parameters() when paramwise_cfg is
        # empty; it is never empty here (layer_decay_rate is required).
        return super().__call__(model)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        """Append one parameter group per (layer id, decay / no decay) to ``params``."""
        cfg = self.paramwise_cfg
        backbone_prefix = cfg.get('backbone_prefix', 'backbone.')
        backbone = module if backbone_prefix == '' else getattr(
            module, backbone_prefix.rstrip('.'), None)
        if not callable(getattr(backbone, 'get_layer_depth', None)):
            raise ValueError(f'LayerDecayOptimWrapperConstructor: the model has no backbone '
                             f'at {backbone_prefix!r} with get_layer_depth() (a VRWKV '
                             f'backbone); set paramwise_cfg.backbone_prefix')
        num_layers = cfg.get('num_layers')
        if num_layers is None:
            num_layers = backbone.num_layers
        elif num_layers != backbone.num_layers:
            raise ValueError(f'paramwise_cfg.num_layers={num_layers} but the backbone has '
                             f'{backbone.num_layers} blocks')
        rate = float(cfg['layer_decay_rate'])
        top = num_layers + 1  # N - 1 with N = num_layers + 2
        base_wd = self.base_wd or 0.

        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            name = prefix + name
            layer_id, _ = backbone.get_layer_depth(name, backbone_prefix)
            no_decay = is_no_decay(name, param, backbone_prefix)
            key = (layer_id, no_decay)
            if key not in groups:
                scale = rate ** (top - layer_id)
                kind = 'no_decay' if no_decay else 'decay'
                groups[key] = dict(params=[], param_names=[], lr=scale * self.base_lr,
                                   lr_scale=scale, weight_decay=0. if no_decay else base_wd,
                                   layer_id=layer_id, group_name=f'layer_{layer_id}_{kind}')
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)

        ordered = [groups[k] for k in sorted(groups)]
        lines = [f'Layer-wise lr decay: num_layers={num_layers}, rate={rate}, '
                 f'base_lr={self.base_lr}, base_wd={base_wd}']
        for g in ordered:
            lines.append(f"  {g['group_name']}: lr_scale={g['lr_scale']:.4g} "
                         f"wd={g['weight_decay']} params={len(g['params'])}")
        print_log('\n'.join(lines), logger='current')
        params.extend(ordered)
