"""Payloads of restored hook state that names files (issue 21, item 4).

mmengine's ``CheckpointHook`` takes file names from the resumed ``message_hub.runtime_info``:

- ``best_ckpt_folder``: a real Runner checkpoint whose ``best_ckpt`` is the victim folder.
  With ``save_best``, the next better validation score makes upstream ``rmtree`` it.
- ``keep_ckpt_ids_other_checkpoints``: a real checkpoint whose ``keep_ckpt_ids`` name
  ``epoch_7.pth`` and ``epoch_8.pth`` before its own step. With ``max_keep_ckpts`` (the
  demo config keeps 2), upstream deletes ``epoch_7.pth`` of the work dir in
  ``before_train``, and ``epoch_8.pth`` at the next save: checkpoints that are not the
  resumed run's.

- ``keep_ckpt_ids_shipped_epoch_1``: a real checkpoint shipped in a folder together with a
  junk ``keep_ckpt_ids_shipped_epoch_0.pth``; its ``keep_ckpt_ids`` ``[0, 1]`` name
  checkpoints that exist in *that* folder (through its own name pattern), so the loader's
  check keeps them. Resumed from there into the user's work dir with ``max_keep_ckpts=1``,
  upstream deletes ``epoch_0.pth`` of the work dir: the hook removes in ``out_dir``, through
  its own ``filename_tmpl``. Only the hook-side rule (restored state of a checkpoint resumed
  from outside ``out_dir`` is ignored) stops it.

All are ``'safe'``: with mmvrwkv imported, training resumes and nothing is deleted
(``hook_state.drop_foreign_paths`` in the loader, and ``SafeCheckpointHook``'s checks at use
time). ``unprotected`` runs mmengine's plain ``CheckpointHook`` on the restored hub, as
``Runner.resume`` and ``Runner.train`` would, without mmvrwkv. No mmvrwkv import here (see
``payloads.py``).
"""
import os.path as osp
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict

import torch

from payloads import Payload

#: Checkpoint steps that no run of the tests reaches, named by the keep_ckpt_ids payload.
FOREIGN_STEPS = (7, 8)
FOREIGN_FILES = tuple(f'epoch_{i}.pth' for i in FOREIGN_STEPS)


def _real(real_checkpoint: str) -> Dict[str, Any]:
    # our own test checkpoint: plain data, full unpickling is harmless here
    return torch.load(real_checkpoint, map_location='cpu', weights_only=False)


def _save_with_info(path: Path, real_checkpoint: str, **info: Any) -> None:
    """The real checkpoint with ``info`` in its runtime_info, digest recomputed (the digest
    is unkeyed: whoever edits a file can; without it the file is refused as damaged)."""
    from mmvrwkv.engine.checkpoint import add_digest
    ckpt = _real(real_checkpoint)
    hub = ckpt['message_hub']
    for key, value in info.items():
        hub['runtime_info'][key] = value
        hub['resumed_keys'][key] = True
    add_digest(ckpt)
    torch.save(ckpt, str(path))


def build_best_ckpt_folder(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    """``best_ckpt`` = the victim folder."""
    _save_with_info(path, real_checkpoint, best_ckpt=str(victim))


def build_keep_ids(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    """``keep_ckpt_ids`` = the foreign steps, then the checkpoint's own step."""
    step = _real(real_checkpoint)['meta']['epoch']
    _save_with_info(path, real_checkpoint, keep_ckpt_ids=[*FOREIGN_STEPS, step])


#: The work dir file that the shipped-folder payload's ids name (its step 0).
SHIPPED_VICTIM = 'epoch_0.pth'


def build_keep_ids_shipped(path: Path, marker: Path, victim: Path, real_checkpoint: str) -> None:
    """``keep_ckpt_ids`` = ``[0, <own step 1>]``, with a junk checkpoint of step 0 beside the
    file under the file's own name pattern (``<name>_epoch_0.pth``)."""
    step = _real(real_checkpoint)['meta']['epoch']
    assert path.name.endswith(f'_epoch_{step}.pth'), (path.name, step)
    _save_with_info(path, real_checkpoint, keep_ckpt_ids=[step - 1, step])
    path.with_name(path.name.replace(f'_epoch_{step}.pth', f'_epoch_{step - 1}.pth')
                   ).write_bytes(b'junk shipped beside the checkpoint')


class PlainRunner:
    """What mmengine's ``CheckpointHook`` uses of a ``Runner`` that resumed ``checkpoint``
    (its message hub restored as ``Runner.resume`` does); saving writes empty files."""

    def __init__(self, work_dir: str, checkpoint: Dict[str, Any]) -> None:
        from mmengine.logging import MessageHub, MMLogger
        name = f'plain_runner_{uuid.uuid4().hex[:8]}'
        self.work_dir = work_dir
        self.logger = MMLogger.get_instance(name)
        self.message_hub = MessageHub.get_instance(name)
        self.message_hub.load_state_dict(checkpoint['message_hub'])
        self.epoch = checkpoint['meta']['epoch']
        self.iter = checkpoint['meta']['iter']

    def save_checkpoint(self, out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
        open(osp.join(out_dir, filename), 'wb').close()


def plain_best_removal(path: Path, marker: Path, victim: Path) -> None:
    """Upstream ``save_best`` after a resume: a better score removes the restored path."""
    from mmengine.hooks import CheckpointHook
    work = tempfile.mkdtemp(prefix='plain_work_', dir=str(victim.parent))
    runner = PlainRunner(work, torch.load(str(path), map_location='cpu', weights_only=False))
    hook = CheckpointHook(interval=1, save_best='accuracy/top1', rule='greater')
    hook.before_train(runner)
    hook._save_best_checkpoint(runner, {'accuracy/top1': 1.0})


def plain_keep_removal(path: Path, marker: Path, victim: Path, max_keep_ckpts: int = 2) -> None:
    """Upstream ``max_keep_ckpts`` after a resume into the work dir ``victim``: the
    restored ids beyond the limit are deleted in ``before_train``, one more per save."""
    from mmengine.hooks import CheckpointHook
    runner = PlainRunner(str(victim), torch.load(str(path), map_location='cpu',
                                                 weights_only=False))
    hook = CheckpointHook(interval=1, max_keep_ckpts=max_keep_ckpts)
    hook.before_train(runner)
    hook._save_checkpoint_with_step(runner, runner.epoch + 1, dict(epoch=runner.epoch + 1,
                                                                   iter=runner.iter + 1))


def plain_keep_one(path: Path, marker: Path, victim: Path) -> None:
    """:func:`plain_keep_removal` with ``max_keep_ckpts=1`` (as the matrix's entry points)."""
    plain_keep_removal(path, marker, victim, max_keep_ckpts=1)


RESUME_ENTRY_POINTS = frozenset({'train_resume', 'runner_resume_plain'})

PAYLOADS = [
    Payload('best_ckpt_folder', build_best_ckpt_folder, 'safe', plain_best_removal,
            entry_points=RESUME_ENTRY_POINTS),
    Payload('keep_ckpt_ids_other_checkpoints', build_keep_ids, 'safe', plain_keep_removal,
            entry_points=RESUME_ENTRY_POINTS, work_dir_files=FOREIGN_FILES),
    Payload('keep_ckpt_ids_shipped_epoch_1', build_keep_ids_shipped, 'safe', plain_keep_one,
            entry_points=RESUME_ENTRY_POINTS, work_dir_files=(SHIPPED_VICTIM,)),
]
