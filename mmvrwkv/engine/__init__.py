"""Training-side helpers of mmvrwkv (checkpoint loading, optimizer constructors)."""
from .checkpoint import allow_mmengine_checkpoints
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['allow_mmengine_checkpoints', 'LayerDecayOptimWrapperConstructor']
