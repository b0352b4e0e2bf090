"""Loads the compiled extension ``mmvrwkv._ext`` (built by setup.py, never at import time)
and registers autograd and fake-tensor rules for its ops ``torch.ops.mmvrwkv.*``."""
from typing import Optional

import torch

_ext = None
_load_error: Optional[BaseException] = None
try:  # pragma: no cover - depends on how the package was installed
    from mmvrwkv import _ext  # noqa: F401  (registers torch.ops.mmvrwkv)
except ImportError as e:  # pure-Python install (MMVRWKV_NO_EXT=1) or a failed build
    _load_error = e


def ext_available() -> bool:
    """True when the compiled op (at least its CPU kernel) is loaded."""
    return _ext is not None


def ext_has_cuda() -> bool:
    """True when the compiled op includes the CUDA kernel."""
    return _ext is not None and bool(_ext.with_cuda)


def cuda_max_chunk_len() -> int:
    """Most tokens per chunk the CUDA kernel takes (its per-thread buffers are this long);
    read from the extension, the constant's one home (kernels/bi_wkv.h)."""
    if _ext is None:
        raise RuntimeError(f'mmvrwkv._ext is not loaded: {_load_error}')
    return int(_ext.cuda_max_chunk_len)


def ext_load_error() -> Optional[BaseException]:
    return _load_error


if _ext is not None:

    @torch.library.register_fake('mmvrwkv::bi_wkv_forward')
    def _forward_fake(w, u, k, v, chunk_len, causal):
        return torch.empty_like(k)

    @torch.library.register_fake('mmvrwkv::bi_wkv_backward')
    def _backward_fake(w, u, k, v, grad_y, chunk_len, causal):
        return torch.empty_like(w), torch.empty_like(u), torch.empty_like(k), torch.empty_like(v)

    def _setup_context(ctx, inputs, output):
        w, u, k, v, chunk_len, causal = inputs
        ctx.save_for_backward(w, u, k, v)
        ctx.chunk_len = chunk_len
        ctx.causal = causal

    def _backward(ctx, grad_y):
        w, u, k, v = ctx.saved_tensors
        gw, gu, gk, gv = torch.ops.mmvrwkv.bi_wkv_backward(w, u, k, v, grad_y.contiguous(),
                                                           ctx.chunk_len, ctx.causal)
        return gw, gu, gk, gv, None, None

    torch.library.register_autograd('mmvrwkv::bi_wkv_forward', _backward,
                                    setup_context=_setup_context)
