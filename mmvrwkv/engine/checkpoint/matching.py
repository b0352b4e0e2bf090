"""Does a state dict fit a model? Missing keys, unexpected keys and shape mismatches."""
import re
from collections import OrderedDict
from typing import Iterable, List, Mapping, NamedTuple, Sequence, Tuple

import torch

#: Lists in messages are cut after this many entries.
MAX_LISTED = 10


class StateDictMismatch(NamedTuple):
    missing: List[str]                                   # in the model, not in the checkpoint
    unexpected: List[str]                                # in the checkpoint, not in the model
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]  # key, ckpt, model shape

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = MAX_LISTED) -> str:
        parts = []
        if self.missing:
            parts.append(f'{len(self.missing)} missing key(s) (in the model, not in the '
                         f'checkpoint): {short_list(self.missing, limit)}')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} unexpected key(s) (not in the model): '
                         f'{short_list(self.unexpected, limit)}')
        if self.mismatched:
            parts.append(f'{len(self.mismatched)} shape mismatch(es): ' + short_list(
                [f'{k} {list(c)} vs model {list(m)}' for k, c, m in self.mismatched], limit))
        return '; '.join(parts)


def short_list(items: Iterable[object], limit: int = MAX_LISTED) -> str:
    """``a, b, c, ... (N more)``."""
    items = list(items)
    text = ', '.join(str(i) for i in items[:limit])
    if len(items) > limit:
        text += f', ... ({len(items) - limit} more)'
    return text


def _shape(value: object) -> Tuple[int, ...]:
    shape = value.shape if isinstance(value, torch.Tensor) else value
    return tuple(int(s) for s in shape)  # type: ignore[union-attr]


def compare_state_dict(checkpoint: Mapping[str, object], reference: Mapping[str, object]
                       ) -> StateDictMismatch:
    """Compare keys and shapes; values of both may be tensors or shapes.

    Non-tensor entries of ``checkpoint`` (e.g. ``_extra_state``) count as present when the
    reference has the key and are never shape-checked.
    """
    missing = [k for k in reference if k not in checkpoint]
    unexpected = [k for k in checkpoint if k not in reference]
    mismatched = []
    for k in reference:
        if k in checkpoint and isinstance(checkpoint[k], (torch.Tensor, torch.Size, tuple)):
            c, m = _shape(checkpoint[k]), _shape(reference[k])
            if c != m:
                mismatched.append((k, c, m))
    return StateDictMismatch(missing, unexpected, mismatched)


def revise_keys(state_dict: Mapping[str, object],
                rules: Sequence[Tuple[str, str]] = ((r'^module\.', ''),)) -> dict:
    """Apply mmengine's ``revise_keys`` regex rules (default: strip a DDP ``module.``)."""
    out = dict(state_dict)
    for pattern, repl in rules:
        out = {re.sub(pattern, repl, k): v for k, v in out.items()}
    return out


#: torch's message for a tensor whose shape differs from the model's (``_load_from_state_dict``).
_SIZE_MISMATCH_RE = re.compile(
    r'size mismatch for (?P<key>\S+): copying a param with shape torch\.Size\(\[(?P<ckpt>[^\]]*)'
    r'\]\) from checkpoint, the shape in current model is torch\.Size\(\[(?P<model>[^\]]*)\]\)')


def _ints(text: str) -> Tuple[int, ...]:
    return tuple(int(s) for s in text.split(',') if s.strip())


def load_state_dict_reporting(module: torch.nn.Module, state_dict: Mapping[str, object]
                              ) -> Tuple[StateDictMismatch, List[str]]:
    """Load what fits of ``state_dict`` into ``module`` and report what did not.

    The load is torch's own, module by module, so that every load hook of the model runs
    (``pos_embed`` resizing, key renames of old checkpoints): a checkpoint only counts as
    mismatched for what the model still cannot take after its hooks. Returns the mismatch
    (missing keys other than BatchNorm's ``num_batches_tracked`` counters, unexpected keys,
    shape mismatches) and the other errors torch reported (e.g. a value that is not a
    tensor). The caller decides whether to refuse; a module refused this way holds a partial
    load and is not to be used.
    """
    from mmengine.model import is_model_wrapper

    metadata = getattr(state_dict, '_metadata', None)
    missing: List[str] = []
    unexpected: List[str] = []
    errors: List[str] = []

    def load(mod: torch.nn.Module, local: dict, prefix: str = '') -> None:
        while is_model_wrapper(mod):
            mod = mod.module
        local_metadata = {} if metadata is None else metadata.get(prefix[:-1], {})
        mod._load_from_state_dict(local, prefix, local_metadata, True, missing, unexpected,
                                  errors)
        for name, child in mod._modules.items():
            if child is not None:
                child_prefix = prefix + name + '.'
                load(child, {k: v for k, v in local.items() if k.startswith(child_prefix)},
                     child_prefix)
        incompatible = torch.nn.modules.module._IncompatibleKeys(missing, unexpected)
        for hook in mod._load_state_dict_post_hooks.values():
            hook(mod, incompatible)

    with torch.no_grad():
        load(module, OrderedDict(state_dict))
    mismatched, other = [], []
    for message in errors:
        found = _SIZE_MISMATCH_RE.search(message)
        if found:
            mismatched.append((found['key'], _ints(found['ckpt']), _ints(found['model'])))
        else:
            other.append(message.strip())
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]
    return StateDictMismatch(missing, unexpected, mismatched), other
