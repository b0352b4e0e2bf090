"""Public Bi-WKV op: input checks and backend choice.

Backends compute the same function, the formula of :mod:`.reference` (derivations:
``README.md`` beside this file):

* ``'cuda'``: compiled CUDA kernel (fp32/fp16/bf16 in and out with fp32 math; fp64 in fp64);
* ``'cpu'``: compiled CPU kernel (SIMD over channels, torch's thread pool);
* ``'torch'``: portable O(T) pure PyTorch, :mod:`.portable` (tracing, ONNX export, no
  extension);
* ``'reference'``: O(T^2) float64 summation (tests only; returns k's dtype here).

``'auto'`` picks the compiled kernel for the tensors' device when it is built, and ``'torch'``
while tracing/scripting/exporting or without the extension. Under ``torch.compile`` the
compiled kernels are seen as the custom op ``torch.ops.mmvrwkv.bi_wkv_forward`` (with a fake
implementation, :mod:`.compiled`), so no graph break is needed. Inside
:func:`mmvrwkv.ops.flops.counting` a call is one node counted by :func:`.flops.bi_wkv_flops`.
"""
from typing import Optional

import torch

from ..backends import check_float_tensors, resolve_backend
from ..flops import counting_active
from .compiled import cuda_max_chunk_len
from .flops import BI_WKV_FLOPS_PER_ELEMENT, bi_wkv_counted, bi_wkv_flops
from .portable import bi_wkv_torch, check_range
from .reference import bi_wkv_reference

__all__ = ['bi_wkv', 'bi_wkv_torch', 'bi_wkv_reference', 'bi_wkv_flops',
           'BI_WKV_FLOPS_PER_ELEMENT', 'DEFAULT_CHUNK_LEN']

# Tokens per chunk of the compiled kernels (CUDA: at most cuda_max_chunk_len()). CPU: 32 was
# measured best-or-close with the fast forward path (kernels/bi_wkv/core.h), which runs for chunks of at
# most 64 tokens and whose rounding grows with the chunk length.
DEFAULT_CHUNK_LEN = {'cuda': 16, 'cpu': 32}


def _check(w, u, k, v) -> None:
    check_float_tensors('bi_wkv', w=w, u=u, k=k, v=v)
    if k.dim() != 3:
        raise ValueError(f'bi_wkv: k must have shape [B, T, C], got {tuple(k.shape)}')
    if v.shape != k.shape:
        raise ValueError(f'bi_wkv: v must have the shape of k {tuple(k.shape)}, got {tuple(v.shape)}')
    if v.dtype != k.dtype:
        raise TypeError(f'bi_wkv: v must have the dtype of k ({k.dtype}), got {v.dtype}')
    C = k.shape[2]
    for name, x in (('w', w), ('u', u)):
        if x.shape != (C,):
            raise ValueError(f'bi_wkv: {name} must have shape [C] = ({C},), got {tuple(x.shape)}')
    for name, x in (('w', w), ('u', u), ('v', v)):
        if x.device != k.device:
            raise ValueError(f'bi_wkv: {name} is on {x.device} but k is on {k.device}; '
                             'all inputs must be on one device')


def bi_wkv(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
           backend: str = 'auto', causal: bool = False,
           chunk_len: Optional[int] = None) -> torch.Tensor:
    """Bidirectional WKV attention (Vision-RWKV; formula in :mod:`.reference`).

    Args:
        w: decay ``[C]``, already divided by the token count T (``spatial_decay / T``).
        u: bonus ``[C]``, already divided by T (``spatial_first / T``).
        k: keys ``[B, T, C]``.
        v: values ``[B, T, C]``, same dtype and device as k.
        backend: 'auto' | 'cuda' | 'cpu' | 'torch' | 'reference'.
        causal: only tokens before t enter y_t (uni-directional RWKV, for ablations).
        chunk_len: tokens per chunk of the compiled kernels (tuning/testing; default per device).

    Returns:
        y ``[B, T, C]`` with k's dtype. Differentiable w.r.t. w, u, k and v.
    """
    _check(w, u, k, v)
    name = resolve_backend('bi_wkv', backend, k.device)
    if counting_active():
        return bi_wkv_counted(w, u, k, v, causal)
    if name == 'torch':
        check_range(w, u, k, v)
        return bi_wkv_torch(w, u, k, v, causal=causal)
    if name == 'reference':
        return bi_wkv_reference(w, u, k, v, causal=causal).to(k.dtype)
    if not (k.is_contiguous() and v.is_contiguous()):
        bad = 'k' if not k.is_contiguous() else 'v'
        raise ValueError(f"bi_wkv: backend {name!r} needs contiguous k and v; {bad} is not "
                         '(call .contiguous() first)')
    if chunk_len is None:
        chunk_len = DEFAULT_CHUNK_LEN[name]
    limit = cuda_max_chunk_len() if name == 'cuda' else None
    if (isinstance(chunk_len, bool) or not isinstance(chunk_len, int) or chunk_len < 1
            or (limit is not None and chunk_len > limit)):
        bound = f'between 1 and {limit}' if limit else '>= 1'
        raise ValueError(f'bi_wkv: chunk_len must be an int {bound} for backend {name!r}, '
                         f'got {chunk_len!r}')
    return torch.ops.mmvrwkv.bi_wkv_forward(w, u, k, v, chunk_len, causal)
