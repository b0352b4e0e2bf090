"""``tools/run_demo.py --model vrwkv6``: the VRWKV6-T variants of the demos (config choice,
CLI errors) and one training step of the VRWKV6-T digits classifier on the real data."""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402

from tool_helpers import ROOT, load_tool  # noqa: E402

run_demo = load_tool('run_demo')


def test_demo_config_per_model():
    assert run_demo.demo_config('cls') == run_demo.DEMOS['cls']['config']
    assert run_demo.demo_config('cls', 'vrwkv6') == \
        'configs/demo/vrwkv6-tiny-p2_1xb32-15e_digits.py'
    assert run_demo.demo_config('det', 'vrwkv6') == \
        'configs/demo/mask-rcnn_vrwkv6-tiny-adapter_fpn_shapes.py'
    for path in run_demo.VRWKV6_CONFIGS.values():
        assert osp.isfile(osp.join(ROOT, path))
    with pytest.raises(ValueError, match="vrwkv6 has the demos.*not 'seg'"):
        run_demo.demo_config('seg', 'vrwkv6')
    with pytest.raises(ValueError, match='model must be one of'):
        run_demo.demo_config('cls', 'vrwkv7')


def test_cli_rejects_seg_for_vrwkv6(capsys):
    with pytest.raises(SystemExit):
        run_demo.main(['--task', 'seg', '--model', 'vrwkv6'])
    assert "not 'seg'" in capsys.readouterr().err


def test_v6_digits_config_is_the_v1_demo_with_vrwkv6():
    v6 = Config.fromfile(osp.join(ROOT, run_demo.demo_config('cls', 'vrwkv6')))
    v1 = Config.fromfile(osp.join(ROOT, run_demo.demo_config('cls')))
    assert v6.model.backbone == dict(type='mmvrwkv.VRWKV6', arch='tiny', img_size=8,
                                     patch_size=2, drop_path_rate=0.1)
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'train_dataloader',
                'val_evaluator', 'data_preprocessor'):
        assert v6.get(key) == v1.get(key), key
    assert {k: v for k, v in v6.model.items() if k != 'backbone'} == \
        {k: v for k, v in v1.model.items() if k != 'backbone'}
    # shortening works on it as on the v1 demo
    run_demo.shorten_schedule(v6, 2)
    assert v6.train_cfg.max_epochs == 2


def test_v6_digits_train_step(digits, one_thread):
    import mmpretrain.models  # noqa: F401
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmengine.utils import import_modules_from_strings
    from mmpretrain.registry import DATASETS, MODELS
    cfg = Config.fromfile(osp.join(ROOT, run_demo.demo_config('cls', 'vrwkv6')))
    import_modules_from_strings(**cfg.custom_imports)
    cfg.train_dataloader.dataset.data_root = digits
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(cfg.train_dataloader.dataset)
        torch.manual_seed(0)
        model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
        model.init_weights()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    from mmvrwkv.models import VRWKV6
    assert isinstance(model.backbone, VRWKV6) and model.backbone.patch_resolution == (4, 4)
    before = model.backbone.layers[5].att.time_decay_w1.detach().clone()
    model.train()
    log_vars = model.train_step(pseudo_collate([ds[i] for i in range(8)]), optim)
    assert torch.isfinite(torch.as_tensor(log_vars['loss']))
    assert not torch.equal(before, model.backbone.layers[5].att.time_decay_w1)
