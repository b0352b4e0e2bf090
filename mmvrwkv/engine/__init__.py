"""Training-side helpers of mmvrwkv (checkpoint loading, optimizer constructors)."""
from .checkpoint import allow_mmengine_checkpoints

__all__ = ['allow_mmengine_checkpoints']
