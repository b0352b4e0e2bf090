"""FLOP counting: the Bi-WKV cost (mmvrwkv/ops/bi_wkv/flops.py), the ops counted as one traced
node each (mmvrwkv.ops.flops), the analysis (mmvrwkv.analysis.flops) and the command line
(tools/analysis/get_flops.py).

Paper targets (Duan et al., ICLR 2025, the ImageNet-1K table; mmcv convention, per image):
T/S/B at 224 px and L at 384 px: params 6.2 / 23.8 / 93.7 / 334.9 M, FLOPs 1.2 / 4.6 / 18.2 /
189.5 G. Fast tests: the full tool on T, the tool on depth-2 variants of every size checked
exactly against an analytic per-layer formula, and the formula at full depth against the
targets (params from models built on the meta device). The full L run is `slow`.
"""
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn

from mmvrwkv.ops import BI_WKV_FLOPS_PER_ELEMENT, bi_wkv, bi_wkv6, bi_wkv6_flops, bi_wkv_flops
from mmvrwkv.ops import flops as op_flops

from tool_helpers import ROOT, load_tool  # noqa: E402
CFG = {
    'tiny': osp.join(ROOT, 'configs/vrwkv/vrwkv-tiny_8xb128_in1k.py'),
    'small': osp.join(ROOT, 'configs/vrwkv/vrwkv-small_8xb128_in1k.py'),
    'base': osp.join(ROOT, 'configs/vrwkv/vrwkv-base_16xb64_in1k.py'),
    'large': osp.join(ROOT, 'configs/vrwkv/vrwkv-large_in21k-pre_8xb128_in1k-384px.py'),
}
# (params M, FLOPs G, input side) claimed by the paper
TARGETS = {'tiny': (6.2, 1.2, 224), 'small': (23.8, 4.6, 224), 'base': (93.7, 18.2, 224),
           'large': (334.9, 189.5, 384)}
# embed_dims, depth, key_norm, MLP-head hidden width (None: linear head), pos grid (pixels)
ARCH = {'tiny': (192, 12, False, None, 224), 'small': (384, 12, False, None, 224),
        'base': (768, 12, False, None, 224), 'large': (1024, 24, True, 3072, 192)}


@pytest.fixture(scope='module')
def tool():
    """The command line (tools/analysis/get_flops.py)."""
    pytest.importorskip('mmpretrain')
    from mmengine.logging import MMLogger
    # Create mmengine's logger outside of any capsys test: a logger created inside one keeps
    # writing to capsys' closed stream afterwards.
    MMLogger.get_current_instance()
    return load_tool('analysis/get_flops')


@pytest.fixture(scope='module')
def flops(tool):
    """Its library, mmvrwkv.analysis.flops."""
    import mmvrwkv.analysis.flops as lib
    return lib


def analytic_flops(arch: str, side: int, depth=None, with_head=True) -> int:
    """mmcv-convention FLOPs of an mmvrwkv ImageNet classifier for one side x side image.

    Patch-embed conv (MACs + bias), per layer 13 C^2 T linear MACs (SpatialMix key, value,
    receptance, output C x C; ChannelMix key C x 4C, value 4C x C, receptance C x C), two
    affine LayerNorms at 2 per element, key_norm LayerNorms (C and 4C wide) for L, the
    Bi-WKV op at 29 T C; ln0 and the final LayerNorm; the bicubic pos-embed resize at 1 per
    output element when the grid differs; global average pooling 1 per input; head MACs.
    """
    C, full_depth, key_norm, head_hidden, pos_px = ARCH[arch]
    L = full_depth if depth is None else depth
    T = (side // 16) ** 2
    hid = 4 * C
    f = T * C * 3 * 16 * 16 + T * C                          # patch embed conv + bias
    if pos_px != side:
        f += T * C                                           # pos-embed resize
    layer = T * (4 * C * C + 2 * C * hid + C * C)            # linear MACs, 13 C^2 T
    layer += 2 * (2 * T * C)                                 # ln1, ln2
    if key_norm:
        layer += 2 * T * C + 2 * T * hid                     # key_norm in both mixers
    layer += BI_WKV_FLOPS_PER_ELEMENT * T * C                # Bi-WKV
    f += L * layer + 2 * T * C + 2 * T * C                   # + ln0 + final ln1
    if with_head:
        f += T * C                                           # GAP
        f += C * 1000 if head_hidden is None else C * head_hidden + head_hidden * 1000
    return f


# ------------------------------------------------------------------------- the op's cost
def test_bi_wkv_flops_formula():
    assert BI_WKV_FLOPS_PER_ELEMENT == 29
    assert bi_wkv_flops(1, 196, 192) == 29 * 196 * 192
    assert bi_wkv_flops(2, 576, 1024, causal=True) == 29 * 2 * 576 * 1024
    assert bi_wkv_flops(0, 5, 5) == 0
    for bad in ((-1, 2, 3), (1.5, 2, 3), (True, 2, 3)):
        with pytest.raises(ValueError):
            bi_wkv_flops(*bad)


def _inputs(B=2, T=5, C=4):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(C, generator=g) / T, torch.randn(C, generator=g) / T,
            torch.randn(B, T, C, generator=g), torch.randn(B, T, C, generator=g))


def _traced_kinds(fn, *args):
    graph = torch.jit.trace(fn, args, check_trace=False).graph
    return [n.kind() for n in graph.nodes()]


def test_op_is_one_node_only_while_counting():
    """Outside counting() the op traces as its portable path (aten ops only); inside, as the
    one node mmvrwkv_flops::bi_wkv whose handle op_handles() lists."""
    w, u, k, v = _inputs()
    fn = lambda k, v: bi_wkv(w, u, k, v)  # noqa: E731
    plain = _traced_kinds(fn, k, v)
    assert 'aten::cumsum' in plain and not any(n.startswith('mmvrwkv') for n in plain)
    assert not op_flops.counting_active()
    with op_flops.counting():
        assert op_flops.counting_active()
        counted = _traced_kinds(fn, k, v)
        torch.testing.assert_close(bi_wkv(w, u, k, v), bi_wkv(w, u, k, v, backend='torch'))
    assert not op_flops.counting_active()
    assert counted.count('mmvrwkv_flops::bi_wkv') == 1 and 'aten::cumsum' not in counted
    assert set(op_flops.op_handles()) == {'mmvrwkv_flops::bi_wkv', 'mmvrwkv_flops::bi_wkv6'}


def test_counting_sees_every_op_call(flops):
    """Every call of the op is counted, attributed to the module that makes it (no method
    on the caller says so)."""
    from mmvrwkv.models.layers import SpatialMix

    class Silent(nn.Module):
        def forward(self, x):
            return bi_wkv(torch.zeros(4), torch.zeros(4), x, x, backend='torch')

    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.silent = Silent()
            self.mix = SpatialMix(4, depth=1, layer_id=0, wkv_backend='torch')

        def forward(self, x):
            return self.mix(self.silent(x), (2, 3))

    net = Both()
    res = flops.analyze_module(net, net.forward, torch.randn(2, 6, 4))
    per = bi_wkv_flops(2, 6, 4)
    assert [(c.op, c.sizes, c.flops) for c in res['calls']] == \
        [('bi_wkv', dict(B=2, T=6, C=4, causal=False), per)] * 2
    assert res['op_by_module']['silent'] == res['op_by_module']['mix'] == per
    assert res['op_total'] == 2 * per


class _Mixer(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(C))
        self.u = nn.Parameter(torch.zeros(C))

    def forward(self, x):
        return bi_wkv(self.w, self.u, x, x, backend='torch')


class _Net(nn.Module):
    def __init__(self, C=4):
        super().__init__()
        self.blocks = nn.Sequential(_Mixer(C), _Mixer(C))
        self.extra = _Mixer(C)

    def forward(self, x):
        return self.extra(self.blocks(x))


def test_counting_modules(flops):
    net = _Net()
    x = torch.randn(3, 7, 4)
    res = flops.analyze_module(net, net.forward, x)
    per = 29 * 3 * 7 * 4
    assert len(res['calls']) == 3 and res['op_total'] == 3 * per
    assert res['op_by_module'] == {'': 3 * per, 'blocks': 2 * per, 'blocks.0': per,
                                   'blocks.1': per, 'extra': per}
    assert res['total'] == 0 and 'bi_wkv' not in res['by_operator']  # the op: formula only
    # nothing is left behind: no hooks, the forward restored, counting off
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in net.modules())
    assert 'forward' not in net.__dict__ and not op_flops.counting_active()


def test_counted_flops_equal_the_formulas(flops):
    """The handles count each op by its formula, from the traced node's shapes and
    arguments (causal read from the node), and the analyzer counts nothing of the ops
    themselves (Bi-WKV6's portable einsums are not traced)."""
    class Ops(nn.Module):
        def forward(self, x):
            y = bi_wkv(torch.zeros(6), torch.zeros(6), x, x, causal=True)
            return bi_wkv6(y, x, x, x, torch.zeros(2, 3))

    net = Ops()
    res = flops.analyze_module(net, net.forward, torch.randn(2, 5, 6))
    assert [(c.op, c.sizes) for c in res['calls']] == [
        ('bi_wkv', dict(B=2, T=5, C=6, causal=True)),
        ('bi_wkv6', dict(B=2, T=5, C=6, head_size=3))]
    assert res['op_total'] == bi_wkv_flops(2, 5, 6, causal=True) + bi_wkv6_flops(2, 5, 6, 3)
    assert res['total'] == 0 and res['by_operator'] == {}


def test_counting_nests_and_ends_on_error(flops):
    with op_flops.counting():
        with op_flops.counting():
            assert op_flops.counting_active()
        assert op_flops.counting_active()
    assert not op_flops.counting_active()
    net = _Net()
    with pytest.raises(ValueError, match='bi_wkv'):
        flops.analyze_module(net, net.forward, torch.randn(1, 7, 3))  # wrong C -> bi_wkv raises
    # (mmengine's tracer may leave its scope hooks after a failed trace; counting adds none)
    assert not op_flops.counting_active() and 'forward' not in net.__dict__


# ------------------------------------------------------------------------- the tool
def test_default_input_size(flops):
    from mmengine.config import Config
    (hw, src) = flops.default_input_size(Config.fromfile(CFG['large']))
    assert hw == (384, 384) and 'CenterCrop' in src
    assert flops.default_input_size(Config.fromfile(CFG['tiny']))[0] == (224, 224)
    seg = Config(dict(crop_size=(512, 640), test_pipeline=[
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(2048, 512), keep_ratio=True)]))
    assert flops.default_input_size(seg) == ((512, 640), 'config crop_size=(512, 640)')
    fixed = Config(dict(test_dataloader=dict(dataset=dict(type='X', dataset=dict(
        pipeline=[dict(type='mmdet.Resize', scale=(320, 240), keep_ratio=False)])))))
    assert flops.default_input_size(fixed)[0] == (240, 320)  # scale is (w, h)
    hw, src = flops.default_input_size(Config(dict()))
    assert hw == (224, 224) and src.startswith('default')
    # mmdet: a keep-ratio Resize and no crop size -> the full (w, h) box of the resize
    det = Config(dict(test_pipeline=[
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(1333, 800), keep_ratio=True)]))
    hw, src = flops.default_input_size(det)
    assert hw == (800, 1333) and 'keep_ratio' in src


# Backbone (adapter included) params M and FLOPs G of the paper (Duan et al., ICLR 2025, the COCO
# Mask R-CNN and ADE20K UperNet tables): Mask R-CNN at 1333x800, UperNet at 512x512. Each is
# checked by the tool on its real config.
DENSE = {
    'det': ('configs/mask_rcnn/mask-rcnn_vrwkv-{}-adapter_fpn_1x_coco.py',
            {'tiny': (8.4, 67.9), 'small': (29.3, 189.9), 'base': (106.6, 599.0),
             'large': (351.9, 1730.6)}, [1, 3, 800, 1344]),
    'seg': ('configs/upernet/upernet_vrwkv-{}-adapter_8xb2-160k_ade20k-512x512.py',
            {'tiny': (8.4, 16.6), 'small': (29.3, 46.3), 'base': (106.6, 146.0),
             'large': (351.9, 421.9)}, [1, 3, 512, 512]),
}


def _dense_case(task, arch):
    pytest.importorskip('mmdet' if task == 'det' else 'mmseg')
    pytest.importorskip('mmcv.ops')
    tmpl, targets, shape = DENSE[task]
    return osp.join(ROOT, tmpl.format(arch)), targets[arch], shape


def _check_dense(flops, task, arch):
    cfg, (params_m, flops_g), shape = _dense_case(task, arch)
    res = flops.get_flops(cfg, backbone_only=True)
    assert res['input_shape'] == shape  # default size from the config (det: 800x1333 padded)
    assert abs(res['params'] / 1e6 - params_m) <= 0.1
    assert abs(res['flops'] / 1e9 / flops_g - 1) < 0.03
    # the deformable attention's sampling runs through grid_sample and is counted
    assert res['by_operator'].get('grid_sampler', 0) > 0
    assert res['flops_bi_wkv'] > 0


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_tool_dense_tiny(flops, task):
    """VRWKV-T adapter backbones through the tool (~10-25 s each on 2 cores)."""
    _check_dense(flops, task, 'tiny')


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['small', 'base', 'large'])
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_tool_dense_full_sizes(flops, task, arch):
    _check_dense(flops, task, arch)


def test_tool_tiny_full_cli(tool, tmp_path, capsys):
    """The whole tool on VRWKV-T at 224 px: the paper's numbers, exactly the formula."""
    out = tmp_path / 'tiny.json'
    res = tool.main([CFG['tiny'], '--json', str(out)])
    text = capsys.readouterr().out
    assert json.loads(out.read_text())['flops'] == res['flops']
    assert res['input_shape'] == [1, 3, 224, 224]
    assert res['params'] == 6_155_176
    assert round(res['params'] / 1e6, 1) == 6.2
    assert res['flops'] == analytic_flops('tiny', 224)
    assert abs(res['flops'] / 1.2e9 - 1) < 0.03 and round(res['flops'] / 1e9, 1) == 1.2
    assert res['bi_wkv_num_calls'] == 12
    assert res['bi_wkv_calls'] == [dict(B=1, T=196, C=192, causal=False, count=12)]
    assert res['flops_bi_wkv'] == 12 * bi_wkv_flops(1, 196, 192)
    rows = {r['module']: r for r in res['table']}
    assert rows['backbone.layers.3']['flops_bi_wkv'] == bi_wkv_flops(1, 196, 192)
    assert rows['model']['flops'] == res['flops']
    assert "model(x, mode='tensor')" in text and '29*B*T*C' in text
    assert 'CenterCrop' in text and 'Params: 6.16 M' in text and 'FLOPs:  1.17 G' in text


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base', 'large'])
def test_tool_reduced_depth_matches_formula(flops, arch):
    """Depth-2 models through the tool == the analytic formula, exactly (so the formula at
    full depth, checked against the targets below, is the tool's answer)."""
    res = flops.get_flops(CFG[arch], cfg_options={'model.backbone.depth': 2})
    side = TARGETS[arch][2]
    assert res['input_shape'] == [1, 3, side, side]
    assert res['flops'] == analytic_flops(arch, side, depth=2)
    assert res['bi_wkv_num_calls'] == 2


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base', 'large'])
def test_targets_params_and_formula(flops, arch):
    """Full-size params (built on the meta device) and FLOPs (formula) vs the paper."""
    from mmengine.analysis import parameter_count
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(CFG[arch])
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    params_m, flops_g, side = TARGETS[arch]
    params = parameter_count(model)['']
    # within 0.1 M (B: 93.6455 M, which mmcv prints as "93.65 M"; the README says 93.7)
    assert abs(params / 1e6 - params_m) <= 0.1
    flops = analytic_flops(arch, side)
    assert abs(flops / 1e9 / flops_g - 1) < 0.03 and round(flops / 1e9, 1) == flops_g


def test_tool_backbone_only_and_conventions(flops):
    res = flops.get_flops(CFG['tiny'], shape=[64, 96], backbone_only=True,
                         cfg_options={'model.backbone.depth': 1})
    assert res['analysed'] == 'model.backbone(x)'
    assert res['input_shape'] == [1, 3, 64, 96] and res['shape_source'] == '--shape'
    T, C = 4 * 6, 192
    # backbone only: no GAP, no head; 4x6 grid differs from 14x14 -> pos-embed resize
    expected = (T * C * 768 + T * C + T * C + T * 13 * C * C + 4 * T * C + 29 * T * C
                + 4 * T * C)
    assert res['flops'] == expected
    fv = flops.get_flops(CFG['tiny'], shape=[64, 96], backbone_only=True, convention='fvcore',
                        cfg_options={'model.backbone.depth': 1})
    # fvcore: LayerNorm 5 per element (4 LNs), no conv bias, bicubic resize not counted
    assert fv['flops'] == expected + 4 * T * C * (5 - 2) - T * C - T * C
    assert fv['flops_bi_wkv'] == res['flops_bi_wkv'] == 29 * T * C


@pytest.mark.slow
def test_tool_full_size_large(flops):
    """The full VRWKV-L at 384 px through the tool (~30 s on 2 cores; S and B at full size
    are covered by the exact depth-2 check plus the formula)."""
    arch = 'large'
    res = flops.get_flops(CFG[arch])
    params_m, flops_g, side = TARGETS[arch]
    assert res['input_shape'] == [1, 3, side, side]
    assert res['flops'] == analytic_flops(arch, side)
    assert abs(res['params'] / 1e6 - params_m) <= 0.1
    assert abs(res['flops'] / 1e9 / flops_g - 1) < 0.03
