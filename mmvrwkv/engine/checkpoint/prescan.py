"""Sizes a checkpoint declares, checked against the file before ``torch.load`` allocates them.

``torch.load`` allocates what the file *declares*: a storage of ``numel * element size`` bytes
for every persistent id ``('storage', StorageType, key, location, numel[, view])`` of the
pickle, before it reads the bytes (legacy format: a 900-byte file can ask for 1 GiB), and the
uncompressed size of a zip record before it inflates it (a 1 MB deflated record becomes
1 GiB). :func:`prescan_checkpoint` bounds all of it by the bytes the file really stores:

- **zip format** (torch >= 1.6): every record is STORED (torch never compresses), lies inside
  the file before the central directory and overlaps no other record; names are ASCII and
  unique ignoring case (torch's miniz looks them up that way); the central directory is where
  both Python's ``zipfile`` and miniz look for it. Each storage may declare at most the bytes
  of its record ``data/<key>``.
- **legacy format** (one pickle stream after another): every length inside the pickles fits
  in the file, and the storages declared by the main pickle add up to at most the bytes that
  follow the pickles.
- **both**: no pickle-level allocation of a size the file states without storing it: the
  globals ``builtins.bytearray`` and torch's quantized / sparse / nested / wrapper-subclass /
  device-from-numpy or -cpu rebuild helpers (none of which mmengine checkpoints use) are
  refused, and so is a call of a tensor or storage class (``torch.Tensor(n)``,
  ``TypedStorage(n)``). ``_codecs.encode`` only as protocol 2 writes bytes (a string of the
  pickle, ``'latin1'``: ``'hex'`` doubles, and can be applied again). A tensor is rebuilt only
  over a storage of the file (a persistent id) and inside it (``Tensor.set_`` resizes a
  resizable storage, as the legacy format's are, to the view), never set by BUILD.
  ``_rebuild_from_type_v2`` only with torch's own helpers as ``func`` (not itself, which
  would hide a call one level down), Tensor or Parameter as type, and no state; backward
  hooks and states are empty dicts that stay empty (they become attributes of the tensor).
  An opcode the weights-only unpickler does not accept is refused too.
- and, because the scan sees the whole pickle before torch runs any of it: a persistent id
  that is not a storage reference (torch passes its first item to a function before checking
  it) and any ``getattr`` other than mmengine's ``getattr(HistoryBuffer, 'mean')`` & co. (the
  stand-ins of :mod:`.unpickling` refuse them as well, but only when torch gets there).

The multiple is **1x**: nothing is allocated from the file beyond the bytes it stores, plus
the fixed-size objects of the pickle itself (storages are never compressed, so a real file
needs no more). A file that breaks a bound is refused with :class:`ResourceLimitError`, one
whose lengths run past its end with :class:`CorruptCheckpointError`; both name the file and
the record, key or global at fault.

The pickles are decoded with ``pickletools.genops`` and a small symbolic stack (ints, strings,
tuples, lists, global names, storages, dicts and their item counts, rebuilt tensors are
tracked, everything else is opaque); nothing from the file is imported or called.
"""
import io
import pickletools
import struct
import tarfile
import zipfile
from typing import Any, BinaryIO, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

from .errors import CorruptCheckpointError, ResourceLimitError, UnsafeCheckpointError
from .unpickling import HISTORY_BUFFER_METHODS

#: Each storage may allocate at most this multiple of the bytes the file stores for it.
MAX_SIZE_MULTIPLE = 1

#: Globals of torch's default allow-list that allocate memory of a size the pickle states
#: (or copy a tensor into another dtype/device); mmengine checkpoints never use them.
ALLOCATING_GLOBALS = frozenset({
    'builtins.bytearray',
    'torch._utils._rebuild_qtensor',
    'torch._utils._rebuild_sparse_tensor',
    'torch._utils._rebuild_nested_tensor',
    'torch._utils._rebuild_wrapper_subclass',
    'torch._utils._rebuild_device_tensor_from_numpy',
    'torch._utils._rebuild_device_tensor_from_cpu_tensor',
})

_REBUILD_FROM_TYPE = 'torch._tensor._rebuild_from_type_v2'
_HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'
_LONGEST_LINE = 1 << 16  # GLOBAL module/name lines (a real one is < 100 bytes)


def prescan_checkpoint(file: BinaryIO, filename: str) -> None:
    """Refuse ``file`` (an open, seekable binary file) if it declares more than it stores.

    ``filename`` is only for messages. Leaves the file at offset 0.
    """
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    head = file.read(4)
    file.seek(0)
    try:
        if head == b'PK\x03\x04':  # how torch.load tells the formats apart
            _prescan_zip(file, size, filename)
        else:
            _prescan_legacy(file, size, filename)
    finally:
        file.seek(0)


# ------------------------------------------------------------------------- zip format

def _prescan_zip(file: BinaryIO, size: int, filename: str) -> None:
    try:
        archive = zipfile.ZipFile(file)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
            UnicodeDecodeError, struct.error) as err:
        raise CorruptCheckpointError(
            f'{filename}: not a readable checkpoint: its zip structure is damaged ({err}). '
            'Use another copy, or an earlier checkpoint of the run.') from None
    if not infos:
        raise CorruptCheckpointError(f'{filename}: not a readable checkpoint: the zip archive '
                                     'holds no records')
    central = _central_directory_offset(file, size, filename)
    if central != archive.start_dir:
        raise CorruptCheckpointError(
            f'{filename}: refused: the zip central directory is ambiguous (Python reads it at '
            f'byte {archive.start_dir}, torch at byte {central}); torch never writes such files')
    records: Dict[str, zipfile.ZipInfo] = {}
    spans: List[Tuple[int, int, str]] = []
    for info in infos:
        name = info.filename
        if not name.isascii() or name.lower() in records:
            raise CorruptCheckpointError(
                f'{filename}: refused: the zip record name {name!r} is '
                f'{"not ASCII" if not name.isascii() else "there twice (ignoring case)"}; '
                'torch would pick one of them by its own rules')
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise ResourceLimitError(
                f'{filename}: refused: the zip record {name!r} is compressed (method '
                f'{info.compress_type}, {info.compress_size} bytes stored for {info.file_size}); '
                'torch writes every record uncompressed, and a compressed one can expand to any '
                'size in memory')
        if info.flag_bits & 0x1:
            raise CorruptCheckpointError(f'{filename}: refused: the zip record {name!r} is '
                                         'encrypted')
        start = _record_data_start(file, info, filename)
        end = start + info.file_size
        if end > archive.start_dir:
            raise ResourceLimitError(
                f'{filename}: refused: the zip record {name!r} declares {info.file_size} bytes '
                f'at byte {start}, but the records end at byte {archive.start_dir}; the file is '
                'truncated or forged')
        spans.append((info.header_offset, end, name))
        records[name.lower()] = info
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
        if begin < end:
            raise ResourceLimitError(
                f'{filename}: refused: the zip records {first!r} and {second!r} overlap (one '
                'stored byte would be loaded twice); torch never writes such files')
    first = infos[0].filename
    if '/' not in first:
        raise CorruptCheckpointError(f'{filename}: not a readable checkpoint: its first zip '
                                     f'record {first!r} is not inside an archive folder')
    prefix = first.split('/', 1)[0] + '/'
    pickle_info = records.get((prefix + 'data.pkl').lower())
    if pickle_info is None:
        return  # torch refuses it (no data.pkl, or TorchScript) before allocating anything
    file.seek(_record_data_start(file, pickle_info, filename))
    data = file.read(pickle_info.file_size)

    def check_storage(pid: 'StoragePid') -> None:
        record = records.get(f'{prefix}data/{pid.key}'.lower())
        if record is None:
            raise ResourceLimitError(
                f'{filename}: refused: storage {pid.key!r} ({pid.nbytes} bytes declared) has '
                f'no record data/{pid.key} in the archive')
        if pid.nbytes > MAX_SIZE_MULTIPLE * record.file_size:
            raise ResourceLimitError(
                f'{filename}: refused: storage {pid.key!r} declares {pid.numel} elements of '
                f'{pid.dtype} ({pid.nbytes} bytes), but its record {record.filename!r} stores '
                f'{record.file_size} bytes; a storage may not declare more than its record '
                'stores')

    _scan_pickle(_BoundedReader(io.BytesIO(data), len(data), filename, 'data.pkl'), filename,
                 check_storage, legacy=False)


def _central_directory_offset(file: BinaryIO, size: int, filename: str) -> int:
    """Where the end-of-central-directory record says the central directory starts (as miniz
    reads it: the last EOCD signature at or before ``size - 22``, and the zip64 end record
    when a zip64 locator precedes it)."""
    tail_len = min(size, 22 + 0xFFFF)
    file.seek(size - tail_len)
    tail = file.read(tail_len)
    pos = tail.rfind(b'PK\x05\x06', 0, tail_len - 22 + 4)
    if pos < 0:
        raise CorruptCheckpointError(f'{filename}: not a readable checkpoint: no zip end '
                                     'record')
    offset = struct.unpack('<4s4H2LH', tail[pos:pos + 22])[6]
    at = size - tail_len + pos  # the end record's offset in the file
    file.seek(max(at - 20, 0))
    locator = file.read(20) if at >= 20 else b''
    if locator[:4] == b'PK\x06\x07':  # zip64 (torch always writes it): its values count
        where = struct.unpack('<4sLQL', locator)[2]
        file.seek(min(where, size))
        record = file.read(56)
        if len(record) != 56 or record[:4] != b'PK\x06\x06':
            raise CorruptCheckpointError(f'{filename}: not a readable checkpoint: the zip64 '
                                         'end record is damaged')
        offset = struct.unpack('<4sQ2H2L4Q', record)[-1]
    return offset


def _record_data_start(file: BinaryIO, info: zipfile.ZipInfo, filename: str) -> int:
    """First data byte of a record, from its local header (which must say STORED too)."""
    header = b''
    if 0 <= info.header_offset <= file.seek(0, io.SEEK_END) - 30:
        file.seek(info.header_offset)
        header = file.read(30)
    if len(header) != 30 or header[:4] != b'PK\x03\x04':
        raise CorruptCheckpointError(f'{filename}: not a readable checkpoint: the zip record '
                                     f'{info.filename!r} has no local header')
    method, = struct.unpack('<H', header[8:10])
    name_len, extra_len = struct.unpack('<HH', header[26:30])
    if method != zipfile.ZIP_STORED:
        raise ResourceLimitError(
            f'{filename}: refused: the zip record {info.filename!r} is compressed (method '
            f'{method} in its local header); torch writes every record uncompressed')
    return info.header_offset + 30 + name_len + extra_len


# ------------------------------------------------------------------------- legacy format

def _prescan_legacy(file: BinaryIO, size: int, filename: str) -> None:
    # torch first tries the tar format of torch < 0.4: a file that starts with a valid tar
    # header has its headers read by ``tarfile`` (a pax header can ask for any size), and is
    # then refused under weights_only anyway. Refuse it here, before that.
    file.seek(0)
    head = file.read(512)
    if len(head) == 512:
        try:
            tarfile.TarInfo.frombuf(head, tarfile.ENCODING, 'surrogateescape')
        except (tarfile.TarError, ValueError, UnicodeError, OverflowError):
            pass
        else:
            raise CorruptCheckpointError(
                f'{filename}: refused: it is a tar archive (the checkpoint format of torch < '
                '0.4), which the weights-only loader does not read; load it once with a trusted '
                'torch < 2.6 and save it again')
    file.seek(0)
    reader = _BoundedReader(file, size, filename, 'the legacy pickles')
    declared: Dict[Any, 'StoragePid'] = {}

    def check_storage(pid: 'StoragePid') -> None:
        declared.setdefault(pid.key, pid)  # torch allocates each root storage once

    # magic number, protocol version, system info, the checkpoint, the storage keys
    for index in range(5):
        _scan_pickle(reader, filename, check_storage, legacy=True, main=index == 3)
    stored = size - reader.tell()
    total = sum(pid.nbytes for pid in declared.values())
    if total > MAX_SIZE_MULTIPLE * stored:
        largest = max(declared.values(), key=lambda p: p.nbytes)
        raise ResourceLimitError(
            f'{filename}: refused: its storages declare {total} bytes in all (storage '
            f'{largest.key!r}: {largest.numel} elements of {largest.dtype}), but only {stored} '
            'bytes of tensor data follow the pickles; torch would allocate the declared size '
            'before reading')


# ------------------------------------------------------------------------- pickles

class StoragePid(NamedTuple):
    """A decoded persistent id: the storage ``key`` and what it declares."""
    key: str
    dtype: torch.dtype
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * torch._utils._element_size(self.dtype)


class _Global(NamedTuple):
    name: str


class _Storage(NamedTuple):
    """A storage of the file (the result of a persistent id): the elements of ``dtype`` a
    tensor over it may span (a legacy view: the view's own size)."""
    key: str
    dtype: torch.dtype
    elements: int


class _Dict:
    """A dict the pickle builds (``{}`` or ``OrderedDict()``), with its number of items.

    ``frozen`` names the use (hooks, state) once the dict went into a call that must get an
    empty one: adding items later (the callee keeps a reference) is refused too.
    """

    __slots__ = ('items', 'frozen')

    def __init__(self) -> None:
        self.items = 0
        self.frozen: Optional[str] = None


class _TensorValue:
    """The result of a tensor rebuild helper (a tensor or Parameter)."""


class _Opaque:
    """A value the scan does not track (other call results, numpy objects)."""


_OPAQUE = _Opaque()
_TENSOR = _TensorValue()


class _BoundedReader:
    """``read``/``readline`` over ``file`` that refuse lengths past its end (instead of
    allocating them, as a plain file's ``read(n)`` does)."""

    def __init__(self, file: BinaryIO, size: int, filename: str, what: str) -> None:
        self.file, self.size, self.filename, self.what = file, size, filename, what

    def tell(self) -> int:
        return self.file.tell()

    def read(self, n: int = -1) -> bytes:
        pos = self.file.tell()
        if n is None or n < 0:
            n = max(self.size - pos, 0)
        if n > self.size - pos:
            raise CorruptCheckpointError(
                f'{self.filename}: not a readable checkpoint: a {n}-byte value is declared at '
                f'byte {pos} of {self.what}, but only {self.size - pos} bytes follow (the file '
                'is truncated or damaged)')
        return self.file.read(n)

    def readline(self, limit: int = -1) -> bytes:
        return self.file.readline(_LONGEST_LINE)


#: Opcodes of torch's weights-only unpickler (and the few protocol-4 ones that only push).
_PUSH_CONSTANT = {'NONE': None, 'NEWTRUE': True, 'NEWFALSE': False, 'EMPTY_TUPLE': ()}
_PUSH_ARG = {'BININT', 'BININT1', 'BININT2', 'LONG1', 'BINFLOAT', 'BINUNICODE',
             'SHORT_BINUNICODE', 'SHORT_BINSTRING'}


def _scan_pickle(reader: _BoundedReader, filename: str,
                 check_storage: Callable[[StoragePid], None], *, legacy: bool,
                 main: bool = True) -> None:
    """Walk one pickle (up to its STOP) symbolically; call ``check_storage`` per storage id."""
    stack: List[Any] = []
    marks: List[List[Any]] = []
    memo: Dict[int, Any] = {}

    def corrupt(why: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f'{filename}: not a readable checkpoint: {why} in '
                                      f'{reader.what} (the file is truncated or damaged)')

    def pop() -> Any:
        if not stack:
            raise corrupt('a pickle opcode finds an empty stack')
        return stack.pop()

    def pop_mark() -> List[Any]:
        nonlocal stack
        if not marks:
            raise corrupt('a pickle opcode finds no MARK')
        items, stack = stack, marks.pop()
        return items

    ops = pickletools.genops(reader)
    while True:
        try:
            opcode, arg, pos = next(ops)
        except StopIteration:
            raise corrupt('a pickle ends without STOP') from None
        except CorruptCheckpointError:
            raise
        except (ValueError, UnicodeDecodeError, struct.error, OverflowError, EOFError) as err:
            raise corrupt(f'an undecodable pickle opcode ({err})') from None
        name = opcode.name
        if name in _PUSH_CONSTANT:
            stack.append(_PUSH_CONSTANT[name])
        elif name in _PUSH_ARG:
            stack.append(arg)
        elif name == 'EMPTY_LIST':
            stack.append([])
        elif name == 'EMPTY_DICT':
            stack.append(_Dict())
        elif name == 'EMPTY_SET':
            stack.append(_OPAQUE)
        elif name in ('GLOBAL', 'STACK_GLOBAL'):
            if name == 'GLOBAL':
                module, _, attr = arg.partition(' ')
            else:
                attr, module = pop(), pop()
            stack.append(_Global(_global_name(module, attr)))
            if stack[-1].name in ALLOCATING_GLOBALS:
                raise ResourceLimitError(
                    f'{filename}: refused: the pickle uses {stack[-1].name}, which allocates '
                    'memory of a size the file states without storing it (mmengine '
                    'checkpoints never use it)')
        elif name == 'MARK':
            marks.append(stack)
            stack = []
        elif name == 'TUPLE':
            items = pop_mark()  # (rebinds ``stack``: pop first, then push)
            stack.append(tuple(items))
        elif name in ('TUPLE1', 'TUPLE2', 'TUPLE3'):
            n = int(name[-1])
            items = [pop() for _ in range(n)][::-1]
            stack.append(tuple(items))
        elif name == 'APPEND':
            item = pop()
            if stack and isinstance(stack[-1], list):
                stack[-1].append(item)
        elif name == 'APPENDS':
            items = pop_mark()
            if stack and isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name in ('SETITEM', 'SETITEMS'):
            added = 1 if name == 'SETITEM' else len(pop_mark()) // 2
            if name == 'SETITEM':
                pop(), pop()
            if not stack:
                raise corrupt(f'{name} finds no dict')
            if isinstance(stack[-1], _Dict):
                _grow_dict(stack[-1], added, filename)
        elif name == 'BUILD':
            pop()
            if not stack:
                raise corrupt('BUILD finds no object')
            if stack[-1] is _TENSOR:
                raise UnsafeCheckpointError(
                    f'{filename}: refused to load: the pickle sets the state of a tensor with '
                    'BUILD (Tensor.set_ with storage, offset, size, stride from the file, which '
                    'can resize a storage); torch.save never writes it')
            if isinstance(stack[-1], _Dict):
                _grow_dict(stack[-1], 0, filename)
        elif name in ('REDUCE', 'NEWOBJ'):
            args, func = pop(), pop()
            stack.append(_check_call(func, args, filename))
        elif name == 'BINPERSID':
            pid = pop()
            decoded, span = _decode_pid(pid, filename, legacy)
            if main:
                check_storage(decoded)
            stack.append(_Storage(decoded.key, decoded.dtype, span))
        elif name in ('BINPUT', 'LONG_BINPUT', 'MEMOIZE'):
            if not stack:
                raise corrupt('a memo opcode finds an empty stack')
            memo[len(memo) if name == 'MEMOIZE' else arg] = stack[-1]
        elif name in ('BINGET', 'LONG_BINGET'):
            if arg not in memo:
                raise corrupt(f'the pickle reads memo entry {arg}, which it never wrote')
            stack.append(memo[arg])
        elif name == 'PROTO':
            pass
        elif name == 'STOP':
            return
        else:
            raise UnsafeCheckpointError(
                f'{filename}: refused to load: the pickle uses the opcode {name} (byte '
                f'{pos}), which the weights-only unpickler does not allow')


def _global_name(module: Any, attr: Any) -> str:
    """``module.attr`` as torch's weights-only unpickler names it (Python 2 names mapped)."""
    from torch._utils import IMPORT_MAPPING, NAME_MAPPING
    if not isinstance(module, str) or not isinstance(attr, str):
        return '?'
    if (module, attr) in NAME_MAPPING:
        module, attr = NAME_MAPPING[(module, attr)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f'{module}.{attr}'


def _tensor_class_names() -> frozenset:
    names = {'torch.Tensor'}
    names.update(f'{c.__module__}.{c.__name__}' for c in torch._tensor_classes)
    return frozenset(names)


#: The rebuild helpers torch.save writes for a dense CPU tensor or a Parameter, and so the
#: only ``func`` of ``_rebuild_from_type_v2(func, type, args, state)`` accepted.
_REBUILD_FUNCS = frozenset({'torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_parameter',
                            'torch._utils._rebuild_parameter_with_state'})
#: Rebuild helpers over a storage of the file: ``(storage, offset, size, stride, ...)``.
_TENSOR_OVER_STORAGE = frozenset({'torch._utils._rebuild_tensor', 'torch._utils._rebuild_tensor_v2',
                                  'torch._utils._rebuild_tensor_v3'})
#: Every global whose call returns a tensor.
_TENSOR_RESULTS = _TENSOR_OVER_STORAGE | _REBUILD_FUNCS | {
    _REBUILD_FROM_TYPE, 'torch.nn.parameter.Parameter',
    'torch._utils._rebuild_meta_tensor_no_storage'}
_CODECS_ENCODE = '_codecs.encode'


def _storage_class_names() -> frozenset:
    """The storage classes on torch's list that can be called (``TypedStorage(n)`` and
    ``UntypedStorage(n)`` allocate n elements; the legacy names are inert wrappers)."""
    return frozenset(f'{c.__module__}.{c.__name__}'
                     for c in (torch.storage.TypedStorage, torch.storage.UntypedStorage))


def _check_call(func: Any, args: Any, filename: str) -> Any:
    """Refuse a call that allocates what the pickle states, or sets state it should not;
    return the symbolic result (a :class:`_Dict` for ``OrderedDict()``, :data:`_TENSOR` for a
    rebuild helper, else :data:`_OPAQUE`).

    Refused: a tensor or storage class called directly (``torch.Tensor(n)``,
    ``TypedStorage(n)``); ``_codecs.encode`` other than ``(text, 'latin1')``, which is how
    protocol 2 writes bytes; ``_rebuild_from_type_v2`` with a ``func`` other than torch's own
    rebuild helpers, a type other than Tensor / Parameter, or a state (its attributes would
    be set on the result); a tensor rebuilt over anything but a storage of the file, or
    spanning more than it; backward hooks other than an empty dict; and any ``getattr`` but
    mmengine's ``getattr(HistoryBuffer, <statistics method>)`` (the stand-in refuses it too,
    but only when the unpickler gets there).
    """
    if not isinstance(func, _Global):
        return _OPAQUE
    name = func.name
    if name in _tensor_class_names() or name in _storage_class_names():
        raise ResourceLimitError(
            f'{filename}: refused: the pickle calls {name}(...), which allocates a '
            f'{"tensor" if "Storage" not in name else "storage"} of a size the file states '
            'without storing it (torch.save never writes such a call)')
    if name == _CODECS_ENCODE:
        _check_encode(args, filename)
    elif name == 'builtins.getattr':
        _check_getattr(args, filename)
    elif name == _REBUILD_FROM_TYPE:
        _check_rebuild_from_type(args, filename)
    elif name in _TENSOR_OVER_STORAGE:
        _check_tensor_over_storage(name, args, filename)
    elif name in ('torch._utils._rebuild_parameter', 'torch._utils._rebuild_parameter_with_state'):
        if not isinstance(args, tuple) or len(args) != (3 if name.endswith('parameter') else 4):
            raise _not_as_torch_writes(name, args, filename)
        _freeze_empty(args[2], f'the backward hooks of {name}', filename)
        if len(args) == 4:
            _check_state(args[3], name, filename)
    if name == 'collections.OrderedDict' and args == ():
        return _Dict()
    return _TENSOR if name in _TENSOR_RESULTS else _OPAQUE


def _not_as_torch_writes(name: str, args: Any, filename: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f'{filename}: refused: {name}{_describe_args(args)} is not a call as torch.save '
        'writes it')


def _describe_args(args: Any) -> str:
    if isinstance(args, tuple):
        return '(' + ', '.join(map(_describe, args)) + ')'
    return f'(*{_describe(args)})'


def _check_encode(args: Any, filename: str) -> None:
    """``_codecs.encode(text, 'latin1')`` with ``text`` a string of the pickle: its result is
    as long as the text the file stores. Any other codec ('hex' doubles, and its result can
    be encoded again) or a computed argument is refused."""
    ok = (isinstance(args, tuple) and len(args) == 2 and type(args[0]) is str
          and type(args[1]) is str and args[1] == 'latin1')
    if not ok:
        raise ResourceLimitError(
            f'{filename}: refused: the pickle calls {_CODECS_ENCODE}{_describe_args(args)}; '
            "the only call torch.save writes is _codecs.encode(<a string of the file>, "
            "'latin1') (bytes in pickle protocol 2). Another codec, or a computed argument, "
            'can make the result any multiple of what the file stores')


def _check_getattr(args: Any, filename: str) -> None:
    ok = (isinstance(args, tuple) and len(args) == 2
          and isinstance(args[0], _Global) and args[0].name == _HISTORY_BUFFER
          and type(args[1]) is str and args[1] in HISTORY_BUFFER_METHODS)
    if not ok:
        what = (', '.join(map(_describe, args)) if isinstance(args, tuple)
                else _describe(args))
        raise UnsafeCheckpointError(
            f'{filename}: refused to load: refused getattr({what}): the only attribute '
            "look-ups a checkpoint may make are mmengine HistoryBuffer's statistics "
            f'methods ({", ".join(HISTORY_BUFFER_METHODS)})')


def _check_rebuild_from_type(args: Any, filename: str) -> None:
    """``_rebuild_from_type_v2(func, new_type, args, state)`` calls ``func(*args)`` and sets
    ``state`` as attributes of the result; only torch's own helpers and no state pass."""
    if not isinstance(args, tuple) or len(args) != 4:
        raise _not_as_torch_writes(_REBUILD_FROM_TYPE, args, filename)
    func, new_type, inner, state = args
    if isinstance(func, _Global) and func.name in _tensor_class_names():
        raise ResourceLimitError(
            f'{filename}: refused: the pickle calls {func.name}(...) (through '
            f'{_REBUILD_FROM_TYPE}), which allocates a tensor of a size the file states '
            'without storing it (torch.save never writes such a call)')
    if not (isinstance(func, _Global) and func.name in _REBUILD_FUNCS):
        raise ResourceLimitError(
            f'{filename}: refused: the pickle calls {_REBUILD_FROM_TYPE} with the function '
            f'{_describe(func)}; torch.save writes it only with '
            f'{", ".join(sorted(_REBUILD_FUNCS))} (anything else, {_REBUILD_FROM_TYPE} itself '
            'included, can hide a call that allocates what the file does not store)')
    if not (isinstance(new_type, _Global)
            and new_type.name in ('torch.Tensor', 'torch.nn.parameter.Parameter')):
        raise UnsafeCheckpointError(
            f'{filename}: refused to load: {_REBUILD_FROM_TYPE} makes a '
            f'{_describe(new_type)}; a checkpoint holds torch.Tensor and Parameter only')
    _check_state(state, _REBUILD_FROM_TYPE, filename)
    _check_call(func, inner, filename)


def _check_state(state: Any, name: str, filename: str) -> None:
    """The state argument of a rebuild helper (set as attributes of the tensor: a checkpoint
    tensor has none, and structure refuses tensors with Python attributes anyway)."""
    if state is None:
        return
    if isinstance(state, _Dict) and not state.items and state.frozen is None:
        state.frozen = f'the state of {name}'
        return
    raise UnsafeCheckpointError(
        f'{filename}: refused to load: {name} is given the state {_describe(state)}, which '
        'it would set as attributes of the tensor; checkpoint tensors carry no attributes, '
        'so the state must be None or empty')


def _freeze_empty(value: Any, what: str, filename: str) -> None:
    """``value`` must be an empty dict (``OrderedDict()``, as torch writes backward hooks),
    and stays empty."""
    if isinstance(value, _Dict) and not value.items and value.frozen is None:
        value.frozen = what
        return
    raise UnsafeCheckpointError(
        f'{filename}: refused to load: {what} are {_describe(value)}; torch.save writes an '
        'empty OrderedDict() (hooks are never saved)')


def _grow_dict(target: _Dict, added: int, filename: str) -> None:
    """Items (or a BUILD) for a dict the pickle already handed to a rebuild helper."""
    if target.frozen is not None:
        raise UnsafeCheckpointError(
            f'{filename}: refused to load: the pickle adds items to {target.frozen} after '
            'the call (the tensor keeps the dict); torch.save writes it empty')
    target.items += max(added, 1)


def _check_tensor_over_storage(name: str, args: Any, filename: str) -> None:
    """``_rebuild_tensor[_v2|_v3](storage, offset, size, stride, ...)``: a storage of the file,
    and a view inside it (``Tensor.set_`` resizes a resizable storage to fit the view: the
    legacy format's storages are resizable, so the size would be allocated)."""
    width = {'torch._utils._rebuild_tensor': (4,), 'torch._utils._rebuild_tensor_v2': (6, 7),
             'torch._utils._rebuild_tensor_v3': (7, 8)}[name]
    if not isinstance(args, tuple) or len(args) not in width:
        raise _not_as_torch_writes(name, args, filename)
    storage, offset, size, stride = args[:4]
    if not isinstance(storage, _Storage):
        raise ResourceLimitError(
            f'{filename}: refused: {name} is given {_describe(storage)} as its storage; a '
            'tensor may only be built over a storage the file stores (a persistent id), '
            'never over one the pickle makes (TypedStorage(n) allocates n elements)')
    plain = (type(offset) is int and offset >= 0 and type(size) is tuple
             and type(stride) is tuple and len(size) == len(stride)
             and all(type(v) is int and v >= 0 for v in size + stride))
    if not plain:
        raise _not_as_torch_writes(name, args, filename)
    dtype = storage.dtype  # v2 and v1: the tensor has the storage's dtype
    if name == 'torch._utils._rebuild_tensor_v3':  # over an untyped storage, dtype given
        dtype = _dtype_of(args[6])
        if dtype is None:
            raise _not_as_torch_writes(name, args, filename)
    span = 0 if 0 in size else offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    needed = span * torch._utils._element_size(dtype)
    holds = storage.elements * torch._utils._element_size(storage.dtype)
    if needed > holds:
        raise ResourceLimitError(
            f'{filename}: refused: a tensor of shape {list(size)} (stride {list(stride)}, '
            f'offset {offset}) spans {needed} bytes of storage {storage.key!r}, which holds '
            f'{holds}; torch would resize the storage to the view (allocating what the file '
            'does not store) or refuse it')
    if len(args) > 4:
        _freeze_empty(args[5], f'the backward hooks of {name}', filename)


def _dtype_of(value: Any) -> Optional[torch.dtype]:
    if not isinstance(value, _Global):
        return None
    from torch._weights_only_unpickler import _get_allowed_globals
    obj = _get_allowed_globals().get(value.name)
    return obj if isinstance(obj, torch.dtype) else None


def _decode_pid(pid: Any, filename: str, legacy: bool) -> Tuple[StoragePid, int]:
    """``('storage', StorageType, key, location, numel)`` (legacy: ``+ (view_metadata,)``),
    and the elements a tensor over it may span (``numel``; a legacy view: its size)."""
    def undecodable(why: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f'{filename}: refused: the persistent id {_describe(pid)} is not a storage '
            f'reference as torch writes it ({why})')

    width = 6 if legacy else 5
    if not isinstance(pid, tuple) or not pid or pid[0] not in ('storage', b'storage'):
        # torch hands the first item to a function before it checks it
        raise UnsafeCheckpointError(
            f'{filename}: refused to load: the persistent id {_describe(pid)} is not a '
            "storage reference (('storage', ...)), the only kind torch loads")
    if len(pid) != width:
        raise undecodable(f'expected a tuple of {width} items')
    _, storage_type, key, location, numel = pid[:5]
    dtype = _storage_dtype(storage_type)
    if dtype is None:
        raise undecodable(f'{_describe(storage_type)} is not a torch storage type')
    if not isinstance(key, str) or not isinstance(location, (str, bytes)):
        raise undecodable('the key or the location is not a string')
    if type(numel) is not int or numel < 0:
        raise undecodable(f'the element count {_describe(numel)} is not a non-negative int')
    span = numel
    if legacy:
        view = pid[5]
        if view is not None and not (isinstance(view, tuple) and len(view) == 3
                                     and isinstance(view[0], str)
                                     and all(type(v) is int and v >= 0 for v in view[1:])):
            raise undecodable('the view metadata is neither None nor (key, offset, size)')
        if view is not None:
            span = view[2]
    return StoragePid(key, dtype, numel), span


def _storage_dtype(storage_type: Any) -> Optional[torch.dtype]:
    """The dtype of a storage global as torch's weights-only unpickler resolves it."""
    if not isinstance(storage_type, _Global):
        return None
    from torch._weights_only_unpickler import _get_allowed_globals
    obj = _get_allowed_globals().get(storage_type.name)
    if obj is torch.UntypedStorage:
        return torch.uint8
    if isinstance(obj, torch.serialization.StorageType):
        return obj.dtype
    return None


def _describe(value: Any) -> str:
    if isinstance(value, _Global):
        return value.name
    if value is _OPAQUE:
        return '<a computed value>'
    if value is _TENSOR:
        return '<a tensor>'
    if isinstance(value, _Storage):
        return f'<storage {value.key!r}>'
    if isinstance(value, _Dict):
        return f'a dict of {value.items} item(s)' if value.items else 'an empty dict'
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + '...'

