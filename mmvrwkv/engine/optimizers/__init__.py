"""Optimizer-wrapper constructors of mmvrwkv (registered in
``mmvrwkv.registry.OPTIM_WRAPPER_CONSTRUCTORS``)."""
from .layer_decay_optim_wrapper_constructor import LayerDecayOptimWrapperConstructor, is_no_decay

__all__ = ['LayerDecayOptimWrapperConstructor', 'is_no_decay']
