"""Portable O(T) Bi-WKV in plain PyTorch (autograd, tracing, export, FLOP counting):
exclusive cumulative sums in float64 with the per-channel maximum of k taken out, so nothing
cancels (derivation: ``README.md`` beside this file).

Range: results and gradients are finite and exact while
``max(span + max(spread, 0), lift) + vmag <= MAX_EXPONENT_RANGE`` (the terms:
:func:`exponent_budget`; their derivation and the sweep that measured it: ``README.md``);
:func:`check_range` raises outside it. The compiled kernels have no such limit.
"""
import math
from typing import Optional

import torch

from ..backends import capturing_graph

#: Largest ``max(span + max(spread, 0), lift) + vmag`` the float64 cumsum form handles
#: (``README.md``: range).
MAX_EXPONENT_RANGE = 600.0


def exponent_budget(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor,
                    v: Optional[torch.Tensor] = None) -> dict:
    """The terms of the range condition, as floats (NaN when an input holds NaN):
    ``span = T * max|w|``, ``spread`` = the largest per-channel ``max k - min (k + u)``,
    ``lift = max(0, max u)``, ``vmag = max(0, ln max|v|)`` and their ``total``
    ``max(span + max(spread, 0), lift) + vmag``."""
    with torch.no_grad():
        span = float(w.abs().amax()) * k.shape[1]
        kd, ud = k.to(torch.float64), u.to(torch.float64)
        spread = float((kd.amax(dim=1) - (kd + ud).amin(dim=1)).amax())
        umax = float(ud.amax())
        vmax = float(v.abs().amax()) if v is not None else 0.0
    lift = umax if not umax <= 0 else 0.0           # NaN stays NaN
    vmag = math.log(vmax) if not vmax <= 1 else 0.0
    reach = max(span + (spread if not spread <= 0 else 0.0), lift)
    if math.isnan(span + spread + lift):
        reach = math.nan
    return dict(span=span, spread=spread, lift=lift, vmag=vmag, total=reach + vmag)


def check_range(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor,
                v: Optional[torch.Tensor] = None) -> None:
    """Raise ``ValueError`` if the inputs are outside the exact range of :func:`bi_wkv_torch`
    (``max(span + max(spread, 0), lift) + vmag <= MAX_EXPONENT_RANGE``, see
    :func:`exponent_budget`; ``vmag`` counts only when ``v`` is given).

    Skipped while tracing, scripting, exporting or compiling (a data-dependent check cannot
    raise for the inputs of a later call; the range then is the caller's to respect).
    """
    if k.numel() == 0 or capturing_graph():
        return
    b = exponent_budget(w, u, k, v)
    if not b['total'] <= MAX_EXPONENT_RANGE:  # also catches NaN
        raise ValueError(
            f"bi_wkv (backend 'torch'): inputs outside the range this portable path computes "
            f'exactly: max(span + max(spread, 0), lift) + vmag = {b["total"]:.4g} must stay '
            f'<= {MAX_EXPONENT_RANGE:g}, else exponentials overflow float64; here span = '
            f'T * max|w| = {b["span"]:.4g}, spread = the largest per-channel max k - min '
            f'(k + u) = {b["spread"]:.4g}, lift = max(0, max u) = {b["lift"]:.4g}, vmag = '
            f'max(0, ln max|v|) = {b["vmag"]:.4g}. The compiled kernels (backends cpu / cuda, '
            'built by pip install -e .) have no such limit.')


def _exclusive_cumsum(x: torch.Tensor, dim: int, reverse: bool = False) -> torch.Tensor:
    if reverse:
        x = x.flip(dim)
    c = torch.cumsum(x, dim)
    c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c.narrow(dim, 0, c.shape[dim] - 1)], dim)
    return c.flip(dim) if reverse else c


def bi_wkv_torch(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 causal: bool = False) -> torch.Tensor:
    """Bi-WKV for w, u ``[C]`` and k, v ``[B, T, C]``; returns ``[B, T, C]`` in k's dtype."""
    T = k.shape[1]
    if k.numel() == 0:  # keep the (empty) result connected to the inputs for autograd
        return k * 0 + v * 0 + (w.sum() + u.sum()).to(k.dtype) * 0
    dtype = torch.float64
    kf, vf, wf, uf = k.to(dtype), v.to(dtype), w.to(dtype), u.to(dtype)
    m = kf.amax(dim=1, keepdim=True).detach()
    ek = torch.exp(kf - m)                                   # [B, T, C]
    iw = torch.arange(T, device=k.device, dtype=dtype)[:, None] * wf  # [T, C]
    e_pos, e_neg = torch.exp(iw), torch.exp(-iw)
    ew = torch.exp(wf)
    bonus = torch.exp(uf) * ek
    num = bonus * vf
    den = bonus
    # left: e^{-(t-1)w} = e^{w} e^{-t w}
    num = num + ew * e_neg * _exclusive_cumsum(e_pos * ek * vf, 1)
    den = den + ew * e_neg * _exclusive_cumsum(e_pos * ek, 1)
    if not causal:
        # right: e^{(t+1)w} = e^{w} e^{t w}
        num = num + ew * e_pos * _exclusive_cumsum(e_neg * ek * vf, 1, reverse=True)
        den = den + ew * e_pos * _exclusive_cumsum(e_neg * ek, 1, reverse=True)
    return (num / den).to(k.dtype)
