"""What torch's weights-only unpickler may build from an mmengine checkpoint: narrow stand-ins.

Besides tensors, an mmengine Runner checkpoint holds numpy arrays, scalars and dtypes (message
hub) and mmengine's ``HistoryBuffer``. Putting the real ``numpy.dtype``, ``ndarray``,
``_reconstruct``, ``scalar`` or ``HistoryBuffer`` on torch's allow-list lets the file call
their ``__setstate__`` with any state: numpy then builds a dtype with a field outside its item
size, or an object field without the has-object flag (file bytes read as ``PyObject*``:
segfault, heap read), and ``HistoryBuffer.__setstate__`` writes into a class-level method
table. So each of these global names is answered by a stand-in of ours:

- ``numpy.dtype`` -> :class:`_DtypeStandIn`: only plain numeric and bool dtypes (kind
  ``b i u f c``, item size 1 to 16, a byte order, no fields, names, subarray or metadata),
  built with ``np.dtype('<f8')`` from the checked type string, never with numpy's
  ``__setstate__``. Structured (``np.void``), object, string, datetime dtypes are refused.
- ``numpy.ndarray`` and ``numpy[._]core.multiarray._reconstruct`` -> :class:`_ArrayStandIn`:
  a shape of non-negative ints, C or Fortran order, a plain dtype and raw bytes of exactly
  ``prod(shape) * itemsize``; the array is ``np.frombuffer(...).reshape(...)``, copied in
  native byte order (as numpy's own unpickling does).
- ``numpy[._]core.multiarray.scalar`` -> :func:`_scalar`: a plain dtype and ``itemsize``
  bytes; returns the real numpy scalar.
- ``mmengine.logging.history_buffer.HistoryBuffer`` -> :class:`_HistoryBufferStandIn`: the
  keys mmengine writes (``max_length``, ``_log_history``, ``_count_history``,
  ``statistics_methods``) with checked values; the real ``HistoryBuffer`` is made without
  its ``__setstate__``, so a file cannot change the class table (nor set an instance-level
  ``_statistics_methods``, which a later ``deepcopy`` would copy into the class table).
- ``builtins.bytes`` -> :func:`_empty_bytes`: only ``bytes()``, which is how protocol 2
  writes ``b''`` (the data of an empty array).
- ``_codecs.encode`` -> :func:`_latin1_bytes`: only ``encode(text, 'latin1')``, which is how
  protocol 2 writes other bytes (the data of arrays and scalars): the result is as long as the
  text the file stores. This one is on torch's *default* list, which the unpickler consults
  first, so :func:`stand_ins_registered` swaps it in torch's (cached) default table too.
- ``builtins.getattr`` -> :func:`_history_buffer_method`: only ``getattr(HistoryBuffer,
  name)`` for mmengine's own four statistics methods, answered with an inert token (never a
  function a rebuild helper could call); the names come from a fixed tuple, never from the
  live table, so an earlier BUILD cannot widen them.

A stand-in refuses a second BUILD, use before its BUILD and any ``setattr`` (it has no
``__dict__``; only its own BUILD fills its slots). Because a BUILD mutates the
object on the unpickler's stack, arrays, dtypes and buffers come out of ``torch.load`` as
stand-ins; :func:`resolve_stand_ins` then replaces them by the real numpy / mmengine objects
in one walk over the result (cycles and nesting deeper than :data:`MAX_DEPTH` are refused).

The stand-ins are on torch's allow-list only inside :func:`stand_ins_registered` (that is,
while :func:`.loading.load_checkpoint_file` runs), never process-wide: a direct
``torch.load`` elsewhere would otherwise get stand-ins instead of numpy objects.
"""
import _codecs
import builtins
import contextlib
import math
import reprlib
import threading
from collections import Counter, OrderedDict
from typing import Any, Dict, Iterator, List, Set, Tuple

import numpy as np
import torch

from .errors import CheckpointError, CheckpointStructureError, UnsafeCheckpointError
from .structure import format_key_path

#: mmengine's own statistics methods of ``HistoryBuffer`` (its ``_set_default_statistics``).
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')

#: numpy type strings of the plain dtypes a checkpoint may hold (bool, ints, floats, complex).
PLAIN_TYPESTRS = frozenset({'b1', 'i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'i8', 'u8',
                            'f2', 'f4', 'f8', 'c8', 'c16'})

#: Deepest nesting of containers accepted in a checkpoint (mmengine writes fewer than 10).
MAX_DEPTH = 100

_MAX_NDIM = 32
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80
_short.maxtuple = _short.maxdict = _short.maxlist = 10


class StandInRefusal(Exception):
    """A stand-in refused what the file asks for (``loading`` adds the file name).

    Not a ``pickle.UnpicklingError`` on purpose: ``torch.load`` rewrites those into a message
    of its own and drops the type.
    """


# ------------------------------------------------------------------------- base

class _StandIn:
    """Receives exactly one BUILD and then holds the real object it stands for.

    It has no ``__dict__`` (``__slots__``) and refuses ``setattr``: torch sets attributes
    from the file on what it builds (``_rebuild_from_type_v2``'s state, a BUILD without
    ``__setstate__``), and nothing from the file may mark a stand-in as built or give it a
    value. Only :meth:`_set` (our own code) writes its slots.
    """

    __slots__ = ('_built', '_value')
    _global = '?'  # the global name it answers, for messages

    def _init_stand_in(self) -> None:
        self._set(_built=False, _value=None)

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise StandInRefusal(f'{self._global}: refused to set the attribute {name!r} (a '
                             'checkpoint sets the state of a numpy object or HistoryBuffer '
                             'only with one BUILD)')

    def __delattr__(self, name: str) -> None:
        raise StandInRefusal(f'{self._global}: refused to delete the attribute {name!r}')

    def __init__(self, *args: Any) -> None:  # REDUCE calls cls(*args): __new__ did the work
        pass

    def __setstate__(self, state: Any) -> None:
        if self._built:
            raise StandInRefusal(f'{self._global}: a second BUILD on the same object (the '
                                 'state of a numpy object or HistoryBuffer is set once)')
        self._set(_value=self._build(state), _built=True)

    def _build(self, state: Any) -> Any:
        raise NotImplementedError

    def value(self) -> Any:
        """The real object; refused while the file has not given it a state."""
        if not self._built:
            raise StandInRefusal(f'{self._global}: the object is used before its BUILD '
                                 '(a file written by numpy/mmengine sets the state first)')
        return self._value

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError('a checkpoint stand-in cannot be pickled; resolve_stand_ins() first')

    def __repr__(self) -> str:
        state = 'built' if self._built else 'not built'
        return f'<{self._global} stand-in, {state}>'


def _plain_dtype_of(obj: Any, what: str) -> np.dtype:
    if not isinstance(obj, _DtypeStandIn):
        raise StandInRefusal(f'{what}: the dtype is {_short.repr(obj)}, not a numpy.dtype')
    return obj.value()


def _is_int(value: Any) -> bool:
    return type(value) is int  # not bool, not a subclass


# ------------------------------------------------------------------------- numpy

class _DtypeStandIn(_StandIn):
    """``numpy.dtype``: REDUCE ``(typestr, align, copy)``, then BUILD with the state tuple
    ``(3, byteorder, None, None, None, -1, -1, 0)`` (version 4 adds ``None`` metadata)."""

    __slots__ = ('_typestr',)
    _global = 'numpy.dtype'

    def __new__(cls, *args: Any) -> '_DtypeStandIn':
        if not (len(args) == 3 and type(args[0]) is str and args[0] in PLAIN_TYPESTRS
                and type(args[1]) is bool and type(args[2]) is bool):
            raise StandInRefusal(
                f'numpy.dtype{_short.repr(args)}: only plain numeric and bool dtypes are '
                f'accepted ({", ".join(sorted(PLAIN_TYPESTRS))}); structured (np.void), '
                'object, string and datetime dtypes are refused')
        self = object.__new__(cls)
        self._init_stand_in()
        self._set(_typestr=args[0])
        return self

    def _build(self, state: Any) -> np.dtype:
        itemsize = int(self._typestr[1:])
        orders = ('|',) if itemsize == 1 else ('<', '>')
        ok = (type(state) is tuple and len(state) in (8, 9)
              and _is_int(state[0]) and state[0] == (3 if len(state) == 8 else 4)
              and type(state[1]) is str and state[1] in orders
              and state[2:5] == (None, None, None)
              and all(_is_int(v) for v in state[5:8]) and state[5:8] == (-1, -1, 0)
              and (len(state) == 8 or state[8] is None))
        if not ok:
            raise StandInRefusal(
                f"numpy.dtype('{self._typestr}'): the state {_short.repr(state)} is not that "
                'of a plain dtype (expected (3, byteorder, None, None, None, -1, -1, 0) with '
                f'byteorder {" or ".join(orders)}); fields, names, subarrays, metadata, an '
                'item size or flags of its own are refused: numpy would trust them')
        return np.dtype(state[1].replace('|', '') + self._typestr)


class _ArrayStandIn(_StandIn):
    """``numpy.ndarray``, made by :func:`_reconstruct`; BUILD with
    ``(1, shape, dtype, is_fortran, raw_bytes)``."""

    __slots__ = ()
    _global = 'numpy.ndarray'

    def __new__(cls, *args: Any) -> '_ArrayStandIn':
        raise StandInRefusal(f'numpy.ndarray{_short.repr(args)}: arrays are only made the way '
                             'numpy pickles them (numpy.core.multiarray._reconstruct)')

    @classmethod
    def _blank(cls) -> '_ArrayStandIn':
        self = object.__new__(cls)
        self._init_stand_in()
        return self

    def _build(self, state: Any) -> np.ndarray:
        if not (type(state) is tuple and len(state) == 5 and _is_int(state[0])
                and state[0] == 1):
            raise StandInRefusal(f'numpy.ndarray: the state {_short.repr(state)} is not '
                                 '(1, shape, dtype, is_fortran, data)')
        _, shape, dtype, fortran, data = state
        if not (type(shape) is tuple and len(shape) <= _MAX_NDIM
                and all(_is_int(n) and n >= 0 for n in shape)):
            raise StandInRefusal(f'numpy.ndarray: the shape {_short.repr(shape)} is not a '
                                 f'tuple of at most {_MAX_NDIM} non-negative ints')
        dtype = _plain_dtype_of(dtype, 'numpy.ndarray')
        if type(fortran) is not bool:
            raise StandInRefusal(f'numpy.ndarray: the order flag {_short.repr(fortran)} is '
                                 'not a bool')
        nbytes = math.prod(shape) * dtype.itemsize
        if type(data) is not bytes or len(data) != nbytes:
            got = f'{len(data)} bytes' if type(data) is bytes else type(data).__name__
            raise StandInRefusal(f'numpy.ndarray: shape {shape} of {dtype} needs {nbytes} '
                                 f'bytes of data, the file gives {got}')
        view = np.frombuffer(data, dtype=dtype).reshape(shape, order='F' if fortran else 'C')
        # a copy in native byte order, as numpy's own unpickling makes it
        return np.array(view, dtype=dtype.newbyteorder('='), order='K', copy=True)


def _reconstruct(subtype: Any, shape: Any, code: Any) -> _ArrayStandIn:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: a blank array stand-in."""
    if subtype is not _ArrayStandIn or shape != (0,) or code != b'b':
        raise StandInRefusal(
            f'numpy.core.multiarray._reconstruct{_short.repr((subtype, shape, code))}: only '
            "(numpy.ndarray, (0,), b'b'), as numpy pickles a plain array")
    return _ArrayStandIn._blank()


def _scalar(dtype: Any, data: Any = None) -> np.generic:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: the real numpy scalar of a plain dtype."""
    dtype = _plain_dtype_of(dtype, 'numpy.core.multiarray.scalar')
    if type(data) is not bytes or len(data) != dtype.itemsize:
        raise StandInRefusal(f'numpy.core.multiarray.scalar: a {dtype} scalar needs '
                             f'{dtype.itemsize} bytes, the file gives {_short.repr(data)}')
    return np.frombuffer(data, dtype=dtype)[0]


def _latin1_bytes(*args: Any) -> bytes:
    """``_codecs.encode``: pickle protocol 2 writes ``b'...'`` as ``encode('...', 'latin1')``,
    with the text stored in the file, so the result is as long as that text. Any other codec
    (``'hex'`` doubles the length, and a pickle can encode the result again) is refused."""
    if not (len(args) == 2 and type(args[0]) is str and type(args[1]) is str
            and args[1] == 'latin1'):
        shown = ', '.join(_short.repr(a) if isinstance(a, (str, bytes)) else type(a).__name__
                          for a in args)
        raise StandInRefusal(f"_codecs.encode({shown}): only (text, 'latin1'), as pickle "
                             'writes bytes; another codec can make the result any multiple of '
                             'what the file stores')
    return args[0].encode('latin-1')


def _empty_bytes(*args: Any) -> bytes:
    """``builtins.bytes``: pickle protocol 2 writes ``b''`` as ``bytes()`` (the data of an
    empty array); nothing else."""
    if args:
        raise StandInRefusal(f'bytes{_short.repr(args)}: only bytes(), as pickle writes b""')
    return b''


# ------------------------------------------------------------------------- HistoryBuffer

class _HistoryBufferMethod:
    """What ``getattr(HistoryBuffer, 'mean')`` unpickles to: a name, not a callable."""

    __slots__ = ('name',)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f'getattr(HistoryBuffer, {self.name!r})'


class _HistoryBufferStandIn(_StandIn):
    """``mmengine.logging.history_buffer.HistoryBuffer``: NEWOBJ with no arguments, then BUILD
    with the instance dict mmengine's ``__getstate__`` writes."""

    __slots__ = ()
    _global = 'mmengine.logging.history_buffer.HistoryBuffer'
    _KEYS = ('max_length', '_log_history', '_count_history')

    def __new__(cls, *args: Any) -> '_HistoryBufferStandIn':
        if args:
            raise StandInRefusal(f'HistoryBuffer{_short.repr(args)}: a pickled HistoryBuffer '
                                 'is made without arguments')
        self = object.__new__(cls)
        self._init_stand_in()
        return self

    def _build(self, state: Any) -> Any:
        from mmengine.logging import HistoryBuffer
        if type(state) is not dict or not all(type(k) is str for k in state):
            raise StandInRefusal(f'HistoryBuffer: the state {_short.repr(state)} is not a dict '
                                 'of names')
        extra = sorted(set(state) - set(self._KEYS) - {'statistics_methods'})
        missing = [k for k in self._KEYS if k not in state]
        if extra or missing:
            raise StandInRefusal(
                f'HistoryBuffer: the state has the key(s) {extra or missing} '
                f'({"not written by mmengine" if extra else "missing"}; mmengine writes '
                f'{", ".join(self._KEYS)} and statistics_methods). An instance-level '
                "'_statistics_methods' would be copied into the class table by deepcopy")
        max_length = state['max_length']
        if not _is_int(max_length) or max_length < 1:
            raise StandInRefusal(f'HistoryBuffer: max_length {_short.repr(max_length)} is not '
                                 'a positive int')
        history = []
        for key in ('_log_history', '_count_history'):
            arr = state[key]
            if not isinstance(arr, _ArrayStandIn):
                raise StandInRefusal(f'HistoryBuffer: {key} is {_short.repr(arr)}, not a numpy '
                                     'array')
            arr = arr.value()
            if arr.ndim != 1:
                raise StandInRefusal(f'HistoryBuffer: {key} has shape {arr.shape}, not 1-D')
            history.append(arr)
        if len(history[0]) != len(history[1]):
            raise StandInRefusal('HistoryBuffer: _log_history and _count_history differ in '
                                 f'length ({len(history[0])} and {len(history[1])})')
        methods = state.get('statistics_methods', {})
        if type(methods) is not dict:
            raise StandInRefusal(f'HistoryBuffer: statistics_methods is '
                                 f'{_short.repr(methods)}, not a dict')
        for name, method in methods.items():
            if not (name in HISTORY_BUFFER_METHODS and isinstance(method, _HistoryBufferMethod)
                    and method.name == name):
                shown = (repr(method) if isinstance(method, _HistoryBufferMethod)
                         else _describe(method))
                raise StandInRefusal(
                    f'HistoryBuffer: statistics method {name!r} is {shown}; a '
                    "checkpoint may only name mmengine's own "
                    f'({", ".join(HISTORY_BUFFER_METHODS)}) as getattr(HistoryBuffer, name)')
        buffer = HistoryBuffer.__new__(HistoryBuffer)  # no __setstate__ with file data
        buffer.__dict__.update(max_length=max_length, _log_history=history[0],
                               _count_history=history[1])
        buffer._set_default_statistics()  # what HistoryBuffer.__setstate__ does: setdefault
        return buffer


def _describe(obj: Any) -> str:
    qualname = getattr(obj, '__qualname__', None)
    module = getattr(obj, '__module__', None)
    if isinstance(obj, _StandIn) or any(obj is c for c in (_DtypeStandIn, _ArrayStandIn,
                                                             _HistoryBufferStandIn)):
        return obj._global
    if isinstance(qualname, str):
        return f'{module}.{qualname}' if isinstance(module, str) else qualname
    return type(obj).__name__ + ' object'


def _history_buffer_method(obj: Any, name: Any) -> _HistoryBufferMethod:
    """Stands in for ``builtins.getattr``: only ``getattr(HistoryBuffer, <mmengine's own
    statistics method>)``, answered with an inert :class:`_HistoryBufferMethod`."""
    if obj is _HistoryBufferStandIn and type(name) is str and name in HISTORY_BUFFER_METHODS:
        return _HistoryBufferMethod(name)
    raise StandInRefusal(
        f'refused getattr({_describe(obj)}, {_short.repr(name)}): the only attribute look-ups '
        "a checkpoint may make are mmengine HistoryBuffer's statistics methods "
        f'({", ".join(HISTORY_BUFFER_METHODS)})')


# ------------------------------------------------------------------------- allow-list

def mmengine_safe_globals() -> List[Tuple[Any, str]]:
    """The stand-ins, as ``(object, global name)`` entries for torch's allow-list.

    numpy 2 pickles its constructors under ``numpy._core``, numpy 1 under ``numpy.core``.
    """
    entries = [(_DtypeStandIn, 'numpy.dtype'), (_ArrayStandIn, 'numpy.ndarray'),
               (_HistoryBufferStandIn, 'mmengine.logging.history_buffer.HistoryBuffer'),
               (_history_buffer_method, 'builtins.getattr'), (_empty_bytes, 'builtins.bytes'),
               (_latin1_bytes, '_codecs.encode')]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries += [(_reconstruct, f'{module}._reconstruct'), (_scalar, f'{module}.scalar')]
    return entries


def _entry_name(entry: Any) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f'{getattr(entry, "__module__", "")}.{getattr(entry, "__qualname__", "")}'


def _replaced_objects() -> Set[int]:
    """ids of the real objects our stand-ins replace (kept off torch's list while loading)."""
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    objects: List[Any] = [np.dtype, np.ndarray, multiarray._reconstruct, multiarray.scalar,
                          HistoryBuffer, bytes, _codecs.encode]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        objects += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return {id(o) for o in objects}


_LOCK = threading.RLock()


def _torch_default_table() -> Dict[str, Any]:
    """torch's default allow-list: the dict its weights-only unpickler reads (cached by torch,
    and consulted *before* the list of ``add_safe_globals``)."""
    from torch._weights_only_unpickler import _get_allowed_globals
    return _get_allowed_globals()


@contextlib.contextmanager
def _defaults_replaced(ours: List[Tuple[Any, str]]) -> Iterator[None]:
    """Our stand-ins in place of the entries of torch's default table with the same names
    (``_codecs.encode``), restored afterwards."""
    table = _torch_default_table()
    saved = {name: table[name] for _, name in ours if name in table}
    table.update((name, obj) for obj, name in ours if name in saved)
    try:
        yield
    finally:
        table.update(saved)


@contextlib.contextmanager
def stand_ins_registered() -> Iterator[None]:
    """Put the stand-ins on torch's allow-list for the duration of one load, then restore the
    list exactly as it was.

    A name also on torch's default list (``_codecs.encode``) is replaced there too, since the
    unpickler looks there first. Entries other code registered under the same names, or for
    the real objects the stand-ins replace, are left out meanwhile (torch would otherwise
    pick one of two entries of a name at random). If the real ``builtins.getattr`` is on the
    list, nothing is loaded: with it a file can reach any module's globals. (torch's lists are
    process-wide: a load in another thread meanwhile sees the stand-ins, and an entry another
    thread adds meanwhile is dropped on restore; our own loads are serialised by a lock.)
    """
    serialization = torch.serialization
    with _LOCK:
        before = list(serialization.get_safe_globals())
        if any((e[0] if isinstance(e, tuple) else e) is builtins.getattr for e in before):
            raise CheckpointError(
                "builtins.getattr is on torch's weights-only allow-list (added by other code: "
                'torch.serialization.add_safe_globals([getattr])); with it a checkpoint can '
                'run code, so mmvrwkv refuses to load any. Remove that call.')
        ours = mmengine_safe_globals()
        names = {name for _, name in ours}
        replaced = _replaced_objects()
        kept = [e for e in before if _entry_name(e) not in names
                and id(e[0] if isinstance(e, tuple) else e) not in replaced]
        serialization.clear_safe_globals()
        serialization.add_safe_globals(kept + ours)
        try:
            with _defaults_replaced(ours):
                yield
        finally:
            serialization.clear_safe_globals()
            serialization.add_safe_globals(before)


# ------------------------------------------------------------------------- resolving

_CONTAINERS = (dict, OrderedDict, Counter, list, tuple, set)


def resolve_stand_ins(checkpoint: Any, filename: str) -> Any:
    """Replace every stand-in in ``checkpoint`` by its real object (in place where mutable).

    Raises :class:`UnsafeCheckpointError` naming the file and key for a stand-in that never got
    its state, a ``getattr(HistoryBuffer, ...)`` outside a HistoryBuffer or a dtype as a dict
    key, and :class:`CheckpointStructureError` for a reference cycle or nesting deeper than
    :data:`MAX_DEPTH` (so that this walk, and the structure check after it, stay bounded).
    """
    return _Resolver(filename).resolve(checkpoint, ())


class _Resolver:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.done: Dict[int, Any] = {}
        self.active: Set[int] = set()
        self.keep: List[Any] = []  # originals stay alive, so their ids stay unique

    def refuse(self, path: Tuple[Any, ...], why: str,
               error: type = UnsafeCheckpointError) -> CheckpointError:
        return error(f'{self.filename}: refused to load: {format_key_path(path)}: {why}')

    def resolve(self, obj: Any, path: Tuple[Any, ...]) -> Any:
        if isinstance(obj, _StandIn):
            try:
                return obj.value()
            except StandInRefusal as err:
                raise self.refuse(path, str(err)) from None
        if isinstance(obj, _HistoryBufferMethod):
            raise self.refuse(path, f'{obj!r} outside a HistoryBuffer state (mmengine writes '
                                    'it only in HistoryBuffer.statistics_methods)')
        is_tensor = isinstance(obj, torch.Tensor)
        if type(obj) not in _CONTAINERS and not is_tensor:
            return obj
        key = id(obj)
        if key in self.done:
            return self.done[key]
        if key in self.active:
            raise self.refuse(path, 'contains itself (a reference cycle); mmengine '
                                    'checkpoints are trees', CheckpointStructureError)
        if len(path) >= MAX_DEPTH:
            raise self.refuse(path, f'is nested deeper than {MAX_DEPTH} levels',
                              CheckpointStructureError)
        self.active.add(key)
        self.keep.append(obj)
        if is_tensor:
            attributes = vars(obj)  # tensor attributes restored by torch's rebuild helpers
            result = obj
            if attributes:
                self.resolve_dict(attributes, path + ('<attributes>',))
        elif isinstance(obj, dict):
            self.resolve_dict(obj, path)
            result = obj
        elif isinstance(obj, list):
            for i, item in enumerate(obj):
                new = self.resolve(item, path + (i,))
                if new is not item:
                    obj[i] = new
            result = obj
        else:  # tuple, set: rebuilt when an item changes
            items = list(obj)
            new_items = [self.resolve(item, path + (i,)) for i, item in enumerate(items)]
            changed = any(a is not b for a, b in zip(items, new_items))
            result = type(obj)(new_items) if changed else obj
        self.active.discard(key)
        self.done[key] = result
        return result

    def resolve_dict(self, obj: dict, path: Tuple[Any, ...]) -> None:
        for k, v in list(obj.items()):
            if isinstance(k, (_StandIn, _HistoryBufferMethod)):
                raise self.refuse(path, f'the key {k!r} (numpy objects are not dict keys in '
                                        'mmengine checkpoints)')
            new = self.resolve(v, path + (k,))
            if new is not v:
                obj[k] = new
