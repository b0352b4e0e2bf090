"""Loading checkpoints without running code from them, in one pipeline.

:func:`load_checkpoint_file`, for every scheme and caller (:mod:`.schemes`):

1. existence and empty-file checks;
2. :func:`.prescan.prescan_checkpoint`: the sizes the file declares (zip records, storages,
   pickle lengths) against the bytes it stores, before anything is allocated;
3. ``torch.load(weights_only=True)`` (always explicit) with only the narrow stand-ins of
   :mod:`.unpickling` on torch's allow-list while it runs (numpy dtypes/arrays/scalars,
   mmengine's ``HistoryBuffer`` and a ``getattr`` limited to its statistics methods), then
   :func:`.unpickling.resolve_stand_ins` for the real numpy / mmengine objects;
4. after unpickling: the structure mmengine writes (:mod:`.structure`), the digest of the
   content as saved (:mod:`.digest`), then no executable config text (:mod:`.config_text`)
   and no restored path outside the run (:mod:`.hook_state`); these two change the content,
   so they come after the digest.

Every refusal is a :class:`~.errors.CheckpointError` whose message names the file and what is
wrong. How each attack is refused, and the tests that prove it, is in
``mmvrwkv/engine/checkpoint/README.md``.
"""
import os
import os.path as osp
import pickle
import pickletools
import re
import struct
import zipfile
from typing import Any, List

import torch

from .config_text import neutralise_config_texts
from .digest import verify_digest
from .errors import (CheckpointError, CorruptCheckpointError, ResourceLimitError,
                     UnsafeCheckpointError)
from .hook_state import drop_foreign_paths
from .prescan import prescan_checkpoint
from .structure import validate_checkpoint
from .unpickling import (StandInRefusal, mmengine_safe_globals, resolve_stand_ins,
                         stand_ins_registered)

__all__ = ['load_checkpoint_file', 'mmengine_safe_globals']


# ------------------------------------------------------------------------- loading

_GLOBAL_RE = re.compile(r'GLOBAL ([\w.]+)')


def _refused_globals(filename: str, message: str) -> List[str]:
    names = _GLOBAL_RE.findall(message)
    finder = getattr(torch.serialization, 'get_unsafe_globals_in_checkpoint', None)
    if finder is not None and zipfile.is_zipfile(filename):
        try:
            allowed = {name for _, name in mmengine_safe_globals()}
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
    that needs more than the allow-list or the stand-ins accept (the refused global named),
    :class:`ResourceLimitError` for one that declares more than it stores,
    :class:`CorruptCheckpointError` for an empty, truncated or foreign file,
    :class:`~.errors.CheckpointStructureError` for content of another shape than mmengine's
    and :class:`~.errors.CheckpointDigestError` for content that does not match its digest.
    """
    filename = os.fspath(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist (or is not a file)')
    if osp.getsize(filename) == 0:
        raise CorruptCheckpointError(
            f'{filename}: the file is empty (0 bytes), not a checkpoint; an interrupted '
            'write leaves such files. Use an earlier checkpoint of the run.')
    try:
        with open(filename, 'rb') as file:
            # Declared sizes against the file, then the stand-ins' unpickling, on the same
            # open file (so that both see the same bytes).
            prescan_checkpoint(file, filename)
            with stand_ins_registered():
                raw = torch.load(file, map_location=map_location, weights_only=True)
        checkpoint = resolve_stand_ins(raw, filename)
    except CheckpointError:
        raise
    except StandInRefusal as err:
        raise UnsafeCheckpointError(f'{filename}: refused to load: {err}') from None
    except MemoryError as err:
        raise ResourceLimitError(
            f'{filename}: refused: loading it ran out of memory ({err or "MemoryError"}); the '
            'file declares more than this machine can hold') from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError,
            LookupError, AttributeError, zipfile.BadZipFile, ArithmeticError, AssertionError,
            BufferError, struct.error) as err:  # what torch and the allowed callables raise
        # on bytes that do not make a checkpoint
        raise _explain_failure(filename, err) from err
    # After unpickling: the structure mmengine writes (plain values only), the digest of the
    # content as it was saved, then no text that upstream would execute and no restored path
    # outside the checkpoint's own run (these two change the content, so they come last).
    validate_checkpoint(checkpoint, filename)
    verify_digest(checkpoint, filename)
    neutralise_config_texts(checkpoint)
    drop_foreign_paths(checkpoint, filename)
    return checkpoint
