"""tools/train.py and tools/test.py: command-line handling, a short training run with a
falling loss, evaluation, and resuming an interrupted run from a checkpoint (loaded by
mmvrwkv's weights-only loader; tests/engine/test_checkpoint_*.py cover its safety and reliability).

Runs in-process on the classification demo config (digits, generated into a temporary
folder) with a 2-block VRWKV-T; needs mmpretrain (skipped without it).
"""
import json
import math
import os
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain')

from tool_helpers import CFG, CFG_NAME, tiny_options, train_losses  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize('flag', ['--local_rank', '--local-rank'])
def test_local_rank_spellings(trainer, evaluator, clean_env, flag):
    args = trainer.parse_args([CFG, flag, '3'])
    assert args.local_rank == 3
    assert os.environ['LOCAL_RANK'] == '3'
    args = trainer.parse_args([CFG, f'{flag}=2'])  # torch.distributed.launch's form
    assert args.local_rank == 2
    args = evaluator.parse_args([CFG, 'x.pth', flag, '1'])
    assert args.local_rank == 1


def test_local_rank_env_wins(trainer, clean_env):
    clean_env.setenv('LOCAL_RANK', '5')  # torchrun sets LOCAL_RANK and passes no flag
    assert trainer.parse_args([CFG]).local_rank == 0
    assert os.environ['LOCAL_RANK'] == '5'


def test_cfg_options_and_work_dir(trainer, clean_env, tmp_path):
    args = trainer.parse_args([CFG, '--cfg-options', 'train_cfg.max_epochs=1',
                                  'model.backbone.depth=2', 'train_dataloader.batch_size=8'])
    cfg = trainer.build_cfg(args)
    assert cfg.train_cfg.max_epochs == 1
    assert cfg.model.backbone.depth == 2
    assert cfg.train_dataloader.batch_size == 8
    assert cfg.work_dir == osp.join('./work_dirs', CFG_NAME)
    assert cfg.launcher == 'none'
    cfg = trainer.build_cfg(trainer.parse_args([CFG, '--work-dir', str(tmp_path)]))
    assert cfg.work_dir == str(tmp_path)


def test_amp_switches_optim_wrapper(trainer, clean_env):
    cfg = trainer.build_cfg(trainer.parse_args([CFG]))
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    cfg = trainer.build_cfg(trainer.parse_args([CFG, '--amp']))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=5.0)  # the rest is kept
    with pytest.raises(ValueError, match='AmpOptimWrapper'):
        trainer.build_cfg(trainer.parse_args(
            [CFG, '--amp', '--cfg-options', 'optim_wrapper.type=ApexOptimWrapper']))


def test_resume_arguments(trainer, clean_env, tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        trainer.build_cfg(trainer.parse_args([CFG, '--resume', str(tmp_path / 'no.pth')]))
    cfg = trainer.build_cfg(trainer.parse_args([CFG, '--resume']))
    assert cfg.resume is True and cfg.load_from is None  # newest checkpoint of the work dir
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'')
    cfg = trainer.build_cfg(trainer.parse_args([CFG, '--resume', str(ckpt)]))
    assert cfg.resume is True and cfg.load_from == str(ckpt)


def test_no_validate_and_auto_scale_lr(trainer, clean_env):
    cfg = trainer.build_cfg(trainer.parse_args([CFG, '--no-validate']))
    assert cfg.val_cfg is None and cfg.val_dataloader is None and cfg.val_evaluator is None
    with pytest.raises(KeyError, match='auto_scale_lr'):
        trainer.build_cfg(trainer.parse_args([CFG, '--auto-scale-lr']))


def test_dist_backend_flag_and_env(trainer, evaluator, clean_env):
    assert trainer.parse_args([CFG]).dist_backend is None
    assert trainer.parse_args([CFG, '--dist-backend', 'gloo']).dist_backend == 'gloo'
    clean_env.setenv('MMVRWKV_DIST_BACKEND', 'gloo')
    assert trainer.parse_args([CFG]).dist_backend == 'gloo'
    assert evaluator.parse_args([CFG, 'x.pth']).dist_backend == 'gloo'


def test_setup_dist_cpu(clean_env):
    """Without CUDA: gloo, our own process-group init, DDP without device ids
    (mmvrwkv.apis.launch, which tools/train.py and tools/test.py call)."""
    from mmengine.config import Config

    from mmvrwkv.apis import launch
    calls = []
    clean_env.setattr(torch.cuda, 'is_available', lambda: False)
    clean_env.setattr(launch, '_init_cpu_process_group',
                      lambda launcher, dist_cfg: calls.append((launcher, dist_cfg)))
    cfg = Config.fromfile(CFG)
    launch.setup_dist(cfg, 'none')
    assert not calls and cfg.get('model_wrapper_cfg') is None
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    launch.setup_dist(cfg, 'pytorch')
    assert calls == [('pytorch', {'backend': 'gloo'})]
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert cfg.model_wrapper_cfg.device_ids is None
    cfg = Config.fromfile(CFG)
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
    launch.setup_dist(cfg, 'slurm', backend='mpi')
    assert calls[-1] == ('slurm', {'backend': 'mpi'})
    assert cfg.model_wrapper_cfg.find_unused_parameters is True
    assert cfg.model_wrapper_cfg.device_ids is None


def test_setup_dist_gpu_keeps_mmengine_path(clean_env):
    from mmengine.config import Config

    from mmvrwkv.apis import launch
    clean_env.setattr(torch.cuda, 'is_available', lambda: True)
    clean_env.setattr(launch, '_init_cpu_process_group',
                      lambda *a: pytest.fail('no CPU init with CUDA'))
    cfg = Config.fromfile(CFG)
    launch.setup_dist(cfg, 'pytorch')
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and cfg.get('model_wrapper_cfg') is None
    launch.setup_dist(cfg, 'pytorch', backend='gloo')
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


def test_test_tool_missing_checkpoint(evaluator, clean_env, tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        evaluator.main([CFG, str(tmp_path / 'missing.pth')])


# ----------------------------------------------------------------------------- runs


def test_train_loss_decreases_then_test(trainer, evaluator, digits, tmp_path, clean_env):
    """8 iterations on one batch of 16 images: finite loss that falls; then tools/test.py."""
    work = str(tmp_path / 'train')
    trainer.main([CFG, '--work-dir', work] + tiny_options(
        digits, n_train=16, batch=16, epochs=8,
        **{'param_scheduler.0.start_factor': 1.0, 'optim_wrapper.optimizer.lr': 4e-3}))
    steps = train_losses(work)
    assert [s for s, _ in steps] == list(range(1, 9))
    losses = [v for _, v in steps]
    assert all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.1, losses
    assert osp.isfile(osp.join(work, 'epoch_8.pth'))

    out = str(tmp_path / 'metrics.json')
    metrics = evaluator.main([CFG, osp.join(work, 'epoch_8.pth'), '--work-dir',
                              str(tmp_path / 'test'), '--metrics-out', out] + tiny_options(digits))
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    with open(out) as f:
        assert json.load(f)['accuracy/top1'] == pytest.approx(metrics['accuracy/top1'])


def test_resume_interrupted_run(trainer, digits, tmp_path, clean_env):
    """Train 2 epochs with a checkpoint per epoch, then resume a new run from epoch_1.pth."""
    from mmvrwkv.engine import load_checkpoint_file

    opts = dict(n_train=32, batch=16, epochs=2, **{'default_hooks.checkpoint.interval': 1,
                                                  'default_hooks.checkpoint.max_keep_ckpts': 3})
    first = str(tmp_path / 'first')
    trainer.main([CFG, '--work-dir', first] + tiny_options(digits, **opts))
    ckpt1 = osp.join(first, 'epoch_1.pth')
    assert osp.isfile(ckpt1) and osp.isfile(osp.join(first, 'epoch_2.pth'))

    # The checkpoint loads through the safe loader, with all of its training state.
    state = load_checkpoint_file(ckpt1)
    assert state['meta']['epoch'] == 1 and state['meta']['iter'] == 2
    assert 'optimizer' in state and 'message_hub' in state and 'param_schedulers' in state

    second = str(tmp_path / 'resumed')
    trainer.main([CFG, '--work-dir', second, '--resume', ckpt1] + tiny_options(digits, **opts))
    steps = [s for s, _ in train_losses(second)]
    assert steps == [3, 4], steps  # only epoch 2 was trained again
    final = load_checkpoint_file(osp.join(second, 'epoch_2.pth'))
    assert final['meta']['epoch'] == 2 and final['meta']['iter'] == 4
    # the optimizer state went on from the checkpoint (AdamW step counts 2 + 2)
    steps_in_state = {int(s['step']) for s in final['optimizer']['state'].values()}
    assert steps_in_state == {4}
    assert not osp.exists(osp.join(second, 'epoch_1.pth'))
    ref = load_checkpoint_file(osp.join(first, 'epoch_2.pth'))
    assert final['state_dict'].keys() == ref['state_dict'].keys()
