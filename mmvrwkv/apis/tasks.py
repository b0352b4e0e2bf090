"""Which upstream task a config belongs to, and how large its pictures are drawn: one rule for
``demo/image_demo.py`` and ``tools/test.py --show-dir``."""
import math
from typing import Mapping

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
