"""Checkpoints are never lost or silently wrong, and broken ones get clear errors.

- a kill during a checkpoint write (a subprocess SIGKILLs itself half-way through the
  write) leaves the previous checkpoint and ``last_checkpoint`` intact and resumable; the
  same kill with mmengine's own CheckpointHook leaves nothing to resume from;
- a full disk names the file and keeps the previous checkpoint;
- our checkpoints carry a SHA-256 of their weights; flipped bytes are reported; checkpoints
  without a digest still load;
- tools/test.py and load_from refuse a checkpoint that does not fit the model unless
  ``--allow-partial``;
- clear errors: empty / truncated files, ``--resume`` from weights only, an empty
  ``last_checkpoint``, ``--amp`` without a GPU.
"""
import errno
import os
import pickle
import os.path as osp
import subprocess
import sys
import zipfile

import pytest
import torch

pytest.importorskip('mmpretrain')

from tool_helpers import CFG, load_tool, script_env, tiny_options  # noqa: E402

from mmvrwkv.engine import (CheckpointDigestError, CheckpointError,  # noqa: E402
                            CheckpointMismatchError, CorruptCheckpointError,
                            load_checkpoint_file)
from mmvrwkv.engine.checkpoint import (CHECKPOINT_DIGEST_KEY, DIGEST_KEY,  # noqa: E402
                                      state_dict_digest)

pytestmark = pytest.mark.usefixtures('one_thread')

KEEP_ONE = {'default_hooks.checkpoint.interval': 1,
            'default_hooks.checkpoint.max_keep_ckpts': 1}


@pytest.fixture(scope='module')
def run_dir(digits, tmp_path_factory):
    """A finished 1-epoch run of the 2-block demo model."""
    work = str(tmp_path_factory.mktemp('reliability_run'))
    load_tool('train').main([CFG, '--work-dir', work] + tiny_options(digits))
    return work


def _read(path):
    with open(path) as f:
        return f.read()


# ----------------------------------------------------------------------------- kill / disk full

KILL_SCRIPT = r'''
import os, signal
from mmengine.fileio.backends.local_backend import LocalBackend
from tool_helpers import CFG, load_tool, tiny_options

writes = []
put = LocalBackend.put

def killing_put(self, obj, filepath):
    if osp_basename(filepath).lstrip('.').startswith('epoch_'):
        writes.append(filepath)
        if len(writes) == 2:  # the second checkpoint: die half-way through its write
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return put(self, obj, filepath)

osp_basename = os.path.basename
LocalBackend.put = killing_put
train = load_tool('train')
if {upstream!r}:  # keep mmengine's CheckpointHook (tools/train.py would upgrade it)
    import mmvrwkv.engine
    mmvrwkv.engine.use_safe_checkpoint_hook = lambda cfg, allow_partial=False: None
opts = tiny_options({data!r}, epochs=2, **{extra!r})
train.main([CFG, '--work-dir', {work!r}] + opts)
'''


@pytest.mark.parametrize('hook', ['SafeCheckpointHook', 'CheckpointHook'])
def test_kill_during_checkpoint_write(hook, digits, tmp_path, trainer, clean_env):
    work = str(tmp_path / 'work')
    extra = dict(KEEP_ONE, **{'default_hooks.checkpoint.type': (
        'mmvrwkv.SafeCheckpointHook' if hook == 'SafeCheckpointHook' else 'CheckpointHook')})
    script = KILL_SCRIPT.format(data=digits, work=work, extra=extra,
                                upstream=hook == 'CheckpointHook')
    env = script_env(OMP_NUM_THREADS=1)  # (the script imports tool_helpers)
    proc = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-3000:]
    epoch1, epoch2 = osp.join(work, 'epoch_1.pth'), osp.join(work, 'epoch_2.pth')
    if hook == 'CheckpointHook':  # upstream: epoch_1 deleted first, epoch_2 truncated
        assert not osp.exists(epoch1)
        with pytest.raises(CorruptCheckpointError):
            load_checkpoint_file(epoch2)
        return
    assert not osp.exists(epoch2)                  # nothing truncated under a real name
    assert load_checkpoint_file(epoch1)['meta']['epoch'] == 1
    assert _read(osp.join(work, 'last_checkpoint')) == epoch1
    stale = [n for n in os.listdir(work) if n.startswith('.epoch_2.pth.')]
    assert stale, os.listdir(work)
    # --resume (auto) continues from epoch 1, clears the stale temporary, keeps one file
    trainer.main([CFG, '--work-dir', work, '--resume'] + tiny_options(digits, epochs=2, **KEEP_ONE))
    assert load_checkpoint_file(epoch2)['meta']['epoch'] == 2
    assert not osp.exists(epoch1)
    assert not [n for n in os.listdir(work) if n.endswith('.tmp')]
    assert _read(osp.join(work, 'last_checkpoint')) == epoch2


def test_disk_full_names_the_file_and_keeps_the_previous(digits, tmp_path, trainer,
                                                         clean_env, monkeypatch):
    from mmengine.fileio.backends.local_backend import LocalBackend
    writes, put = [], LocalBackend.put

    def full_disk(self, obj, filepath):
        if osp.basename(filepath).lstrip('.').startswith('epoch_'):
            writes.append(filepath)
            if len(writes) == 2:
                with open(filepath, 'wb') as f:
                    f.write(obj[:1000])
                raise OSError(errno.ENOSPC, 'No space left on device')
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', full_disk)
    work = str(tmp_path / 'work')
    with pytest.raises(OSError,
                       match=r'could not write .*epoch_2\.pth.*No space left.*intact') as info:
        trainer.main([CFG, '--work-dir', work] + tiny_options(digits, epochs=2, **KEEP_ONE))
    assert info.value.errno == errno.ENOSPC
    epoch1 = osp.join(work, 'epoch_1.pth')
    assert load_checkpoint_file(epoch1)['meta']['epoch'] == 1
    assert _read(osp.join(work, 'last_checkpoint')) == epoch1
    assert sorted(n for n in os.listdir(work) if 'pth' in n) == ['epoch_1.pth']  # no temporary


def test_save_best_keeps_one_best_file(digits, tmp_path, trainer, clean_env):
    """save_best through the atomic wrapper: one best_*.pth at the end, which loads."""
    work = str(tmp_path / 'work')
    trainer.main([CFG, '--work-dir', work] + tiny_options(
        digits, epochs=2, **{'train_cfg.val_interval': 1, 'default_hooks.checkpoint.interval': 1,
                             'default_hooks.checkpoint.save_best': 'accuracy/top1',
                             'default_hooks.checkpoint.rule': 'greater'}))
    best = [n for n in os.listdir(work) if n.startswith('best_')]
    assert len(best) == 1, os.listdir(work)
    assert DIGEST_KEY in load_checkpoint_file(osp.join(work, best[0]))['meta']
    assert not [n for n in os.listdir(work) if n.endswith('.tmp')]


# ----------------------------------------------------------------------------- digest

def _flip_tensor_byte(src, dst):
    """Copy ``src`` with one byte flipped inside the largest tensor's data record."""
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if '/data/' in i.filename), key=lambda i: i.file_size)
        data = z.read(info)
    raw = bytearray(open(src, 'rb').read())
    start = raw.find(data)
    assert start > 0
    raw[start + len(data) // 2] ^= 0xFF
    with open(dst, 'wb') as f:
        f.write(raw)


def test_digest_saved_and_checked(run_dir, tmp_path, evaluator, digits, clean_env):
    ckpt = osp.join(run_dir, 'epoch_1.pth')
    loaded = load_checkpoint_file(ckpt)
    assert loaded['meta'][DIGEST_KEY] == state_dict_digest(loaded['state_dict'])

    bad = str(tmp_path / 'flipped.pth')
    _flip_tensor_byte(ckpt, bad)
    torch.load(bad, weights_only=False)  # torch itself does not notice (our own file)
    with pytest.raises(CheckpointDigestError, match='flipped.pth: the weights do not match'):
        load_checkpoint_file(bad)
    with pytest.raises(CheckpointDigestError, match='flipped.pth'):
        evaluator.main([CFG, bad, '--work-dir', str(tmp_path / 't')] + tiny_options(digits))

    # a checkpoint without a digest (official, mmengine) still loads
    plain = str(tmp_path / 'plain.pth')
    del loaded['meta'][DIGEST_KEY], loaded['meta'][CHECKPOINT_DIGEST_KEY]
    torch.save(loaded, plain)
    assert DIGEST_KEY not in load_checkpoint_file(plain)['meta']


def test_digest_independent_of_device_layout_and_dtype_bytes():
    base = {'a': torch.arange(6.).reshape(2, 3), 'b': torch.ones(2, dtype=torch.bfloat16)}
    strided = torch.arange(6.).reshape(2, 3).t().contiguous().t()  # same values, other strides
    assert not strided.is_contiguous()
    same = {'b': torch.ones(2, dtype=torch.bfloat16), 'a': strided}
    assert state_dict_digest(base) == state_dict_digest(same)
    assert state_dict_digest(base) != state_dict_digest({**base, 'a': base['a'].t()})  # shape
    assert state_dict_digest(base) != state_dict_digest({**base, 'a': base['a'].double()})
    changed = {**base, 'a': base['a'].clone()}
    changed['a'][1, 2] += 1e-6
    assert state_dict_digest(base) != state_dict_digest(changed)


# ----------------------------------------------------------------------------- mismatch

def test_test_tool_refuses_a_checkpoint_that_does_not_fit(run_dir, evaluator, digits, tmp_path,
                                                          clean_env):
    ckpt = osp.join(run_dir, 'epoch_1.pth')
    deeper = tiny_options(digits, **{'model.backbone.depth': 3})
    with pytest.raises(CheckpointMismatchError,
                       match=r'epoch_1.pth does not match.*missing key.*backbone\.layers\.2'):
        evaluator.main([CFG, ckpt, '--work-dir', str(tmp_path / 'a')] + deeper)
    with pytest.raises(CheckpointMismatchError, match=r'shape mismatch.*head\.fc\.weight '
                       r'\[10, 192\] vs model \[7, 192\].*--allow-partial'):
        evaluator.main([CFG, ckpt, '--work-dir', str(tmp_path / 'b')]
                       + tiny_options(digits, **{'model.head.num_classes': 7}))
    metrics = evaluator.main([CFG, ckpt, '--work-dir', str(tmp_path / 'c'), '--allow-partial']
                             + deeper)
    assert 'accuracy/top1' in metrics


def test_load_from_refuses_a_checkpoint_that_does_not_fit(run_dir, trainer, digits, tmp_path,
                                                          clean_env):
    ckpt = osp.join(run_dir, 'epoch_1.pth')
    with pytest.raises(CheckpointMismatchError, match='unexpected key.*backbone.layers.1'):
        trainer.main([CFG, '--work-dir', str(tmp_path / 'a')] + tiny_options(
            digits, load_from=ckpt, **{'model.backbone.depth': 1}))
    trainer.main([CFG, '--work-dir', str(tmp_path / 'b'), '--allow-partial'] + tiny_options(
        digits, load_from=ckpt, **{'model.backbone.depth': 1}))


# ----------------------------------------------------------------------------- clear errors

def test_empty_and_truncated_files(run_dir, tmp_path, evaluator, digits, clean_env, capsys):
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(CorruptCheckpointError, match=r'empty.pth: the file is empty \(0 bytes\)'):
        load_checkpoint_file(str(empty))
    with pytest.raises(CorruptCheckpointError, match='empty.pth'):
        evaluator.main([CFG, str(empty), '--work-dir', str(tmp_path / 't')] + tiny_options(digits))

    data = open(osp.join(run_dir, 'epoch_1.pth'), 'rb').read()
    for name, blob in (('truncated.pth', data[:len(data) // 2]), ('noise.pth', b'not a pickle'),
                       ('cut_pickle.pth', pickle.dumps({'a': 1}, protocol=2)[:-3])):
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(CorruptCheckpointError, match=f'{name}: not a readable checkpoint'):
            load_checkpoint_file(str(path))
        converter = load_tool('model_converters/vrwkv2mmvrwkv')
        assert converter.main([str(path), str(tmp_path / 'out.pth'), '--arch', 'tiny']) == 1
        err = capsys.readouterr().err
        assert 'not a readable checkpoint' in err and '--unsafe-load' not in err, err

    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint_file(str(tmp_path / 'missing.pth'))


def test_resume_from_weights_only(run_dir, trainer, digits, tmp_path, clean_env):
    weights = str(tmp_path / 'weights.pth')
    torch.save({'state_dict': load_checkpoint_file(osp.join(run_dir, 'epoch_1.pth'))['state_dict']},
               weights)
    with pytest.raises(CheckpointError, match=r'cannot resume from .*weights.pth: it holds no '
                       r'training state.*load_from='):
        trainer.main([CFG, '--work-dir', str(tmp_path / 'w'), '--resume', weights]
                     + tiny_options(digits))


def test_auto_resume_with_empty_or_dangling_last_checkpoint(trainer, tmp_path, clean_env):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_3.pth').write_bytes(b'x')
    (work / 'last_checkpoint').write_text('')
    with pytest.raises(FileNotFoundError, match=r'last_checkpoint is empty.*epoch_3.pth'):
        trainer.build_cfg(trainer.parse_args([CFG, '--work-dir', str(work), '--resume']))
    (work / 'last_checkpoint').write_text(str(work / 'epoch_9.pth'))
    with pytest.raises(FileNotFoundError, match=r"names .*epoch_9.pth', which does not exist"):
        trainer.build_cfg(trainer.parse_args([CFG, '--work-dir', str(work), '--resume']))
    (work / 'last_checkpoint').write_text(str(work / 'epoch_3.pth'))
    cfg = trainer.build_cfg(trainer.parse_args([CFG, '--work-dir', str(work), '--resume']))
    assert cfg.resume is True and cfg.load_from == str(work / 'epoch_3.pth')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only refusal')
def test_amp_on_cpu_is_refused_clearly(trainer, clean_env):
    with pytest.raises(RuntimeError, match='--amp: .*needs a GPU.*without --amp'):
        trainer.main([CFG, '--amp'])
