"""2-D feature-map norms from an OpenMMLab-style ``norm_cfg``, without mmcv (the adapter
imports with torch and mmengine only)."""
import torch.nn as nn

_NORM_TYPES = {
    'BN': nn.BatchNorm2d, 'BN2d': nn.BatchNorm2d, 'BatchNorm2d': nn.BatchNorm2d,
    'SyncBN': nn.SyncBatchNorm, 'SyncBatchNorm': nn.SyncBatchNorm,
    'GN': nn.GroupNorm, 'GroupNorm': nn.GroupNorm,
    'IN': nn.InstanceNorm2d, 'IN2d': nn.InstanceNorm2d, 'InstanceNorm2d': nn.InstanceNorm2d,
}


def build_norm2d(norm_cfg: dict, num_features: int) -> nn.Module:
    """Build a 2-D feature-map norm from an OpenMMLab-style ``norm_cfg`` without mmcv.

    ``type`` is one of 'BN' (BatchNorm2d), 'SyncBN' (SyncBatchNorm), 'GN' (GroupNorm, needs
    ``num_groups``) or 'IN' (InstanceNorm2d); the other keys are passed to the torch class,
    except ``requires_grad`` (False freezes the affine parameters).
    """
    if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
        raise ValueError(f'norm_cfg must be a dict with a "type" key, got {norm_cfg!r}')
    cfg = dict(norm_cfg)
    norm_type = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if isinstance(norm_type, type) and issubclass(norm_type, nn.Module):
        cls = norm_type
    elif norm_type in _NORM_TYPES:
        cls = _NORM_TYPES[norm_type]
    else:
        raise ValueError(f'unsupported norm type {norm_type!r} in norm_cfg; use one of '
                         f'{sorted(_NORM_TYPES)}')
    if cls is nn.GroupNorm:
        if 'num_groups' not in cfg:
            raise ValueError('norm_cfg of type GN needs num_groups')
        layer = nn.GroupNorm(num_channels=num_features, **cfg)
    else:
        layer = cls(num_features, **cfg)
    for p in layer.parameters():
        p.requires_grad_(requires_grad)
    return layer
