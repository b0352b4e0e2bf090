"""What the command lines share: the launcher options and the run-up to mmengine's Runner of
``tools/train.py`` and ``tools/test.py``, and the one-line report of a bad input.

``tools/train.py`` and ``tools/test.py`` parse their own options, then add the common tail
(:func:`add_launch_args`), read the config (:func:`load_config`) and, just before
``Runner.from_cfg``, write a missing demo dataset and prepare a distributed run
(:func:`prepare_launch`).

Distributed runs without a visible GPU (``CUDA_VISIBLE_DEVICES=`` on a GPU machine) run on
the CPU: the process group is created here with the ``gloo`` backend and the model is wrapped
in DDP without device ids (:func:`setup_dist`).
"""
import argparse
import datetime
import os
import os.path as osp
import subprocess
import sys
from typing import Any, Callable, Optional, Sequence, Tuple, Type

#: ``--launcher`` choices (mmengine's launchers).
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_launch_args(parser: argparse.ArgumentParser,
                    cfg_options_help: str = 'override config entries') -> None:
    """The options every Runner tool ends with: ``--cfg-options``, ``--launcher``,
    ``--dist-backend`` (default: env ``MMVRWKV_DIST_BACKEND``) and ``--local_rank`` /
    ``--local-rank``."""
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help=cfg_options_help)
    parser.add_argument('--launcher', choices=list(LAUNCHERS), default='none',
                        help='job launcher for distributed runs')
    parser.add_argument('--dist-backend', default=os.environ.get('MMVRWKV_DIST_BACKEND') or None,
                        help='torch.distributed backend, e.g. nccl or gloo (default: env '
                        "MMVRWKV_DIST_BACKEND, else the config's; gloo when no GPU is visible)")
    # torch.distributed.launch passes --local-rank (--local_rank before torch 2.0), torchrun
    # sets LOCAL_RANK; accept both spellings.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launch_args(parser: argparse.ArgumentParser,
                      argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; ``LOCAL_RANK`` is set from ``--local-rank`` unless the
    environment has it (torchrun's)."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_config(args: argparse.Namespace):
    """``args.config`` with ``--cfg-options`` merged, ``launcher`` set and the work dir:
    ``--work-dir``, else the config's, else ``./work_dirs/<config name>``."""
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def prepare_launch(cfg, launcher: str, backend: Optional[str] = None) -> None:
    """The last steps before ``Runner.from_cfg``: write the config's demo dataset when it is
    missing (``mmvrwkv.datasets.demo_data``), then :func:`setup_dist`."""
    from mmvrwkv.datasets import ensure_demo_data
    ensure_demo_data(cfg, distributed=launcher != 'none')
    setup_dist(cfg, launcher, backend)


def setup_dist(cfg, launcher: str, backend: Optional[str] = None) -> None:
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


def exit_status(run: Callable[[], Any], errors: Tuple[Type[BaseException], ...], prefix: str,
                status: int) -> int:
    """0 after ``run()``; when it raises one of ``errors`` (a bad input the user can fix),
    ``prefix`` + the message as one line on stderr and ``status``, without a traceback."""
    try:
        run()
    except errors as e:
        print(f'{prefix}{e}', file=sys.stderr)
        return status
    return 0
