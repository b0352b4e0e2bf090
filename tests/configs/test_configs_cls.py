"""The ImageNet classification configs in configs/vrwkv: they parse, carry the values of the
official recipes (reference/vision-rwkv-facts.md §4-5), and build working mmpretrain models.

Needs mmengine + mmpretrain (skipped without them); model tests need mmvrwkv.models.
"""
import glob
import math
import os.path as osp
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from tool_helpers import ROOT  # noqa: E402
CFG_DIR = osp.join(ROOT, 'configs', 'vrwkv')
CONFIGS = sorted(glob.glob(osp.join(CFG_DIR, '*.py')))

TINY = 'vrwkv-tiny_8xb128_in1k.py'
SMALL = 'vrwkv-small_8xb128_in1k.py'
BASE = 'vrwkv-base_16xb64_in1k.py'
LARGE = 'vrwkv-large_in21k-pre_8xb128_in1k-384px.py'

# Per config: values of the official recipes.
EXPECTED = {
    TINY: dict(arch='tiny', C=192, depth=12, gpus=8, batch=128, lr=1e-3, min_lr=1e-5,
               wd=0.05, epochs=300, warmup=20, drop_path=0., init_values=None,
               post_norm=False, key_norm=False, img_size=224, clip=5.0, augments=[]),
    SMALL: dict(arch='small', C=384, depth=12, gpus=8, batch=128, lr=1e-3, min_lr=1e-5,
                wd=0.05, epochs=300, warmup=20, drop_path=0.3, init_values=1.0,
                post_norm=True, key_norm=False, img_size=224, clip=5.0,
                augments=[('Mixup', 0.8), ('CutMix', 1.0)]),
    BASE: dict(arch='base', C=768, depth=12, gpus=16, batch=64, lr=1e-3, min_lr=1e-5,
               wd=0.05, epochs=300, warmup=20, drop_path=0.5, init_values=1e-5,
               post_norm=True, key_norm=False, img_size=224, clip=5.0,
               augments=[('Mixup', 0.8), ('CutMix', 1.0)]),
    LARGE: dict(arch='large', C=1024, depth=24, gpus=8, batch=128, lr=1e-5, min_lr=1e-7,
                wd=0.05, epochs=20, warmup=2, drop_path=0.1, init_values=1e-5,
                post_norm=True, key_norm=True, img_size=192, clip=1.0,
                augments=[('Mixup', 0.8)]),
}

_cfg_cache = {}


def load(name):
    if name not in _cfg_cache:
        _cfg_cache[name] = Config.fromfile(osp.join(CFG_DIR, name))
    return _cfg_cache[name]


def have_backbone():
    try:
        import mmvrwkv.models  # noqa: F401
        from mmvrwkv.models.backbones import VRWKV  # noqa: F401
    except ImportError:
        return False
    return True


needs_backbone = pytest.mark.skipif(not have_backbone(), reason='mmvrwkv.models not there')


def build_model(cfg, meta=False):
    import mmpretrain.models  # noqa: F401
    from mmengine.utils import import_modules_from_strings
    from mmpretrain.registry import MODELS
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    if meta:
        with torch.device('meta'):
            return MODELS.build(model_cfg)
    return MODELS.build(model_cfg)


# --------------------------------------------------------------------------------------
# parsing and values

def test_all_configs_listed():
    assert sorted(osp.basename(c) for c in CONFIGS) == sorted(EXPECTED)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_config_values(name):
    cfg = load(name)
    exp = EXPECTED[name]
    assert cfg.default_scope == 'mmpretrain'
    assert 'mmvrwkv' in cfg.custom_imports['imports']
    assert cfg.custom_imports.get('allow_failed_imports') is False
    assert cfg.load_from is None

    model = cfg.model
    assert model.type == 'ImageClassifier'
    bb = model.backbone
    assert bb.type == 'mmvrwkv.VRWKV'
    assert bb.arch == exp['arch']
    assert bb.drop_path_rate == exp['drop_path']
    assert bb.init_values == exp['init_values']
    assert bb.post_norm == exp['post_norm']
    assert bb.key_norm == exp['key_norm']
    assert bb.img_size == exp['img_size']
    assert bb.get('with_cp', False) == (name == LARGE)
    assert model.neck.type == 'GlobalAveragePooling'
    assert model.head.in_channels == exp['C']
    assert model.head.num_classes == 1000
    assert model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                   mode='original')
    assert model.init_cfg == [
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)]
    if name == LARGE:
        assert model.head.type == 'VisionTransformerClsHead'
        assert model.head.hidden_dim == 3072
        assert model.head.act_cfg == dict(type='Tanh')
    else:
        assert model.head.type == 'LinearClsHead'
        assert model.head.init_cfg is None

    # batch augments: Mixup + CutMix for S and B only; L Mixup on half of the batches
    augs = model.get('train_cfg', {}).get('augments', [])
    assert [(a['type'], a['alpha']) for a in augs] == exp['augments']
    if name == LARGE:
        assert model.train_cfg.probs == 0.5
    elif augs:
        assert model.train_cfg.get('probs') is None  # uniform: exactly one per batch

    # optimizer
    ow = cfg.optim_wrapper
    opt = ow.optimizer
    assert opt.type == 'AdamW'
    assert math.isclose(opt.lr, exp['lr'], rel_tol=1e-12)
    assert opt.weight_decay == exp['wd']
    assert opt.eps == 1e-8 and tuple(opt.betas) == (0.9, 0.999)
    assert ow.clip_grad == dict(max_norm=exp['clip'])
    if name == LARGE:
        assert ow.type == 'AmpOptimWrapper' and ow.dtype == 'float16'
    else:
        assert ow.get('type', 'OptimWrapper') == 'OptimWrapper'

    # schedule
    assert cfg.train_cfg.max_epochs == exp['epochs']
    assert cfg.train_cfg.val_interval == 1
    warm, cos = cfg.param_scheduler
    assert warm.type == 'LinearLR' and warm.start_factor == 1e-3
    assert (warm.begin, warm.end) == (0, exp['warmup'])
    assert warm.by_epoch and warm.convert_to_iter_based
    assert cos.type == 'CosineAnnealingLR' and (cos.begin, cos.end) == (0, exp['epochs'])
    assert cos.by_epoch and cos.convert_to_iter_based
    assert math.isclose(cos.eta_min_ratio * opt.lr, exp['min_lr'], rel_tol=1e-9)

    # batch
    assert cfg.train_dataloader.batch_size == exp['batch']
    assert exp['gpus'] * exp['batch'] == 1024 == cfg.auto_scale_lr.base_batch_size

    # checkpoints and EMA
    ckpt = cfg.default_hooks.checkpoint
    assert (ckpt.interval, ckpt.max_keep_ckpts, ckpt.save_last) == (1, 2, True)
    ema = [h for h in cfg.get('custom_hooks', []) if h['type'] == 'EMAHook']
    if name == LARGE:
        assert len(ema) == 1 and math.isclose(ema[0]['momentum'], 1 - 0.9999)
    else:
        assert not ema


@pytest.mark.parametrize('name', [TINY, SMALL, BASE])
def test_pipeline_224(name):
    cfg = load(name)
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert types == ['LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'RandAugment',
                     'RandomErasing', 'PackInputs']
    rrc, _, ra, re_, _ = cfg.train_dataloader.dataset.pipeline[1:]
    assert (rrc.scale, rrc.interpolation) == (224, 'bicubic')
    assert (ra.policies, ra.num_policies, ra.total_level, ra.magnitude_level,
            ra.magnitude_std) == ('timm_increasing', 2, 10, 9, 0.5)
    assert (re_.erase_prob, re_.mode) == (0.25, 'rand')
    test_types = [(t['type'], t.get('scale', t.get('crop_size')))
                  for t in cfg.val_dataloader.dataset.pipeline]
    assert test_types == [('LoadImageFromFile', None), ('ResizeEdge', 256),
                          ('CenterCrop', 224), ('PackInputs', None)]
    dp = cfg.data_preprocessor
    assert dp.mean == [123.675, 116.28, 103.53] and dp.std == [58.395, 57.12, 57.375]
    assert dp.to_rgb


def _run_pipeline(pipeline):
    import mmpretrain.datasets  # noqa: F401
    from mmcv.transforms import Compose
    init_default_scope('mmpretrain')
    steps = [t for t in pipeline if t['type'] != 'LoadImageFromFile']
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    return Compose(steps)(dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                               gt_label=3))


@pytest.mark.parametrize('name,size', [(TINY, 224), (LARGE, 384)])
def test_pipelines_run(name, size):
    cfg = load(name)
    for key in ('train_dataloader', 'val_dataloader'):
        out = _run_pipeline(cfg[key].dataset.pipeline)
        assert tuple(out['inputs'].shape) == (3, size, size)


def test_large_pipeline():
    cfg = load(LARGE)
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert types == ['LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'PackInputs']
    assert cfg.train_dataloader.dataset.pipeline[1].scale == 384
    test = cfg.val_dataloader.dataset.pipeline
    assert [(t['type'], t.get('scale', t.get('crop_size'))) for t in test] == [
        ('LoadImageFromFile', None), ('ResizeEdge', 384), ('CenterCrop', 384),
        ('PackInputs', None)]


def test_config_names_unique_in_repo():
    names = [osp.basename(p) for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                                                recursive=True)
             if '_base_' not in p.split(osp.sep)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes


def test_metafile():
    import yaml
    with open(osp.join(CFG_DIR, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    models = {m['Name']: m for m in meta['Models']}
    assert set(models) == {osp.splitext(n)[0] for n in EXPECTED}
    top1 = {TINY: 75.1, SMALL: 80.1, BASE: 82.0, LARGE: 86.0}
    weights = {TINY: 'vrwkv_t_in1k_224.pth', SMALL: 'vrwkv_s_in1k_224.pth',
               BASE: 'vrwkv_b_in1k_224.pth', LARGE: 'vrwkv_l_22kto1k_384.pth'}
    for name in EXPECTED:
        m = models[osp.splitext(name)[0]]
        assert m['In Collection'] == meta['Collections'][0]['Name']
        assert osp.isfile(osp.join(ROOT, m['Config']))
        assert m['Results'][0]['Metrics']['Top 1 Accuracy'] == top1[name]
        assert m['Weights'].endswith('OpenGVLab/Vision-RWKV/resolve/main/' + weights[name])
        assert m['Converted From']['Weights'] == m['Weights']


# --------------------------------------------------------------------------------------
# learning-rate schedule vs. the original (mmcv 1.x cosine by iteration from 0 x linear
# warm-up factor; min_lr_ratio 1e-2, warmup_ratio 1e-3)

def _mmcv_lr(it, base, total, warm_iters, min_ratio=1e-2, warm_ratio=1e-3):
    """T/S/B original: mmcv 1.x cosine over all iterations x linear warm-up factor."""
    target = base * min_ratio
    lr = target + 0.5 * (base - target) * (1 + math.cos(math.pi * it / total))
    if it < warm_iters:
        lr *= 1 - (1 - it / warm_iters) * (1 - warm_ratio)
    return lr


def _timm_lr(it, base, total, warm_iters, min_ratio=1e-2, warm_ratio=1e-3):
    """L original: timm CosineLRScheduler(t_initial=total, warmup_t, warmup_lr_init)."""
    if it < warm_iters:
        warm_lr = base * warm_ratio
        return warm_lr + it * (base - warm_lr) / warm_iters
    target = base * min_ratio
    return target + 0.5 * (base - target) * (1 + math.cos(math.pi * it / total))


@pytest.mark.parametrize('name,ref,max_warm', [(TINY, _mmcv_lr, 2e-3),
                                               (LARGE, _timm_lr, 0.03)])
def test_lr_schedule_matches_original(name, ref, max_warm):
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = load(name)
    epoch_len = 40
    base = cfg.optim_wrapper.optimizer.lr
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    wrapper = OptimWrapper(opt)
    scheds = []
    for s in cfg.param_scheduler:
        s = dict(s)
        cls = PARAM_SCHEDULERS.get(s.pop('type'))
        s.pop('convert_to_iter_based')
        scheds.append(cls.build_iter_from_epoch(wrapper, epoch_length=epoch_len, **s))
    total = cfg.train_cfg.max_epochs * epoch_len
    warm_iters = cfg.param_scheduler[0].end * epoch_len
    err_warm = err_after = 0.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for it in range(total):
            lr = opt.param_groups[0]['lr']
            want = ref(it, base, total, warm_iters)
            rel = abs(lr - want) / want
            if it < warm_iters:
                err_warm = max(err_warm, rel)
            else:
                err_after = max(err_after, rel)
            for s in scheds:
                s.step()
    # T/S/B: < 0.05 % with ImageNet's 1251 iterations per epoch; L: the documented
    # multiplicative-vs-additive warm-up difference (2.4 % at its end)
    assert err_warm < max_warm
    assert err_after < 5e-4
    # the floor is the original min_lr
    assert math.isclose(opt.param_groups[0]['lr'], base * 1e-2, rel_tol=1e-3)


# --------------------------------------------------------------------------------------
# models

@needs_backbone
@pytest.mark.parametrize('name', [TINY, SMALL])
def test_build_and_forward(name):
    cfg = load(name)
    model = build_model(cfg)
    if name == TINY:  # (initialising S costs seconds of CPU on its own)
        import logging
        from mmengine.logging import MMLogger
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)  # mmengine logs every parameter's init
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
        # init_cfg: every Linear (head included) trunc-normal with zero bias
        assert torch.all(model.head.fc.bias == 0)
        assert 0.01 < model.head.fc.weight.std().item() < 0.03
    model.eval()
    from mmvrwkv.models.backbones import VRWKV
    assert isinstance(model.backbone, VRWKV)
    assert model.backbone.embed_dims == cfg.model.head.in_channels == EXPECTED[name]['C']
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()


@needs_backbone
@pytest.mark.parametrize('name', [BASE, LARGE])
def test_build_big_on_meta(name):
    cfg = load(name)
    model = build_model(cfg, meta=True)
    exp = EXPECTED[name]
    assert model.backbone.embed_dims == exp['C'] == cfg.model.head.in_channels
    assert len(model.backbone.layers) == exp['depth']
    sd = model.state_dict()
    grid = (exp['img_size'] // 16) ** 2
    assert tuple(sd['backbone.pos_embed'].shape) == (1, grid, exp['C'])
    assert ('backbone.layers.0.gamma1' in sd) == (exp['init_values'] is not None)
    assert ('backbone.layers.0.att.key_norm.weight' in sd) == exp['key_norm']
    if name == LARGE:
        assert tuple(sd['head.layers.pre_logits.weight'].shape) == (3072, 1024)
        assert tuple(sd['head.layers.head.weight'].shape) == (1000, 3072)
        n = sum(v.numel() for v in sd.values())
        assert abs(n / 1e6 - 334.9) < 0.05  # paper: 334.9 M


@needs_backbone
def test_train_step_with_batch_augments():
    """S: Mixup/CutMix soft targets through LabelSmoothLoss, loss and grads finite."""
    cfg = load(SMALL)
    model = build_model(cfg)
    model.train()
    from mmpretrain.structures import DataSample
    # 64 px (4 x 4 patches; the pos-embed is resized) keeps the backward pass cheap
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                        for _ in range(2)],
                data_samples=[DataSample().set_gt_label(i) for i in (1, 7)])
    batch = model.data_preprocessor(data, training=True)
    assert batch['data_samples'][0].gt_score.shape == (1000,)  # mixed one-hot
    losses = model(**batch, mode='loss')
    losses['loss'].backward()
    assert torch.isfinite(losses['loss'])


def test_large_batch_augment_probability():
    """L: Mixup on ~half of the batches, nothing on the others (CutMix never)."""
    import mmpretrain.models  # noqa: F401
    from mmpretrain.models.utils.batch_augments import RandomBatchAugment
    cfg = load(LARGE)
    aug = RandomBatchAugment(**cfg.model.train_cfg.to_dict())
    assert [type(a).__name__ if a is not None else None for a in aug.augments] == [
        'Mixup', None]
    assert aug.probs == [0.5, 0.5]


@needs_backbone
@pytest.mark.parametrize('name', [SMALL, LARGE])
def test_weight_decay_groups(name):
    """T/S/B: no decay only for LayerNorm params and biases; L: no decay for 1-D params
    except spatial_decay / spatial_first."""
    from mmengine.optim import build_optim_wrapper
    cfg = load(name)
    small_cfg = load(SMALL)
    # a small model (with gammas) is enough to check the rules of either config
    model = build_model(small_cfg)
    ow_cfg = cfg.optim_wrapper.copy()
    ow_cfg['type'] = 'OptimWrapper'  # AmpOptimWrapper needs a GPU
    ow_cfg.pop('dtype', None)
    ow_cfg.pop('loss_scale', None)
    init_default_scope('mmpretrain')
    wrapper = build_optim_wrapper(model, ow_cfg)
    wd_of = {}
    ids = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            wd_of[ids[id(p)]] = group['weight_decay']
    assert len(wd_of) == len(ids)
    big = name == LARGE
    expect = {
        'backbone.layers.0.att.spatial_decay': 0.05,
        'backbone.layers.0.att.spatial_first': 0.05,
        'backbone.layers.0.att.spatial_mix_k': 0.05,
        'backbone.layers.0.ffn.spatial_mix_r': 0.05,
        'backbone.layers.0.att.key.weight': 0.05,
        'backbone.pos_embed': 0.05,
        'backbone.patch_embed.projection.weight': 0.05,
        'backbone.patch_embed.projection.bias': 0.,
        'backbone.layers.0.ln0.weight': 0.,
        'backbone.layers.1.ln2.bias': 0.,
        'backbone.ln1.weight': 0.,
        'head.fc.weight': 0.05,
        'head.fc.bias': 0.,
        'backbone.layers.0.gamma1': 0. if big else 0.05,
        'backbone.layers.5.gamma2': 0. if big else 0.05,
    }
    for key, wd in expect.items():
        assert wd_of[key] == pytest.approx(wd), key
