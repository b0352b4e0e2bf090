"""Operators of mmvrwkv, one package per op: its front (``__init__``), ``reference.py``, the
portable PyTorch path, the rules of its compiled kernels (``compiled.py``), its FLOP formula
(``flops.py``, where FLOP counting needs one) and ``README.md`` with the derivation. Shared:
the backend rule (:mod:`.backends`), the extension loader (:mod:`._ext`) and FLOP counting
(:mod:`.flops`). Import needs only torch."""
from ._ext import ext_available, ext_has_cuda
from .backends import BACKENDS, available_backends
from .bi_wkv import BI_WKV_FLOPS_PER_ELEMENT, bi_wkv, bi_wkv_flops, bi_wkv_reference, bi_wkv_torch
from .bi_wkv6 import (BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL, bi_wkv6, bi_wkv6_flops,
                      bi_wkv6_reference, bi_wkv6_torch)
from .ms_deform_attn import ms_deform_attn
from .token_shift import token_shift_mix

__all__ = ['bi_wkv', 'bi_wkv_torch', 'bi_wkv_reference', 'available_backends', 'BACKENDS',
           'ext_available', 'ext_has_cuda', 'bi_wkv_flops',
           'BI_WKV_FLOPS_PER_ELEMENT', 'ms_deform_attn', 'bi_wkv6', 'bi_wkv6_torch',
           'bi_wkv6_reference', 'token_shift_mix', 'bi_wkv6_flops',
           'BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL']
