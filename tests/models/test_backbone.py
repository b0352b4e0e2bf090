"""Tests of the VRWKV backbone and its layers (CPU, fast)."""
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmvrwkv.models import VRWKV
from mmvrwkv.models.layers import (Block, ChannelMix, DropPath, PatchEmbed, SpatialMix,
                                   get_shift_fn, q_shift, token_shift)
from mmvrwkv.ops import bi_wkv_reference

ARCHS = ('tiny', 'small', 'base', 'large')


def _expected_grid(h, w, p=16):
    return math.ceil(h / p), math.ceil(w / p)


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


@pytest.mark.parametrize('arch', ARCHS)
def test_every_arch_forward(arch):
    torch.manual_seed(0)
    model = VRWKV(arch=arch, depth=2, out_indices=(0, 1))
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 48))
    C = VRWKV.arch_zoo[arch]['embed_dims']
    assert [o.shape for o in outs] == [(1, C, 2, 3)] * 2
    assert all(torch.isfinite(o).all() for o in outs)


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


def test_arch_errors():
    with pytest.raises(ValueError, match=r"arch must be one of .*'tiny'"):
        VRWKV(arch='huge')
    with pytest.raises(ValueError, match=r"missing the keys \['depth'\]"):
        VRWKV(arch=dict(embed_dims=32))
    with pytest.raises(ValueError, match='unknown keys'):
        VRWKV(arch=dict(embed_dims=32, depth=1, heads=3))
    with pytest.raises(TypeError, match='arch'):
        VRWKV(arch=3)


# ----------------------------------------------------------------------------- out_indices
def test_out_indices():
    idx = [0, -1, 2]
    model = VRWKV(depth=4, embed_dims=32, out_indices=idx).eval()
    assert idx == [0, -1, 2]  # caller's list untouched
    assert model.out_indices == (0, 2, 3)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32))
    assert len(outs) == 3 and all(o.shape == (1, 32, 2, 2) for o in outs)
    # NCHW-contiguous, not channels-last views (mmcv's CPU RoIAlign misreads those)
    assert all(o.is_contiguous() for o in outs)
    assert VRWKV(depth=4, embed_dims=32, out_indices=-4).out_indices == (0,)
    assert VRWKV(depth=4, embed_dims=32, out_indices=3).out_indices == (3,)
    for bad in (4, -5, [0, 4], [], 'a', [1.5], None):
        with pytest.raises(ValueError, match='out_indices'):
            VRWKV(depth=4, embed_dims=32, out_indices=bad)


def test_final_norm_applied_to_last_output():
    torch.manual_seed(0)
    model = VRWKV(depth=2, embed_dims=32, out_indices=(0, 1)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))[1]
    tokens = out.flatten(2).transpose(1, 2)
    # Default LayerNorm (weight 1, bias 0): every token is normalised.
    assert torch.allclose(tokens.mean(-1), torch.zeros(1, 4), atol=1e-5)
    no_norm = VRWKV(depth=2, embed_dims=32, final_norm=False)
    assert not hasattr(no_norm, 'ln1')


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize('kwargs, name', [
    (dict(patch_size=0), 'patch_size'), (dict(in_channels=0), 'in_channels'),
    (dict(drop_rate=1.5), 'drop_rate'), (dict(drop_path_rate=-0.1), 'drop_path_rate'),
    (dict(channel_gamma=0.3), 'channel_gamma'), (dict(shift_pixel=-1), 'shift_pixel'),
    (dict(shift_mode='x_shift'), 'shift_mode'), (dict(init_mode='zero'), 'init_mode'),
    (dict(interpolate_mode='cubic'), 'interpolate_mode'),
    (dict(attn_direction='left'), 'attn_direction'), (dict(hidden_rate=0), 'hidden_rate'),
    (dict(init_values='a'), 'init_values'), (dict(embed_dims=0), 'embed_dims'),
    (dict(depth=0), 'depth'), (dict(img_size=(1, 2, 3)), 'img_size'),
    (dict(wkv_backend='gpu'), 'wkv_backend'), (dict(img_size=8), 'img_size'),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VRWKV(**{'depth': 1, 'embed_dims': 16, **kwargs})


def test_shift_mode_error_lists_valid_values():
    with pytest.raises(ValueError, match=r"shift_mode must be one of .*'q_shift'.*'x'"):
        get_shift_fn('x')


def test_bad_inputs():
    model = VRWKV(depth=1, embed_dims=16)
    with pytest.raises(ValueError, match=r'\[B, C, H, W\]'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match='in_channels=3'):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r'\(8, 32\).*patch_size=16'):
        model(torch.randn(1, 3, 8, 32))
    # raw uint8 images (a missing data preprocessor) and an empty batch: named, not a
    # dtype mismatch deep in a conv or a reshape error
    with pytest.raises(TypeError, match='floating-point images.*torch.uint8'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'empty batch \(shape \(0, 3, 32, 32\)\)'):
        model(torch.randn(0, 3, 32, 32))


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


def test_with_cp_equivalence():
    torch.manual_seed(0)
    ref = VRWKV(depth=3, embed_dims=32, drop_path_rate=0.2, out_indices=(1, 2),
                init_values=0.5).train()
    cp = VRWKV(depth=3, embed_dims=32, drop_path_rate=0.2, out_indices=(1, 2),
               init_values=0.5, with_cp=True).train()
    cp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 48, 32)
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
    assert len(calls) == 2 * 3
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize('arch', ['tiny', 'small', 'large'])
def test_gradients_reach_every_parameter(arch):
    torch.manual_seed(0)
    model = VRWKV(arch=arch, depth=2, embed_dims=32, img_size=32, out_indices=(0, 1)).train()
    outs = model(torch.randn(2, 3, 48, 32))  # another grid than the pos-embed's
    loss = sum((o * torch.randn_like(o)).sum() for o in outs)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


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


def test_pos_embed_checkpoint_resize_on_load():
    torch.manual_seed(0)
    src = VRWKV(depth=1, embed_dims=8, img_size=64)
    with torch.no_grad():
        src.pos_embed.normal_()
    dst = VRWKV(depth=1, embed_dims=8, img_size=96)
    dst.load_state_dict(src.state_dict())
    ref = F.interpolate(src.pos_embed.reshape(1, 4, 4, 8).permute(0, 3, 1, 2), size=(6, 6),
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


@pytest.mark.parametrize('arch', ARCHS)
def test_param_counts(arch):
    a = VRWKV.arch_zoo[arch]
    C, L = a['embed_dims'], a['depth']
    with torch.device('meta'):
        model = VRWKV(arch=arch)
    block = 13 * C * C + 11 * C
    block += 2 * C if a['init_values'] is not None else 0
    block += 10 * C if a['key_norm'] else 0
    grid = (a['img_size'] // 16) ** 2
    expected = L * block + (C * 3 * 16 * 16 + C) + grid * C + 2 * C + 2 * C
    n = sum(p.numel() for p in model.parameters())
    assert n == expected
    head = 1024 * 3072 + 3072 + 3072 * 1000 + 1000 if arch == 'large' else C * 1000 + 1000
    assert abs((n + head) / 1e6 - _CLAIMED_PARAMS_M[arch]) <= 0.1


def _expected_keys(depth, C, gamma, key_norm, hidden=4):
    shapes = {'patch_embed.projection.weight': (C, 3, 16, 16),
              'patch_embed.projection.bias': (C,), 'pos_embed': (1, 4, C),
              'layers.0.ln0.weight': (C,), 'layers.0.ln0.bias': (C,),
              'ln1.weight': (C,), 'ln1.bias': (C,)}
    for i in range(depth):
        p = f'layers.{i}.'
        for n in ('ln1', 'ln2'):
            shapes[p + n + '.weight'] = shapes[p + n + '.bias'] = (C,)
        if gamma:
            shapes[p + 'gamma1'] = shapes[p + 'gamma2'] = (C,)
        shapes[p + 'att.spatial_decay'] = shapes[p + 'att.spatial_first'] = (C,)
        for n in 'kvr':
            shapes[p + f'att.spatial_mix_{n}'] = (1, 1, C)
        for n in ('key', 'value', 'receptance', 'output'):
            shapes[p + f'att.{n}.weight'] = (C, C)
        for n in 'kr':
            shapes[p + f'ffn.spatial_mix_{n}'] = (1, 1, C)
        shapes[p + 'ffn.key.weight'] = (hidden * C, C)
        shapes[p + 'ffn.receptance.weight'] = (C, C)
        shapes[p + 'ffn.value.weight'] = (C, hidden * C)
        if key_norm:
            shapes[p + 'att.key_norm.weight'] = shapes[p + 'att.key_norm.bias'] = (C,)
            shapes[p + 'ffn.key_norm.weight'] = shapes[p + 'ffn.key_norm.bias'] = (hidden * C,)
    return shapes


@pytest.mark.parametrize('arch', ARCHS)
def test_state_dict_keys(arch):
    a = VRWKV.arch_zoo[arch]
    model = VRWKV(arch=arch, depth=2, embed_dims=16, img_size=32)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == _expected_keys(2, 16, a['init_values'] is not None, a['key_norm'])


# ----------------------------------------------------------------------------- registry
def test_registry_mmengine_root():
    from mmengine.registry import MODELS

    from mmvrwkv.registry import MODELS as OURS
    assert OURS.scope == 'mmvrwkv' and OURS.parent is MODELS
    model = MODELS.build(dict(type='mmvrwkv.VRWKV', arch='tiny', depth=1))
    assert isinstance(model, VRWKV)
    # plain names resolve in our own scope (another test may have left a task scope current)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmvrwkv'):
        assert isinstance(OURS.build(dict(type='VRWKV', depth=1)), VRWKV)


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


def test_backbone_imports_without_task_packages():
    """mmvrwkv.models.backbones needs only torch + mmengine (the GPU machines have no mm*)."""
    code = (
        'import sys\n'
        "for name in ('mmcv', 'mmpretrain', 'mmdet', 'mmseg', 'timm'):\n"
        '    sys.modules[name] = None  # makes any import of them fail\n'
        'import torch\n'
        'from mmvrwkv.models.backbones import VRWKV\n'
        'from mmvrwkv.registry import MODELS\n'
        "m = MODELS.build(dict(type='VRWKV', depth=1, embed_dims=16)).eval()\n"
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
