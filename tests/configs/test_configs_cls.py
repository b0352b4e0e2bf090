"""The ImageNet classification configs in configs/vrwkv and configs/vrwkv6: they parse, carry
the values of the official recipes, build the models of the official architectures (and the
paper's parameter counts), and make working mmpretrain classifiers. The VRWKV6 configs are
the VRWKV recipe of the same size with the v6 backbone, so the recipe checks run on both
families.

Values: OpenGVLab/Vision-RWKV, classification/configs/vrwkv/vrwkv_{tiny,small,base}_*.py and
classification/configs/vrwkv6/ (mmcls 0.25, T/S/B), classification_internimage/configs/
vrwkv_l_22kto1k_384.yaml with its config.py defaults (L); top-1 and parameters: the paper
(Duan et al., ICLR 2025) / the repository's README.

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
import yaml  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from tool_helpers import ROOT  # noqa: E402
CFG_ROOT = osp.join(ROOT, 'configs')
FOLDERS = ('vrwkv', 'vrwkv6')

TINY = 'vrwkv/vrwkv-tiny_8xb128_in1k.py'
SMALL = 'vrwkv/vrwkv-small_8xb128_in1k.py'
BASE = 'vrwkv/vrwkv-base_16xb64_in1k.py'
LARGE = 'vrwkv/vrwkv-large_in21k-pre_8xb128_in1k-384px.py'
V6_TINY = 'vrwkv6/vrwkv6-tiny_8xb128_in1k.py'
V6_SMALL = 'vrwkv6/vrwkv6-small_8xb128_in1k.py'
V6_BASE = 'vrwkv6/vrwkv6-base_16xb64_in1k.py'

# Per config: values of the official recipes, the architecture the model must have, the
# paper's parameter count (millions, with the head) and top-1, the released weights.
EXPECTED = {
    TINY: dict(arch='tiny', C=192, depth=12, gpus=8, batch=128, lr=1e-3, min_lr=1e-5,
               wd=0.05, epochs=300, warmup=20, drop_path=0., init_values=None,
               post_norm=False, key_norm=False, img_size=224, clip=5.0, augments=[],
               params=6.2, top1=75.1, weights='vrwkv_t_in1k_224.pth'),
    SMALL: dict(arch='small', C=384, depth=12, gpus=8, batch=128, lr=1e-3, min_lr=1e-5,
                wd=0.05, epochs=300, warmup=20, drop_path=0.3, init_values=1.0,
                post_norm=True, key_norm=False, img_size=224, clip=5.0,
                augments=[('Mixup', 0.8), ('CutMix', 1.0)],
                params=23.8, top1=80.1, weights='vrwkv_s_in1k_224.pth'),
    BASE: dict(arch='base', C=768, depth=12, gpus=16, batch=64, lr=1e-3, min_lr=1e-5,
               wd=0.05, epochs=300, warmup=20, drop_path=0.5, init_values=1e-5,
               post_norm=True, key_norm=False, img_size=224, clip=5.0,
               augments=[('Mixup', 0.8), ('CutMix', 1.0)],
               params=93.7, top1=82.0, weights='vrwkv_b_in1k_224.pth'),
    LARGE: dict(arch='large', C=1024, depth=24, gpus=8, batch=128, lr=1e-5, min_lr=1e-7,
                wd=0.05, epochs=20, warmup=2, drop_path=0.1, init_values=1e-5,
                post_norm=True, key_norm=True, img_size=192, clip=1.0,
                augments=[('Mixup', 0.8)],
                params=334.9, top1=86.0, weights='vrwkv_l_22kto1k_384.pth'),
}
# VRWKV6: the v1 recipe of the same size (data, augments, AdamW, schedule, batch, head, init)
# with the v6 backbone and its architecture.
for _v6, _v1, _v6_values in (
        (V6_TINY, TINY, dict(heads=3, params=7.6, top1=76.6, weights='vrwkv6_t_in1k_224.pth')),
        (V6_SMALL, SMALL, dict(heads=6, init_values=1e-5, params=27.7, top1=81.1,
                               weights='vrwkv6_s_in1k_224.pth')),
        (V6_BASE, BASE, dict(heads=12, params=104.9, top1=82.6,
                             weights='vrwkv6_b_in1k_224.pth'))):
    EXPECTED[_v6] = dict(EXPECTED[_v1], v1=_v1, **_v6_values)
BACKBONE_TYPES = {'vrwkv': 'mmvrwkv.VRWKV', 'vrwkv6': 'mmvrwkv.VRWKV6'}

_cfg_cache = {}


def load(name):
    if name not in _cfg_cache:
        _cfg_cache[name] = Config.fromfile(osp.join(CFG_ROOT, name))
    return _cfg_cache[name]


def fresh(name):
    """A config of its own (the cached ones are shared): for tests that change it."""
    return Config.fromfile(osp.join(CFG_ROOT, name))


def family(name):
    return name.split('/')[0]


def have_backbone():
    try:
        import mmvrwkv.models  # noqa: F401
        from mmvrwkv.models.backbones import VRWKV  # noqa: F401
    except ImportError:
        return False
    return True


needs_backbone = pytest.mark.skipif(not have_backbone(), reason='mmvrwkv.models not there')


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


# --------------------------------------------------------------------------------------
# parsing and values

@pytest.mark.parametrize('folder', FOLDERS)
def test_all_configs_listed(folder):
    configs = glob.glob(osp.join(CFG_ROOT, folder, '*.py'))
    assert sorted(f'{folder}/{osp.basename(c)}' for c in configs) == \
        sorted(n for n in EXPECTED if family(n) == folder)


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
    assert bb.type == BACKBONE_TYPES[family(name)]
    assert bb.arch == exp['arch']
    assert bb.drop_path_rate == exp['drop_path']
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

    if family(name) == 'vrwkv6':
        assert bb.shift_mode == 'q_shift_multihead' and not bb.with_cls_token
        assert 'channel_gamma' not in bb  # v1 argument, not part of the v6 backbone
        # everything but the backbone is the v1 recipe of the same size
        v1 = load(exp['v1'])
        for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'train_dataloader',
                    'val_dataloader', 'data_preprocessor', 'default_scope'):
            assert cfg.get(key) == v1.get(key), key
        assert cfg.model.get('train_cfg') == v1.model.get('train_cfg')
        assert cfg.model.neck == v1.model.neck and cfg.model.init_cfg == v1.model.init_cfg


@needs_backbone
@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_built_architecture_and_param_count(name):
    """The arch named in the config brings the official architecture (the config states no
    arch values of its own); the parameter count is the paper's and the metafile's."""
    exp = EXPECTED[name]
    model = build_model(load(name), meta=True)
    bb = model.backbone
    from mmvrwkv.models import VRWKV, VRWKV6
    assert type(bb) is {'vrwkv': VRWKV, 'vrwkv6': VRWKV6}[family(name)]
    assert (bb.embed_dims, bb.depth, len(bb.layers)) == (exp['C'], exp['depth'], exp['depth'])
    assert (bb.init_values, bb.post_norm, bb.key_norm) == (
        exp['init_values'], exp['post_norm'], exp['key_norm'])
    assert bb.img_size == (exp['img_size'], ) * 2 and bb.patch_size == 16
    assert bb.out_indices == (exp['depth'] - 1, ) and bb.final_norm
    assert getattr(bb, 'num_heads', None) == exp.get('heads')
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / 1e6 - exp['params']) < 0.1, n
    with open(osp.join(CFG_ROOT, family(name), 'metafile.yml')) as f:
        meta = {m['Name']: m for m in yaml.safe_load(f)['Models']}
    assert meta[osp.splitext(osp.basename(name))[0]]['Metadata']['Parameters'] == n


@pytest.mark.parametrize('name', [TINY, SMALL, BASE, V6_TINY, V6_SMALL, V6_BASE])
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


@pytest.mark.parametrize('folder', FOLDERS)
def test_metafile(folder):
    with open(osp.join(CFG_ROOT, folder, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    models = {m['Name']: m for m in meta['Models']}
    names = [n for n in EXPECTED if family(n) == folder]
    assert set(models) == {osp.splitext(osp.basename(n))[0] for n in names}
    for name in names:
        m = models[osp.splitext(osp.basename(name))[0]]
        assert m['In Collection'] == meta['Collections'][0]['Name']
        assert m['Config'] == f'configs/{name}' and osp.isfile(osp.join(ROOT, m['Config']))
        assert m['Results'][0]['Metrics']['Top 1 Accuracy'] == EXPECTED[name]['top1']
        assert m['Weights'].endswith('OpenGVLab/Vision-RWKV/resolve/main/' +
                                     EXPECTED[name]['weights'])
        assert m['Converted From']['Weights'] == m['Weights']
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        assert f'configs/{folder}/metafile.yml' in yaml.safe_load(f)['Import']


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


#: Per config: backbone overrides that keep a training step cheap, a parameter that must get
#: a gradient.
TRAIN_STEP = {
    SMALL: dict(backbone=dict(), grad='backbone.layers.1.att.spatial_decay'),
    V6_TINY: dict(backbone=dict(depth=2, wkv_backend='torch'),
                  grad='backbone.layers.1.att.time_decay_w2'),
}


@needs_backbone
@pytest.mark.parametrize('name', sorted(TRAIN_STEP))
def test_train_step(name):
    """S: Mixup/CutMix soft targets through LabelSmoothLoss; V6-T (2 blocks): the v6
    parameters get gradients; loss and grads finite."""
    cfg = fresh(name)
    cfg.model.backbone.update(TRAIN_STEP[name]['backbone'])
    model = build_model(cfg)
    model.train()
    from mmpretrain.structures import DataSample
    # 64 px (4 x 4 patches; the pos-embed is resized) keeps the backward pass cheap
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                        for _ in range(2)],
                data_samples=[DataSample().set_gt_label(i) for i in (1, 7)])
    batch = model.data_preprocessor(data, training=True)
    if EXPECTED[name]['augments']:
        assert batch['data_samples'][0].gt_score.shape == (1000,)  # mixed one-hot
    losses = model(**batch, mode='loss')
    losses['loss'].backward()
    assert torch.isfinite(losses['loss'])
    assert model.get_parameter(TRAIN_STEP[name]['grad']).grad is not None


def test_large_batch_augment_probability():
    """L: Mixup on ~half of the batches, nothing on the others (CutMix never)."""
    import mmpretrain.models  # noqa: F401
    from mmpretrain.models.utils.batch_augments import RandomBatchAugment
    cfg = load(LARGE)
    aug = RandomBatchAugment(**cfg.model.train_cfg.to_dict())
    assert [type(a).__name__ if a is not None else None for a in aug.augments] == [
        'Mixup', None]
    assert aug.probs == [0.5, 0.5]


#: The weight decay each config's optimizer gives (a model of the family with gammas):
#: T/S/B no decay only for norms (LayerNorm, the v6 GroupNorm ln_x) and biases, the v6
#: time_* / LoRA parameters decayed as in the original; L no decay for 1-D params except
#: spatial_decay / spatial_first.
_V1_DECAY = {
    'backbone.layers.0.att.spatial_decay': (0.05, 0.05),
    'backbone.layers.0.att.spatial_first': (0.05, 0.05),
    'backbone.layers.0.att.spatial_mix_k': (0.05, 0.05),
    'backbone.layers.0.ffn.spatial_mix_r': (0.05, 0.05),
    'backbone.layers.0.att.key.weight': (0.05, 0.05),
    'backbone.pos_embed': (0.05, 0.05),
    'backbone.patch_embed.projection.weight': (0.05, 0.05),
    'backbone.patch_embed.projection.bias': (0., 0.),
    'backbone.layers.0.ln0.weight': (0., 0.),
    'backbone.layers.1.ln2.bias': (0., 0.),
    'backbone.ln1.weight': (0., 0.),
    'head.fc.weight': (0.05, 0.05),
    'head.fc.bias': (0., 0.),
    'backbone.layers.0.gamma1': (0.05, 0.),
    'backbone.layers.5.gamma2': (0.05, 0.),
}
WEIGHT_DECAY = {
    SMALL: dict(model=SMALL, expect={k: v[0] for k, v in _V1_DECAY.items()}),
    LARGE: dict(model=SMALL, expect={k: v[1] for k, v in _V1_DECAY.items()}),
    V6_SMALL: dict(model=V6_SMALL, depth=1, expect={
        **{'backbone.layers.0.att.' + n: 0.05
           for n in ('time_maa_x', 'time_maa_w1', 'time_maa_w2', 'time_decay',
                     'time_decay_w1', 'time_faaaa', 'gate.weight')},
        'backbone.layers.0.att.ln_x.weight': 0., 'backbone.layers.0.att.ln_x.bias': 0.,
        'backbone.layers.0.gamma1': 0.05, 'backbone.layers.0.ln1.weight': 0.,
        'head.fc.bias': 0.}),
}


@needs_backbone
@pytest.mark.parametrize('name', sorted(WEIGHT_DECAY))
def test_weight_decay_groups(name):
    """The weight-decay rules of each config's optimizer, parameter by parameter."""
    from mmengine.optim import build_optim_wrapper
    case = WEIGHT_DECAY[name]
    cfg = load(name)
    model_cfg = fresh(case['model'])
    if 'depth' in case:
        model_cfg.model.backbone.depth = case['depth']
    # a small model (with gammas) is enough to check the rules of either config
    model = build_model(model_cfg)
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
    for key, wd in case['expect'].items():
        assert wd_of[key] == pytest.approx(wd), key
