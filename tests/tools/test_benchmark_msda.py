"""tools/analysis/benchmark_msda.py on a tiny sweep: rows, agreement of the two samplers,
dispatch column and summary, JSON and plot, argument checks."""
import json
import os.path as osp

import pytest

from tool_helpers import ROOT, load_tool  # noqa: E402
SCRIPT = osp.join(ROOT, 'tools', 'analysis', 'benchmark_msda.py')


@pytest.fixture(scope='module')
def bench():
    return load_tool('analysis/benchmark_msda')


def test_sweep_rows_json_and_plot(bench, tmp_path, capsys):
    out_json, out_png = tmp_path / 'msda.json', tmp_path / 'msda.png'
    rows = bench.main(['--dense-max-elements', '10000',
                       '--resolutions', '64', '--batch-sizes', '1', '2', '--warmup', '0',
                       '--repeat', '1', '--check', '--json', str(out_json),
                       '--plot', str(out_png)])
    # 64 px, tiny: injector 16 queries on 8x8 + 4x4 + 2x2 (84 tokens), extractor 84 on 4x4
    assert [(r['attention'], r['batch'], r['queries']) for r in rows] == [
        ('injector', 1, 16), ('injector', 2, 16), ('extractor', 1, 84), ('extractor', 2, 84)]
    # 6 heads x 16 x 84 = 8064 elements per image: batch 1 under the threshold, batch 2 over
    assert [r['dispatch'] for r in rows] == ['dense', 'grid_sample'] * 2
    for r in rows:
        assert r['dense_elements'] == r['batch'] * 6 * 16 * 84
        assert r['grid_sample_ms'] > 0 and r['dense_ms'] > 0
        assert r['speedup'] == pytest.approx(r['grid_sample_ms'] / r['dense_ms'])
        assert r['max_rel_diff'] < 1e-5
    assert json.loads(out_json.read_text())['rows'] == rows
    assert out_png.stat().st_size > 0
    text = capsys.readouterr().out
    assert 'speed-up' in text and 'took the faster implementation in' in text


def test_summary_counts_wrong_picks(bench):
    rows = [dict(resolution=128, attention='injector', batch=1, dispatch='dense',
                 grid_sample_ms=2.0, dense_ms=1.0),
            dict(resolution=384, attention='extractor', batch=4, dispatch='dense',
                 grid_sample_ms=1.0, dense_ms=3.0)]
    text = bench.dispatch_summary(rows)
    assert 'in 1 of 2 cases' in text and '3.00x' in text and '384 px extractor B4' in text


@pytest.mark.parametrize('argv,message', [
    (['--resolutions', '100'], 'not a positive multiple of 32'),
    (['--batch-sizes', '0'], 'must be positive'),
])
def test_bad_arguments(bench, argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err
