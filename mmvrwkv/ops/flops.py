"""FLOP accounting for the Bi-WKV and Bi-WKV6 ops (which FLOP counters cannot see).

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
#: FLOPs (multiply-adds) per (batch item, token, channel) and per channel of the head of one
#: Bi-WKV6 call; see :func:`bi_wkv6_flops`.
BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL = 7


def _check_sizes(fn: str, **sizes) -> None:
    for name, x in sizes.items():
        if isinstance(x, bool) or int(x) != x or x < 0:
            raise ValueError(f'{fn}: {name} must be a non-negative int, got {x!r}')


def bi_wkv_flops(B: int, T: int, C: int, causal: bool = False) -> int:
    """FLOPs of one Bi-WKV call on k, v of shape ``[B, T, C]``: ``29 * B * T * C``.

    The constant is the per-element count the original Vision-RWKV FLOP tool adds for its
    Bi-WKV kernel (29 * T * C per layer and image). ``causal`` is accepted for symmetry and
    does not change the count.
    """
    _check_sizes('bi_wkv_flops', B=B, T=T, C=C)
    return BI_WKV_FLOPS_PER_ELEMENT * int(B) * int(T) * int(C)


def bi_wkv6_flops(B: int, T: int, C: int, head_size: int) -> int:
    """FLOPs of one Bi-WKV6 call on r, k, v, w of shape ``[B, T, C]`` with heads of
    ``head_size`` channels: ``7 * head_size * B * T * C``.

    Why 7 per element and key channel: for each token, value channel i and key channel j
    of its head the op does, in each of its two scans, one multiply-add reading the state
    (r_t[j] S[j, i]) and two updating it (d_t[j] S[j, i] + k_t[j] v_t[i]), so 6, plus 1 for
    the bonus term u[j] k_t[j] v_t[i]; counted as MACs like mmcv's counters (1 MAC = 1 FLOP).
    It is also the head-size term of the original VRWKV6 FLOP tool (``7 * head_size`` per
    token and channel in its per-layer formula; that formula's further ``+ 17`` per element
    belongs to the element-wise mixing around the op, which hooks count where they can).
    The decays exp(-exp(w)) (2 exp per element) are not counted, as no exp is elsewhere.
    """
    _check_sizes('bi_wkv6_flops', B=B, T=T, C=C, head_size=head_size)
    if head_size < 1 or C % head_size:
        raise ValueError(f'bi_wkv6_flops: head_size must be >= 1 and divide C = {C}, '
                         f'got {head_size!r}')
    return BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL * int(head_size) * int(B) * int(T) * int(C)
