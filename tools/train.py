"""Train a model from an mmvrwkv config with mmengine's Runner.

Works for every task config of the repo (mmpretrain, mmdet, mmseg): the config's own
``default_scope`` picks the task package, ``custom_imports`` pulls in mmvrwkv.

Examples::

    python tools/train.py configs/demo/vrwkv-tiny-p2_1xb32-15e_digits.py
    python tools/train.py CONFIG --work-dir work_dirs/x --amp --cfg-options train_cfg.max_epochs=1
    python tools/train.py CONFIG --resume              # newest checkpoint of the work dir
    python tools/train.py CONFIG --resume path/to/epoch_3.pth
    tools/dist_train.sh CONFIG 8 [args]                # torchrun, --launcher pytorch
    tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR  # srun, --launcher slurm

Distributed runs without a visible GPU (``CUDA_VISIBLE_DEVICES=`` on a GPU machine) train on
the CPU with ``gloo``; ``--dist-backend`` (or ``MMVRWKV_DIST_BACKEND``) overrides the backend
(``env_cfg.dist_cfg.backend``) on any device. The launcher options, the config set-up and the
demo data this shares with tools/test.py are in ``mmvrwkv.apis.launch``.
"""
import argparse
import logging
import os.path as osp

# (importing mmvrwkv registers its modules and the safe checkpoint loaders)
from mmvrwkv.apis.launch import (add_launch_args, load_config, parse_launch_args,
                                 prepare_launch)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Train a model (mmvrwkv)')
    p.add_argument('config', help='config file path')
    p.add_argument('--work-dir', help='where logs and checkpoints go '
                   '(default: ./work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from this checkpoint, or (no value) from the one the work '
                   "dir's last_checkpoint names, else its newest complete checkpoint")
    p.add_argument('--amp', action='store_true',
                   help='automatic mixed precision (AmpOptimWrapper; needs a GPU)')
    p.add_argument('--allow-partial', action='store_true',
                   help='load a load_from/--resume checkpoint even if its keys or shapes do '
                   'not all match the model (default: refuse, listing the differences)')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the lr by (total batch / auto_scale_lr.base_batch_size)')
    p.add_argument('--no-validate', action='store_true', help='skip validation during training')
    add_launch_args(p, cfg_options_help='override config entries, e.g. '
                    'train_cfg.max_epochs=1 model.backbone.with_cp=True')
    return parse_launch_args(p, argv)


def build_cfg(args: argparse.Namespace):
    """The training config: :func:`load_config`, then --amp, the safe checkpoint hook,
    --resume, --auto-scale-lr and --no-validate."""
    cfg = load_config(args)
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper not in ('OptimWrapper', 'AmpOptimWrapper'):
            raise ValueError(f'--amp: cannot switch optim_wrapper type {wrapper!r} to AmpOptimWrapper')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    from mmvrwkv.engine import use_safe_checkpoint_hook
    use_safe_checkpoint_hook(cfg, allow_partial=args.allow_partial)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint {args.resume!r} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume
    if cfg.get('resume') and cfg.get('load_from') is None:  # --resume, or resume=True
        cfg.load_from = resume_checkpoint(cfg)  # None: no checkpoint, a new run
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError('--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=...)` in the config')
        cfg.auto_scale_lr.enable = True
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return cfg


def resume_checkpoint(cfg):
    """The checkpoint that ``--resume`` (or ``resume=True``) without a path continues from.

    The one named by ``work_dir/last_checkpoint`` when that names an existing file. Without
    a valid pointer (e.g. a run killed between its first checkpoint and its first pointer),
    the newest complete checkpoint of the work dir (and of the checkpoint hook's ``out_dir``):
    the one with the highest meta iter/epoch among those that load through mmvrwkv's loader
    and hold training state. None when there is no checkpoint at all (a new run). Never
    None over existing checkpoints: when none of them can be resumed from, or the pointer is
    broken and there is nothing, a ``FileNotFoundError`` says why.
    """
    from mmengine.logging import print_log
    from mmengine.runner import find_latest_checkpoint

    from mmvrwkv.engine.hooks.safe_checkpoint_hook import find_resumable_checkpoint
    work_dir = cfg.work_dir
    pointer = osp.join(work_dir, 'last_checkpoint')
    name = find_latest_checkpoint(work_dir) if osp.exists(pointer) else None
    if name:
        if osp.isfile(name):
            return name
        problem = f'{pointer} names {name!r}, which does not exist'
    elif name is not None:
        problem = f'{pointer} is empty, so it names no checkpoint to resume from'
    else:
        problem = f'there is no {pointer}'
    path, found, skipped = find_resumable_checkpoint(checkpoint_folders(cfg))
    if path is not None:
        print_log(f'--resume: {problem}; resuming from the newest complete checkpoint {path} '
                  f'(of {", ".join(osp.basename(p) for p in found)})', logger='current',
                  level=logging.WARNING)
        return path
    if found:
        why = '; '.join(f'{osp.basename(p)}: {reason}' for p, reason in skipped)
        raise FileNotFoundError(
            f'--resume: {problem}, and no checkpoint in {work_dir} can be resumed from '
            f'({why}). Pass one with --resume PATH, or move them away to start a new run '
            '(training from scratch would overwrite them).')
    if osp.exists(pointer):
        raise FileNotFoundError(f'--resume: {problem}; no *.pth in {work_dir}')
    return None


def checkpoint_folders(cfg) -> list:
    """The work dir, and the checkpoint hook's local ``out_dir/<work dir name>`` if set."""
    folders = [cfg.work_dir]
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    out_dir = hook.get('out_dir') if isinstance(hook, dict) else None
    if isinstance(out_dir, str) and '://' not in out_dir:
        folders.append(osp.join(out_dir, osp.basename(osp.abspath(cfg.work_dir))))
    return folders


def check_amp_device() -> None:
    """--amp uses mmengine's AmpOptimWrapper, which only runs on an accelerator."""
    from mmengine.device import get_device
    if get_device() == 'cpu':
        raise RuntimeError(
            '--amp: mixed-precision training (mmengine AmpOptimWrapper) needs a GPU (or an '
            'NPU/MLU/MUSA device), and none is visible. On the CPU, train without --amp '
            '(float32).')


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmengine.runner import Runner
    if args.amp:
        check_amp_device()
    cfg = build_cfg(args)
    prepare_launch(cfg, args.launcher, args.dist_backend)
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
