"""tools/test.py --out (predictions pickle, DumpResults / mmdet's DumpDetResults),
--show-dir (pictures through the task's visualization hook) and --metrics-out (metrics JSON),
on the cls / det / seg demo configs with initialised checkpoints (tests/inference_helpers.py)."""
import glob
import json
import os.path as osp
import pickle
import uuid

import cv2
import pytest

pytest.importorskip('mmpretrain')

from mmvrwkv.apis import MIN_DISPLAY_SIDE  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')


def _options(case, **extra):
    # Unique names: mmdet's / mmseg's configs name their visualizer 'visualizer', and in a
    # process that already made one, mmengine would hand the hook an older visualizer.
    name = f'test_{uuid.uuid4().hex[:8]}'
    opts = dict(case.options, experiment_name=name, **{'visualizer.name': name}, **extra)
    return ['--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]


def _pictures(folder):
    return sorted(glob.glob(osp.join(folder, '**', '*.png'), recursive=True)
                  + glob.glob(osp.join(folder, '**', '*.jpg'), recursive=True))


def test_out_must_be_a_pickle(evaluator, clean_env, capsys):
    with pytest.raises(SystemExit):
        evaluator.parse_args(['c.py', 'x.pth', '--out', 'metrics.json'])
    err = capsys.readouterr().err
    assert 'argument --out' in err and '.pkl' in err and '--metrics-out' in err


def test_show_interval_must_be_positive(evaluator, clean_env, capsys):
    with pytest.raises(SystemExit):
        evaluator.parse_args(['c.py', 'x.pth', '--show-dir', 'v', '--show-interval', '0'])
    assert 'argument --show-interval' in capsys.readouterr().err


def test_show_dir_needs_a_visualization_hook(evaluator, demo_case, tmp_path, clean_env):
    case = demo_case('cls')
    with pytest.raises(ValueError, match="default_hooks.visualization=dict.*'VisualizationHook'"):
        evaluator.main([case.config, case.checkpoint, '--work-dir', str(tmp_path),
                        '--show-dir', str(tmp_path / 'vis')]
                       + _options(case, **{'default_hooks.visualization': None}))


@pytest.mark.parametrize('task', ['cls', 'det', 'seg'])
def test_out_show_dir_and_metrics_out(task, evaluator, demo_case, tmp_path, clean_env):
    """Backend: whatever the CPU picks (the path under test is the tool's, not an op's)."""
    case = demo_case(task)
    out, vis, metrics_out = (str(tmp_path / 'preds.pkl'), str(tmp_path / 'vis'),
                             str(tmp_path / 'metrics.json'))
    metrics = evaluator.main([case.config, case.checkpoint, '--work-dir', str(tmp_path / 'w'),
                              '--out', out, '--show-dir', vis, '--metrics-out', metrics_out]
                             + _options(case))
    n = 4 if task == 'cls' else len(case.images)

    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == n
    key = {'cls': 'pred_score', 'det': 'pred_instances', 'seg': 'pred_sem_seg'}[task]
    assert all(key in p for p in preds), sorted(preds[0])
    if task == 'det':  # DumpDetResults: masks as RLE dicts, not dense arrays
        masks = preds[0]['pred_instances']['masks']
        assert masks and isinstance(masks[0], dict) and 'counts' in masks[0]

    pictures = _pictures(vis)
    assert len(pictures) == n, pictures
    height, width = cv2.imread(pictures[0]).shape[:2]
    assert min(height, width) >= (MIN_DISPLAY_SIDE if task == 'cls' else 128)

    with open(metrics_out) as f:
        written = json.load(f)
    assert written.keys() == metrics.keys() and written


@pytest.mark.parametrize('config, rescale', [
    ('configs/vrwkv/vrwkv-tiny_8xb128_in1k.py', 2),           # img_size from arch_zoo (224)
    ('configs/vrwkv/vrwkv-large_in21k-pre_8xb128_in1k-384px.py', 2),  # arch 'large': 192
    ('configs/vrwkv6/vrwkv6-small_8xb128_in1k.py', 2),         # VRWKV6's arch_zoo
    ('configs/demo/vrwkv-tiny-p2_1xb32-15e_digits.py', 32),    # img_size=8 stated
])
def test_show_dir_rescale_reads_the_arch(config, rescale, evaluator, tmp_path):
    """The picture scale of --show-dir follows the backbone's input side also when the config
    leaves img_size to the arch (the S/B/L and ImageNet configs state only differences)."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.default_hooks.visualization = dict(type='VisualizationHook')
    evaluator.enable_show_dir(cfg, str(tmp_path))
    assert cfg.default_hooks.visualization.get('rescale_factor') == rescale
    assert cfg.default_hooks.visualization['out_dir'] == str(tmp_path)
