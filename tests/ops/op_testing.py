"""Helpers shared by tests/ops: holding an op's paths to its float64 reference, and the
test-only host builds of the CUDA drivers."""
import math
import os
import os.path as osp
import re
import shutil
import sys
import warnings
from typing import Callable, Dict, Sequence, Tuple

import pytest
import torch

from tool_helpers import ROOT

#: Absolute floor of the relative error of gradients: inputs and cotangents are unit-scale, so
#: gradients are O(1); the floor only matters where the exact gradient is ~0.
GRAD_FLOOR = 1.0
#: Names of the Bi-WKV gradients, in argument order.
GRAD_NAMES = ('gw', 'gu', 'gk', 'gv')


def forward_backward(fn: Callable, *inputs: torch.Tensor, grad: torch.Tensor
                     ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
    """``fn(*inputs)`` and the gradients of every input for the cotangent ``grad`` (the
    inputs are cloned, so the caller's tensors are untouched)."""
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    y = fn(*xs)
    y.backward(grad.to(y.dtype))
    return y.detach(), tuple(x.grad for x in xs)


def rel_err(x: torch.Tensor, ref: torch.Tensor, floor: float = 0.0) -> float:
    """``max|x - ref| / max(max|ref|, floor)``; inf if ``x`` is not finite."""
    x, ref = x.double().cpu(), ref.double().cpu()
    if ref.numel() == 0:
        return 0.0
    if not torch.isfinite(x).all():
        return math.inf
    return ((x - ref).abs().max() / max(ref.abs().max().item(), floor)).item()


def errors(y: torch.Tensor, grads: Sequence[torch.Tensor], y_ref: torch.Tensor,
           grads_ref: Sequence[torch.Tensor], names: Sequence[str] = GRAD_NAMES
           ) -> Dict[str, float]:
    """Relative errors of the output (no floor) and of each gradient (``GRAD_FLOOR``)."""
    out = {'y': rel_err(y, y_ref)}
    for n, g, r in zip(names, grads, grads_ref):
        out[n] = rel_err(g, r, GRAD_FLOOR)
    return out


def assert_errors(errs: Dict[str, float], tol, what: str = '') -> None:
    """Every error within ``tol`` (a number, or a dict by name); the message lists all."""
    limits = tol if isinstance(tol, dict) else dict.fromkeys(errs, tol)
    bad = {n: e for n, e in errs.items() if not e <= limits.get(n, math.inf)}
    assert not bad, (f'{what}: relative errors above the bound: '
                     + ', '.join(f'{n}={e:.3g} (> {limits[n]:g})' for n, e in bad.items())
                     + ' (all: ' + ', '.join(f'{n}={e:.2g}' for n, e in errs.items()) + ')')


# --------------------------------------------------------------------------------------
# the test-only host builds of the CUDA drivers (kernels/<op>/cuda_host.cpp)
# --------------------------------------------------------------------------------------

#: The compiled ops' sources (kernels/README.md).
KERNELS = osp.join(ROOT, 'kernels')


def host_build_dir(tmp_path_factory, op: str) -> str:
    """A per-(torch, Python) cache folder for the host build of ``op``: ninja rebuilds only
    what changed (its depfiles track the kernels' headers). ``MMVRWKV_TEST_BUILD_DIR``
    overrides the base (~/.cache/mmvrwkv/test-builds); the pytest tmp dir if not writable."""
    tag = re.sub(r'[^A-Za-z0-9_.]+', '_', f'torch{torch.__version__}-py{sys.version_info[0]}'
                                           f'{sys.version_info[1]}')
    base = os.environ.get('MMVRWKV_TEST_BUILD_DIR') or osp.join(
        osp.expanduser('~'), '.cache', 'mmvrwkv', 'test-builds')
    path = osp.join(base, f'cuda_host-{tag}', op)
    try:
        os.makedirs(path, exist_ok=True)
        with open(osp.join(path, '.writable'), 'w'):
            pass
        return path
    except OSError:
        return str(tmp_path_factory.mktemp(f'{op}_cuda_host'))


def load_host_build(op: str, tmp_path_factory):
    """The host build of ``op``'s CUDA driver (``kernels/<op>/cuda_host.cpp``, g++ with
    ``-DMMVRWKV_HOST_CUDA``: the driver's host code and its kernels' bodies on CPU tensors,
    each launch emulated by loops over blocks and threads, ``kernels/common/launch.h``) as a
    Python module. Skips the test when the source (an installed package), a C++ compiler or
    ninja is missing. The build is never installed."""
    source = osp.join(KERNELS, op, 'cuda_host.cpp')
    if not osp.exists(source):
        pytest.skip(f'{source} not found (tests run outside a source checkout)')
    cxx = os.environ.get('CXX', 'c++')
    if shutil.which(cxx) is None:
        pytest.skip(f'no C++ compiler found ({cxx!r}; set CXX) for the host build of the CUDA '
                    'driver')
    from torch.utils import cpp_extension
    if not cpp_extension.is_ninja_available():
        pytest.skip('ninja not found (torch.utils.cpp_extension.load needs it)')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "No CUDA runtime is found" and similar
        return cpp_extension.load(
            name=f'mmvrwkv_{op}_cuda_host',
            sources=[source],
            extra_include_paths=[KERNELS],
            # -fvisibility=hidden: the module's copies of the kernels' symbols never bind to
            # (or from) those of mmvrwkv._ext, which holds the same names.
            extra_cflags=['-O2', '-DMMVRWKV_HOST_CUDA', '-fvisibility=hidden'],
            build_directory=host_build_dir(tmp_path_factory, op),
            with_cuda=False,
            verbose=False)
