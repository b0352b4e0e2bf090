"""A content digest of a state dict, stored in ``meta`` so that loading detects damaged data.

The digest is SHA-256 over, for every tensor in key order: the key, the dtype, the shape and
the raw bytes (the native little-endian layout torch saves). It does not depend on the device
or on strides, so a checkpoint saved from a GPU verifies after ``map_location='cpu'``.
Non-tensor entries (e.g. ``_extra_state``) are not covered.
"""
import hashlib
from typing import Any, Mapping, Optional

import torch

#: Where our checkpoints keep the digest: ``checkpoint['meta'][DIGEST_KEY]``.
DIGEST_KEY = 'state_dict_sha256'


class CheckpointDigestError(RuntimeError):
    """The tensors of a checkpoint do not match the digest saved with them."""


def state_dict_digest(state_dict: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the tensors of ``state_dict`` (see the module docstring)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            continue
        t = value.detach()
        h.update(f'{key}\0{t.dtype}\0{tuple(t.shape)}\0'.encode())
        if t.numel():
            t = t.to('cpu').contiguous().reshape(-1)
            h.update(memoryview(t.view(torch.uint8).numpy()))
    return h.hexdigest()


def add_digest(checkpoint: dict) -> str:
    """Store the digest of ``checkpoint['state_dict']`` in ``checkpoint['meta']``."""
    digest = state_dict_digest(checkpoint['state_dict'])
    meta = checkpoint.get('meta')
    if not isinstance(meta, dict):
        meta = checkpoint['meta'] = {}
    meta[DIGEST_KEY] = digest
    return digest


def verify_digest(checkpoint: Any, filename: str) -> Optional[bool]:
    """Check a loaded checkpoint against its digest.

    Returns ``True`` when it matches, ``None`` when there is no digest to check (official and
    mmengine checkpoints), and raises :class:`CheckpointDigestError` naming ``filename`` on a
    mismatch.
    """
    if not isinstance(checkpoint, Mapping):
        return None
    meta, state_dict = checkpoint.get('meta'), checkpoint.get('state_dict')
    if not isinstance(meta, Mapping) or DIGEST_KEY not in meta:
        return None
    if not isinstance(state_dict, Mapping):
        raise CheckpointDigestError(
            f'{filename}: meta.{DIGEST_KEY} is set but the checkpoint has no state_dict')
    expected, actual = meta[DIGEST_KEY], state_dict_digest(state_dict)
    if actual != expected:
        raise CheckpointDigestError(
            f'{filename}: the weights do not match the digest saved with them '
            f'(meta.{DIGEST_KEY} {str(expected)[:16]}..., data {actual[:16]}...): the file '
            'is damaged (disk, copy or transfer error); restore it from another copy')
    return True
