"""Payloads of the structure / config-text / digest area (``structure.py``,
``config_text.py``, ``digest.py``) for the entry-point matrix (``payloads.py``).

- ``stride0_tensor``: a state-dict entry of 2^17 x 2^17 float32 views 4 bytes of storage
  (stride 0); anything that makes it contiguous asks for 64 GiB.
- ``meta_tensor``: a state-dict entry on the meta device (a shape without data): copying or
  hashing it raises a bare ``NotImplementedError``.
- ``optimizer_byte_flip``: one byte flipped in the data of an ``exp_avg`` of a checkpoint
  written by our hook; ``torch.load`` reads it silently and a resume would continue from
  corrupt state.

The harm of these is an error far from the loader, or a silent corruption, not code: their
``unprotected`` runs the unguarded path (in a subprocess where it could exhaust memory) and
writes ``marker`` when the harm shows, so the matrix can check it like the others.

``build_cfg_text`` (a Runner checkpoint whose ``runtime_info['cfg']`` or ``meta['cfg']``
starts with code) is not in ``PAYLOADS``: through the entry points that execute such text
(the inferencers with ``model=None``) ``payloads_callers.py`` covers it, and they refuse
before loading; ``test_checkpoint_structure.py`` uses it to show that the loader itself
removes both texts. No mmvrwkv import at module level (see ``payloads.py``).
"""
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import torch

from payloads import Payload


def load_raw(path: str) -> dict:
    """The whole content of a file made by the tests, as unguarded code reads it (full
    unpickling: these files hold no code; nothing is checked or removed)."""
    return torch.load(str(path), map_location='cpu', weights_only=False)


def marker_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()\n"


# ----------------------------------------------------------------------------- config texts

def build_cfg_text(where: str):
    def build(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
        from mmvrwkv.engine.checkpoint import add_digest
        ckpt = load_raw(real_checkpoint)
        info = ckpt['message_hub']['runtime_info']
        original = info.get('cfg') or ckpt['meta'].get('cfg', '')
        if where == 'runtime_info':
            info['cfg'] = marker_code(marker) + original
        else:  # inferencers read runtime_info first: without it, meta['cfg']
            info.pop('cfg', None)
            ckpt['meta']['cfg'] = marker_code(marker) + original
        add_digest(ckpt)  # what an attacker does (the digest is unkeyed)
        torch.save(ckpt, str(path))
    return build


def run_config_text_as_upstream(path: Path) -> None:
    """What ``BaseInferencer._init_model`` (mmengine/infer/infer.py) does with ``model=None``:
    take the text from runtime_info, else from meta, and run ``Config.fromstring``."""
    from mmengine.config import Config
    checkpoint = load_raw(str(path))
    try:
        text = checkpoint['message_hub']['runtime_info']['cfg']
    except KeyError:
        text = checkpoint['meta']['cfg']
    try:
        Config.fromstring(text, file_format='.py')
    except Exception:  # noqa: BLE001 - only the marker matters
        pass


# ----------------------------------------------------------------------------- tensors

def huge_stride0_tensor() -> torch.Tensor:
    """2^17 x 2^17 float32 (64 GiB) over one 4-byte element (strides 0, 0)."""
    return torch.zeros(1).expand(2 ** 17, 2 ** 17)


def _weights_only(real_checkpoint: str) -> dict:
    ckpt = load_raw(real_checkpoint)
    return {'meta': {k: v for k, v in ckpt['meta'].items()
                     if k not in ('state_dict_sha256', 'checkpoint_sha256')},
            'state_dict': ckpt['state_dict']}


def _build_stride0(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    ckpt = _weights_only(real_checkpoint)
    ckpt['state_dict']['backbone.huge'] = huge_stride0_tensor()
    torch.save(ckpt, str(path))


def _build_meta_tensor(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    ckpt = _weights_only(real_checkpoint)
    name = next(k for k, v in ckpt['state_dict'].items() if v.dim() >= 2)
    ckpt['state_dict'][name] = torch.empty(ckpt['state_dict'][name].shape, device='meta')
    torch.save(ckpt, str(path))


#: Run in a subprocess: the weights of ``sys.argv[1]`` copied into tensors of their shape, as
#: the unguarded path does (``load_state_dict``, the old digest), with the address space capped
#: 4 GiB above what the interpreter holds, so a 64 GiB request fails instead of swapping.
#: Writes the marker ``sys.argv[2]`` when that fails with an error that does not name the file.
_UNGUARDED_USE = textwrap.dedent('''
    import resource, sys, torch
    from payloads_structure import load_raw  # (tests/engine on PYTHONPATH: script_env)
    size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + (4 << 30), resource.RLIM_INFINITY))
    path, marker = sys.argv[1], sys.argv[2]
    try:
        for t in load_raw(path)['state_dict'].values():  # as load_state_dict's param.copy_
            torch.empty(t.shape, dtype=t.dtype).copy_(t)
    except Exception as err:  # noqa: BLE001
        if path not in str(err):
            open(marker, 'w').write(type(err).__name__ + ': ' + str(err)[:200])
''')


def _unprotected_tensor(path: Path, marker: Path, victim: Path) -> None:
    from tool_helpers import script_env  # (not at module level: the script imports this file)
    subprocess.run([sys.executable, '-c', _UNGUARDED_USE, str(path), str(marker)], timeout=200,
                   capture_output=True, check=False,
                   env=script_env('tests/engine', OMP_NUM_THREADS=1))


# ----------------------------------------------------------------------------- byte flip

def tensor_record(path: str, tensor: torch.Tensor) -> zipfile.ZipInfo:
    """The zip record of ``path`` that holds exactly the bytes of ``tensor``."""
    want = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    with zipfile.ZipFile(path) as z:
        found = [i for i in z.infolist() if '/data/' in i.filename and z.read(i) == want]
    assert len(found) == 1, f'{len(found)} records hold that tensor'
    return found[0]


def flip_byte_in_record(path: str, record: zipfile.ZipInfo, offset: int = None) -> None:
    """Flip one byte in the stored (uncompressed) data of ``record`` of ``path``."""
    with zipfile.ZipFile(path) as z:
        data = z.read(record)
    raw = bytearray(Path(path).read_bytes())
    start = raw.find(data)
    assert start > 0 and raw.find(data, start + 1) < 0
    raw[start + (len(data) // 2 if offset is None else offset)] ^= 0x10
    Path(path).write_bytes(bytes(raw))


def largest_exp_avg(ckpt: dict) -> torch.Tensor:
    state = ckpt.get('optimizer', {}).get('state', {})
    moments = [s['exp_avg'] for s in state.values() if 'exp_avg' in s]
    assert moments, 'the base checkpoint has no Adam optimizer state (exp_avg)'
    return max(moments, key=lambda t: t.numel())


def _build_optimizer_flip(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    Path(path).write_bytes(Path(real_checkpoint).read_bytes())
    flip_byte_in_record(str(path), tensor_record(str(path), largest_exp_avg(
        load_raw(real_checkpoint))))


def _unprotected_flip(path: Path, marker: Path, victim: Path) -> None:
    """torch.load reads the damaged moment without a word: the marker records that."""
    checkpoint = load_raw(str(path))  # no error
    Path(marker).write_text(f'loaded {len(checkpoint["optimizer"]["state"])} moments silently')


PAYLOADS = [
    Payload('stride0_tensor', _build_stride0, 'refused', _unprotected_tensor,
            must_name='stride 0'),
    Payload('meta_tensor', _build_meta_tensor, 'refused', _unprotected_tensor,
            must_name='meta-device'),
    Payload('optimizer_byte_flip', _build_optimizer_flip, 'refused', _unprotected_flip,
            must_name='optimizer'),
]
