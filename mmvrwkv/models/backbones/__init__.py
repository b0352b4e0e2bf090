"""Backbones of mmvrwkv (registered in ``mmvrwkv.registry.MODELS``)."""
from .vrwkv import VRWKV

__all__ = ['VRWKV']
