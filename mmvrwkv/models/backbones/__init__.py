"""Backbones of mmvrwkv (registered in ``mmvrwkv.registry.MODELS``)."""
from .vrwkv import VRWKV
from .vrwkv6 import VRWKV6
from .vrwkv_adapter import VRWKV6Adapter, VRWKVAdapter  # torch + mmengine only (mmcv.ops used lazily)

__all__ = ['VRWKV', 'VRWKVAdapter', 'VRWKV6', 'VRWKV6Adapter']
