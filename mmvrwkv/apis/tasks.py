"""Which upstream task a config belongs to, and how large its pictures are drawn: one rule for
``demo/image_demo.py`` and ``tools/test.py --show-dir``."""
import math
from typing import Mapping, Optional

#: Task name -> the ``default_scope`` of its configs (never 'mmvrwkv': a task config keeps
#: its package's scope and names our modules ``mmvrwkv.X``, see ``mmvrwkv/registry.py``).
TASK_SCOPES = {'cls': 'mmpretrain', 'det': 'mmdet', 'seg': 'mmseg'}
#: Pictures whose shorter side is below this are upscaled for display (the 8x8 digits).
MIN_DISPLAY_SIDE = 256


def config_task(cfg: Mapping, name: str = 'config') -> str:
    """'cls', 'det' or 'seg' from the config's ``default_scope``; ``ValueError`` otherwise."""
    scope = cfg.get('default_scope')
    for task, task_scope in TASK_SCOPES.items():
        if scope == task_scope:
            return task
    raise ValueError(
        f'{name}: cannot tell the task from default_scope={scope!r}; expected one of '
        + ', '.join(f'{s!r} ({t})' for t, s in TASK_SCOPES.items()))


def display_scale(height: int, width: int) -> int:
    """Integer factor that brings the shorter side to at least :data:`MIN_DISPLAY_SIDE`
    (1 for pictures that are large enough)."""
    if height < 1 or width < 1:
        raise ValueError(f'image size must be positive, got {height}x{width}')
    return max(1, math.ceil(MIN_DISPLAY_SIDE / min(height, width)))


def backbone_img_size(cfg: Mapping) -> Optional[int]:
    """The square input side of an mmvrwkv backbone in ``cfg.model``: its ``img_size`` if the
    config states it, else its ``arch``'s (from the class's ``arch_zoo``). ``None`` for other
    backbones or non-square sizes."""
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    side = backbone.get('img_size')
    if side is None:
        from mmvrwkv.registry import MODELS
        backbone_type = backbone.get('type')
        if not isinstance(backbone_type, str) or not backbone_type.startswith('mmvrwkv.'):
            return None
        cls = MODELS.get(backbone_type)
        arch = backbone.get('arch', 'tiny')
        zoo = getattr(cls, 'arch_zoo', None)
        if isinstance(arch, Mapping):
            side = arch.get('img_size', getattr(cls, 'arch_optional_keys', {}).get('img_size'))
        elif zoo is not None and arch in zoo:
            side = zoo[arch].get('img_size')
    if isinstance(side, (tuple, list)) and len(side) == 2 and side[0] == side[1]:
        side = side[0]
    return side if isinstance(side, int) else None
