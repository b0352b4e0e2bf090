"""The token-shift-and-mix op (mmvrwkv.ops.token_shift) and the shift functions.

Paths, named in every test: 'reference' (explicit float64 gather, the oracle), 'torch' (the
shift functions + lerp, what the unfused modules compute), 'cpu' (compiled CPU kernel),
'host_cuda' (the CUDA driver built with g++ as a host emulation, kernels/token_shift/
cuda_host.cpp: the CUDA kernels' bodies on CPU tensors, no GPU needed), 'cuda'
(the CUDA kernel on a GPU, `cuda` marker).
"""
import io
import itertools
import warnings

import numpy as np
import pytest
import torch

from mmvrwkv.models.layers import TokenShift, q_shift, q_shift_multihead
from mmvrwkv.ops import token_shift_mix
from mmvrwkv.ops.backends import compiled_available
from mmvrwkv.ops.token_shift import (SHIFT_FUNCS, check_shift_config, quarter_split,
                                     resolve_backend, shift_function,
                                     token_shift_mix_reference)
from op_testing import forward_backward, load_host_build, rel_err

F32, F64 = torch.float32, torch.float64
MODES = ('q_shift', 'q_shift_multihead', 'token_shift', 'none')
HAVE_KERNELS = compiled_available('token_shift_mix')
needs_cpu = pytest.mark.skipif(not HAVE_KERNELS,
                               reason='mmvrwkv._ext without the token-shift kernels')
TOL = {F64: 1e-12, F32: 1e-5}
# (grid, C, num_heads, channel_gamma): odd grids, a single row / column, T = 1, C not
# divisible by 4, a gamma below 1/4 (unchanged channels in every head), several heads, heads
# too small for one channel per direction (q = 0 in q_shift_multihead: nothing moves).
CASES = [((3, 5), 12, 3, 0.25), ((1, 7), 10, 2, 0.25), ((7, 1), 13, 1, 0.2),
         ((1, 1), 8, 2, 0.25), ((4, 6), 16, 2, 0.125), ((2, 3), 6, 3, 0.25)]
SHIFTS = (0, 1, 2, 50)


def old_q_shift(x, shift_pixel, channel_gamma, patch_resolution):
    """Q-Shift as it was written before (slice assignment into a zero tensor): the oracle the
    pad/cat rewrite must reproduce exactly."""
    B, T, C = x.shape
    H, W = patch_resolution
    s = shift_pixel
    if s == 0:
        return x
    q = int(C * channel_gamma)
    g = x.reshape(B, H, W, C)
    out = torch.zeros_like(g)
    sw, sh = min(s, W), min(s, H)
    out[:, :, sw:, 0:q] = g[:, :, :W - sw, 0:q]
    out[:, :, :W - sw, q:2 * q] = g[:, :, sw:, q:2 * q]
    out[:, sh:, :, 2 * q:3 * q] = g[:, :H - sh, :, 2 * q:3 * q]
    out[:, :H - sh, :, 3 * q:4 * q] = g[:, sh:, :, 3 * q:4 * q]
    out[..., 4 * q:] = g[..., 4 * q:]
    return out.view(B, T, C)


def inputs(grid, C, dtype, M=3, B=2, seed=0):
    """x [B, T, C] and mix [M, C] with coefficients on both sides of 1/2 and outside [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, grid[0] * grid[1], C, generator=gen, dtype=F64)
    mix = torch.rand(M, C, generator=gen, dtype=F64) * 1.6 - 0.3
    return x.to(dtype), mix.to(dtype)


def kwargs_of(grid, mode, s, gamma, heads):
    return dict(patch_resolution=grid, shift_mode=mode, shift_pixel=s, channel_gamma=gamma,
                num_heads=heads)


def check_path(fn, dtype, what):
    """fn(x, mix, **kwargs) against the reference: values and the gradients of x and mix."""
    for grid, C, heads, gamma in CASES:
        x, mix = inputs(grid, C, dtype)
        for mode in MODES:
            for s in SHIFTS:
                kw = kwargs_of(grid, mode, s, gamma, heads)
                g = torch.randn((3,) + tuple(x.shape), dtype=F64)
                y, grads = forward_backward(lambda a, b: fn(a, b, **kw), x, mix, grad=g)
                y_ref, grads_ref = forward_backward(
                    lambda a, b: token_shift_mix_reference(a, b, **kw), x, mix, grad=g)
                assert y.dtype == dtype and y.shape == y_ref.shape
                for name, a, r in (('y', y, y_ref), ('gx', grads[0], grads_ref[0]),
                                   ('gmix', grads[1], grads_ref[1])):
                    assert rel_err(a, r, 1.0) <= TOL[dtype], (what, name, grid, C, mode, s)


# --------------------------------------------------------------------------------------
# the shift functions (path: torch)

@pytest.mark.parametrize('gamma', [0.25, 0.2, 0.1])
def test_q_shift_reproduces_slice_assignment_version(gamma):
    """Path: torch. The pad/cat q_shift gives exactly the old slice-assignment numbers."""
    for grid in [(3, 5), (1, 7), (7, 1), (1, 1), (4, 4)]:
        for C in (8, 10, 13):
            x = torch.randn(2, grid[0] * grid[1], C)
            for s in SHIFTS:
                assert torch.equal(q_shift(x, s, gamma, grid), old_q_shift(x, s, gamma, grid))


def test_q_shift_multihead_is_q_shift_per_head():
    """Path: torch. Each head of C / num_heads channels shifted on its own; num_heads=1 is
    q_shift; q_shift ignores num_heads."""
    x = torch.randn(2, 12, 24)
    for heads in (1, 2, 3, 4):
        per_head = torch.cat([q_shift(h.contiguous(), 1, 0.25, (3, 4))
                              for h in x.chunk(heads, dim=-1)], dim=-1)
        assert torch.equal(q_shift_multihead(x, 1, 0.25, (3, 4), num_heads=heads), per_head)
    assert torch.equal(q_shift(x, 1, 0.25, (3, 4), num_heads=3), q_shift(x, 1, 0.25, (3, 4)))
    assert not torch.equal(q_shift_multihead(x, 1, 0.25, (3, 4), num_heads=3),
                           q_shift(x, 1, 0.25, (3, 4)))


def test_multihead_quarters_inside_each_head():
    """Path: reference. Channel 0 of head 2 comes from the left neighbour, channel 16 of head 2
    (head size 64) from the right, as in VRWKV6."""
    C, heads = 192, 3
    x = torch.arange(2 * 3 * C, dtype=F64).reshape(1, 6, C)  # grid 2 x 3
    out = token_shift_mix_reference(x, torch.zeros(1, C), patch_resolution=(2, 3),
                                    shift_mode='q_shift_multihead', num_heads=heads)[0]
    t = 4  # row 1, column 1
    assert out[0, t, 128] == x[0, t - 1, 128]       # from the left
    assert out[0, t, 128 + 16] == x[0, t + 1, 144]  # from the right
    assert out[0, t, 128 + 32] == x[0, t - 3, 160]  # from above
    assert out[0, t, 128 + 48] == 0                 # from below: outside the grid


# --------------------------------------------------------------------------------------
# every path against the reference

@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
@pytest.mark.parametrize('backend', ['torch', pytest.param('cpu', marks=needs_cpu)])
def test_backend_matches_reference(backend, dtype):
    """Paths: torch / cpu vs reference, every mode, shift 0/1/2/50, odd grids, T = 1."""
    check_path(lambda a, b, **kw: token_shift_mix(a, b, backend=backend, **kw), dtype, backend)


@needs_cpu
@pytest.mark.parametrize('mode', MODES)
def test_cpu_wide_channel_runs(mode):
    """Path: cpu vs reference (fp64) with runs of one shift group longer than the CPU
    backward's 256-channel tile (C = 1100: q_shift quarters of 275 channels, token_shift one run
    of 1100): values and both gradients. And the fp32 forward equals the torch path bit for bit
    (the kernel's lerp computes both branches and selects like torch.lerp)."""
    grid, C = (2, 3), 1100
    kw = kwargs_of(grid, mode, 1, 0.25, 2 if mode == 'q_shift_multihead' else 1)
    x, mix = inputs(grid, C, F64)
    g = torch.randn((3,) + tuple(x.shape), dtype=F64)
    y, grads = forward_backward(lambda a, b: token_shift_mix(a, b, backend='cpu', **kw), x, mix,
                                grad=g)
    y_ref, grads_ref = forward_backward(lambda a, b: token_shift_mix_reference(a, b, **kw), x,
                                        mix, grad=g)
    for name, a, r in (('y', y, y_ref), ('gx', grads[0], grads_ref[0]),
                       ('gmix', grads[1], grads_ref[1])):
        assert rel_err(a, r, 1.0) <= TOL[F64], (name, mode)
    x32, mix32 = x.float(), mix.float()
    assert torch.equal(token_shift_mix(x32, mix32, backend='cpu', **kw),
                       token_shift_mix(x32, mix32, backend='torch', **kw))


@needs_cpu
@pytest.mark.parametrize('mode', MODES)
def test_cpu_gradcheck(mode):
    """Path: cpu, float64 gradcheck of x and mix."""
    x, mix = inputs((3, 5), 12, F64)
    kw = kwargs_of((3, 5), mode, 1, 0.25, 3)
    assert torch.autograd.gradcheck(
        lambda a, b: token_shift_mix(a, b, backend='cpu', **kw),
        (x.requires_grad_(), mix.requires_grad_()))


@needs_cpu
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cpu_low_precision(dtype):
    """Path: cpu with fp16/bf16 storage (fp32 math): within storage rounding of the reference."""
    x, mix = inputs((4, 6), 16, dtype)
    kw = kwargs_of((4, 6), 'q_shift', 1, 0.25, 1)
    g = torch.randn(3, 2, 24, 16, dtype=F64)
    y, grads = forward_backward(lambda a, b: token_shift_mix(a, b, backend='cpu', **kw),
                                x, mix, grad=g)
    y_ref, grads_ref = forward_backward(lambda a, b: token_shift_mix_reference(a, b, **kw),
                                        x, mix, grad=g.to(dtype))
    assert y.dtype == dtype and grads[1].dtype == dtype
    for a, r in zip((y,) + grads, (y_ref,) + grads_ref):
        assert rel_err(a, r, 1.0) < 2e-2


@needs_cpu
def test_cpu_noncontiguous_and_empty():
    """Path: cpu. A non-contiguous x (a transposed view) and an empty batch."""
    x, mix = inputs((3, 5), 12, F64)
    xt = x.transpose(0, 1).contiguous().transpose(0, 1)
    assert not xt.is_contiguous()
    kw = kwargs_of((3, 5), 'q_shift', 1, 0.25, 1)
    assert torch.equal(token_shift_mix(xt, mix, backend='cpu', **kw),
                       token_shift_mix(x, mix, backend='cpu', **kw))
    empty = x[:0].requires_grad_()
    y = token_shift_mix(empty, mix, backend='cpu', **kw)
    assert y.shape == (3, 0, 15, 12)
    y.sum().backward()
    assert empty.grad.shape == empty.shape


@needs_cpu
def test_cpu_mix_gradient_is_deterministic_across_threads():
    """Path: cpu. The mix gradient (per-block partials, fixed-order sum) does not depend on the
    thread count."""
    x, mix = inputs((14, 14), 32, F32, B=4)
    kw = kwargs_of((14, 14), 'q_shift', 1, 0.25, 1)
    g = torch.randn(3, 4, 196, 32)
    n = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(forward_backward(
                lambda a, b: token_shift_mix(a, b, backend='cpu', **kw), x, mix, grad=g)[1][1])
    finally:
        torch.set_num_threads(n)
    assert torch.equal(results[0], results[1])


@needs_cpu
def test_cpu_backward_saves_only_x_and_mix():
    """Path: cpu. Autograd keeps x and mix, no [B, T, C] intermediate (the shift is recomputed
    in the backward); the torch path keeps more."""
    x, mix = inputs((4, 6), 16, F32)
    x.requires_grad_()
    mix.requires_grad_()

    def saved_numel(backend):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t,
                                                      lambda t: t):
            token_shift_mix(x, mix, backend=backend, **kwargs_of((4, 6), 'q_shift', 1, 0.25, 1))
        return sum(sizes)

    assert saved_numel('cpu') == x.numel() + mix.numel()
    assert saved_numel('torch') > x.numel() + mix.numel()


# --------------------------------------------------------------------------------------
# the CUDA driver on the CPU (path: host_cuda)

@pytest.fixture(scope='module')
def host_cuda(tmp_path_factory):
    """The host build of the token-shift CUDA driver, as a Python module."""
    return load_host_build('token_shift', tmp_path_factory)


class HostCudaOp(torch.autograd.Function):
    """The host build's forward/backward as an autograd function, for check_path."""

    @staticmethod
    def forward(ctx, x, mix, host, geometry):
        ctx.save_for_backward(x, mix)
        ctx.host, ctx.geometry = host, geometry
        return host.forward(x, mix, *geometry)

    @staticmethod
    def backward(ctx, g):
        x, mix = ctx.saved_tensors
        gx, gmix = ctx.host.backward(x, mix, g.contiguous(), *ctx.geometry)
        return gx, gmix, None, None


def host_path(host):
    def fn(x, mix, patch_resolution, shift_mode, shift_pixel, channel_gamma, num_heads):
        C = x.shape[2]
        quad = shift_mode.startswith('q_shift')
        N, q = quarter_split(C, channel_gamma,
                             num_heads if shift_mode == 'q_shift_multihead' else 1)
        H, W = patch_resolution if quad else (1, x.shape[1])
        return HostCudaOp.apply(x, mix, host, (H, W, shift_mode, shift_pixel, N, q))
    return fn


@pytest.mark.parametrize('reverse', [False, True], ids=['ascending', 'descending'])
@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
def test_host_cuda_matches_reference(host_cuda, dtype, reverse):
    """Path: host_cuda (CUDA driver + core on CPU tensors), threads run in either order."""
    host_cuda.set_reverse_order(reverse)
    try:
        check_path(host_path(host_cuda), dtype, 'host_cuda')
    finally:
        host_cuda.set_reverse_order(False)


# --------------------------------------------------------------------------------------
# front: checks, backend choice, torch.compile

@pytest.mark.parametrize('bad,match', [
    (dict(num_heads=5, shift_mode='q_shift_multihead'), 'num_heads'),
    (dict(patch_resolution=(4, 4)), 'patch_resolution'),
    (dict(patch_resolution=None), 'patch_resolution'),
    (dict(shift_mode='q_shift_4d'), 'shift_mode'),
    (dict(shift_pixel=-1), 'shift_pixel'),
    (dict(channel_gamma=0.3), 'channel_gamma'),
    (dict(backend='gpu'), 'backend'),
])
def test_front_rejects_bad_arguments(bad, match):
    """Path: front (before any backend). Each error names the argument."""
    x, mix = inputs((3, 5), 12, F32)
    kw = dict(kwargs_of((3, 5), 'q_shift', 1, 0.25, 1), backend='torch')
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        token_shift_mix(x, mix, **kw)


def test_check_shift_config_names_the_caller():
    """Path: front. The op's own check of the shift settings, which callers (the layers) reuse
    with their name in the message."""
    check_shift_config('q_shift_multihead', 0, 0.25)
    assert all(shift_function(name) is fn for name, fn in SHIFT_FUNCS.items())
    for bad in ('x', ['q_shift'], None):
        with pytest.raises(ValueError, match=r'^TokenShift: shift_mode must be one of'):
            shift_function(bad, 'TokenShift')
    for args, match in ((('x', 1, 0.25), r"^TokenShift: shift_mode must be one of .*'q_shift'"),
                        (('q_shift', True, 0.25), r'^TokenShift: shift_pixel must be an int'),
                        (('q_shift', 1, 0.0), r'^TokenShift: channel_gamma must be in \(0, 1/4]')):
        with pytest.raises(ValueError, match=match):
            check_shift_config(*args, fn='TokenShift')


@pytest.mark.parametrize('grid,exc,match', [
    (15, TypeError, r'patch_resolution must be a pair \(H, W\) of ints, got 15 \(int\)'),
    ('35', TypeError, r"patch_resolution must be a pair \(H, W\) of ints, got '35' \(str\)"),
    ({3: 1, 5: 2}, TypeError, r'patch_resolution must be a pair .*\(dict\)'),
    ((3.0, 5), TypeError, r'got H = 3.0 \(float\)'),
    ((3, None), TypeError, r'got W = None'),
    ((True, 15), TypeError, r'got H = True \(bool\)'),
    (torch.tensor([3.0, 5.0]), TypeError, r'got H = tensor\(3.\)'),
    ((3,), ValueError, r'patch_resolution must be a pair \(H, W\), got 1 values'),
    ((3, 5, 1), ValueError, r'patch_resolution must be a pair \(H, W\), got 3 values'),
    ((-3, -5), ValueError, r'patch_resolution \(H, W\) must be positive, got \(-3, -5\)'),
    ((0, 15), ValueError, r'must be positive, got \(0, 15\)'),
    ((5, 5), ValueError, r'patch_resolution \(5, 5\) does not match the token count: '
                         r'H \* W = 25, but x has T = 15 tokens'),
    (None, ValueError, r'needs patch_resolution=\(H, W\), the patch grid of the 15 tokens'),
])
@pytest.mark.parametrize('backend', ['torch', pytest.param('cpu', marks=needs_cpu)])
def test_bad_patch_resolution_is_named(grid, exc, match, backend):
    """Path: front, and the shift functions the modules call (q_shift). Every bad
    patch_resolution (wrong type, non-positive -- (-3, -5) has the right product --, wrong
    product, wrong length) raises ValueError / TypeError naming it and what was expected,
    before any backend runs (no reshape error, no silent truncation of 3.5 to 3)."""
    x, mix = inputs((3, 5), 12, F32)
    kw = dict(kwargs_of(grid, 'q_shift', 1, 0.25, 1), backend=backend)
    with pytest.raises(exc, match=match):
        token_shift_mix(x, mix, **kw)
    with pytest.raises(exc, match=match.replace('token_shift_mix', 'q_shift')):
        q_shift(x, 1, 0.25, grid)


@pytest.mark.parametrize('grid', [[3, 5], torch.Size([3, 5]), (torch.tensor(3), torch.tensor(5)),
                                  torch.tensor([3, 5]), (np.int64(3), 5), np.array([3, 5])],
                         ids=['list', 'size', 'tensors', 'tensor', 'np_int', 'np_array'])
def test_patch_resolution_int_likes_accepted(grid):
    """Path: torch. Sequences of ints in the forms models and tracers pass them (the legacy
    tracer's sizes are 0-dim integer tensors) are accepted and give the (3, 5) result."""
    x, mix = inputs((3, 5), 12, F32)
    ref = token_shift_mix(x, mix, **kwargs_of((3, 5), 'q_shift', 1, 0.25, 1), backend='torch')
    y = token_shift_mix(x, mix, **kwargs_of(grid, 'q_shift', 1, 0.25, 1), backend='torch')
    assert torch.equal(y, ref)


SWEEP_MAGNITUDES = (1e-30, 1.0, 1e30)
SWEEP_MIX = ((0.0, 1.0), (-0.3, 1.3), (-10.0, 10.0))


@pytest.mark.parametrize('dtype', [F32, F64, torch.float16, torch.bfloat16],
                         ids=['fp32', 'fp64', 'fp16', 'bf16'])
def test_torch_path_sweep(dtype):
    """Path: torch vs the reference over every mode, three grids, |x| from 1e-30 to 1e30 (and
    up to the limit of the docstring: finfo.max / 2.1) and mix inside and outside [0, 1]:
    the error stays within 3 eps * max|x| * max(1, max|mix|) wherever the result is
    representable (the lerp's rounding; the shift moves values exactly)."""
    fmax = torch.finfo(dtype).max
    eps = torch.finfo(dtype).eps
    mags = [m for m in SWEEP_MAGNITUDES if m < fmax / 4] + [fmax / 2.1]
    g = torch.Generator().manual_seed(0)
    for (grid, C, heads), mode, mag, (lo, hi) in itertools.product(
            [((3, 5), 12, 3), ((7, 9), 16, 2), ((1, 1), 8, 2)], MODES, mags, SWEEP_MIX):
        x = ((torch.rand(2, grid[0] * grid[1], C, generator=g, dtype=F64) * 2 - 1) * mag)
        mix = lo + (hi - lo) * torch.rand(3, C, generator=g, dtype=F64)
        x, mix = x.to(dtype), mix.to(dtype)
        kw = kwargs_of(grid, mode, 1, 0.25, heads)
        ref = token_shift_mix_reference(x, mix, **kw)
        y = token_shift_mix(x, mix, backend='torch', **kw)
        ok = torch.isfinite(ref.to(dtype))           # results representable in x's dtype
        scale = x.double().abs().max().item() * max(1.0, mix.double().abs().max().item())
        err = (y.double()[ok] - ref[ok]).abs().max().item() / (scale or 1.0) if ok.any() else 0.0
        assert err <= 3 * eps, (mode, grid, mag, (lo, hi), err / eps)


@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
def test_torch_path_limit_is_half_the_float_range(dtype):
    """Path: torch. The documented limit: just inside max|x| <= finfo.max / 2 the result is
    exact; just outside, x - shift(x) overflows and a representable result comes out inf."""
    fmax = torch.finfo(dtype).max
    x = torch.tensor([[[1.0], [-1.0]]], dtype=dtype)       # two tokens, opposite signs
    mix = torch.full((1, 1), 0.5, dtype=dtype)              # exact result: 0 for token 1
    kw = dict(shift_mode='token_shift', shift_pixel=1)
    inside = token_shift_mix(x * (fmax / 2.05), mix, backend='torch', **kw)
    assert torch.isfinite(inside).all()
    assert inside[0, 0, 1, 0].abs() <= 2 * torch.finfo(dtype).eps * fmax / 2
    outside = token_shift_mix(x * (fmax / 1.9), mix, backend='torch', **kw)
    assert torch.isinf(outside[0, 0, 1, 0])


def test_front_rejects_bad_tensors():
    """Path: front. mix of the wrong shape / dtype, x not [B, T, C]."""
    x, mix = inputs((3, 5), 12, F32)
    kw = kwargs_of((3, 5), 'q_shift', 1, 0.25, 1)
    with pytest.raises(ValueError, match='mix'):
        token_shift_mix(x, mix[:, :5], **kw)
    with pytest.raises(TypeError, match='mix'):
        token_shift_mix(x, mix.double(), **kw)
    with pytest.raises(ValueError, match='x'):
        token_shift_mix(x[0], mix, **kw)
    with pytest.raises((ValueError, RuntimeError), match="backend 'cuda'"):
        token_shift_mix(x, mix, backend='cuda', **kw)  # CPU tensors (or no CUDA build)


def test_auto_backend():
    """Path: front. 'auto' picks the compiled kernel for the device, 'torch' while tracing."""
    cpu = torch.device('cpu')
    assert resolve_backend('auto', cpu) == ('cpu' if HAVE_KERNELS else 'torch')
    seen = []

    def fn(x):
        seen.append(resolve_backend('auto', x.device))
        return x

    torch.jit.trace(fn, torch.zeros(1), check_trace=False)
    assert seen == ['torch']


@needs_cpu
def test_compile_fullgraph_forward_and_backward():
    """Path: cpu under torch.compile(fullgraph=True): no graph break, eager's numbers."""
    x, mix = inputs((3, 5), 12, F32)
    kw = kwargs_of((3, 5), 'q_shift', 1, 0.25, 1)

    def fn(a, b):
        return token_shift_mix(a, b, backend='cpu', **kw).sum(0)

    g = torch.randn(2, 15, 12)
    y, grads = forward_backward(torch.compile(fn, fullgraph=True), x, mix, grad=g)
    y_eager, grads_eager = forward_backward(fn, x, mix, grad=g)
    assert torch.allclose(y, y_eager) and all(torch.allclose(a, b) for a, b in zip(grads, grads_eager))


# --------------------------------------------------------------------------------------
# TokenShift: fused vs unfused

def token_shift_pair(mode, heads=1):
    mods = [TokenShift(16, ('k', 'v', 'r'), shift_mode=mode, num_heads=heads, fused=f)
            for f in (False, None)]
    for name in ('k', 'v', 'r'):
        torch.nn.init.uniform_(getattr(mods[0], f'spatial_mix_{name}'), -0.2, 1.2)
    mods[1].load_state_dict(mods[0].state_dict())
    return mods


@needs_cpu
@pytest.mark.parametrize('mode', MODES)
def test_token_shift_fused_matches_unfused(mode):
    """Paths: TokenShift fused=None (cpu kernel) vs fused=False (torch): outputs and the
    gradients of x and of the three coefficients."""
    unfused, fused = token_shift_pair(mode, heads=2)
    assert unfused.fused_backend(torch.zeros(1)) is None
    assert fused.fused_backend(torch.zeros(1)) == 'cpu'
    x = torch.randn(2, 12, 16)
    results = []
    for mod in (unfused, fused):
        xi = x.clone().requires_grad_()
        outs = mod.mix(xi, (3, 4))
        sum((i + 1) * o.square() for i, o in enumerate(outs)).sum().backward()
        results.append((outs, xi.grad, [p.grad for p in mod.parameters()]))
    (o0, gx0, gp0), (o1, gx1, gp1) = results
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(o0, o1))
    assert torch.allclose(gx0, gx1, atol=1e-5)
    for a, b in zip(gp0, gp1):
        assert (a is None and b is None) if mode == 'none' else torch.allclose(a, b, atol=1e-4)


def test_token_shift_arguments():
    """Path: TokenShift. num_heads must divide embed_dims (named), fused is a bool or None,
    shift() returns the shifted tokens, an empty mix_names gives no inputs."""
    with pytest.raises(ValueError, match='num_heads'):
        TokenShift(10, ('k',), shift_mode='q_shift_multihead', num_heads=3)
    with pytest.raises(ValueError, match='fused'):
        TokenShift(12, ('k',), fused='yes')
    mod = TokenShift(12, (), shift_mode='q_shift_multihead', num_heads=3)
    x = torch.randn(1, 6, 12)
    assert torch.equal(mod.shift(x, (2, 3)), q_shift_multihead(x, 1, 0.25, (2, 3), num_heads=3))
    assert mod.mix(x, (2, 3)) == ()
    if not HAVE_KERNELS:
        with pytest.raises(RuntimeError, match='compiled'):
            TokenShift(12, ('k',), fused=True).fused_backend(x)


def test_token_shift_legacy_onnx_export():
    """Path: torch (export picks it). The legacy exporter (dynamo=False) runs through every
    shift (it died in index_put on the old slice assignments) and onnxruntime agrees."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnx')

    class Mixed(torch.nn.Module):
        def __init__(self, mode):
            super().__init__()
            self.shift = token_shift_pair(mode, heads=2)[1]

        def forward(self, x):
            k, v, r = self.shift.mix(x, (3, 5))
            return k + 2 * v + 3 * r

    for mode in ('q_shift', 'q_shift_multihead', 'token_shift'):
        model = Mixed(mode).eval()
        x = torch.randn(2, 15, 16)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(model, (x,), buf, dynamo=False)
        sess = ort.InferenceSession(buf.getvalue())
        y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert abs(y - model(x).detach().numpy()).max() < 1e-5, mode


# --------------------------------------------------------------------------------------
# CUDA (path: cuda, needs a GPU)

@pytest.mark.cuda
@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
def test_cuda_matches_reference(dtype):
    """Path: cuda vs reference, every mode and case of the CPU tests."""
    def fn(a, b, **kw):
        return token_shift_mix(a.cuda(), b.cuda(), backend='cuda', **kw).cpu()
    check_path(fn, dtype, 'cuda')


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_low_precision_and_auto(dtype):
    """Path: cuda with fp16/bf16 storage (fp32 math); 'auto' picks cuda for CUDA tensors."""
    x, mix = inputs((14, 14), 64, dtype)
    kw = kwargs_of((14, 14), 'q_shift_multihead', 1, 0.25, 2)
    assert resolve_backend('auto', torch.device('cuda')) == 'cuda'
    g = torch.randn(3, 2, 196, 64, dtype=F64)
    y, grads = forward_backward(lambda a, b: token_shift_mix(a, b, **kw).cpu(),
                                x.cuda(), mix.cuda(), grad=g)
    y_ref, grads_ref = forward_backward(lambda a, b: token_shift_mix_reference(a, b, **kw),
                                        x, mix, grad=g.to(dtype))
    for a, r in zip((y,) + grads, (y_ref,) + grads_ref):
        assert rel_err(a, r, 1.0) < 2e-2
