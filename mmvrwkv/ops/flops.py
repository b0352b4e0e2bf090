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

To know which calls happen, wrap one forward in :func:`record_bi_wkv_calls`::

    with record_bi_wkv_calls(model) as rec:
        model(x)
    rec.flops()          # sum of bi_wkv_flops over the recorded calls
    rec.calls            # [BiWKVCall(B, T, C, causal, module, pass_idx), ...]

:func:`mmvrwkv.ops.bi_wkv` reports each call to :func:`record_bi_wkv_call`, which returns at
once when no recording is active. With ``model`` given, every call is attributed to the
innermost module running at that time (its name in ``model.named_modules()``), and each
top-level ``model(...)`` call starts a new *pass*: a tool whose analysis runs the forward more
than once (tracing, warm-up) takes one pass with :meth:`BiWKVRecorder.single_pass` instead of
counting the op several times. Needs only torch.
"""
from typing import Dict, List, NamedTuple, Optional

import torch.nn as nn

#: FLOPs per (batch item, token, channel) of one Bi-WKV call (the original's constant).
BI_WKV_FLOPS_PER_ELEMENT = 29

# Active recorders, innermost last; bi_wkv only pays a truthiness check while this is empty.
_RECORDERS: List['BiWKVRecorder'] = []


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


class BiWKVCall(NamedTuple):
    """One recorded Bi-WKV call."""
    B: int
    T: int
    C: int
    causal: bool
    module: Optional[str]  # innermost running module (name in the recorder's model), or None
    pass_idx: int  # index of the top-level forward of the recorder's model it happened in

    @property
    def flops(self) -> int:
        return bi_wkv_flops(self.B, self.T, self.C, self.causal)


class BiWKVRecorder:
    """Collects the Bi-WKV calls made while it is active (see :func:`record_bi_wkv_calls`)."""

    def __init__(self, model: Optional[nn.Module] = None) -> None:
        self.model = model
        self.calls: List[BiWKVCall] = []
        self.num_passes = 0  # top-level forwards of ``model`` started so far
        self._stack: List[str] = []
        self._handles: list = []

    # -------------------------------------------------------------- hooks
    def _attach(self) -> None:
        if self.model is None:
            return
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._make_pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._post_hook, always_call=True))

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()

    def _make_pre_hook(self, name: str):
        def pre_hook(module, args):
            if not self._stack:
                self.num_passes += 1
            self._stack.append(name)
        return pre_hook

    def _post_hook(self, module, args, output):
        if self._stack:
            self._stack.pop()

    # -------------------------------------------------------------- recording
    def _record(self, B: int, T: int, C: int, causal: bool) -> None:
        module = self._stack[-1] if self._stack else None
        pass_idx = max(self.num_passes - 1, 0)
        self.calls.append(BiWKVCall(B, T, C, causal, module, pass_idx))

    # -------------------------------------------------------------- results
    def passes(self) -> List[List[BiWKVCall]]:
        """The recorded calls grouped by pass (top-level forward of the model)."""
        groups: List[List[BiWKVCall]] = [[] for _ in range(max(self.num_passes, 1))]
        for call in self.calls:
            groups[call.pass_idx].append(call)
        return groups

    def single_pass(self) -> List[BiWKVCall]:
        """The calls of ONE forward, for tools whose analysis ran the model several times.

        All passes must have made the same calls (same shapes, same modules); the last one is
        returned. Raises a RuntimeError when they differ (the count would be ambiguous).
        """
        groups = self.passes()
        key = [(c.B, c.T, c.C, c.causal, c.module) for c in groups[-1]]
        for i, group in enumerate(groups[:-1]):
            if [(c.B, c.T, c.C, c.causal, c.module) for c in group] != key:
                raise RuntimeError(
                    f'Bi-WKV calls differ between forward passes {i} and {len(groups) - 1} '
                    f'({len(group)} vs {len(key)} calls); record a single forward instead')
        return groups[-1]

    def flops(self, calls: Optional[List[BiWKVCall]] = None) -> int:
        """Sum of :func:`bi_wkv_flops` over ``calls`` (default: all recorded calls)."""
        return sum(c.flops for c in (self.calls if calls is None else calls))

    def by_module(self, calls: Optional[List[BiWKVCall]] = None) -> Dict[str, int]:
        """Bi-WKV FLOPs per module name, accumulated into every ancestor (``''`` = total),
        like ``FlopAnalyzer.by_module()``. Calls outside any module count for ``''`` only."""
        result: Dict[str, int] = {'': 0}
        for call in (self.calls if calls is None else calls):
            f = call.flops
            result[''] += f
            if not call.module:
                continue
            parts = call.module.split('.')
            for i in range(1, len(parts) + 1):
                name = '.'.join(parts[:i])
                result[name] = result.get(name, 0) + f
        return result

    # -------------------------------------------------------------- context
    def __enter__(self) -> 'BiWKVRecorder':
        self._attach()
        _RECORDERS.append(self)
        return self

    def __exit__(self, *exc) -> None:
        try:
            _RECORDERS.remove(self)
        finally:
            self._detach()


def record_bi_wkv_calls(model: Optional[nn.Module] = None) -> BiWKVRecorder:
    """Context manager recording every :func:`mmvrwkv.ops.bi_wkv` call as ``(B, T, C,
    causal)``, see the module docstring. Recorders may be nested; each active one records.

    Args:
        model: optional module whose forwards are tracked: calls get the innermost running
            submodule's name, and each top-level ``model(...)`` call starts a new pass.
    """
    return BiWKVRecorder(model)


def record_bi_wkv_call(k, causal: bool = False) -> None:
    """Called by :func:`mmvrwkv.ops.bi_wkv` with its keys ``k [B, T, C]``; a no-op unless a
    :func:`record_bi_wkv_calls` context is active."""
    if not _RECORDERS:
        return
    B, T, C = (int(s) for s in k.shape)
    for rec in _RECORDERS:
        rec._record(B, T, C, bool(causal))


def is_recording() -> bool:
    """Whether a :func:`record_bi_wkv_calls` context is active."""
    return bool(_RECORDERS)
