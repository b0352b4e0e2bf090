"""How far a benchmarked result is from its reference (the benchmarks' ``--check``)."""
from typing import Any

import torch


def max_rel_err(out: Any, ref: Any) -> float:
    """Worst max|x - x_ref| / max|x_ref| over a tensor or paired sequences of tensors
    (inf when x is not finite; the absolute error when x_ref is all zero)."""
    outs = out if isinstance(out, (tuple, list)) else (out, )
    refs = ref if isinstance(ref, (tuple, list)) else (ref, )
    worst = 0.0
    for a, b in zip(outs, refs):
        a, b = a.detach().double(), b.detach().double()
        if not torch.isfinite(a).all():
            return float('inf')
        scale = b.abs().max().item()
        err = (a - b).abs().max().item()
        worst = max(worst, err / scale if scale > 0 else err)
    return worst
