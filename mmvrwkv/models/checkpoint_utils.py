"""Finding the weights inside a checkpoint: one rule for ``VRWKVAdapter.load_pretrained`` and
``tools/model_converters/vrwkv2mmvrwkv.py``."""
from typing import Dict, List, Mapping, Tuple

import torch

#: Wrapper keys holding the weights, in the order they are tried.
WRAPPER_KEYS = ('state_dict', 'model', 'module')
#: Keys under which official (InternImage-style) and timm checkpoints keep EMA weights.
#: Not mmengine's 'ema_state_dict': EMAHook swaps it with 'state_dict' when saving, so
#: there it holds the raw weights and 'state_dict' the averaged ones.
EMA_KEYS = ('model_ema', 'state_dict_ema')
#: Nesting depth guard of :func:`find_state_dict`.
_MAX_DEPTH = 8


def _keys(obj: Mapping, limit: int = 10) -> str:
    keys = [str(k) for k in obj]
    return ', '.join(keys[:limit]) + (f', ... ({len(keys) - limit} more)'
                                      if len(keys) > limit else '')


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def find_state_dict(checkpoint: object, ema: bool = False
                    ) -> Tuple[Dict[str, object], List[str]]:
    """The weights of ``checkpoint`` and the wrapper keys that led to them.

    Descends through :data:`WRAPPER_KEYS` (possibly nested) until a dict of tensors; with
    ``ema`` it first enters one of :data:`EMA_KEYS`. A dict that holds some tensors but no
    wrapper is taken as a raw state dict. Raises ``ValueError`` (naming the keys it saw) when
    there are no weights.
    """
    obj, path = checkpoint, []
    if ema:
        if not isinstance(obj, Mapping):
            raise ValueError('--ema: the checkpoint is not a dict')
        for key in EMA_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                path.append(key)
                break
        else:
            raise ValueError(f'--ema: no EMA weights in the checkpoint (looked for '
                             f'{", ".join(EMA_KEYS)}; top-level keys: {_keys(obj)})')
    for _ in range(_MAX_DEPTH):
        where = '/'.join(path) or 'the top level'
        if not isinstance(obj, Mapping):
            raise ValueError(f'expected a dict of tensors under {where}, '
                             f'got {type(obj).__name__}')
        if _is_state_dict(obj):
            break
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                path.append(key)
                break
        else:
            if not any(isinstance(v, torch.Tensor) for v in obj.values()):
                raise ValueError(f'no weights found: expected a state dict, raw or wrapped in '
                                 f'{" / ".join(WRAPPER_KEYS)}; keys under {where}: '
                                 f'{_keys(obj)}')
            break  # a raw state dict with some non-tensor entries
    return dict(obj), path
