"""The README's main job: generate the bundled demo dataset, train on it, evaluate, and print
the final metric. Everything runs on CPU in a few minutes.

    python tools/run_demo.py                # classification: VRWKV-T on sklearn digits
    python tools/run_demo.py --epochs 2     # shorter run (the LR schedule is shortened too)
    python tools/run_demo.py --task det     # Mask R-CNN, VRWKV-T adapter, generated shapes (COCO format)
    python tools/run_demo.py --task seg     # UperNet, VRWKV-T adapter, generated shapes (ADE20K format)
    python tools/run_demo.py --model vrwkv6 # the digits demo with VRWKV6-T (also --task det)
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import List, Optional

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
DEMOS = {
    'cls': dict(config='configs/demo/vrwkv-tiny-p2_1xb32-15e_digits.py',
                data=['tools/dataset_converters/make_digits_imagenet.py', 'data/digits'],
                targets={'accuracy/top1': 95.0}),
    # Dense-prediction demos (VRWKV-T adapter on generated shapes, COCO / ADE20K formats).
    'det': dict(config='configs/demo/mask-rcnn_vrwkv-tiny-adapter_fpn_shapes.py',
                data=['tools/dataset_converters/make_shapes_dataset.py', 'data/shapes'],
                targets={'coco/bbox_mAP': 0.3, 'coco/segm_mAP': 0.3}),
    'seg': dict(config='configs/demo/upernet_vrwkv-tiny-adapter_shapes.py',
                data=['tools/dataset_converters/make_shapes_dataset.py', 'data/shapes'],
                targets={'mIoU': 60.0}),
}
#: ``--model vrwkv6``: the same demos (data, targets) with the VRWKV6-T backbone.
VRWKV6_CONFIGS = {
    'cls': 'configs/demo/vrwkv6-tiny-p2_1xb32-15e_digits.py',
    'det': 'configs/demo/mask-rcnn_vrwkv6-tiny-adapter_fpn_shapes.py',
}
MODELS = ('vrwkv', 'vrwkv6')


def shorten_schedule(cfg, epochs: int) -> List[str]:
    """Set ``cfg`` (an mmengine ``Config``) to train ``epochs`` epochs, LR schedule included.

    ``--cfg-options train_cfg.max_epochs=N`` alone would leave the schedulers on the config's
    own length (a cosine/poly decay cut off half-way, a step that never comes). Here every
    epoch-based scheduler that ends at the old ``max_epochs`` ends at ``epochs``; step
    milestones scale with the length (at least epoch 1, before the end); one that would start
    at or after the new end (e.g. the cosine after a one-epoch warm-up when ``epochs=1``) is
    removed. Schedulers counted in iterations (warm-ups) are left as they are. Returns one
    line per change, for the log.
    """
    if epochs < 1:
        raise ValueError(f'epochs must be >= 1, got {epochs}')
    old = int(cfg.train_cfg.max_epochs)
    changes = [f'max_epochs {old} -> {epochs}']
    cfg.train_cfg.max_epochs = epochs
    val = cfg.train_cfg.get('val_interval', None)
    if val is not None and (val == old or val > epochs):
        cfg.train_cfg.val_interval = epochs  # validate at the end, as the config does
    kept = []
    for i, sch in enumerate(cfg.get('param_scheduler', None) or []):
        name = f'param_scheduler[{i}] {sch.get("type")}'
        if not sch.get('by_epoch', True):
            kept.append(sch)
            continue
        if sch.get('end', old) >= old:
            sch['end'] = epochs
        if sch.get('begin', 0) >= sch.get('end', epochs):
            changes.append(f'{name} removed (starts at epoch {sch["begin"]} >= {epochs})')
            continue
        if 'milestones' in sch:
            ms = sorted({min(max(1, round(m * epochs / old)), max(epochs - 1, 1))
                         for m in sch['milestones']})
            changes.append(f'{name} milestones {list(sch["milestones"])} -> {ms}')
            sch['milestones'] = ms
        changes.append(f'{name} epochs [{sch.get("begin", 0)}, {sch["end"]})')
        kept.append(sch)
    if 'param_scheduler' in cfg:
        cfg.param_scheduler = kept
    return changes


def demo_config(name: str, model: str = 'vrwkv') -> str:
    """Config of demo ``name`` with backbone family ``model`` ('vrwkv' or 'vrwkv6')."""
    if model not in MODELS:
        raise ValueError(f'model must be one of {MODELS}, got {model!r}')
    if model == 'vrwkv':
        return DEMOS[name]['config']
    if name not in VRWKV6_CONFIGS:
        raise ValueError(f'--model vrwkv6 has the demos {sorted(VRWKV6_CONFIGS)}, not {name!r}')
    return VRWKV6_CONFIGS[name]


def run_demo(name: str, work_dir: str, epochs: Optional[int] = None,
             model: str = 'vrwkv') -> dict:
    """Generate the demo's dataset, train, test the last checkpoint; return its metrics."""
    config = demo_config(name, model)
    demo = DEMOS[name]
    py = sys.executable
    subprocess.run([py, osp.join(ROOT, demo['data'][0]), osp.join(ROOT, demo['data'][1])],
                   check=True, cwd=ROOT)
    if epochs is not None:
        from mmengine.config import Config
        cfg = Config.fromfile(osp.join(ROOT, config))
        for line in shorten_schedule(cfg, epochs):
            print(f'[demo {name}] {line}')
        os.makedirs(work_dir, exist_ok=True)
        config = osp.join(work_dir, f'{name}_demo_{epochs}e.py')
        cfg.dump(config)
    cmd = [py, osp.join(ROOT, 'tools/train.py'), config, '--work-dir', work_dir]
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    minutes = (time.time() - t0) / 60
    ckpt = open(osp.join(work_dir, 'last_checkpoint')).read().strip()
    out = osp.join(work_dir, 'final_metrics.json')
    subprocess.run([py, osp.join(ROOT, 'tools/test.py'), config, ckpt, '--work-dir', work_dir,
                    '--metrics-out', out], check=True, cwd=ROOT)
    metrics = json.load(open(out))
    for key, target in demo['targets'].items():
        value = metrics[key]
        status = 'reached' if value >= target else 'MISSED'
        print(f'\n[demo {name}] {key} = {value:.4g} (target {target}: {status}); '
              f'training took {minutes:.1f} min')
    print()
    return metrics


def _positive_int(text: str) -> int:
    """argparse type of ``--epochs``: an integer >= 1 (checked before any work starts)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f'must be an integer >= 1, got {text}')
    return value


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--task', choices=sorted(DEMOS), default='cls')
    p.add_argument('--model', choices=MODELS, default='vrwkv',
                   help='backbone family (vrwkv6: cls and det demos)')
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/demo_<task> (demo_<task>_vrwkv6 with --model vrwkv6)')
    p.add_argument('--epochs', type=_positive_int, default=None,
                   help='train this many epochs (the LR schedule follows)')
    args = p.parse_args(argv)
    try:
        demo_config(args.task, args.model)
    except ValueError as err:
        p.error(str(err))
    suffix = '' if args.model == 'vrwkv' else f'_{args.model}'
    work_dir = args.work_dir or osp.join(ROOT, 'work_dirs', f'demo_{args.task}{suffix}')
    run_demo(args.task, work_dir, args.epochs, args.model)


if __name__ == '__main__':
    main()
