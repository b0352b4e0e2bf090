"""Helpers for holding an op's paths to its float64 reference (shared by tests/ops)."""
import math
from typing import Callable, Dict, Sequence, Tuple

import torch

#: Absolute floor of the relative error of gradients: inputs and cotangents are unit-scale, so
#: gradients are O(1); the floor only matters where the exact gradient is ~0.
GRAD_FLOOR = 1.0
#: Names of the Bi-WKV gradients, in argument order.
GRAD_NAMES = ('gw', 'gu', 'gk', 'gv')


def forward_backward(fn: Callable, *inputs: torch.Tensor, grad: torch.Tensor
                     ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
    """``fn(*inputs)`` and the gradients of every input for the cotangent ``grad`` (the
    inputs are cloned, so the caller's tensors are untouched)."""
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    y = fn(*xs)
    y.backward(grad.to(y.dtype))
    return y.detach(), tuple(x.grad for x in xs)


def rel_err(x: torch.Tensor, ref: torch.Tensor, floor: float = 0.0) -> float:
    """``max|x - ref| / max(max|ref|, floor)``; inf if ``x`` is not finite."""
    x, ref = x.double().cpu(), ref.double().cpu()
    if ref.numel() == 0:
        return 0.0
    if not torch.isfinite(x).all():
        return math.inf
    return ((x - ref).abs().max() / max(ref.abs().max().item(), floor)).item()


def errors(y: torch.Tensor, grads: Sequence[torch.Tensor], y_ref: torch.Tensor,
           grads_ref: Sequence[torch.Tensor], names: Sequence[str] = GRAD_NAMES
           ) -> Dict[str, float]:
    """Relative errors of the output (no floor) and of each gradient (``GRAD_FLOOR``)."""
    out = {'y': rel_err(y, y_ref)}
    for n, g, r in zip(names, grads, grads_ref):
        out[n] = rel_err(g, r, GRAD_FLOOR)
    return out


def assert_errors(errs: Dict[str, float], tol, what: str = '') -> None:
    """Every error within ``tol`` (a number, or a dict by name); the message lists all."""
    limits = tol if isinstance(tol, dict) else dict.fromkeys(errs, tol)
    bad = {n: e for n, e in errs.items() if not e <= limits.get(n, math.inf)}
    assert not bad, (f'{what}: relative errors above the bound: '
                     + ', '.join(f'{n}={e:.3g} (> {limits[n]:g})' for n, e in bad.items())
                     + ' (all: ' + ', '.join(f'{n}={e:.2g}' for n, e in errs.items()) + ')')
