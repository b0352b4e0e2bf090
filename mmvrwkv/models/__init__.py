"""Models of mmvrwkv. Importing this package registers them in ``mmvrwkv.registry.MODELS``."""
from .backbones import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
