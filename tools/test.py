"""Evaluate a checkpoint with an mmvrwkv config (mmengine Runner, any task).

Example::

    python tools/test.py configs/demo/vrwkv-tiny-p2_1xb32-15e_digits.py work_dirs/.../epoch_30.pth
    python tools/test.py CONFIG CKPT --metrics-out metrics.json --out preds.pkl --show-dir vis/
    tools/dist_test.sh CONFIG CHECKPOINT 8 [args]            # torchrun, --launcher pytorch
    tools/slurm_test.sh PARTITION JOB CONFIG CHECKPOINT      # srun, --launcher slurm

Distributed runs without a visible GPU use gloo on the CPU, as in tools/train.py
(``--dist-backend`` / ``MMVRWKV_DIST_BACKEND`` override the backend); the launcher options,
the config set-up and the demo data are ``mmvrwkv.apis.launch``'s.

``--out`` and ``--show-dir`` do what they do in mmdet's / mmseg's / mmpretrain's tools/test.py,
for the task of the config (its ``default_scope``): ``--out`` dumps the predictions to a pickle
through a ``DumpResults`` metric (mmdet's ``DumpDetResults``, with RLE masks, for detection);
``--show-dir`` turns on the config's visualization hook for every ``--show-interval``-th test
image. The metrics JSON is ``--metrics-out``.
"""
import argparse
import json
import os.path as osp

from mmvrwkv.apis import backbone_img_size, config_task, display_scale
from mmvrwkv.apis.launch import (add_launch_args, load_config, parse_launch_args,
                                 prepare_launch)


def _pickle_path(text: str) -> str:
    """argparse type of ``--out``: a path ending in .pkl / .pickle (DumpResults' formats)."""
    if not text.endswith(('.pkl', '.pickle')):
        raise argparse.ArgumentTypeError(f'expected a .pkl or .pickle file, got {text!r} (the '
                                         'metrics JSON is --metrics-out)')
    return text


def _positive_int(text: str) -> int:
    """argparse type of ``--show-interval``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected an integer >= 1, got {text!r}')
    return value


def enable_show_dir(cfg, show_dir: str, interval: int = 1) -> None:
    """Let the config's visualization hook draw every ``interval``-th test prediction into
    ``show_dir``, the way the task's own tools/test.py sets that hook up."""
    task = config_task(cfg)
    hook_type = {'cls': 'VisualizationHook', 'det': 'DetVisualizationHook',
                 'seg': 'SegVisualizationHook'}[task]
    hook = (cfg.get('default_hooks') or {}).get('visualization')
    if hook is None:
        raise ValueError(f'--show-dir needs a visualization hook in the config: add '
                         f"default_hooks.visualization=dict(type='{hook_type}')")
    hook['interval'] = interval
    if task == 'cls':  # mmpretrain draws the network input: upscale small ones (the digits)
        side = backbone_img_size(cfg)
        if side is not None and display_scale(side, side) > 1:
            hook['rescale_factor'] = display_scale(side, side)
        hook.update(enable=True, out_dir=show_dir)
    elif task == 'det':
        hook.update(draw=True, test_out_dir=show_dir)
    else:  # mmseg writes through the visualizer's backends under its save_dir
        hook['draw'] = True
        cfg.visualizer['save_dir'] = show_dir


def add_prediction_dump(runner, out: str) -> None:
    """Append the task's DumpResults metric (pickle of all predictions) to the test
    evaluator, as mmdet / mmpretrain's tools/test.py do."""
    if config_task(runner.cfg) == 'det':
        from mmdet.evaluation import DumpDetResults as Dump  # RLE-encodes the masks
    else:
        from mmengine.evaluator import DumpResults as Dump
    runner.test_evaluator.metrics.append(Dump(out_file_path=out))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Test a checkpoint (mmvrwkv)')
    p.add_argument('config', help='config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='where the evaluation logs go')
    p.add_argument('--metrics-out', help='also write the metrics to this JSON file')
    p.add_argument('--out', type=_pickle_path,
                   help='dump the predictions to this pickle file (.pkl / .pickle), as '
                   'mmdet / mmseg / mmpretrain do (DumpResults)')
    p.add_argument('--show-dir', help='draw the predictions into this directory (through the '
                   "config's visualization hook)")
    p.add_argument('--show-interval', type=_positive_int, default=1,
                   help='with --show-dir: draw every N-th test image (default: all)')
    p.add_argument('--amp', action='store_true', help='run the test loop under autocast')
    p.add_argument('--allow-partial', action='store_true',
                   help='evaluate even if the checkpoint\'s keys or shapes do not all match '
                   'the model (default: refuse: the metric would be of a partly random model)')
    add_launch_args(p)
    return parse_launch_args(p, argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmengine.runner import Runner

    from mmvrwkv.engine import use_safe_checkpoint_hook
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    use_safe_checkpoint_hook(cfg, allow_partial=args.allow_partial)
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
    if args.show_dir:
        enable_show_dir(cfg, osp.abspath(args.show_dir), args.show_interval)
    prepare_launch(cfg, args.launcher, args.dist_backend)
    runner = Runner.from_cfg(cfg)
    if args.out:
        add_prediction_dump(runner, osp.abspath(args.out))
    metrics = runner.test()
    from mmengine.dist import is_main_process
    if args.metrics_out and is_main_process():  # one writer under a distributed launcher
        with open(args.metrics_out, 'w') as f:
            json.dump({k: float(v) if hasattr(v, '__float__') else v
                       for k, v in metrics.items()}, f, indent=2)
    return metrics


if __name__ == '__main__':
    main()
