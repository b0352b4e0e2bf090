"""The FLOP analysis (mmvrwkv.analysis.flops, tools/analysis/get_flops.py) on VRWKV6: the
Bi-WKV6 op counted once, by ``bi_wkv6_flops`` (7 * head_size per element), as one traced node
(its portable backend's einsums are not traced), the LoRA matmuls counted as traced. Depth-2
models at 64 px keep it fast; the full T at 224 px is the last test (paper: 1.6 G)."""
import os.path as osp

import pytest
import torch

from mmvrwkv.ops import bi_wkv6, bi_wkv6_flops

from tool_helpers import ROOT  # noqa: E402
CFG = osp.join(ROOT, 'configs/vrwkv6/vrwkv6-tiny_8xb128_in1k.py')


@pytest.fixture(scope='module')
def flops():
    pytest.importorskip('mmpretrain')
    import mmvrwkv.analysis.flops as lib
    return lib


@pytest.fixture(scope='module')
def small_run(flops):
    return flops.get_flops(CFG, shape=[64, 64], backbone_only=True,
                           cfg_options={'model.backbone.depth': 2})


def test_op_counted_by_formula(small_run):
    res = small_run
    N, C = 16, 192
    assert res['bi_wkv6_calls'] == [dict(B=1, T=N, C=C, head_size=64, count=2)]
    assert res['flops_bi_wkv6'] == 2 * bi_wkv6_flops(1, N, C, 64) == 2 * 7 * 64 * N * C
    assert res['bi_wkv_num_calls'] == 0 and res['flops_bi_wkv'] == 0
    assert res['flops'] == res['flops_analyzer'] + res['flops_bi_wkv6']
    rows = {r['module']: r for r in res['table']}
    assert rows['layers.1']['flops_bi_wkv'] == bi_wkv6_flops(1, N, C, 64)


def test_portable_backend_not_counted_twice(flops, small_run):
    res = small_run
    # the op's torch backend is einsums; traced as one node, none of them is counted
    assert 'einsum' not in res['by_operator']

    class Op(torch.nn.Module):
        def forward(self, x):
            return bi_wkv6(x, x, x, x, torch.zeros(3, 64))

    alone = flops.analyze_module(Op(), Op().forward, torch.zeros(1, 16, 192))
    assert alone['total'] == 0 and alone['op_total'] == bi_wkv6_flops(1, 16, 192, 64)
    # per module: the analyzer's count of a SpatialMix6 is its Linear layers + LoRA products
    N, C = 16, 192
    rows = {r['module']: r for r in res['table']}
    att = rows['layers.1.att']  # (table depth 3 by default: the mixer is listed)
    lora = N * C * (160 + 64 + 64) + 160 * N * C   # matmul (x@w1, decay LoRA) + bmm
    linear = 5 * N * C * C
    norm = 2 * N * C                               # ln_x, affine
    assert att['flops_analyzer'] == lora + linear + norm
    # LoRA products of the original tool's formula: N C (32*10 + 64*2) per layer
    assert res['by_operator']['matmul'] + res['by_operator']['bmm'] == 2 * N * C * 448


def test_report_names_the_op(flops, small_run):
    text = flops.report(small_run)
    assert 'Bi-WKV6 calls: 2' in text and '7*head_size*B*T*C' in text
    assert '+ Bi-WKV6 ' in text and '+ Bi-WKV ' not in text


def test_tiny_224_is_the_papers(flops):
    res = flops.get_flops(CFG, max_depth=1)
    assert abs(res['params'] / 1e6 - 7.6) < 0.1
    assert abs(res['flops'] / 1e9 - 1.6) < 0.1, res['flops']  # paper: 1.6 G
    assert res['flops'] == 1_650_505_728  # the figure before the op counted as one node
