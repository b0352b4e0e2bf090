"""The compiled Bi-WKV6 kernels ``torch.ops.mmvrwkv.bi_wkv6_{forward,backward}`` (built into
``mmvrwkv._ext`` from kernels/bi_wkv6*.{cpp,cu}): availability, and the fake-tensor and
autograd rules that make the forward a differentiable, ``torch.compile``-able custom op."""
from typing import Optional

import torch

from .._ext import ext_available, ext_has_cuda, ext_load_error

_HAVE_OPS = ext_available() and hasattr(torch.ops.mmvrwkv, 'bi_wkv6_forward')


def compiled_available() -> bool:
    """True when mmvrwkv._ext is loaded and contains the bi_wkv6 kernels (CPU at least)."""
    return _HAVE_OPS


def compiled_has_cuda() -> bool:
    """True when the bi_wkv6 CUDA kernel is built."""
    return _HAVE_OPS and ext_has_cuda()


def compiled_load_error() -> Optional[str]:
    if not ext_available():
        return f'mmvrwkv._ext failed to load: {ext_load_error()}'
    if not _HAVE_OPS:
        return 'mmvrwkv._ext predates the bi_wkv6 kernels: rebuild it (pip install -e .)'
    return None


if _HAVE_OPS:

    @torch.library.register_fake('mmvrwkv::bi_wkv6_forward')
    def _forward_fake(r, k, v, w, u):
        return torch.empty_like(r)

    @torch.library.register_fake('mmvrwkv::bi_wkv6_backward')
    def _backward_fake(r, k, v, w, u, grad_y):
        return (torch.empty_like(r), torch.empty_like(k), torch.empty_like(v),
                torch.empty_like(w), torch.empty_like(u))

    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _backward(ctx, grad_y):
        r, k, v, w, u = ctx.saved_tensors
        return torch.ops.mmvrwkv.bi_wkv6_backward(r, k, v, w, u, grad_y.contiguous())

    torch.library.register_autograd('mmvrwkv::bi_wkv6_forward', _backward,
                                    setup_context=_setup_context)
