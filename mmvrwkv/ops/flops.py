"""FLOP accounting for the Bi-WKV op (which FLOP counters cannot see).

Counters built on module hooks (mmcv's ``get_model_complexity_info``) or on the traced graph
(mmengine's ``FlopAnalyzer``) count the projections around the Bi-WKV op but not the op
itself: the compiled kernels are opaque, and the portable backend's ``exp``/``cumsum``/``mul``
ops are "unsupported" (ignored) by the analyzer. So the op's cost is added by hand, per call:

    bi_wkv_flops(B, T, C) = 29 * B * T * C

``29`` per element (per batch item, token and channel) is the constant the original
Vision-RWKV FLOP tool (``classification/get_flops_backbone.py``) adds per layer (29 * N * C
for N tokens of C channels, one image), so totals stay comparable with the paper's figures.
The causal ('uni') variant is counted with the same constant (an upper bound; the original
never counted it).

Counting the calls happens outside the op: every module that calls it has a method
``bi_wkv_call(x) -> (B, T, C, causal)`` giving the call one forward on ``x`` makes
(:class:`~mmvrwkv.models.layers.SpatialMix`), and ``tools/analysis/get_flops.py`` hooks those
modules. Needs only torch.
"""
#: FLOPs per (batch item, token, channel) of one Bi-WKV call (the original's constant).
BI_WKV_FLOPS_PER_ELEMENT = 29


def bi_wkv_flops(B: int, T: int, C: int, causal: bool = False) -> int:
    """FLOPs of one Bi-WKV call on k, v of shape ``[B, T, C]``: ``29 * B * T * C``.

    The constant is the per-element count the original Vision-RWKV FLOP tool adds for its
    Bi-WKV kernel (29 * T * C per layer and image). ``causal`` is accepted for symmetry and
    does not change the count.
    """
    for name, x in (('B', B), ('T', T), ('C', C)):
        if isinstance(x, bool) or int(x) != x or x < 0:
            raise ValueError(f'bi_wkv_flops: {name} must be a non-negative int, got {x!r}')
    return BI_WKV_FLOPS_PER_ELEMENT * int(B) * int(T) * int(C)
