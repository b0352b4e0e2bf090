"""Operators of mmvrwkv, one package per op (front, reference, portable and fast paths).
Import needs only torch."""
from ._ext import ext_available, ext_has_cuda
from .bi_wkv import BACKENDS, available_backends, bi_wkv, bi_wkv_reference, bi_wkv_torch
from .bi_wkv6 import bi_wkv6, bi_wkv6_reference, bi_wkv6_torch
from .flops import (BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL, BI_WKV_FLOPS_PER_ELEMENT,
                    bi_wkv6_flops, bi_wkv_flops)
from .ms_deform_attn import ms_deform_attn
from .token_shift import token_shift_mix

__all__ = ['bi_wkv', 'bi_wkv_torch', 'bi_wkv_reference', 'available_backends', 'BACKENDS',
           'ext_available', 'ext_has_cuda', 'bi_wkv_flops',
           'BI_WKV_FLOPS_PER_ELEMENT', 'ms_deform_attn', 'bi_wkv6', 'bi_wkv6_torch',
           'bi_wkv6_reference', 'token_shift_mix', 'bi_wkv6_flops',
           'BI_WKV6_FLOPS_PER_ELEMENT_AND_HEAD_CHANNEL']
