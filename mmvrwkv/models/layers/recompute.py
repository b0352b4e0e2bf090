"""Linear layers whose inputs are recomputed in the backward pass instead of being stored.

A ``nn.Linear`` keeps its input for the weight gradient. In the VRWKV mixers those inputs are
cheap elementwise functions of tensors that are kept anyway (the token-shift mixes of the
normalised tokens, the squared ReLU of the key, the receptance gate of the WKV output), so
keeping them costs activation memory for nothing: :func:`recompute_linear` keeps the
function's inputs instead and recomputes its outputs (one elementwise pass) in the backward.
With it a VRWKV block keeps 12 tensors of the size of its input for the backward instead of
24 (counted with saved-tensor hooks in tests/models/test_recompute.py; a DeiT block keeps ~17).

Why not ``torch.utils.checkpoint`` with a selective policy (save matmul outputs, recompute the
rest)? It gives the same memory, but its dispatch mode intercepts every op in Python: on the
2-core CPU the VRWKV-T training step got 57 % slower at 224² (17 % at 896²), against a few per
cent here. Under ``torch.compile`` the mixers use the plain path: AOTAutograd's partitioner
makes the same recompute decisions itself.
"""
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmvrwkv.ops.backends import capturing_graph

MakeInputs = Callable[..., Tuple[torch.Tensor, ...]]


def _autocast_state(device_type: str) -> tuple:
    if not torch.amp.is_autocast_available(device_type):
        return device_type, False, None
    return (device_type, torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type))


class _RecomputedInputLinear(torch.autograd.Function):
    """``outs[m] = linear(make_inputs(*inputs)[m], weights[m])``; saves ``inputs``."""

    @staticmethod
    def forward(ctx, make_inputs: MakeInputs, num_inputs: int, num_params: int, *tensors):
        inputs = tensors[:num_inputs]
        params = tensors[num_inputs:num_inputs + num_params]
        weights = tensors[num_inputs + num_params:]
        with torch.no_grad():
            zs = make_inputs(*inputs)
            outs = tuple(F.linear(z, w) for z, w in zip(zs, weights))
        ctx.make_inputs = make_inputs
        ctx.counts = (num_inputs, num_params)
        ctx.autocast = _autocast_state(inputs[0].device.type)
        ctx.params = params  # leaves read by make_inputs: kept as they are (not saved copies)
        ctx.save_for_backward(*inputs, *weights)
        return outs

    @staticmethod
    def backward(ctx, *grads):
        n_in, n_par = ctx.counts
        saved = ctx.saved_tensors
        inputs, weights, params = saved[:n_in], saved[n_in:], ctx.params
        needs = ctx.needs_input_grad[3:]
        device_type, enabled, dtype = ctx.autocast
        detached = tuple(x.detach().requires_grad_(need) for x, need in zip(inputs, needs))
        with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            zs = ctx.make_inputs(*detached)
            grad_zs, grad_ws = [], []
            for z, w, g, need_w in zip(zs, weights, grads, needs[n_in + n_par:]):
                if g is None:
                    grad_zs.append(None)
                    grad_ws.append(None)
                    continue
                zd = z.detach()
                grad_ws.append(
                    torch.matmul(g.reshape(-1, g.shape[-1]).t(), zd.reshape(-1, zd.shape[-1])
                                 .to(g.dtype)).to(w.dtype) if need_w else None)
                grad_zs.append(torch.matmul(g, w.to(g.dtype)).to(z.dtype))
        wanted = [t for t, need in zip(detached + tuple(params), needs) if need]
        pairs = [(z, g) for z, g in zip(zs, grad_zs) if g is not None and z.requires_grad]
        grads_in = torch.autograd.grad([z for z, _ in pairs], wanted, [g for _, g in pairs],
                                       allow_unused=True) if wanted and pairs else ()
        it = iter(grads_in)
        grad_inputs = [next(it) if need and pairs else None for need in needs[:n_in + n_par]]
        return (None, None, None, *grad_inputs, *grad_ws)


def recompute_linear(make_inputs: MakeInputs, inputs: Sequence[torch.Tensor],
                     weights: Sequence[torch.Tensor],
                     params: Sequence[torch.Tensor] = ()) -> Tuple[torch.Tensor, ...]:
    """``tuple(linear(z, w) for z, w in zip(make_inputs(*inputs), weights))`` (bias-free),
    keeping ``inputs`` (not the ``z``) for the backward and recomputing ``make_inputs`` there.

    Args:
        make_inputs: a cheap function of ``inputs`` returning one tensor per weight. It may
            read module parameters; those must be listed in ``params`` so that they get their
            gradients.
        inputs: tensors ``make_inputs`` is called with.
        weights: one ``[out, in]`` weight per output.
        params: the parameters ``make_inputs`` reads besides ``inputs``.
    """
    inputs, params, weights = tuple(inputs), tuple(params), tuple(weights)
    return _RecomputedInputLinear.apply(make_inputs, len(inputs), len(params),
                                        *inputs, *params, *weights)


def module_parameters(module: Optional[nn.Module]) -> Tuple[torch.Tensor, ...]:
    """The parameters of ``module`` as a tuple (``()`` for None), for ``params=``."""
    return () if module is None else tuple(module.parameters())


def use_recompute(*tensors: torch.Tensor) -> bool:
    """Whether an eager training pass is running (gradients wanted, not compiling/tracing),
    where :func:`recompute_linear` saves memory."""
    if not torch.is_grad_enabled() or capturing_graph():
        return False
    return any(t.requires_grad for t in tensors)
