"""Hooks of mmvrwkv (registered in ``mmvrwkv.registry.HOOKS``)."""
from .safe_checkpoint_hook import (CheckpointMismatchError, SafeCheckpointHook,
                                   use_safe_checkpoint_hook)

__all__ = ['CheckpointMismatchError', 'SafeCheckpointHook', 'use_safe_checkpoint_hook']
