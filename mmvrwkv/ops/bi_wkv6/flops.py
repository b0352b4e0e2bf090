"""FLOPs of the Bi-WKV6 op, and its node for FLOP counting (:mod:`mmvrwkv.ops.flops`).

    bi_wkv6_flops(B, T, C, head_size) = 7 * head_size * B * T * C

Derivation: ``README.md`` beside this file, section FLOPs.
"""
import torch

from ..flops import CountedOp, check_sizes, register_counted_op, traced_shape
from .portable import bi_wkv6_torch

#: FLOPs (multiply-adds) per (batch item, token, channel) and per channel of the head of one
#: Bi-WKV6 call; see :func:`bi_wkv6_flops`.
BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL = 7


def bi_wkv6_flops(B: int, T: int, C: int, head_size: int) -> int:
    """FLOPs of one Bi-WKV6 call on r, k, v, w of shape ``[B, T, C]`` with heads of
    ``head_size`` channels: ``7 * head_size * B * T * C`` (multiply-adds, 1 MAC = 1 FLOP as
    in mmcv's counters; the head-size term of the original VRWKV6 FLOP tool)."""
    check_sizes('bi_wkv6_flops', B=B, T=T, C=C, head_size=head_size)
    if head_size < 1 or C % head_size:
        raise ValueError(f'bi_wkv6_flops: head_size must be >= 1 and divide C = {C}, '
                         f'got {head_size!r}')
    return BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL * int(head_size) * int(B) * int(T) * int(C)


@torch.library.custom_op('mmvrwkv_flops::bi_wkv6', mutates_args=())
def bi_wkv6_counted(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
    """One Bi-WKV6 call as a single traced node (the front runs it inside
    :func:`mmvrwkv.ops.flops.counting`): the portable path."""
    return bi_wkv6_torch(r, k, v, w, u)


def _call_sizes(inputs) -> dict:
    B, T, C = traced_shape(inputs[0])  # r
    return dict(B=B, T=T, C=C, head_size=traced_shape(inputs[4])[1])  # u: [H, N]


register_counted_op(CountedOp('bi_wkv6', _call_sizes, bi_wkv6_flops))
