"""Tests of the VRWKV and VRWKV6 backbones and their layers (CPU, fast).

VRWKV6 is VRWKV with other blocks, so what both do is tested once, parametrised over the
family; the v6-only behaviour (heads, class token, the v6 mixer) has its own cases. The WKV6
op runs through its 'torch' backend unless a test names another; ``_manual_spatial_mix6``
recomputes the v6 mixer from the formula with the float64 'reference' op.

Expected architectures, parameter counts and key names are those of the official models:
OpenGVLab/Vision-RWKV, classification/configs/vrwkv{,6}/*.py (sizes),
classification/mmcls_custom/models/backbones/vrwkv.py and vrwkv6.py (layers and key names)
and the README's model tables (parameter counts, with the classification head).
"""
import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmvrwkv.models import VRWKV, VRWKV6, VRWKV6Adapter, VRWKVAdapter
from mmvrwkv.models.layers import (Block, Block6, ChannelMix, ChannelMix6, DropPath,
                                   PatchEmbed, SpatialMix, SpatialMix6, get_shift_fn, q_shift,
                                   q_shift_multihead, token_shift)
from mmvrwkv.ops import bi_wkv6_reference, bi_wkv_reference

#: The official architectures: (embed_dims, depth, num_heads (v6), init_values, post_norm,
#: key_norm, pos-embed grid side).
FACTS = {
    (VRWKV, 'tiny'): (192, 12, None, None, False, False, 14),
    (VRWKV, 'small'): (384, 12, None, 1.0, True, False, 14),
    (VRWKV, 'base'): (768, 12, None, 1e-5, True, False, 14),
    (VRWKV, 'large'): (1024, 24, None, 1e-5, True, True, 12),  # the 192-px 22K grid
    (VRWKV6, 'tiny'): (192, 12, 3, None, False, False, 14),
    (VRWKV6, 'small'): (384, 12, 6, 1e-5, True, False, 14),
    (VRWKV6, 'base'): (768, 12, 12, 1e-5, True, False, 14),
}
FAMILY_ARCHS = list(FACTS)
#: Parameters with the ImageNet-1k head (L: MLP head 1024 -> 3072 -> 1000), millions.
CLAIMED_PARAMS_M = {(VRWKV, 'tiny'): 6.2, (VRWKV, 'small'): 23.8, (VRWKV, 'base'): 93.7,
                    (VRWKV, 'large'): 334.9, (VRWKV6, 'tiny'): 7.6, (VRWKV6, 'small'): 27.7,
                    (VRWKV6, 'base'): 104.9}
FAMILIES = ('vrwkv', 'vrwkv6')


def family_arch_id(case):
    return f'{case[0].__name__}-{case[1]}' if isinstance(case, tuple) else None


def _expected_grid(h, w, p=16):
    return math.ceil(h / p), math.ceil(w / p)


def small_v6(**kw):
    """A 2-block, 64-channel (2 heads of 32) VRWKV6 on the 'torch' op backend."""
    args = dict(arch=dict(embed_dims=64, depth=2, num_heads=2), img_size=32,
                wkv_backend='torch')
    args.update(kw)
    return VRWKV6(**args)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize('size', [(224, 224), (32, 32), (64, 96), (100, 130), (17, 33),
                                  (16, 16), (16, 50)])
def test_tiny_forward_shapes(size):
    torch.manual_seed(0)
    model = VRWKV(arch='tiny', depth=2 if size != (224, 224) else 12).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0].shape == (2, 192, *_expected_grid(*size))
    assert torch.isfinite(outs[0]).all()


@pytest.mark.parametrize('cls, arch', FAMILY_ARCHS, ids=family_arch_id)
def test_every_arch_forward(cls, arch):
    torch.manual_seed(0)
    if cls is VRWKV:
        model = VRWKV(arch=arch, depth=2, out_indices=(0, 1))
    else:
        model = VRWKV6(arch=arch, depth=1, wkv_backend='torch')
    model.eval()
    C, _, H = FACTS[cls, arch][:3]
    assert model.embed_dims == C
    if cls is VRWKV6:
        assert model.layers[0].att.num_heads == H
        assert model.layers[0].att.time_faaaa.shape == (H, 64)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 48))
    assert [o.shape for o in outs] == [(1, C, 2, 3)] * len(model.out_indices)
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('cls, arch', FAMILY_ARCHS, ids=family_arch_id)
def test_arch_zoo_holds_the_official_sizes(cls, arch):
    C, depth, heads, init_values, post_norm, key_norm, side = FACTS[cls, arch]
    for name in (arch, arch[0], arch.capitalize()):
        with torch.device('meta'):
            m = cls(name)
        assert (m.embed_dims, m.depth, m.num_layers, m.hidden_rate) == (C, depth, depth, 4)
        assert (m.init_values, m.post_norm, m.key_norm) == (init_values, post_norm, key_norm)
        assert m.pos_embed.shape == (1, side * side, C) and len(m.layers) == depth
        assert hasattr(m.layers[0], 'gamma1') == (init_values is not None)
        assert getattr(m, 'num_heads', None) == heads


def test_arch_settings_and_overrides():
    tiny = VRWKV('t', depth=1)
    assert tiny.embed_dims == 192 and not tiny.post_norm and tiny.init_values is None
    assert not hasattr(tiny.layers[0], 'gamma1')
    assert tiny.pos_embed.shape == (1, 196, 192)

    small = VRWKV('Small', depth=1)
    assert small.post_norm and small.init_values == 1.0
    assert torch.equal(small.layers[0].gamma1, torch.ones(384))

    base = VRWKV('b', depth=1)
    assert base.init_values == 1e-5 and base.embed_dims == 768 and not base.key_norm

    with torch.device('meta'):
        large = VRWKV('l')
    assert large.depth == 24 and large.key_norm and large.embed_dims == 1024
    assert large.pos_embed.shape == (1, 144, 1024)  # 192-pixel grid of the released model
    assert large.layers[0].ffn.key_norm.normalized_shape == (4096,)

    # explicit arguments override the arch, including init_values=None (no layer scale)
    m = VRWKV('small', depth=2, embed_dims=64, post_norm=False, init_values=None,
              hidden_rate=2, img_size=64, key_norm=True)
    assert (m.embed_dims, m.depth, m.post_norm, m.init_values) == (64, 2, False, None)
    assert not hasattr(m.layers[0], 'gamma1') and m.layers[0].ffn.hidden_dims == 128
    assert m.pos_embed.shape == (1, 16, 64) and m.layers[1].att.key_norm is not None

    d = VRWKV(arch=dict(embed_dims=32, depth=3, init_values=0.1))
    assert d.embed_dims == 32 and d.depth == 3
    assert d.layers[2].gamma2[0].item() == pytest.approx(0.1)
    assert d.hidden_rate == 4 and not d.post_norm


def test_vrwkv6_arch_settings():
    with torch.device('meta'):
        tiny, small, base = VRWKV6('t'), VRWKV6('small'), VRWKV6('B')
    assert (tiny.post_norm, tiny.init_values, tiny.num_heads) == (False, None, 3)
    assert not hasattr(tiny.layers[0], 'gamma1')
    assert (small.post_norm, small.init_values, small.num_heads) == (True, 1e-5, 6)
    assert (base.post_norm, base.init_values, base.num_heads) == (True, 1e-5, 12)
    assert base.pos_embed.shape == (1, 196, 768) and base.depth == 12
    # overrides; the head count follows the width (64 channels per head) unless given
    m = VRWKV6('small', depth=1, embed_dims=128, init_values=None, post_norm=False)
    assert m.num_heads == 2 and m.layers[0].ffn.num_heads == 2 and not m.post_norm
    assert VRWKV6('tiny', depth=1, num_heads=6).layers[0].att.head_size == 32
    with pytest.raises(ValueError, match='arch must be one of'):
        VRWKV6('large')


def test_arch_errors():
    with pytest.raises(ValueError, match=r"arch must be one of .*'tiny'"):
        VRWKV(arch='huge')
    with pytest.raises(ValueError, match=r"missing the keys \['depth'\]"):
        VRWKV(arch=dict(embed_dims=32))
    with pytest.raises(ValueError, match='unknown keys'):
        VRWKV(arch=dict(embed_dims=32, depth=1, heads=3))
    with pytest.raises(TypeError, match='arch'):
        VRWKV(arch=3)


def test_vrwkv6_is_vrwkv_with_other_blocks():
    """VRWKV6 reuses VRWKV's construction and forward through its hooks (block type, block
    arguments, extra tokens, output) and states only the facts of its own family."""
    for name in ('forward', '__init__', '_build_layers', 'resize_pos_embed', '_check_input'):
        if name != '__init__':
            assert getattr(VRWKV6, name) is getattr(VRWKV, name), name
    assert VRWKV6.block_type is Block6 and VRWKV.block_type is Block
    for arch in ('tiny', 'small', 'base'):  # the sizes are VRWKV's
        v1, v6 = VRWKV.arch_zoo[arch], VRWKV6.arch_zoo[arch]
        own = ('num_heads', 'init_values')  # v6's own facts (small: layer scale 1e-5)
        assert {k: v for k, v in v6.items() if k not in own} == \
            {k: v for k, v in v1.items() if k not in own}
    assert VRWKV6.arch_zoo['t'] is VRWKV6.arch_zoo['tiny']


def test_vrwkv6_refuses_vrwkv_only_arguments():
    """channel_gamma / attn_direction do not exist in v6: a TypeError as for any unknown
    keyword, in Python's words, from VRWKV6 (and through the v6 adapter)."""
    for cls in (VRWKV6, VRWKV6Adapter):
        for name, value in (('channel_gamma', 0.25), ('attn_direction', 'bi'), ('heads', 2)):
            with pytest.raises(TypeError, match=rf"^VRWKV6\.__init__\(\) got an unexpected "
                                                rf"keyword argument '{name}'$"):
                cls('tiny', **{name: value})
    with pytest.raises(TypeError, match='positional'):
        VRWKV6('tiny', 224)  # only arch is positional


def _docstring_table(cls):
    """The arch table of ``cls``'s docstring: ``{arch: {column: value}}``."""
    lines = [line.strip() for line in cls.__doc__.splitlines()]
    rulers = [i for i, line in enumerate(lines) if re.fullmatch(r'=+( +=+)+', line)]
    head, body = lines[rulers[0] + 1].split(), lines[rulers[1] + 1:rulers[2]]
    parse = {'None': None, 'True': True, 'False': False}
    return {row.split()[0]: {c: parse[v] if v in parse else float(v) if '.' in v or 'e' in v
                             else int(v) for c, v in zip(head[1:], row.split()[1:])}
            for row in body}


@pytest.mark.parametrize('cls', [VRWKV, VRWKV6, VRWKVAdapter, VRWKV6Adapter],
                         ids=lambda c: c.__name__)
def test_docstring_table_is_the_arch_zoo(cls):
    """The documented architectures are those of ``arch_zoo`` (stated once, in code)."""
    table = _docstring_table(cls)
    assert sorted(table) == sorted(n for n in cls.arch_zoo if len(n) > 1)
    for arch, columns in table.items():
        for column, value in columns.items():
            assert cls.arch_zoo[arch][column] == value, (arch, column)
            assert cls.arch_zoo[arch[0]] is cls.arch_zoo[arch]


# ----------------------------------------------------------------------------- out_indices
#: Per family: a small model, out_indices as given / normalised, input and map shapes.
OUT_CASES = {
    'vrwkv': dict(build=lambda **kw: VRWKV(depth=4, embed_dims=32, **kw), depth=4,
                  idx=[0, -1, 2], norm=(0, 2, 3), x=(1, 3, 32, 32), map=(1, 32, 2, 2)),
    'vrwkv6': dict(build=lambda **kw: small_v6(final_norm=True, **kw), depth=2,
                   idx=[0, -1], norm=(0, 1), x=(2, 3, 64, 48), map=(2, 64, 4, 3)),
}


@pytest.mark.parametrize('family', FAMILIES)
def test_out_indices(family):
    case = OUT_CASES[family]
    torch.manual_seed(0)
    idx = list(case['idx'])
    model = case['build'](out_indices=idx).eval()
    assert idx == case['idx']  # caller's list untouched
    assert model.out_indices == case['norm']
    with torch.no_grad():
        outs = model(torch.randn(*case['x']))
    assert [o.shape for o in outs] == [case['map']] * len(case['norm'])
    # NCHW-contiguous, not channels-last views (mmcv's CPU RoIAlign misreads those)
    assert all(o.is_contiguous() for o in outs)
    depth = case['depth']
    assert case['build'](out_indices=-depth).out_indices == (0,)
    assert case['build'](out_indices=depth - 1).out_indices == (depth - 1,)
    for bad in (depth, -depth - 1, [0, depth], [], 'a', [1.5], None):
        with pytest.raises(ValueError, match='out_indices'):
            case['build'](out_indices=bad)


#: Per family: a small model returning the maps of its two blocks, its input, tokens per map.
NORM_CASES = {
    'vrwkv': dict(build=lambda **kw: VRWKV(depth=2, embed_dims=32, **kw),
                  x=(1, 3, 32, 32), tokens=(1, 4)),
    'vrwkv6': dict(build=small_v6, x=(2, 3, 64, 48), tokens=(2, 12)),
}


@pytest.mark.parametrize('family', FAMILIES)
def test_final_norm_applied_to_last_output(family):
    case = NORM_CASES[family]
    torch.manual_seed(0)
    model = case['build'](out_indices=(0, 1)).eval()
    with torch.no_grad():
        first, last = model(torch.randn(*case['x']))
    # Default LayerNorm (weight 1, bias 0): every token of the last map is normalised, the
    # tokens of the earlier map are not.
    tokens = last.flatten(2).transpose(1, 2)
    assert torch.allclose(tokens.mean(-1), torch.zeros(*case['tokens']), atol=1e-5)
    assert not torch.allclose(first.flatten(2).transpose(1, 2).mean(-1),
                              torch.zeros(*case['tokens']), atol=1e-3)
    no_norm = case['build'](final_norm=False)
    assert not hasattr(no_norm, 'ln1')


# ----------------------------------------------------------------------------- errors
_V1_BAD_ARGUMENTS = [
    (dict(patch_size=0), 'patch_size'), (dict(in_channels=0), 'in_channels'),
    (dict(drop_rate=1.5), 'drop_rate'), (dict(drop_path_rate=-0.1), 'drop_path_rate'),
    (dict(channel_gamma=0.3), 'channel_gamma'), (dict(shift_pixel=-1), 'shift_pixel'),
    (dict(shift_mode='x_shift'), 'shift_mode'), (dict(init_mode='zero'), 'init_mode'),
    (dict(interpolate_mode='cubic'), 'interpolate_mode'),
    (dict(attn_direction='left'), 'attn_direction'), (dict(hidden_rate=0), 'hidden_rate'),
    (dict(init_values='a'), 'init_values'), (dict(embed_dims=0), 'embed_dims'),
    (dict(depth=0), 'depth'), (dict(img_size=(1, 2, 3)), 'img_size'),
    (dict(wkv_backend='gpu'), 'wkv_backend'), (dict(img_size=8), 'img_size'),
]
_V6_BAD_ARGUMENTS = [
    (dict(num_heads=5), 'num_heads=5 must divide the channel count C=64'),
    (dict(num_heads=0), 'num_heads must be an int >= 1'),
    (dict(init_mode='local'), r"init_mode must be one of \('fancy',\)"),
    (dict(wkv_backend='gpu'), 'wkv_backend must be one of'),
    (dict(shift_mode='x_shift'), 'shift_mode must be one of'),
    (dict(shift_pixel=-1), 'shift_pixel'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=2), 'out_indices'),
    (dict(hidden_rate=0), 'hidden_rate'),
]


@pytest.mark.parametrize('family, kwargs, match',
                         [('vrwkv', k, m) for k, m in _V1_BAD_ARGUMENTS]
                         + [('vrwkv6', k, m) for k, m in _V6_BAD_ARGUMENTS])
def test_bad_arguments(family, kwargs, match):
    with pytest.raises(ValueError, match=match):
        if family == 'vrwkv':
            VRWKV(**{'depth': 1, 'embed_dims': 16, **kwargs})
        else:
            small_v6(**kwargs)


def test_shift_mode_error_lists_valid_values():
    with pytest.raises(ValueError, match=r"shift_mode must be one of .*'q_shift'.*'x'"):
        get_shift_fn('x')


@pytest.mark.parametrize('family', FAMILIES)
def test_bad_inputs(family):
    """Every input error is named, and names the class it is raised through: VRWKV6, not
    the VRWKV it inherits its checks from (issue 21)."""
    model = VRWKV(depth=1, embed_dims=16) if family == 'vrwkv' else small_v6()
    name = type(model).__name__
    with pytest.raises(ValueError, match=rf'^{name} expects images of shape \[B, C, H, W\]'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=rf'^{name} was built with in_channels=3'):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r'\(8, 32\) is smaller than one patch.*patch_size=16'):
        model(torch.randn(1, 3, 8, 32))
    # raw uint8 images (a missing data preprocessor) and an empty batch: named, not a
    # dtype mismatch deep in a conv or a reshape error
    with pytest.raises(TypeError, match=rf'^{name} expects floating-point images.*torch.uint8'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError,
                       match=rf'^{name} got an empty batch \(shape \(0, 3, 32, 32\)\)'):
        model(torch.randn(0, 3, 32, 32))


@pytest.mark.parametrize('call', [
    lambda m: m(torch.randn(3, 32, 32)),
    lambda m: m(torch.randn(1, 1, 32, 32)),
    lambda m: m(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)),
    lambda m: m(torch.randn(0, 3, 32, 32)),
    lambda m: m(torch.randn(1, 3, 8, 32)),
    lambda m: m.layers[0].att(torch.randn(1, 4, 64), (3, 2)),
    lambda m: m.layers[0].att(torch.randn(1, 4, 64), 4),
])
def test_error_messages_never_say_vrwkv(call):
    """Errors raised through VRWKV6 and its layers say VRWKV6 (or name the layer / op),
    never the VRWKV v1 backbone (issue 21)."""
    with pytest.raises((ValueError, TypeError)) as info:
        call(small_v6())
    assert not re.search(r'\bVRWKV\b', str(info.value)), str(info.value)


def test_num_heads_needed_for_other_widths():
    with pytest.raises(ValueError, match=r'num_heads must be given when embed_dims \(96\)'):
        VRWKV6(embed_dims=96, depth=1)
    with pytest.raises(ValueError, match='num_heads must be given'):
        VRWKV6(arch=dict(embed_dims=32, depth=1))


# ----------------------------------------------------------------------------- padding
def test_patch_embed_corner_padding():
    torch.manual_seed(0)
    pe = PatchEmbed(3, 8, 4)
    x = torch.randn(1, 3, 10, 7)
    tokens, grid = pe(x)
    assert grid == (3, 2) and tokens.shape == (1, 6, 8)
    padded = torch.zeros(1, 3, 12, 8)
    padded[..., :10, :7] = x
    ref = F.conv2d(padded, pe.projection.weight, pe.projection.bias, stride=4)
    assert torch.allclose(tokens, ref.flatten(2).transpose(1, 2), atol=1e-6)
    assert pe.projection.bias is not None


# ----------------------------------------------------------------------------- shifts
def _neighbour(grid, h, w, c):
    H, W = grid.shape[:2]
    return grid[h, w, c] if 0 <= h < H and 0 <= w < W else 0.0


@pytest.mark.parametrize('C, s', [(8, 1), (10, 1), (12, 2), (8, 5)])
def test_q_shift_quarters(C, s):
    H, W = 3, 4
    x = (torch.arange(H * W * C, dtype=torch.float32) + 1).view(1, H * W, C)
    out = q_shift(x, s, 0.25, (H, W))
    g, o = x.view(H, W, C), out.view(H, W, C)
    q = int(C * 0.25)
    for h in range(H):
        for w in range(W):
            for c in range(C):
                if c < q:
                    ref = _neighbour(g, h, w - s, c)      # from the left
                elif c < 2 * q:
                    ref = _neighbour(g, h, w + s, c)      # from the right
                elif c < 3 * q:
                    ref = _neighbour(g, h - s, w, c)      # from above
                elif c < 4 * q:
                    ref = _neighbour(g, h + s, w, c)      # from below
                else:
                    ref = g[h, w, c]                      # unchanged
                assert float(o[h, w, c]) == float(ref), (h, w, c)


def test_token_shift_and_none():
    x = torch.randn(2, 6, 4)
    y = token_shift(x, 1, 0.25, (2, 3))
    assert torch.equal(y[:, 0], torch.zeros(2, 4)) and torch.equal(y[:, 1:], x[:, :-1])
    y2 = token_shift(x, 2, 0.25, (2, 3))
    assert torch.equal(y2[:, :2], torch.zeros(2, 2, 4)) and torch.equal(y2[:, 2:], x[:, :-2])
    assert get_shift_fn('none')(x, 1, 0.25, (2, 3)) is x
    # mixers skip the interpolation for 'none' and shift_pixel=0
    for kw in (dict(shift_mode='none'), dict(shift_pixel=0)):
        assert not SpatialMix(8, 2, 0, **kw).with_shift and not ChannelMix(8, 2, 0, **kw).with_shift
    model = VRWKV(depth=2, embed_dims=16, shift_mode='token_shift').eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, 16, 2, 2)


# ----------------------------------------------------------------------------- mixers
def _manual_spatial_mix(m: SpatialMix, x, grid, causal):
    xx = q_shift(x, m.shift_pixel, m.channel_gamma, grid)
    xk = x * m.spatial_mix_k + xx * (1 - m.spatial_mix_k)
    xv = x * m.spatial_mix_v + xx * (1 - m.spatial_mix_v)
    xr = x * m.spatial_mix_r + xx * (1 - m.spatial_mix_r)
    T = x.shape[1]
    wkv = bi_wkv_reference(m.spatial_decay / T, m.spatial_first / T, m.key(xk), m.value(xv),
                           causal=causal).to(x.dtype)
    if m.key_norm is not None:
        wkv = m.key_norm(wkv)
    return m.output(torch.sigmoid(m.receptance(xr)) * wkv)


@pytest.mark.parametrize('direction', ['bi', 'uni'])
@pytest.mark.parametrize('key_norm', [False, True])
def test_spatial_mix_formula(direction, key_norm):
    torch.manual_seed(0)
    m = SpatialMix(16, 4, 1, key_norm=key_norm, attn_direction=direction)
    x = torch.randn(2, 12, 16)
    with torch.no_grad():
        out = m(x, (3, 4))
        ref = _manual_spatial_mix(m, x, (3, 4), causal=direction == 'uni')
    assert torch.allclose(out, ref, atol=1e-5)


def test_uni_differs_from_bi_in_backbone():
    torch.manual_seed(0)
    bi = VRWKV(depth=2, embed_dims=16).eval()
    uni = VRWKV(depth=2, embed_dims=16, attn_direction='uni').eval()
    uni.load_state_dict(bi.state_dict())
    assert all(layer.att.attn_direction == 'uni' for layer in uni.layers)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert not torch.allclose(bi(x)[0], uni(x)[0], atol=1e-4)


def test_channel_mix_formula():
    torch.manual_seed(0)
    m = ChannelMix(16, 4, 2, hidden_rate=2, key_norm=True)
    x = torch.randn(2, 12, 16)
    with torch.no_grad():
        xx = q_shift(x, 1, 0.25, (3, 4))
        xk = x * m.spatial_mix_k + xx * (1 - m.spatial_mix_k)
        xr = x * m.spatial_mix_r + xx * (1 - m.spatial_mix_r)
        h = m.key_norm(torch.relu(m.key(xk)) ** 2)
        ref = torch.sigmoid(m.receptance(xr)) * m.value(h)
        assert torch.allclose(m(x, (3, 4)), ref, atol=1e-5)


def _manual_spatial_mix6(m, x, res):
    """SpatialMix6 written out branch by branch, with the float64 reference op."""
    xx = q_shift_multihead(x, 1, 0.25, res, num_heads=m.num_heads) - x
    base = torch.tanh((x + xx * m.time_maa_x) @ m.time_maa_w1)
    mixed = {}
    for b, name in enumerate('wkvrg'):
        lora = base[..., 32 * b:32 * (b + 1)] @ m.time_maa_w2[b]
        mixed[name] = x + xx * (getattr(m, f'time_maa_{name}') + lora)
    w = m.time_decay + torch.tanh(mixed['w'] @ m.time_decay_w1) @ m.time_decay_w2
    y = bi_wkv6_reference(m.receptance(mixed['r']), m.key(mixed['k']), m.value(mixed['v']),
                          w, m.time_faaaa).float()
    if m.key_norm is not None:
        y = m.key_norm(y)
    B, T, C = x.shape
    y = F.group_norm(y.reshape(B * T, C), m.num_heads, m.ln_x.weight, m.ln_x.bias,
                     1e-5).view(B, T, C)
    return m.output(y * F.silu(m.gate(mixed['g'])))


@pytest.mark.parametrize('key_norm', [False, True])
# auto: the compiled CPU kernel when it is built
@pytest.mark.parametrize('backend', ['torch', 'reference', 'auto'])
def test_spatial_mix6_formula(key_norm, backend):
    torch.manual_seed(0)
    m = SpatialMix6(32, 4, 1, num_heads=2, key_norm=key_norm, wkv_backend=backend)
    with torch.no_grad():  # LoRA weights of a trained model, not the ~1e-4 init
        for p in (m.time_maa_w1, m.time_maa_w2, m.time_decay_w1, m.time_decay_w2):
            p.normal_(0, 0.3)
        m.ln_x.weight.uniform_(0.5, 1.5)
        m.ln_x.bias.normal_()
    x = torch.randn(2, 12, 32)
    with torch.no_grad():
        out = m(x, (3, 4))
        ref = _manual_spatial_mix6(m, x, (3, 4))
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_both_mixers_shift_inside_heads():
    """q_shift_multihead with the block's heads, not one C-wide head (= plain q_shift)."""
    torch.manual_seed(0)
    block = Block6(64, 2, 1, num_heads=2)
    x = torch.randn(1, 12, 64)
    per_head = q_shift_multihead(x, 1, 0.25, (3, 4), num_heads=2)
    one_head = q_shift_multihead(x, 1, 0.25, (3, 4), num_heads=1)
    assert not torch.allclose(per_head, one_head)
    assert torch.equal(block.att.shift(x, (3, 4)), per_head)
    assert torch.equal(block.ffn.shift(x, (3, 4)), per_head)
    with torch.no_grad():
        xk, _ = block.ffn.mix(x, (3, 4))
    assert torch.allclose(xk, torch.lerp(per_head, x, block.ffn.spatial_mix_k), atol=1e-6)


def test_no_shift_gives_plain_inputs():
    m = SpatialMix6(32, 2, 0, num_heads=1, shift_pixel=0)
    x = torch.randn(1, 4, 32)
    assert all(t is x for t in m.token_mix(x, (2, 2)))


# ----------------------------------------------------------------------------- class token
def test_cls_token():
    torch.manual_seed(0)
    plain = small_v6().eval()
    with_cls = small_v6(with_cls_token=True).eval()
    pair = small_v6(with_cls_token=True, output_cls_token=True).eval()
    assert 'cls_token' not in dict(plain.named_parameters())
    assert with_cls.cls_token.shape == (1, 1, 64)
    assert not with_cls.cls_token.any()  # zero-initialised
    with_cls.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():  # a trained token (a zero one adds nothing: k = v = 0)
        with_cls.cls_token.normal_()
    pair.load_state_dict(with_cls.state_dict())
    x = torch.randn(2, 3, 48, 32)
    with torch.no_grad():
        y_plain, y_cls, (fmap, cls) = plain(x)[0], with_cls(x)[0], pair(x)[0]
    assert y_cls.shape == y_plain.shape == fmap.shape == (2, 64, 3, 2)
    assert cls.shape == (2, 64)
    assert torch.equal(fmap, y_cls)
    assert not torch.allclose(y_cls, y_plain, atol=1e-4)  # the class token takes part in WKV6
    # the class token sits at the end and is not shifted: its mixes are itself, and the patch
    # tokens' mixes are those without it
    att = with_cls.layers[1].att
    tokens = torch.randn(2, 7, 64)
    with torch.no_grad():
        att.time_maa_w1.normal_()  # non-trivial LoRA mix
        mixes = att.token_mix(tokens, (2, 3))
        without = att.token_mix(tokens[:, :6], (2, 3))
        ffn_mixes = with_cls.layers[1].ffn.mix(tokens, (2, 3))
    for m, ref in zip(mixes, without):
        assert torch.equal(m[:, -1], tokens[:, -1])
        assert torch.allclose(m[:, :6], ref, atol=1e-6)
    for m in ffn_mixes:
        assert torch.equal(m[:, -1], tokens[:, -1])
    assert get_layer_depth_of(with_cls, 'backbone.cls_token') == 0
    with pytest.raises(ValueError, match='output_cls_token=True needs with_cls_token'):
        small_v6(output_cls_token=True)


def get_layer_depth_of(model, name):
    return model.get_layer_depth(name, prefix='backbone.')[0]


# ----------------------------------------------------------------------------- init modes
def test_fancy_init_formulas():
    C, L = 12, 6
    first = SpatialMix(C, L, 0)
    assert first.spatial_decay[0].item() == pytest.approx(-5.0)
    assert first.spatial_decay[-1].item() == pytest.approx(3.0)
    ln03 = math.log(0.3)
    assert first.spatial_first[:4].tolist() == pytest.approx([ln03, ln03 + 0.5, ln03 - 0.5, ln03])
    x = torch.arange(C) / C
    assert torch.allclose(first.spatial_mix_k.flatten(), x)          # r10 = 1
    assert torch.allclose(first.spatial_mix_r.flatten(), x ** 0.5)
    assert torch.allclose(first.spatial_mix_v.flatten(), x)          # r01 = 0

    layer = 3
    r01, r10 = layer / (L - 1), 1 - layer / L
    m = SpatialMix(C, L, layer)
    h = 5
    assert m.spatial_decay[h].item() == pytest.approx(-5 + 8 * (h / (C - 1)) ** (0.7 + 1.3 * r01))
    assert m.spatial_decay[0].item() == pytest.approx(-5.0)
    assert m.spatial_decay[-1].item() == pytest.approx(3.0)
    assert m.spatial_mix_v[0, 0, h].item() == pytest.approx((h / C) ** r10 + 0.3 * r01)
    assert m.spatial_mix_r[0, 0, h].item() == pytest.approx((h / C) ** (0.5 * r10))
    ffn = ChannelMix(C, L, layer)
    assert ffn.spatial_mix_k[0, 0, h].item() == pytest.approx((h / C) ** r10)
    assert torch.equal(ffn.spatial_mix_k, ffn.spatial_mix_r)
    # depth == 1 must not divide by zero
    one = VRWKV(depth=1, embed_dims=8)
    assert torch.isfinite(one.layers[0].att.spatial_mix_v).all()


def test_fancy_init_formulas_v6():
    C, L, H = 128, 6, 2
    layer = 2
    m = SpatialMix6(C, L, layer, num_heads=H)
    ffn = ChannelMix6(C, L, layer, num_heads=H)
    r01, r10 = layer / (L - 1), 1 - layer / L
    for i in (0, 1, 37, 127):
        x = i / C
        assert m.time_maa_x[0, 0, i].item() == pytest.approx(1 - x ** r10, abs=1e-6)
        assert m.time_maa_w[0, 0, i].item() == pytest.approx(1 - x ** r10, abs=1e-6)
        assert m.time_maa_k[0, 0, i].item() == pytest.approx(1 - x ** r10, abs=1e-6)
        assert m.time_maa_v[0, 0, i].item() == pytest.approx(1 - (x ** r10 + 0.3 * r01),
                                                             abs=1e-6)
        assert m.time_maa_r[0, 0, i].item() == pytest.approx(1 - x ** (0.5 * r10), abs=1e-6)
        assert m.time_maa_g[0, 0, i].item() == pytest.approx(1 - x ** (0.5 * r10), abs=1e-6)
        n = i / (C - 1)
        assert m.time_decay[0, 0, i].item() == pytest.approx(
            -6 + 5 * n ** (0.7 + 1.3 * r01), abs=1e-5)
        assert m.time_faaaa.flatten()[i].item() == pytest.approx(
            r01 * (1 - n) + 0.1 * ((i + 1) % 3 - 1), abs=1e-6)
        assert ffn.spatial_mix_k[0, 0, i].item() == pytest.approx(x ** r10, abs=1e-6)
    assert m.time_decay[0, 0, 0].item() == pytest.approx(-6.0)
    assert m.time_decay[0, 0, -1].item() == pytest.approx(-1.0)
    for p in (m.time_maa_w1, m.time_maa_w2, m.time_decay_w1, m.time_decay_w2):
        assert p.abs().max() <= 1e-4 and p.abs().max() > 1e-5 and p.std() > 0
    # the classifier-level init (Linear / LayerNorm) leaves these parameters alone
    assert torch.equal(m.ln_x.weight, torch.ones(C))


def test_local_global_init_and_kept_by_classifier_init():
    loc = SpatialMix(8, 2, 1, init_mode='local')
    for p in (loc.spatial_decay, loc.spatial_first, loc.spatial_mix_k, loc.spatial_mix_v,
              loc.spatial_mix_r):
        assert torch.equal(p, torch.ones_like(p))
    glob = ChannelMix(8, 2, 1, init_mode='global')
    assert torch.equal(glob.spatial_mix_k, torch.full((1, 1, 8), 0.5))
    g = SpatialMix(8, 2, 1, init_mode='global')
    assert torch.equal(g.spatial_decay, torch.zeros(8)) and torch.equal(g.spatial_mix_v,
                                                                         torch.full((1, 1, 8), 0.5))
    # A classifier-style init_cfg (Linear / LayerNorm) leaves the mixer parameters alone.
    model = VRWKV(depth=2, embed_dims=16, init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)])
    decay = model.layers[1].att.spatial_decay.clone()
    model.init_weights()
    assert torch.equal(model.layers[1].att.spatial_decay, decay)
    assert model.layers[0].att.key.weight.std().item() < 0.03
    assert torch.equal(model.pos_embed, torch.zeros_like(model.pos_embed))


# ----------------------------------------------------------------------------- blocks
def test_block_layer_scale_and_norms():
    b0 = Block(16, 3, 0, init_values=0.5, post_norm=True)
    b1 = Block(16, 3, 1)
    assert hasattr(b0, 'ln0') and not hasattr(b1, 'ln0')
    assert torch.equal(b0.gamma1, torch.full((16,), 0.5)) and not hasattr(b1, 'gamma1')
    # post-norm: a zero layer scale makes the block the identity after ln0
    b = Block(16, 3, 1, init_values=0.0, post_norm=True)
    x = torch.randn(1, 4, 16)
    assert torch.equal(b(x, (2, 2)), x)


def test_drop_path():
    dp = DropPath(0.5)
    x = torch.ones(1000, 3)
    assert torch.equal(dp.eval()(x), x)
    y = dp.train()(x)
    assert set(y.unique().tolist()) <= {0.0, 2.0} and abs(y.mean().item() - 1) < 0.15
    with pytest.raises(ValueError, match='drop_prob'):
        DropPath(1.0)


#: Per family: a model (``with_cp`` given by the test) with a drop-path ramp to 0.2, input.
CP_CASES = {
    'vrwkv': dict(build=lambda **kw: VRWKV(depth=3, embed_dims=32, drop_path_rate=0.2,
                                           out_indices=(1, 2), init_values=0.5, **kw),
                  x=(2, 3, 48, 32)),
    'vrwkv6': dict(build=lambda **kw: small_v6(drop_path_rate=0.2, **kw), x=(1, 3, 32, 32)),
}


@pytest.mark.parametrize('family', FAMILIES)
def test_with_cp_equivalence(family):
    """Gradient checkpointing recomputes each block once in backward, with the same
    DropPath masks: outputs and gradients equal those of the plain model."""
    case = CP_CASES[family]
    torch.manual_seed(0)
    ref = case['build']().train()
    cp = case['build'](with_cp=True).train()
    cp.load_state_dict(ref.state_dict())
    assert cp.layers[-1].drop_path.drop_prob == pytest.approx(0.2)  # the ramp's end
    x = torch.randn(*case['x'])
    calls = []
    for layer in cp.layers:  # count block bodies run: recomputed in backward under with_cp
        orig = layer._forward
        layer._forward = (lambda f: lambda *a: calls.append(1) or f(*a))(orig)
    grads, outs = [], []
    for model in (ref, cp):
        torch.manual_seed(1)
        o = model(x)
        sum(t.square().sum() for t in o).backward()
        outs.append(o)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert len(calls) == 2 * len(cp.layers)
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4), n


def _gradient_case(case):
    """(model in train mode, input shape): VRWKV of an arch at 32 channels, or a VRWKV6 with
    layer scale, key_norm and a class token."""
    if case == 'vrwkv6':
        model = small_v6(out_indices=(0, 1), init_values=0.5, key_norm=True,
                         with_cls_token=True).train()
        # The class token starts at zero: its k and v are then 0 and its own decay spans no
        # pair (it is the last token), so its exact gradient is 0 (the reference's too). Give
        # it a value, else only rounding noise of the op could make the gradient non-zero.
        with torch.no_grad():
            model.cls_token.normal_()
        return model, (2, 3, 48, 64)
    arch = case.split('-')[1]
    return VRWKV(arch=arch, depth=2, embed_dims=32, img_size=32,
                 out_indices=(0, 1)).train(), (2, 3, 48, 32)


@pytest.mark.parametrize('case', ['vrwkv-tiny', 'vrwkv-small', 'vrwkv-large', 'vrwkv6'])
def test_gradients_reach_every_parameter(case):
    torch.manual_seed(0)
    model, shape = _gradient_case(case)
    outs = model(torch.randn(*shape))  # another grid than the pos-embed's
    loss = sum((o * torch.randn_like(o)).sum() for o in outs)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('family', FAMILIES)
def test_layer_decay_ids(family):
    model = VRWKV(depth=2, embed_dims=32) if family == 'vrwkv' else small_v6()
    param = 'spatial_decay' if family == 'vrwkv' else 'time_maa_w1'
    count = model.num_layers + 2
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, count)
    assert model.get_layer_depth(f'backbone.layers.1.att.{param}', 'backbone.') == (2, count)
    assert model.get_layer_depth('backbone.ln1.weight', 'backbone.') == (count - 1, count)


def test_compile_matches_eager():
    torch.manual_seed(0)
    model = VRWKV6(arch=dict(embed_dims=32, depth=1, num_heads=1), img_size=32,
                   wkv_backend='torch').eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        eager = model(x)[0]
        compiled = torch.compile(model, backend='eager', fullgraph=True)(x)[0]
    assert torch.allclose(eager, compiled, atol=1e-5)


# ----------------------------------------------------------------------------- pos embed
def test_pos_embed_resize_and_cache(monkeypatch):
    torch.manual_seed(0)
    model = VRWKV(depth=1, embed_dims=8, img_size=64).eval()
    with torch.no_grad():
        model.pos_embed.normal_()
    grid = model.pos_embed.reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(3, 5), mode='bicubic', align_corners=False)
    ref = ref.flatten(2).transpose(1, 2)

    calls = []
    orig = model._interpolate_pos_embed
    monkeypatch.setattr(model, '_interpolate_pos_embed',
                        lambda *a: calls.append(a[-1]) or orig(*a))
    with torch.no_grad():
        first = model.resize_pos_embed((3, 5))
        assert torch.allclose(first, ref, atol=1e-6)
        assert model.resize_pos_embed((3, 5)) is first          # cached
        model(torch.randn(1, 3, 48, 80))                        # same grid: reused
        assert calls == [(3, 5)]
        assert model.resize_pos_embed((4, 4)) is model.pos_embed  # native grid: identity
        model.pos_embed.add_(1.0)                               # in-place change: recompute
        assert torch.allclose(model.resize_pos_embed((3, 5)), ref + 1.0, atol=1e-5)
        assert calls == [(3, 5), (3, 5)]
    # with gradients: never cached, differentiable
    out = model.resize_pos_embed((3, 5))
    assert out.requires_grad and out is not model.resize_pos_embed((3, 5))
    out.sum().backward()
    assert model.pos_embed.grad.abs().sum() > 0
    # casting drops the cache and follows the dtype
    model.double()
    with torch.no_grad():
        assert model.resize_pos_embed((3, 5)).dtype == torch.float64


#: Per family: a one-/two-block model of a given img_size, and the source / target sizes.
RESIZE_CASES = {
    'vrwkv': dict(build=lambda img: VRWKV(depth=1, embed_dims=8, img_size=img), src=64, dst=96),
    'vrwkv6': dict(build=lambda img: small_v6(img_size=img), src=64, dst=32),
}


@pytest.mark.parametrize('family', FAMILIES)
def test_pos_embed_checkpoint_resize_on_load(family):
    case = RESIZE_CASES[family]
    torch.manual_seed(0)
    src = case['build'](case['src'])
    with torch.no_grad():
        src.pos_embed.normal_()
    dst = case['build'](case['dst'])
    dst.load_state_dict(src.state_dict())
    s, d, C = case['src'] // 16, case['dst'] // 16, src.embed_dims
    assert dst.pos_embed.shape == (1, d * d, C)
    ref = F.interpolate(src.pos_embed.reshape(1, s, s, C).permute(0, 3, 1, 2), size=(d, d),
                        mode='bicubic', align_corners=False).flatten(2).transpose(1, 2)
    assert torch.allclose(dst.pos_embed, ref, atol=1e-6)


def test_pretrained_init_cfg(tmp_path):
    torch.manual_seed(0)
    src = VRWKV(depth=2, embed_dims=16, init_values=0.1)
    with torch.no_grad():
        src.pos_embed.normal_()
    ckpt = tmp_path / 'cls.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.state_dict().items()}}, ckpt)
    dst = VRWKV(depth=2, embed_dims=16, init_values=0.1, init_cfg=dict(
        type='Pretrained', checkpoint=str(ckpt), prefix='backbone.'))
    dst.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    # a checkpoint made for another pos-embed grid is resized while loading
    other = VRWKV(depth=2, embed_dims=16, init_values=0.1, img_size=160, init_cfg=dict(
        type='Pretrained', checkpoint=str(ckpt), prefix='backbone.'))
    other.init_weights()
    assert other.pos_embed.shape == (1, 100, 16)
    assert torch.allclose(other.pos_embed, src._interpolate_pos_embed(
        src.pos_embed.detach(), (14, 14), (10, 10)), atol=1e-6)
    assert torch.equal(other.layers[1].att.key.weight, src.layers[1].att.key.weight)


# ----------------------------------------------------------------------------- sizes / keys
_CLAIMED_PARAMS_M = dict(tiny=6.2, small=23.8, base=93.7, large=334.9)


# ----------------------------------------------------------------------------- sizes / keys
def _block_params(cls, C, layer_scale, key_norm):
    """Parameters of one block: v1 13 C^2 + 11 C, v6 14 C^2 + 464 C; + 2 C layer scale; v1
    key_norm + 10 C (the v6 archs have no key_norm)."""
    if cls is VRWKV:
        n = 13 * C * C + 11 * C + (10 * C if key_norm else 0)
    else:
        n = 14 * C * C + 464 * C
    return n + (2 * C if layer_scale else 0)


@pytest.mark.parametrize('cls, arch', FAMILY_ARCHS, ids=family_arch_id)
def test_param_counts(cls, arch):
    C, L, _, init_values, _, key_norm, side = FACTS[cls, arch]
    with torch.device('meta'):
        model = cls(arch=arch)
    stem = (C * 3 * 16 * 16 + C) + side * side * C + 2 * C + 2 * C  # patch, pos, ln0, ln1
    expected = L * _block_params(cls, C, init_values is not None, key_norm) + stem
    n = sum(p.numel() for p in model.parameters())
    assert n == expected
    head = 1024 * 3072 + 3072 + 3072 * 1000 + 1000 if arch == 'large' else C * 1000 + 1000
    assert abs((n + head) / 1e6 - CLAIMED_PARAMS_M[cls, arch]) <= 0.1


def _expected_keys(cls, depth, C, heads, gamma, key_norm, grid, hidden=4):
    """Every key of the official backbone state dict (without 'backbone.') and its shape."""
    shapes = {'patch_embed.projection.weight': (C, 3, 16, 16),
              'patch_embed.projection.bias': (C,), 'pos_embed': (1, grid, C),
              'layers.0.ln0.weight': (C,), 'layers.0.ln0.bias': (C,),
              'ln1.weight': (C,), 'ln1.bias': (C,)}
    for i in range(depth):
        p = f'layers.{i}.'
        for n in ('ln1', 'ln2'):
            shapes[p + n + '.weight'] = shapes[p + n + '.bias'] = (C,)
        if gamma:
            shapes[p + 'gamma1'] = shapes[p + 'gamma2'] = (C,)
        att = p + 'att.'
        if cls is VRWKV:
            shapes[att + 'spatial_decay'] = shapes[att + 'spatial_first'] = (C,)
            for n in 'kvr':
                shapes[att + f'spatial_mix_{n}'] = (1, 1, C)
            linears = ('key', 'value', 'receptance', 'output')
        else:
            for n in 'xwkvrg':
                shapes[att + f'time_maa_{n}'] = (1, 1, C)
            shapes.update({att + 'time_maa_w1': (C, 160), att + 'time_maa_w2': (5, 32, C),
                           att + 'time_decay': (1, 1, C), att + 'time_decay_w1': (C, 64),
                           att + 'time_decay_w2': (64, C), att + 'time_faaaa': (heads, 64),
                           att + 'ln_x.weight': (C,), att + 'ln_x.bias': (C,)})
            linears = ('key', 'value', 'receptance', 'gate', 'output')
        for n in linears:
            shapes[att + f'{n}.weight'] = (C, C)
        for n in 'kr':
            shapes[p + f'ffn.spatial_mix_{n}'] = (1, 1, C)
        shapes[p + 'ffn.key.weight'] = (hidden * C, C)
        shapes[p + 'ffn.receptance.weight'] = (C, C)
        shapes[p + 'ffn.value.weight'] = (C, hidden * C)
        if key_norm:
            shapes[att + 'key_norm.weight'] = shapes[att + 'key_norm.bias'] = (C,)
            shapes[p + 'ffn.key_norm.weight'] = shapes[p + 'ffn.key_norm.bias'] = (hidden * C,)
    return shapes


@pytest.mark.parametrize('cls, arch', FAMILY_ARCHS, ids=family_arch_id)
def test_state_dict_keys_and_shapes_are_official(cls, arch):
    C, _, heads, init_values, _, key_norm, _ = FACTS[cls, arch]
    for kn in sorted({key_norm, True}):
        with torch.device('meta'):
            model = cls(arch, depth=2, img_size=32, key_norm=kn)
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert got == _expected_keys(cls, 2, C, heads, init_values is not None, kn, 4)


# ----------------------------------------------------------------------------- registry
@pytest.mark.parametrize('cls', [VRWKV, VRWKV6], ids=lambda c: c.__name__)
def test_registry_mmengine_root(cls):
    from mmengine.registry import MODELS

    from mmvrwkv.registry import MODELS as OURS
    assert OURS.scope == 'mmvrwkv' and OURS.parent is MODELS
    model = MODELS.build(dict(type=f'mmvrwkv.{cls.__name__}', arch='tiny', depth=1))
    assert type(model) is cls
    # plain names resolve in our own scope (another test may have left a task scope current)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmvrwkv'):
        assert type(OURS.build(dict(type=cls.__name__, depth=1))) is cls


@pytest.mark.parametrize('pkg', ['mmpretrain', 'mmdet', 'mmseg'])
def test_registry_from_task_packages(pkg):
    registry = pytest.importorskip(f'{pkg}.registry')
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(pkg):
        model = registry.MODELS.build(dict(type='mmvrwkv.VRWKV', arch='tiny', depth=1))
        assert isinstance(model, VRWKV)
        assert DefaultScope.get_current_instance().scope_name == pkg


def test_mmpretrain_classifier():
    pytest.importorskip('mmpretrain')
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = dict(type='ImageClassifier',
               backbone=dict(type='mmvrwkv.VRWKV', arch='tiny', depth=2),
               neck=dict(type='GlobalAveragePooling'),
               head=dict(type='LinearClsHead', num_classes=10, in_channels=192),
               init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
                         dict(type='Constant', layer='LayerNorm', val=1., bias=0.)])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    model.init_weights()
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32), mode='tensor')
    assert logits.shape == (2, 10)


def test_import_keeps_default_scope():
    """Importing mmvrwkv (fresh process) neither creates nor switches a default scope."""
    code = (
        'from mmengine.registry import DefaultScope, init_default_scope\n'
        "init_default_scope('mmdet')\n"
        'before = dict(DefaultScope._instance_dict)\n'
        'import mmvrwkv, mmvrwkv.registry, mmvrwkv.models\n'
        "assert DefaultScope.get_current_instance().scope_name == 'mmdet'\n"
        'assert dict(DefaultScope._instance_dict) == before\n'
        "assert 'VRWKV' in mmvrwkv.registry.MODELS.module_dict\n")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize('name, build', [
    ('VRWKV', "dict(type='VRWKV', depth=1, embed_dims=16)"),
    ('VRWKV6', "dict(type='VRWKV6', arch=dict(embed_dims=16, depth=1, num_heads=1), "
               "wkv_backend='torch')")])
def test_backbone_imports_without_task_packages(name, build):
    """mmvrwkv.models.backbones needs only torch + mmengine (the GPU machines have no mm*)."""
    code = (
        'import sys\n'
        "for name in ('mmcv', 'mmpretrain', 'mmdet', 'mmseg', 'timm'):\n"
        '    sys.modules[name] = None  # makes any import of them fail\n'
        'import torch\n'
        f'from mmvrwkv.models.backbones import {name}\n'
        'from mmvrwkv.registry import MODELS\n'
        f'm = MODELS.build({build}).eval()\n'
        'with torch.no_grad():\n'
        '    assert m(torch.randn(1, 3, 40, 40))[0].shape == (1, 16, 3, 3)\n')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.mark.cuda
def test_cuda_matches_cpu():
    import copy
    torch.manual_seed(0)
    cpu = VRWKV(depth=2, embed_dims=64, out_indices=(0, 1), init_values=0.5,
                post_norm=True, with_cp=True).train()
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(2, 3, 64, 80)
    w = [torch.randn(2, 64, 4, 5) for _ in range(2)]
    for model, dev in ((cpu, 'cpu'), (gpu, 'cuda')):
        outs = model(x.to(dev))
        sum((o * t.to(dev)).sum() for o, t in zip(outs, w)).backward()
        if dev == 'cpu':
            ref = [o.detach() for o in outs]
        else:
            for a, b in zip(ref, outs):
                assert torch.allclose(a, b.cpu(), atol=1e-4, rtol=1e-3)
    for (n, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        assert torch.allclose(p.grad, q.grad.cpu(), atol=1e-3, rtol=1e-2), n
    # bf16 autocast runs end to end with finite outputs and gradients
    gpu.zero_grad(set_to_none=True)
    with torch.autocast('cuda', dtype=torch.bfloat16):
        outs = gpu(x.cuda())
    sum(o.float().square().mean() for o in outs).backward()
    assert all(torch.isfinite(o).all() for o in outs)
    assert all(torch.isfinite(p.grad).all() for p in gpu.parameters())
