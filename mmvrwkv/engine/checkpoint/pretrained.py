"""Loading a classification checkpoint into a backbone, with a report of every key.

What ``VRWKVAdapter.load_pretrained`` does (the adapter delegates here): read the file
through mmengine's ``CheckpointLoader`` (so through the gate, ``schemes.py``), find the
weights (:func:`~.state_dict.find_state_dict`), strip a DDP ``module.``, keep the keys under
a prefix, load non-strictly (the model's load hooks run, e.g. VRWKV's ``pos_embed`` resize;
a shape mismatch raises as in torch) and say what was new, unused and dropped.
"""
import logging
from collections import OrderedDict
from typing import Dict, List, Sequence, Union

import torch
from mmengine.logging import print_log

from .matching import revise_keys
from .state_dict import find_state_dict, select_prefix


def summarize_keys(keys: Sequence[str], module: torch.nn.Module,
                   groups: Sequence[str] = ()) -> str:
    """Compact listing of ``keys``: keys under one of the sub-modules ``groups`` of
    ``module`` collapse to ``name.* (count)`` (``name.i.* (count)`` for an item of an
    ``nn.ModuleList``); other keys are listed by name."""
    depth = {name: 2 if isinstance(getattr(module, name, None), torch.nn.ModuleList) else 1
             for name in groups}
    counts: 'OrderedDict[str, int]' = OrderedDict()
    for key in keys:
        parts = key.split('.')
        d = depth.get(parts[0])
        head = '.'.join(parts[:d]) + '.*' if d is not None and len(parts) > d else key
        counts[head] = counts.get(head, 0) + 1
    return ', '.join(f'{h} ({n})' if h.endswith('.*') else h for h, n in counts.items())


def load_pretrained_weights(module: torch.nn.Module, checkpoint: Union[str, dict],
                            prefix: str = 'backbone.',
                            map_location: Union[str, torch.device] = 'cpu',
                            logger: Union[str, logging.Logger, None] = 'current',
                            own_prefixes: Sequence[str] = (), own_name: str = 'adapter'
                            ) -> Dict[str, List[str]]:
    """Load ``checkpoint`` (path/URL or loaded dict) into ``module`` and report the keys.

    ``own_prefixes`` name what only ``module`` has (no classification checkpoint holds it,
    e.g. the adapter's sub-modules): its new keys are listed apart, under ``own_name``, and
    are no reason to warn. Returns ``dict(loaded, new, unused, dropped)``; see
    ``VRWKVAdapter.load_pretrained``.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    source = checkpoint if isinstance(checkpoint, str) else '<state dict>'
    if isinstance(checkpoint, str):
        checkpoint = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise TypeError(f'checkpoint {source} holds a {type(checkpoint).__name__}, '
                        f'not a dict')
    state_dict, _ = find_state_dict(checkpoint)
    state_dict, dropped = select_prefix(revise_keys(state_dict), prefix)
    result = module.load_state_dict(state_dict, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    loaded = [k for k in state_dict if k not in set(unexpected)]
    own_prefixes = tuple(own_prefixes)
    own_new = [k for k in missing if k.startswith(own_prefixes)]
    other_new = [k for k in missing if not k.startswith(own_prefixes)]
    groups = [p.rstrip('.') for p in own_prefixes if p.endswith('.')]

    def summary(keys: Sequence[str]) -> str:
        return summarize_keys(keys, module, groups)

    lines = [f'{type(module).__name__}: loaded {len(loaded)} tensors from {source}'
             + (f" (prefix '{prefix}')" if prefix else '')]
    if dropped:
        lines.append(f'  dropped {len(dropped)} keys outside the prefix: {summary(dropped)}')
    lines.append(f'  new (not in the checkpoint, kept at init): {len(missing)} keys')
    if own_new:
        lines.append(f'    {own_name}: {summary(own_new)}')
    if other_new:
        lines.append(f'    backbone: {summary(other_new)}')
    lines.append(f'  unused (in the checkpoint, no such key here): {len(unexpected)} keys'
                 + (f': {summary(unexpected)}' if unexpected else ''))
    level = logging.WARNING if other_new or unexpected else logging.INFO
    print_log('\n'.join(lines), logger=logger, level=level)
    return dict(loaded=loaded, new=missing, unused=unexpected, dropped=dropped)
