"""Tracing a model with mmengine's ``FlopAnalyzer``: the convention's handles plus one handle
per op counted by formula (:func:`mmvrwkv.ops.flops.op_handles`), and the full analysis of a
config (:func:`get_flops`)."""
import time
from collections import Counter
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from .conventions import convention_handles
from .inputs import default_input_size, forward_candidates, ForwardAs, in_channels, pad_divisor
from .summary import module_table


class OpCall(NamedTuple):
    """One call of an op counted by formula, as its node in the traced graph."""
    op: str      # 'bi_wkv' or 'bi_wkv6'
    sizes: dict  # the formula's arguments, e.g. dict(B=1, T=196, C=192, causal=False)
    flops: int


def analyze_module(module, fn, x, convention: str = 'mmcv') -> dict:
    """Trace ``fn(x)`` (run as ``module(x)``) with FlopAnalyzer, the ops counted by formula.

    Returns a dict: ``total``, ``by_module`` and ``by_operator`` (the analyzer's own counts,
    the ops' formulas left out), ``unsupported`` (skipped operators), ``calls`` (one
    :class:`OpCall` per op node), ``op_by_module`` (the ops' FLOPs per module and ancestor,
    ``''`` the total) and ``op_total``.
    """
    import torch
    from mmengine.analysis import FlopAnalyzer
    from mmvrwkv.ops import flops as op_flops

    calls: List[OpCall] = []
    counted = {op.name for op in op_flops.counted_ops().values()}
    with ForwardAs(module, fn), torch.no_grad(), op_flops.counting():
        analyzer = FlopAnalyzer(module, (x,))
        analyzer.set_op_handle(**convention_handles(convention), **op_flops.op_handles(
            lambda op, sizes, flops: calls.append(OpCall(op, sizes, flops))))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        total = int(analyzer.total())  # runs the trace (the forward) here
        by_module_and_op = analyzer.by_module_and_operator()
        by_operator = {k: int(v) for k, v in analyzer.by_operator().items()
                       if k not in counted}
        unsupported = dict(analyzer.unsupported_ops())
    op_by_module = {name: int(sum(c[op] for op in counted))
                    for name, c in by_module_and_op.items()}
    by_module = {name: int(sum(c.values())) - op_by_module[name]
                 for name, c in by_module_and_op.items()}
    op_total = op_by_module.get('', 0)
    return dict(total=total - op_total, by_module=by_module, by_operator=by_operator,
                unsupported=unsupported, calls=calls, op_by_module=op_by_module,
                op_total=op_total)


def _call_groups(calls: List[OpCall]) -> List[dict]:
    """``[dict(**sizes, count=n)]`` for the distinct sizes of ``calls``, in call order."""
    groups = Counter(tuple(c.sizes.items()) for c in calls)
    return [dict(sizes, count=n) for sizes, n in groups.items()]


def get_flops(config: str, shape: Optional[Sequence[int]] = None, backbone_only: bool = False,
              cfg_options: Optional[dict] = None, convention: str = 'mmcv',
              device: str = 'cpu', forward: str = 'auto', max_depth: int = 3,
              verbose: bool = False) -> Dict[str, Any]:
    """Build the model of ``config`` and count its parameters and FLOPs for one image
    (what is counted: :mod:`mmvrwkv.analysis.flops`).

    Returns a JSON-able dict: ``params``, ``flops`` (= ``flops_analyzer`` + ``flops_bi_wkv``
    + ``flops_bi_wkv6``), ``input_shape``, ``shape_source``, ``analysed``, the calls of each
    op, ``by_operator``, ``table`` (per-module rows), ``skipped_ops``, ``convention``,
    timings.
    """
    import torch
    from mmengine.analysis import parameter_count
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmvrwkv.ops import BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL, BI_WKV_FLOPS_PER_ELEMENT

    t_start = time.perf_counter()
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope:
        init_default_scope(scope)
    import mmvrwkv  # noqa: F401  (registers mmvrwkv.* even without custom_imports)

    if shape:
        if len(shape) == 1:
            shape = (shape[0], shape[0])
        if len(shape) != 2 or any(int(s) < 1 for s in shape):
            raise ValueError(f'--shape takes S or H W (positive), got {shape}')
        (H, W), source = (int(shape[0]), int(shape[1])), '--shape'
    else:
        (H, W), source = default_input_size(cfg)

    model = MODELS.build(cfg.model)
    model.to(device).eval()
    divisor = pad_divisor(model)
    if divisor > 1 and (H % divisor or W % divisor):
        H0, W0 = H, W
        H, W = -(-H // divisor) * divisor, -(-W // divisor) * divisor
        source += f'; padded {H0}x{W0} -> {H}x{W} (data preprocessor pad_size_divisor={divisor})'
    x = torch.randn(1, in_channels(model), H, W, device=device)
    t_built = time.perf_counter()

    errors, result, used = [], None, None
    for desc, module, fn in forward_candidates(model, H, W, backbone_only, forward):
        try:
            result = analyze_module(module, fn, x, convention)
            used = (desc, module)
            break
        except Exception as e:  # noqa: BLE001  (report and try the next way of running it)
            errors.append(f'{desc}: {type(e).__name__}: {str(e).splitlines()[0][:300]}')
            if verbose:
                import traceback
                traceback.print_exc()
    if result is None:
        raise RuntimeError('could not trace the model:\n  ' + '\n  '.join(errors))
    desc, module = used
    t_done = time.perf_counter()

    params = {k: int(v) for k, v in parameter_count(module).items()}
    rows = module_table(module, params, result['by_module'], result['op_by_module'], max_depth)
    calls = [c for c in result['calls'] if c.op == 'bi_wkv']
    calls6 = [c for c in result['calls'] if c.op == 'bi_wkv6']
    flops_wkv, flops_wkv6 = sum(c.flops for c in calls), sum(c.flops for c in calls6)
    by_operator = dict(result['by_operator'])
    if flops_wkv:
        by_operator['bi_wkv (29*B*T*C per call)'] = flops_wkv
    if flops_wkv6:
        by_operator['bi_wkv6 (7*head_size*B*T*C per call)'] = flops_wkv6
    return dict(
        config=config,
        model=type(model).__name__,
        default_scope=scope,
        analysed=desc,
        fallback_errors=errors,
        input_shape=[1, int(x.shape[1]), H, W],
        shape_source=source,
        convention=convention,
        params=params.get('', 0),
        flops=result['total'] + result['op_total'],
        flops_analyzer=result['total'],
        flops_bi_wkv=flops_wkv,
        bi_wkv_flops_per_element=BI_WKV_FLOPS_PER_ELEMENT,
        bi_wkv_calls=_call_groups(calls),
        bi_wkv_num_calls=len(calls),
        flops_bi_wkv6=flops_wkv6,
        bi_wkv6_flops_per_element_and_head_channel=BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL,
        bi_wkv6_calls=_call_groups(calls6),
        bi_wkv6_num_calls=len(calls6),
        by_operator=by_operator,
        skipped_ops=result['unsupported'],
        table=rows,
        time_build_s=round(t_built - t_start, 3),
        time_analysis_s=round(t_done - t_built, 3),
    )
