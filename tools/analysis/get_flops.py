#!/usr/bin/env python
"""Parameters and FLOPs of a model built from an mmvrwkv config (any OpenMMLab 2.0 task).

    python tools/analysis/get_flops.py CONFIG [--shape H W | --shape S] [--backbone-only]
        [--json out.json] [--max-depth 3] [--convention mmcv|fvcore] [--device cpu]
        [--forward auto|tensor|feat] [--cfg-options key=value ...]

The model is built through mmengine's ``MODELS`` registry under the config's
``default_scope`` (mmpretrain / mmdet / mmseg) and put in eval mode; one image
``[1, in_channels, H, W]`` of random values is traced by mmengine's ``FlopAnalyzer``
(TorchScript tracing, fvcore-style operator handles). What is run:

* ``--backbone-only``: ``model.backbone(x)``;
* otherwise (``--forward auto``) the first that traces of ``model(x, mode='tensor')``
  (classifiers, segmentors, one-stage detectors), the same with a data sample carrying only
  image meta information (two-stage detectors need ``img_shape`` etc.), and
  ``model.extract_feat(x)`` (backbone + neck); the one used is printed. For two-stage
  detectors the RoI heads' count depends on the number of proposals the random input yields
  (up to the test_cfg's maximum); the paper's det/seg figures are backbone FLOPs
  (``--backbone-only``).

Input size: ``--shape``; else the final size of the config's test pipeline when it is fixed
(``CenterCrop`` crop size, or a ``Resize`` without ``keep_ratio``), else the config's
``crop_size`` (mmseg), else the box a keep-ratio ``Resize`` fits images into (mmdet:
``scale=(1333, 800)`` -> H 800, W 1333, the size of detection FLOPs tables), else 224.
The sides are rounded up to the data preprocessor's ``pad_size_divisor`` (as the
preprocessor would pad). The source is printed.

What is counted (``--convention mmcv``, the default; the convention of mmcv's
``get_model_complexity_info``, with which the Vision-RWKV paper's numbers were made):

* 1 multiply-add (MAC) = 1 FLOP for ``linear`` / ``matmul`` / ``bmm`` / ``einsum`` / conv
  (Linear biases are not counted, conv biases add 1 per output element, as in mmcv);
* LayerNorm / GroupNorm / InstanceNorm / BatchNorm: 2 per element with an affine transform,
  1 without (mmcv); mmengine's default handles count 5 / 4 (fvcore) -- ``--convention fvcore``
  keeps those (and conv without bias, bilinear upsampling at 4 per output element);
* pooling: 1 per input element; interpolation (e.g. the bicubic resize of the position
  embedding, FPN upsampling): 1 per output element (mmcv counts this for ``nn.Upsample``
  modules only, not for functional ``F.interpolate``);
* the Bi-WKV op: **29 * B * T * C per call** (``mmvrwkv.ops.bi_wkv_flops``), the constant the
  original Vision-RWKV tool adds by hand per layer (29 * N * C). The traced graph cannot
  count it: compiled kernels are opaque, and the portable backend used while tracing is made
  of ``exp`` / ``cumsum`` / ``mul`` ops the analyzer skips. The calls are recorded from the
  outside (:func:`record_bi_wkv_calls`: hooks on the modules that call the op, which say
  their call with ``bi_wkv_call(x)``) during the traced forward itself (no extra forward);
  should the analysis run the model more than once, one pass is counted.
* the Bi-WKV6 op of VRWKV6: **7 * head_size * B * T * C per call**
  (``mmvrwkv.ops.bi_wkv6_flops``: per token, value channel and key channel of its head, 3
  multiply-adds in each of the two scans plus 1 for the bonus; the head-size term of the
  original VRWKV6 FLOP tool). Recorded the same way (``bi_wkv6_call(x)`` of
  :class:`~mmvrwkv.models.layers.SpatialMix6`). Its portable backend, which runs while
  tracing, is made of ``einsum`` s the analyzer *does* count; that count (measured by tracing
  the op alone on the recorded shapes) is taken off the calling module and its ancestors, so
  the op is counted once, by the formula. The LoRA products around it (``@`` / ``bmm``) are
  ordinary traced matmuls.

* the adapter's multi-scale deformable attention: its projections are linear layers; its
  bilinear sampling is counted at 4 per sampled value (mmengine's ``grid_sampler`` handle)
  when the model runs on the CPU (``--device cpu``, the default), where mmcv computes it
  with ``grid_sample`` (so does the adapter while traced, also for the small maps it
  otherwise samples with one matrix product); mmcv's CUDA kernel is opaque, so
  ``--device cuda`` omits it.

Not counted (in either convention, as in mmcv): element-wise ops (add, mul, lerp, sigmoid,
relu, square, tanh, softmax, ...), the Q-Shift data movement, indexing/reshapes. mmcv would
count ``nn.ReLU``-family *modules* at 1 per element; VRWKV has none (its squared ReLU is
functional). The skipped operators are listed in the output.

The per-module table shows the analyzer's FLOPs, the Bi-WKV FLOPs (attributed to the
module that called the op, e.g. ``backbone.layers.0.att``) and their sum. Counts are per
image (batch 1). ``--json`` writes all numbers (per module too).
"""
import argparse
import json
import math
import os.path as osp
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

if TYPE_CHECKING:  # torch is imported lazily (``--help`` stays fast)
    import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))  # run from a clone

DEFAULT_SIZE = 224

# Operator handles of the mmcv convention (see the module docstring), replacing or adding to
# mmengine's defaults.
_POOL_OPS = ('aten::max_pool1d', 'aten::max_pool2d', 'aten::max_pool3d', 'aten::avg_pool1d',
             'aten::avg_pool2d', 'aten::avg_pool3d', 'aten::adaptive_avg_pool1d',
             'aten::adaptive_avg_pool2d', 'aten::adaptive_avg_pool3d',
             'aten::adaptive_max_pool1d', 'aten::adaptive_max_pool2d',
             'aten::adaptive_max_pool3d')
_UPSAMPLE_OPS = ('aten::upsample_nearest1d', 'aten::upsample_nearest2d',
                 'aten::upsample_nearest3d', 'aten::upsample_linear1d',
                 'aten::upsample_bilinear2d', 'aten::upsample_bicubic2d',
                 'aten::upsample_trilinear3d', 'aten::_upsample_nearest_exact2d')
# operator name -> index of its affine weight argument
_NORM_OPS = {'aten::layer_norm': 2, 'aten::group_norm': 2, 'aten::instance_norm': 1,
             'aten::batch_norm': 1}


# ---------------------------------------------------------------------------- handles
def _shape(value) -> Optional[List[int]]:
    from mmengine.analysis.jit_handles import get_shape
    return get_shape(value)


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape else 0


def _norm_handle(affine_index: int):
    def handle(inputs, outputs):
        affine = _shape(inputs[affine_index]) is not None
        return _numel(_shape(inputs[0])) * (2 if affine else 1)
    return handle


def _conv_handle(inputs, outputs):
    """MACs of the convolution plus, with a bias, one per output element (mmcv)."""
    from mmengine.analysis.jit_handles import conv_flop_jit
    counts = Counter(conv_flop_jit(inputs, outputs))
    if _shape(inputs[2]) is not None:
        counts['conv_bias'] += _numel(_shape(outputs[0]))
    return counts


def _input_numel(inputs, outputs):
    return _numel(_shape(inputs[0]))


def _output_numel(inputs, outputs):
    return _numel(_shape(outputs[0]))


def convention_handles(convention: str) -> Dict[str, Any]:
    """Operator handles to set on a ``FlopAnalyzer`` for ``convention`` ('mmcv' | 'fvcore')."""
    if convention == 'fvcore':
        return {}
    if convention != 'mmcv':
        raise ValueError(f"convention must be 'mmcv' or 'fvcore', got {convention!r}")
    handles: Dict[str, Any] = {name: _norm_handle(i) for name, i in _NORM_OPS.items()}
    handles['aten::_convolution'] = _conv_handle
    handles.update({name: _input_numel for name in _POOL_OPS})
    handles.update({name: _output_numel for name in _UPSAMPLE_OPS})
    return handles


# ---------------------------------------------------------------------------- config / input
def _as_hw(size, order: str) -> Optional[Tuple[int, int]]:
    """``size`` (int or pair in ``order`` 'wh' or 'hw') -> (H, W), None if not a size."""
    if isinstance(size, bool):
        return None
    if isinstance(size, int):
        return (size, size) if size > 0 else None
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        return (int(size[1]), int(size[0])) if order == 'wh' else (int(size[0]), int(size[1]))
    return None


def _test_pipeline(cfg) -> Optional[list]:
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    dataset = loader.get('dataset') if isinstance(loader, dict) else None
    for _ in range(4):  # dataset wrappers nest the real dataset under 'dataset'
        if not isinstance(dataset, dict):
            break
        if isinstance(dataset.get('pipeline'), (list, tuple)):
            return list(dataset['pipeline'])
        dataset = dataset.get('dataset')
    pipeline = cfg.get('test_pipeline')
    return list(pipeline) if isinstance(pipeline, (list, tuple)) else None


def default_input_size(cfg) -> Tuple[Tuple[int, int], str]:
    """(H, W) for the analysis and a sentence saying where it comes from."""
    pipeline = _test_pipeline(cfg)
    size, source = None, None
    box, box_source = None, None  # the box a keep-ratio Resize fits images into (mmdet)
    for t in pipeline or []:
        if not isinstance(t, dict):
            continue
        name = str(t.get('type', '')).split('.')[-1]
        if name == 'CenterCrop':  # mmcv/mmpretrain: crop_size int or (w, h)
            hw = _as_hw(t.get('crop_size'), 'wh')
            size, source = hw, f'test pipeline CenterCrop crop_size={t.get("crop_size")!r}'
        elif name in ('Resize', 'RandomResize') and 'scale' in t:  # scale is (w, h)
            hw = _as_hw(t.get('scale'), 'wh')
            if t.get('keep_ratio', False):
                size, source = None, None
                box, box_source = hw, (f'test pipeline {name} scale={t.get("scale")!r} '
                                       '(keep_ratio: the full box, as mmdet FLOPs tables use)')
            else:
                size, source = hw, f'test pipeline {name} scale={t.get("scale")!r}'
        elif name in ('ResizeEdge', 'RandomResizedCrop', 'RandomChoiceResize', 'TestTimeAug'):
            size, source = None, None  # the size after this step is not fixed
    if size is not None:
        return size, source
    hw = _as_hw(cfg.get('crop_size'), 'hw')  # mmseg configs: crop_size = (h, w)
    if hw is not None:
        return hw, f'config crop_size={cfg.get("crop_size")!r}'
    if box is not None:
        return box, box_source
    return (DEFAULT_SIZE, DEFAULT_SIZE), (f'default {DEFAULT_SIZE} (the test pipeline does '
                                          'not fix the input size)')


def _in_channels(model) -> int:
    for obj in (getattr(model, 'backbone', None), model):
        c = getattr(obj, 'in_channels', None)
        if isinstance(c, int) and not isinstance(c, bool) and c > 0:
            return c
    mean = getattr(getattr(model, 'data_preprocessor', None), 'mean', None)
    if mean is not None and getattr(mean, 'numel', None) is not None and mean.numel() > 1:
        return int(mean.numel())
    return 3


def _pad_divisor(model) -> int:
    d = getattr(getattr(model, 'data_preprocessor', None), 'pad_size_divisor', 1)
    return int(d) if isinstance(d, int) and d > 1 else 1


# ---------------------------------------------------------------------------- forward modes
class _ForwardAs:
    """Temporarily make ``module(x)`` run ``fn(x)`` (so the analyzer traces ``fn`` while module
    names stay those of ``module``)."""

    def __init__(self, module, fn):
        self.module, self.fn = module, fn

    def __enter__(self):
        self._had = 'forward' in self.module.__dict__
        self._old = self.module.__dict__.get('forward')
        self.module.forward = self.fn
        return self.module

    def __exit__(self, *exc):
        if self._had:
            self.module.forward = self._old
        else:
            del self.module.forward


def _meta_data_samples(H: int, W: int) -> list:
    from mmengine.structures import BaseDataElement
    meta = dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W),
                batch_input_shape=(H, W), scale_factor=(1.0, 1.0), flip=False,
                flip_direction=None)
    return [BaseDataElement(metainfo=meta)]


def forward_candidates(model, H: int, W: int, backbone_only: bool,
                       forward: str) -> List[Tuple[str, Any, Any]]:
    """[(description, module to analyse, fn(x))] to try in order."""
    if backbone_only:
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            raise ValueError('--backbone-only: the model has no attribute "backbone"')
        return [('model.backbone(x)', backbone, backbone.forward)]
    cls_forward = type(model).forward.__get__(model)
    import inspect
    try:
        takes_mode = 'mode' in inspect.signature(cls_forward).parameters
    except (TypeError, ValueError):
        takes_mode = False
    cands = []
    if forward in ('auto', 'tensor'):
        if takes_mode:
            cands.append(("model(x, mode='tensor')", model,
                          lambda x: cls_forward(x, mode='tensor')))
            cands.append(("model(x, data_samples=[image meta only], mode='tensor')", model,
                          lambda x: cls_forward(x, _meta_data_samples(H, W), mode='tensor')))
        else:
            cands.append(('model(x)', model, cls_forward))
    if forward in ('auto', 'feat'):
        if hasattr(model, 'extract_feat'):
            cands.append(('model.extract_feat(x)', model, model.extract_feat))
        elif forward == 'feat':
            raise ValueError('--forward feat: the model has no extract_feat method')
    return cands


# ---------------------------------------------------------------------------- analysis
def _fmt(x: float, unit: str = '') -> str:
    for div, suffix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(x) >= div:
            return f'{x / div:.3f}{suffix}{unit}'
    return f'{int(x)}{unit}'


def _module_table(model, params: Dict[str, int], flops: Dict[str, int],
                  wkv: Dict[str, int], max_depth: int) -> List[dict]:
    rows = []
    for name, _ in model.named_modules():
        depth = 0 if name == '' else name.count('.') + 1
        if depth > max_depth:
            continue
        p, f, b = params.get(name, 0), int(flops.get(name, 0)), int(wkv.get(name, 0))
        if name and p == 0 and f == 0 and b == 0:
            continue
        rows.append(dict(module=name or 'model', depth=depth, params=p, flops_analyzer=f,
                         flops_bi_wkv=b, flops=f + b))
    return rows


def format_table(rows: List[dict]) -> str:
    head = ('module', '#params', '#FLOPs analyzer', '#FLOPs Bi-WKV', '#FLOPs total')
    lines = [[' ' * r['depth'] + r['module'], _fmt(r['params']), _fmt(r['flops_analyzer']),
              _fmt(r['flops_bi_wkv']) if r['flops_bi_wkv'] else '',
              _fmt(r['flops'])] for r in rows]
    widths = [max(len(head[i]), *(len(line[i]) for line in lines)) for i in range(5)]
    out = ['| ' + ' | '.join(h.ljust(w) if i == 0 else h.rjust(w)
                             for i, (h, w) in enumerate(zip(head, widths))) + ' |',
           '|' + '|'.join(':' + '-' * (w + 1) if i == 0 else '-' * (w + 1) + ':'
                          for i, w in enumerate(widths)) + '|']
    for line in lines:
        out.append('| ' + ' | '.join(c.ljust(w) if i == 0 else c.rjust(w)
                                     for i, (c, w) in enumerate(zip(line, widths))) + ' |')
    return '\n'.join(out)


# ------------------------------------------------------------------------- Bi-WKV calls
#: Method a module calling a WKV op has (returning the call's sizes) -> the op.
CALL_METHODS = {'bi_wkv_call': 'bi_wkv', 'bi_wkv6_call': 'bi_wkv6'}


class BiWKVCall(NamedTuple):
    """One Bi-WKV (``op='bi_wkv'``) or Bi-WKV6 (``op='bi_wkv6'``) call seen by
    :class:`BiWKVRecorder`."""
    B: int
    T: int
    C: int
    causal: bool    # Bi-WKV's causal flag (False for Bi-WKV6)
    module: str     # name (in the recorder's model) of the module that made the call
    pass_idx: int   # index of the top-level forward of the model it happened in
    op: str = 'bi_wkv'
    head_size: int = 0  # Bi-WKV6's channels per head (0 for Bi-WKV)

    @property
    def flops(self) -> int:
        from mmvrwkv.ops import bi_wkv6_flops, bi_wkv_flops
        if self.op == 'bi_wkv6':
            return bi_wkv6_flops(self.B, self.T, self.C, self.head_size)
        return bi_wkv_flops(self.B, self.T, self.C, self.causal)


class BiWKVRecorder:
    """Records the WKV-op calls of a model's forwards from the outside: a forward pre-hook on
    every module with a ``bi_wkv_call(x, ...)`` method (the layers that call Bi-WKV; it returns
    ``(B, T, C, causal)``) or a ``bi_wkv6_call(x, ...)`` method (Bi-WKV6; ``(B, T, C,
    head_size)``) records the call; a pre-hook on the model itself counts passes (a tool whose
    analysis runs the forward more than once takes one with :meth:`single_pass`)."""

    def __init__(self, model: 'torch.nn.Module') -> None:
        self.model = model
        self.calls: List[BiWKVCall] = []
        self.num_passes = 0
        self._handles: list = []

    def __enter__(self) -> 'BiWKVRecorder':
        self._handles.append(self.model.register_forward_pre_hook(self._new_pass))
        for name, module in self.model.named_modules():
            for method, op in CALL_METHODS.items():
                if callable(getattr(module, method, None)):
                    self._handles.append(module.register_forward_pre_hook(
                        self._recorder(name, method, op)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _new_pass(self, module, args) -> None:
        self.num_passes += 1

    def _recorder(self, name: str, method: str, op: str):
        def hook(module, args) -> None:
            B, T, C, last = getattr(module, method)(*args)
            pass_idx = max(self.num_passes - 1, 0)
            if op == 'bi_wkv6':
                self.calls.append(BiWKVCall(B, T, C, False, name, pass_idx, op, int(last)))
            else:
                self.calls.append(BiWKVCall(B, T, C, bool(last), name, pass_idx))
        return hook

    def passes(self) -> List[List[BiWKVCall]]:
        """The recorded calls grouped by pass (top-level forward of the model)."""
        groups: List[List[BiWKVCall]] = [[] for _ in range(max(self.num_passes, 1))]
        for call in self.calls:
            groups[call.pass_idx].append(call)
        return groups

    def single_pass(self) -> List[BiWKVCall]:
        """The calls of ONE forward; all passes must agree (else RuntimeError), the last is
        returned."""
        groups = self.passes()
        key = [c[:5] + c[6:] for c in groups[-1]]
        for i, group in enumerate(groups[:-1]):
            if [c[:5] + c[6:] for c in group] != key:
                raise RuntimeError(
                    f'Bi-WKV calls differ between forward passes {i} and {len(groups) - 1} '
                    f'({len(group)} vs {len(key)} calls); record a single forward instead')
        return groups[-1]

    def flops(self, calls: Optional[List[BiWKVCall]] = None) -> int:
        """Sum of ``bi_wkv_flops`` over ``calls`` (default: all recorded calls)."""
        return sum(c.flops for c in (self.calls if calls is None else calls))

    def by_module(self, calls: Optional[List[BiWKVCall]] = None) -> Dict[str, int]:
        """Bi-WKV FLOPs per module name, accumulated into every ancestor (``''`` = total),
        like ``FlopAnalyzer.by_module()``."""
        result: Dict[str, int] = {'': 0}
        for call in (self.calls if calls is None else calls):
            result[''] += call.flops
            parts = call.module.split('.') if call.module else []
            for i in range(1, len(parts) + 1):
                name = '.'.join(parts[:i])
                result[name] = result.get(name, 0) + call.flops
        return result


def record_bi_wkv_calls(model: 'torch.nn.Module') -> BiWKVRecorder:
    """Context manager: ``with record_bi_wkv_calls(model) as rec: model(x)``."""
    return BiWKVRecorder(model)


def traced_bi_wkv6_flops(call: BiWKVCall, convention: str = 'mmcv') -> int:
    """What the analyzer counts for one Bi-WKV6 call of ``call``'s sizes when it traces the
    op alone (its portable backend, the one that runs while tracing)."""
    import torch
    from mmengine.analysis import FlopAnalyzer
    from mmvrwkv.ops import bi_wkv6

    class _Op(torch.nn.Module):
        def forward(self, x, u):
            return bi_wkv6(x, x, x, x, u)

    x = torch.zeros(call.B, call.T, call.C)
    u = torch.zeros(call.C // call.head_size, call.head_size)
    with torch.no_grad():
        analyzer = FlopAnalyzer(_Op(), (x, u))
        handles = convention_handles(convention)
        if handles:
            analyzer.set_op_handle(**handles)
        analyzer.unsupported_ops_warnings(False)
        analyzer.tracer_warnings('none')
        return int(analyzer.total())


def _take_off_traced_bi_wkv6(calls: List[BiWKVCall], by_module: Dict[str, int],
                             convention: str) -> int:
    """Remove the analyzer's own count of the Bi-WKV6 calls from ``by_module`` (the calling
    module and its ancestors, ``''`` the total); returns the amount removed."""
    removed, cache = 0, {}
    for call in calls:
        if call.op != 'bi_wkv6':
            continue
        key = (call.B, call.T, call.C, call.head_size)
        if key not in cache:
            cache[key] = traced_bi_wkv6_flops(call, convention)
        parts = call.module.split('.') if call.module else []
        for name in [''] + ['.'.join(parts[:i]) for i in range(1, len(parts) + 1)]:
            if name in by_module:
                by_module[name] -= cache[key]
        removed += cache[key]
    return removed


def analyze_module(module, fn, x, convention: str = 'mmcv') -> dict:
    """Trace ``fn(x)`` (run as ``module(x)``) with FlopAnalyzer while recording Bi-WKV calls."""
    import torch
    from mmengine.analysis import FlopAnalyzer

    with _ForwardAs(module, fn), torch.no_grad(), record_bi_wkv_calls(module) as rec:
        analyzer = FlopAnalyzer(module, (x,))
        handles = convention_handles(convention)
        if handles:
            analyzer.set_op_handle(**handles)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        total = int(analyzer.total())  # runs the trace (the forward) here
        by_module = {k: int(v) for k, v in analyzer.by_module().items()}
        by_operator = {k: int(v) for k, v in analyzer.by_operator().items()}
        unsupported = dict(analyzer.unsupported_ops())
    calls = rec.single_pass()
    traced_wkv6 = _take_off_traced_bi_wkv6(calls, by_module, convention)
    if traced_wkv6:
        total -= traced_wkv6
        by_operator['einsum'] = by_operator.get('einsum', 0) - traced_wkv6
        if not by_operator['einsum']:
            del by_operator['einsum']
    return dict(total=total, by_module=by_module, by_operator=by_operator,
                unsupported=unsupported, calls=calls, passes=rec.num_passes,
                wkv_by_module=rec.by_module(calls), wkv_total=rec.flops(calls),
                traced_bi_wkv6_removed=traced_wkv6)


def get_flops(config: str, shape: Optional[Sequence[int]] = None, backbone_only: bool = False,
              cfg_options: Optional[dict] = None, convention: str = 'mmcv',
              device: str = 'cpu', forward: str = 'auto', max_depth: int = 3,
              verbose: bool = False) -> dict:
    """Build the model of ``config`` and count its parameters and FLOPs (see module doc).

    Returns a JSON-able dict: ``params``, ``flops`` (= ``flops_analyzer`` + ``flops_bi_wkv``),
    ``input_shape``, ``shape_source``, ``forward``, ``bi_wkv_calls``, ``by_operator``,
    ``table`` (per-module rows), ``skipped_ops``, ``convention``, timings.
    """
    import torch
    from mmengine.analysis import parameter_count
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

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
    divisor = _pad_divisor(model)
    if divisor > 1 and (H % divisor or W % divisor):
        H0, W0 = H, W
        H, W = -(-H // divisor) * divisor, -(-W // divisor) * divisor
        source += f'; padded {H0}x{W0} -> {H}x{W} (data preprocessor pad_size_divisor={divisor})'
    x = torch.randn(1, _in_channels(model), H, W, device=device)
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
    rows = _module_table(module, params, result['by_module'], result['wkv_by_module'],
                         max_depth)
    calls = [c for c in result['calls'] if c.op == 'bi_wkv']
    calls6 = [c for c in result['calls'] if c.op == 'bi_wkv6']
    call_groups = Counter((c.B, c.T, c.C, c.causal) for c in calls)
    call6_groups = Counter((c.B, c.T, c.C, c.head_size) for c in calls6)
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
        flops=result['total'] + result['wkv_total'],
        flops_analyzer=result['total'],
        flops_bi_wkv=flops_wkv,
        bi_wkv_flops_per_element=29,
        bi_wkv_calls=[dict(B=B, T=T, C=C, causal=causal, count=n)
                      for (B, T, C, causal), n in call_groups.items()],
        bi_wkv_num_calls=len(calls),
        flops_bi_wkv6=flops_wkv6,
        bi_wkv6_flops_per_element_and_head_channel=7,
        bi_wkv6_calls=[dict(B=B, T=T, C=C, head_size=hs, count=n)
                       for (B, T, C, hs), n in call6_groups.items()],
        bi_wkv6_num_calls=len(calls6),
        bi_wkv6_traced_flops_removed=result['traced_bi_wkv6_removed'],
        traced_passes=result['passes'],
        by_operator=by_operator,
        skipped_ops=result['unsupported'],
        table=rows,
        time_build_s=round(t_built - t_start, 3),
        time_analysis_s=round(t_done - t_built, 3),
    )


def report(res: dict) -> str:
    """Human-readable summary of a :func:`get_flops` result."""
    lines = []
    lines.append(f"Config:     {res['config']}")
    lines.append(f"Model:      {res['model']} (default_scope={res['default_scope']!r}); "
                 f"analysed: {res['analysed']}")
    for err in res['fallback_errors']:
        lines.append(f'  (not traceable: {err})')
    lines.append(f"Input:      {res['input_shape']} from {res['shape_source']}")
    lines.append('')
    lines.append(format_table(res['table']))
    lines.append('')
    ops = ', '.join(f'{k} {_fmt(v)}' for k, v in sorted(res['by_operator'].items(),
                                                         key=lambda kv: -kv[1]))
    lines.append(f'FLOPs by operator: {ops}')
    if res['bi_wkv_num_calls']:
        groups = '; '.join(f"{g['count']} x (B={g['B']}, T={g['T']}, C={g['C']}"
                           f"{', causal' if g['causal'] else ''})" for g in res['bi_wkv_calls'])
        lines.append(f"Bi-WKV calls: {res['bi_wkv_num_calls']}: {groups}; counted "
                     f"29*B*T*C each = {_fmt(res['flops_bi_wkv'])} (the original's constant)"
                     + (f"; the forward ran {res['traced_passes']} times during the analysis, "
                        'counted once' if res['traced_passes'] > 1 else ''))
    elif not res['bi_wkv6_num_calls']:
        lines.append('Bi-WKV calls: none recorded')
    if res['bi_wkv6_num_calls']:
        groups = '; '.join(f"{g['count']} x (B={g['B']}, T={g['T']}, C={g['C']}, "
                           f"head_size={g['head_size']})" for g in res['bi_wkv6_calls'])
        lines.append(f"Bi-WKV6 calls: {res['bi_wkv6_num_calls']}: {groups}; counted "
                     f"7*head_size*B*T*C each = {_fmt(res['flops_bi_wkv6'])} (the analyzer's "
                     f"own {_fmt(res['bi_wkv6_traced_flops_removed'])} for the op's portable "
                     'backend taken off)')
    skipped = ', '.join(f'{k.replace("aten::", "")} x{v}' for k, v in
                        sorted(res['skipped_ops'].items(), key=lambda kv: -kv[1]))
    lines.append(f'Not counted (element-wise/data movement; exp/cumsum/... here are the '
                 f'portable Bi-WKV backend, counted above by formula): {skipped or "none"}')
    conv = ('mmcv (1 MAC = 1 FLOP for linear/matmul/conv; conv bias +1/output; norms 2 per '
            'element with affine; pooling 1/input, interpolation 1/output element)'
            if res['convention'] == 'mmcv' else
            "fvcore (mmengine FlopAnalyzer defaults: 1 MAC = 1 FLOP, no conv bias, norms 5 "
            'per element with affine, bilinear 4/output)')
    lines.append(f'Convention: {conv}; per image (batch 1).')
    lines.append('')
    lines.append(f"Params: {res['params'] / 1e6:.2f} M ({res['params']:,})")
    ops = [('Bi-WKV', res['flops_bi_wkv']), ('Bi-WKV6', res['flops_bi_wkv6'])]
    ops = [(n, f) for n, f in ops if f] or ops[:1]
    lines.append(f"FLOPs:  {res['flops'] / 1e9:.2f} G ({res['flops']:,}) = analyzer "
                 f"{res['flops_analyzer'] / 1e9:.3f} G"
                 + ''.join(f' + {n} {f / 1e9:.3f} G' for n, f in ops))
    lines.append(f"Time:   build {res['time_build_s']:.1f} s, analysis "
                 f"{res['time_analysis_s']:.1f} s")
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description='Params and FLOPs of an mmvrwkv config, Bi-WKV op included',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('config', help='config file path')
    p.add_argument('--shape', type=int, nargs='+', metavar='S',
                   help='input size: S (square) or H W; default from the test pipeline')
    p.add_argument('--backbone-only', action='store_true',
                   help='analyse model.backbone only (e.g. the backbone FLOPs of det/seg)')
    p.add_argument('--forward', choices=['auto', 'tensor', 'feat'], default='auto',
                   help="what to run for the full model: forward(mode='tensor'), "
                        'extract_feat, or the first that works (default)')
    p.add_argument('--convention', choices=['mmcv', 'fvcore'], default='mmcv',
                   help='counting convention for norms/conv bias/pooling (default mmcv, as '
                        'the paper)')
    p.add_argument('--device', default='cpu', help='device to build and trace on')
    p.add_argument('--max-depth', type=int, default=3, help='depth of the module table')
    p.add_argument('--json', metavar='FILE', help='write all results to this JSON file')
    p.add_argument('--verbose', action='store_true', help='print tracebacks of fallbacks')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config entries, e.g. model.backbone.depth=2')
    args = p.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        p.error('--shape takes one (S) or two (H W) integers')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    res = get_flops(args.config, shape=args.shape, backbone_only=args.backbone_only,
                    cfg_options=args.cfg_options, convention=args.convention,
                    device=args.device, forward=args.forward, max_depth=args.max_depth,
                    verbose=args.verbose)
    print(report(res))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=2)
        print(f'Results written to {args.json}')
    return res


if __name__ == '__main__':
    main()
