"""Payloads of the checkpoint matrix against upstream callers: the config text of a checkpoint
that mmengine's ``BaseInferencer`` runs when it is given ``model=None``.

- ``no_model_runtime_info_cfg``: a checkpoint as mmengine 0.10 writes it, with the config
  text in ``message_hub.runtime_info['cfg']`` and ``meta['cfg']``; the text creates the
  marker. ``DetInferencer(model=None, weights=CKPT)`` / ``MMSegInferencer(None,
  weights=CKPT)`` read the first with ``Config.fromstring``, which executes it.
- ``no_model_meta_cfg``: the text only in ``meta['cfg']`` (checkpoints of mmengine versions
  without ``runtime_info['cfg']``: the inferencer falls back to it).

Both files hold plain data only (tensors, strings, numbers), so plain ``torch.load`` with
torch's weights-only default reads them: the harm is mmengine's, not the unpickler's. With
mmvrwkv imported both inferencers refuse ``model=None`` before opening the file
(``mmvrwkv/engine/checkpoint/upstream.py``).

No mmvrwkv import at module level (see ``payloads.py``).
"""
import subprocess
import sys
from pathlib import Path

import torch

from payloads import Payload

ENTRY_POINTS = frozenset({'det_inferencer_no_model', 'seg_inferencer_no_model'})
#: A phrase of the refusal (mmvrwkv.engine.checkpoint.upstream.config_refusal).
MUST_NAME = 'Pass the config'


def config_text(marker: Path) -> str:
    """A config that creates ``marker`` when it is executed, then looks like a config."""
    return (f"open({str(marker)!r}, 'w').close()\n"
            "model = dict(type='ImageClassifier')\n")


def _plain_checkpoint(real_checkpoint: str) -> dict:
    """Weights and plain ``meta`` values of the real Runner checkpoint (ours: read in full),
    without its digest and message-hub objects."""
    ckpt = torch.load(real_checkpoint, map_location='cpu', weights_only=False)
    meta = {k: v for k, v in ckpt['meta'].items()
            if isinstance(v, (str, int, float, bool, dict, list, tuple))
            and 'sha256' not in k}
    return {'state_dict': ckpt['state_dict'], 'meta': meta,
            'message_hub': {'log_scalars': {}, 'runtime_info': {}, 'resumed_keys': {}}}


def build_runtime_info_cfg(path: Path, marker: Path, victim: Path,
                           real_checkpoint: str) -> None:
    ckpt = _plain_checkpoint(real_checkpoint)
    ckpt['meta']['cfg'] = ckpt['message_hub']['runtime_info']['cfg'] = config_text(marker)
    torch.save(ckpt, str(path))


def build_meta_cfg(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    ckpt = _plain_checkpoint(real_checkpoint)
    del ckpt['message_hub']
    ckpt['meta']['cfg'] = config_text(marker)
    torch.save(ckpt, str(path))


#: mmengine's own model=None path, in a process without mmvrwkv (nothing patched).
_UPSTREAM_NO_MODEL = '''
import sys
from mmengine.config import ConfigDict
from mmengine.infer.infer import BaseInferencer
try:  # what DetInferencer / MMSegInferencer(model=None, weights=CKPT) run
    BaseInferencer._init_model(None, ConfigDict(), sys.argv[1], 'cpu')
except Exception as err:  # the config text has run by then; building the model may fail
    print(type(err).__name__, err)
'''


def upstream_no_model(path: Path, marker: Path, victim: Path) -> None:
    """mmengine's ``BaseInferencer._init_model`` with an empty config (``model=None``),
    in a subprocess: plain weights-only ``torch.load``, then ``Config.fromstring``."""
    subprocess.run([sys.executable, '-c', _UPSTREAM_NO_MODEL, str(path)], timeout=120,
                   check=False, capture_output=True)


PAYLOADS = [
    Payload('no_model_runtime_info_cfg', build_runtime_info_cfg, 'refused', upstream_no_model,
            must_name=MUST_NAME, entry_points=ENTRY_POINTS),
    Payload('no_model_meta_cfg', build_meta_cfg, 'refused', upstream_no_model,
            must_name=MUST_NAME, entry_points=ENTRY_POINTS),
]
