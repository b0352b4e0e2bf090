"""FLOPs of the Bi-WKV op, and its node for FLOP counting (:mod:`mmvrwkv.ops.flops`).

    bi_wkv_flops(B, T, C) = 29 * B * T * C

``29`` per (batch item, token, channel) is the constant the original Vision-RWKV FLOP tool
(OpenGVLab/Vision-RWKV, ``classification/get_flops_backbone.py``) adds per layer (29 * N * C
for N tokens of C channels, one image), so totals stay comparable with the paper's figures.
The causal ('uni') variant is counted with the same constant (an upper bound; the original
never counted it).
"""
import torch

from ..flops import CountedOp, check_sizes, register_counted_op, traced_constant, traced_shape
from .portable import bi_wkv_torch

#: FLOPs per (batch item, token, channel) of one Bi-WKV call (the original's constant).
BI_WKV_FLOPS_PER_ELEMENT = 29


def bi_wkv_flops(B: int, T: int, C: int, causal: bool = False) -> int:
    """FLOPs of one Bi-WKV call on k, v of shape ``[B, T, C]``: ``29 * B * T * C``.
    ``causal`` is accepted for symmetry and does not change the count."""
    check_sizes('bi_wkv_flops', B=B, T=T, C=C)
    return BI_WKV_FLOPS_PER_ELEMENT * int(B) * int(T) * int(C)


@torch.library.custom_op('mmvrwkv_flops::bi_wkv', mutates_args=())
def bi_wkv_counted(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   causal: bool) -> torch.Tensor:
    """One Bi-WKV call as a single traced node (the front runs it inside
    :func:`mmvrwkv.ops.flops.counting`): the portable path, unchecked like the portable
    path while tracing (:func:`.portable.check_range` is skipped then)."""
    return bi_wkv_torch(w, u, k, v, causal=causal)


def _call_sizes(inputs) -> dict:
    B, T, C = traced_shape(inputs[2])  # k
    return dict(B=B, T=T, C=C, causal=bool(traced_constant(inputs[4])))


register_counted_op(CountedOp('bi_wkv', _call_sizes, bi_wkv_flops))
