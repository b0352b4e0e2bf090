"""Tests of the compiled Bi-WKV kernels' plumbing, without a GPU.

Most tests here run the CUDA driver (kernels/bi_wkv/cuda.cu) on the CPU: a TEST-ONLY host build
(kernels/bi_wkv/cuda_host.cpp, g++ with -DMMVRWKV_HOST_CUDA) runs the driver's host code and
the kernels' bodies, each launch emulated by loops over blocks and threads
(kernels/common/launch.h). The emulation is exact for these kernels because their threads
never communicate (no shared memory, __syncthreads, warp intrinsics or atomics; the host
build has no stubs for them, so using one breaks that build). The `host_cuda` fixture builds
it once per machine into ~/.cache/mmvrwkv/test-builds (the pytest tmp dir if that is not
writable; op_testing.load_host_build) and skips when no C++ compiler or ninja is found. The
build is never installed.

What it cannot show: the nvcc-compiled code's rounding (CUDA's expf, FMA contraction) and
anything about real concurrency or memory limits; the `cuda`-marked tests of test_bi_wkv.py
cover those on a GPU.

Paths: every `host_cuda` test exercises the CUDA driver + the core (kernels/bi_wkv/core.h,
general walk) with V = float / double. Comparisons with the real CPU backend name its path
(general / fast walk).
"""
import os.path as osp
import re

import pytest
import torch

from mmvrwkv.ops import bi_wkv, bi_wkv_reference, ext_available

from op_testing import (KERNELS, ROOT, assert_errors, errors, forward_backward,  # noqa: E402
                        load_host_build)

F32, F64 = torch.float32, torch.float64
TOL = {F32: 1e-5, F64: 1e-10}
needs_ext = pytest.mark.skipif(not ext_available(), reason='mmvrwkv._ext not built')


# --------------------------------------------------------------------------------------
# the host build
# --------------------------------------------------------------------------------------


@pytest.fixture(scope='session')
def host_cuda(tmp_path_factory):
    """The host build of the CUDA driver, as a Python module (see the module docstring)."""
    return load_host_build('bi_wkv', tmp_path_factory)


@pytest.fixture
def launches(host_cuda):
    """The launch log of the host build, cleared before the test."""
    host_cuda.clear_launches()
    yield host_cuda.launches
    host_cuda.set_reverse_order(False)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def make_inputs(B, T, C, dtype=F32, seed=0, decay=(-5.0, 3.0), k_scale=1.0, k_shift=0.0):
    """w, u [C] (spatial_decay / T, spatial_first / T), k, v [B, T, C] and a cotangent gy."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = decay
    sd = lo + (hi - lo) * torch.rand(C, generator=g, dtype=F64)
    sf = torch.randn(C, generator=g, dtype=F64)
    k = k_scale * torch.randn(B, T, C, generator=g, dtype=F64) + k_shift
    v = torch.randn(B, T, C, generator=g, dtype=F64)
    gy = torch.randn(B, T, C, generator=g, dtype=F64)
    T1 = max(T, 1)
    return tuple(x.to(dtype) for x in (sd / T1, sf / T1, k, v, gy))


def reference_fb(w, u, k, v, gy, causal):
    """Float64 reference y and (gw, gu, gk, gv) for exactly these (rounded) inputs."""
    return forward_backward(lambda *a: bi_wkv_reference(*a, causal=causal),
                            *(x.double() for x in (w, u, k, v)), grad=gy.double())


def host_fb(host, w, u, k, v, gy, causal, chunk_len):
    y = host.forward(w, u, k, v, chunk_len, causal)
    grads = host.backward(w, u, k, v, gy, chunk_len, causal)
    return y, tuple(grads)


def cpu_fb(w, u, k, v, gy, causal, chunk_len):
    """The real CPU backend (mmvrwkv._ext through bi_wkv), forward and backward."""
    return forward_backward(
        lambda *a: bi_wkv(*a, backend='cpu', causal=causal, chunk_len=chunk_len),
        w, u, k, v, grad=gy)


def assert_close_to(y, grads, y_ref, g_ref, tol, what, g_tol=None):
    errs = errors(y, grads, y_ref, g_ref)
    assert_errors(errs, {n: (tol if n == 'y' or g_tol is None else g_tol) for n in errs}, what)


def blocks(n, threads=256):
    return -(-n // threads)


# --------------------------------------------------------------------------------------
# 1. the CUDA driver on the CPU against the float64 reference and the CPU backend
# --------------------------------------------------------------------------------------

# T = 1, T below / equal to / not a multiple of the chunk, one and many chunks, C = 1.
HOST_SHAPES = [(1, 1, 1), (2, 1, 3), (1, 2, 1), (2, 5, 3), (3, 7, 17), (2, 33, 5), (1, 100, 4),
               (2, 130, 9)]
HOST_CHUNKS = [1, 2, 3, 7, 16, 31, 32]


@pytest.mark.parametrize('chunk_len', HOST_CHUNKS)
@pytest.mark.parametrize('shape', HOST_SHAPES, ids=lambda s: 'x'.join(map(str, s)))
@pytest.mark.parametrize('causal', [False, True], ids=['bidir', 'causal'])
@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
def test_host_cuda_matches_reference(host_cuda, dtype, causal, shape, chunk_len):
    """Path: CUDA driver (host build). Forward and all four gradients."""
    B, T, C = shape
    w, u, k, v, gy = make_inputs(B, T, C, dtype, seed=sum(shape) + chunk_len)
    y, grads = host_fb(host_cuda, w, u, k, v, gy, causal, chunk_len)
    assert y.dtype == dtype and y.shape == k.shape
    assert [g.dtype for g in grads] == [dtype] * 4
    assert_close_to(y, grads, *reference_fb(w, u, k, v, gy, causal), TOL[dtype],
                    f'host cuda chunk_len={chunk_len}')


@pytest.mark.parametrize('causal', [False, True], ids=['bidir', 'causal'])
def test_host_cuda_every_chunk_len(host_cuda, causal):
    """Path: CUDA driver (host build), float64, every chunk_len 1..cuda_max_chunk_len (and
    beyond T: clamped) on T = 41 (a partial last chunk for most of them)."""
    B, T, C = 2, 41, 5
    w, u, k, v, gy = make_inputs(B, T, C, F64, seed=7, decay=(-8.0, 8.0))
    ref = reference_fb(w, u, k, v, gy, causal)
    for cl in range(1, host_cuda.max_chunk_len + 1):
        y, grads = host_fb(host_cuda, w, u, k, v, gy, causal, cl)
        assert_close_to(y, grads, *ref, TOL[F64], f'chunk_len={cl}')


@needs_ext
@pytest.mark.parametrize('causal', [False, True], ids=['bidir', 'causal'])
@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
def test_host_cuda_matches_cpu_backend(host_cuda, dtype, causal):
    """The CUDA driver (host build) against the real CPU backend on the same inputs. CPU
    paths: fp64 and causal take the general path (the same core functions as the CUDA
    kernels, so the two agree to rounding, 1e-12); fp32 bidirectional the fast path."""
    B, T, C, cl = 2, 150, 20, 16
    w, u, k, v, gy = make_inputs(B, T, C, dtype, seed=3)
    y, grads = host_fb(host_cuda, w, u, k, v, gy, causal, cl)
    y_cpu, g_cpu = cpu_fb(w, u, k, v, gy, causal, cl)
    assert_close_to(y, grads, y_cpu, g_cpu, 1e-12 if dtype == F64 else TOL[F32], 'host cuda vs cpu')
    fast = _ext().cpu_fast_path_packs(w, u, k, cl, causal)
    assert any(fast) == (dtype == F32 and not causal)


@pytest.mark.parametrize('causal', [False, True], ids=['bidir', 'causal'])
@pytest.mark.parametrize('dtype,tol', [(torch.float16, 1e-3), (torch.bfloat16, 8e-3)],
                         ids=['fp16', 'bf16'])
def test_host_cuda_low_precision(host_cuda, dtype, tol, causal):
    """Path: CUDA driver (host build), fp16/bf16 storage with fp32 math (w, u fp32): close to
    the reference on the same rounded inputs, to about the rounding of the outputs."""
    B, T, C = 2, 60, 12
    w, u, k, v, gy = make_inputs(B, T, C, F32, seed=21)
    k, v, gy = k.to(dtype), v.to(dtype), gy.to(dtype)
    y, grads = host_fb(host_cuda, w, u, k, v, gy, causal, 16)
    assert y.dtype == dtype and [g.dtype for g in grads] == [F32, F32, dtype, dtype]
    assert_close_to(y, grads, *reference_fb(w, u, k, v, gy, causal), tol, f'host cuda {dtype}')


@pytest.mark.parametrize('decay,k_shift', [((-50.0, 50.0), 0.0), ((-50.0, -50.0), 58.0),
                                           ((50.0, 50.0), -58.0), ((-500.0, 500.0), 0.0)],
                         ids=['spread50', 'minus50-khi', 'plus50-klo', 'spread500'])
@pytest.mark.parametrize('causal', [False, True], ids=['bidir', 'causal'])
def test_host_cuda_extreme_values(host_cuda, causal, decay, k_shift):
    """Path: CUDA driver (host build), float64 with |spatial_decay| up to 500 and |k| ~ 60,
    where a naive exp() overflows fp32: the stabilised core stays exact; fp32 stays finite
    and within the bounds test_bi_wkv.py holds the CPU kernel to."""
    B, T, C = 2, 33, 7
    for dtype in (F64, F32):
        w, u, k, v, gy = make_inputs(B, T, C, dtype, seed=5, decay=decay, k_scale=2.0,
                                     k_shift=k_shift)
        ref = reference_fb(w, u, k, v, gy, causal)
        big = decay[1] - decay[0] > 100
        if dtype == F64:
            tol, g_tol = TOL[F64], TOL[F64]
        else:  # the fp32 bounds of test_bi_wkv.py (DECAY500_TOL / EXTREME_GRAD_TOL)
            tol, g_tol = (5e-5, 2e-3) if big else (TOL[F32], 1e-4)
        for cl in (1, 7, 32):
            y, grads = host_fb(host_cuda, w, u, k, v, gy, causal, cl)
            assert all(torch.isfinite(x).all() for x in (y,) + grads)
            assert_close_to(y, grads, *ref, tol, f'{dtype} chunk_len={cl}', g_tol)


def test_host_cuda_empty_inputs(host_cuda):
    """Path: CUDA driver (host build): no launch for empty inputs, zero gradients."""
    for B, T, C in [(0, 4, 3), (2, 0, 3), (2, 4, 0)]:
        host_cuda.clear_launches()
        w, u = torch.randn(C), torch.randn(C)
        k = torch.randn(B, T, C)
        assert host_cuda.forward(w, u, k, k, 16, False).shape == (B, T, C)
        gw, gu, gk, gv = host_cuda.backward(w, u, k, k, k, 16, False)
        assert host_cuda.launches() == []
        assert not gw.abs().sum() and not gu.abs().sum() and gk.shape == gv.shape == k.shape


def test_host_cuda_checks_inputs(host_cuda):
    """The driver's own checks (what direct torch.ops callers of the CUDA op get)."""
    w, u, k, v, gy = make_inputs(2, 5, 3)
    with pytest.raises(RuntimeError, match=r'chunk_len must be <= 32, got 33'):
        host_cuda.forward(w, u, k, v, 33, False)
    with pytest.raises(RuntimeError, match=r'chunk_len must be >= 1'):
        host_cuda.backward(w, u, k, v, gy, 0, False)
    with pytest.raises(RuntimeError, match=r'\bk must be \[B, T, C\]'):
        host_cuda.forward(w, u, k[0], v[0], 4, False)
    with pytest.raises(RuntimeError, match=r'grad_y'):
        host_cuda.backward(w, u, k, v, gy[:, :2], 4, False)
    with pytest.raises(RuntimeError, match=r'contiguous'):
        host_cuda.forward(w, u, k.transpose(0, 1).contiguous().transpose(0, 1), v, 4, False)


# --------------------------------------------------------------------------------------
# 2. launch sizes and the thread -> item decomposition
# --------------------------------------------------------------------------------------

FORWARD_KERNELS = ['summary_kernel', 'carry_kernel', 'forward_kernel']
BACKWARD_KERNELS = ['summary_kernel', 'carry_kernel', 'backward_stats_kernel', 'carry_kernel',
                    'backward_kv_kernel']


# items = B * nch * C around multiples of the block (255, 256, 257 items), a carry launch
# (B * C columns) of several blocks, and a many-block chunk launch.
@pytest.mark.parametrize('B,T,C,chunk_len', [
    (1, 1, 255, 16), (1, 1, 256, 16), (1, 1, 257, 16), (1, 32, 256, 16), (3, 40, 100, 16),
    (2, 300, 20, 7), (1, 17, 8, 1)])
@pytest.mark.parametrize('causal', [False, True], ids=['bidir', 'causal'])
def test_host_cuda_launch_sizes(host_cuda, launches, B, T, C, chunk_len, causal):
    """Path: CUDA driver (host build). Every launch covers its items with the fewest blocks
    of threads_per_block threads, in the driver's phase order, and the results match the
    reference also when the grid has many blocks and the last one is partly idle."""
    threads = host_cuda.threads_per_block
    nch = -(-T // min(chunk_len, T))
    items, columns = B * nch * C, B * C
    w, u, k, v, gy = make_inputs(B, T, C, F64, seed=B + T + C)
    y, grads = host_fb(host_cuda, w, u, k, v, gy, causal, chunk_len)
    log = launches()
    names = [re.match(r'\w+', name).group(0) for name, _, _ in log]
    assert names == FORWARD_KERNELS + BACKWARD_KERNELS
    for name, n_blocks, n_threads in log:
        n = columns if name.startswith('carry_kernel') else items
        assert n_threads == threads
        assert n_blocks == blocks(n, threads), (name, n_blocks, n)
        assert (n_blocks - 1) * threads < n <= n_blocks * threads
    assert_close_to(y, grads, *reference_fb(w, u, k, v, gy, causal), TOL[F64], 'launch sizes')


@pytest.mark.parametrize('dtype', [F32, F64, torch.bfloat16], ids=['fp32', 'fp64', 'bf16'])
@pytest.mark.parametrize('causal', [False, True], ids=['bidir', 'causal'])
def test_host_cuda_thread_order_does_not_matter(host_cuda, launches, dtype, causal):
    """Threads run in ascending, then descending order: bit-identical results show that no
    thread reads what another thread of the same launch writes (no intra-launch race), and
    the NaN-poisoned buffers of the host build show that every output element is written."""
    B, T, C = 2, 100, 40  # 2 * 7 * 40 = 560 items: 3 blocks, the last one partly idle
    w, u, k, v, gy = make_inputs(B, T, C, F32, seed=11)
    k, v, gy = k.to(dtype), v.to(dtype), gy.to(dtype)
    if dtype == F64:
        w, u = w.double(), u.double()
    runs = []
    for reverse in (False, True):
        host_cuda.set_reverse_order(reverse)
        runs.append(host_fb(host_cuda, w, u, k, v, gy, causal, 16))
    for a, b in zip((runs[0][0],) + runs[0][1], (runs[1][0],) + runs[1][1]):
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)


def test_item_decomposition(host_cuda):
    """chunk_item / column_item: thread (block, thread) -> (b, j, c) with channels fastest,
    64-bit index arithmetic (blockIdx.x * blockDim.x past 2^32), None from the first thread
    past the end."""
    item = host_cuda.item_of
    B, nch, C = 3, 5, 7
    n = B * nch * C
    seen = []
    for blk in range(blocks(n, 32)):
        for t in range(32):
            idx = blk * 32 + t
            r = item(True, B, nch, C, blk, t, 32)
            if idx >= n:
                assert r is None, idx
            else:
                b, rest = divmod(idx, nch * C)
                assert r == (b, rest // C, rest % C), idx
                seen.append(r)
    assert len(set(seen)) == n
    assert item(False, B, nch, C, 0, 20, 32) == (2, 0, 6)
    assert item(False, B, nch, C, 0, 21, 32) is None
    # Large: B * nch * C = 2^34 items, 2^26 blocks of 256 threads.
    B, nch, C = 4, 2 ** 20, 2 ** 12
    for blk, t in [(2 ** 24, 0), (2 ** 24 + 5, 255), (2 ** 26 - 1, 255), (2 ** 25 + 3, 17)]:
        idx = blk * 256 + t
        assert idx >= 2 ** 32 and idx < B * nch * C
        b, rest = divmod(idx, nch * C)
        assert item(True, B, nch, C, blk, t, 256) == (b, rest // C, rest % C)
    assert item(True, B, nch, C, 2 ** 26, 0, 256) is None
    assert item(False, 2 ** 21, 1, 2 ** 12, 2 ** 25 - 1, 255, 256) == (2 ** 21 - 1, 0, 2 ** 12 - 1)


def test_launch_size_limits(host_cuda):
    """blocks_for and the driver's size checks (cuda_dims), on meta tensors (no memory)."""
    threads = host_cuda.threads_per_block
    for n in (1, threads - 1, threads, threads + 1, 10 ** 6, (2 ** 31 - 1) * threads):
        assert host_cuda.blocks_for(n) == blocks(n, threads)
    dims = host_cuda.dims_of
    assert dims(2, 100, 3, 16) == (16, 7)
    assert dims(2, 5, 3, 16) == (5, 1)  # chunk_len clamps to T
    assert dims(2, 1, 3, 32) == (1, 1)
    assert dims(2, 0, 3, 16) == (1, 0)
    # The grid limit (2^31 - 1 blocks): 2^9 * (2^30 - 1) items need 2^31 - 2 blocks (accepted),
    # 2^39 items 2^31 (refused).
    assert dims(2 ** 9, 2 ** 30 - 1, 1, 1) == (1, 2 ** 30 - 1)
    assert host_cuda.blocks_for(2 ** 9 * (2 ** 30 - 1)) == 2 ** 31 - 2
    with pytest.raises(RuntimeError, match='input too large'):
        dims(2 ** 9, 2 ** 30, 1, 1)
    with pytest.raises(RuntimeError, match=r'T must be < 2\^31'):
        dims(1, 2 ** 31, 1, 32)
    with pytest.raises(RuntimeError, match='chunk_len must be <= 32'):
        dims(1, 10, 1, 33)


# --------------------------------------------------------------------------------------
# 3. the shipped extension: exported constants, CPU path selection, what is installed
# --------------------------------------------------------------------------------------


def _ext():
    from mmvrwkv import _ext
    return _ext


def _header_constant(name, header='bi_wkv/params.h'):
    with open(osp.join(KERNELS, header)) as f:
        return int(re.search(rf'constexpr int {name} = (\d+);', f.read()).group(1))


@needs_ext
def test_ext_exports_constants():
    """cuda_max_chunk_len (kCudaMaxChunk, kernels/bi_wkv/params.h) is exported by every build
    of mmvrwkv._ext, CPU-only ones included; cpu_pack_width derives from kPackBytes
    (kernels/common/simd.h)."""
    ext = _ext()
    assert isinstance(ext.with_cuda, bool)
    if osp.exists(KERNELS):
        assert ext.cuda_max_chunk_len == _header_constant('kCudaMaxChunk')
        assert ext.cpu_pack_width == _header_constant('kPackBytes', 'common/simd.h') // 4
    assert ext.cuda_max_chunk_len == 32 and ext.cpu_pack_width == 16


@needs_ext
def test_cuda_driver_enforces_exported_limit(host_cuda):
    """The CUDA driver's chunk_len limit is the exported one."""
    limit = _ext().cuda_max_chunk_len
    assert host_cuda.max_chunk_len == limit
    w, u, k, v, _ = make_inputs(1, 40, 2)
    host_cuda.forward(w, u, k, v, limit, False)
    with pytest.raises(RuntimeError, match=f'chunk_len must be <= {limit}'):
        host_cuda.forward(w, u, k, v, limit + 1, False)


@needs_ext
def test_cpu_path_selection():
    """Which channel packs take the CPU fast walk (cpu_fast_path_packs): bidirectional with
    fp32 math (fp32, fp16, bf16 storage), chunk_len (clamped to T) <= 64, chunk_len*|w| <= 20
    and |u| <= 20 on every channel of the pack; the general path otherwise. These are the
    conditions test_bi_wkv.py's docstrings use to name each case's path."""
    packs = _ext().cpu_fast_path_packs
    width = _ext().cpu_pack_width
    T, C = 100, 40
    w = torch.full((C,), 5.0 / T)
    u = torch.zeros(C)
    k = torch.zeros(2, T, C)
    n_packs = -(-C // width)
    assert packs(w, u, k, 32, False) == [True] * n_packs
    assert packs(w, u, k.half(), 32, False) == [True] * n_packs
    assert packs(w, u, k.bfloat16(), 32, False) == [True] * n_packs
    assert packs(w, u, k, 32, True) == [False] * n_packs  # causal
    assert packs(w.double(), u.double(), k.double(), 32, False) == [False] * n_packs  # fp64
    assert packs(w, u, k, 64, False) == [True] * n_packs
    assert packs(w, u, k, 65, False) == [False] * n_packs  # chunk longer than 64
    assert packs(w, u, k[:, :60].contiguous(), 65, False) == [True] * n_packs  # clamped to T = 60
    w2 = w.clone()
    w2[width + 3] = 21.0 / 32  # chunk_len * |w| > 20 in pack 1 only
    assert packs(w2, u, k, 32, False) == [True, False, True]
    assert packs(w2, u, k, 16, False) == [True] * n_packs
    u2 = u.clone()
    u2[2 * width] = -20.5  # |u| > 20 in the partial pack 2
    assert packs(w, u2, k, 32, False) == [True, True, False]


def test_host_build_is_not_installed():
    """The host builds are test-only: setup.py does not compile their sources
    (kernels/<op>/cuda_host.cpp), the installed extension has none of their functions."""
    with open(osp.join(ROOT, 'setup.py')) as f:
        assert 'cuda_host' not in re.sub(r'""".*?"""', '', f.read(), flags=re.S)
    if ext_available():
        assert not hasattr(_ext(), 'launches')
