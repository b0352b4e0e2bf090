"""mmvrwkv: Vision-RWKV backbones for OpenMMLab 2.0."""
from .version import __version__

from importlib.util import find_spec as _find_spec

if _find_spec('mmengine') is not None:  # importing mmvrwkv registers its models
    from . import models  # noqa: F401  (mmvrwkv.ops alone still needs only torch)

__all__ = ['__version__']
