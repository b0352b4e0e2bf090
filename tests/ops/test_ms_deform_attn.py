"""Tests of the deformable sampling op ``mmvrwkv.ops.ms_deform_attn``: every backend against
the float64 definition (``reference``), gradients, dispatch of ``'auto'``, input checks.

Each test names the path it runs: ``grid_sample``, ``dense``, ``mmcv`` (its PyTorch function
on the CPU), ``auto``.
"""
import importlib

import pytest
import torch

from op_testing import forward_backward  # noqa: E402  (tests/ops/op_testing.py)

from mmvrwkv.ops.ms_deform_attn import (DENSE_MAX_ELEMENTS, choose_backend, ms_deform_attn,
                                        ms_deform_attn_dense, ms_deform_attn_flops,
                                        ms_deform_attn_grid_sample, ms_deform_attn_reference)

# the package module (the attribute mmvrwkv.ops.ms_deform_attn is the op function)
msda = importlib.import_module('mmvrwkv.ops.ms_deform_attn')
F64 = torch.float64
SHAPES = [[(4, 6), (2, 3), (1, 2)], [(5, 5)], [(3, 7), (1, 1)]]


def make_inputs(shapes, B=2, Q=9, nH=3, D=5, P=4, seed=0, requires_grad=False):
    """value, locations (some on pixel centres, a corner, an edge, far outside), weights."""
    g = torch.Generator().manual_seed(seed)
    S, L = sum(h * w for h, w in shapes), len(shapes)
    value = torch.randn(B, S, nH, D, dtype=F64, generator=g)
    loc = torch.rand(B, Q, nH, L, P, 2, dtype=F64, generator=g) * 1.6 - 0.3
    h, w = shapes[0]
    loc[0, 0, :, :, 0] = torch.tensor([0.5 / w, 0.5 / h], dtype=F64)  # a pixel centre
    loc[0, 1, :, :, 0] = 0.0  # the map's corner: three of four neighbours outside
    loc[0, 2, :, :, 0] = torch.tensor([1.0, 0.3], dtype=F64)  # right edge
    loc[B - 1, Q - 1] = -0.7  # far outside: all weights zero
    weights = torch.rand(B, Q, nH, L, P, dtype=F64, generator=g)
    return [t.requires_grad_(requires_grad) for t in (value, loc, weights)]


def outputs_and_grads(fn, value, loc, weights, grad):
    out, grads = forward_backward(fn, value, loc, weights, grad=grad)
    return [out, *grads]


def path(backend, shapes):
    return lambda v, p, a: ms_deform_attn(v, shapes, p, a, backend=backend)


@pytest.mark.parametrize('shapes', SHAPES)
@pytest.mark.parametrize('backend', ['grid_sample', 'dense', 'mmcv'])
def test_matches_reference(backend, shapes):
    """Path: grid_sample / dense / mmcv. Output and the three gradients equal those of the
    float64 definition; the far-outside query samples zeros."""
    if backend == 'mmcv':
        pytest.importorskip('mmcv.ops.multi_scale_deform_attn')
    value, loc, weights = make_inputs(shapes, requires_grad=True)
    grad = torch.randn(2, 9, 15, dtype=F64)
    ref = outputs_and_grads(path('reference', shapes), value, loc, weights, grad)
    got = outputs_and_grads(path(backend, shapes), value, loc, weights, grad)
    names = ('out', 'grad value', 'grad locations', 'grad weights')
    for name, r, x in zip(names, ref, got):
        if name == 'grad locations':  # the deliberate kinks (queries 0-2 of item 0, point 0)
            keep = torch.ones_like(r, dtype=torch.bool)  # are not differentiable: one-sided
            keep[0, :3, :, :, 0] = False  # derivatives differ by backend there
            r, x = r[keep], x[keep]
        torch.testing.assert_close(x, r, msg=lambda m: f'{backend} {name}: {m}')
    assert got[0][1, 8].abs().max() == 0


@pytest.mark.parametrize('shapes', SHAPES)
def test_dense_matches_grid_sample(shapes):
    """Paths: dense and grid_sample give the same output and all three gradients (float64),
    with points inside, on pixel centres and edges, and outside the maps."""
    torch.manual_seed(0)
    S, L = sum(h * w for h, w in shapes), len(shapes)
    value = torch.randn(2, S, 3, 5, dtype=F64, requires_grad=True)
    loc = torch.rand(2, 9, 3, L, 4, 2, dtype=F64) * 1.6 - 0.3
    h, w = shapes[0]
    loc[0, 0, :, :, 0] = torch.tensor([0.5 / w, 0.5 / h])  # a pixel centre of level 0
    loc[0, 1, :, :, 0] = 0.0  # the map's corner: three of four neighbours outside
    loc[0, 2, :, :, 0] = torch.tensor([1.0, 0.3])  # right edge
    loc[1, 0, :, :, :] = -0.7  # far outside: all weights zero
    loc.requires_grad_()
    weights = torch.rand(2, 9, 3, L, 4, dtype=F64, requires_grad=True)
    grad = torch.randn(2, 9, 15, dtype=F64)
    results = [outputs_and_grads(lambda v, p, a, fn=fn: fn(v, shapes, p, a), value, loc,
                                 weights, grad)
               for fn in (ms_deform_attn_grid_sample, ms_deform_attn_dense)]
    for ref, dense in zip(*results):
        torch.testing.assert_close(dense, ref)
    assert results[1][0][1, 0].abs().max() == 0  # the far-outside query samples zeros


def test_mmcv_pytorch_function_matches_grid_sample():
    """Path: mmcv (its PyTorch function) equals ours on the CPU."""
    pytest.importorskip('mmcv.ops.multi_scale_deform_attn')
    value, loc, weights = make_inputs(SHAPES[0])
    torch.testing.assert_close(ms_deform_attn(value, SHAPES[0], loc, weights, backend='mmcv'),
                               ms_deform_attn_grid_sample(value, SHAPES[0], loc, weights))


def test_dense_gradcheck():
    """Path: dense, gradcheck in float64 away from pixel-grid lines (where bilinear sampling
    is not differentiable)."""
    shapes = [(3, 4), (2, 2)]
    g = torch.Generator().manual_seed(0)
    value = torch.randn(1, 16, 2, 3, dtype=F64, generator=g, requires_grad=True)
    loc = (torch.rand(1, 5, 2, 2, 2, 2, dtype=F64, generator=g) * 0.8 + 0.1).requires_grad_()
    weights = torch.rand(1, 5, 2, 2, 2, dtype=F64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, p, a: ms_deform_attn_dense(v, shapes, p, a),
                                    (value, loc, weights))


def test_dense_rejects_mismatched_inputs_and_takes_empty_queries():
    """Path: dense (explicit) and auto with no query."""
    shapes = [(4, 6), (2, 3)]
    value = torch.randn(2, 30, 3, 5)
    with pytest.raises(ValueError, match='sampling_locations'):  # batch 1 vs value's 2
        ms_deform_attn_dense(value, shapes, torch.rand(1, 7, 3, 2, 4, 2),
                             torch.rand(1, 7, 3, 2, 4))
    with pytest.raises(ValueError, match='attention_weights'):
        ms_deform_attn_dense(value, shapes, torch.rand(2, 7, 3, 2, 4, 2),
                             torch.rand(2, 7, 3, 2, 3))
    with pytest.raises(ValueError, match='2 levels'):
        ms_deform_attn_dense(value, shapes, torch.rand(2, 7, 3, 1, 4, 2),
                             torch.rand(2, 7, 3, 1, 4))
    empty = ms_deform_attn(value, shapes, torch.rand(2, 0, 3, 2, 4, 2), torch.rand(2, 0, 3, 2, 4))
    assert empty.shape == (2, 0, 15)
    assert ms_deform_attn_dense(value, shapes, torch.rand(2, 0, 3, 2, 4, 2),
                                torch.rand(2, 0, 3, 2, 4)).shape == (2, 0, 15)


def test_front_checks_arguments():
    value = torch.randn(2, 30, 3, 5)
    loc, weights = torch.rand(2, 7, 3, 2, 4, 2), torch.rand(2, 7, 3, 2, 4)
    with pytest.raises(ValueError, match="backend must be one of .*got 'cuda'"):
        ms_deform_attn(value, [(4, 6), (2, 3)], loc, weights, backend='cuda')
    with pytest.raises(ValueError, match=r'hold 25 tokens, value has S=30'):
        ms_deform_attn(value, [(4, 6), (1, 1)], loc, weights)
    with pytest.raises(ValueError, match=r'value must be \[B, S, nH, D\]'):
        ms_deform_attn(value[0], [(4, 6), (2, 3)], loc, weights)


@pytest.mark.parametrize('dense_max,expected', [(DENSE_MAX_ELEMENTS, 'dense'), (0, 'other')])
def test_auto_dispatch_on_cpu(monkeypatch, dense_max, expected):
    """Path: auto. Small maps on the CPU take the dense form, larger ones (here: a threshold
    of 0) the grid_sample path (mmcv's or ours); both give the same result, also for float16
    inputs (computed in float32). While tracing it is always grid_sample."""
    calls = []
    real_dense = msda.ms_deform_attn_dense

    def spy(*args):
        calls.append('dense')
        return real_dense(*args)
    monkeypatch.setattr(msda, 'ms_deform_attn_dense', spy)
    shapes = [(4, 6), (2, 3)]
    g = torch.Generator().manual_seed(0)
    value = torch.randn(2, 30, 2, 4, generator=g)
    loc = torch.rand(2, 7, 2, 2, 4, 2, generator=g)
    weights = torch.rand(2, 7, 2, 2, 4, generator=g)
    out = ms_deform_attn(value, shapes, loc, weights, dense_max_elements=dense_max)
    assert calls == (['dense'] if expected == 'dense' else [])
    torch.testing.assert_close(out, ms_deform_attn_grid_sample(value, shapes, loc, weights))
    calls.clear()
    half = ms_deform_attn(value.half(), shapes, loc.half(), weights.half(),
                          dense_max_elements=dense_max)
    assert half.dtype == torch.float16 and calls == (['dense'] if expected == 'dense' else [])
    torch.testing.assert_close(half.float(), out, rtol=1e-2, atol=1e-2)
    calls.clear()
    traced = torch.jit.trace(lambda v: ms_deform_attn(v, shapes, loc, weights), (value,),
                             check_trace=False)
    assert calls == [] and 'grid_sampler' in str(traced.graph)


def test_choose_backend():
    """Path: auto's rule itself."""
    assert choose_backend('cpu', 100) == 'dense'
    assert choose_backend('cpu', DENSE_MAX_ELEMENTS + 1) in ('mmcv', 'grid_sample')
    assert choose_backend('cpu', 0) in ('mmcv', 'grid_sample')  # nothing to multiply
    assert choose_backend('cpu', 100, dense_max_elements=50) != 'dense'
    assert choose_backend('cuda', 100) in ('mmcv', 'grid_sample')


def test_reference_is_the_definition():
    """The reference itself, by hand: one point at a pixel centre reads that pixel; halfway
    between two pixels it averages them; beyond the edge half of it is zero padding."""
    value = torch.arange(6, dtype=F64).view(1, 6, 1, 1)  # one level 2 x 3, pixel i = i
    weights = torch.ones(1, 1, 1, 1, 1, dtype=F64)

    def at(x, y):
        loc = torch.tensor([x, y], dtype=F64).view(1, 1, 1, 1, 1, 2)
        return float(ms_deform_attn_reference(value, [(2, 3)], loc, weights))
    assert at(0.5 / 3, 0.25) == 0.0           # centre of pixel (0, 0)
    assert at(2.5 / 3, 0.75) == 5.0           # centre of pixel (row 1, col 2)
    assert at(1.0 / 3, 0.25) == 0.5           # between pixels 0 and 1
    assert at(3.0 / 3, 0.75) == 2.5           # right edge: half pixel 5, half padding


def test_flop_count_is_the_formula():
    """Path: auto while traced (grid_sample). mmengine's FlopAnalyzer counts the op at
    ms_deform_attn_flops: 4 per sampled value and channel, nothing for the weighted sum."""
    analysis = pytest.importorskip('mmengine.analysis')
    shapes = SHAPES[0]
    value, loc, weights = make_inputs(shapes, B=2, Q=9, nH=3, D=5, P=4)

    class Op(torch.nn.Module):
        def forward(self, v):
            return ms_deform_attn(v, shapes, loc, weights)

    analyzer = analysis.FlopAnalyzer(Op(), (value,))
    analyzer.unsupported_ops_warnings(False)
    analyzer.tracer_warnings('none')
    assert analyzer.by_operator() == {'grid_sampler': ms_deform_attn_flops(2, 9, 3, 5, 3, 4)}
    assert ms_deform_attn_flops(2, 9, 3, 5, 3, 4) == 4 * 2 * 9 * 3 * 5 * 3 * 4
