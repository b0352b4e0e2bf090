"""The Bi-WKV6 CUDA driver (kernels/bi_wkv6/cuda.cu) run on the CPU, without a GPU.

A TEST-ONLY host build (kernels/bi_wkv6/cuda_host.cpp, g++ with -DMMVRWKV_HOST_CUDA) runs the
driver's host code and its kernels' bodies, each launch emulated by loops over blocks and
threads (kernels/common/launch.h, the same emulation as the Bi-WKV host build, exact for
kernels whose threads never communicate). Built once per machine beside the other host builds
(op_testing.load_host_build); skipped without a C++ compiler or ninja.

Paths: every test runs the CUDA driver + the core (kernels/bi_wkv6/core.h) with A = float /
double: the chunked column functions (column_chunk_*, which the CPU kernel does not use, so
these tests are their only CPU check) and the row pass, one item per emulated thread. The
`cuda`-marked tests of test_bi_wkv6.py run the nvcc build on a GPU.
"""
import pytest
import torch

from op_testing import assert_errors, errors, load_host_build  # noqa: E402
from test_bi_wkv6 import NAMES, TOL, reference_case  # noqa: E402

F32, F64 = torch.float32, torch.float64


@pytest.fixture(scope='module')
def host_cuda6(tmp_path_factory):
    """The host build of the Bi-WKV6 CUDA driver, as a Python module."""
    return load_host_build('bi_wkv6', tmp_path_factory)


def run(host, dtype, xs, gy):
    xs = [x.to(dtype).contiguous() for x in xs]
    y = host.forward(*xs)
    grads = host.backward(*xs, gy.to(dtype).contiguous())
    return y, grads


@pytest.mark.parametrize('dtype', [F32, F64], ids=['fp32', 'fp64'])
@pytest.mark.parametrize('B,T,H,N', [(2, 37, 2, 3), (1, 1, 1, 5), (1, 257, 1, 5), (1, 70, 1, 64)],
                         ids=['odd_n', 't1', 't257', 'n64'])
def test_host_cuda_matches_reference(host_cuda6, dtype, B, T, H, N):
    """Path: CUDA driver (host build), values and the five gradients vs. the reference."""
    xs, gy, y_ref, g_ref = reference_case(B, T, H, N)
    y, grads = run(host_cuda6, dtype, xs, gy)
    assert y.dtype == dtype and grads[3].dtype == dtype
    assert_errors(errors(y, grads, y_ref, g_ref, NAMES), TOL[dtype], f'host cuda {dtype}')


def test_host_cuda_launches_and_thread_order(host_cuda6):
    """Path: CUDA driver (host build). Columns: one thread per (b, h, chunk, channel) for the
    chunk summaries and walks (T = 37: 6 chunks of 7 tokens), one per (b, h, channel) for the
    carry; rows: one per (b, h, channel). Results identical when the threads run in reverse
    order (no thread reads what another writes in the same launch)."""
    xs, gy, _, _ = reference_case(2, 37, 2, 3)
    host_cuda6.clear_launches()
    y, grads = run(host_cuda6, F64, xs, gy)
    tpb = host_cuda6.threads_per_block

    def blocks(n):
        return -(-n // tpb)

    columns = [('summary_kernel', blocks(2 * 2 * 6 * 3), tpb), ('carry_kernel', blocks(12), tpb),
               ('walk_kernel', blocks(2 * 2 * 6 * 3), tpb)]
    assert [(n.split('<')[0], b, t) for n, b, t in host_cuda6.launches()] == (
        columns                                 # forward: y
        + columns                               # backward: gv
        + [('rows_kernel', blocks(12), tpb)])   # backward: gr, gk, gw, gu
    host_cuda6.set_reverse_order(True)
    try:
        y2, grads2 = run(host_cuda6, F64, xs, gy)
    finally:
        host_cuda6.set_reverse_order(False)
    assert torch.equal(y, y2) and all(torch.equal(a, b) for a, b in zip(grads, grads2))


def test_host_cuda_low_precision_and_empty(host_cuda6):
    """Path: CUDA driver (host build) with bf16 storage (fp32 math) and with T = 0."""
    xs, gy, y_ref, _ = reference_case(1, 20, 2, 4)
    r, k, v = (x.to(torch.bfloat16) for x in xs[:3])
    y = host_cuda6.forward(r, k, v, xs[3].float(), xs[4].float())
    assert y.dtype == torch.bfloat16
    assert (y.double() - y_ref).abs().max() / y_ref.abs().max() < 3e-2
    e = torch.zeros(2, 0, 6)
    u = torch.zeros(2, 3)
    assert host_cuda6.forward(e, e, e, e, u).shape == (2, 0, 6)
    g = host_cuda6.backward(e, e, e, e, u, e)
    assert g[4].shape == (2, 3) and not g[4].any()


def test_host_cuda_checks(host_cuda6):
    """Path: the driver's checks (shared with the CPU driver, kernels/bi_wkv6/host.h)."""
    xs, gy, _, _ = reference_case(1, 4, 2, 3)
    r, k, v, w, u = (x.float() for x in xs)
    with pytest.raises(RuntimeError, match='u must be'):
        host_cuda6.forward(r, k, v, w, u.reshape(-1))
    with pytest.raises(RuntimeError, match='grad_y must match'):
        host_cuda6.backward(r, k, v, w, u, gy[:, :2].float().contiguous())
