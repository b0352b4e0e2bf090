"""The memory-saving training path of the mixers (mmvrwkv/models/layers/recompute.py).

Paths: ``recompute_linear`` vs plain ``F.linear`` of the same function; the mixers' recompute
path (``recompute = True``, eager training) vs their plain path (``recompute = False``) vs
their no-grad inference path (in-place ops), for every mixer (SpatialMix, ChannelMix,
SpatialMix6, ChannelMix6). Memory is checked by counting the bytes autograd saves
(deterministic), never by timing.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmvrwkv.models.backbones import VRWKV, VRWKV6
from mmvrwkv.models.layers import (Block, Block6, ChannelMix, ChannelMix6, SpatialMix,
                                   SpatialMix6)
from mmvrwkv.models.layers.mixer import Mixer
from mmvrwkv.models.layers.recompute import LinearStages, recompute_linear, use_recompute

#: The mixers of each family, all of which the model-level tests below run.
FAMILY_MIXERS = {VRWKV: {SpatialMix, ChannelMix}, VRWKV6: {SpatialMix6, ChannelMix6}}


@pytest.fixture
def plain_mixers(monkeypatch):
    """Call to switch every mixer to its plain (non-recompute) training path."""
    def switch(on: bool = True):
        monkeypatch.setattr(Mixer, 'recompute', not on)
    return switch


@pytest.fixture
def stage_modes(monkeypatch):
    """``{mixer class: set of LinearStages modes its forwards ran}``, filled as they run."""
    seen = {}
    stages = Mixer.stages

    def spy(self, x):
        plan = stages(self, x)
        seen.setdefault(type(self), set()).add(plan.mode)
        return plan
    monkeypatch.setattr(Mixer, 'stages', spy)
    return seen


def small_model(family, **kw):
    """A 2-block, 64-channel model of ``family`` (v6: 2 heads) on the 'torch' WKV backend."""
    arch = dict(embed_dims=64, depth=2)
    if family is VRWKV6:
        arch['num_heads'] = 2
    return family(arch=arch, img_size=32, patch_size=8, wkv_backend='torch', **kw)


def _grads(model, x, weight):
    model.zero_grad(set_to_none=True)
    y = model(x)[-1]
    (y * weight).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                        if p.grad is not None}


# ------------------------------------------------------------------ recompute_linear itself

def test_recompute_linear_matches_plain_linear_and_its_gradients():
    """path: recompute_linear vs F.linear(make_inputs(...)); grads of inputs, params, weights."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    scale = nn.Parameter(torch.randn(6, dtype=torch.float64))
    w1 = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)

    def make(a, b):
        return torch.sigmoid(a) * b * scale, torch.relu(a - b) ** 2

    def loss(outs):
        return sum((o * torch.arange(o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outs)

    leaves = (x, y, scale, w1, w2)
    ref = [F.linear(z, w) for z, w in zip(make(x, y), (w1, w2))]
    ref_grads = torch.autograd.grad(loss(ref), leaves)
    outs = recompute_linear(make, (x, y), (w1, w2), params=(scale, ))
    grads = torch.autograd.grad(loss(outs), leaves)
    for o, r in zip(outs, ref):
        torch.testing.assert_close(o, r)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_recompute_linear_gradcheck():
    """path: recompute_linear, float64 gradcheck over inputs, params and weights."""
    torch.manual_seed(1)
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, p, w: recompute_linear(lambda t: (torch.tanh(t) * p, ), (x, ), (w, ),
                                         params=(p, ))[0], (x, p, w))


def test_recompute_linear_frozen_weight_and_identity_inputs():
    """path: recompute_linear with a frozen weight (no grad for it) and make_inputs that
    returns its input unchanged (the mixers without a token shift)."""
    x = torch.randn(2, 3, 4, requires_grad=True)
    w = torch.randn(5, 4)  # frozen
    (out, ) = recompute_linear(lambda t: (t, ), (x, ), (w, ))
    out.sum().backward()
    torch.testing.assert_close(x.grad, w.sum(0).expand(2, 3, 4))


def test_recompute_linear_under_cpu_autocast_matches_plain():
    """path: recompute_linear under torch.autocast('cpu', bfloat16): the backward recomputes
    in the forward's autocast state, so gradients match the plain path's."""
    torch.manual_seed(2)
    x = torch.randn(2, 8, 16, requires_grad=True)
    w = torch.randn(12, 16, requires_grad=True)
    make = (lambda t: (torch.sigmoid(t) * t, ))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        ref = F.linear(make(x)[0], w)
        out = recompute_linear(make, (x, ), (w, ))[0]
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref)
    gref = torch.autograd.grad(ref.float().square().sum(), (x, w))
    gout = torch.autograd.grad(out.float().square().sum(), (x, w))
    for g, r in zip(gout, gref):
        assert g.dtype == r.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=2e-2, atol=2e-2)


def test_use_recompute_only_in_eager_training():
    """use_recompute: False without gradients or without any input that needs one."""
    x = torch.randn(2, requires_grad=True)
    assert use_recompute(x)
    assert not use_recompute(x.detach())
    with torch.no_grad():
        assert not use_recompute(x)


# ------------------------------------------------------------------ the mixers and the model

@pytest.mark.parametrize('kw', [
    dict(),
    dict(key_norm=True),
    dict(shift_pixel=0),
    dict(post_norm=True, init_values=0.1),
    dict(attn_direction='uni'),
    dict(with_cp=True),
], ids=lambda kw: ','.join(f'{k}={v}' for k, v in kw.items()) or 'default')
def test_recompute_path_equals_plain_path(kw, plain_mixers):
    """paths: VRWKV training forward + backward with the mixers' recompute path vs their
    plain path (float64): same output, same gradient for every parameter."""
    torch.manual_seed(0)
    model = VRWKV(arch='tiny', img_size=32, patch_size=8, depth=2, wkv_backend='torch',
                  **kw).double()
    model.train()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    weight = torch.randn(2, 192, 4, 4, dtype=torch.float64)
    y_re, g_re = _grads(model, x, weight)
    plain_mixers()
    y_pl, g_pl = _grads(model, x, weight)
    torch.testing.assert_close(y_re, y_pl)
    assert g_re.keys() == g_pl.keys() and len(g_re) > 20
    for name in g_pl:
        torch.testing.assert_close(g_re[name], g_pl[name], msg=name)


#: (family, model arguments, bit-identical?). Bit-identical where every input the recompute
#: path keeps has at most two gradient contributions (the sum of two does not depend on the
#: order); without a shift one tensor feeds all projections, and in a post-norm VRWKV6 block
#: the residual and the token mix both read x, so there the sums are ordered differently.
EQUAL_CASES = [
    (VRWKV, dict(), True),
    (VRWKV, dict(key_norm=True), True),
    (VRWKV, dict(post_norm=True, init_values=0.1), True),
    (VRWKV, dict(with_cp=True), True),
    (VRWKV, dict(shift_pixel=0), False),
    (VRWKV6, dict(), True),
    (VRWKV6, dict(key_norm=True), True),
    (VRWKV6, dict(with_cp=True), True),
    (VRWKV6, dict(with_cls_token=True), True),
    (VRWKV6, dict(shift_pixel=0), False),
    (VRWKV6, dict(post_norm=True, init_values=0.1), False),
]


@pytest.mark.parametrize('family,kw,exact', EQUAL_CASES, ids=lambda v: (
    v.__name__ if isinstance(v, type) else
    ','.join(f'{k}={x}' for k, x in v.items()) or 'default' if isinstance(v, dict) else
    'exact' if v else 'close'))
def test_every_mixer_recompute_path_equals_plain_path(family, kw, exact, plain_mixers,
                                                      stage_modes):
    """paths: training forward + backward of a float32 model of each family (every mixer
    class: FAMILY_MIXERS) with the mixers' recompute path vs their plain path: the same output
    and the same gradient for every parameter, bit for bit where ``exact``."""
    torch.manual_seed(0)
    model = small_model(family, **kw).train()
    x = torch.randn(2, 3, 32, 32)
    weight = torch.randn(2, 64, 4, 4)
    y_re, g_re = _grads(model, x, weight)
    assert stage_modes == {cls: {'recompute'} for cls in FAMILY_MIXERS[family]}
    plain_mixers()
    stage_modes.clear()
    y_pl, g_pl = _grads(model, x, weight)
    assert stage_modes == {cls: {'plain'} for cls in FAMILY_MIXERS[family]}
    assert g_re.keys() == g_pl.keys() and len(g_re) > 20
    tol = dict(rtol=0, atol=0) if exact else {}
    torch.testing.assert_close(y_re, y_pl, **tol)
    for name in g_pl:
        torch.testing.assert_close(g_re[name], g_pl[name], msg=name, **tol)


def test_block6_recompute_path_equals_plain_path(plain_mixers):
    """paths: one Block6 (SpatialMix6 + ChannelMix6, layer scale) in training, recompute vs
    plain: bit-identical output and gradients of the input and of every parameter."""
    torch.manual_seed(0)
    block = Block6(64, depth=12, layer_id=3, num_heads=2, init_values=0.1)
    x = torch.randn(2, 6 * 5, 64, requires_grad=True)
    gy = torch.randn(2, 6 * 5, 64)

    def run():
        block.zero_grad(set_to_none=True)
        x.grad = None
        y = block(x, (6, 5))
        y.backward(gy)
        return y.detach(), x.grad.clone(), {n: p.grad.clone() for n, p in block.named_parameters()}
    y_re, gx_re, g_re = run()
    plain_mixers()
    y_pl, gx_pl, g_pl = run()
    torch.testing.assert_close(y_re, y_pl, rtol=0, atol=0)
    torch.testing.assert_close(gx_re, gx_pl, rtol=0, atol=0)
    assert g_re.keys() == g_pl.keys()
    for name in g_pl:
        torch.testing.assert_close(g_re[name], g_pl[name], rtol=0, atol=0, msg=name)


def test_linear_stages_matrix_projection_matches_plain_matmul():
    """path: LinearStages 'recompute' with a ``[in, out]`` matrix projection (``z @ P``, the
    VRWKV6 decay LoRA) vs plain autograd of ``f(x) @ P``: bit-identical output and gradients
    (the weight gradient is formed as autograd forms it for P's layout)."""
    torch.manual_seed(3)
    x = torch.randn(2, 7, 12, requires_grad=True)
    P = torch.randn(12, 5, requires_grad=True)
    lin = nn.Linear(12, 4, bias=False)
    gy, gl = torch.randn(2, 7, 5), torch.randn(2, 7, 4)

    def make(t):
        return torch.tanh(t), torch.sigmoid(t)

    with torch.enable_grad():
        stages = LinearStages(True, x, P)
    assert stages.mode == 'recompute'
    outs = stages(make, (x, ), (P, lin))
    grads = torch.autograd.grad((outs[0] * gy).sum() + (outs[1] * gl).sum(), (x, P, lin.weight))
    z1, z2 = make(x)
    ref = (z1 @ P, lin(z2))
    ref_grads = torch.autograd.grad((ref[0] * gy).sum() + (ref[1] * gl).sum(),
                                    (x, P, lin.weight))
    for o, r in zip(outs + grads, ref + ref_grads):
        torch.testing.assert_close(o, r, rtol=0, atol=0)


@pytest.mark.parametrize('family', [VRWKV, VRWKV6], ids=lambda f: f.__name__)
def test_inference_path_equals_training_output(family, stage_modes):
    """paths: the no-grad forward (in-place activations, early frees) vs the grad-enabled
    forward of the same model in eval mode: same output, for every mixer."""
    torch.manual_seed(0)
    model = family(arch='tiny', img_size=32, patch_size=8, depth=2, key_norm=True)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        y_inf = model(x)[-1]
    assert stage_modes == {cls: {'inplace'} for cls in FAMILY_MIXERS[family]}
    y_grad = model(x)[-1]
    torch.testing.assert_close(y_inf, y_grad.detach(), rtol=0, atol=0)


def _saved_per_token(block, x, patch_resolution):
    """Bytes autograd saves for the backward of one block, in units of one [T, C] fp32 map."""
    storages = {}

    def pack(t):
        if t.layout == torch.strided and not isinstance(t, nn.Parameter):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    params = {p.untyped_storage().data_ptr() for p in block.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x, patch_resolution)
    B, T, C = x.shape
    return sum(n for k, n in storages.items() if k not in params) / (B * T * C * 4)


@pytest.mark.parametrize('make,plain_min,recompute_max', [
    (lambda: Block(64, depth=12, layer_id=3), 20, 13),
    (lambda: Block6(64, depth=12, layer_id=3, num_heads=2), 35, 16),
], ids=['Block', 'Block6'])
def test_recompute_block_keeps_half_the_activations(make, plain_min, recompute_max,
                                                    plain_mixers):
    """path: a block in training, recompute vs plain: the bytes saved for the backward
    (counted with saved_tensors_hooks, per token and channel) drop from ~24 to ~12 for Block
    (DeiT-T's block: ~17) and from ~40 to ~15 for Block6."""
    torch.manual_seed(0)
    block = make()
    x = torch.randn(1, 16 * 16, 64, requires_grad=True)
    saved_recompute = _saved_per_token(block, x, (16, 16))
    plain_mixers()
    saved_plain = _saved_per_token(block, x, (16, 16))
    assert saved_plain > plain_min, saved_plain
    assert saved_recompute < recompute_max, saved_recompute
