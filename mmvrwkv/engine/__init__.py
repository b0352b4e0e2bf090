"""Training-side helpers of mmvrwkv: safe checkpoint I/O, its hook, optimizer constructors."""
from .checkpoint import (CheckpointDigestError, CheckpointError, CorruptCheckpointError,
                         UnsafeCheckpointError, load_checkpoint_file,
                         register_checkpoint_loaders)
from .hooks import CheckpointMismatchError, SafeCheckpointHook, use_safe_checkpoint_hook
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = [
    'CheckpointDigestError', 'CheckpointError', 'CorruptCheckpointError',
    'UnsafeCheckpointError', 'load_checkpoint_file',
    'register_checkpoint_loaders', 'CheckpointMismatchError', 'SafeCheckpointHook',
    'use_safe_checkpoint_hook', 'LayerDecayOptimWrapperConstructor',
]
