"""tools/analysis/benchmark_bi_wkv.py on tiny settings (CPU, a few seconds)."""
import json
import os
import shutil
import subprocess

import pytest

from tool_helpers import ROOT, load_tool  # noqa: E402
SCRIPT = os.path.join(ROOT, 'tools', 'analysis', 'benchmark_bi_wkv.py')
GPU_CHECK = os.path.join(ROOT, 'tools', 'analysis', 'gpu_check.sh')
TINY = ['--device', 'cpu', '--T', '16', '24', '--C', '8', '--B', '1', '--repeat', '2',
        '--warmup', '1', '--no-progress']


@pytest.fixture(scope='module')
def bench():
    return load_tool('analysis/benchmark_bi_wkv')


def _table(out):
    """Header cells and data rows (split on whitespace) of the printed table."""
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.split()[:2] == ['backend', 'mode'])
    header = lines[i].split()
    rows = []
    for line in lines[i + 2:]:
        if not line.strip() or line.startswith('#'):
            break
        rows.append(line.split())
    return header, rows


def _backends(bench):
    from mmvrwkv.ops import available_backends
    return (['cpu'] if 'cpu' in available_backends() else []) + ['torch']


def test_table_rows_and_columns(bench, capsys):
    assert bench.main(TINY) == 0
    out = capsys.readouterr().out
    header, rows = _table(out)
    assert header == ['backend', 'mode', 'dtype', 'B', 'T', 'C', 'time_ms', 'GB/s', 'vs_torch',
                      'x_copy']
    backends = _backends(bench)
    assert len(rows) == len(backends) * 2 * 2  # backends x modes x T
    assert {r[0] for r in rows} == set(backends)
    assert {r[1] for r in rows} == {'fwd', 'fwdbwd'}
    assert {r[4] for r in rows} == {'16', '24'}
    for r in rows:
        assert len(r) == len(header)
        assert float(r[6]) > 0
        if r[0] == 'torch':
            assert float(r[8]) == pytest.approx(1.0)
    # CPU target lines are always reported (SKIP here: the tiny sizes are below the threshold).
    assert any(line.startswith(('PASS:', 'FAIL:', 'SKIP:')) and 'CPU kernel' in line
               for line in out.splitlines())


def test_check_column_json_and_plot(bench, tmp_path, capsys):
    js, png = tmp_path / 'out.json', tmp_path / 'out.png'
    try:
        import matplotlib  # noqa: F401
        have_mpl = True
    except ImportError:
        have_mpl = False
    argv = TINY + ['--check', '--json', str(js), '--modes', 'fwd', 'fwdbwd']
    if have_mpl:
        argv += ['--plot', str(png)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    header, rows = _table(out)
    assert header[-1] == 'max_rel_err'
    for r in rows:
        if r[0] != 'torch':
            assert float(r[-1]) < 1e-3  # compared with the 'torch' backend
    assert any(line.startswith('PASS: --check') for line in out.splitlines())

    doc = json.loads(js.read_text())
    assert {'tool', 'env', 'args', 'baseline', 'rows', 'targets', 'elapsed_s'} <= set(doc)
    assert {'torch', 'threads', 'device', 'device_name', 'available_backends'} <= set(doc['env'])
    assert doc['baseline']['kind'] == 'clone'
    assert len(doc['rows']) == len(_backends(bench)) * 2 * 2
    for row in doc['rows']:
        assert row['status'] == 'ok'
        assert {'backend', 'mode', 'dtype', 'B', 'T', 'C', 'elems', 'time_ms', 'times_ms', 'gbps',
                'vs_torch', 'copy_ms', 'x_copy'} <= set(row)
        assert row['max_rel_err'] < 1e-3 if row['backend'] != 'torch' else True
    assert {t['status'] for t in doc['targets']} <= {'PASS', 'FAIL', 'SKIP'}
    if have_mpl:
        assert png.stat().st_size > 1000
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_max_elems_skips(bench, capsys):
    assert bench.main(TINY + ['--max-elems', '150', '--backends', 'torch', '--modes', 'fwd']) == 0
    out = capsys.readouterr().out
    # T=16 (128 elements) runs, T=24 (192 elements) is skipped with its reason.
    assert 'skipped: B*T*C=192 > --max-elems=150' in out
    _, rows = _table(out)
    assert [r[4] for r in rows if r[6] != 'skipped:'] == ['16']


def test_bad_arguments(bench):
    with pytest.raises(SystemExit):
        bench.main(['--device', 'cpu', '--backends', 'reference'])
    with pytest.raises(SystemExit):
        bench.main(['--device', 'cpu', '--backends', 'cuda'])


def test_help_runs():
    env = dict(os.environ, PYTHONPATH=ROOT)
    res = subprocess.run([os.sys.executable, SCRIPT, '--help'], capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == 0
    assert '--quick' in res.stdout and '--check' in res.stdout and '--max-elems' in res.stdout


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_gpu_check_script_parses():
    assert subprocess.run(['bash', '-n', GPU_CHECK]).returncode == 0


def test_cuda_report_and_targets_synthetic(bench, tmp_path):
    """The CUDA-only report paths (%copy column, bandwidth targets, GB/s plot) on made-up rows."""
    import argparse
    copy_gbps = 3000.0
    rows = []
    for backend, frac in (('cuda', {'fwd': 0.8, 'fwdbwd': 0.4}), ('torch', {'fwd': 0.1, 'fwdbwd': 0.05})):
        for mode in ('fwd', 'fwdbwd'):
            for B, T, C in ((1, 196, 192), (8, 4096, 768)):
                N = B * T * C
                moved = bench.ELEMS_MOVED[mode] * N * 2
                gbps = frac[mode] * copy_gbps
                rows.append(dict(backend=backend, mode=mode, dtype='bfloat16', device='cuda', B=B,
                                 T=T, C=C, elems=N, status='ok', time_ms=moved / gbps / 1e6,
                                 gbps=gbps, vs_torch=1.0, max_rel_err=1e-3))
    rows.append(dict(backend='cuda', mode='fwd', dtype='bfloat16', device='cuda', B=64, T=16384,
                     C=768, elems=64 * 16384 * 768, status='skipped', reason='too big'))
    args = argparse.Namespace(device='cuda', modes=['fwd', 'fwdbwd'], backends=['cuda', 'torch'],
                              B=[1, 8, 64], C=[192, 768], T=[196, 4096, 16384], dtype='bfloat16',
                              check=True, check_tol=None, target_min_elems=2**24,
                              plot_metric='auto')
    table = bench.format_table(rows, 'cuda', True, copy_gbps)
    header = table.splitlines()[0].split()
    assert header[-2:] == ['%copy', 'max_rel_err']
    assert ' 80.0 ' in table and 'skipped: too big' in table
    res = {t['name'].split(' of ')[0]: t for t in bench.evaluate_targets(rows, args, copy_gbps)}
    assert res['CUDA kernel fwd >= 70%']['status'] == 'PASS'
    assert res['CUDA kernel fwdbwd >= 50%']['status'] == 'FAIL'
    assert res['CUDA kernel fwdbwd >= 50%']['value'] == pytest.approx(40.0)
    assert '1/1' in res['CUDA kernel fwd >= 70%']['detail']  # only B*T*C >= 2^24 counts
    check = [t for t in res.values() if t['name'].startswith('--check')]
    assert check and check[0]['status'] == 'PASS'
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    png = tmp_path / 'gpu.png'
    bench.plot(rows, args, copy_gbps, str(png))
    assert png.stat().st_size > 1000
