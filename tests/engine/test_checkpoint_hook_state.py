"""Restored hook state never names files outside the run; resume never starts from scratch
over checkpoints; files get the user's umask (issue 21, items 4 and 11).

- ``drop_foreign_paths`` (in the loader, so also for mmengine's plain CheckpointHook) on
  crafted ``runtime_info``: what is kept, what is dropped, and the warning;
- the hooks check again at use time (before every removal), mmengine's plain
  CheckpointHook (patched by ``import mmvrwkv``) as well as ``SafeCheckpointHook``: restored
  state of a checkpoint resumed from another folder is ignored (a shipped folder's ids),
  ``..`` through a symlink, trailing slashes, hard links, ``iter_{}.pth`` templates,
  ``published_keys``; ``max_keep_ckpts=-1`` trains and resumes;
- the payloads of ``payloads_hook_state.py`` remove the victim folder / other checkpoints
  under plain mmengine (a fresh process without mmvrwkv, and a real Runner without the
  check), and are harmless through ``tools/train.py --resume`` and ``Runner(resume=True)``
  with the plain CheckpointHook;
- the kill window between the first checkpoint and the first ``last_checkpoint``: ``--resume``
  continues from the newest complete checkpoint (by meta iter/epoch), or stops and says why;
- atomic writes create files with ``0o666 & ~umask``.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')

from tool_helpers import CFG, ROOT, tiny_options  # noqa: E402

from mmvrwkv.engine import CheckpointError, SafeCheckpointHook, load_checkpoint_file  # noqa: E402
from mmvrwkv.engine.checkpoint import (add_digest, atomic_path,  # noqa: E402
                                       atomic_write_text, hook_state, loading)
from mmvrwkv.engine.checkpoint.hook_state import drop_foreign_paths  # noqa: E402

import payloads_hook_state as P  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')


# ----------------------------------------------------------------------------- helpers

def _hub_checkpoint(info, epoch=2, iter=20):
    return {'meta': {'epoch': epoch, 'iter': iter}, 'state_dict': {},
            'message_hub': {'log_scalars': {}, 'runtime_info': dict(info),
                            'resumed_keys': {k: True for k in info}}}


@pytest.fixture
def warnings(monkeypatch):
    """The messages that drop_foreign_paths logs (through mmengine's print_log)."""
    import mmengine.logging
    seen = []

    def record(msg, logger=None, level=None):
        if 'restored hook state' in msg:
            seen.append((level, msg))
    monkeypatch.setattr(mmengine.logging, 'print_log', record)
    return seen


@pytest.fixture
def run_folder(tmp_path):
    """A work dir with epoch_1..3.pth and best_accuracy_top1_epoch_1.pth (content is not
    looked at), plus things around it: a victim folder and a file outside."""
    work = tmp_path / 'work'
    work.mkdir()
    for name in ('epoch_1.pth', 'epoch_2.pth', 'epoch_3.pth', 'best_accuracy_top1_epoch_1.pth',
                 'last_checkpoint'):
        (work / name).write_bytes(b'ckpt')
    (tmp_path / 'victim').mkdir()
    (tmp_path / 'victim' / 'keep.txt').write_text('x')
    (tmp_path / 'outside.pth').write_bytes(b'other')
    return work


def _sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _resealed(src, dst, **changes):
    """Copy of checkpoint ``src`` with ``meta`` / ``runtime_info`` changes, digest renewed."""
    ckpt = torch.load(src, map_location='cpu', weights_only=False)
    for key, value in changes.items():
        where, key = key.split('.', 1)
        target = ckpt['meta'] if where == 'meta' else ckpt['message_hub']['runtime_info']
        target[key] = value
    add_digest(ckpt)
    torch.save(ckpt, str(dst))
    return str(dst)


# ----------------------------------------------------------------------------- drop_foreign_paths

FOREIGN = {
    'victim folder': lambda t, w: str(t / 'victim'),
    'file outside': lambda t, w: str(t / 'outside.pth'),
    'traversal': lambda t, w: str(w / '..' / 'outside.pth'),
    'symlink out': lambda t, w: (os.symlink(t / 'outside.pth', w / 'best_link.pth'),
                                 str(w / 'best_link.pth'))[1],
    'folder inside': lambda t, w: ((w / 'best_dir.pth').mkdir(), str(w / 'best_dir.pth'))[1],
    'missing': lambda t, w: str(w / 'best_accuracy_top1_epoch_9.pth'),
    'not a .pth': lambda t, w: str(w / 'last_checkpoint'),
    'not a str': lambda t, w: [str(w / 'epoch_1.pth')],
    'empty': lambda t, w: '',
    'dotdot through a symlink': lambda t, w: _dotdot_through_symlink(t, w)[0],
    'trailing slash': lambda t, w: str(w / 'best_accuracy_top1_epoch_1.pth') + '/',
    'dot component': lambda t, w: f'{w}/./best_accuracy_top1_epoch_1.pth',
    'double slash': lambda t, w: f'{w}//best_accuracy_top1_epoch_1.pth',
}


def _dotdot_through_symlink(tmp, work):
    """``work/link/../best_accuracy_top1_epoch_1.pth`` with ``work/link -> tmp/other/sub``:
    as a string it is ``work/best_accuracy_top1_epoch_1.pth`` (a regular file of the run),
    but the OS resolves the link first: ``tmp/other/best_accuracy_top1_epoch_1.pth``, here
    a folder of another run (rmtree). Returns the path and that folder."""
    other = tmp / 'other'
    victim = other / 'best_accuracy_top1_epoch_1.pth'
    (other / 'sub').mkdir(parents=True, exist_ok=True)
    victim.mkdir(exist_ok=True)
    (victim / 'keep.txt').write_text('x')
    if not (work / 'link').is_symlink():
        os.symlink(other / 'sub', work / 'link')
    return f'{work}/link/../best_accuracy_top1_epoch_1.pth', victim


@pytest.mark.parametrize('key', ['best_ckpt', 'best_ckpt_accuracy/top1', 'last_ckpt'])
@pytest.mark.parametrize('kind', sorted(FOREIGN))
def test_foreign_paths_are_dropped_with_a_warning(kind, key, run_folder, warnings):
    value = FOREIGN[kind](run_folder.parent, run_folder)
    ckpt = _hub_checkpoint({key: value, 'seed': 0})
    assert drop_foreign_paths(ckpt, str(run_folder / 'epoch_2.pth')) == [key]
    hub = ckpt['message_hub']
    assert key not in hub['runtime_info'] and key not in hub['resumed_keys']
    assert hub['runtime_info'] == {'seed': 0}
    (level, msg), = warnings
    assert level == 30 and repr(key) in msg and repr(value)[:60] in msg
    assert 'epoch_2.pth' in msg  # the file that held it
    assert (run_folder.parent / 'victim' / 'keep.txt').exists()


def test_best_path_must_be_a_best_checkpoint(run_folder, warnings):
    """A best path naming a regular checkpoint of the run would make save_best remove it."""
    ckpt = _hub_checkpoint({'best_ckpt': str(run_folder / 'epoch_1.pth'),
                            'last_ckpt': str(run_folder / 'epoch_1.pth')})
    assert drop_foreign_paths(ckpt, str(run_folder / 'epoch_2.pth')) == ['best_ckpt']
    assert ckpt['message_hub']['runtime_info'] == {'last_ckpt': str(run_folder / 'epoch_1.pth')}


def test_checkpoints_of_the_run_are_kept(run_folder, tmp_path, warnings, monkeypatch):
    link = tmp_path / 'linked_work'  # a work dir reached through a symlink still counts
    os.symlink(run_folder, link)
    monkeypatch.chdir(tmp_path)
    info = {'best_ckpt': str(run_folder / 'best_accuracy_top1_epoch_1.pth'),
            'best_ckpt_loss': 'work/best_accuracy_top1_epoch_1.pth',  # relative to the cwd
            'best_ckpt_other': None,
            'last_ckpt': str(link / 'epoch_2.pth'),
            'keep_ckpt_ids': [1, 2]}
    for loaded in (run_folder / 'epoch_2.pth', link / 'epoch_2.pth'):
        ckpt = _hub_checkpoint(info)
        assert drop_foreign_paths(ckpt, str(loaded)) == []
        assert ckpt['message_hub']['runtime_info'] == info
    assert warnings == []


@pytest.mark.parametrize('ids,kept', [
    ([1, 2], [1, 2]),
    ((1, 2), [1, 2]),
    ([np.int64(1), 2], [1, 2]),
    ([2, 3], [2]),               # epoch_3.pth exists, but is newer than the loaded epoch 2
    ([1, 1, 2], [1, 2]),         # not distinct
    ([True, 2], [2]),
    ([1.0, 2], [2]),
    (['../../victim', 2], [2]),
    ([5, 2], [2]),               # names no file
    ([-1, 0, 2], [2]),
    ([1], None),                 # the loaded checkpoint (2) is not among them
    ([*range(3, 1500), 2], None),  # more than any run keeps
    ('1, 2', None),
    (None, None),
])
def test_keep_ckpt_ids(ids, kept, run_folder, warnings):
    ckpt = _hub_checkpoint({'keep_ckpt_ids': ids})
    changed = drop_foreign_paths(ckpt, str(run_folder / 'epoch_2.pth'))
    info = ckpt['message_hub']['runtime_info']
    assert info.get('keep_ckpt_ids') == kept
    if isinstance(ids, (list, tuple)) and kept == list(ids):
        assert changed == [] and warnings == []
        assert type(info['keep_ckpt_ids']) is list and all(type(i) is int for i in kept)
    else:
        assert changed == ['keep_ckpt_ids']
        (level, msg), = warnings
        assert "'keep_ckpt_ids'" in msg and 'epoch_2.pth' in msg
        assert ('keep_ckpt_ids' in ckpt['message_hub']['resumed_keys']) == (kept is not None)


@pytest.mark.parametrize('loaded,meta,files,kept', [
    ('evil.pth', (2, 20), [], None),                       # no step in the name
    ('epoch_2.pth', (5, 50), [], None),                    # name and meta disagree
    ('iter_20.pth', (2, 20), ['iter_10.pth', 'iter_20.pth'], [10, 20]),
    ('ckpt_0020.pth', (2, 20), ['ckpt_0010.pth', 'ckpt_0020.pth'], [10, 20]),
    ('best_accuracy_top1_epoch_2.pth', (2, 20), [], [2]),  # only its own step
])
def test_keep_ckpt_ids_follow_the_loaded_name(loaded, meta, files, kept, tmp_path, warnings):
    for name in files + [loaded]:
        (tmp_path / name).write_bytes(b'ckpt')
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        (tmp_path / name).write_bytes(b'ckpt')
    ids = [10, 20] if 'iter' in loaded or 'ckpt_' in loaded else [1, 2]
    ckpt = _hub_checkpoint({'keep_ckpt_ids': ids}, *meta)
    drop_foreign_paths(ckpt, str(tmp_path / loaded))
    assert ckpt['message_hub']['runtime_info'].get('keep_ckpt_ids') == kept


@pytest.mark.parametrize('ckpt', [None, [], {'message_hub': 3}, {'message_hub': {}},
                                  {'message_hub': {'runtime_info': [('best_ckpt', '/')]}}])
def test_other_structures_are_left_to_the_structure_check(ckpt, tmp_path):
    assert drop_foreign_paths(ckpt, str(tmp_path / 'epoch_1.pth')) == []


def test_real_checkpoint_keeps_its_state_in_its_folder_only(real_checkpoint, tmp_path, warnings):
    own = load_checkpoint_file(real_checkpoint)['message_hub']['runtime_info']
    assert own['last_ckpt'] == real_checkpoint and own['keep_ckpt_ids'] == [1]
    assert warnings == []
    moved = tmp_path / 'copy.pth'  # the same file elsewhere: its paths name another folder
    shutil.copy(real_checkpoint, moved)
    info = load_checkpoint_file(str(moved))['message_hub']['runtime_info']  # digest still ok
    assert 'last_ckpt' not in info and 'keep_ckpt_ids' not in info
    (_, msg), = warnings
    assert str(moved) in msg and real_checkpoint in msg


# ----------------------------------------------------------------------------- hook at use time

class _Resumed(P.PlainRunner):
    """A runner that resumed ``source`` (its hub restored): what SafeCheckpointHook reads."""

    def __init__(self, work_dir, checkpoint, source):
        super().__init__(str(work_dir), checkpoint)
        self._resume, self._has_loaded, self._load_from = True, True, str(source)


def test_hook_removes_only_checkpoints_inside_out_dir(run_folder, tmp_path):
    from mmengine.fileio import LocalBackend
    hook = SafeCheckpointHook(interval=1)
    hook.out_dir, hook.file_backend = str(run_folder), LocalBackend()
    os.symlink(tmp_path / 'outside.pth', run_folder / 'epoch_5.pth')
    os.symlink(tmp_path / 'victim', run_folder / 'epoch_6.pth')
    (run_folder / 'epoch_4.pth').mkdir()  # a deepspeed checkpoint is a folder
    (run_folder / 'epoch_4.pth' / 'model.pt').write_bytes(b'x')
    for path in (tmp_path / 'outside.pth', tmp_path / 'victim', run_folder / 'epoch_5.pth',
                 run_folder / 'epoch_6.pth', run_folder / 'last_checkpoint',
                 run_folder / '..' / 'outside.pth'):
        hook._remove(str(path))
        assert os.path.lexists(path), path
    assert (tmp_path / 'victim' / 'keep.txt').exists() and (tmp_path / 'outside.pth').exists()
    for name in ('epoch_1.pth', 'epoch_4.pth'):
        hook._remove(str(run_folder / name))
        assert not os.path.lexists(run_folder / name)


def _restored(real_checkpoint, **info):
    ckpt = torch.load(real_checkpoint, map_location='cpu', weights_only=False)
    ckpt['message_hub']['runtime_info'].update(info)
    return ckpt


@pytest.mark.parametrize('source', ['outside', 'inside'])
def test_hook_ignores_restored_state_of_another_folder_or_newer_steps(
        source, real_checkpoint, run_folder, tmp_path):
    """Without the loader's check (state restored as is), the hook still removes nothing
    but checkpoints of its own run: restored state of a checkpoint resumed from another
    folder is ignored, and so are ids newer than the resumed step."""
    for name in P.FOREIGN_FILES:
        (run_folder / name).write_bytes(b'ckpt')
    ckpt = _restored(real_checkpoint, keep_ckpt_ids=[*P.FOREIGN_STEPS, 1],
                     best_ckpt=str(tmp_path / 'victim'))
    resumed = tmp_path / 'evil.pth' if source == 'outside' else run_folder / 'epoch_1.pth'
    runner = _Resumed(run_folder, ckpt, resumed)
    hook = SafeCheckpointHook(interval=1, max_keep_ckpts=2, save_best='accuracy/top1',
                              rule='greater')
    hook.before_train(runner)
    hook._save_best_checkpoint(runner, {'accuracy/top1': 1.0})
    hook._save_checkpoint_with_step(runner, 2, dict(epoch=2, iter=2))
    assert (tmp_path / 'victim' / 'keep.txt').exists()
    assert all((run_folder / name).exists() for name in P.FOREIGN_FILES)
    expected = [] if source == 'outside' else [1]
    assert runner.message_hub.get_info('keep_ckpt_ids') == expected + [2]


def test_hook_keeps_the_runs_own_restored_state(real_checkpoint, run_folder):
    """The legitimate case: ids and best path of the run are used as upstream uses them."""
    ckpt = _restored(real_checkpoint, keep_ckpt_ids=[1, 2, 3],
                     best_ckpt=str(run_folder / 'best_accuracy_top1_epoch_1.pth'))
    ckpt['meta'].update(epoch=3, iter=3)
    runner = _Resumed(run_folder, ckpt, run_folder / 'epoch_3.pth')
    hook = SafeCheckpointHook(interval=1, max_keep_ckpts=2, save_best='accuracy/top1',
                              rule='greater')
    hook.before_train(runner)
    assert not (run_folder / 'epoch_1.pth').exists()  # beyond max_keep_ckpts, as upstream
    assert list(hook.keep_ckpt_ids) == [2, 3]
    hook._save_best_checkpoint(runner, {'accuracy/top1': 1.0})
    assert not (run_folder / 'best_accuracy_top1_epoch_1.pth').exists()  # superseded
    assert (run_folder / 'best_accuracy_top1_epoch_3.pth').exists()


# ----------------------------------------------------------------------------- payloads

UNPROTECTED = r'''
import sys
from pathlib import Path
sys.path[:0] = [{engine!r}, {tests!r}]
import payloads_hook_state
for payload, (path, marker, victim) in zip(payloads_hook_state.PAYLOADS, {cases!r}):
    payload.unprotected(Path(path), Path(marker), Path(victim))
assert 'mmvrwkv' not in sys.modules
'''


def _payload_case(payload, tmp_path, real_checkpoint, work_dir=None):
    victim = tmp_path / 'victim'
    victim.mkdir()
    (victim / 'keep.txt').write_text('x')
    for folder in [victim] + ([work_dir] if work_dir else []):
        folder.mkdir(exist_ok=True)
        for name in payload.work_dir_files:
            (folder / name).write_bytes(b'ckpt')
    path = tmp_path / f'{payload.name}.pth'
    payload.build(path, tmp_path / 'MARKER', victim, real_checkpoint)
    return path, victim


def _harmed(payload, victim, work_dir=None):
    folders = [victim] + ([work_dir] if work_dir else [])
    return (not (victim / 'keep.txt').exists()
            or any(not (f / n).exists() for f in folders for n in payload.work_dir_files))


def test_payloads_harm_plain_mmengine(tmp_path, real_checkpoint):
    """Each payload removes the victim (or the other checkpoints) under mmengine's plain
    CheckpointHook, in a fresh process without mmvrwkv (one process for all of them)."""
    cases = []
    for payload in P.PAYLOADS:
        folder = tmp_path / payload.name
        folder.mkdir()
        path, victim = _payload_case(payload, folder, real_checkpoint)
        cases.append((str(path), str(folder / 'MARKER'), str(victim)))
    script = UNPROTECTED.format(engine=osp.join(ROOT, 'tests', 'engine'),
                                tests=osp.join(ROOT, 'tests'), cases=cases)
    proc = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path), timeout=300,
                          capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for payload, (_, _, victim) in zip(P.PAYLOADS, cases):
        assert _harmed(payload, Path(victim)), payload.name


#: Options under which both payloads act on resume: validation with save_best after the
#: resumed epoch, and max_keep_ckpts below the number of restored ids.
ACTING = {'train_cfg.val_interval': 1, 'default_hooks.checkpoint.interval': 1,
          'default_hooks.checkpoint.max_keep_ckpts': 2,
          'default_hooks.checkpoint.save_best': 'accuracy/top1',
          'default_hooks.checkpoint.rule': 'greater'}


def _both_payloads(tmp_path, real_checkpoint, work):
    """One checkpoint carrying both payloads (best_ckpt = victim, foreign keep ids), and
    the victim folder and the foreign checkpoints in ``work``."""
    path, victim = _payload_case(P.PAYLOADS[1], tmp_path, real_checkpoint, work_dir=work)
    both = _resealed(str(path), tmp_path / 'both.pth', **{'info.best_ckpt': str(victim)})
    return both, victim


def _unpatch_checkpoint_hook(monkeypatch):
    """mmengine's CheckpointHook as upstream wrote it (``import mmvrwkv`` patched it)."""
    from mmengine.hooks import CheckpointHook
    for name in ('before_train', '_save_checkpoint_with_step', '_save_best_checkpoint',
                 '_publish_model'):
        monkeypatch.setattr(CheckpointHook, name,
                            getattr(CheckpointHook, name)._mmvrwkv_original)


def _plain_runner(trainer, work, digits, load_from, **extra):
    """``Runner(resume=True, load_from=...)`` with mmengine's plain CheckpointHook."""
    from mmengine.runner import Runner
    cfg = trainer.build_cfg(trainer.parse_args(
        [CFG, '--work-dir', str(work)] + tiny_options(digits, epochs=2, **{**ACTING, **extra})))
    cfg.default_hooks.checkpoint.type = 'CheckpointHook'
    cfg.resume, cfg.load_from = True, str(load_from)
    return Runner.from_cfg(cfg)


def _resumed_epoch_2(work):
    ckpt = load_checkpoint_file(str(work / 'epoch_2.pth'))
    assert ckpt['meta']['epoch'] == 2
    assert {int(s['step']) for s in ckpt['optimizer']['state'].values()} == {2}  # 1 + 1


def test_payloads_are_harmless_through_train_resume(trainer, digits, tmp_path, real_checkpoint,
                                                    clean_env):
    work = tmp_path / 'work'
    both, victim = _both_payloads(tmp_path, real_checkpoint, work)
    trainer.main([CFG, '--work-dir', str(work), '--resume', both]
                 + tiny_options(digits, epochs=2, **ACTING))
    _resumed_epoch_2(work)
    assert list(work.glob('best_accuracy_top1_epoch_*.pth'))  # save_best did run
    assert not _harmed(P.PAYLOADS[1], victim, work)


def test_payloads_are_harmless_through_plain_runner_resume(trainer, digits, tmp_path,
                                                           real_checkpoint, clean_env):
    work = tmp_path / 'work'
    both, victim = _both_payloads(tmp_path, real_checkpoint, work)
    _plain_runner(trainer, work, digits, both).train()
    _resumed_epoch_2(work)
    assert list(work.glob('best_accuracy_top1_epoch_*.pth'))
    assert not _harmed(P.PAYLOADS[1], victim, work)


def test_payloads_harm_the_same_plain_runner_without_the_check(trainer, digits, tmp_path,
                                                               real_checkpoint, clean_env,
                                                               monkeypatch):
    """The test above, with drop_foreign_paths disabled: the victim and the foreign
    checkpoints are removed (so that test can fail)."""
    monkeypatch.setattr(loading, 'drop_foreign_paths', lambda ckpt, filename: [])
    monkeypatch.setattr(hook_state, 'drop_foreign_paths', lambda ckpt, filename: [])
    _unpatch_checkpoint_hook(monkeypatch)
    work = tmp_path / 'work'
    both, victim = _both_payloads(tmp_path, real_checkpoint, work)
    _plain_runner(trainer, work, digits, both).train()
    assert not (victim / 'keep.txt').exists()
    assert not any((work / n).exists() for n in P.FOREIGN_FILES)


def test_checkpoint_in_the_work_dir_cannot_remove_newer_checkpoints(trainer, digits, tmp_path,
                                                                     real_checkpoint, clean_env):
    """A crafted epoch_1.pth inside the work dir, through the plain hook: ids of newer
    checkpoints and a best path naming a regular checkpoint are dropped."""
    work = tmp_path / 'work'
    work.mkdir()
    for name in P.FOREIGN_FILES:
        (work / name).write_bytes(b'ckpt')
    evil = _resealed(real_checkpoint, work / 'epoch_1.pth', **{
        'info.keep_ckpt_ids': [*P.FOREIGN_STEPS, 1],
        'info.best_ckpt': str(work / P.FOREIGN_FILES[0])})
    _plain_runner(trainer, work, digits, evil).train()
    _resumed_epoch_2(work)
    assert all((work / n).exists() for n in P.FOREIGN_FILES)


# ----------------------------------------------------------------------------- use-time paths

HOOKS = {'CheckpointHook': None, 'SafeCheckpointHook': SafeCheckpointHook}


def _hook(kind, **kwargs):
    """mmengine's plain CheckpointHook (patched by ``import mmvrwkv``) or ours."""
    from mmengine.hooks import CheckpointHook
    return (HOOKS[kind] or CheckpointHook)(**kwargs)


def test_checked_checkpoint_path(run_folder, tmp_path, monkeypatch):
    """Only the checked ``<real folder>/<name>`` comes back; strings the OS would resolve
    differently from a string check are refused."""
    check = hook_state.checked_checkpoint_path
    real = osp.realpath(run_folder)
    dotdot, _ = _dotdot_through_symlink(tmp_path, run_folder)
    for bad in (dotdot, str(run_folder / 'epoch_1.pth') + '/', f'{run_folder}/./epoch_1.pth',
                f'{run_folder}//epoch_1.pth', f'{run_folder}/../work/epoch_1.pth',
                str(run_folder / 'link')):
        assert check(bad, str(run_folder)) is None, bad
    assert check(str(run_folder / 'epoch_1.pth'), str(run_folder)) == osp.join(real, 'epoch_1.pth')
    os.symlink(run_folder, tmp_path / 'alias')  # a work dir reached through a link counts
    assert check(str(tmp_path / 'alias' / 'epoch_1.pth'), str(run_folder)) == osp.join(
        real, 'epoch_1.pth')
    monkeypatch.chdir(tmp_path)  # relative paths: against the working directory
    assert check('work/epoch_1.pth', str(run_folder)) == osp.join(real, 'epoch_1.pth')
    assert check('epoch_1.pth', str(run_folder)) is None
    monkeypatch.chdir(run_folder)
    assert check('epoch_1.pth', str(run_folder)) == osp.join(real, 'epoch_1.pth')


@pytest.mark.parametrize('kind', sorted(HOOKS))
def test_removal_of_a_hardlink_removes_only_that_name(kind, run_folder, tmp_path):
    """A hard link in out_dir is a regular file there: removing it unlinks that name only,
    the file it shares data with stays."""
    from mmengine.fileio import LocalBackend
    hook = _hook(kind, interval=1)
    hook.out_dir, hook.file_backend = str(run_folder), LocalBackend()
    os.link(tmp_path / 'outside.pth', run_folder / 'epoch_7.pth')
    assert hook_state.remove_checkpoint(hook, str(run_folder / 'epoch_7.pth'))
    assert not (run_folder / 'epoch_7.pth').exists()
    assert (tmp_path / 'outside.pth').read_bytes() == b'other'


@pytest.mark.parametrize('kind', sorted(HOOKS))
def test_dotdot_through_a_symlink_is_never_removed(kind, real_checkpoint, run_folder, tmp_path):
    """Without the loader's check (state restored as is) and in the run's own folder, a
    restored best path ``link/../best_*.pth`` removes nothing: not the other run's folder
    the OS resolves it to, nor the file the string names."""
    raw, victim = _dotdot_through_symlink(tmp_path, run_folder)
    runner = _Resumed(run_folder, _restored(real_checkpoint, best_ckpt=raw),
                      run_folder / 'epoch_1.pth')
    hook = _hook(kind, interval=1, save_best='accuracy/top1', rule='greater')
    hook.before_train(runner)
    assert hook.best_ckpt_path is None and 'best_ckpt' not in runner.message_hub.runtime_info
    hook._save_best_checkpoint(runner, {'accuracy/top1': 1.0})
    hook_state.remove_checkpoint(hook, raw)  # and the removal itself refuses it
    assert (victim / 'keep.txt').exists()
    assert (run_folder / 'best_accuracy_top1_epoch_1.pth').exists()


DOTDOT_UNPROTECTED = r"""
import sys
import torch
sys.path[:0] = [{engine!r}]
from mmengine.hooks import CheckpointHook
from payloads_hook_state import PlainRunner
runner = PlainRunner({work!r}, torch.load({ckpt!r}, map_location='cpu', weights_only=False))
hook = CheckpointHook(interval=1, save_best='accuracy/top1', rule='greater')
hook.before_train(runner)
hook._save_best_checkpoint(runner, {{'accuracy/top1': 1.0}})
assert 'mmvrwkv' not in sys.modules
"""


def test_dotdot_through_a_symlink_harms_plain_mmengine(real_checkpoint, run_folder, tmp_path):
    """The test above can fail: mmengine's plain hook, without mmvrwkv (a fresh process),
    rmtree's the other run's folder."""
    raw, victim = _dotdot_through_symlink(tmp_path, run_folder)
    ckpt = tmp_path / 'dotdot.pth'
    torch.save(_restored(real_checkpoint, best_ckpt=raw), str(ckpt))
    script = DOTDOT_UNPROTECTED.format(engine=osp.join(ROOT, 'tests', 'engine'),
                                       work=str(run_folder), ckpt=str(ckpt))
    proc = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path), timeout=300,
                          capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not victim.exists()


@pytest.mark.parametrize('kind', sorted(HOOKS))
def test_keep_ids_follow_the_hooks_own_template(kind, real_checkpoint, tmp_path):
    """``by_epoch=False`` with ``iter_{}.pth``: ids are steps of that template, bounded by the
    resumed iter; files of another template are never touched."""
    work = tmp_path / 'work'
    work.mkdir()
    for name in ('iter_10.pth', 'iter_20.pth', 'iter_30.pth', 'iter_40.pth', 'epoch_10.pth'):
        (work / name).write_bytes(b'ckpt')
    ckpt = _restored(real_checkpoint, keep_ckpt_ids=[10, 20, 30, 40, True, 'x'])
    ckpt['meta'].update(epoch=1, iter=30)
    runner = _Resumed(work, ckpt, work / 'iter_30.pth')
    hook = _hook(kind, interval=10, by_epoch=False, max_keep_ckpts=2,
                 filename_tmpl='iter_{}.pth')
    hook.before_train(runner)
    assert list(hook.keep_ckpt_ids) == [20, 30]
    assert runner.message_hub.get_info('keep_ckpt_ids') == [20, 30]
    assert sorted(p.name for p in work.iterdir()) == ['epoch_10.pth', 'iter_20.pth',
                                                       'iter_30.pth', 'iter_40.pth']
    hook._save_checkpoint_with_step(runner, 40, dict(epoch=1, iter=40))
    assert not (work / 'iter_20.pth').exists() and (work / 'iter_40.pth').exists()


@pytest.mark.parametrize('kind', sorted(HOOKS))
@pytest.mark.parametrize('source', ['outside', 'inside'])
def test_published_keys_write_only_beside_checkpoints_of_the_run(kind, source, real_checkpoint,
                                                                tmp_path):
    """``published_keys`` writes ``<best>-<sha>.pth`` beside the best path: a restored best
    path of a checkpoint resumed from another folder is ignored, so nothing is written
    there; the run's own is published as upstream does."""
    work, shipped = tmp_path / 'work', tmp_path / 'downloads'
    for folder in (work, shipped):
        folder.mkdir()
        shutil.copyfile(real_checkpoint, folder / 'best_accuracy_top1_epoch_1.pth')
    home = shipped if source == 'outside' else work
    runner = _Resumed(work, _restored(real_checkpoint, best_ckpt=str(
        home / 'best_accuracy_top1_epoch_1.pth')), home / 'best_accuracy_top1_epoch_1.pth')
    hook = _hook(kind, interval=1, save_best='accuracy/top1', rule='greater',
                 published_keys=['meta', 'state_dict'])
    hook.before_train(runner)
    hook.after_train(runner)
    hook._publish_model(runner, str(shipped / 'best_accuracy_top1_epoch_1.pth'))
    assert sorted(p.name for p in shipped.iterdir()) == ['best_accuracy_top1_epoch_1.pth']
    published = list(work.glob('best_accuracy_top1_epoch_1-*.pth'))
    assert len(published) == (source == 'inside'), published


def _shipped_folder(tmp_path, real_checkpoint):
    """A genuine checkpoint shipped in ``downloads/`` (ids [0, 1]) with a junk
    ``epoch_0.pth`` beside it, and a work dir holding the user's own ``epoch_0.pth``."""
    shipped, work = tmp_path / 'downloads', tmp_path / 'work'
    shipped.mkdir()
    work.mkdir()
    (shipped / 'epoch_0.pth').write_bytes(b'junk')
    (work / 'epoch_0.pth').write_bytes(b'MINE')
    evil = _resealed(real_checkpoint, shipped / 'epoch_1.pth', **{'info.keep_ckpt_ids': [0, 1]})
    return shipped, work, evil


def test_plain_runner_ignores_the_ids_of_a_shipped_folder(trainer, digits, tmp_path,
                                                          real_checkpoint, clean_env):
    """F3 through a real Runner with mmengine's plain CheckpointHook: a genuine checkpoint
    shipped in a folder with junk ``epoch_0.pth`` beside it passes the loader's check (its
    ids name files of its folder), but the user's own ``epoch_0.pth`` of the work dir stays.
    (The payload ``keep_ckpt_ids_shipped_epoch_1`` runs the same through the matrix.)"""
    shipped, work, evil = _shipped_folder(tmp_path, real_checkpoint)
    assert load_checkpoint_file(evil)['message_hub']['runtime_info']['keep_ckpt_ids'] == [0, 1]
    _plain_runner(trainer, work, digits, evil,
                  **{'default_hooks.checkpoint.max_keep_ckpts': 1}).train()
    _resumed_epoch_2(work)
    assert (work / 'epoch_0.pth').read_bytes() == b'MINE'
    assert (shipped / 'epoch_0.pth').exists()


def test_plain_runner_without_the_hook_check_deletes_the_users_file(
        trainer, digits, tmp_path, real_checkpoint, clean_env, monkeypatch):
    """The test above can fail: with the loader's check on but mmengine's CheckpointHook
    as upstream wrote it, the user's ``epoch_0.pth`` is deleted."""
    _unpatch_checkpoint_hook(monkeypatch)
    shipped, work, evil = _shipped_folder(tmp_path, real_checkpoint)
    _plain_runner(trainer, work, digits, evil,
                  **{'default_hooks.checkpoint.max_keep_ckpts': 1}).train()
    assert not (work / 'epoch_0.pth').exists()


def test_train_and_resume_without_max_keep_ckpts(trainer, digits, tmp_path, clean_env):
    """mmengine's default ``max_keep_ckpts=-1`` (mmdet / mmseg configs): tools/train.py's
    SafeCheckpointHook saves, keeps every checkpoint and resumes."""
    work = tmp_path / 'work'
    keep_all = {'default_hooks.checkpoint.max_keep_ckpts': -1}
    trainer.main([CFG, '--work-dir', str(work)] + tiny_options(digits, epochs=1, **keep_all))
    trainer.main([CFG, '--work-dir', str(work), '--resume']
                 + tiny_options(digits, epochs=2, **keep_all))
    _resumed_epoch_2(work)
    assert (work / 'epoch_1.pth').exists()
    assert 'keep_ckpt_ids' not in load_checkpoint_file(str(work / 'epoch_2.pth'))[
        'message_hub']['runtime_info']


# ----------------------------------------------------------------------------- kill window

class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not an Exception, so nothing catches it)."""


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_kill_before_the_first_pointer_then_resume(trainer, digits, tmp_path, clean_env,
                                                   monkeypatch, umask_027):
    """Killed right after epoch_1.pth is renamed into place, before last_checkpoint is
    written; --resume continues from epoch_1.pth instead of training over it."""
    from mmvrwkv.engine.hooks import safe_checkpoint_hook

    def killing_write(dst, text):
        if osp.basename(dst) == 'last_checkpoint':
            raise _Killed(dst)
        return atomic_write_text(dst, text)

    work = tmp_path / 'work'
    opts = tiny_options(digits, epochs=2, **{'default_hooks.checkpoint.interval': 1})
    with monkeypatch.context() as m:
        m.setattr(safe_checkpoint_hook, 'atomic_write_text', killing_write)
        with pytest.raises(_Killed):
            trainer.main([CFG, '--work-dir', str(work)] + opts)
    epoch1 = work / 'epoch_1.pth'
    assert epoch1.exists() and not (work / 'last_checkpoint').exists()
    before, runs = _sha(epoch1), set(work.glob('*/vis_data'))

    trainer.main([CFG, '--work-dir', str(work), '--resume'] + opts)
    assert _sha(epoch1) == before                         # not trained over
    resumed_run, = set(work.glob('*/vis_data')) - runs
    with open(resumed_run / 'scalars.json') as f:
        steps = [json.loads(line)['step'] for line in f if '"loss"' in line]
    assert steps == [2]                                   # only epoch 2 was trained
    _resumed_epoch_2(work)
    for path in (epoch1, work / 'epoch_2.pth', work / 'last_checkpoint'):
        assert _mode(path) == umask_027, (path, oct(_mode(path)))


def test_plain_auto_resume_trains_over_a_checkpoint_without_pointer(trainer, digits, tmp_path,
                                                                    real_checkpoint, clean_env):
    """Upstream: Runner(resume=True) without last_checkpoint starts from scratch and
    overwrites epoch_1.pth; SafeCheckpointHook refuses that start."""
    from mmengine.runner import Runner
    work = tmp_path / 'work'
    work.mkdir()
    epoch1 = work / 'epoch_1.pth'
    shutil.copy(real_checkpoint, epoch1)
    before = _sha(epoch1)

    def runner(hook_type):
        cfg = trainer.build_cfg(trainer.parse_args(
            [CFG, '--work-dir', str(work)] + tiny_options(
                digits, **{'default_hooks.checkpoint.interval': 1})))
        cfg.default_hooks.checkpoint.type = hook_type
        cfg.resume, cfg.load_from = True, None  # what Runner users write
        return Runner.from_cfg(cfg)

    with pytest.raises(CheckpointError, match=r'resume=True, but .*last_checkpoint names no '
                       r'checkpoint.*epoch_1\.pth.*overwrite'):
        runner('mmvrwkv.SafeCheckpointHook').train()
    assert _sha(epoch1) == before
    runner('CheckpointHook').train()
    assert _sha(epoch1) != before  # trained from scratch, written over


def _resume_cfg(trainer, work, *extra):
    return trainer.build_cfg(trainer.parse_args([CFG, '--work-dir', str(work), *extra]))


def test_resume_takes_the_newest_complete_checkpoint(trainer, tmp_path, real_checkpoint,
                                                     clean_env):
    work = tmp_path / 'work'
    work.mkdir()
    shutil.copy(real_checkpoint, work / 'epoch_1.pth')
    epoch2 = _resealed(real_checkpoint, work / 'epoch_2.pth', **{'meta.epoch': 2,
                                                                'meta.iter': 2})
    best = torch.load(epoch2, weights_only=False)  # same step, no optimizer state
    del best['optimizer']
    add_digest(best)
    torch.save(best, str(work / 'best_accuracy_top1_epoch_2.pth'))
    data = (work / 'epoch_1.pth').read_bytes()
    (work / 'epoch_3.pth').write_bytes(data[:len(data) // 2])  # a damaged newer one
    torch.save({'meta': {'epoch': 9, 'iter': 9}, 'state_dict': best['state_dict']},
               str(work / 'weights.pth'))                     # no training state
    os.utime(work / 'epoch_1.pth')                             # the newest by mtime
    for pointer in (None, '', str(work / 'epoch_9.pth')):      # absent, empty, dangling
        if pointer is not None:
            (work / 'last_checkpoint').write_text(pointer)
        for extra in (['--resume'], ['--cfg-options', 'resume=True']):
            cfg = _resume_cfg(trainer, work, *extra)
            assert cfg.resume is True and cfg.load_from == epoch2, (pointer, extra)
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))  # a valid pointer rules
    assert _resume_cfg(trainer, work, '--resume').load_from == str(work / 'epoch_1.pth')


def test_resume_stops_when_no_checkpoint_can_be_resumed(trainer, tmp_path, real_checkpoint,
                                                        clean_env):
    work = tmp_path / 'work'
    work.mkdir()
    data = Path(real_checkpoint).read_bytes()
    (work / 'epoch_2.pth').write_bytes(data[:len(data) // 2])
    (work / 'epoch_1.pth').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match=r'there is no .*last_checkpoint, and no '
                       r'checkpoint in .*work can be resumed from \(epoch_1\.pth: .*empty.*; '
                       r'epoch_2\.pth: .*not a readable checkpoint.*\)\. Pass one with '
                       r'--resume PATH.*overwrite'):
        _resume_cfg(trainer, work, '--resume')
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        os.remove(work / name)
    cfg = _resume_cfg(trainer, work, '--resume')  # nothing at all: a new run
    assert cfg.resume is True and cfg.load_from is None


# ----------------------------------------------------------------------------- permissions

@pytest.mark.parametrize('umask', [0o022, 0o002, 0o077])
def test_atomic_writes_follow_the_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        atomic_write_text(str(tmp_path / 'last_checkpoint'), 'x')
        with atomic_path(str(tmp_path / 'epoch_1.pth')) as tmp:
            torch.save({'a': torch.ones(1)}, tmp)
        with atomic_path(str(tmp_path / 'new.pth'), overwrite=False) as tmp:
            torch.save({'a': torch.ones(1)}, tmp)
        atomic_write_text(str(tmp_path / 'last_checkpoint'), 'y')  # replacing an old file
    finally:
        os.umask(old)
    for name in ('last_checkpoint', 'epoch_1.pth', 'new.pth'):
        assert _mode(tmp_path / name) == 0o666 & ~umask, (name, oct(_mode(tmp_path / name)))
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth', 'last_checkpoint', 'new.pth']
