"""The dense-prediction configs: configs/mask_rcnn (mmdet 3.x COCO Mask R-CNN 1x) and
configs/upernet (mmseg 1.x ADE20K UperNet 160k) for T/S/B/L, the VRWKV6-T Mask R-CNN config,
their metafiles, and the shapes demos in configs/demo.

* every config parses with its own default scope and builds its model on the meta device;
  the values are those of the official configs (OpenGVLab/Vision-RWKV,
  detection/configs/mask_rcnn/mask_rcnn_vrwkv_adapter_{size}_fpn_1x_coco.py and
  segmentation/configs/ade20k/upernet_vrwkv_adapter_{size}_512_160k_ade20k.py: lrs, weight
  decay, layer-decay rates, fusion variant, in_channels, schedule, AMP, inference); the
  architecture (widths, depths, norms, layer scale, deformable heads / ratio, interactions,
  num_layers of the layer decay) is checked on the built model, the configs name only the
  arch;
* backbone parameter counts match the paper (±0.1M; Duan et al., ICLR 2025, README tables);
* the VRWKV6-T config is the VRWKV-T recipe with the v6 backbone and takes the v6
  classification keys;
* the learning-rate curves equal the original mmcv 1.x ones;
* the pretrained classification checkpoint reaches the adapter through ``init_cfg``
  (Mask R-CNN) and the segmentor's ``pretrained`` (UperNet);
* the full-size test pipeline gives sides that are multiples of 32;
* config names are unique in the repo, metafiles carry the paper's numbers;
* each demo config (VRWKV and VRWKV6 Mask R-CNN, UperNet) runs one training step on
  generated data with finite losses.

Needs mmdet and mmseg (skipped without them).
"""
import glob
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.utils import import_modules_from_strings  # noqa: E402

from tool_helpers import ROOT  # noqa: E402
from mmvrwkv.datasets.shapes import generate  # noqa: E402
DET_DIR = osp.join(ROOT, 'configs', 'mask_rcnn')
SEG_DIR = osp.join(ROOT, 'configs', 'upernet')
DET_DEMO = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_vrwkv-tiny-adapter_fpn_shapes.py')
SEG_DEMO = osp.join(ROOT, 'configs', 'demo', 'upernet_vrwkv-tiny-adapter_shapes.py')
V6_COCO = osp.join(DET_DIR, 'mask-rcnn_vrwkv6-tiny-adapter_fpn_1x_coco.py')
V6_DEMO = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_vrwkv6-tiny-adapter_fpn_shapes.py')
SIZES = ('tiny', 'small', 'base', 'large')

# The official adapter architectures (det = seg) and the paper's backbone parameters and
# claims (box AP, mask AP, mIoU, det FLOPs, seg FLOPs).
ARCH = dict(
    tiny=dict(C=192, depth=12, dpr=0.1, init_values=1.0, post_norm=False, key_norm=False,
              heads=6, ratio=1.0, img_size=224, idx=[[0, 2], [3, 5], [6, 8], [9, 11]],
              ckpt='vrwkv_t_in1k_224.pth', params=8.4),
    small=dict(C=384, depth=12, dpr=0.2, init_values=1e-5, post_norm=True, key_norm=False,
               heads=6, ratio=1.0, img_size=224, idx=[[0, 2], [3, 5], [6, 8], [9, 11]],
               ckpt='vrwkv_s_in1k_224.pth', params=29.3),
    base=dict(C=768, depth=12, dpr=0.3, init_values=1e-5, post_norm=True, key_norm=False,
              heads=12, ratio=0.5, img_size=224, idx=[[0, 2], [3, 5], [6, 8], [9, 11]],
              ckpt='vrwkv_b_in1k_224.pth', params=106.6),
    large=dict(C=1024, depth=24, dpr=0.4, init_values=1e-5, post_norm=True, key_norm=True,
               heads=16, ratio=0.5, img_size=192,
               idx=[[0, 5], [6, 11], [12, 17], [18, 23]], ckpt='vrwkv_l_in22k_192.pth',
               params=351.9),
)
# The official recipes: Mask R-CNN (lr, weight decay, layer-decay rate, checkpoints kept)
# and UperNet (lr, layer-decay rate).
DET = dict(tiny=dict(lr=2e-4, wd=0.01, rate=0.85, keep=2),
           small=dict(lr=1e-4, wd=0.05, rate=0.85, keep=2),
           base=dict(lr=1e-4, wd=0.05, rate=0.85, keep=2),
           large=dict(lr=1e-4, wd=0.05, rate=0.85, keep=1))
SEG = dict(tiny=dict(lr=1.2e-4, rate=0.95), small=dict(lr=6e-5, rate=0.85),
           base=dict(lr=6e-5, rate=0.80), large=dict(lr=6e-5, rate=0.90))
CLAIMS = dict(tiny=(41.7, 38.0, 43.3, 67.9, 16.6), small=(44.8, 40.2, 47.2, 189.9, 46.3),
              base=(46.8, 41.7, 49.2, 599.0, 146.0), large=(50.6, 44.9, 53.5, 1730.6, 421.9))


def det_file(size):
    return osp.join(DET_DIR, f'mask-rcnn_vrwkv-{size}-adapter_fpn_1x_coco.py')


def seg_file(size):
    return osp.join(SEG_DIR, f'upernet_vrwkv-{size}-adapter_8xb2-160k_ade20k-512x512.py')


_cache = {}


def load(path):
    if path not in _cache:
        _cache[path] = Config.fromfile(path)
    return _cache[path]


def registry(scope):
    if scope == 'mmdet':
        import mmdet.models  # noqa: F401
        from mmdet.registry import MODELS
    else:
        import mmseg.models  # noqa: F401
        from mmseg.registry import MODELS
    return MODELS


def build(cfg, meta=True, **model_overrides):
    import_modules_from_strings(**cfg.custom_imports)
    model_cfg = cfg.model.copy()
    model_cfg.merge(model_overrides)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        if meta:
            with torch.device('meta'):
                return registry(cfg.default_scope).build(model_cfg)
        return registry(cfg.default_scope).build(model_cfg)


#: Backbone values a recipe states (the arch brings the rest); the v6 config adds its own.
RECIPE_KEYS = {'_delete_', 'type', 'arch', 'patch_size', 'drop_path_rate', 'with_cp',
               'conv_inplane', 'n_points', 'init_values_inject', 'cffn_ratio',
               'use_extra_extractor', 'add_rwkv_feature', 'rwkv_feature_fusion', 'norm_cfg',
               'init_cfg'}


def check_backbone(cfg, size, fusion):
    """The recipe values of the config's backbone; it restates none of the arch's."""
    a = ARCH[size]
    b = cfg.model.backbone
    assert b.type == 'mmvrwkv.VRWKVAdapter' and b.arch == size
    assert b.rwkv_feature_fusion == fusion
    assert b.norm_cfg.type == 'SyncBN'
    assert b.drop_path_rate == a['dpr'] and b.patch_size == 16
    assert b.with_cp is False and b.add_rwkv_feature and b.use_extra_extractor
    assert (b.n_points, b.conv_inplane, b.cffn_ratio, b.init_values_inject) == (4, 64, .25, 0.)
    assert set(b) <= RECIPE_KEYS, set(b) - RECIPE_KEYS


def check_built_backbone(model, size, fusion):
    """The architecture of the built backbone: the official one of ``size``."""
    a = ARCH[size]
    bb = model.backbone
    assert (bb.embed_dims, bb.num_layers, bb.rwkv_feature_fusion) == (a['C'], a['depth'], fusion)
    assert len(bb.interactions) == 4 and bb.deform_ratio == a['ratio']
    assert (bb.init_values, bb.post_norm, bb.key_norm) == \
        (a['init_values'], a['post_norm'], a['key_norm'])
    assert (bb.deform_num_heads, bb.deform_ratio, bb.img_size, bb.patch_size) == \
        (a['heads'], a['ratio'], (a['img_size'], ) * 2, 16)
    assert [list(p) for p in bb.interaction_indexes] == a['idx']
    assert bb.layers[-1].drop_path.drop_prob == pytest.approx(a['dpr'])  # the ramp's end
    n = sum(p.numel() for p in bb.parameters()) / 1e6
    assert abs(n - a['params']) <= 0.1, (size, n)


# ----------------------------------------------------------------------------- Mask R-CNN
@pytest.mark.parametrize('size', SIZES)
def test_mask_rcnn_config(size):
    cfg = load(det_file(size))
    a, d = ARCH[size], DET[size]
    assert cfg.default_scope == 'mmdet' and cfg.model.type == 'MaskRCNN'
    assert cfg.custom_imports == dict(imports=['mmvrwkv'], allow_failed_imports=False)
    check_backbone(cfg, size, 'final')
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint='pretrained/' + a['ckpt'], prefix='backbone.')
    assert cfg.model.neck.type == 'FPN' and cfg.model.neck.in_channels == [a['C']] * 4
    assert (cfg.model.neck.out_channels, cfg.model.neck.num_outs) == (256, 5)
    assert cfg.model.data_preprocessor.pad_size_divisor == 32
    ow = cfg.optim_wrapper
    assert ow.type == 'OptimWrapper' and ow.get('clip_grad') is None
    assert ow.constructor == 'mmvrwkv.LayerDecayOptimWrapperConstructor'
    assert ow.optimizer.type == 'AdamW' and tuple(ow.optimizer.betas) == (0.9, 0.999)
    assert (ow.optimizer.lr, ow.optimizer.weight_decay) == (d['lr'], d['wd'])
    # num_layers of the layer decay: the backbone's depth (check_built_backbone), read by the
    # constructor from the model
    assert ow.paramwise_cfg == dict(layer_decay_rate=d['rate'])
    assert cfg.train_cfg.max_epochs == 12 and cfg.train_cfg.val_interval == 1
    warm, step = cfg.param_scheduler
    assert (warm.type, warm.start_factor, warm.by_epoch, warm.begin, warm.end) == \
        ('LinearLR', 0.001, False, 0, 501)
    assert (step.type, step.by_epoch, list(step.milestones), step.gamma) == \
        ('MultiStepLR', True, [8, 11], 0.1)
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    ck = cfg.default_hooks.checkpoint
    assert (ck.interval, ck.max_keep_ckpts, ck.save_last) == (1, d['keep'], True)
    assert cfg.val_evaluator.metric == ['bbox', 'segm']
    model = build(cfg)
    check_built_backbone(model, size, 'final')
    assert model.roi_head.bbox_head.num_classes == 80


# ----------------------------------------------------------------------------- UperNet
@pytest.mark.parametrize('size', SIZES)
def test_upernet_config(size):
    cfg = load(seg_file(size))
    a, s = ARCH[size], SEG[size]
    assert cfg.default_scope == 'mmseg' and cfg.model.type == 'EncoderDecoder'
    assert cfg.custom_imports == dict(imports=['mmvrwkv'], allow_failed_imports=False)
    check_backbone(cfg, size, 'per_stage')
    assert cfg.model.pretrained == 'pretrained/' + a['ckpt']
    assert cfg.model.backbone.get('pretrained') is None
    dh, ah = cfg.model.decode_head, cfg.model.auxiliary_head
    assert (dh.type, dh.in_channels, list(dh.in_index), dh.channels, dh.num_classes) == \
        ('UPerHead', [a['C']] * 4, [0, 1, 2, 3], 512, 150)
    assert (ah.type, ah.in_channels, ah.in_index, ah.channels, ah.num_classes) == \
        ('FCNHead', a['C'], 2, 256, 150)
    assert ah.loss_decode.loss_weight == 0.4 and dh.norm_cfg.type == 'SyncBN'
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    assert cfg.model.data_preprocessor.size == (512, 512)
    ow = cfg.optim_wrapper
    assert ow.type == 'AmpOptimWrapper' and ow.loss_scale == dict(init_scale=512)
    assert ow.constructor == 'mmvrwkv.LayerDecayOptimWrapperConstructor'
    assert (ow.optimizer.type, ow.optimizer.lr, ow.optimizer.weight_decay) == \
        ('AdamW', s['lr'], 0.01)
    assert ow.paramwise_cfg == dict(layer_decay_rate=s['rate'])  # num_layers: the model's
    assert ow.get('clip_grad') is None
    assert (cfg.train_cfg.type, cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == \
        ('IterBasedTrainLoop', 160000, 16000)
    ck = cfg.default_hooks.checkpoint
    assert (ck.by_epoch, ck.interval, ck.save_best) == (False, 16000, 'mIoU')
    assert cfg.train_dataloader.batch_size == 2
    assert [t.type for t in cfg.test_dataloader.dataset.pipeline][:3] == \
        ['LoadImageFromFile', 'Resize', 'ResizeToMultiple']
    model = build(cfg)
    check_built_backbone(model, size, 'per_stage')
    # EncoderDecoder hands `pretrained` to the adapter, which turns it into its init_cfg
    assert model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint='pretrained/' + a['ckpt'], prefix='backbone.')


# ----------------------------------------------------------------------------- VRWKV6
def test_v6_coco_config_is_the_v1_recipe_with_the_v6_backbone():
    v6, v1 = load(V6_COCO), load(det_file('tiny'))
    b6, b1 = v6.model.backbone, v1.model.backbone
    assert b6.type == 'mmvrwkv.VRWKV6Adapter'
    assert b6.shift_mode == 'q_shift_multihead'
    assert b6.init_cfg.checkpoint == 'pretrained/vrwkv6_t_in1k_224.pth'
    changed = {'type', 'shift_mode', 'init_cfg'}
    assert {k: v for k, v in b6.items() if k not in changed} == \
        {k: v for k, v in b1.items() if k not in changed}
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'train_dataloader'):
        assert v6.get(key) == v1.get(key), key
    assert {k: v for k, v in v6.model.items() if k != 'backbone'} == \
        {k: v for k, v in v1.model.items() if k != 'backbone'}


def test_v6_coco_model_builds_and_takes_the_v6_classification_keys():
    model = build(load(V6_COCO), meta=True)
    from mmvrwkv.models import VRWKV6, VRWKV6Adapter
    bb = model.backbone
    assert isinstance(bb, VRWKV6Adapter) and isinstance(bb, VRWKV6)
    assert (bb.embed_dims, bb.num_layers, bb.num_heads, len(bb.interactions)) == (192, 12, 3, 4)
    # the arch keeps the v6 classification layer scale (none for tiny); VRWKV-T det: 1.0
    assert bb.init_values is None and not hasattr(bb.layers[0], 'gamma1')
    # (VRWKV6's keys are the official ones: tests/models/test_backbone.py)
    with torch.device('meta'):
        cls_keys = set(VRWKV6('tiny').state_dict()) - {'ln1.weight', 'ln1.bias'}
    assert cls_keys <= set(bb.state_dict())
    # parameters: VRWKV6-T without its final norm + exactly the VRWKV-T adapter's modules
    from mmvrwkv.models.backbones.vrwkv_adapter import ADAPTER_PREFIXES

    def count(module, adapter_only=False):
        return sum(p.numel() for n, p in module.named_parameters()
                   if not adapter_only or n.startswith(ADAPTER_PREFIXES))

    v1_adapter = build(load(det_file('tiny')), meta=True).backbone
    with torch.device('meta'):
        v6_cls = VRWKV6('tiny', final_norm=False)
    assert count(bb) == count(v6_cls) + count(v1_adapter, adapter_only=True)
    assert abs(count(bb) / 1e6 - 9.89) < 0.01  # (the VRWKV-T adapter: 8.4 M in the paper)


def _mmcv_seg_lr(t, warm=1500, total=160000, ratio=1e-6):
    """mmcv 1.x poly (power 1, min_lr 0) x linear warm-up factor, both from iteration 0."""
    lr = 1 - t / total
    if t < warm:
        lr *= 1 - (1 - t / warm) * (1 - ratio)
    return lr


def _run_schedulers(cfg_list, steps):
    from mmengine.registry import PARAM_SCHEDULERS
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    scheds = [PARAM_SCHEDULERS.build(dict(c, optimizer=opt)) for c in cfg_list]
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        for s in scheds:
            s.step()
    return np.array(lrs)


def test_lr_curves_match_mmcv():
    # UperNet: poly x warm-up over all 160k iterations; check the first 4000 and the tail
    # through a 1/40 scaled copy (same formula, same scheduler semantics).
    seg = load(seg_file('tiny')).param_scheduler
    lrs = _run_schedulers([c.to_dict() for c in seg], 4000)
    ref = np.array([_mmcv_seg_lr(t) for t in range(4000)])
    np.testing.assert_allclose(lrs, ref, rtol=1e-9)
    small = [dict(seg[0].to_dict(), end=38), dict(seg[1].to_dict(), end=4001)]  # 37 / 4000
    lrs = _run_schedulers(small, 4000)
    ref = np.array([_mmcv_seg_lr(t, warm=37, total=4000) for t in range(4000)])
    np.testing.assert_allclose(lrs, ref, rtol=1e-9, atol=1e-15)
    # Mask R-CNN warm-up: factor 0.001 + 0.999 * t / 500 for t < 500, then 1 (before the
    # epoch-based steps, which mmengine applies at epoch ends like mmcv).
    warm = load(det_file('tiny')).param_scheduler[0].to_dict()
    lrs = _run_schedulers([warm], 700)
    ref = np.array([1 - (1 - min(t, 500) / 500) * 0.999 for t in range(700)])
    np.testing.assert_allclose(lrs, ref, rtol=1e-12)


# ----------------------------------------------------------------------------- pretrained
def _fake_cls_checkpoint(path):
    """A VRWKV-T classification checkpoint in the official mmcls layout."""
    from mmvrwkv.models.backbones import VRWKV
    torch.manual_seed(0)
    bb = VRWKV(arch='tiny', img_size=224, init_values=None)
    sd = {'backbone.' + k: v for k, v in bb.state_dict().items()}
    sd['head.fc.weight'] = torch.zeros(1000, 192)
    sd['head.fc.bias'] = torch.zeros(1000)
    torch.save(dict(state_dict=sd, meta={}), path)
    return sd


@pytest.mark.parametrize('kind', ['det', 'seg'])
def test_pretrained_checkpoint_reaches_adapter(kind, tmp_path):
    ckpt = str(tmp_path / 'vrwkv_t_in1k_224.pth')
    sd = _fake_cls_checkpoint(ckpt)
    if kind == 'det':
        cfg = load(det_file('tiny'))
        over = dict(backbone=dict(init_cfg=dict(checkpoint=ckpt), norm_cfg=dict(type='BN')))
    else:
        cfg = load(seg_file('tiny'))
        over = dict(pretrained=ckpt, backbone=dict(norm_cfg=dict(type='BN')),
                    decode_head=dict(norm_cfg=dict(type='BN')),
                    auxiliary_head=dict(norm_cfg=dict(type='BN')))
    model = build(cfg, meta=False, **over)
    key = 'layers.11.att.key.weight'
    assert not torch.equal(model.backbone.state_dict()[key], sd['backbone.' + key])
    model.init_weights()
    got = model.backbone.state_dict()
    assert torch.equal(got[key], sd['backbone.' + key])
    assert torch.equal(got['patch_embed.projection.weight'],
                       sd['backbone.patch_embed.projection.weight'])
    # tiny det/seg creates the layer scale afresh (the cls tiny checkpoint has none)
    assert torch.equal(got['layers.0.gamma1'], torch.ones_like(got['layers.0.gamma1']))


# ----------------------------------------------------------------------------- test pipeline
def test_upernet_test_pipeline_multiple_of_32(tmp_path):
    import cv2
    import mmseg.datasets  # noqa: F401
    from mmengine.dataset import Compose
    img = np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'a.jpg'), img)
    cv2.imwrite(str(tmp_path / 'a.png'), np.ones((375, 500), np.uint8))
    pipeline = load(seg_file('tiny')).test_dataloader.dataset.pipeline
    with DefaultScope.overwrite_default_scope('mmseg'):
        out = Compose(pipeline)(dict(img_path=str(tmp_path / 'a.jpg'),
                                     seg_map_path=str(tmp_path / 'a.png'),
                                     reduce_zero_label=True, seg_fields=[]))
    h, w = out['inputs'].shape[-2:]
    assert h % 32 == 0 and w % 32 == 0 and min(h, w) == 512, (h, w)
    assert out['data_samples'].ori_shape == (375, 500)
    # multi-scale + flip test: every rescaled copy too
    tta = load(seg_file('tiny')).tta_pipeline
    with DefaultScope.overwrite_default_scope('mmseg'):
        outs = Compose(tta)(dict(img_path=str(tmp_path / 'a.jpg'),
                                 seg_map_path=str(tmp_path / 'a.png'),
                                 reduce_zero_label=True, seg_fields=[]))
    shapes = [tuple(x.shape[-2:]) for x in outs['inputs']]
    assert len(shapes) == 12 and all(h % 32 == 0 and w % 32 == 0 for h, w in shapes), shapes


# ----------------------------------------------------------------------------- names, metafiles
def test_config_names_unique():
    files = [f for f in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
             if '_base_' not in f.split(osp.sep)]
    names = [osp.basename(f) for f in files]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, dupes
    for size in SIZES:
        assert osp.basename(det_file(size)) in names and osp.basename(seg_file(size)) in names


def test_metafiles():
    import yaml
    hf = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/'
    for folder, file_of in ((DET_DIR, det_file), (SEG_DIR, seg_file)):
        with open(osp.join(folder, 'metafile.yml')) as f:
            meta = yaml.safe_load(f)
        models = {m['Name']: m for m in meta['Models']}
        assert set(models) == {osp.splitext(osp.basename(file_of(s)))[0] for s in SIZES}
        for size in SIZES:
            m = models[osp.splitext(osp.basename(file_of(size)))[0]]
            box, mask, miou, det_flops, seg_flops = CLAIMS[size]
            assert m['In Collection'] == meta['Collections'][0]['Name']
            assert osp.isfile(osp.join(ROOT, m['Config']))
            assert m['Metadata']['Backbone Parameters'] == round(ARCH[size]['params'] * 1e6)
            assert m['Metadata']['Pretrained'] == ARCH[size]['ckpt']
            results = {r['Task']: r['Metrics'] for r in m['Results']}
            if folder == DET_DIR:
                assert results == {'Object Detection': {'box AP': box},
                                   'Instance Segmentation': {'mask AP': mask}}
                assert m['Metadata']['Backbone FLOPs'] == round(det_flops * 1e9)
                weights = f'mask_rcnn_vrwkv_adapter_{size}_fpn_1x_coco.pth'
            else:
                assert results == {'Semantic Segmentation': {'mIoU': miou}}
                assert m['Metadata']['Backbone FLOPs'] == round(seg_flops * 1e9)
                weights = f'upernet_vrwkv_adapter_{size}_512_160k_ade20k.pth'
            assert m['Weights'] == hf + weights
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    assert {'configs/mask_rcnn/metafile.yml', 'configs/upernet/metafile.yml'} <= \
        set(index['Import'])


# ----------------------------------------------------------------------------- demos
@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('shapes'))
    generate(out, num_train=2, num_val=1, size=128, seed=0, quiet=True)
    return out


def _one_train_step(cfg, batch):
    from mmengine.optim import build_optim_wrapper
    torch.manual_seed(0)
    model = build(cfg, meta=False)
    model.init_weights()
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    log_vars = model.train_step(batch, optim_wrapper)
    assert log_vars and all(torch.isfinite(torch.as_tensor(v)).all()
                            for v in log_vars.values()), log_vars
    return model, log_vars


def _first_batch(cfg, n):
    from mmengine.dataset import pseudo_collate
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        if cfg.default_scope == 'mmdet':
            import mmdet.datasets  # noqa: F401
            from mmdet.registry import DATASETS
        else:
            import mmseg.datasets  # noqa: F401
            from mmseg.registry import DATASETS
        ds = DATASETS.build(cfg.train_dataloader.dataset)
        return ds, pseudo_collate([ds[i] for i in range(n)])


#: The Mask R-CNN demos: backbone type, and the mixer parameters the step must move (checked
#: for the v6 demo, whose data, heads and schedule are the VRWKV demo's).
DET_DEMOS = {DET_DEMO: ('mmvrwkv.VRWKVAdapter', ()),
             V6_DEMO: ('mmvrwkv.VRWKV6Adapter',
                       ('time_maa_w1', 'time_decay', 'time_faaaa', 'gate.weight'))}


@pytest.mark.parametrize('demo', sorted(DET_DEMOS), ids=osp.basename)
def test_demo_mask_rcnn_one_step(shapes, demo):
    backbone_type, moved = DET_DEMOS[demo]
    cfg = Config.fromfile(demo)
    assert cfg.default_scope == 'mmdet' and cfg.model.backbone.arch == 'tiny'
    assert cfg.model.backbone.type == backbone_type
    assert cfg.model.backbone.rwkv_feature_fusion == 'final'
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.val_evaluator.metric == ['bbox', 'segm']
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    classes = ('circle', 'rectangle', 'triangle')
    assert cfg.model.roi_head.bbox_head.num_classes == len(classes) == \
        cfg.model.roi_head.mask_head.num_classes
    cfg.train_dataloader.dataset.data_root = osp.join(shapes, 'coco') + '/'
    ds, batch = _first_batch(cfg, 1)
    assert ds.metainfo['classes'] == classes
    model, log_vars = _one_train_step(cfg, batch)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(log_vars)
    if moved:  # the step moved these parameters (same seed, same init as the step's model)
        torch.manual_seed(0)
        fresh = build(cfg, meta=False)
        fresh.init_weights()
        for name in moved:
            before = fresh.backbone.layers[0].att.get_parameter(name)
            after = model.backbone.layers[0].att.get_parameter(name)
            assert torch.isfinite(after).all() and not torch.equal(before, after), name


def test_demo_upernet_one_step(shapes):
    cfg = Config.fromfile(SEG_DEMO)
    assert cfg.default_scope == 'mmseg' and cfg.model.backbone.arch == 'tiny'
    assert cfg.model.backbone.rwkv_feature_fusion == 'per_stage'
    assert cfg.val_evaluator == dict(type='IoUMetric', iou_metrics=['mIoU'])
    cfg.train_dataloader.dataset.data_root = osp.join(shapes, 'ade')
    ds, batch = _first_batch(cfg, 2)
    assert ds.metainfo['classes'] == ('background', 'circle', 'rectangle', 'triangle')
    assert cfg.model.decode_head.num_classes == 4 == cfg.model.auxiliary_head.num_classes
    _, log_vars = _one_train_step(cfg, batch)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(log_vars)
