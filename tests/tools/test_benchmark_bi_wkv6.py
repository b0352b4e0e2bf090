"""tools/analysis/benchmark_bi_wkv.py --op bi_wkv6 on tiny settings (CPU, a few seconds), and
the v6 targets of mmvrwkv.analysis.targets."""
import json

import pytest

from mmvrwkv.analysis import targets
from tool_helpers import load_tool  # noqa: E402

TINY_V6 = ['--op', 'bi_wkv6', '--head-size', '4', '--device', 'cpu', '--T', '16', '33',
           '--C', '8', '--B', '1', '--repeat', '2', '--warmup', '1', '--no-progress']


@pytest.fixture(scope='module')
def bench():
    return load_tool('analysis/benchmark_bi_wkv')


def test_v6_rows_check_and_json(bench, tmp_path, capsys):
    """Every backend x mode x T row of the v6 op is timed and checked against the reference
    ('torch' rows) or 'torch' ('cpu' rows); the JSON names the op and its targets."""
    from mmvrwkv.ops import available_backends
    backends = [b for b in ('cpu', 'torch') if b in available_backends('bi_wkv6')]
    js = tmp_path / 'v6.json'
    assert bench.main(TINY_V6 + ['--check', '--json', str(js)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith('# bi_wkv6 benchmark')
    doc = json.loads(js.read_text())
    assert doc['args']['op'] == 'bi_wkv6' and doc['args']['head_size'] == 4
    rows = doc['rows']
    assert len(rows) == len(backends) * 2 * 2
    for r in rows:
        assert r['op'] == 'bi_wkv6' and r['status'] == 'ok', r
        assert r['max_rel_err'] < 1e-5
        assert r['bytes'] == bench.ELEMS_MOVED_V6[r['mode']] * r['elems'] * 4
    names = [t['name'] for t in doc['targets']]
    assert any('bi_wkv6' in n and 'T = 4096' in n for n in names)
    assert not any('copy time' in n for n in names)  # the v1 targets do not apply


def _v6_doc(speedup):
    rows = [dict(op='bi_wkv6', backend=b, mode=m, dtype='float32', B=1, T=T, C=192,
                 elems=T * 192, status='ok', vs_torch=speedup if b == 'cpu' else 1.0)
            for b in ('cpu', 'torch') for m in ('fwd', 'fwdbwd') for T in (1024, 4096)]
    return dict(tool='benchmark_bi_wkv', args=dict(op='bi_wkv6', device='cpu',
                                                   dtype='float32', check=False), rows=rows)


@pytest.mark.parametrize('speedup,status', [(6.0, 'PASS'), (4.0, 'FAIL')])
def test_v6_targets(speedup, status):
    """The v6 speed-up target (>= 5x 'torch' at T = 4096) passes and fails on synthetic rows."""
    results = targets.evaluate(_v6_doc(speedup))
    assert [r['status'] for r in results] == [status, status]
    assert all(r['threshold'] == 5.0 for r in results)


@pytest.mark.parametrize('extra', [['--head-size', '3'], ['--chunk-len', '4']],
                         ids=['head_size_not_dividing_C', 'chunk_len'])
def test_v6_bad_arguments(bench, extra):
    with pytest.raises(SystemExit):
        bench.main(TINY_V6 + extra)
