"""Backbones of mmvrwkv (registered in ``mmvrwkv.registry.MODELS``)."""
from .vrwkv import VRWKV
from .vrwkv_adapter import VRWKVAdapter  # torch + mmengine only (mmcv.ops used lazily)

__all__ = ['VRWKV', 'VRWKVAdapter']
