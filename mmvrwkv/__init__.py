"""mmvrwkv: Vision-RWKV backbones for OpenMMLab 2.0."""
from .version import __version__

from importlib.util import find_spec as _find_spec

if _find_spec('mmengine') is not None:  # importing mmvrwkv registers its models
    from . import models  # noqa: F401  (mmvrwkv.ops alone still needs only torch)
    # ... and makes every mmengine checkpoint load (load_from, resume, Pretrained init,
    # the upstream inferencers, every CheckpointLoader scheme) go through the safe loader.
    from .engine import register_checkpoint_loaders
    register_checkpoint_loaders()
    # ... and makes upstream callers strict: inferencers with model=None refuse (their config
    # text would run as code), get_model / inferencers / Pretrained init refuse mismatches.
    from .engine.checkpoint.upstream import install_upstream_patches
    install_upstream_patches()
    if _find_spec('mmpretrain') is not None:  # get_model / list_models know our classifiers
        try:
            from mmpretrain.apis import model as _mmpretrain_hub  # noqa: F401
        except ImportError:  # installed but unusable (e.g. no mmcv): no hub to register with
            pass
        else:
            from .apis import register_mmpretrain_models
            register_mmpretrain_models()

__all__ = ['__version__']
