"""VRWKV6 in the dense-prediction stack: the Mask R-CNN COCO config with the VRWKV6-T adapter
(the VRWKV-T recipe with the v6 backbone) builds, takes the official v6 ImageNet keys, and
its demo-size variant trains one step on the shapes data. The WKV6 op runs its 'auto'
backend (compiled CPU kernel when built, else 'torch')."""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
from mmengine.config import Config  # noqa: E402

from tool_helpers import ROOT  # noqa: E402
from test_configs_dense import _first_batch, _one_train_step, build, shapes  # noqa: E402,F401

V6_COCO = osp.join(ROOT, 'configs', 'mask_rcnn', 'mask-rcnn_vrwkv6-tiny-adapter_fpn_1x_coco.py')
V1_COCO = osp.join(ROOT, 'configs', 'mask_rcnn', 'mask-rcnn_vrwkv-tiny-adapter_fpn_1x_coco.py')
V6_DEMO = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_vrwkv6-tiny-adapter_fpn_shapes.py')


def test_coco_config_is_the_v1_recipe_with_the_v6_backbone():
    v6, v1 = Config.fromfile(V6_COCO), Config.fromfile(V1_COCO)
    b6, b1 = v6.model.backbone, v1.model.backbone
    assert b6.type == 'mmvrwkv.VRWKV6Adapter' and b6.num_heads == 3
    assert b6.shift_mode == 'q_shift_multihead' and b6.init_values is None
    assert b6.init_cfg.checkpoint == 'pretrained/vrwkv6_t_in1k_224.pth'
    changed = {'type', 'init_values', 'num_heads', 'shift_mode', 'init_cfg'}
    assert {k: v for k, v in b6.items() if k not in changed} == \
        {k: v for k, v in b1.items() if k not in changed}
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'train_dataloader'):
        assert v6.get(key) == v1.get(key), key
    assert {k: v for k, v in v6.model.items() if k != 'backbone'} == \
        {k: v for k, v in v1.model.items() if k != 'backbone'}


def test_coco_model_builds_and_takes_the_v6_classification_keys():
    cfg = Config.fromfile(V6_COCO)
    model = build(cfg, meta=True)
    from mmvrwkv.models import VRWKV6, VRWKV6Adapter
    bb = model.backbone
    assert isinstance(bb, VRWKV6Adapter) and isinstance(bb, VRWKV6)
    assert (bb.embed_dims, bb.num_layers, bb.num_heads, len(bb.interactions)) == (192, 12, 3, 4)
    # (VRWKV6's keys are the official ones: tests/models/test_vrwkv6.py)
    with torch.device('meta'):
        cls_keys = set(VRWKV6('tiny').state_dict()) - {'ln1.weight', 'ln1.bias'}
    assert cls_keys <= set(bb.state_dict())
    # parameters: VRWKV6-T without its final norm + exactly the VRWKV-T adapter's modules
    from mmvrwkv.models.backbones.vrwkv_adapter import ADAPTER_PREFIXES

    def count(module, adapter_only=False):
        return sum(p.numel() for n, p in module.named_parameters()
                   if not adapter_only or n.startswith(ADAPTER_PREFIXES))

    v1_adapter = build(Config.fromfile(V1_COCO), meta=True).backbone
    with torch.device('meta'):
        v6_cls = VRWKV6('tiny', final_norm=False)
    assert count(bb) == count(v6_cls) + count(v1_adapter, adapter_only=True)
    assert abs(count(bb) / 1e6 - 9.89) < 0.01  # (the VRWKV-T adapter: 8.4 M in the paper)


def test_demo_trains_a_step(shapes):  # noqa: F811
    cfg = Config.fromfile(V6_DEMO)
    assert cfg.model.backbone.type == 'mmvrwkv.VRWKV6Adapter'
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    cfg.train_dataloader.dataset.data_root = osp.join(shapes, 'coco') + '/'
    _, batch = _first_batch(cfg, 1)
    model, log_vars = _one_train_step(cfg, batch)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(log_vars)
    # the step moved the v6 parameters (same seed, same init as _one_train_step's model)
    torch.manual_seed(0)
    fresh = build(cfg, meta=False)
    fresh.init_weights()
    for name in ('time_maa_w1', 'time_decay', 'time_faaaa', 'gate.weight'):
        before = fresh.backbone.layers[0].att.get_parameter(name)
        after = model.backbone.layers[0].att.get_parameter(name)
        assert torch.isfinite(after).all() and not torch.equal(before, after), name
