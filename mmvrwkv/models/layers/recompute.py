"""The memory strategy of the mixers: linear stages whose inputs are recomputed in the
backward pass instead of being stored.

A ``nn.Linear`` keeps its input for the weight gradient. In the VRWKV mixers those inputs are
cheap functions of tensors that are kept anyway (the token-shift mixes of the normalised
tokens, the squared ReLU of the key, the receptance or SiLU gate of the WKV output), so
keeping them costs activation memory for nothing: :func:`recompute_linear` keeps the
function's inputs instead and recomputes its outputs (one cheap pass) in the backward.
With it a VRWKV block keeps 12 tensors of the size of its input for the backward instead of
24, a VRWKV6 block 15 instead of 40 (counted with saved-tensor hooks in
tests/models/test_recompute.py; a DeiT block keeps ~17).

Every mixer writes its forward once, as *linear stages* ``projections[m](f(*inputs)[m])``
around its core op, and runs them through :class:`LinearStages`, which picks per forward
how: recomputed (eager training), plain autograd (``torch.compile``, tracing, or a mixer with
``recompute = False``) or, without autograd, freeing each stage's inputs once it has run and
letting ``f`` overwrite its inputs in place where that lowers the peak.

Why not ``torch.utils.checkpoint`` with a selective policy (save matmul outputs, recompute the
rest)? It gives the same memory, but its dispatch mode intercepts every op in Python: on the
2-core CPU the VRWKV-T training step got 57 % slower at 224² (17 % at 896²), against a few per
cent here. Under ``torch.compile`` the mixers use the plain path: AOTAutograd's partitioner
makes the same recompute decisions itself.
"""
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmvrwkv.ops.backends import capturing_graph

MakeInputs = Callable[..., Tuple[torch.Tensor, ...]]
#: A bias-free ``nn.Linear``, or a ``[in, out]`` matrix ``P`` applied as ``z @ P``.
Projection = Union[nn.Linear, torch.Tensor]


def _autocast_state(device_type: str) -> tuple:
    if not torch.amp.is_autocast_available(device_type):
        return device_type, False, None
    return (device_type, torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type))


def _weight_grad(g: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The gradient of ``w`` in ``F.linear(z, w)`` for the output gradient ``g``, computed the
    way autograd's matrix-product backward does for ``w``'s layout (so that the rounding is
    the plain path's): ``g^T z`` for a row-major ``w`` (an ``nn.Linear`` weight), ``(z^T g)^T``
    otherwise (``w = P.mT`` of a row-major matrix ``P`` used as ``z @ P``)."""
    g2, z2 = g.reshape(-1, g.shape[-1]), z.reshape(-1, z.shape[-1]).to(g.dtype)
    if w.stride(-1) == 1 and w.stride(0) == w.shape[1]:
        return torch.matmul(g2.t(), z2).to(w.dtype)
    return torch.matmul(z2.t(), g2).t().to(w.dtype)


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
                grad_ws.append(_weight_grad(g, zd, w) if need_w else None)
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


class LinearStages:
    """How one mixer forward runs its linear stages (its memory strategy), chosen once per
    forward from the autograd state:

    * ``'recompute'`` (eager training, :func:`use_recompute` of ``tensors``, and the mixer's
      ``recompute`` flag): :func:`recompute_linear`, the backward keeps the stage's inputs and
      recomputes ``make_inputs``;
    * ``'plain'`` (gradients wanted otherwise: ``torch.compile``, where AOTAutograd makes the
      recompute decisions itself, tracing, or ``recompute = False``): the projections on
      ``make_inputs``'s outputs under plain autograd;
    * ``'inplace'`` (no autograd): the same, and :attr:`inplace` tells the mixer's functions
      that they may overwrite their inputs instead of allocating new tensors.

    Args:
        recompute: whether the mixer allows the recompute path.
        tensors: the mixer's input and a weight (whether a gradient is wanted).
    """

    def __init__(self, recompute: bool, *tensors: torch.Tensor) -> None:
        if recompute and use_recompute(*tensors):
            self.mode = 'recompute'
        else:
            self.mode = 'plain' if torch.is_grad_enabled() else 'inplace'

    @property
    def inplace(self) -> bool:
        """Whether the stage functions may overwrite their inputs (no autograd)."""
        return self.mode == 'inplace'

    def __call__(self, make_inputs: MakeInputs, inputs: Sequence[torch.Tensor],
                 projections: Sequence[Projection],
                 params: Sequence[torch.Tensor] = ()) -> Tuple[torch.Tensor, ...]:
        """``tuple(p(z) for p, z in zip(projections, make_inputs(*inputs)))``, a projection
        being a bias-free ``nn.Linear`` or a ``[in, out]`` matrix ``P`` (``z @ P``).

        ``make_inputs`` and ``params`` as for :func:`recompute_linear`.
        """
        if self.mode == 'recompute':
            weights = [p.weight if isinstance(p, nn.Linear) else p.mT for p in projections]
            return recompute_linear(make_inputs, inputs, weights, params=params)
        return tuple(p(z) if isinstance(p, nn.Linear) else z @ p
                     for p, z in zip(projections, make_inputs(*inputs)))
