"""Tests of the VRWKV6 backbone and its layers (CPU, fast). The WKV6 op runs through its
'torch' backend unless a test names another; ``_manual_spatial_mix6`` recomputes the mixer
from the formula with the float64 'reference' op."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from mmvrwkv.models import VRWKV6, VRWKV6Adapter
from mmvrwkv.models.layers import Block6, ChannelMix6, SpatialMix6, q_shift_multihead
from mmvrwkv.ops import bi_wkv6_reference

ARCHS = {'tiny': (192, 3), 'small': (384, 6), 'base': (768, 12)}


def small_v6(**kw):
    """A 2-block, 64-channel (2 heads of 32) VRWKV6 on the 'torch' op backend."""
    args = dict(arch=dict(embed_dims=64, depth=2, num_heads=2), img_size=32,
                wkv_backend='torch')
    args.update(kw)
    return VRWKV6(**args)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize('arch', sorted(ARCHS))
def test_every_arch_forward(arch):
    torch.manual_seed(0)
    model = VRWKV6(arch=arch, depth=1, wkv_backend='torch').eval()
    C, H = ARCHS[arch]
    assert model.embed_dims == C and model.layers[0].att.num_heads == H
    assert model.layers[0].att.time_faaaa.shape == (H, 64)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 48))
    assert len(outs) == 1 and outs[0].shape == (1, C, 2, 3)
    assert torch.isfinite(outs[0]).all()


def test_arch_settings():
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


def test_out_indices_feature_maps():
    torch.manual_seed(0)
    idx = [0, -1]
    model = small_v6(out_indices=idx, final_norm=True).eval()
    assert idx == [0, -1] and model.out_indices == (0, 1)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 48))
    assert [o.shape for o in outs] == [(2, 64, 4, 3)] * 2
    assert all(o.is_contiguous() for o in outs)
    # the last map is after the final LayerNorm: every token normalised
    tokens = outs[1].flatten(2).transpose(1, 2)
    assert torch.allclose(tokens.mean(-1), torch.zeros(2, 12), atol=1e-5)
    assert not torch.allclose(outs[0].flatten(2).transpose(1, 2).mean(-1),
                              torch.zeros(2, 12), atol=1e-3)


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


# ----------------------------------------------------------------------------- state dict
def official_keys(depth, num_heads_ok=True, layer_scale=False, key_norm=False):
    """Backbone keys of the official VRWKV6 (facts §1.7 / §2), without 'backbone.'."""
    keys = {'patch_embed.projection.weight', 'patch_embed.projection.bias', 'pos_embed',
            'layers.0.ln0.weight', 'layers.0.ln0.bias', 'ln1.weight', 'ln1.bias'}
    for i in range(depth):
        p = f'layers.{i}.'
        keys |= {p + f'{n}.{t}' for n in ('ln1', 'ln2') for t in ('weight', 'bias')}
        if layer_scale:
            keys |= {p + 'gamma1', p + 'gamma2'}
        att = p + 'att.'
        keys |= {att + f'time_maa_{b}' for b in 'xwkvrg'}
        keys |= {att + n for n in ('time_maa_w1', 'time_maa_w2', 'time_decay',
                                   'time_decay_w1', 'time_decay_w2', 'time_faaaa',
                                   'ln_x.weight', 'ln_x.bias')}
        keys |= {att + f'{n}.weight' for n in ('key', 'value', 'receptance', 'gate', 'output')}
        ffn = p + 'ffn.'
        keys |= {ffn + 'spatial_mix_k', ffn + 'spatial_mix_r', ffn + 'key.weight',
                 ffn + 'receptance.weight', ffn + 'value.weight'}
        if key_norm:
            keys |= {att + 'key_norm.weight', att + 'key_norm.bias',
                     ffn + 'key_norm.weight', ffn + 'key_norm.bias'}
    return keys


@pytest.mark.parametrize('arch, layer_scale', [('tiny', False), ('small', True)])
def test_state_dict_keys_and_shapes_are_official(arch, layer_scale):
    with torch.device('meta'):
        model = VRWKV6(arch, depth=2)
    sd = model.state_dict()
    assert set(sd) == official_keys(2, layer_scale=layer_scale)
    C, H = ARCHS[arch]
    att = 'layers.1.att.'
    expected = {
        att + 'time_maa_x': (1, 1, C), att + 'time_maa_g': (1, 1, C),
        att + 'time_maa_w1': (C, 160), att + 'time_maa_w2': (5, 32, C),
        att + 'time_decay': (1, 1, C), att + 'time_decay_w1': (C, 64),
        att + 'time_decay_w2': (64, C), att + 'time_faaaa': (H, 64),
        att + 'gate.weight': (C, C), att + 'ln_x.weight': (C, ),
        'layers.1.ffn.key.weight': (4 * C, C), 'layers.1.ffn.value.weight': (C, 4 * C),
        'layers.1.ffn.spatial_mix_k': (1, 1, C),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    with torch.device('meta'):
        kn = VRWKV6(arch, depth=2, key_norm=True)
    assert set(kn.state_dict()) == official_keys(2, layer_scale=layer_scale, key_norm=True)


@pytest.mark.parametrize('arch', sorted(ARCHS))
def test_param_count_formula(arch):
    """Per block 14 C^2 + 464 C (+ 2 C layer scale), facts §4.2; embeddings and norms."""
    with torch.device('meta'):
        model = VRWKV6(arch)
    C = model.embed_dims
    block = 14 * C * C + 464 * C + (2 * C if model.init_values is not None else 0)
    stem = C * 3 * 16 * 16 + C + 196 * C + 2 * C + 2 * C  # patch embed, pos, ln0, ln1
    assert sum(p.numel() for p in model.parameters()) == 12 * block + stem


# ----------------------------------------------------------------------------- mixers
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
@pytest.mark.parametrize('backend', ['torch', 'reference', 'auto'])  # auto: compiled CPU kernel when built
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


# ----------------------------------------------------------------------------- init
def test_fancy_init_formulas():
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


# ----------------------------------------------------------------------------- training
def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = small_v6(out_indices=(0, 1), init_values=0.5, key_norm=True,
                     with_cls_token=True).train()
    # The class token starts at zero: its k and v are then 0 and its own decay spans no
    # pair (it is the last token), so its exact gradient is 0 (the reference's too). Give
    # it a value, else only rounding noise of the op could make the gradient non-zero.
    with torch.no_grad():
        model.cls_token.normal_()
    outs = model(torch.randn(2, 3, 48, 64))  # another grid than the pos-embed's
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_with_cp_and_drop_path():
    torch.manual_seed(0)
    ref = small_v6(drop_path_rate=0.2).train()
    cp = small_v6(drop_path_rate=0.2, with_cp=True).train()
    cp.load_state_dict(ref.state_dict())
    assert cp.layers[1].drop_path.drop_prob == pytest.approx(0.2)
    x = torch.randn(1, 3, 32, 32)
    grads = []
    for model in (ref, cp):
        torch.manual_seed(1)
        model(x)[0].square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4), n


def test_layer_decay_ids():
    model = small_v6()
    count = model.num_layers + 2
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, count)
    assert model.get_layer_depth('backbone.layers.1.att.time_maa_w1', 'backbone.') == (2, count)
    assert model.get_layer_depth('backbone.ln1.weight', 'backbone.') == (count - 1, count)


def test_pos_embed_resize_on_load():
    src = small_v6(img_size=64)
    dst = small_v6(img_size=32)
    dst.load_state_dict(src.state_dict())
    assert dst.pos_embed.shape == (1, 4, 64)


def test_compile_matches_eager():
    torch.manual_seed(0)
    model = VRWKV6(arch=dict(embed_dims=32, depth=1, num_heads=1), img_size=32,
                   wkv_backend='torch').eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        eager = model(x)[0]
        compiled = torch.compile(model, backend='eager', fullgraph=True)(x)[0]
    assert torch.allclose(eager, compiled, atol=1e-5)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize('kwargs, match', [
    (dict(num_heads=5), 'num_heads=5 must divide the channel count C=64'),
    (dict(num_heads=0), 'num_heads must be an int >= 1'),
    (dict(init_mode='local'), r"init_mode must be one of \('fancy',\)"),
    (dict(wkv_backend='gpu'), 'wkv_backend must be one of'),
    (dict(shift_mode='x_shift'), 'shift_mode must be one of'),
    (dict(shift_pixel=-1), 'shift_pixel'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(out_indices=2), 'out_indices'),
    (dict(hidden_rate=0), 'hidden_rate'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_v6(**kwargs)


def test_num_heads_needed_for_other_widths():
    with pytest.raises(ValueError, match=r'num_heads must be given when embed_dims \(96\)'):
        VRWKV6(embed_dims=96, depth=1)
    with pytest.raises(ValueError, match='num_heads must be given'):
        VRWKV6(arch=dict(embed_dims=32, depth=1))


def test_bad_inputs():
    """Every input error names VRWKV6, not the VRWKV it inherits its checks from (issue 21)."""
    model = small_v6()
    with pytest.raises(ValueError, match=r'^VRWKV6 expects images of shape \[B, C, H, W\]'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match='^VRWKV6 was built with in_channels=3'):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match='^VRWKV6 expects floating-point images'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match='^VRWKV6 got an empty batch'):
        model(torch.randn(0, 3, 32, 32))
    with pytest.raises(ValueError, match='smaller than one patch'):
        model(torch.randn(1, 3, 8, 32))


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


# ----------------------------------------------------------------------------- adapter
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
    cls = small_v6(arch=dict(embed_dims=64, depth=4, num_heads=2), img_size=32)
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
