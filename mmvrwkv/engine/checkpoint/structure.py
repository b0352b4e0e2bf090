"""The shape of an mmengine checkpoint, checked after unpickling.

torch's weights-only unpickler only guarantees that every object is of an allowed type, not
that the objects are put together the way mmengine writes them. A file can still hold a
``meta`` that is not a dict, a tensor that views 64 GiB through 4 bytes of storage, a
meta-device tensor, a list that contains itself or nesting a million levels deep. Upstream code
then fails far from the loader (``RuntimeError``, ``NotImplementedError``, ``RecursionError``)
or, worse, treats a look-alike as a dict. :func:`validate_checkpoint` refuses all of that
with a :class:`CheckpointStructureError` that names the file and the key path.

What is accepted (everything mmengine 0.10, mmcv 1.x and the official releases write):

- the checkpoint is a ``dict`` (or ``OrderedDict``) with ``str`` keys: mmengine's sections, or
  a bare state dict, or a wrapper such as MAE's ``{'model': ...}``;
- containers are exactly ``dict``, ``OrderedDict``, ``list`` and ``tuple`` (no subclasses,
  sets or ``Counter``); keys are ``None``/``bool``/``int``/``float``/``str``/``bytes`` or
  tuples of those; the only instance attribute an ``OrderedDict`` may carry is torch's
  ``_metadata`` (a dict of ``str`` to dicts of plain values);
- leaves are ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``,
  ``torch.Size``, ``torch.dtype``, ``torch.device``, dense tensors (see :meth:`tensor`) and
  numpy arrays and scalars of plain numeric or bool dtypes (kind ``b i u f c``: no structured,
  object, string, datetime or metadata-carrying dtypes);
- ``state_dict`` and ``ema_state_dict`` map ``str`` to tensors. Non-tensor values are allowed
  only under torch's ``..._extra_state`` keys (``nn.Module.get_extra_state``), and must be plain;
- ``meta``: plain values, ``epoch``/``iter`` non-negative ints, ``seed`` an int or None,
  ``config``/``cfg`` strings, ``dataset_meta`` a dict with ``str`` keys;
- ``message_hub``: only ``log_scalars`` (``str`` to mmengine ``HistoryBuffer`` with exactly
  its three attributes, or plain values, which mmengine skips), ``runtime_info`` (``str`` to
  plain values) and ``resumed_keys`` (``str`` to ``bool``);
- ``optimizer``: a dict of plain values (torch's and mmengine's optimizer state dicts);
- a checkpoint with ``message_hub`` or ``param_schedulers`` (only a Runner writes them) has
  ``meta``, ``state_dict`` and ``message_hub`` and no section but the Runner's and EMAHook's;
- ``param_schedulers``: a list of scheduler state dicts, or a dict of ``str`` to such lists.
  ``load_state_dict`` of a scheduler is ``__dict__.update``, so a state may not name
  ``optimizer``, a dunder or a scheduler method.

Limits: nesting depth :data:`MAX_DEPTH`, :data:`MAX_NODES` values in all, no container inside
itself, and tensors and arrays may not refer to the same data over and over (at most
:data:`MAX_REUSE` times their distinct storage, plus :data:`REUSE_SLACK` bytes), so that
neither this walk nor the digest's can be made to run for hours by a small file.
"""
import functools
import keyword
from collections import OrderedDict
from typing import Any, Callable, FrozenSet, Mapping, NoReturn, Sequence, Set, Tuple

import numpy as np
import torch

from .errors import CheckpointStructureError

#: Deepest nesting accepted (mmengine's deepest is ~5: optimizer.state[i]['exp_avg']).
MAX_DEPTH = 32
#: Most values (containers, leaves and keys) in one checkpoint; real ones have < 50 000
#: (a Mask R-CNN with per-parameter optimizer groups: ~20 000).
MAX_NODES = 500_000
#: Bytes that tensors and arrays may present, as a multiple of their distinct storage ...
MAX_REUSE = 4
#: ... plus this many bytes (tied weights and views are legitimate reuse).
REUSE_SLACK = 1 << 28

_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
_KEY_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
_TORCH_VALUES = frozenset({torch.dtype, torch.device})
_MAPPINGS = frozenset({dict, OrderedDict})
_TENSOR_TYPES = frozenset({torch.Tensor, torch.nn.Parameter})
_PLAIN_NUMPY_KINDS = 'biufc'
_MESSAGE_HUB_KEYS = ('log_scalars', 'runtime_info', 'resumed_keys')
#: The sections mmengine's Runner (and FlexibleRunner) and EMAHook write ...
_RUNNER_SECTIONS = frozenset({'meta', 'state_dict', 'message_hub', 'optimizer',
                              'param_schedulers', 'ema_state_dict'})
#: ... which of them only a Runner writes (an mmcv 1.x file has meta/state_dict/optimizer) ...
_RUNNER_ONLY_SECTIONS = ('message_hub', 'param_schedulers')
#: ... and which it always writes.
_RUNNER_REQUIRED = ('meta', 'state_dict', 'message_hub')
_HISTORY_BUFFER_ATTRS = frozenset({'max_length', '_log_history', '_count_history'})
_EXTRA_STATE_SUFFIX = '_extra_state'  # torch.nn.modules.module._EXTRA_STATE_KEY_SUFFIX


def validate_checkpoint(checkpoint: Any, filename: str) -> None:
    """Refuse (:class:`CheckpointStructureError`) anything but the structure mmengine writes.

    See the module docstring for the rules. ``checkpoint`` is not changed.
    """
    _Checker(str(filename)).checkpoint(checkpoint)


def format_key_path(path: Sequence[Any]) -> str:
    """``message_hub.runtime_info['cfg']``: mmengine's section names dotted, data keys in
    brackets (shortened); ``()`` is ``the checkpoint``."""
    if not path:
        return 'the checkpoint'
    parts = []
    for i, key in enumerate(path):
        dotted = (isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)
                  and (i == 0 or (i == 1 and path[0] == 'message_hub')))
        if dotted:
            parts.append(('.' if i else '') + key)
        else:
            text = repr(key)
            parts.append(f'[{text[:60] + "..." if len(text) > 63 else text}]')
    return ''.join(parts)


def plain_dtype_problem(dtype: Any) -> str:
    """Why ``dtype`` is not a plain numeric or bool numpy dtype ('' when it is)."""
    if not isinstance(dtype, np.dtype):
        return f'has a dtype of type {type(dtype).__name__}'
    if dtype.kind not in _PLAIN_NUMPY_KINDS:
        return f'has the numpy dtype {dtype.str!r} (kind {dtype.kind!r}), not a plain number'
    if (dtype.fields is not None or dtype.names is not None or dtype.subdtype is not None
            or dtype.hasobject or dtype.metadata is not None):
        return 'has a structured or metadata-carrying numpy dtype'
    canonical = np.dtype(dtype.str)
    if (type(dtype) is not type(canonical) or dtype.type is not canonical.type
            or dtype.itemsize != canonical.itemsize or dtype.flags != canonical.flags
            or dtype.alignment != canonical.alignment):
        return f'has a numpy dtype that differs from the real {dtype.str!r} (forged)'
    return ''


class _Checker:
    """One walk over a checkpoint; raises at the first problem."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.nodes = 0
        self.ancestors: Set[int] = set()
        self.presented = 0                    # bytes that tensors/arrays present (with reuse)
        self.storages: Set[Tuple[str, int]] = set()  # distinct storages seen ...
        self.stored = 0                                 # ... and their bytes

    # -------------------------------------------------------------- plumbing

    def fail(self, path: Sequence[Any], reason: str) -> NoReturn:
        raise CheckpointStructureError(
            f'{self.filename}: refused: {format_key_path(path)} {reason}. mmvrwkv loads only '
            'the structure mmengine writes (see mmvrwkv/engine/checkpoint/structure.py)')

    def count(self, path: Sequence[Any]) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.fail(path, f'is beyond the {MAX_NODES} values a checkpoint may hold')
        if len(path) > MAX_DEPTH:
            self.fail(path, f'is nested deeper than {MAX_DEPTH} levels')

    def enter(self, container: Any, path: Sequence[Any]) -> int:
        """Mark ``container`` as being walked (refusing it if it already is); returns the
        id to pass to ``self.ancestors.discard`` when done (no context manager: hot path)."""
        key = id(container)
        if key in self.ancestors:
            self.fail(path, 'contains itself (a reference cycle)')
        self.ancestors.add(key)
        return key

    def mapping(self, value: Any, path: Tuple, check: Callable[[Any, Tuple], None],
                str_keys: bool = False) -> None:
        """A dict or OrderedDict (exactly), its keys and (through ``check``) its values."""
        self.count(path)
        if type(value) not in _MAPPINGS:
            self.fail(path, f'is {_a(value)}, not a dict')
        marked = self.enter(value, path)
        try:
            attributes = getattr(value, '__dict__', None) or {}
            for name in attributes:
                if name != '_metadata':
                    self.fail(path, f'carries the instance attribute {name!r} (an OrderedDict '
                              "may only carry torch's _metadata)")
            if '_metadata' in attributes:
                self.module_metadata(attributes['_metadata'], tuple(path) + ('_metadata',))
            for key, item in type(value).items(value):  # no instance attribute can shadow it
                self.key(key, path, str_keys)
                check(item, tuple(path) + (key,))
        finally:
            self.ancestors.discard(marked)

    def key(self, key: Any, path: Sequence[Any], str_keys: bool) -> None:
        self.count(path)
        kind = type(key)
        if str_keys and kind is not str:
            self.fail(path, f'has the key {_short(key)} of type {kind.__name__}; its keys '
                      'are strings')
        if kind in _KEY_SCALARS:
            return
        if kind is tuple and all(type(k) in _KEY_SCALARS for k in key):
            return
        self.fail(path, f'has a key of type {kind.__name__}')

    def sequence(self, value: Any, path: Tuple, check: Callable[[Any, Tuple], None]) -> None:
        marked = self.enter(value, path)
        try:
            for i, item in enumerate(value):
                check(item, path + (i,))
        finally:
            self.ancestors.discard(marked)

    # -------------------------------------------------------------- values

    def value(self, value: Any, path: Tuple) -> None:
        """Any plain value (the module docstring lists them)."""
        kind = type(value)
        if kind in _MAPPINGS:
            return self.mapping(value, path, self.value)
        self.count(path)
        if kind in _SCALARS or kind in _TORCH_VALUES:
            return
        if kind is list or kind is tuple:
            return self.sequence(value, path, self.value)
        if kind is torch.Size:
            return  # torch.Size(...) checks that its items are ints
        if isinstance(value, torch.Tensor):
            return self.tensor(value, path)
        if kind is np.ndarray:
            return self.array(value, path)
        if isinstance(value, np.generic):
            return self.numpy_scalar(value, path)
        self.fail(path, f'is {_a(value)}, which mmengine never writes there')

    def tensor(self, t: Any, path: Tuple) -> None:
        """A dense tensor with real data that its storage holds once."""
        if type(t) not in _TENSOR_TYPES:
            self.fail(path, f'is a tensor of the subclass {_type_name(t)}')
        if t.is_meta or t.device.type == 'meta':
            self.fail(path, 'is a meta-device tensor (it has a shape but no data)')
        if t.layout is not torch.strided or t.is_sparse or t.is_nested:
            self.fail(path, f'is a {t.layout} tensor; checkpoints hold dense tensors only')
        if t.is_quantized:
            self.fail(path, f'is a quantized tensor ({t.dtype})')
        if getattr(t, '__dict__', None):
            self.fail(path, 'is a tensor with Python attributes '
                      f'({", ".join(map(repr, list(vars(t))[:5]))})')
        if t.grad is not None:
            self.fail(path, 'is a tensor with a gradient attached')
        shape, strides = tuple(t.shape), t.stride()
        for size, stride in zip(shape, strides):
            if stride == 0 and size > 1:
                self.fail(path, f'has stride 0 on a dimension of size {size} (an expanded '
                          f'view: shape {list(shape)} from {t.untyped_storage().nbytes()} '
                          'bytes of storage)')
        storage_bytes = t.untyped_storage().nbytes()
        nbytes = t.numel() * t.element_size()
        if nbytes > storage_bytes:
            self.fail(path, f'presents {nbytes} bytes (shape {list(shape)}, {t.dtype}) from '
                      f'{storage_bytes} bytes of storage (overlapping strides)')
        if t.numel():
            last = t.storage_offset() + sum((n - 1) * s for n, s in zip(shape, strides))
            if (last + 1) * t.element_size() > storage_bytes:
                self.fail(path, 'reaches past the end of its storage')
        self.present(nbytes, (str(t.device), t.untyped_storage().data_ptr()), storage_bytes,
                     path)

    def array(self, a: Any, path: Tuple) -> None:
        problem = plain_dtype_problem(a.dtype)
        if problem:
            self.fail(path, problem)
        self.present(a.nbytes, ('numpy', id(a.base if a.base is not None else a)), a.nbytes,
                     path)

    def numpy_scalar(self, x: Any, path: Tuple) -> None:
        problem = plain_dtype_problem(x.dtype)
        if not problem and type(x) is not x.dtype.type:
            problem = f'is a numpy scalar of type {_type_name(x)} with dtype {x.dtype.str!r}'
        if problem:
            self.fail(path, problem)

    def present(self, nbytes: int, storage: Tuple[str, int], storage_bytes: int,
                path: Tuple) -> None:
        """Count bytes presented against distinct storage (bounds the digest's work)."""
        self.presented += nbytes
        if storage not in self.storages:
            self.storages.add(storage)
            self.stored += storage_bytes
        if self.presented > MAX_REUSE * self.stored + REUSE_SLACK:
            self.fail(path, f'makes the tensors and arrays present {self.presented} bytes from '
                      f'{self.stored} bytes of storage (the same data referenced over and '
                      'over)')

    def module_metadata(self, metadata: Any, path: Tuple) -> None:
        """torch's ``state_dict._metadata``: module prefix -> dict of plain values."""
        self.mapping(metadata, path, lambda v, p: self.mapping(v, p, self.value, True), True)

    # -------------------------------------------------------------- sections

    def checkpoint(self, checkpoint: Any) -> None:
        if type(checkpoint) not in _MAPPINGS:
            self.fail((), f'is {_a(checkpoint)}, not a dict')
        self.mapping(checkpoint, (), self.section, str_keys=True)
        if any(key in checkpoint for key in _RUNNER_ONLY_SECTIONS):
            self.runner_sections(checkpoint)

    def runner_sections(self, checkpoint: Mapping) -> None:
        """A Runner's training checkpoint holds exactly its sections. A renamed or missing one
        (e.g. a damaged memoised key string) would load as an unknown key that mmengine
        ignores, silently dropping that state, and a missing ``meta`` hides the digest."""
        unknown = sorted(key for key in checkpoint if key not in _RUNNER_SECTIONS)
        if unknown:
            self.fail((unknown[0],), "is not a section of mmengine's Runner checkpoints ("
                      + ', '.join(sorted(_RUNNER_SECTIONS)) + ')')
        missing = [key for key in _RUNNER_REQUIRED if key not in checkpoint]
        if missing:
            self.fail((missing[0],), 'is missing: a Runner checkpoint always has '
                      + ', '.join(_RUNNER_REQUIRED))

    def section(self, value: Any, path: Tuple) -> None:
        checks = {'meta': self.meta, 'state_dict': self.state_dict,
                  'ema_state_dict': self.state_dict, 'message_hub': self.message_hub,
                  'optimizer': self.optimizer, 'param_schedulers': self.param_schedulers}
        checks.get(path[-1], self.value)(value, path)

    def meta(self, meta: Any, path: Tuple) -> None:
        self.mapping(meta, path, self.value, str_keys=True)
        for key in ('epoch', 'iter'):
            if key in meta and not (_is_int(meta[key]) and meta[key] >= 0):
                self.fail(path + (key,), f'is {_short(meta[key])}, not a non-negative int')
        if 'seed' in meta and not (meta['seed'] is None or _is_int(meta['seed'])):
            self.fail(path + ('seed',), f'is {_a(meta["seed"])}, not an int')
        for key in ('config', 'cfg'):
            if key in meta and type(meta[key]) is not str:
                self.fail(path + (key,), f'is {_a(meta[key])}, not a config text')
        if 'dataset_meta' in meta:
            self.mapping(meta['dataset_meta'], path + ('dataset_meta',), self.value, True)

    def state_dict(self, state_dict: Any, path: Tuple) -> None:
        self.mapping(state_dict, path, self.state_dict_entry, str_keys=True)

    def state_dict_entry(self, value: Any, path: Tuple) -> None:
        if path[-1].endswith(_EXTRA_STATE_SUFFIX):  # nn.Module.get_extra_state(): any data
            return self.value(value, path)
        self.count(path)
        if not isinstance(value, torch.Tensor):
            self.fail(path, f'is {_a(value)}, not a tensor')
        self.tensor(value, path)

    def message_hub(self, hub: Any, path: Tuple) -> None:
        def part(value: Any, part_path: Tuple) -> None:
            name = part_path[-1]
            if name not in _MESSAGE_HUB_KEYS:
                self.fail(part_path, 'is not part of mmengine\'s MessageHub state '
                          f'({", ".join(_MESSAGE_HUB_KEYS)})')
            check = {'log_scalars': self.log_scalar, 'runtime_info': self.value,
                     'resumed_keys': self.resumed_key}[name]
            self.mapping(value, part_path, check, str_keys=True)
        self.mapping(hub, path, part, str_keys=True)

    def resumed_key(self, value: Any, path: Tuple) -> None:
        self.count(path)
        if type(value) is not bool:
            self.fail(path, f'is {_a(value)}, not a bool')

    def log_scalar(self, value: Any, path: Tuple) -> None:
        from mmengine.logging import HistoryBuffer
        if type(value) is not HistoryBuffer:
            return self.value(value, path)  # mmengine skips these with a warning
        self.count(path)
        attributes = vars(value)
        if set(attributes) != _HISTORY_BUFFER_ATTRS:
            odd = sorted(set(attributes) ^ _HISTORY_BUFFER_ATTRS)
            self.fail(path, f'is a HistoryBuffer whose attributes differ from mmengine\'s '
                      f'(odd: {", ".join(map(repr, odd))})')
        max_length = attributes['max_length']
        if type(max_length) is not int or max_length < 1:
            self.fail(path + ('max_length',), f'is {_short(max_length)}, not a positive int')
        lengths = []
        for name in ('_log_history', '_count_history'):
            array = attributes[name]
            if type(array) is not np.ndarray or array.ndim != 1:
                self.fail(path + (name,), 'is not a 1-d numpy array')
            self.count(path + (name,))
            self.array(array, path + (name,))
            lengths.append(len(array))
        if lengths[0] != lengths[1] or lengths[0] > max_length:
            self.fail(path, f'is a HistoryBuffer with {lengths[0]} values, {lengths[1]} counts '
                      f'and max_length {max_length}')

    def optimizer(self, state: Any, path: Tuple) -> None:
        self.mapping(state, path, self.value)

    def param_schedulers(self, schedulers: Any, path: Tuple) -> None:
        def scheduler_list(value: Any, list_path: Tuple) -> None:
            self.count(list_path)
            if type(value) is not list:
                self.fail(list_path, f'is {_a(value)}, not a list of scheduler states')
            self.sequence(value, list_path, self.scheduler)
        if type(schedulers) in _MAPPINGS:
            self.mapping(schedulers, path, scheduler_list, str_keys=True)
        else:
            scheduler_list(schedulers, path)

    def scheduler(self, state: Any, path: Tuple) -> None:
        self.mapping(state, path, self.value, str_keys=True)
        for key in state:
            if key == 'optimizer' or key.startswith('__') or key in _scheduler_methods():
                self.fail(path + (key,), 'would replace the scheduler\'s '
                          f'{"optimizer" if key == "optimizer" else "attribute " + repr(key)} '
                          '(a scheduler loads its state with __dict__.update)')


@functools.lru_cache(maxsize=1)
def _scheduler_methods() -> FrozenSet[str]:
    """Callable attributes of mmengine's and torch's scheduler base classes."""
    from mmengine.optim.scheduler.param_scheduler import _ParamScheduler
    names = set()
    for base in (_ParamScheduler, torch.optim.lr_scheduler.LRScheduler):
        names |= {n for n in dir(base) if callable(getattr(base, n, None))}
    return frozenset(names)


def _is_int(value: Any) -> bool:
    """An int or a numpy integer scalar (not a bool)."""
    return type(value) is int or isinstance(value, np.integer)


def _type_name(value: Any) -> str:
    kind = type(value)
    module = getattr(kind, '__module__', '')
    return kind.__qualname__ if module == 'builtins' else f'{module}.{kind.__qualname__}'


def _short(value: Any) -> str:
    if type(value) in _SCALARS:
        text = repr(value)
        return text[:40] + '...' if len(text) > 43 else text
    return _a(value)


def _a(value: Any) -> str:
    name = _type_name(value)
    return ('an ' if name[0] in 'aeiou' else 'a ') + name
