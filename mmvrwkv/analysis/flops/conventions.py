"""Operator handles of the counting conventions (``--convention``): ``'mmcv'`` replaces or
adds to mmengine's defaults, ``'fvcore'`` keeps them (see :mod:`mmvrwkv.analysis.flops`)."""
import math
from collections import Counter
from typing import Any, Callable, Dict, List, Optional

_POOL_OPS = ('aten::max_pool1d', 'aten::max_pool2d', 'aten::max_pool3d', 'aten::avg_pool1d',
             'aten::avg_pool2d', 'aten::avg_pool3d', 'aten::adaptive_avg_pool1d',
             'aten::adaptive_avg_pool2d', 'aten::adaptive_avg_pool3d',
             'aten::adaptive_max_pool1d', 'aten::adaptive_max_pool2d',
             'aten::adaptive_max_pool3d')
_UPSAMPLE_OPS = ('aten::upsample_nearest1d', 'aten::upsample_nearest2d',
                 'aten::upsample_nearest3d', 'aten::upsample_linear1d',
                 'aten::upsample_bilinear2d', 'aten::upsample_bicubic2d',
                 'aten::upsample_trilinear3d', 'aten::_upsample_nearest_exact2d')
#: operator name -> index of its affine weight argument
_NORM_OPS = {'aten::layer_norm': 2, 'aten::group_norm': 2, 'aten::instance_norm': 1,
             'aten::batch_norm': 1}


def _shape(value) -> Optional[List[int]]:
    from mmengine.analysis.jit_handles import get_shape
    return get_shape(value)


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape else 0


def _norm_handle(affine_index: int) -> Callable:
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
