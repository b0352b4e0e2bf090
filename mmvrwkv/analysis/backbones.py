"""The backbones the analysis tools build and compare: mmvrwkv's VRWKV / VRWKV6, and the ViT
baseline (DeiT arch of the same size) from mmpretrain or torchvision.

Every builder returns a backbone only (no neck or head) whose output is a tuple ending in
the last feature map ``[B, C, H / patch, W / patch]``. mmvrwkv's models, mmpretrain and
torchvision are imported inside the builders: the GPU check machines have no mmpretrain.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn

#: ViT/DeiT of the same size as VRWKV-T/S/B (mmpretrain's 'deit-*' archs).
VIT_ARCHS = {
    'tiny': dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768),
    'small': dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
}
#: Where the ViT baseline comes from ('auto': mmpretrain when it imports, else torchvision).
BASELINES = ('auto', 'mmpretrain', 'torchvision')


def _importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception:  # noqa: BLE001  (mmpretrain fails with ImportError or mmcv errors)
        return False


def resolve_baseline(name: str, error: Optional[Callable[[str], None]] = None) -> str:
    """'auto' -> 'mmpretrain' when importable, else 'torchvision'; check availability
    (``error(msg)``, e.g. a parser's, or ImportError when it is not importable)."""
    if name == 'auto':
        name = 'mmpretrain' if _importable('mmpretrain.models') else 'torchvision'
    module = {'mmpretrain': 'mmpretrain.models', 'torchvision': 'torchvision.models'}[name]
    if not _importable(module):
        msg = f'--baseline {name}: {module} cannot be imported'
        if error is None:
            raise ImportError(msg)
        error(msg)
    return name


class TorchvisionViT(nn.Module):
    """torchvision's ViT as a backbone: patch embedding, class token, encoder (position
    embedding, blocks, final LayerNorm); returns the patch tokens as ``[B, C, H', W']``."""

    def __init__(self, embed_dims, num_layers, num_heads, feedforward_channels, img_size,
                 patch_size=16):
        super().__init__()
        from torchvision.models.vision_transformer import VisionTransformer
        self.vit = VisionTransformer(
            image_size=img_size, patch_size=patch_size, num_layers=num_layers,
            num_heads=num_heads, hidden_dim=embed_dims, mlp_dim=feedforward_channels)
        self.vit.heads = nn.Identity()

    def forward(self, x):
        B = x.shape[0]
        hw = (x.shape[2] // self.vit.patch_size, x.shape[3] // self.vit.patch_size)
        x = self.vit._process_input(x)
        x = torch.cat([self.vit.class_token.expand(B, -1, -1), x], dim=1)
        x = self.vit.encoder(x)
        return (x[:, 1:].transpose(1, 2).reshape(B, -1, *hw), )


def build_vit(arch: str, img_size: int, patch_size: int = 16, baseline: str = 'auto',
              depth: Optional[int] = None) -> nn.Module:
    """The DeiT-``arch`` baseline (``VIT_ARCHS``) from ``baseline`` (see ``BASELINES``), with
    ``depth`` blocks instead of 12 when given; returns ``(featmap, )``."""
    spec = dict(VIT_ARCHS[arch])
    if depth is not None:
        spec['num_layers'] = depth
    if resolve_baseline(baseline) == 'mmpretrain':
        from mmpretrain.models import VisionTransformer
        return VisionTransformer(arch=spec, img_size=img_size, patch_size=patch_size,
                                 out_type='featmap')
    return TorchvisionViT(img_size=img_size, patch_size=patch_size, **spec)


def vrwkv6_class() -> Optional[type]:
    """``mmvrwkv.VRWKV6`` from the registry, or None where it is not registered."""
    import mmvrwkv.models  # noqa: F401  (registers the backbones)
    from mmvrwkv.registry import MODELS as REGISTRY
    return REGISTRY.get('VRWKV6')


def build_vrwkv(arch: str, img_size: int, patch_size: int = 16, depth: Optional[int] = None,
                version: str = 'vrwkv', **kwargs) -> nn.Module:
    """``VRWKV`` (``version='vrwkv'``) or ``VRWKV6`` (``'vrwkv6'``) of ``arch`` at
    ``img_size``, with ``depth`` blocks when given and any other backbone ``kwargs``
    (``wkv_backend``, ``attn_direction``, ``shift_mode``, ...)."""
    if version not in ('vrwkv', 'vrwkv6'):
        raise ValueError(f"version must be 'vrwkv' or 'vrwkv6', got {version!r}")
    if version == 'vrwkv':
        from mmvrwkv.models.backbones import VRWKV as cls
    else:
        cls = vrwkv6_class()
        if cls is None:
            raise ValueError("model 'vrwkv6': mmvrwkv.VRWKV6 is not registered")
    kwargs = dict(arch=arch, img_size=img_size, patch_size=patch_size, **kwargs)
    if depth is not None:
        kwargs['depth'] = depth
    return cls(**kwargs)
