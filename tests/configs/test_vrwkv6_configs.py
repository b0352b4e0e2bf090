"""The VRWKV6 ImageNet configs (configs/vrwkv6): the official v6 values (facts §4.1, §5.1),
the paper's parameter counts (7.6 / 27.7 / 104.9 M), the metafile, and a working classifier.

Needs mmengine + mmpretrain (skipped without them). Models run the 'torch' WKV6 backend.
"""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain')
import yaml  # noqa: E402
from mmengine.config import Config  # noqa: E402

from tool_helpers import ROOT  # noqa: E402
from test_configs_cls import build_model  # noqa: E402

CFG_DIR = osp.join(ROOT, 'configs', 'vrwkv6')
EXPECTED = {
    'vrwkv6-tiny_8xb128_in1k.py': dict(
        arch='tiny', v1='vrwkv-tiny_8xb128_in1k.py', C=192, heads=3, drop_path=0.,
        init_values=None, post_norm=False, batch=128, params=7.6, top1=76.6,
        weights='vrwkv6_t_in1k_224.pth'),
    'vrwkv6-small_8xb128_in1k.py': dict(
        arch='small', v1='vrwkv-small_8xb128_in1k.py', C=384, heads=6, drop_path=0.3,
        init_values=1e-5, post_norm=True, batch=128, params=27.7, top1=81.1,
        weights='vrwkv6_s_in1k_224.pth'),
    'vrwkv6-base_16xb64_in1k.py': dict(
        arch='base', v1='vrwkv-base_16xb64_in1k.py', C=768, heads=12, drop_path=0.5,
        init_values=1e-5, post_norm=True, batch=64, params=104.9, top1=82.6,
        weights='vrwkv6_b_in1k_224.pth'),
}


def load(name):
    return Config.fromfile(osp.join(CFG_DIR, name))


def test_all_configs_listed():
    import glob
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(CFG_DIR, '*.py'))) == \
        sorted(EXPECTED)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_values_and_shared_recipe(name):
    exp = EXPECTED[name]
    cfg = load(name)
    bb = cfg.model.backbone
    assert bb.type == 'mmvrwkv.VRWKV6' and bb.arch == exp['arch']
    assert (bb.drop_path_rate, bb.init_values, bb.post_norm) == (
        exp['drop_path'], exp['init_values'], exp['post_norm'])
    assert bb.shift_mode == 'q_shift_multihead' and not bb.with_cls_token
    assert 'channel_gamma' not in bb  # v1 argument, not part of the v6 backbone
    assert cfg.model.head.in_channels == exp['C']
    assert cfg.train_dataloader.batch_size == exp['batch']
    # everything but the backbone is the v1 recipe of the same size
    v1 = Config.fromfile(osp.join(ROOT, 'configs', 'vrwkv', exp['v1']))
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'train_dataloader',
                'val_dataloader', 'data_preprocessor', 'default_scope'):
        assert cfg.get(key) == v1.get(key), key
    assert cfg.model.get('train_cfg') == v1.model.get('train_cfg')
    assert cfg.model.neck == v1.model.neck and cfg.model.init_cfg == v1.model.init_cfg


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_param_count_is_the_papers(name):
    exp = EXPECTED[name]
    model = build_model(load(name), meta=True)
    from mmvrwkv.models import VRWKV6
    assert isinstance(model.backbone, VRWKV6) and model.backbone.num_heads == exp['heads']
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / 1e6 - exp['params']) < 0.1, n
    meta = {m['Name']: m for m in yaml.safe_load(
        open(osp.join(CFG_DIR, 'metafile.yml')))['Models']}[osp.splitext(name)[0]]
    assert meta['Metadata']['Parameters'] == n


def test_metafile_and_model_index():
    with open(osp.join(CFG_DIR, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    models = {m['Name']: m for m in meta['Models']}
    assert set(models) == {osp.splitext(n)[0] for n in EXPECTED}
    for name, exp in EXPECTED.items():
        m = models[osp.splitext(name)[0]]
        assert m['In Collection'] == meta['Collections'][0]['Name']
        assert m['Config'] == f'configs/vrwkv6/{name}'
        assert m['Results'][0]['Metrics']['Top 1 Accuracy'] == exp['top1']
        assert m['Weights'].endswith('OpenGVLab/Vision-RWKV/resolve/main/' + exp['weights'])
        assert m['Converted From']['Weights'] == m['Weights']
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        assert 'configs/vrwkv6/metafile.yml' in yaml.safe_load(f)['Import']


def test_tiny_classifier_trains_a_step():
    cfg = load('vrwkv6-tiny_8xb128_in1k.py')
    cfg.model.backbone.depth = 2
    cfg.model.backbone.wkv_backend = 'torch'
    model = build_model(cfg).train()
    from mmpretrain.structures import DataSample
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                        for _ in range(2)],
                data_samples=[DataSample().set_gt_label(i) for i in (1, 7)])
    batch = model.data_preprocessor(data, training=True)
    losses = model(**batch, mode='loss')
    losses['loss'].backward()
    assert torch.isfinite(losses['loss'])
    assert model.backbone.layers[1].att.time_decay_w2.grad is not None


def test_weight_decay_groups():
    """As in the original: decay 0.05 for everything but norms (ln_x GroupNorm included)
    and biases; the v6 time_* and LoRA parameters are decayed."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    cfg = load('vrwkv6-small_8xb128_in1k.py')
    cfg.model.backbone.depth = 1
    model = build_model(cfg, meta=False)
    ow_cfg = cfg.optim_wrapper.copy()
    init_default_scope('mmpretrain')
    wrapper = build_optim_wrapper(model, ow_cfg)
    ids = {id(p): n for n, p in model.named_parameters()}
    wd_of = {ids[id(p)]: g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    assert len(wd_of) == len(ids)
    att = 'backbone.layers.0.att.'
    for name in ('time_maa_x', 'time_maa_w1', 'time_maa_w2', 'time_decay', 'time_decay_w1',
                 'time_faaaa', 'gate.weight'):
        assert wd_of[att + name] == 0.05, name
    for name in ('ln_x.weight', 'ln_x.bias'):
        assert wd_of[att + name] == 0., name
    assert wd_of['backbone.layers.0.gamma1'] == 0.05
    assert wd_of['backbone.layers.0.ln1.weight'] == 0. and wd_of['head.fc.bias'] == 0.
