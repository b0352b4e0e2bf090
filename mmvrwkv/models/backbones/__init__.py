"""Backbones of mmvrwkv (registered in ``mmvrwkv.registry.MODELS``)."""
from .vrwkv import VRWKV
from .vrwkv6 import VRWKV6
# torch + mmengine only (the adapter's deformable attention uses mmcv.ops lazily)
from .vrwkv_adapter import VRWKV6Adapter, VRWKVAdapter

__all__ = ['VRWKV', 'VRWKVAdapter', 'VRWKV6', 'VRWKV6Adapter']
