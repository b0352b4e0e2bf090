"""Tests of the bidirectional WKV6 op (formula in mmvrwkv/ops/bi_wkv6/reference.py): every
backend against the float64 O(T^2) reference (values and the gradients of r, k, v, w, u),
gradcheck, lengths 1 / 257 / 1025 / 16384, odd and full-size heads, the variants that decay by
the end tokens, extreme values, the 'torch' path over the whole range of w (section 2b, with
its compile and dynamo-export checks), input checks, torch.compile, jit.trace, ONNX export,
CUDA.

Paths. 'cpu': the compiled CPU kernel (kernels/bi_wkv6/cpu.cpp: column view for y and grad
v, row view with checkpoints every ~sqrt(T) tokens for grad r, k, w, u; SIMD packs of 16
(fp32) / 8 (fp64) channels (64 bytes on every CPU), the rest of a head by the single-channel items of the
core kernels/bi_wkv6/core.h: N below the lane count runs only those, N = 64 only blocks;
section 3b). 'torch': the chunked PyTorch path (chunks of 32 tokens; T = 257 and 1025 cross
several chunks). 'reference': the float64 pair sum. 'cuda' (marked `cuda`):
the CUDA driver of the same core.

Error measure (tests/ops/op_testing.py): ``max|x - ref| / max(max|ref|, floor)``; no floor
for outputs, ``GRAD_FLOOR`` for gradients.
"""
import functools
import math

import pytest
import torch

from mmvrwkv.ops import available_backends, bi_wkv6, bi_wkv6_reference
from mmvrwkv.ops.backends import compiled_available

from op_testing import assert_errors, errors, forward_backward, rel_err  # noqa: E402

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover
    HAVE_HYPOTHESIS = False

F32, F64 = torch.float32, torch.float64
#: The issue's targets for fp32 (forward 1e-5, gradients 1e-4); fp64 near round-off.
TOL = {F32: {'y': 1e-5, 'gr': 1e-4, 'gk': 1e-4, 'gv': 1e-4, 'gw': 1e-4, 'gu': 1e-4},
       F64: 1e-10}
NAMES = ('gr', 'gk', 'gv', 'gw', 'gu')

needs_compiled = pytest.mark.skipif(not compiled_available('bi_wkv6'),
                                    reason='mmvrwkv._ext with the bi_wkv6 kernels not built')
BACKENDS = [pytest.param('cpu', marks=needs_compiled), 'torch']


def make_inputs(B, T, H, N, dtype=F32, seed=0, w_range=(-3.0, 1.0), scale=1.0, device='cpu'):
    """r, k, v, w [B, T, H*N], u [H, N], grad_y [B, T, H*N]; w uniform in w_range."""
    g = torch.Generator().manual_seed(seed)
    C = H * N
    r, k, v, gy = (scale * torch.randn(B, T, C, generator=g, dtype=F64) for _ in range(4))
    lo, hi = w_range
    w = lo + (hi - lo) * torch.rand(B, T, C, generator=g, dtype=F64)
    u = torch.randn(H, N, generator=g, dtype=F64)
    return tuple(x.to(device=device, dtype=dtype) for x in (r, k, v, w, u, gy))


@functools.lru_cache(maxsize=None)
def reference_case(B, T, H, N, seed=0, w_range=(-3.0, 1.0), scale=1.0):
    """float64 inputs and the reference's y and five gradients (cached across tests)."""
    *xs, gy = make_inputs(B, T, H, N, F64, seed, w_range, scale)
    y, grads = forward_backward(bi_wkv6_reference, *xs, grad=gy)
    return xs, gy, y, grads


def check_backend(backend, B, T, H, N, dtype, seed=0, w_range=(-3.0, 1.0), scale=1.0, tol=None):
    xs, gy, y_ref, g_ref = reference_case(B, T, H, N, seed, w_range, scale)
    y, grads = forward_backward(functools.partial(bi_wkv6, backend=backend),
                                *(x.to(dtype) for x in xs), grad=gy.to(dtype))
    assert y.dtype == dtype and y.shape == (B, T, H * N)
    assert_errors(errors(y, grads, y_ref, g_ref, NAMES), tol or TOL[dtype],
                  f'{backend} B={B} T={T} H={H} N={N} {dtype}')


# --------------------------------------------------------------------------------------
# 1. the reference itself: an independent pair-by-pair product, and the wrong variants
# --------------------------------------------------------------------------------------


def brute_force(r, k, v, w, u, between):
    """The formula with explicit products over the tokens m that ``between(s, t)`` lists."""
    B, T, C = k.shape
    H, N = u.shape
    d = torch.exp(-torch.exp(w.double()))
    y = torch.zeros(B, T, C, dtype=F64)
    for b in range(B):
        for t in range(T):
            for s in range(T):
                if s == t:
                    weight = u.double().reshape(C)
                else:
                    ms = list(between(s, t))
                    weight = d[b, ms].prod(0) if ms else torch.ones(C, dtype=F64)
                a = (r[b, t] * weight * k[b, s]).reshape(H, N).sum(-1)        # [H]
                y[b, t] += (a[:, None] * v[b, s].reshape(H, N)).reshape(C)
    return y


def strictly_between(s, t):
    return range(min(s, t) + 1, max(s, t))


def with_source_end(s, t):
    """The wrong variant prod_{s <= m < t} (s < t) and its mirror: the source token decays."""
    return range(s, t) if s < t else range(t + 1, s + 1)


def with_target_end(s, t):
    """The wrong variant prod_{s < m <= t} (s < t) and its mirror: the target token decays."""
    return range(s + 1, t + 1) if s < t else range(t, s)


def test_reference_is_the_strictly_between_product():
    """Path: reference vs. explicit products."""
    r, k, v, w, u, _ = make_inputs(2, 9, 2, 3, F64, seed=3)
    torch.testing.assert_close(bi_wkv6_reference(r, k, v, w, u),
                               brute_force(r, k, v, w, u, strictly_between), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('backend', BACKENDS + ['reference'])
def test_end_token_decay_variants_differ(backend):
    """Paths: every backend. The op matches the strictly-between product and differs clearly
    from the two variants that also apply the decay of an end token (s <= m < t, s < m <= t)."""
    r, k, v, w, u, _ = make_inputs(1, 12, 2, 4, F64, seed=5, w_range=(-1.5, 0.5))
    y = bi_wkv6(r, k, v, w, u, backend=backend)
    assert rel_err(y, brute_force(r, k, v, w, u, strictly_between)) < 1e-10
    for wrong in (with_source_end, with_target_end):
        assert rel_err(y, brute_force(r, k, v, w, u, wrong)) > 0.05, wrong.__name__


# --------------------------------------------------------------------------------------
# 2. backends against the reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
@pytest.mark.parametrize('B,T,H,N', [
    (2, 37, 2, 3),    # odd N, two heads, several torch chunks
    (1, 1, 1, 5),     # T = 1: only the bonus
    (1, 257, 1, 5),   # T = 257 (the original kernel's limit + 1), odd N
    (1, 70, 1, 64),   # N = 64 of the released models
    (2, 20, 3, 1),    # N = 1
], ids=['odd_n', 't1', 't257', 'n64', 'n1'])
def test_backend_matches_reference(backend, dtype, B, T, H, N):
    """Paths: 'cpu' compiled kernel / 'torch' chunked path, values and the five gradients."""
    check_backend(backend, B, T, H, N, dtype)


@pytest.mark.parametrize('backend', BACKENDS)
def test_backend_matches_reference_t1025(backend):
    """Paths: 'cpu' (32 checkpoint chunks of 33 tokens, the last one partial) / 'torch'
    (33 chunks of 32): T = 1025 in fp32 with slow decays, so pairs far apart still count."""
    check_backend(backend, 1, 1025, 1, 3, F32, w_range=(-8.0, -2.0))


@pytest.mark.parametrize('backend', BACKENDS)
def test_extreme_values(backend):
    """Paths: 'cpu' / 'torch'. w over [-8, 4] (decays from 1 - 3e-4 to 2e-24) and
    |r| = |k| = |v| = 10: finite and within the fp32 targets."""
    *xs, gy = make_inputs(1, 96, 2, 8, F64, seed=11, w_range=(-8.0, 4.0))
    r, k, v = (10 * torch.sign(x) for x in xs[:3])
    xs = (r, k, v, xs[3], xs[4])
    y_ref, g_ref = forward_backward(bi_wkv6_reference, *xs, grad=gy)
    y, grads = forward_backward(functools.partial(bi_wkv6, backend=backend),
                                *(x.float() for x in xs), grad=gy.float())
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)
    assert_errors(errors(y, grads, y_ref, g_ref, NAMES), TOL[F32], f'{backend} extreme')


@pytest.mark.parametrize('backend', BACKENDS)
def test_gradcheck_float64(backend):
    """Paths: 'cpu' custom backward / 'torch' autograd, torch.autograd.gradcheck in float64."""
    *xs, _ = make_inputs(2, 6, 2, 2, F64, seed=2)
    xs = [x.requires_grad_(True) for x in xs]
    assert torch.autograd.gradcheck(lambda *a: bi_wkv6(*a, backend=backend), xs, eps=1e-6,
                                    atol=1e-7)


@pytest.mark.parametrize('backend', BACKENDS)
def test_empty_inputs(backend):
    """Paths: 'cpu' / 'torch' with T = 0: empty y, zero gradient for u."""
    r, k, v, w, u, gy = make_inputs(2, 0, 2, 3)
    y, grads = forward_backward(functools.partial(bi_wkv6, backend=backend), r, k, v, w, u, grad=gy)
    assert y.shape == (2, 0, 6)
    assert grads[4].shape == (2, 3) and not grads[4].any()


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['fp16', 'bf16'])
def test_low_precision_inputs(backend, dtype):
    """Paths: 'cpu' (fp32 math on fp16/bf16 storage) / 'torch' (fp32 math): y in the inputs'
    dtype, close to the reference of the rounded inputs; w and u may stay fp32."""
    r, k, v, w, u, gy = make_inputs(1, 40, 2, 4)
    r, k, v = (x.to(dtype) for x in (r, k, v))
    y, grads = forward_backward(functools.partial(bi_wkv6, backend=backend), r, k, v, w, u,
                                grad=gy.to(dtype))
    assert y.dtype == dtype and grads[0].dtype == dtype and grads[3].dtype == F32
    assert rel_err(y, bi_wkv6_reference(r, k, v, w, u)) < 2e-2


@pytest.mark.parametrize('backend', BACKENDS)
def test_autocast_keeps_fp32_math(backend):
    """Paths: 'cpu' / 'torch' inside torch.autocast('cpu', bfloat16): the same result as
    without autocast (the torch path turns autocast off for its einsums)."""
    r, k, v, w, u, _ = make_inputs(1, 70, 2, 8)
    y = bi_wkv6(r, k, v, w, u, backend=backend)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y_amp = bi_wkv6(r, k, v, w, u, backend=backend)
    assert y_amp.dtype == F32
    torch.testing.assert_close(y_amp, y)


if HAVE_HYPOTHESIS:

    @pytest.mark.parametrize('backend', BACKENDS)
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(B=st.integers(1, 2), T=st.integers(1, 70), H=st.integers(1, 2), N=st.integers(1, 6),
           seed=st.integers(0, 2**16))
    def test_hypothesis_sweep(backend, B, T, H, N, seed):
        """Paths: 'cpu' / 'torch' in float64 on random sizes (T crosses torch chunks and
        cpu checkpoint chunks)."""
        check_backend(backend, B, T, H, N, F64, seed=seed)


# --------------------------------------------------------------------------------------
# 2b. the range of w: the compiled kernels take every w in [-inf, +inf] (their decays are
#     products of factors exp(-exp(w)) in [0, 1]); the 'torch' path must be exact there too.
#     Before issue 21 it formed exponents as differences of chunk-local cumulative sums of
#     -exp(w) and lost (fp32, T = 300) 2e-5 at w in [1, 3], 2e-4 at [4.5, 5.5], 2e-2 (grads
#     0.2) at [9.5, 10.5] and gave inf/NaN from w ~ 20 on (fp64 from w ~ 40); the reference
#     itself, a prefix difference too, failed from w ~ 25.
# --------------------------------------------------------------------------------------

W_RANGES = [(-30.0, -20.0), (-8.0, -2.0), (-3.0, 1.0), (1.0, 3.0), (3.0, 5.0), (4.5, 5.5),
            (9.5, 10.5), (19.0, 21.0), (40.0, 50.0), (85.0, 95.0), (100.0, 700.0)]
#: Exactness targets of the sweep (measured worst: fp32 3e-7, fp64 2e-15).
SWEEP_TOL = {F32: 1e-5, F64: 1e-12}


def w_sweep_inputs(T, H, N, w_range, kind, seed=0, scale=1.0):
    """float64 r, k, v, w, u, grad_y; w uniform in ``w_range`` ('uniform'), or slow decays
    (w in [-6, -5]) with one token in eight drawn from ``w_range`` ('barriers': pairs far
    apart then decay through a few strong tokens, the hard case for chunk-crossing states)."""
    r, k, v, w, u, gy = make_inputs(1, T, H, N, F64, seed, w_range, scale)
    if kind == 'barriers':
        g = torch.Generator().manual_seed(seed + 1)
        slow = -6.0 + torch.rand(w.shape, generator=g, dtype=F64)
        w = torch.where(torch.rand(w.shape, generator=g) < 0.125, w, slow)
    return r, k, v, w, u, gy


def test_reference_exact_for_large_w():
    """Path: reference vs. explicit products of the decays (brute_force) where exp(w) is huge:
    the pair sums are direct sums, not differences of prefix sums (which cancel)."""
    r, k, v, w, u, _ = w_sweep_inputs(9, 2, 3, (20.0, 40.0), 'barriers', seed=7)
    w[0, 4] = 800.0  # exp(w) overflows: decay 0
    torch.testing.assert_close(bi_wkv6_reference(r, k, v, w, u),
                               brute_force(r, k, v, w, u, strictly_between), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
@pytest.mark.parametrize('kind', ['uniform', 'barriers'])
@pytest.mark.parametrize('w_range', W_RANGES, ids=[f'w{lo:g}_{hi:g}' for lo, hi in W_RANGES])
def test_torch_path_exact_over_every_w(w_range, kind, dtype):
    """Path: 'torch' over T = 100 (4 chunks, the last partial), values and all five
    gradients within SWEEP_TOL of the reference, for decay logits from ~no decay (w = -30)
    to decays that underflow to exactly 0 (w = 700)."""
    r, k, v, w, u, gy = w_sweep_inputs(100, 2, 4, w_range, kind)
    y_ref, g_ref = forward_backward(bi_wkv6_reference, r, k, v, w, u, grad=gy)
    y, grads = forward_backward(functools.partial(bi_wkv6, backend='torch'),
                                *(x.to(dtype) for x in (r, k, v, w, u)), grad=gy.to(dtype))
    assert_errors(errors(y, grads, y_ref, g_ref, NAMES), SWEEP_TOL[dtype],
                  f'torch {w_range} {kind} {dtype}')


@pytest.mark.parametrize('scale', [1e-12, 1e4, 1e10])
def test_torch_path_exact_for_any_scale_of_r_k_v(scale):
    """Path: 'torch' in fp32, r, k, v scaled by 1e-12 .. 1e10 (products up to 1e30), w with
    strong barriers: the relative error does not depend on the magnitudes."""
    r, k, v, w, u, _ = w_sweep_inputs(70, 2, 4, (3.0, 12.0), 'barriers', seed=3, scale=scale)
    y = bi_wkv6(*(x.float() for x in (r, k, v, w, u)), backend='torch')
    assert rel_err(y, bi_wkv6_reference(r, k, v, w, u)) < SWEEP_TOL[F32]


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
def test_infinite_and_huge_w(dtype, backend):
    """Paths: 'cpu' / 'torch' with w = +inf, 1e30 (decay 0), -inf, -1e30 (decay 1) among
    ordinary values: finite values and gradients equal to those of finite stand-ins with the
    same decays (w = 50: exactly 0 in fp64 too; w = -60: 1 - 1e-26), where the gradient of w
    is 0. (Both clamp w at 30 before exp(w); without it gw = -exp(w) d = -inf * 0 = NaN.)"""
    r, k, v, w, u, gy = w_sweep_inputs(40, 1, 3, (-4.0, 2.0), 'uniform', seed=5)
    special = {(0, 2): math.inf, (5, 0): 1e30, (11, 1): -math.inf, (20, 2): -1e30,
               (33, 0): math.inf}
    w_stand_in = w.clone()
    for (t, c), value in special.items():
        w[0, t, c] = value
        w_stand_in[0, t, c] = 50.0 if value > 0 else -60.0
    y_ref, g_ref = forward_backward(bi_wkv6_reference, r, k, v, w_stand_in, u, grad=gy)
    y, grads = forward_backward(functools.partial(bi_wkv6, backend=backend),
                                *(x.to(dtype) for x in (r, k, v, w, u)), grad=gy.to(dtype))
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)
    assert_errors(errors(y, grads, y_ref, g_ref, NAMES), SWEEP_TOL[dtype],
                  f'{backend} inf {dtype}')
    for (t, c) in special:
        assert grads[3][0, t, c] == 0


def test_torch_path_exact_long_sequence():
    """Path: 'torch' in fp32 at T = 1500 (47 chunks) with barriers of w in [9.5, 10.5]
    (where the previous form lost 5e-3) and slow decays elsewhere, against the reference."""
    r, k, v, w, u, _ = w_sweep_inputs(1500, 1, 2, (9.5, 10.5), 'barriers', seed=9)
    y = bi_wkv6(*(x.float() for x in (r, k, v, w, u)), backend='torch')
    assert rel_err(y, bi_wkv6_reference(r, k, v, w, u)) < SWEEP_TOL[F32]


def test_torch_path_compile_fullgraph():
    """Path: 'torch' under torch.compile(fullgraph=True, aot_eager) over the whole w range:
    the path has no data-dependent check, so nothing breaks the graph; eager's numbers."""
    torch._dynamo.reset()

    def f(r, k, v, w, u):
        return bi_wkv6(r, k, v, w, u, backend='torch')

    r, k, v, w, u, gy = w_sweep_inputs(40, 2, 3, (-8.0, 40.0), 'uniform', seed=6)
    xs = [x.float() for x in (r, k, v, w, u)]
    y0, g0 = forward_backward(f, *xs, grad=gy.float())
    y1, g1 = forward_backward(torch.compile(f, fullgraph=True, backend='aot_eager'), *xs,
                              grad=gy.float())
    torch.testing.assert_close(y1, y0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b)
    assert rel_err(y1, bi_wkv6_reference(r, k, v, w, u)) < SWEEP_TOL[F32]


@pytest.mark.filterwarnings('ignore')
def test_onnx_dynamo_export_whole_w_range(tmp_path):
    """Path: 'torch' through the dynamo ONNX exporter (torch.onnx.export(dynamo=True));
    onnxruntime reproduces the reference for w from -8 to 40."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')

    class Mixer(torch.nn.Module):
        def forward(self, r, k, v, w, u):
            return bi_wkv6(r, k, v, w, u, backend='torch')

    r, k, v, w, u, _ = w_sweep_inputs(40, 2, 3, (-8.0, 40.0), 'uniform', seed=8)
    xs = tuple(x.float() for x in (r, k, v, w, u))
    path = str(tmp_path / 'bi_wkv6_dynamo.onnx')
    torch.onnx.export(Mixer(), xs, path, dynamo=True, verbose=False)
    sess = ort.InferenceSession(path)
    feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), xs)}
    y = torch.from_numpy(sess.run(None, feeds)[0])
    assert rel_err(y, bi_wkv6_reference(r, k, v, w, u)) < SWEEP_TOL[F32]


# --------------------------------------------------------------------------------------
# 3. the issue target: a 2048^2 image at patch 16 on the CPU
# --------------------------------------------------------------------------------------


@needs_compiled
def test_cpu_t16384_forward_backward():
    """Path: 'cpu' kernel, T = 16384, B = 1, C = 192 (3 heads of 64), forward and backward:
    finite, and matching the op on a shorter sequence where decays cut the dependence."""
    r, k, v, w, u, gy = make_inputs(1, 16384, 3, 64, seed=1, w_range=(-8.0, 4.0))
    # one token of near-zero decay (d = e^{-e^5} ~ 1e-64 -> 0 in fp32) at 200 separates the
    # first 200 tokens' outputs from everything after token 200
    w[:, 200] = 5.0
    y, grads = forward_backward(functools.partial(bi_wkv6, backend='cpu'), r, k, v, w, u, grad=gy)
    assert all(torch.isfinite(x).all() for x in (y,) + grads)
    head = bi_wkv6_reference(*(x[:, :201] for x in (r, k, v, w)), u)
    assert rel_err(y[:, :200], head[:, :200]) < 1e-5


# --------------------------------------------------------------------------------------
# 3b. the compiled CPU kernel's own paths (kernels/bi_wkv6/cpu.cpp): packs of kernels/common/simd.h
#     channels (16 in fp32, 8 in fp64 on every CPU: the pack width is fixed at 64 bytes);
#     column items of 2 vectors (then at most one of 1), row items of 1 vector; the core's
#     single-channel items for the N % kLanes channels after them; items split over threads.
#     Lane counts in the comments below are those of an AVX-512 build (-march=native here).
# --------------------------------------------------------------------------------------


@needs_compiled
@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
@pytest.mark.parametrize('B,T,H,N', [
    (2, 257, 2, 18),  # fp32: 1 vector + 2 single channels, fp64: 2 vectors + 2; 16 ck chunks
    (1, 1, 2, 16),    # T = 1: blocks with only the bonus
    (1, 2, 1, 32),    # T = 2: one checkpoint chunk of 2 tokens
    (1, 50, 1, 31),   # fp32: 1 vector + 15, fp64: 3 + 7; N % 4 != 0 (partial-sum tail);
                      # N mod 2 kLanes >= kLanes for every width: a one-vector item always
], ids=['blocks_rest_t257', 'blocks_t1', 'blocks_t2', 'blocks_n31'])
def test_cpu_vector_blocks_match_reference(dtype, B, T, H, N):
    """Path: 'cpu' vector column blocks (y, grad v) and transposed row blocks (grad r, k, w,
    u), with the core's single-channel items for the rest: values and gradients."""
    check_backend('cpu', B, T, H, N, dtype)


@needs_compiled
def test_cpu_vector_blocks_extreme_values():
    """Path: 'cpu' vector blocks (N = 18: a 16-channel vector and 2 single channels in fp32)
    with w over [-8, 4] and |r| = |k| = |v| = 10: finite and within the fp32 targets."""
    *xs, gy = make_inputs(1, 96, 2, 18, F64, seed=12, w_range=(-8.0, 4.0))
    xs = tuple(10 * torch.sign(x) for x in xs[:3]) + (xs[3], xs[4])
    y_ref, g_ref = forward_backward(bi_wkv6_reference, *xs, grad=gy)
    y, grads = forward_backward(functools.partial(bi_wkv6, backend='cpu'),
                                *(x.float() for x in xs), grad=gy.float())
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)
    assert_errors(errors(y, grads, y_ref, g_ref, NAMES), TOL[F32], 'cpu blocks extreme')


@needs_compiled
def test_cpu_vector_blocks_long_sequence():
    """Path: 'cpu' vector blocks in fp64 (two 8-channel vectors) over T = 1025 (32 checkpoint
    chunks, the last of 2 tokens) with slow decays, against the 'torch' path (itself checked
    against the reference above): the O(T^2) reference is too large here."""
    xs = make_inputs(1, 1025, 1, 16, F64, seed=3, w_range=(-8.0, -2.0))
    *xs, gy = xs
    y_ref, g_ref = forward_backward(functools.partial(bi_wkv6, backend='torch'), *xs, grad=gy)
    y, grads = forward_backward(functools.partial(bi_wkv6, backend='cpu'), *xs, grad=gy)
    assert_errors(errors(y, grads, y_ref, g_ref, NAMES), TOL[F64], 'cpu blocks T=1025')


@needs_compiled
@pytest.mark.parametrize('B,T,H,N', [
    (1, 1500, 3, 64),  # VRWKV6-T heads: 6 column and 12 row items of vectors, long enough that
                       # the two threads' items overlap (a shared scratch shows up here)
    (2, 100, 3, 20),   # 15 column and 15 row items per batch (one vector and 4 single
                       # channels per head), split unevenly
], ids=['vector_items', 'mixed_items'])
def test_cpu_result_independent_of_threads(B, T, H, N):
    """Path: 'cpu' on 1 and on 2 threads: bit-identical values and gradients, as every item
    owns its outputs and its scratch (needs the extension built with OpenMP, setup.py)."""
    xs = make_inputs(B, T, H, N, seed=4)
    *xs, gy = xs
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(forward_backward(functools.partial(bi_wkv6, backend='cpu'), *xs,
                                            grad=gy))
    finally:
        torch.set_num_threads(threads)
    (y1, g1), (y2, g2) = results
    assert torch.equal(y1, y2) and all(torch.equal(a, b) for a, b in zip(g1, g2))


# --------------------------------------------------------------------------------------
# 4. input checks and backend choice
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize('change,exc,match', [
    (lambda a: {**a, 'r': a['r'][0]}, ValueError, r'r must have shape \[B, T, C\]'),
    (lambda a: {**a, 'k': a['k'][:, :-1]}, ValueError, 'k must have the shape of r'),
    (lambda a: {**a, 'w': a['w'][..., :-1]}, ValueError, 'w must have the shape of r'),
    (lambda a: {**a, 'u': a['u'].reshape(-1)}, ValueError, r'u must have shape \[H, N\]'),
    (lambda a: {**a, 'u': a['u'][:, :-1]}, ValueError, 'H \\* N = C = 6'),
    (lambda a: {**a, 'v': a['v'].double()}, TypeError, 'v must have the dtype of r'),
    (lambda a: {**a, 'k': a['k'].int()}, TypeError, 'k must be a floating-point tensor'),
    (lambda a: {**a, 'u': [1.0]}, TypeError, 'u must be a torch.Tensor'),
    (lambda a: {**a, 'w': a['w'].to('meta')}, ValueError, 'w is on meta but r is on cpu'),
])
def test_bad_inputs_raise(change, exc, match):
    """Path: the front's checks (before any backend)."""
    r, k, v, w, u, _ = make_inputs(1, 4, 2, 3)
    args = change(dict(r=r, k=k, v=v, w=w, u=u))
    with pytest.raises(exc, match=match):
        bi_wkv6(**args)


def test_bad_backend_raises():
    """Path: backend resolution."""
    r, k, v, w, u, _ = make_inputs(1, 4, 1, 2)
    with pytest.raises(ValueError, match='backend must be one of'):
        bi_wkv6(r, k, v, w, u, backend='triton')
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, ValueError), match="backend 'cuda'"):
            bi_wkv6(r, k, v, w, u, backend='cuda')


@needs_compiled
def test_direct_op_call_checks():
    """Path: the C++ checks of torch.ops.mmvrwkv.bi_wkv6_forward (callers bypassing the front)
    raise RuntimeError instead of reading out of bounds."""
    r, k, v, w, u, _ = make_inputs(1, 4, 2, 3)
    with pytest.raises(RuntimeError, match='u must be'):
        torch.ops.mmvrwkv.bi_wkv6_forward(r, k, v, w, u[:, :2].contiguous())
    with pytest.raises(RuntimeError, match='contiguous'):
        torch.ops.mmvrwkv.bi_wkv6_forward(r.transpose(1, 2).contiguous().transpose(1, 2),
                                          k, v, w, u)


@needs_compiled
def test_auto_and_noncontiguous():
    """Paths: 'auto' takes the compiled CPU kernel; the front copies non-contiguous inputs."""
    assert available_backends('bi_wkv6')[-3:] == ('cpu', 'torch', 'reference')
    r, k, v, w, u, _ = make_inputs(1, 10, 2, 3, F64)
    rt = r.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    assert not rt.is_contiguous()
    ref = bi_wkv6_reference(r, k, v, w, u)
    assert rel_err(bi_wkv6(rt, k, v, w, u), ref) < 1e-12


# --------------------------------------------------------------------------------------
# 5. torch.compile, opcheck, jit.trace
# --------------------------------------------------------------------------------------


@needs_compiled
def test_opcheck():
    """Path: 'cpu' (float64): schema, fake and autograd registrations of the custom ops agree."""
    r, k, v, w, u, _ = make_inputs(1, 5, 2, 2, F64)
    args = [x.requires_grad_(True) for x in (r, k, v, w, u)]
    torch.library.opcheck(torch.ops.mmvrwkv.bi_wkv6_forward.default, args)


@needs_compiled
def test_torch_compile_fullgraph():
    """Path: 'auto' -> 'cpu' custom op under torch.compile(fullgraph=True, aot_eager): same
    values and gradients as eager."""
    torch._dynamo.reset()

    def f(r, k, v, w, u):
        return bi_wkv6(r, k, v, w, u) * 2

    cf = torch.compile(f, fullgraph=True, backend='aot_eager')
    r, k, v, w, u, gy = make_inputs(2, 9, 2, 3)
    y0, g0 = forward_backward(f, r, k, v, w, u, grad=gy)
    y1, g1 = forward_backward(cf, r, k, v, w, u, grad=gy)
    torch.testing.assert_close(y1, y0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b)


@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')
def test_jit_trace_uses_torch_path():
    """Path: 'auto' while tracing -> 'torch' (no custom op in the trace); the trace replays."""
    r, k, v, w, u, _ = make_inputs(1, 7, 1, 3)
    traced = torch.jit.trace(lambda *a: bi_wkv6(*a), (r, k, v, w, u), check_trace=False)
    assert 'bi_wkv6_forward' not in str(traced.graph)
    r2, k2, v2, w2, u2, _ = make_inputs(1, 7, 1, 3, seed=4)
    assert rel_err(traced(r2, k2, v2, w2, u2), bi_wkv6_reference(r2, k2, v2, w2, u2)) < 1e-5


@pytest.mark.filterwarnings('ignore')
def test_onnx_export_uses_torch_path(tmp_path):
    """Path: 'auto' while exporting (legacy TorchScript exporter) -> 'torch'; onnxruntime
    reproduces the op."""
    ort = pytest.importorskip('onnxruntime')

    class Mixer(torch.nn.Module):
        def forward(self, r, k, v, w, u):
            return bi_wkv6(r, k, v, w, u)

    r, k, v, w, u, _ = make_inputs(1, 40, 2, 3)
    path = str(tmp_path / 'bi_wkv6.onnx')
    torch.onnx.export(Mixer(), (r, k, v, w, u), path, dynamo=False, opset_version=17)
    sess = ort.InferenceSession(path)
    feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), (r, k, v, w, u))}
    y = torch.from_numpy(sess.run(None, feeds)[0])
    assert rel_err(y, bi_wkv6_reference(r, k, v, w, u)) < 1e-5


# --------------------------------------------------------------------------------------
# 6. CUDA (skipped without a GPU build; conftest.py)
# --------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
@pytest.mark.parametrize('B,T,H,N', [(2, 37, 2, 3), (1, 1, 1, 5), (1, 257, 1, 5), (1, 70, 1, 64)],
                         ids=['odd_n', 't1', 't257', 'n64'])
def test_cuda_matches_reference(dtype, B, T, H, N):
    """Path: 'cuda' kernel, values and the five gradients."""
    xs, gy, y_ref, g_ref = reference_case(B, T, H, N)
    y, grads = forward_backward(functools.partial(bi_wkv6, backend='cuda'),
                                *(x.to('cuda', dtype) for x in xs), grad=gy.to('cuda', dtype))
    assert_errors(errors(y, grads, y_ref, g_ref, NAMES), TOL[dtype], f'cuda {dtype}')


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['fp16', 'bf16'])
def test_cuda_low_precision(dtype):
    """Path: 'cuda' kernel with fp16/bf16 storage (fp32 state): dtype kept, close to the
    reference of the rounded inputs, same as the 'cpu' kernel's result up to rounding."""
    r, k, v, w, u, gy = make_inputs(2, 50, 2, 64, device='cuda')
    r, k, v = (x.to(dtype) for x in (r, k, v))
    y, grads = forward_backward(functools.partial(bi_wkv6, backend='cuda'), r, k, v, w, u,
                                grad=gy.to(dtype))
    assert y.dtype == dtype
    assert rel_err(y, bi_wkv6_reference(r, k, v, w, u)) < 2e-2
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.cuda
def test_cuda_t16384():
    """Path: 'cuda' kernel at T = 16384, C = 192 (beyond the original's T = 256 crash):
    forward and backward agree with the 'torch' path of the same inputs."""
    r, k, v, w, u, gy = make_inputs(1, 16384, 3, 64, seed=1, device='cuda')
    y, grads = forward_backward(functools.partial(bi_wkv6, backend='cuda'), r, k, v, w, u, grad=gy)
    y_t, g_t = forward_backward(functools.partial(bi_wkv6, backend='torch'), r, k, v, w, u, grad=gy)
    assert_errors(errors(y, grads, y_t, g_t, NAMES), 1e-4, 'cuda vs torch T=16384')


@pytest.mark.cuda
def test_cuda_torch_compile_fullgraph():
    """Path: 'auto' -> 'cuda' custom op under torch.compile(fullgraph=True)."""
    torch._dynamo.reset()
    cf = torch.compile(lambda *a: bi_wkv6(*a) * 2, fullgraph=True, backend='aot_eager')
    r, k, v, w, u, gy = make_inputs(2, 9, 2, 3, device='cuda')
    y, _ = forward_backward(cf, r, k, v, w, u, grad=gy)
    assert rel_err(y / 2, bi_wkv6_reference(r, k, v, w, u)) < 1e-5


# --------------------------------------------------------------------------------------
# 7. FLOP constant
# --------------------------------------------------------------------------------------


def test_bi_wkv6_flops_formula():
    """7 MACs per (batch, token, channel) and key channel of the head
    (mmvrwkv/ops/bi_wkv6/flops.py)."""
    from mmvrwkv.ops import BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL, bi_wkv6_flops
    assert BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL == 7
    assert bi_wkv6_flops(1, 196, 192, 64) == 7 * 64 * 196 * 192
    assert bi_wkv6_flops(2, 5, 6, 3) == 7 * 3 * 2 * 5 * 6
    for bad in ((1, 5, 6, 4), (1, 5, 6, 0), (-1, 5, 6, 3), (1, 5.5, 6, 3), (True, 5, 6, 3)):
        with pytest.raises(ValueError):
            bi_wkv6_flops(*bad)
