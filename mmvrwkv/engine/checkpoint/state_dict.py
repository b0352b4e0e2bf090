"""Finding the weights inside a loaded checkpoint, and picking the part a module takes.

One rule for every reader of foreign checkpoints: the adapter's ``load_pretrained``
(:mod:`.pretrained`), the converter (:mod:`.conversion`, :mod:`.file_conversion`) and the
model hub (``mmvrwkv.apis.model_hub``). The checkpoint itself is read by
:func:`~.loading.load_checkpoint_file` before any of this runs.
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from .matching import short_list

#: Wrapper keys holding the weights, in the order they are tried.
WRAPPER_KEYS = ('state_dict', 'model', 'module')
#: Keys under which official (InternImage-style) and timm checkpoints keep EMA weights.
#: Not mmengine's 'ema_state_dict': EMAHook swaps it with 'state_dict' when saving, so
#: there it holds the raw weights and 'state_dict' the averaged ones.
EMA_KEYS = ('model_ema', 'state_dict_ema')
#: Nesting depth guard of :func:`find_state_dict`.
_MAX_DEPTH = 8
#: Keys listed in the messages of :func:`find_state_dict`.
_LISTED = 10


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _first_dict_under(obj: Mapping, keys: Sequence[str]) -> Optional[str]:
    """The first of ``keys`` whose value in ``obj`` is a dict, or None."""
    return next((key for key in keys if isinstance(obj.get(key), Mapping)), None)


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
        key = _first_dict_under(obj, EMA_KEYS)
        if key is None:
            raise ValueError(f'--ema: no EMA weights in the checkpoint (looked for '
                             f'{", ".join(EMA_KEYS)}; top-level keys: '
                             f'{short_list(obj, _LISTED)})')
        obj = obj[key]
        path.append(key)
    for _ in range(_MAX_DEPTH):
        where = '/'.join(path) or 'the top level'
        if not isinstance(obj, Mapping):
            raise ValueError(f'expected a dict of tensors under {where}, '
                             f'got {type(obj).__name__}')
        if _is_state_dict(obj):
            break
        key = _first_dict_under(obj, WRAPPER_KEYS)
        if key is None:
            if not any(isinstance(v, torch.Tensor) for v in obj.values()):
                raise ValueError(f'no weights found: expected a state dict, raw or wrapped in '
                                 f'{" / ".join(WRAPPER_KEYS)}; keys under {where}: '
                                 f'{short_list(obj, _LISTED)}')
            break  # a raw state dict with some non-tensor entries
        obj = obj[key]
        path.append(key)
    return dict(obj), path


def has_ema_weights(checkpoint: object) -> bool:
    """Whether ``checkpoint`` also holds EMA weights under one of :data:`EMA_KEYS`."""
    return isinstance(checkpoint, Mapping) and _first_dict_under(checkpoint, EMA_KEYS) is not None


def select_prefix(state_dict: Mapping[str, object], prefix: str
                  ) -> Tuple['OrderedDict[str, object]', List[str]]:
    """The entries under ``prefix`` (with it removed) and the keys outside it.

    When no key starts with ``prefix`` (or it is empty), every entry is kept as it is and
    nothing is dropped: a bare backbone state dict loads like a classifier's.
    """
    if not prefix or not any(k.startswith(prefix) for k in state_dict):
        return OrderedDict(state_dict), []
    selected: 'OrderedDict[str, object]' = OrderedDict()
    dropped: List[str] = []
    for key, value in state_dict.items():
        if key.startswith(prefix):
            selected[key[len(prefix):]] = value
        else:
            dropped.append(key)
    return selected, dropped
