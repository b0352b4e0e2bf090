"""README "Using VRWKV in your own config": the three swap-in recipes, read from README.md.

Each ```python block of that section whose first line is ``_base_ = 'mmpretrain::...'``,
``'mmdet::...'`` or ``'mmseg::...'`` is written to a file exactly as it stands and loaded with
``Config.fromfile`` (so the documented text, not a copy of it, is what is tested). On top of
it the test adds only what makes a step cheap on 2 CPU cores, listed in ``SHRINK`` (fewer
blocks) and ``IMAGE`` (small random images), and reverts SyncBN to BN as mmengine's Runner
does on one device. Then it builds the model in the config's own default scope, runs
``init_weights`` (a leftover ResNet checkpoint, e.g. mmseg's model-level ``pretrained``,
would be fetched here and fail), builds the upstream recipe's optimizer and runs one
``train_step`` on random data: the losses must be finite and the backbone must change. The
dense recipes also predict one image whose sides are not multiples of 32 (the padding the
README explains).

Needs mmpretrain, mmdet and mmseg (skipped without them).
"""
import importlib
import os.path as osp
import re

import pytest
import torch

pytest.importorskip('mmpretrain')
pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
from mmengine.config import Config  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.utils import import_modules_from_strings  # noqa: E402

from tool_helpers import ROOT  # noqa: E402

SECTION = 'Using VRWKV in your own config'
#: Upstream config each recipe must start from (the issue names these three).
UPSTREAM = {
    'mmpretrain': 'mmpretrain::deit/deit-tiny_4xb256_in1k.py',
    'mmdet': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'mmseg': 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
}
#: Added on top of the README's overrides: fewer VRWKV blocks (the adapter splits a depth
#: that is a multiple of 4 into four interactions by itself) and, for mmseg, training crops
#: of the random images' size instead of the 512 x 512 the batch would be padded to.
SHRINK = {
    'mmpretrain': {'model.backbone.depth': 2},
    'mmdet': {'model.backbone.depth': 4},
    'mmseg': {'model.backbone.depth': 4, 'model.data_preprocessor.size': (64, 64)},
}
#: Random training images (C, H, W) per task (mmseg: SHRINK's crop size), and the prediction
#: image of the dense tasks (sides not multiples of 32).
IMAGE = {'mmpretrain': (3, 32, 32), 'mmdet': (3, 64, 96), 'mmseg': (3, 64, 64)}
PREDICT_IMAGE = (3, 72, 104)


def readme_recipes():
    """{scope: code} of the section's swap-in blocks."""
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    match = re.search(rf'^## {re.escape(SECTION)}\n(.*?)(?=^## )', text, re.S | re.M)
    assert match, f'README.md has no "## {SECTION}" section'
    recipes = {}
    for code in re.findall(r'```python\n(.*?)```', match.group(1), re.S):
        first = code.split('\n', 1)[0]
        m = re.fullmatch(r"_base_ = '(\w+)::.*'", first)
        if m:
            assert m.group(1) not in recipes, f'two {m.group(1)} recipes in the section'
            recipes[m.group(1)] = code
    return recipes


RECIPES = readme_recipes()


def test_readme_has_the_three_recipes():
    assert set(RECIPES) == set(UPSTREAM)
    for scope, code in RECIPES.items():
        assert code.startswith(f"_base_ = '{UPSTREAM[scope]}'\n"), scope
        assert "custom_imports = dict(imports=['mmvrwkv']" in code, scope


def load_recipe(scope, tmp_path):
    path = tmp_path / f'swap_in_{scope}.py'
    path.write_text(RECIPES[scope])
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == scope  # unchanged by the recipe
    assert cfg.model.backbone.type.startswith('mmvrwkv.')
    cfg.merge_from_dict(SHRINK[scope])
    return cfg


def build_model(cfg):
    import_modules_from_strings(**cfg.custom_imports)
    scope = cfg.default_scope
    importlib.import_module(f'{scope}.models')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = cfg.model.copy()
    # as mmengine's Runner does: a top-level data_preprocessor (mmpretrain's) is the model's
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(scope):
        model = revert_sync_batchnorm(registry.build(model_cfg))
        model.init_weights()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return model, optim_wrapper


def random_batch(scope, shape, n=2):
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for _ in range(n)]
    if scope == 'mmpretrain':
        from mmpretrain.structures import DataSample
        samples = [DataSample().set_gt_label(i) for i in range(n)]
    elif scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        batch = demo_mm_inputs(batch_size=n, image_shapes=shape, num_items=[2] * n,
                               num_classes=80, with_mask=True)
        return dict(inputs=inputs, data_samples=batch['data_samples'])
    else:
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for _ in range(n):
            s = SegDataSample(metainfo=dict(img_shape=shape[1:], ori_shape=shape[1:]))
            s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, ) + shape[1:], generator=g))
            samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def one_train_step(cfg):
    scope = cfg.default_scope
    model, optim_wrapper = build_model(cfg)
    before = model.backbone.patch_embed.projection.weight.detach().clone()
    model.train()
    with DefaultScope.overwrite_default_scope(scope):
        log_vars = model.train_step(random_batch(scope, IMAGE[scope]), optim_wrapper)
    assert log_vars and all(torch.isfinite(torch.as_tensor(v)).all()
                            for v in log_vars.values()), log_vars
    assert not torch.equal(before, model.backbone.patch_embed.projection.weight)
    return model, log_vars


def predict(model, scope):
    model.eval()
    data = random_batch(scope, PREDICT_IMAGE, n=1)
    if scope == 'mmseg':
        data['data_samples'][0].set_metainfo(dict(img_shape=PREDICT_IMAGE[1:],
                                                  ori_shape=PREDICT_IMAGE[1:]))
    with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
        return model.val_step(data)[0]


def test_deit_tiny_with_vrwkv(tmp_path, one_thread):
    """mmpretrain deit-tiny + README overrides: VRWKV, GAP neck, ViT head on [B, C]."""
    cfg = load_recipe('mmpretrain', tmp_path)
    assert cfg.model.neck == dict(type='GlobalAveragePooling')
    assert cfg.model.head.type == 'VisionTransformerClsHead'  # DeiT's head, kept
    model, log_vars = one_train_step(cfg)
    assert type(model.backbone).__name__ == 'VRWKV' and len(model.backbone.layers) == 2
    assert set(log_vars) == {'loss'}


def test_mask_rcnn_r50_with_vrwkv_adapter(tmp_path, one_thread):
    """mmdet mask-rcnn_r50_fpn_1x_coco + README overrides: adapter -> FPN on [192] * 4."""
    cfg = load_recipe('mmdet', tmp_path)
    assert 'init_cfg' not in cfg.model.backbone  # the ResNet checkpoint went with _delete_
    model, log_vars = one_train_step(cfg)
    assert type(model.backbone).__name__ == 'VRWKVAdapter'
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(log_vars)
    pred = predict(model, 'mmdet')
    assert pred.batch_input_shape == (96, 128)  # padded to multiples of 32
    assert pred.pred_instances.masks.shape[-2:] == PREDICT_IMAGE[1:]


def test_upernet_r50_with_vrwkv_adapter(tmp_path, one_thread):
    """mmseg upernet_r50 160k ADE20K + README overrides: adapter -> UPerHead / FCNHead."""
    cfg = load_recipe('mmseg', tmp_path)
    assert cfg.model.pretrained is None and cfg.model.decode_head.num_classes == 150
    model, log_vars = one_train_step(cfg)
    assert type(model.backbone).__name__ == 'VRWKVAdapter'
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(log_vars)
    pred = predict(model, 'mmseg')  # whole-image test of a 72 x 104 image
    assert pred.pred_sem_seg.data.shape[-2:] == PREDICT_IMAGE[1:]
