"""FLOP counting of mmvrwkv's ops by a counter that traces the model (mmengine's
``FlopAnalyzer``, fvcore-style handles per traced node).

Such a counter cannot count the Bi-WKV ops right by itself: the compiled kernels are opaque,
and of the portable paths that run while tracing, Bi-WKV's is made of ``exp`` / ``cumsum`` /
``mul`` ops the counter skips (it would count 0) and Bi-WKV6's of ``einsum`` s it does count
(not the op's cost). So each such op has a FLOP formula (its ``flops.py``) and, inside
:func:`counting`, its front runs as ONE traced node: a custom op
``mmvrwkv_flops::<op>`` whose implementation is the op's portable path. :func:`op_handles`
is the table of node name -> handle (the formula, applied to the node's input shapes) that
the counter registers (``FlopAnalyzer.set_op_handle(**op_handles())``). Outside
:func:`counting` nothing changes. The FLOPs of a call go to the module that makes it, like
those of any other traced op.

Ops whose portable path the counter already counts as the convention wants are not nodes:
``ms_deform_attn`` (its ``grid_sample`` is counted by mmengine's own handle) and
``token_shift_mix`` (data movement and a lerp: nothing counted).
"""
import contextlib
import threading
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

#: Namespace of the counting nodes (``torch.ops.mmvrwkv_flops.<op>``).
NAMESPACE = 'mmvrwkv_flops'


class CountedOp(NamedTuple):
    """An op counted by formula: its node is ``mmvrwkv_flops::<name>``."""
    name: str
    #: the call's sizes (keyword arguments of ``flops``) from the node's traced inputs
    sizes: Callable[[List[Any]], Dict[str, Any]]
    #: the op's FLOP formula
    flops: Callable[..., int]

    @property
    def node(self) -> str:
        return f'{NAMESPACE}::{self.name}'


_COUNTED: Dict[str, CountedOp] = {}
_state = threading.local()


def register_counted_op(op: CountedOp) -> None:
    """Add ``op`` to :func:`op_handles` (each op's ``flops.py`` does, on import)."""
    _COUNTED[op.node] = op


def counted_ops() -> Dict[str, CountedOp]:
    """The ops counted by formula, by node name."""
    return dict(_COUNTED)


@contextlib.contextmanager
def counting() -> Iterator[None]:
    """Within this context (on this thread) the op fronts run as counting nodes."""
    depth = getattr(_state, 'depth', 0)
    _state.depth = depth + 1
    try:
        yield
    finally:
        _state.depth = depth


def counting_active() -> bool:
    """True inside :func:`counting`."""
    return getattr(_state, 'depth', 0) > 0


def op_handles(on_call: Optional[Callable[[str, Dict[str, Any], int], None]] = None
               ) -> Dict[str, Callable]:
    """``{node name: handle}`` for ``FlopAnalyzer.set_op_handle``; a handle returns the
    formula's FLOPs of its node (keyed by the op's name). ``on_call(op name, sizes, flops)``,
    when given, is told every counted node."""
    def handle_of(op: CountedOp) -> Callable:
        def handle(inputs: List[Any], outputs: List[Any]) -> int:
            sizes = op.sizes(inputs)
            flops = op.flops(**sizes)
            if on_call is not None:
                on_call(op.name, sizes, flops)
            return flops
        return handle
    return {node: handle_of(op) for node, op in _COUNTED.items()}


def traced_shape(value: Any) -> Tuple[int, ...]:
    """Sizes of a traced tensor value (a ``torch._C.Value`` of a node's inputs)."""
    return tuple(value.type().sizes())


def traced_constant(value: Any) -> Any:
    """The Python value of a traced constant input (a bool or int argument)."""
    return value.toIValue()


def check_sizes(fn: str, **sizes) -> None:
    """ValueError naming the argument unless every size is a non-negative int."""
    for name, x in sizes.items():
        if isinstance(x, bool) or int(x) != x or x < 0:
            raise ValueError(f'{fn}: {name} must be a non-negative int, got {x!r}')
