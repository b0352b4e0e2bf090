"""The compiled Bi-WKV6 kernels ``torch.ops.mmvrwkv.bi_wkv6_{forward,backward}`` (built into
``mmvrwkv._ext`` from kernels/bi_wkv6/): their registration with :mod:`..backends`, and the
fake-tensor and autograd rules that make the forward a differentiable,
``torch.compile``-able custom op."""
import torch

from ..backends import register_compiled

if register_compiled('bi_wkv6', 'bi_wkv6_forward'):

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
