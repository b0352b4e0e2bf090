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
the CPU: the process group is created here with the ``gloo`` backend and the model is wrapped
in DDP without device ids. ``--dist-backend`` (or ``MMVRWKV_DIST_BACKEND``) overrides the
backend (``env_cfg.dist_cfg.backend``) on any device.
"""
import argparse
import logging
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a clone


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
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
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config entries, e.g. train_cfg.max_epochs=1 model.backbone.with_cp=True')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                   help='job launcher for distributed training')
    p.add_argument('--dist-backend', default=os.environ.get('MMVRWKV_DIST_BACKEND') or None,
                   help='torch.distributed backend, e.g. nccl or gloo (default: env '
                   'MMVRWKV_DIST_BACKEND, else the config\'s; gloo when no GPU is visible)')
    # torch.distributed.launch passes --local-rank (--local_rank before torch 2.0), torchrun
    # sets LOCAL_RANK; accept both spellings.
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def setup_dist(cfg, launcher: str, backend=None) -> None:
    """Prepare ``cfg`` for a distributed ``launcher`` (no-op for 'none').

    ``backend`` sets ``env_cfg.dist_cfg.backend``. Without a visible CUDA device, mmengine
    0.10.7 cannot run DDP: its ``init_dist`` calls ``torch.cuda.set_device`` and its model
    wrapper passes ``device_ids=[LOCAL_RANK]``. Then the process group is initialised here
    (backend gloo unless another non-nccl one is asked for; mmengine skips its own init when a
    group exists) and ``model_wrapper_cfg`` gets ``device_ids=None`` (CPU DDP).
    """
    if launcher == 'none':
        return
    import torch
    if cfg.get('env_cfg') is None:
        cfg.env_cfg = dict()
    if cfg.env_cfg.get('dist_cfg') is None:
        cfg.env_cfg.dist_cfg = dict(backend='nccl')
    dist_cfg = cfg.env_cfg.dist_cfg
    if backend:
        dist_cfg.backend = backend
    if torch.cuda.is_available():
        return
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg.backend = 'gloo'
    _init_cpu_process_group(launcher, dict(dist_cfg))
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False)))
    wrapper_type = wrapper.get('type', 'MMDistributedDataParallel')
    if isinstance(wrapper_type, str):
        wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def _init_cpu_process_group(launcher: str, dist_cfg: dict) -> None:
    """mmengine's ``init_dist`` minus ``torch.cuda.set_device`` (same environment rules)."""
    import datetime
    import subprocess

    import torch.distributed as dist
    if dist.is_initialized():
        return
    env = os.environ
    if launcher == 'slurm':
        env['RANK'] = env['SLURM_PROCID']
        env['WORLD_SIZE'] = env['SLURM_NTASKS']
        env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')
        env.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in env:
            env['MASTER_ADDR'] = subprocess.getoutput(
                f"scontrol show hostname {env['SLURM_NODELIST']} | head -n1")
    elif launcher == 'mpi':
        env['RANK'] = env['OMPI_COMM_WORLD_RANK']
        env['WORLD_SIZE'] = env['OMPI_COMM_WORLD_SIZE']
        env['LOCAL_RANK'] = env['OMPI_COMM_WORLD_LOCAL_RANK']
        env.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in env:
            raise KeyError('The environment variable MASTER_ADDR is not set')
    kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    dist.init_process_group(backend=dist_cfg.get('backend', 'gloo'), **kwargs)


def build_cfg(args: argparse.Namespace):
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
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


def make_demo_data(cfg, launcher: str) -> None:
    """Write a demo config's dataset (its ``demo_data``) when the loaders need it and it is
    missing; see tools/dataset_converters/demo_data.py (beside this file, also in .mim)."""
    import importlib.util
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'dataset_converters', 'demo_data.py')
    spec = importlib.util.spec_from_file_location('_mmvrwkv_demo_data', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ensure_demo_data(cfg, distributed=launcher != 'none')


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmengine.runner import Runner

    import mmvrwkv  # noqa: F401  (registers the safe checkpoint loaders)
    if args.amp:
        check_amp_device()
    cfg = build_cfg(args)
    make_demo_data(cfg, args.launcher)
    setup_dist(cfg, args.launcher, args.dist_backend)
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
