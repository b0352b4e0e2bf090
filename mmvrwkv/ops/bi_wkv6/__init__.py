"""Public bidirectional WKV6 op (Vision-RWKV 6): input checks and backend choice.

Backends compute the same function, the formula of :mod:`.reference` (derivations of the
compiled kernels and their gradients: ``kernels/README.md``, section Bi-WKV6):

* ``'cuda'``: compiled CUDA kernel (fp32/fp16/bf16/fp64 inputs, fp32 (fp64) state);
* ``'cpu'``: compiled CPU kernel (both scans per (batch, head), custom backward);
* ``'torch'``: portable chunked PyTorch (autograd, tracing, export, FLOP counting, no
  extension); exact for every w the kernels take, i.e. all of [-inf, +inf] (fp32 ~1e-6 of
  the output; range and sweep in :mod:`.torch`), so it needs no range check;
* ``'reference'``: O(T^2) float64 summation (tests only; returns r's dtype here).

``'auto'`` picks the compiled kernel for the tensors' device when it is built, and ``'torch'``
while tracing/scripting/exporting or without the extension. Under ``torch.compile`` the
compiled kernels are the custom op ``torch.ops.mmvrwkv.bi_wkv6_forward`` with a fake
implementation (:mod:`.compiled`), so ``fullgraph=True`` works.
"""
import torch

from ..backends import BACKENDS, check_float_tensors, resolve_backend
from ..backends import available_backends as _available_backends
from .compiled import compiled_available
from .reference import bi_wkv6_reference
from .torch import bi_wkv6_torch

# Importing the submodule .torch bound the package attribute (= this module's global) `torch`
# to it: bind the name back to the torch package.
import torch  # noqa: E402,F811

def _check(r, k, v, w, u) -> None:
    check_float_tensors('bi_wkv6', r=r, k=k, v=v, w=w, u=u)
    if r.dim() != 3:
        raise ValueError(f'bi_wkv6: r must have shape [B, T, C], got {tuple(r.shape)}')
    for name, x in (('k', k), ('v', v), ('w', w)):
        if x.shape != r.shape:
            raise ValueError(f'bi_wkv6: {name} must have the shape of r {tuple(r.shape)}, '
                             f'got {tuple(x.shape)}')
    for name, x in (('k', k), ('v', v)):
        if x.dtype != r.dtype:
            raise TypeError(f'bi_wkv6: {name} must have the dtype of r ({r.dtype}), got {x.dtype}')
    C = r.shape[2]
    if u.dim() != 2 or u.shape[0] * u.shape[1] != C or u.shape[1] < 1:
        raise ValueError(f'bi_wkv6: u must have shape [H, N] with H * N = C = {C} '
                         f'(heads x channels per head), got {tuple(u.shape)}')
    for name, x in (('k', k), ('v', v), ('w', w), ('u', u)):
        if x.device != r.device:
            raise ValueError(f'bi_wkv6: {name} is on {x.device} but r is on {r.device}; '
                             'all inputs must be on one device')


def available_backends() -> tuple:
    """Backends of bi_wkv6 usable in this process, best first."""
    return _available_backends(compiled_available())


def bi_wkv6(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
            u: torch.Tensor, *, backend: str = 'auto') -> torch.Tensor:
    """Bidirectional WKV6 (formula in :mod:`.reference`).

    Args:
        r: receptance (queries) ``[B, T, C]``, C = H * N.
        k: keys ``[B, T, C]``, same dtype and device as r.
        v: values ``[B, T, C]``, same dtype and device as r.
        w: decay logits ``[B, T, C]`` (any float dtype): token m decays a pair spanning it by
            ``exp(-exp(w_m))``. Any value in [-inf, +inf] on every backend (+inf: decay 0,
            -inf: decay 1); NaN propagates.
        u: bonus ``[H, N]`` (any float dtype), weighting each token's own key-value pair.
        backend: 'auto' | 'cuda' | 'cpu' | 'torch' | 'reference'.

    Returns:
        y ``[B, T, C]`` with r's dtype. Differentiable w.r.t. r, k, v, w and u.
    """
    _check(r, k, v, w, u)
    name = resolve_backend('bi_wkv6', backend, r.device, compiled_available(), 'bi_wkv6_forward')
    if name == 'torch':
        return bi_wkv6_torch(r, k, v, w, u)
    if name == 'reference':
        return bi_wkv6_reference(r, k, v, w, u).to(r.dtype)
    return torch.ops.mmvrwkv.bi_wkv6_forward(r.contiguous(), k.contiguous(), v.contiguous(),
                                             w.contiguous(), u.contiguous())


__all__ = ['bi_wkv6', 'bi_wkv6_reference', 'bi_wkv6_torch', 'available_backends', 'BACKENDS']
