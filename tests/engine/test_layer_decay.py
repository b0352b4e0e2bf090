"""Tests of the layer-wise lr decay optimizer-wrapper constructor."""
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

from mmvrwkv.engine.optimizers import LayerDecayOptimWrapperConstructor, is_no_decay
from mmvrwkv.models import VRWKVAdapter

BASE_LR, BASE_WD = 1e-4, 0.05


class Detector(nn.Module):
    """backbone + neck + head, named like an mmdet/mmseg model."""

    def __init__(self, depth):
        super().__init__()
        self.backbone = VRWKVAdapter(arch=dict(embed_dims=24, depth=depth),
                                     deform_num_heads=6, conv_inplane=8, init_values=1.0)
        self.neck = nn.Conv2d(24, 16, 1)
        self.head = nn.Linear(16, 3)


def _build(model, rate, num_layers, **extra):
    ctor = LayerDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=BASE_LR,
                                                 weight_decay=BASE_WD)),
        dict(num_layers=num_layers, layer_decay_rate=rate, **extra))
    return ctor(model)


def _scale_of(optim_wrapper):
    table = {}
    for g in optim_wrapper.optimizer.param_groups:
        assert g['lr'] == pytest.approx(g['lr_scale'] * BASE_LR)
        for name in g['param_names']:
            table[name] = (g['lr_scale'], g['weight_decay'])
    return table


def test_layer_ids_come_from_the_backbone():
    """VRWKV.get_layer_depth (mmpretrain ViT's interface): 0 embeddings, i + 1 block i, the
    top id (num_layers + 1) for everything else; num_layers + 2 ids in all."""
    from mmvrwkv.models import VRWKV
    n = 12
    backbone = VRWKV(arch='tiny', depth=n)

    def layer_id(name):
        lid, count = backbone.get_layer_depth(name, 'backbone.')
        assert count == n + 2
        return lid
    assert layer_id('backbone.pos_embed') == 0
    assert layer_id('backbone.patch_embed.projection.weight') == 0
    assert layer_id('backbone.cls_token') == 0
    assert layer_id('backbone.layers.0.att.key.weight') == 1
    assert layer_id('backbone.layers.11.ffn.value.weight') == 12
    for name in ('backbone.level_embed', 'backbone.spm.stem.0.weight',
                 'backbone.interactions.0.injector.gamma', 'backbone.up.weight',
                 'backbone.norm1.weight', 'neck.lateral_convs.0.conv.weight',
                 'roi_head.bbox_head.fc_cls.weight', 'backbone.layers_extra.weight',
                 'backbone.layers.12.x', 'decode_head.conv_seg.weight', 'pos_embed'):
        assert layer_id(name) == 13, name
    assert backbone.get_layer_depth('layers.3.att.key.weight') == (4, 14)  # bare backbone


def test_no_decay_rule():
    def p(*shape):
        return nn.Parameter(torch.zeros(shape))

    C = 8
    assert is_no_decay('backbone.pos_embed', p(1, 196, C))  # fixed: original never matched
    assert is_no_decay('backbone.layers.0.ln1.weight', p(C))
    assert is_no_decay('backbone.layers.0.att.spatial_decay', p(C))
    assert is_no_decay('backbone.layers.0.gamma1', p(C))
    assert is_no_decay('backbone.spm.fc1.bias', p(C))
    assert is_no_decay('neck.conv.bias', p(C))
    assert not is_no_decay('backbone.layers.0.att.spatial_mix_k', p(1, 1, C))
    assert not is_no_decay('backbone.level_embed', p(3, C))
    assert not is_no_decay('backbone.layers.0.att.key.weight', p(C, C))
    assert not is_no_decay('backbone.patch_embed.projection.weight', p(C, 3, 16, 16))
    assert not is_no_decay('neck.pos_embed', p(1, 4, C))  # only the backbone's


def test_depth12_rate085_scales_and_weight_decay():
    model = Detector(depth=12)
    ow = _build(model, 0.85, 12)
    table = _scale_of(ow)
    # every trainable parameter exactly once
    names = [n for g in ow.optimizer.param_groups for n in g['param_names']]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert len(names) == len(set(names))

    embed, block0, last, top = 0.85 ** 13, 0.85 ** 12, 0.85, 1.0
    assert round(embed, 3) == 0.121 and round(block0, 3) == 0.142
    expected = {
        'backbone.pos_embed': (embed, 0.),
        'backbone.patch_embed.projection.weight': (embed, BASE_WD),
        'backbone.patch_embed.projection.bias': (embed, 0.),
        'backbone.layers.0.ln0.weight': (block0, 0.),
        'backbone.layers.0.att.key.weight': (block0, BASE_WD),
        'backbone.layers.0.att.spatial_mix_k': (block0, BASE_WD),
        'backbone.layers.0.att.spatial_decay': (block0, 0.),
        'backbone.layers.5.gamma1': (0.85 ** 7, 0.),
        'backbone.layers.11.ffn.value.weight': (last, BASE_WD),
        'backbone.layers.11.ln2.bias': (last, 0.),
        'backbone.level_embed': (top, BASE_WD),
        'backbone.spm.stem.0.weight': (top, BASE_WD),
        'backbone.spm.stem.1.weight': (top, 0.),
        'backbone.interactions.0.injector.gamma': (top, 0.),
        'backbone.interactions.3.extra_extractors.0.attn.value_proj.weight': (top, BASE_WD),
        'backbone.up.weight': (top, BASE_WD),
        'backbone.norm4.bias': (top, 0.),
        'neck.weight': (top, BASE_WD),
        'head.bias': (top, 0.),
    }
    for name, (scale, wd) in expected.items():
        assert table[name][0] == pytest.approx(scale, rel=1e-12), name
        assert table[name][1] == wd, name
    # one group per (layer id, decay kind): 14 layer ids x 2
    assert len(ow.optimizer.param_groups) == 28


def test_depth24_rate09():
    model = Detector(depth=24)
    table = _scale_of(_build(model, 0.9, 24))
    assert table['backbone.pos_embed'][0] == pytest.approx(0.9 ** 25)
    assert round(0.9 ** 25, 3) == 0.072 and round(0.9 ** 24, 3) == 0.080
    assert table['backbone.layers.0.att.key.weight'][0] == pytest.approx(0.9 ** 24)
    assert table['backbone.layers.23.att.key.weight'][0] == pytest.approx(0.9)
    assert table['backbone.spm.fc1.weight'][0] == 1.0


def test_frozen_params_left_out_and_num_layers_from_model():
    model = Detector(depth=4)
    model.backbone.patch_embed.requires_grad_(False)
    ow = _build(model, 0.5, None)  # num_layers taken from model.backbone.num_layers
    table = _scale_of(ow)
    assert 'backbone.patch_embed.projection.weight' not in table
    assert table['backbone.pos_embed'][0] == pytest.approx(0.5 ** 5)
    assert table['backbone.layers.3.att.key.weight'][0] == pytest.approx(0.5)


def test_optimizer_state_round_trip():
    """Groups carry extra keys (param_names, lr_scale, layer_id, group_name): resuming an
    optimizer state must still work."""
    torch.manual_seed(0)
    model = Detector(depth=4)
    ow = _build(model, 0.5, 4)
    sum(o.mean() for o in model.backbone(torch.randn(2, 3, 32, 32))).backward()
    ow.step()
    state = ow.state_dict()
    ow2 = _build(model, 0.5, 4)
    ow2.load_state_dict(state)
    assert [g['lr_scale'] for g in ow2.optimizer.param_groups] == \
        [g['lr_scale'] for g in ow.optimizer.param_groups]
    assert len(ow2.optimizer.state) == len(ow.optimizer.state) > 0


def test_bare_backbone_prefix():
    backbone = VRWKVAdapter(arch=dict(embed_dims=24, depth=4), deform_num_heads=6,
                            conv_inplane=8)
    table = _scale_of(_build(backbone, 0.5, 4, backbone_prefix=''))
    assert table['pos_embed'] == (pytest.approx(0.5 ** 5), 0.)
    assert table['layers.0.att.key.weight'][0] == pytest.approx(0.5 ** 4)
    assert table['spm.fc1.weight'][0] == 1.0


def test_invalid_cfg():
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
    with pytest.raises(ValueError, match='layer_decay_rate'):
        LayerDecayOptimWrapperConstructor(cfg, dict(num_layers=12))
    with pytest.raises(ValueError, match='unknown paramwise_cfg'):
        LayerDecayOptimWrapperConstructor(cfg, dict(num_layers=12, layer_decay_rate=0.9,
                                                    norm_decay_mult=0.))
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        LayerDecayOptimWrapperConstructor(cfg, dict(num_layers=12, layer_decay_rate=1.5))
    with pytest.raises(ValueError, match='num_layers'):
        LayerDecayOptimWrapperConstructor(cfg, dict(num_layers=0, layer_decay_rate=0.9))


def test_schedulers_keep_the_layer_ratios():
    from mmengine.optim import LinearLR, MultiStepLR
    model = Detector(depth=4)
    ow = _build(model, 0.5, 4)
    scheds = [LinearLR(ow, start_factor=1e-3, by_epoch=False, begin=0, end=10),
              MultiStepLR(ow, milestones=[12], gamma=0.1, by_epoch=False)]
    for _ in range(15):
        ow.optimizer.step()  # no gradients: nothing changes, keeps torch's order check quiet
        for s in scheds:
            s.step()
    groups = ow.optimizer.param_groups
    top = next(g for g in groups if g['lr_scale'] == 1.0)
    for g in groups:
        assert g['lr'] == pytest.approx(top['lr'] * g['lr_scale'])
    assert top['lr'] == pytest.approx(BASE_LR * 0.1)


def test_scoped_name_resolves_from_mmdet_and_mmseg():
    """A fresh interpreter, default scope mmdet / mmseg, mmvrwkv not imported beforehand:
    mmengine must find 'mmvrwkv.LayerDecayOptimWrapperConstructor' on its own."""
    code = textwrap.dedent('''
        import sys
        import torch
        import torch.nn as nn
        from mmengine.optim import build_optim_wrapper
        from mmengine.registry import DefaultScope
        assert 'mmvrwkv' not in sys.modules
        class Backbone(nn.Module):  # the interface the constructor needs (as VRWKV's)
            num_layers = 12

            def get_layer_depth(self, name, prefix=''):
                return (0 if name == prefix + 'pos_embed' else 13), 14

        for scope in ('mmdet', 'mmseg'):
            __import__(scope + '.registry')
            model = nn.Module()
            model.backbone = Backbone()
            model.backbone.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
            model.head = nn.Linear(8, 2)
            with DefaultScope.overwrite_default_scope(scope):
                ow = build_optim_wrapper(model, dict(
                    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                    constructor='mmvrwkv.LayerDecayOptimWrapperConstructor',
                    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.85)))
            scales = sorted(round(g['lr_scale'], 4) for g in ow.optimizer.param_groups)
            assert scales == [round(0.85 ** 13, 4), 1.0, 1.0], scales
            print(scope, 'ok')
    ''')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'mmdet ok' in res.stdout and 'mmseg ok' in res.stdout
