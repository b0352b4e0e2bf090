"""Tests of the adapters (VRWKVAdapter, VRWKV6Adapter: one definition over each backbone
family) and their modules (CPU, small inputs). Parameter counts are the paper's (Duan et al.,
ICLR 2025; OpenGVLab/Vision-RWKV README, detection and segmentation tables)."""
import logging
import math
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmvrwkv.models import VRWKV, VRWKV6, VRWKV6Adapter, VRWKVAdapter
from mmvrwkv.models.backbones.vrwkv_adapter import DEFORM_ARCHS, AdapterMixin
from mmvrwkv.models.layers import Block6
from mmvrwkv.models.layers.norm import build_norm2d
from mmvrwkv.models.layers.adapter_modules import (ConvFFN, MSDeformAttn, SpatialPriorModule,
                                                   deform_inputs,
                                                   reference_points)

ARCHS = ('tiny', 'small', 'base', 'large')
# Backbone params incl. adapter, paper (README): millions, rounded to 0.1M.
PAPER_PARAMS = dict(tiny=8.4, small=29.3, base=106.6, large=351.9)
STRIDES = (4, 8, 16, 32)


def _tiny(**kw):
    kw.setdefault('arch', 'tiny')
    kw.setdefault('depth', 4)
    return VRWKVAdapter(**kw)


def _capture(logger_name='test_adapter'):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, records


# ----------------------------------------------------------------------------- sizes
@pytest.mark.parametrize('arch', ARCHS)
def test_params_match_paper(arch):
    with torch.device('meta'):
        model = VRWKVAdapter(arch)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - PAPER_PARAMS[arch]) <= 0.05, (arch, n)


def test_arch_defaults():
    with torch.device('meta'):
        t = VRWKVAdapter('tiny')
        s = VRWKVAdapter('small')
        b = VRWKVAdapter('base')
        big = VRWKVAdapter('large')
    assert t.init_values == 1.0 and not t.post_norm and t.deform_num_heads == 6
    assert s.init_values == 1e-5 and s.post_norm and s.deform_ratio == 1.0
    assert b.deform_num_heads == 12 and b.deform_ratio == 0.5
    assert big.deform_num_heads == 16 and big.deform_ratio == 0.5 and big.key_norm
    assert big.pos_embed.shape == (1, 144, 1024)
    assert t.interaction_indexes == ((0, 2), (3, 5), (6, 8), (9, 11))
    assert big.interaction_indexes == ((0, 5), (6, 11), (12, 17), (18, 23))
    attn = b.interactions[0].injector.attn
    assert attn.value_proj.weight.shape == (384, 768)
    assert attn.output_proj.weight.shape == (768, 384)
    assert attn.sampling_offsets.weight.shape == (12 * 3 * 4 * 2, 768)
    assert b.interactions[0].extractor.attn.attention_weights.weight.shape == (12 * 4, 768)
    assert b.interactions[0].extractor.ffn.fc1.weight.shape == (192, 768)
    # Explicit arguments override the arch.
    with torch.device('meta'):
        m = VRWKVAdapter('base', deform_num_heads=8, deform_ratio=1.0, init_values=None)
    assert m.deform_num_heads == 8 and m.deform_ratio == 1.0
    assert not hasattr(m.layers[0], 'gamma1')


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize('arch', ARCHS)
def test_forward_each_arch(arch):
    torch.manual_seed(0)
    model = VRWKVAdapter(arch, depth=4).eval()
    C = model.embed_dims
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert len(outs) == 4
    for out, s in zip(outs, STRIDES):
        assert out.shape == (1, C, 64 // s, 64 // s)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('fusion', ['final', 'per_stage'])
def test_outputs_are_nchw_contiguous(fusion):
    # The token -> map reshapes give channels-last views; the adapter must not hand those on.
    model = _tiny(rwkv_feature_fusion=fusion).train()
    for out in model(torch.randn(2, 3, 64, 96)):
        assert out.is_contiguous(), out.stride()


def test_roi_align_reads_adapter_features_correctly():
    """Regression: mmcv's CPU RoIAlign reads a channels-last strided tensor as if it were
    NCHW and returns wrong features without an error. The adapter used to return such views,
    and the Mask R-CNN demo could not learn (0.003 bbox mAP). RoIAlign over the adapter's maps
    must equal torchvision's, which handles any layout."""
    roi_align = pytest.importorskip('mmcv.ops').RoIAlign
    tv_ops = pytest.importorskip('torchvision.ops')
    torch.manual_seed(0)
    model = _tiny().eval()
    rois = torch.tensor([[0, 3.0, 5.0, 40.0, 30.0], [1, 10.0, 2.0, 60.0, 50.0],
                         [1, 0.0, 0.0, 95.0, 63.0]])
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 96))
        for out, s in zip(outs, STRIDES):
            ours = roi_align((7, 7), 1.0 / s, sampling_ratio=0, aligned=True)(out, rois)
            reference = tv_ops.roi_align(out, rois, (7, 7), spatial_scale=1.0 / s,
                                         sampling_ratio=0, aligned=True)
            torch.testing.assert_close(ours, reference)


@pytest.mark.parametrize('fusion', ['final', 'per_stage'])
def test_backward_non_square(fusion):
    torch.manual_seed(0)
    model = _tiny(drop_path_rate=0.1, rwkv_feature_fusion=fusion, init_values_inject=0.5)
    model.train()
    outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    sum((o ** 2).mean() for o in outs).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # with init_values_inject > 0 the injectors' attentions receive gradient
    assert model.interactions[0].injector.attn.value_proj.weight.grad.abs().sum() > 0


def test_with_cp_same_gradients():
    torch.manual_seed(0)
    ref = _tiny().train()
    cp_model = _tiny(with_cp=True).train()
    cp_model.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 64, 64)
    grads = []
    for m in (ref, cp_model):
        sum(o.square().mean() for o in m(x)).backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_other_patch_size_and_autocast():
    torch.manual_seed(0)
    m = _tiny(patch_size=8).eval()  # tokens on the stride-8 grid, resampled to every level
    with torch.no_grad():
        outs = m(torch.randn(1, 3, 64, 32))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 8), (8, 4), (4, 2), (2, 1)]
    m16 = _tiny().eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = m16(torch.randn(1, 3, 64, 64))
    assert all(torch.isfinite(o.float()).all() for o in outs)


def test_fusion_variants_add_the_right_features():
    """With fresh BN in eval mode (y = x / sqrt(1 + eps)) the outputs differ from the
    no-fusion outputs by exactly the (resized) RWKV features the variant adds."""
    torch.manual_seed(0)
    ref = _tiny().eval()
    x = torch.randn(1, 3, 64, 128)
    stage_outs = []
    hooks = [ref.layers[end].register_forward_hook(lambda m, i, o: stage_outs.append(o))
             for _, end in ref.interaction_indexes]
    with torch.no_grad():
        base = VRWKVAdapter('tiny', depth=4, add_rwkv_feature=False)
        base.load_state_dict(ref.state_dict())
        base.eval()
        plain = base(x)
        final = ref(x)
        hooks_out = list(stage_outs)
        for h in hooks:
            h.remove()
        per_stage_model = VRWKVAdapter('tiny', depth=4, rwkv_feature_fusion='per_stage')
        per_stage_model.load_state_dict(ref.state_dict())
        per_stage = per_stage_model.eval()(x)
    bn = 1 / math.sqrt(1 + 1e-5)
    grid = (4, 8)

    def as_map(tokens, size):
        f = tokens.transpose(1, 2).reshape(1, -1, *grid)
        return f if size == grid else F.interpolate(f, size=size, mode='bilinear',
                                                    align_corners=False)

    for i in range(4):
        size = tuple(plain[i].shape[-2:])
        torch.testing.assert_close(final[i] - plain[i], as_map(hooks_out[-1], size) * bn,
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(per_stage[i] - plain[i], as_map(hooks_out[i], size) * bn,
                                   rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(final[3], per_stage[3])
    assert not torch.allclose(final[0], per_stage[0])


def test_bad_input_size():
    model = _tiny().eval()
    with pytest.raises(ValueError, match=r'multiples of 32.*\(48, 64\)'):
        model(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match=r'\(64, 80\)'):
        model(torch.randn(1, 3, 64, 80))
    with pytest.raises(TypeError, match='floating-point images.*torch.uint8'):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match='empty batch'):
        model(torch.randn(0, 3, 64, 64))


def test_argument_checks():
    with pytest.raises(ValueError, match='exactly 4 interactions'):
        _tiny(depth=3, interaction_indexes=[[0, 0], [1, 1], [2, 2]],
              rwkv_feature_fusion='per_stage')
    # 'final' works with any number of interactions
    m = _tiny(depth=3, interaction_indexes=[[0, 0], [1, 2]]).eval()
    with torch.no_grad():
        assert len(m(torch.randn(1, 3, 32, 32))) == 4
    with pytest.raises(ValueError, match='contiguous'):
        _tiny(interaction_indexes=[[0, 1], [3, 3]])
    with pytest.raises(ValueError, match='cover'):
        _tiny(interaction_indexes=[[0, 1], [2, 2]])
    with pytest.raises(ValueError, match='multiple of 4'):
        _tiny(depth=6)
    with pytest.raises(ValueError, match='rwkv_feature_fusion'):
        _tiny(rwkv_feature_fusion='stage')
    with pytest.raises(TypeError, match='final_norm'):
        _tiny(final_norm=True)
    with pytest.raises(TypeError, match='out_indices'):
        _tiny(out_indices=(1, 2))
    with pytest.raises(ValueError, match='n_heads'):
        _tiny(deform_num_heads=5)


@pytest.mark.parametrize('kwargs, message', [
    (dict(conv_inplane=0), 'conv_inplane must be a positive int, got 0'),
    (dict(n_points=2.0), 'n_points must be a positive int, got 2.0'),
    (dict(deform_num_heads=True), 'deform_num_heads must be a positive int, got True'),
    (dict(deform_ratio=0), 'deform_ratio must be a positive number, got 0'),
    (dict(cffn_ratio=-0.5), 'cffn_ratio must be a positive number, got -0.5'),
])
def test_adapter_arguments_checked(kwargs, message):
    with pytest.raises(ValueError, match=f'^{message}$'):
        _tiny(**kwargs)


def test_no_adapter_without_extras():
    m = _tiny(with_cffn=False, use_extra_extractor=False).eval()
    keys = m.state_dict().keys()
    assert not any('extra_extractors' in k or '.ffn.' in k and k.startswith('interactions')
                   for k in keys)
    with torch.no_grad():
        assert len(m(torch.randn(1, 3, 32, 64))) == 4


# ----------------------------------------------------------------------------- state dict
def test_state_dict_keys():
    m = _tiny()
    keys = set(m.state_dict())
    assert not hasattr(m, 'ln1') and not any(k.startswith('ln1.') for k in keys)
    expected = {'level_embed', 'pos_embed', 'patch_embed.projection.weight', 'up.weight',
                'up.bias', 'spm.fc1.weight', 'spm.fc4.bias', 'spm.conv2.0.weight',
                'spm.conv2.1.running_var', 'spm.conv4.1.weight',
                'interactions.0.injector.gamma', 'interactions.0.injector.query_norm.weight',
                'interactions.0.injector.feat_norm.bias',
                'interactions.0.injector.attn.sampling_offsets.weight',
                'interactions.2.extractor.attn.value_proj.weight',
                'interactions.2.extractor.ffn.fc1.weight',
                'interactions.2.extractor.ffn.dwconv.dwconv.weight',
                'interactions.2.extractor.ffn.fc2.bias',
                'interactions.2.extractor.ffn_norm.weight',
                'interactions.3.extra_extractors.1.attn.output_proj.weight',
                'layers.0.ln0.weight', 'layers.3.gamma2'}
    expected |= {f'spm.stem.{i}.weight' for i in (0, 1, 3, 4, 6, 7)}
    expected |= {f'norm{i}.{p}' for i in range(1, 5) for p in ('weight', 'running_mean')}
    assert expected <= keys, expected - keys
    assert not any(k.startswith('interactions.2.extra_extractors') for k in keys)
    # the VRWKV blocks are not duplicated inside the interactions
    assert not any(k.startswith('interactions.') and '.layers.' in k for k in keys)
    assert isinstance(m, VRWKV)


def test_both_adapters_share_one_definition():
    """One adapter over each backbone family, without a diamond: VRWKV6Adapter is a VRWKV6
    (its blocks and keys) with the adapter of VRWKVAdapter, not a VRWKVAdapter."""
    for adapter, family in ((VRWKVAdapter, VRWKV), (VRWKV6Adapter, VRWKV6)):
        assert adapter.__mro__[1:3] == (AdapterMixin, family), adapter.__mro__
        assert adapter.forward is AdapterMixin.forward
        assert adapter.load_pretrained is AdapterMixin.load_pretrained
        # the arch: the family's, plus the adapter's own settings of that size
        for name in (n for n in family.arch_zoo if len(n) > 1):
            own = {**DEFORM_ARCHS[name], 'init_values': adapter.arch_zoo[name]['init_values']}
            assert adapter.arch_zoo[name] == {**family.arch_zoo[name], **own}
    assert not issubclass(VRWKV6Adapter, VRWKVAdapter)
    # det/seg layer scale: a fresh 1.0 for tiny, 1e-5 for small (VRWKV6: its cls values)
    assert [VRWKVAdapter.arch_zoo[a]['init_values'] for a in ('tiny', 'small')] == [1.0, 1e-5]
    assert VRWKV6Adapter.arch_zoo['tiny']['init_values'] is None


def test_v6_adapter_builds_on_vrwkv6():
    torch.manual_seed(0)
    adapter = VRWKV6Adapter(arch=dict(embed_dims=64, depth=4, num_heads=2), img_size=64,
                            deform_num_heads=2, norm_cfg=dict(type='BN'),
                            wkv_backend='torch').train()
    assert isinstance(adapter.layers[0], Block6) and not hasattr(adapter, 'ln1')
    assert not hasattr(adapter, 'cls_token')
    maps = adapter(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 64, 16, 16), (1, 64, 8, 8), (1, 64, 4, 4),
                                              (1, 64, 2, 2)]
    sum(m.mean() for m in maps).backward()
    assert adapter.layers[0].att.time_maa_w1.grad is not None
    # a VRWKV6 classification state dict fills every backbone key of the adapter
    cls = VRWKV6(arch=dict(embed_dims=64, depth=4, num_heads=2), img_size=32,
                 wkv_backend='torch')
    report = adapter.load_pretrained({'state_dict': {'backbone.' + k: v for k, v in
                                                     cls.state_dict().items()}})
    assert report['unused'] == ['ln1.weight', 'ln1.bias']
    assert not [k for k in report['new'] if k.startswith('layers.')]
    with torch.device('meta'):
        tiny = VRWKV6Adapter('tiny')
    assert (tiny.num_heads, tiny.deform_num_heads, tiny.init_values) == (3, 6, None)
    with pytest.raises(TypeError, match='with_cls_token'):
        VRWKV6Adapter('tiny', with_cls_token=True)
    assert math.isclose(VRWKV6Adapter.arch_zoo['base']['deform_ratio'], 0.5)
    # input errors name the adapter they are raised through
    with pytest.raises(ValueError, match=r'^VRWKV6Adapter needs input height and width'):
        adapter(torch.randn(1, 3, 48, 64))
    with pytest.raises(TypeError, match="^VRWKV6Adapter does not take 'out_indices'"):
        VRWKV6Adapter('tiny', out_indices=(1, 2))


def _cls_state_dict(img_size=64, depth=4):
    torch.manual_seed(1)
    cls = VRWKV('tiny', depth=depth, img_size=img_size)
    with torch.no_grad():
        cls.pos_embed.normal_()
    sd = {'backbone.' + k: v for k, v in cls.state_dict().items()}
    sd['head.fc.weight'] = torch.zeros(10, 192)
    sd['head.fc.bias'] = torch.zeros(10)
    return cls, sd


def test_load_pretrained_reports_new_and_unused_keys():
    cls, sd = _cls_state_dict()
    model = _tiny()
    spm_before = model.spm.fc1.weight.clone()
    logger, records = _capture()
    report = model.load_pretrained({'state_dict': sd}, logger=logger)
    assert sorted(report['unused']) == ['ln1.bias', 'ln1.weight']
    assert sorted(report['dropped']) == ['head.fc.bias', 'head.fc.weight']
    assert 'level_embed' in report['new'] and 'spm.fc1.weight' in report['new']
    assert 'layers.0.gamma1' in report['new']  # tiny cls has no layer scale, adapter does
    assert not any(k.startswith('layers.') and 'gamma' not in k for k in report['new'])
    assert len(report['loaded']) == len(sd) - 4
    # weights copied, adapter untouched, pos_embed resized from 4x4 to 14x14
    torch.testing.assert_close(model.layers[2].att.key.weight, cls.layers[2].att.key.weight)
    torch.testing.assert_close(model.spm.fc1.weight, spm_before)
    expected_pos = cls._interpolate_pos_embed(cls.pos_embed.detach(), (4, 4), (14, 14))
    torch.testing.assert_close(model.pos_embed.detach(), expected_pos)
    text = '\n'.join(r.getMessage() for r in records)
    assert 'unused' in text and 'ln1.weight' in text and 'spm.*' in text
    assert 'interactions.3.*' in text and 'layers.0.gamma1' in text
    assert any(r.levelno == logging.WARNING for r in records)

    # a raw backbone state dict (no prefix) loads the same way
    raw = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    report2 = _tiny().load_pretrained(raw, logger=logger)
    assert sorted(report2['unused']) == ['ln1.bias', 'ln1.weight'] and not report2['dropped']


def test_load_pretrained_shape_mismatch_raises():
    _, sd = _cls_state_dict()
    model = VRWKVAdapter('small', depth=4)
    with pytest.raises(RuntimeError, match='size mismatch'):
        model.load_pretrained(sd, logger=_capture()[0])


def test_init_cfg_pretrained(tmp_path):
    from mmengine.logging import MMLogger
    cls, sd = _cls_state_dict()
    path = tmp_path / 'cls.pth'
    torch.save({'state_dict': sd, 'meta': {}}, path)
    model = _tiny(init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        model.init_weights()
    finally:
        logger.removeHandler(handler)
    torch.testing.assert_close(model.layers[1].ffn.key.weight, cls.layers[1].ffn.key.weight)
    text = '\n'.join(r.getMessage() for r in records)
    assert 'ln1.weight' in text and 'level_embed' in text
    # `pretrained` (as passed by mmseg's EncoderDecoder) is the same path
    m2 = _tiny(pretrained=str(path))
    assert m2.init_cfg == dict(type='Pretrained', checkpoint=str(path), prefix='backbone.')
    with pytest.raises(ValueError, match='not both'):
        _tiny(pretrained=str(path), init_cfg=dict(type='Pretrained', checkpoint='x'))


# ----------------------------------------------------------------------------- modules
def test_norm_cfg():
    m = _tiny(norm_cfg=dict(type='SyncBN'))
    assert isinstance(m.norm1, nn.SyncBatchNorm) and isinstance(m.spm.stem[1], nn.SyncBatchNorm)
    assert type(_tiny().norm4) is nn.BatchNorm2d
    gn = build_norm2d(dict(type='GN', num_groups=4), 16)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 4
    frozen = build_norm2d(dict(type='BN', requires_grad=False), 8)
    assert not any(p.requires_grad for p in frozen.parameters())
    with pytest.raises(ValueError, match='unsupported norm type'):
        build_norm2d(dict(type='LayerNorm2d'), 8)


@pytest.mark.parametrize('train', [False, True])
def test_spatial_prior_channels_last_on_cpu(train):
    """On the CPU the stem runs channels-last; maps and weight gradients equal the plain NCHW
    computation (eval, and train mode with batch statistics)."""
    torch.manual_seed(0)
    spm = SpatialPriorModule(8, 12).train(train)
    x = torch.randn(2, 3, 64, 64)
    grads = [torch.randn(2, 12, 64 // s, 64 // s) for s in STRIDES]

    def plain_nchw(x):
        c1 = spm.stem(x)
        c2 = spm.conv2(c1)
        c3 = spm.conv3(c2)
        c4 = spm.conv4(c3)
        return spm.fc1(c1), spm.fc2(c2), spm.fc3(c3), spm.fc4(c4)

    results = []
    for fn in (spm, plain_nchw):
        outs = fn(x)
        weight_grads = torch.autograd.grad(outs, [p for p in spm.parameters()], grads)
        results.append((outs, weight_grads))
    for out in results[0][0]:
        assert out.is_contiguous(memory_format=torch.channels_last)
    for out, ref in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for g, ref in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-4)


def test_msdeform_attn_identity_sampling():
    """A query at a pixel centre with zero offsets and one level samples exactly that pixel's
    projected value."""
    torch.manual_seed(0)
    attn = MSDeformAttn(8, n_levels=1, n_heads=2, n_points=1, ratio=0.5)
    with torch.no_grad():
        attn.sampling_offsets.bias.zero_()
    shapes = [(3, 5)]
    value = torch.randn(1, 15, 8)
    ref = reference_points(shapes)
    out = attn(torch.randn(1, 15, 8), ref, value, torch.tensor([[3, 5]]), torch.tensor([0]),
               shapes)
    expected = attn.output_proj(attn.value_proj(value))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_reference_points_and_deform_inputs():
    pts = reference_points([(2, 4)])
    assert pts.shape == (1, 8, 1, 2)
    torch.testing.assert_close(pts[0, :4, 0], torch.tensor(
        [[0.125, 0.25], [0.375, 0.25], [0.625, 0.25], [0.875, 0.25]]))
    inj, ext = deform_inputs((4, 6), [(8, 12), (4, 6), (2, 3)])
    assert inj[0].shape == (1, 24, 1, 2) and inj[1].tolist() == [[8, 12], [4, 6], [2, 3]]
    assert inj[2].tolist() == [0, 96, 120]
    assert ext[0].shape == (1, 96 + 24 + 6, 1, 2) and ext[1].tolist() == [[4, 6]]
    assert ext[2].tolist() == [0]


def test_convffn_splits_by_level_sizes():
    torch.manual_seed(0)
    ffn = ConvFFN(8, 4)
    shapes = [(4, 6), (2, 3), (1, 2)]  # 24 + 6 + 2 tokens (not 16k + 4k + k)
    x = torch.randn(2, 32, 8)
    out = ffn(x, shapes)
    # Same as running each level on its own: no mixing across level boundaries.
    parts = x.split([24, 6, 2], dim=1)
    for part, s, o in zip(parts, shapes, out.split([24, 6, 2], dim=1)):
        torch.testing.assert_close(o, ffn(part, [s]))
    with pytest.raises(ValueError, match='tokens'):
        ffn(torch.randn(1, 30, 8), shapes)


def test_import_and_run_without_mmcv():
    """The GPU check machine has no mmcv: the adapter must import and run on the fallback."""
    code = textwrap.dedent('''
        import sys
        sys.modules['mmcv'] = None  # any "import mmcv..." raises ImportError
        import torch
        from mmvrwkv.models.backbones import VRWKV, VRWKVAdapter
        torch.manual_seed(0)
        m = VRWKVAdapter('tiny', depth=4).eval()
        with torch.no_grad():
            outs = m(torch.randn(1, 3, 64, 64))
        assert [tuple(o.shape) for o in outs] == [(1, 192, 16, 16), (1, 192, 8, 8),
                                                  (1, 192, 4, 4), (1, 192, 2, 2)]
        assert not any(k == 'mmcv' or k.startswith('mmcv.') for k, v in sys.modules.items()
                       if v is not None)
        print('ok')
    ''')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and 'ok' in res.stdout, res.stderr[-3000:]


# ----------------------------------------------------------------------------- upstream cfgs
def _train_step(model, data, scope):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        optim_wrapper = build_optim_wrapper(model, dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            constructor='mmvrwkv.LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(num_layers=4, layer_decay_rate=0.85)))
    before = model.backbone.spm.fc1.weight.detach().clone()
    model.train()
    log_vars = model.train_step(data, optim_wrapper)
    assert log_vars and all(torch.isfinite(torch.as_tensor(v)).all()
                            for v in log_vars.values()), log_vars
    assert not torch.equal(before, model.backbone.spm.fc1.weight)
    return log_vars


def test_upstream_mmdet_mask_rcnn_config(tmp_path):
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.structures import InstanceData
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks

    cfg_file = tmp_path / 'mask-rcnn_vrwkv-test.py'
    cfg_file.write_text(textwrap.dedent('''
        _base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
        model = dict(
            backbone=dict(_delete_=True, type='mmvrwkv.VRWKVAdapter',
                          arch=dict(embed_dims=96, depth=4), deform_num_heads=6,
                          drop_path_rate=0.1),
            neck=dict(in_channels=[96, 96, 96, 96]))
    '''))
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.default_scope == 'mmdet'
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    torch.manual_seed(0)
    samples = []  # one image keeps the step short (the RoI heads dominate the cost)
    for _ in range(1):
        s = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                        pad_shape=(64, 64), scale_factor=(1., 1.)))
        gt = InstanceData()
        gt.bboxes = torch.tensor([[4., 6., 40., 44.], [20., 10., 60., 50.]])
        gt.labels = torch.tensor([1, 5])
        masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
        masks[0, 6:44, 4:40] = 1
        masks[1, 10:50, 20:60] = 1
        gt.masks = BitmapMasks(masks.numpy(), 64, 64)
        s.gt_instances = gt
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
                        for _ in range(1)], data_samples=samples)
    log_vars = _train_step(model, data, 'mmdet')
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(log_vars)


def test_upstream_mmseg_upernet_config(tmp_path):
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    cfg_file = tmp_path / 'upernet_vrwkv-test.py'
    cfg_file.write_text(textwrap.dedent('''
        _base_ = ['mmseg::_base_/models/upernet_r50.py']
        norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN -> BN on one device
        model = dict(
            pretrained=None,
            data_preprocessor=dict(size=(64, 64)),
            backbone=dict(_delete_=True, type='mmvrwkv.VRWKVAdapter',
                          arch=dict(embed_dims=96, depth=4), deform_num_heads=6,
                          rwkv_feature_fusion='per_stage', norm_cfg=norm_cfg),
            decode_head=dict(in_channels=[96, 96, 96, 96], channels=64, norm_cfg=norm_cfg),
            auxiliary_head=dict(in_channels=96, channels=32, norm_cfg=norm_cfg))
    '''))
    cfg = Config.fromfile(str(cfg_file))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    torch.manual_seed(0)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                        pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, 64, 64)))
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
                        for _ in range(2)], data_samples=samples)
    log_vars = _train_step(model, data, 'mmseg')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(log_vars)
