"""Portable O(T) Bi-WKV in plain PyTorch (autograd, tracing, export, FLOP counting).

Because w is the decay divided by T, every ``i * w`` (0 <= i < T) is bounded by the
undivided decay. So, with m the per-(b, c) maximum of k (it cancels in the ratio):

    left_t  = sum_{i<t} e^{-(t-1-i) w + k_i - m} v_i = e^{-(t-1) w} * excl_cumsum_i(e^{i w} e^{k_i - m} v_i)
    right_t = sum_{i>t} e^{-(i-t-1) w + k_i - m} v_i = e^{(t+1) w} * excl_revcumsum_i(e^{-i w} e^{k_i - m} v_i)

One exp per element (e^{k-m}) serves both directions and both numerator and denominator;
the e^{+-i w} factors are [T, C] and shared by the batch. Exclusive sums are built by shifting,
never by subtraction, so nothing cancels. Computes in float64 and returns k's dtype.

Range: the factors e^{+-i w} reach e^{T |w|}, a token whose own term e^{u + k_t - m} is
tiny has a tiny denominator, whose square the backward divides by, the bonus factor e^{u}
is formed on its own, and v multiplies every term of the numerator. With

* ``span = T * max|w|``,
* ``spread = max over (b, c) of (max_t k - min_t (k_t + u))``,
* ``lift = max(0, max u)`` (the bonus factor e^{u} overflows float64 from u ~ 709 on; a
  large u also makes ``spread`` negative, which must not buy room for ``span``),
* ``vmag = max(0, ln max|v|)`` (the numerator reaches T e^{span or lift} max|v|),

results and gradients are finite and exact while ``max(span + max(spread, 0), lift) + vmag
<= MAX_EXPONENT_RANGE`` (600; float64 overflows at 709). Swept against the float64
reference of the same (rounded) inputs, with span, spread and u drawn up to ~750 and |v| up
to 1e120, both decay signs, bi- and uni-directional, fp32 and fp64
(tests/ops/test_bi_wkv.py, ``test_torch_backend_range_sweep``: 120 cases, T <= 257; while
writing the check 3000 such cases and 60 at T = 1024 / 2048): every accepted case was exact,
values and gradients within 2e-6 relative in fp32 (the math is float64; the output
rounding remains) and 1e-10 in fp64. Outside the range,
:func:`check_range` raises instead of returning non-finite values (conservatively: a large
spread alone, without decay, would still be fine); the compiled kernels have no such limit.
Trained models sit far inside (|spatial_decay| and |k| of order 10).
Before issue 21 the check ignored lift and vmag: u >= 709 (or |v| ~ 1e100 in fp64) passed it
and returned inf/NaN.
"""
import math
from typing import Optional

import torch

from ..backends import capturing_graph

#: Largest ``max(span + max(spread, 0), lift) + vmag`` the float64 cumsum form handles
#: (module docstring).
MAX_EXPONENT_RANGE = 600.0


def exponent_budget(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor,
                    v: Optional[torch.Tensor] = None) -> dict:
    """The terms ``span``, ``spread``, ``lift`` and ``vmag`` of the range condition (module
    docstring) and their ``total``, as floats (NaN when an input holds NaN)."""
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
    (``max(span + max(spread, 0), lift) + vmag <= MAX_EXPONENT_RANGE``, module docstring;
    ``vmag`` counts only when ``v`` is given).

    Skipped while tracing, scripting, exporting or compiling (a data-dependent check cannot raise for
    the inputs of a later call; the range then is the caller's to respect).
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
