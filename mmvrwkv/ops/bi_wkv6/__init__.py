"""Public bidirectional WKV6 op (Vision-RWKV 6): input checks and backend choice.

Backends compute the same function, the formula of :mod:`.reference` (derivations of the
scans and their gradients: ``README.md`` beside this file):

* ``'cuda'``: compiled CUDA kernel (fp32/fp16/bf16/fp64 inputs, fp32 (fp64) state);
* ``'cpu'``: compiled CPU kernel (both scans per (batch, head), custom backward);
* ``'torch'``: portable chunked PyTorch, :mod:`.portable` (autograd, tracing, export, no
  extension); exact for every w the kernels take, i.e. all of [-inf, +inf] (fp32 ~1e-6 of
  the output; range and sweep in :mod:`.portable`), so it needs no range check;
* ``'reference'``: O(T^2) float64 summation (tests only; returns r's dtype here).

``'auto'`` picks the compiled kernel for the tensors' device when it is built, and ``'torch'``
while tracing/scripting/exporting or without the extension. Under ``torch.compile`` the
compiled kernels are the custom op ``torch.ops.mmvrwkv.bi_wkv6_forward`` with a fake
implementation (:mod:`.compiled`), so ``fullgraph=True`` works. Inside
:func:`mmvrwkv.ops.flops.counting` a call is one node counted by :func:`.flops.bi_wkv6_flops`.
"""
import torch

from ..backends import check_float_tensors, resolve_backend
from ..flops import counting_active
from . import compiled  # noqa: F401  (registers the kernels' rules)
from .flops import BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL, bi_wkv6_counted, bi_wkv6_flops
from .portable import bi_wkv6_torch
from .reference import bi_wkv6_reference

__all__ = ['bi_wkv6', 'bi_wkv6_reference', 'bi_wkv6_torch', 'bi_wkv6_flops',
           'BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL']


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
    name = resolve_backend('bi_wkv6', backend, r.device)
    if counting_active():
        return bi_wkv6_counted(r, k, v, w, u)
    if name == 'torch':
        return bi_wkv6_torch(r, k, v, w, u)
    if name == 'reference':
        return bi_wkv6_reference(r, k, v, w, u).to(r.dtype)
    return torch.ops.mmvrwkv.bi_wkv6_forward(r.contiguous(), k.contiguous(), v.contiguous(),
                                             w.contiguous(), u.contiguous())
