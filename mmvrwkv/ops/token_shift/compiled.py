"""Autograd and fake-tensor rules of the compiled shift-and-mix ops
``torch.ops.mmvrwkv.token_shift_mix_forward`` / ``token_shift_mix_backward``
(kernels/token_shift/), registered with :mod:`..backends` and given their rules when the loaded
extension has them.

Memory: the forward saves only ``x`` and ``mix``; the backward recomputes the shifted tokens
it needs inside the kernel, so no [B, T, C] intermediate outlives the forward.
"""
import torch

from ..backends import register_compiled

if register_compiled('token_shift_mix', 'token_shift_mix_forward'):

    @torch.library.register_fake('mmvrwkv::token_shift_mix_forward')
    def _forward_fake(x, mix, H, W, shift_mode, shift_pixel, head_size, quarter):
        return x.new_empty((mix.shape[0],) + tuple(x.shape))

    @torch.library.register_fake('mmvrwkv::token_shift_mix_backward')
    def _backward_fake(x, mix, grad_out, H, W, shift_mode, shift_pixel, head_size, quarter):
        return torch.empty_like(x), torch.empty_like(mix)

    def _setup_context(ctx, inputs, output):
        x, mix, *geometry = inputs
        ctx.save_for_backward(x, mix)
        ctx.geometry = geometry

    def _backward(ctx, grad_out):
        x, mix = ctx.saved_tensors
        gx, gmix = torch.ops.mmvrwkv.token_shift_mix_backward(x, mix, grad_out.contiguous(),
                                                              *ctx.geometry)
        return (gx, gmix) + (None,) * len(ctx.geometry)

    torch.library.register_autograd('mmvrwkv::token_shift_mix_forward', _backward,
                                    setup_context=_setup_context)
