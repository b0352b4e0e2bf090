"""configs/_base_/models: the VRWKV classifier, Mask R-CNN and UperNet adapter bases (each at
arch tiny; the S/B/L recipes set another arch and what reads the backbone).

Each base is loaded with ``Config.fromfile`` and its model built in the task's default scope:
at full size on the meta device (parameter counts of README "Models and complexity" /
"Dense prediction (adapter)"), and with fewer blocks (``SHRINK``) for a real forward pass on
small random images (loss and predict). The README's example of a user config (base model +
upstream dataset, schedule, runtime) is read from README.md and loaded. Our recipes inherit
the bases: the T classifier is the base as it is, the tiny det/seg adapters are the bases'.

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
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.utils import import_modules_from_strings  # noqa: E402

from tool_helpers import ROOT  # noqa: E402

BASES = osp.join(ROOT, 'configs', '_base_', 'models')
CLS = osp.join(BASES, 'vrwkv-p16_classifier.py')
DET = osp.join(BASES, 'mask-rcnn_vrwkv-adapter_fpn.py')
SEG = osp.join(BASES, 'upernet_vrwkv-adapter.py')
#: Model overrides of the models that run a forward pass: fewer VRWKV blocks (adapter: one
#: block per interaction, the adapter's default split of 4 blocks); for mmseg the training
#: crop size, which mmseg's model base leaves to the dataset config.
ADAPTER_SHRINK = dict(depth=4)
SHRINK = {'mmpretrain': dict(backbone=dict(depth=2)), 'mmdet': dict(backbone=ADAPTER_SHRINK),
          'mmseg': dict(backbone=ADAPTER_SHRINK, data_preprocessor=dict(size=(64, 64)))}


def build(path, scope, meta=False):
    cfg = Config.fromfile(path)
    assert 'default_scope' not in cfg  # a model base leaves the scope to the runtime base
    assert cfg.custom_imports == dict(imports=['mmvrwkv'], allow_failed_imports=False)
    import_modules_from_strings(**cfg.custom_imports)
    importlib.import_module(f'{scope}.models')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = cfg.model.copy()
    if not meta:
        model_cfg.merge(SHRINK[scope])
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(scope):
        if meta:
            with torch.device('meta'):
                return cfg, registry.build(model_cfg)
        model = revert_sync_batchnorm(registry.build(model_cfg))  # as the Runner on 1 device
        model.init_weights()
        return cfg, model


def millions(module):
    return sum(p.numel() for p in module.parameters()) / 1e6


def images(shape, n=2):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for _ in range(n)]


def forward(model, scope, data, mode):
    with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
        data = model.data_preprocessor(data, training=mode == 'loss')
        return model(**data, mode=mode)


def finite_losses(losses):
    values = [v for k, v in losses.items() if 'loss' in k]
    assert values and all(torch.isfinite(torch.as_tensor(v).sum()) for v in values), losses


def test_classifier_base(one_thread):
    cfg, model = build(CLS, 'mmpretrain', meta=True)
    assert cfg.model.backbone.type == 'mmvrwkv.VRWKV' and cfg.model.backbone.arch == 'tiny'
    assert cfg.model.neck.type == 'GlobalAveragePooling'
    assert (cfg.model.head.type, cfg.model.head.in_channels) == ('LinearClsHead', 192)
    assert abs(millions(model) - 6.16) < 0.005  # README "Models and complexity"
    _, model = build(CLS, 'mmpretrain')
    from mmpretrain.structures import DataSample
    data = dict(inputs=images((3, 64, 64)),
                data_samples=[DataSample().set_gt_label(i) for i in (3, 7)])
    finite_losses(forward(model, 'mmpretrain', data, 'loss'))
    preds = forward(model, 'mmpretrain', data, 'predict')
    assert len(preds) == 2 and preds[0].pred_score.shape == (1000, )
    assert torch.allclose(preds[0].pred_score.sum(), torch.tensor(1.0))


def test_mask_rcnn_base(one_thread):
    cfg, model = build(DET, 'mmdet', meta=True)
    assert cfg.model.type == 'MaskRCNN' and cfg.model.backbone.type == 'mmvrwkv.VRWKVAdapter'
    assert cfg.model.backbone.rwkv_feature_fusion == 'final'
    assert 'init_cfg' not in cfg.model.backbone  # no ResNet (or any) checkpoint
    assert cfg.model.neck.in_channels == [192] * 4
    assert cfg.model.data_preprocessor.pad_size_divisor == 32
    assert abs(millions(model.backbone) - 8.40) < 0.005  # README "Dense prediction"
    _, model = build(DET, 'mmdet')
    from mmdet.testing import demo_mm_inputs
    data = demo_mm_inputs(batch_size=2, image_shapes=(3, 64, 96), num_items=[2, 3],
                          num_classes=80, with_mask=True)
    data['inputs'] = images((3, 64, 96))
    losses = forward(model, 'mmdet', data, 'loss')
    finite_losses(losses)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    (pred, ) = forward(model, 'mmdet', dict(inputs=images((3, 50, 70), n=1),
                                            data_samples=demo_mm_inputs(
                                                1, (3, 50, 70))['data_samples']), 'predict')
    assert pred.batch_input_shape == (64, 96)  # padded to multiples of 32 for the adapter


def test_upernet_base(one_thread):
    cfg, model = build(SEG, 'mmseg', meta=True)
    assert cfg.model.type == 'EncoderDecoder' and cfg.model.pretrained is None
    assert cfg.model.backbone.type == 'mmvrwkv.VRWKVAdapter'
    assert cfg.model.backbone.rwkv_feature_fusion == 'per_stage'
    assert cfg.model.decode_head.in_channels == [192] * 4
    assert (cfg.model.auxiliary_head.in_channels, cfg.model.auxiliary_head.in_index) == (192, 2)
    assert abs(millions(model.backbone) - 8.40) < 0.005
    _, model = build(SEG, 'mmseg')
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(1)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, 64, 64), generator=g))
        samples.append(s)
    data = dict(inputs=images((3, 64, 64)), data_samples=samples)
    losses = forward(model, 'mmseg', data, 'loss')
    finite_losses(losses)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    preds = forward(model, 'mmseg', data, 'predict')
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 64)
    assert preds[0].seg_logits.data.shape == (19, 64, 64)  # mmseg's head, 19 classes


def test_readme_user_config_from_bases(tmp_path):
    """README: a config of one's own = our base model (by path) + upstream data/schedule."""
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    section = re.search(r'^## Using VRWKV in your own config\n(.*?)(?=^## )', text,
                        re.S | re.M).group(1)
    (code, ) = [c for c in re.findall(r'```python\n(.*?)```', section, re.S)
                if c.startswith('_base_ = [\n')]
    assert '/path/to/mmvrwkv/configs/_base_/models/' in code
    path = tmp_path / 'my_config.py'
    path.write_text(code.replace('/path/to/mmvrwkv', ROOT))
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmdet' and cfg.model.backbone.type == 'mmvrwkv.VRWKVAdapter'
    assert cfg.train_cfg.max_epochs == 12 and cfg.train_dataloader.dataset.type == 'CocoDataset'


def test_recipes_inherit_the_bases():
    base = Config.fromfile(CLS).model.to_dict()
    tiny = Config.fromfile(osp.join(ROOT, 'configs', 'vrwkv', 'vrwkv-tiny_8xb128_in1k.py'))
    assert tiny.model.to_dict() == base  # VRWKV-T: the base classifier as it is
    for path, recipe in ((DET, 'mask_rcnn/mask-rcnn_vrwkv-tiny-adapter_fpn_1x_coco.py'),
                         (SEG, 'upernet/upernet_vrwkv-tiny-adapter_8xb2-160k_ade20k-512x512.py')):
        backbone = Config.fromfile(osp.join(ROOT, 'configs', recipe)).model.backbone.to_dict()
        backbone.pop('init_cfg', None)  # the recipe's pretrained checkpoint (det)
        assert backbone == Config.fromfile(path).model.backbone.to_dict(), recipe


@pytest.mark.parametrize('former, base', [('vrwkv-tiny-p16.py', CLS),
                                          ('mask-rcnn_vrwkv-tiny-adapter_fpn.py', DET),
                                          ('upernet_vrwkv-tiny-adapter.py', SEG)])
def test_former_base_names_load_the_same_config(former, base):
    """The bases' names before the second shape pass still load, to the same config."""
    old = Config.fromfile(osp.join(BASES, former)).to_dict()
    assert old == Config.fromfile(base).to_dict()
