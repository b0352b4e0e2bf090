"""Safe checkpoint loading on torch >= 2.6.

torch >= 2.6 loads checkpoints with ``weights_only=True`` by default. Checkpoints written by
mmengine's Runner hold, besides tensors, the message hub (``HistoryBuffer`` objects with numpy
arrays) and numpy scalars in ``meta``, which the weights-only unpickler refuses, so mmengine
0.10.7's ``resume`` and ``load_from`` fail. Instead of switching the safety off
(``weights_only=False`` would run arbitrary pickled code), :func:`allow_mmengine_checkpoints`
adds exactly those classes to torch's allow-list. Call it once at an entry point
(tools/train.py and tools/test.py do).
"""
from typing import List

import torch


def _mmengine_checkpoint_globals() -> List[object]:
    import numpy as np
    from mmengine.logging import HistoryBuffer

    import builtins
    # HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, 'min'), ...
    # Allowing getattr only lets the unpickler look attributes up; the weights-only unpickler
    # still refuses to call anything that is not itself on the allow-list.
    allowed: List[object] = [HistoryBuffer, np.ndarray, np.dtype, builtins.getattr]
    # numpy's pickle helpers moved from numpy.core to numpy._core in numpy 2.
    for modname in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            mod = __import__(modname, fromlist=['_reconstruct', 'scalar'])
        except ImportError:
            continue
        allowed += [mod._reconstruct, mod.scalar]
        break
    # The dtype classes numpy pickles by type (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return allowed


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine Runner checkpoints (idempotent)."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch < 2.4 has no allow-list and no weights_only default
        add(_mmengine_checkpoint_globals())
