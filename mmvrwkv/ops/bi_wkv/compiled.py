"""The compiled Bi-WKV kernels ``torch.ops.mmvrwkv.bi_wkv_{forward,backward}`` (built into
``mmvrwkv._ext`` from kernels/bi_wkv/): availability, the CUDA chunk limit, and the fake-tensor and
autograd rules that make the forward a differentiable, ``torch.compile``-able custom op."""
import torch

from .._ext import extension, ext_load_error
from ..backends import register_compiled

_HAVE_OPS = register_compiled('bi_wkv', 'bi_wkv_forward')


def cuda_max_chunk_len() -> int:
    """Most tokens per chunk the CUDA kernel takes (its per-thread buffers are this long);
    read from the extension, the constant's one home (kernels/bi_wkv/params.h)."""
    ext = extension()
    if ext is None:
        raise RuntimeError(f'mmvrwkv._ext is not loaded: {ext_load_error()}')
    return int(ext.cuda_max_chunk_len)


if _HAVE_OPS:

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
