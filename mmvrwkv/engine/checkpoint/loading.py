"""Loading checkpoints without running code from them.

Every checkpoint is read by torch's weights-only unpickler (``weights_only=True``, always
explicit) with an allow-list of exactly what mmengine Runner checkpoints hold besides tensors:
the ``HistoryBuffer`` class of the message hub, numpy arrays, scalars and dtypes. No generic
callable is on it: ``HistoryBuffer`` pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')``, so the global ``builtins.getattr`` is answered by
:func:`_history_buffer_method`, which returns only those methods and refuses everything else
(a real ``getattr`` would hand a pickle any module's globals). After loading,
``meta['config']`` (mmengine's ``Runner.resume`` executes it with ``Config.fromstring``) is
replaced by an inert text that keeps only a literal ``gpu_ids``.

:func:`register_checkpoint_loaders` makes mmengine's ``CheckpointLoader`` use this loader for
local files and URLs, so ``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained')`` and the
upstream inferencers all load through it. ``import mmvrwkv`` calls it. How each attack is
refused, and the tests that prove it, is in ``mmvrwkv/engine/checkpoint/README.md``.
"""
import ast
import contextlib
import os
import os.path as osp
import pickle
import pickletools
import re
import zipfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import torch

from .digest import verify_digest


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and the reason."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file asks the unpickler for something outside the allow-list (it could run code)."""


class CorruptCheckpointError(CheckpointError):
    """The file is empty, truncated or not a torch checkpoint at all."""


# ------------------------------------------------------------------------- allow-list

#: Statistics methods of ``HistoryBuffer`` that mmengine registers itself.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(obj: Any, name: Any) -> Callable:
    """Stands in for ``builtins.getattr`` while unpickling: only ``HistoryBuffer.<method>``."""
    from mmengine.logging import HistoryBuffer
    allowed = set(_HISTORY_BUFFER_METHODS) | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
        method = HistoryBuffer.__dict__.get(name)
        if callable(method):
            return method
    raise pickle.UnpicklingError(
        f'refused getattr({_describe(obj)}, {name!r}): the only attribute look-ups a '
        "checkpoint may make are mmengine HistoryBuffer's statistics methods "
        f'({", ".join(sorted(allowed))})')


def _describe(obj: Any) -> str:
    qualname = getattr(obj, '__qualname__', None)
    module = getattr(obj, '__module__', None)
    if isinstance(qualname, str):
        return f'{module}.{qualname}' if isinstance(module, str) else qualname
    return type(obj).__name__ + ' object'


def mmengine_safe_globals() -> List[Union[object, tuple]]:
    """The allow-list for ``torch.load(weights_only=True)`` of mmengine checkpoints."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    allowed: List[Union[object, tuple]] = [
        HistoryBuffer, np.ndarray, np.dtype, (_history_buffer_method, 'builtins.getattr')]
    # numpy pickles arrays and scalars through these two constructors; their module moved
    # from numpy.core to numpy._core in numpy 2, and checkpoints carry either name.
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    for fn in (multiarray._reconstruct, multiarray.scalar):
        allowed += [(fn, f'{mod}.{fn.__name__}')
                    for mod in ('numpy._core.multiarray', 'numpy.core.multiarray')]
    # numpy 2 pickles dtypes by their class (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return allowed


def allow_mmengine_checkpoints() -> None:
    """Add :func:`mmengine_safe_globals` to torch's process-wide allow-list (idempotent).

    For code that calls ``torch.load`` itself; everything that goes through mmengine's
    ``CheckpointLoader`` already uses :func:`load_checkpoint_file`.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch < 2.4 has no allow-list (and no weights_only default)
        add(mmengine_safe_globals())


def _ensure_safe_globals() -> None:
    """Put the allow-list on torch's list and check that 'builtins.getattr' means our
    stand-in. (torch's scoped ``safe_globals`` removes its entries on exit even when they
    were registered before, so the process-wide registration is used throughout.)"""
    allow_mmengine_checkpoints()
    # If other code put the real getattr on torch's allow-list, torch may resolve the name
    # to it, and then a checkpoint can run code: refuse to load at all.
    import builtins
    listed = getattr(torch.serialization, 'get_safe_globals', lambda: [])()
    if any((e[0] if isinstance(e, tuple) else e) is builtins.getattr for e in listed):
        raise CheckpointError(
            "builtins.getattr is on torch's weights-only allow-list (added by other code: "
            'torch.serialization.add_safe_globals([getattr])); with it a checkpoint can run '
            'code, so mmvrwkv refuses to load any. Remove that call.')


@contextlib.contextmanager
def _history_buffer_methods_unchanged(filename: str) -> Iterator[None]:
    """``HistoryBuffer.__setstate__`` merges a pickled method table into a class-level dict:
    a checkpoint may add mmengine's methods to it but never replace one."""
    from mmengine.logging import HistoryBuffer
    table = HistoryBuffer._statistics_methods
    before = dict(table)
    try:
        yield
    finally:
        changed = [k for k, v in table.items()
                   if (k in before and v is not before[k])
                   or (k not in before and v is not HistoryBuffer.__dict__.get(k))]
        if changed:
            table.clear()
            table.update(before)
            raise UnsafeCheckpointError(
                f'{filename}: refused: it replaces HistoryBuffer statistics method(s) '
                f'{", ".join(map(repr, changed))} with other objects')


# ------------------------------------------------------------------------- loading

_GLOBAL_RE = re.compile(r'GLOBAL ([\w.]+)')


def _refused_globals(filename: str, message: str) -> List[str]:
    names = _GLOBAL_RE.findall(message)
    finder = getattr(torch.serialization, 'get_unsafe_globals_in_checkpoint', None)
    if finder is not None and zipfile.is_zipfile(filename):
        try:
            allowed = {name for entry in mmengine_safe_globals()
                       if isinstance(entry, tuple) for name in [entry[1]]}
            names += [n for n in finder(filename) if n not in allowed and n not in names]
        except Exception:  # noqa: BLE001 - only for a better message
            pass
    return names


#: What torch's weights-only unpickler says when it refuses (rather than fails to parse).
_REFUSAL_RE = re.compile(r'Unsupported global|Unsupported class|Trying to call reduce|'
                         r'Can only (build|SETITEM|append)|refused')
_OPERAND_RE = re.compile(r'Unsupported operand (\d+)')


def _is_refusal(err: BaseException) -> bool:
    """A refusal of something the file asks for, as opposed to bytes that do not parse."""
    if not isinstance(err, pickle.UnpicklingError):
        return False
    text = str(err)
    if _REFUSAL_RE.search(text):
        return True
    operand = _OPERAND_RE.search(text)  # a real pickle opcode outside the allowed subset
    return bool(operand) and chr(int(operand.group(1))) in {
        op.code for op in pickletools.opcodes}


def _explain_failure(filename: str, err: BaseException) -> CheckpointError:
    text = str(err)
    if _is_refusal(err):
        names = _refused_globals(filename, text)
        what = (f'the global(s) {", ".join(names)}' if names else
                'an operation outside the allow-list')
        detail = text.split('WeightsUnpickler error:', 1)[-1].strip().split('\n')[0]
        detail = detail.split('. Please use', 1)[0].rstrip('.')  # torch's advice: not ours
        return UnsafeCheckpointError(
            f'{filename}: refused to load: it needs {what}, which the weights-only unpickler '
            f'does not allow (loading it could run code from the file). Detail: {detail}. '
            'Only load such a file with torch.load(weights_only=False) if you trust its '
            'origin completely.')
    return CorruptCheckpointError(
        f'{filename}: not a readable checkpoint: the file is truncated, damaged or not a '
        f'torch checkpoint ({type(err).__name__}: {text.splitlines()[0] if text else err!r}). '
        'Use another copy, or an earlier checkpoint of the run.')


def load_checkpoint_file(filename: str, map_location: Any = 'cpu') -> Any:
    """Load a checkpoint file safely (see the module docstring) and check its digest.

    Raises ``FileNotFoundError`` for a missing file, :class:`UnsafeCheckpointError` for a file
    that needs more than the allow-list (the refused globals named),
    :class:`CorruptCheckpointError` for an empty, truncated or foreign file and
    :class:`~.digest.CheckpointDigestError` for tensors that do not match their digest.
    """
    filename = os.fspath(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist (or is not a file)')
    if osp.getsize(filename) == 0:
        raise CorruptCheckpointError(
            f'{filename}: the file is empty (0 bytes), not a checkpoint; an interrupted '
            'write leaves such files. Use an earlier checkpoint of the run.')
    try:
        _ensure_safe_globals()
        with _history_buffer_methods_unchanged(filename):
            checkpoint = torch.load(filename, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError,
            KeyError, IndexError, AttributeError, zipfile.BadZipFile, UnicodeDecodeError,
            OverflowError, MemoryError) as err:
        raise _explain_failure(filename, err) from err
    neutralise_meta_config(checkpoint)
    verify_digest(checkpoint, filename)
    return checkpoint


# ------------------------------------------------------------------------- meta['config']

#: Longest ``meta['config']`` text that is parsed for ``gpu_ids`` (a config is a few 10 kB).
_MAX_CONFIG_TEXT = 1 << 20


def literal_gpu_ids(config_text: str) -> Optional[list]:
    """``gpu_ids`` of a config text if it is a top-level literal assignment, else None.

    Parses, never executes: the text comes from a checkpoint.
    """
    if not isinstance(config_text, str) or len(config_text) > _MAX_CONFIG_TEXT:
        return None
    try:
        tree = ast.parse(config_text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    ids = None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == 'gpu_ids'):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                value = None
            ok = (isinstance(value, (list, tuple))
                  and all(isinstance(i, int) and not isinstance(i, bool) for i in value))
            ids = list(value) if ok else None
    return ids


def neutralise_meta_config(checkpoint: Any) -> None:
    """Replace ``checkpoint['meta']['config']`` by ``gpu_ids = [...]`` (or remove it).

    mmengine's ``Runner.resume`` passes that text to ``Config.fromstring``, which runs it as
    Python; the only thing it reads from it is ``gpu_ids``, which this keeps as a literal.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or 'config' not in meta:
        return
    ids = literal_gpu_ids(meta['config'])
    if ids is None:
        del meta['config']
    else:
        meta['config'] = f'gpu_ids = {ids!r}\n'


# ------------------------------------------------------------------------- mmengine

def _load_local(filename: str, map_location: Any = None) -> Any:
    return load_checkpoint_file(osp.expanduser(filename), map_location=map_location)


def _load_http(filename: str, map_location: Any = None, model_dir: Optional[str] = None,
               progress: bool = False) -> Any:
    """Download once (rank 0 first, as mmengine does) into torch's hub cache, then load."""
    from mmengine.dist import get_dist_info
    from torch.hub import download_url_to_file, get_dir
    from urllib.parse import urlparse

    rank, world_size = get_dist_info()
    folder = model_dir or osp.join(get_dir(), 'checkpoints')
    cached = osp.join(folder, osp.basename(urlparse(filename).path) or 'checkpoint.pth')

    def fetch() -> None:
        if not osp.isfile(cached):
            os.makedirs(folder, exist_ok=True)
            download_url_to_file(filename, cached, progress=progress)  # atomic (tmp + move)

    if rank == 0:
        fetch()
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            fetch()
    return load_checkpoint_file(cached, map_location=map_location)


_REGISTERED: Dict[str, bool] = {}


def register_checkpoint_loaders() -> None:
    """Route mmengine's ``CheckpointLoader`` (local files, http/https) through this module.

    Idempotent. Other schemes (``open-mmlab://``, ``torchvision://``, ``pavi://``, ``s3://``)
    keep mmengine's loaders, which call ``torch.load`` with torch's own weights-only default.
    """
    if _REGISTERED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=_load_http,
                                     force=True)
    _REGISTERED['done'] = True
