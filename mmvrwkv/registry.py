"""Registries of mmvrwkv (scope ``'mmvrwkv'``).

Every registry here is a child of mmengine's root registry of the same kind, so a module
registered in mmvrwkv is reachable from any OpenMMLab 2.0 task package by its scoped name,
e.g. ``backbone=dict(type='mmvrwkv.VRWKV', ...)`` in an mmpretrain, mmdet or mmseg config
that keeps its own ``default_scope``. mmengine's ``Registry.get`` imports
``mmvrwkv.registry`` on demand when it meets the ``mmvrwkv.`` prefix, and ``locations``
makes the first look-up import ``mmvrwkv.models`` so that the modules are registered.

Nothing here (or anywhere in mmvrwkv) sets or changes the default scope: task configs must
keep their own (never ``default_scope='mmvrwkv'``).
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

#: Backbones and layers of mmvrwkv.
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmvrwkv',
                  locations=['mmvrwkv.models'])

#: Optimizer-wrapper constructors (layer-wise lr decay), e.g.
#: ``optim_wrapper=dict(constructor='mmvrwkv.LayerDecayOptimWrapperConstructor', ...)``.
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope='mmvrwkv',
                                      locations=['mmvrwkv.engine.optimizers'])

#: Hooks, e.g. ``default_hooks.checkpoint=dict(type='mmvrwkv.SafeCheckpointHook', ...)``.
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmvrwkv',
                 locations=['mmvrwkv.engine.hooks'])

__all__ = ['MODELS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'HOOKS']
