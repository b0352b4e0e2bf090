"""Content digests of checkpoints, stored in ``meta`` so that loading detects damaged files.

``meta['checkpoint_sha256']`` (:data:`CHECKPOINT_DIGEST_KEY`, written since issue 21) maps
every top-level key of the checkpoint (``meta``, ``state_dict``, ``message_hub``,
``optimizer``, ``param_schedulers``, ``ema_state_dict``, ...) to a SHA-256 over a canonical
walk of its content: a type tag and the value of every plain value, dict keys in their stored
order, tensors by dtype, shape and bytes, numpy arrays and scalars by dtype, shape and bytes,
mmengine ``HistoryBuffer`` by ``max_length`` and its two arrays. It covers every tensor of
the file (weights, optimizer moments and steps, EMA, schedulers) and every other value, so a
flipped byte anywhere is refused, and the message names the damaged part.

``meta['state_dict_sha256']`` (:data:`DIGEST_KEY`) is the older digest: SHA-256 over the
key, dtype, shape and bytes of each tensor of ``state_dict`` in sorted key order. It is still
written (older mmvrwkv versions check it) and still checked; the ``state_dict`` entry of the
new digest builds on it, so the weights are hashed once.

Left out of both: the digests themselves, and the config texts that the loader removes
before anyone reads them (``meta['config']``, ``meta['cfg']``,
``message_hub.runtime_info['cfg']``, see ``config_text.py``), so a file verifies whether it
is checked before or after those texts are neutralised.

Both digests are independent of device and strides (bytes are taken in the native
little-endian layout torch saves, after ``.cpu().contiguous()``), so a checkpoint saved from
a GPU verifies after ``map_location='cpu'``. Hashing is over buffers (``memoryview`` of
numpy views), never a Python loop over elements.

They detect damage (disk, copy, transfer), **not tampering**: they are unkeyed, so anyone
who edits a file can recompute them. Only loading that never runs code protects against a
hostile file; that is the job of ``loading.py`` and ``structure.py``.
"""
import hashlib
import struct
from collections import OrderedDict
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch

from .errors import CheckpointDigestError

#: The older digest of the weights only: ``checkpoint['meta'][DIGEST_KEY]``.
DIGEST_KEY = 'state_dict_sha256'
#: The digest of the whole content: ``checkpoint['meta'][CHECKPOINT_DIGEST_KEY]``.
CHECKPOINT_DIGEST_KEY = 'checkpoint_sha256'
#: Keys of ``meta`` that no digest covers (the digests; config texts the loader removes).
META_EXCLUDED = frozenset({DIGEST_KEY, CHECKPOINT_DIGEST_KEY, 'config', 'cfg'})
#: Keys of ``message_hub['runtime_info']`` that no digest covers.
RUNTIME_INFO_EXCLUDED = frozenset({'cfg'})

#: How a damaged section is named in messages.
_SECTION_NAMES = {'state_dict': 'the weights (state_dict)',
                  'optimizer': 'the optimizer state (optimizer)',
                  'param_schedulers': 'the scheduler state (param_schedulers)',
                  'message_hub': 'the message hub (message_hub)',
                  'ema_state_dict': 'the EMA weights (ema_state_dict)', 'meta': 'meta'}


# ------------------------------------------------------------------ canonical encoding

def _tensor_bytes(t: torch.Tensor) -> np.ndarray:
    """The raw bytes of ``t`` in C order, as a uint8 numpy view (no copy when possible)."""
    t = t.detach()
    if t.device.type != 'cpu':
        t = t.cpu()
    t = t.resolve_conj().resolve_neg().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy()


def _array_bytes(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


class _Encoder:
    """Feeds the canonical encoding of values into one SHA-256."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.dispatch: Dict[type, Callable[[Any], None]] = {
            type(None): lambda v: self.put(b'N'),
            bool: lambda v: self.put(b'T' if v else b'F'),
            int: self.integer,
            float: lambda v: self.put(b'D' + struct.pack('<d', v)),
            complex: lambda v: self.put(b'C' + struct.pack('<dd', v.real, v.imag)),
            str: lambda v: self.blob(b'U', v.encode('utf-8', 'surrogatepass')),
            bytes: lambda v: self.blob(b'B', v),
            list: lambda v: self.items(b'L', v),
            tuple: lambda v: self.items(b'P', v),
            torch.Size: lambda v: self.items(b'Z', v),
            dict: lambda v: self.mapping(v),
            OrderedDict: lambda v: self.mapping(v),
            torch.dtype: lambda v: self.blob(b'd', str(v).encode()),
            torch.device: lambda v: self.blob(b'v', str(v).encode()),
        }

    def put(self, data: bytes) -> None:
        self.hash.update(data)

    def length(self, n: int) -> None:
        self.put(struct.pack('<Q', n))

    def blob(self, tag: bytes, data: bytes) -> None:
        self.put(tag)
        self.length(len(data))
        self.put(data)

    def integer(self, v: int) -> None:
        self.blob(b'I', v.to_bytes(v.bit_length() // 8 + 1, 'little', signed=True))

    def items(self, tag: bytes, values: Any) -> None:
        self.put(tag)
        self.length(len(values))
        for item in values:
            self.value(item)

    def mapping(self, mapping: Mapping, excluded: frozenset = frozenset(),
                value: Optional[Callable[[Any, Any], None]] = None) -> None:
        """Entries in stored order; ``excluded`` keys left out; ``value(key, v)`` encodes
        the values when given."""
        items = [(k, v) for k, v in type(mapping).items(mapping) if k not in excluded]
        self.put(b'O' if type(mapping) is OrderedDict else b'M')
        self.length(len(items))
        for key, item in items:
            self.value(key)
            if value is None:
                self.value(item)
            else:
                value(key, item)
        metadata = getattr(mapping, '__dict__', {}).get('_metadata')
        if metadata is None:
            self.put(b'-')
        else:
            self.put(b'+')
            self.value(metadata)

    def tensor(self, t: torch.Tensor, data: bool = True) -> None:
        self.blob(b'X', str(t.dtype).encode())
        self.items(b'Z', tuple(t.shape))
        if data:
            raw = _tensor_bytes(t)
            self.length(raw.nbytes)
            self.put(raw)

    def array(self, a: np.ndarray) -> None:
        self.blob(b'A', a.dtype.str.encode())
        self.items(b'Z', a.shape)
        raw = _array_bytes(a)
        self.length(raw.nbytes)
        self.put(raw)

    def value(self, v: Any) -> None:
        encode = self.dispatch.get(type(v))
        if encode is not None:
            return encode(v)
        if isinstance(v, torch.Tensor):
            return self.tensor(v)
        if isinstance(v, np.ndarray):
            return self.array(v)
        if isinstance(v, np.generic):
            self.blob(b'G', v.dtype.str.encode())
            return self.blob(b'g', v.tobytes())
        from mmengine.logging import HistoryBuffer
        if isinstance(v, HistoryBuffer):
            self.put(b'H')
            self.value(v.max_length)
            self.array(v._log_history)
            return self.array(v._count_history)
        # Not something a loadable checkpoint holds (structure.py refuses it on loading):
        # only its type is recorded, so that saving still works.
        self.blob(b'?', f'{type(v).__module__}.{type(v).__qualname__}'.encode())

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


# ------------------------------------------------------------------ digests

def state_dict_digest(state_dict: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the tensors of ``state_dict``: key, dtype, shape and bytes of each, in
    sorted key order (the older ``meta['state_dict_sha256']``)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            continue
        t = value.detach()
        h.update(f'{key}\0{t.dtype}\0{tuple(t.shape)}\0'.encode())
        if t.numel():
            h.update(_tensor_bytes(t))
    return h.hexdigest()


def _section_digest(name: str, value: Any, weights_digest: Optional[str]) -> str:
    if name == 'state_dict' and isinstance(value, Mapping) and weights_digest is not None:
        # The tensor bytes are in weights_digest; here: the order, the non-tensor entries
        # (``_extra_state``) and torch's ``_metadata``.
        enc = _Encoder()
        enc.blob(b'W', weights_digest.encode())

        def entry(key: Any, item: Any) -> None:
            if isinstance(item, torch.Tensor):
                enc.tensor(item, data=False)
            else:
                enc.value(item)
        enc.mapping(value, value=entry)
        return enc.hexdigest()
    enc = _Encoder()
    if name == 'meta' and type(value) in (dict, OrderedDict):
        enc.mapping(value, META_EXCLUDED)
    elif name == 'message_hub' and type(value) in (dict, OrderedDict):
        def part(key: Any, item: Any) -> None:
            if key == 'runtime_info' and type(item) in (dict, OrderedDict):
                enc.mapping(item, RUNTIME_INFO_EXCLUDED)
            else:
                enc.value(item)
        enc.mapping(value, value=part)
    else:
        enc.value(value)
    return enc.hexdigest()


def checkpoint_digest(checkpoint: Mapping[str, Any],
                      weights_digest: Optional[str] = None) -> Dict[str, str]:
    """``{top-level key: hex SHA-256}`` of ``checkpoint`` (see the module docstring).

    ``weights_digest``: :func:`state_dict_digest` of ``checkpoint['state_dict']`` when the
    caller has it already (it is computed otherwise).
    """
    state_dict = checkpoint.get('state_dict')
    if weights_digest is None and isinstance(state_dict, Mapping):
        weights_digest = state_dict_digest(state_dict)
    return {str(name): _section_digest(name, value, weights_digest)
            for name, value in checkpoint.items()}


def add_digest(checkpoint: dict) -> Dict[str, str]:
    """Store both digests of ``checkpoint`` in ``checkpoint['meta']`` (created if needed).

    Call it last, on the complete checkpoint (``SafeCheckpointHook.before_save_checkpoint``
    does, with optimizer and scheduler state; so does the converter). Returns the new
    digest.
    """
    meta = checkpoint.get('meta')
    if not isinstance(meta, dict):
        meta = checkpoint['meta'] = {}
    state_dict = checkpoint.get('state_dict')
    weights = state_dict_digest(state_dict) if isinstance(state_dict, Mapping) else None
    if weights is not None:
        meta[DIGEST_KEY] = weights
    sections = checkpoint_digest(checkpoint, weights)
    meta[CHECKPOINT_DIGEST_KEY] = sections
    return sections


def _damage_message(filename: str, what: str, key: str) -> CheckpointDigestError:
    return CheckpointDigestError(
        f'{filename}: {what} (meta.{key}): the file is damaged (disk, copy or transfer '
        'error); restore it from another copy')


def verify_digest(checkpoint: Any, filename: str) -> Optional[bool]:
    """Check a loaded checkpoint against the digests saved in it.

    Returns ``True`` when they match, ``None`` when there is none to check (official and
    mmengine checkpoints), and raises :class:`CheckpointDigestError` naming ``filename`` and
    the damaged part on a mismatch. Call it on the content as loaded (after
    ``validate_checkpoint``); neutralised config texts do not matter.
    """
    if not isinstance(checkpoint, Mapping):
        return None
    meta, state_dict = checkpoint.get('meta'), checkpoint.get('state_dict')
    if not isinstance(meta, Mapping):
        return None
    expected_weights = meta.get(DIGEST_KEY)
    expected = meta.get(CHECKPOINT_DIGEST_KEY)
    if expected_weights is None and expected is None:
        return None
    weights = state_dict_digest(state_dict) if isinstance(state_dict, Mapping) else None
    if expected_weights is not None:
        if weights is None:
            raise CheckpointDigestError(
                f'{filename}: meta.{DIGEST_KEY} is set but the checkpoint has no state_dict')
        if weights != expected_weights:
            raise _damage_message(
                filename, f'the weights do not match the digest saved with them '
                f'({str(expected_weights)[:16]}..., data {weights[:16]}...)', DIGEST_KEY)
    if expected is not None:
        if not (isinstance(expected, Mapping)
                and all(type(k) is str and type(v) is str for k, v in expected.items())):
            raise _damage_message(filename, 'the saved digest is not a dict of section '
                                  'digests', CHECKPOINT_DIGEST_KEY)
        actual = checkpoint_digest(checkpoint, weights)
        damaged = [_SECTION_NAMES.get(k, repr(k)) for k in actual
                   if k in expected and actual[k] != expected[k]]
        damaged += [f'{k!r} (not in the digest)' for k in actual if k not in expected]
        damaged += [f'{k!r} (missing)' for k in expected if k not in actual]
        if damaged:
            raise _damage_message(
                filename, 'the content does not match the digest saved with it: '
                + ', '.join(damaged) + (' differs' if len(damaged) == 1 else ' differ'),
                CHECKPOINT_DIGEST_KEY)
    return True
