"""Evaluate a checkpoint with an mmvrwkv config (mmengine Runner, any task).

Example::

    python tools/test.py configs/demo/vrwkv-tiny-p2_1xb32-15e_digits.py work_dirs/.../epoch_30.pth
    tools/dist_test.sh CONFIG CHECKPOINT 8 [args]            # torchrun, --launcher pytorch
    tools/slurm_test.sh PARTITION JOB CONFIG CHECKPOINT      # srun, --launcher slurm

Distributed runs without a visible GPU use gloo on the CPU, as in tools/train.py
(``--dist-backend`` / ``MMVRWKV_DIST_BACKEND`` override the backend).
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a clone


def _train_tool():
    """tools/train.py next to this file (shares the launcher set-up, also in mmvrwkv/.mim)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        '_mmvrwkv_train_tool', osp.join(osp.dirname(osp.abspath(__file__)), 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Test a checkpoint (mmvrwkv)')
    p.add_argument('config', help='config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='where the evaluation logs go')
    p.add_argument('--out', help='also write the metrics to this JSON file')
    p.add_argument('--amp', action='store_true', help='run the test loop under autocast')
    p.add_argument('--allow-partial', action='store_true',
                   help='evaluate even if the checkpoint\'s keys or shapes do not all match '
                   'the model (default: refuse: the metric would be of a partly random model)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config entries')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--dist-backend', default=os.environ.get('MMVRWKV_DIST_BACKEND') or None,
                   help='torch.distributed backend (see tools/train.py)')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmvrwkv.engine import use_safe_checkpoint_hook  # (import registers the safe loaders)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    use_safe_checkpoint_hook(cfg, allow_partial=args.allow_partial)
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
    _train_tool().setup_dist(cfg, args.launcher, args.dist_backend)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    from mmengine.dist import is_main_process
    if args.out and is_main_process():  # one writer under a distributed launcher
        with open(args.out, 'w') as f:
            json.dump({k: float(v) if hasattr(v, '__float__') else v for k, v in metrics.items()}, f, indent=2)
    return metrics


if __name__ == '__main__':
    main()
