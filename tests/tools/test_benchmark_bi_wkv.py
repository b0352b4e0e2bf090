"""tools/analysis/benchmark_bi_wkv.py on tiny settings (CPU, a few seconds)."""
import json
import os
import shutil
import subprocess

import pytest

from mmvrwkv.analysis import plots, targets
from tool_helpers import ROOT, load_tool  # noqa: E402
SCRIPT = os.path.join(ROOT, 'tools', 'analysis', 'benchmark_bi_wkv.py')
GPU_CHECK = os.path.join(ROOT, '.ci', 'device', 'gpu_check.sh')
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
    for backend, frac in (('cuda', {'fwd': 0.8, 'fwdbwd': 0.4}),
                          ('torch', {'fwd': 0.1, 'fwdbwd': 0.05})):
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
    res = {t['name'].split(' of ')[0]: t for t in targets.bi_wkv_targets(rows, args, copy_gbps)}
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


# ------------------------------------------- mmvrwkv.analysis.targets, the check_targets command

def _cpu_doc(vs_torch, x_copy, elems=2**20, check=False, err=1e-4):
    rows = [dict(backend='cpu', mode='fwd', dtype='float32', B=1, T=elems // 256, C=256,
                 elems=elems, status='ok', vs_torch=vs_torch, x_copy=x_copy, max_rel_err=err)]
    return dict(tool='benchmark_bi_wkv', rows=rows, baseline=dict(kind='clone', copy_gbps=None),
                args=dict(device='cpu', dtype='float32', check=check, check_tol=None,
                          target_min_elems=None))


def test_check_targets_cli(tmp_path, capsys):
    """The checker reads a benchmark's JSON: PASS/FAIL lines, overrides, --strict, errors."""
    checker = load_tool('device/check_targets', folder='.ci')
    path = tmp_path / 'b.json'
    path.write_text(json.dumps(_cpu_doc(vs_torch=20.0, x_copy=5.0, check=True)))
    assert checker.main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f'# {path} (benchmark_bi_wkv, cpu, float32)')
    assert [ln.split(':')[0] for ln in lines[1:]] == ['PASS', 'FAIL', 'PASS']
    assert 'worst 5 at cpu fwd float32 B=1 T=4096 C=256' in lines[2]
    assert checker.main([str(path), '--strict']) == 1
    capsys.readouterr()
    assert checker.main([str(path), '--strict', '--target', 'cpu_fwd_x_copy=6',
                         '--target', 'check_tol=1e-5']) == 1  # x_copy passes, check fails
    out = capsys.readouterr().out
    assert 'PASS: CPU kernel forward <= 6x' in out and 'FAIL: --check: max_rel_err <= 1e-05' in out
    # Below the size floor (the run's --target-min-elems, else 2^19) the CPU targets SKIP.
    small = _cpu_doc(vs_torch=1.0, x_copy=50.0, elems=2**18)
    assert [r['status'] for r in targets.evaluate(small)] == ['SKIP', 'SKIP']
    small['args']['target_min_elems'] = 2**10
    assert [r['status'] for r in targets.evaluate(small)] == ['FAIL', 'FAIL']
    with pytest.raises(SystemExit):
        checker.main([str(path), '--target', 'no_such_target=1'])
    other = tmp_path / 'other.json'
    other.write_text(json.dumps(dict(tool='benchmark_msda', rows=[])))
    assert checker.main([str(other)]) == 2
    assert checker.main([str(tmp_path / 'missing.json')]) == 2


def test_benchmark_json_is_checked_the_same_way(bench, tmp_path, capsys):
    """The targets a run prints and stores are what mmvrwkv.analysis.targets finds in its
    JSON."""
    js = tmp_path / 'b.json'
    assert bench.main(TINY + ['--check', '--json', str(js), '--modes', 'fwd',
                              '--target-min-elems', '100']) == 0
    printed = [ln for ln in capsys.readouterr().out.splitlines()
               if ln.startswith(('PASS:', 'FAIL:', 'SKIP:'))]
    doc = json.loads(js.read_text())
    assert targets.format_results(targets.evaluate(doc)) == printed
    assert targets.format_results(doc['targets']) == printed
    if 'cpu' in _backends(bench):  # the size floor came from --target-min-elems
        assert not any(ln.startswith('SKIP: CPU') for ln in printed)


# ----------------------------------------------------------------- .ci/device/gpu_check_steps.py

@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_gpu_check_steps_budget_summary_and_pack(tmp_path, monkeypatch, capsys):
    """Steps run under the budget (ok, failed, allowed rc, timeout, out of budget), the summary
    quotes them, and packing leaves at most --max-files files with everything in the tarball."""
    import tarfile
    import time
    steps = load_tool('device/gpu_check_steps', folder='.ci')
    out = tmp_path / 'out'
    monkeypatch.setenv('OUT', str(out))
    monkeypatch.setenv('GPU_CHECK_START', str(int(time.time())))
    monkeypatch.setenv('GPU_CHECK_BUDGET', '300')
    monkeypatch.setenv('GPU_CHECK_RESERVE', '0')
    monkeypatch.setenv('GPU_CHECK_MIN_STEP', '1')
    monkeypatch.setattr(steps, 'KILL_AFTER', 2)
    assert steps.main(['init']) == 0
    assert steps.main(['run', 'good', '10', 'echo hello']) == 0
    assert steps.main(['run', 'bad', '10', 'echo boom; exit 3']) == 3
    assert steps.main(['run', 'pytest_cuda', '10', '--note', '5=no-tests-selected', 'exit 5']) == 5
    t0 = time.time()
    assert steps.main(['run', 'slow', '1', 'sleep 30']) == 124
    assert time.time() - t0 < 10
    assert steps.main(['skip', 'build', 'dry run']) == 0
    monkeypatch.setenv('GPU_CHECK_START', str(int(time.time()) - 1000))
    assert steps.main(['run', 'late', '10', 'echo never']) == 0
    assert not (out / 'late.log').exists()
    assert (out / 'good.log').read_text() == 'hello\n'
    (out / 'targets.log').write_text('# a.json (benchmark_bi_wkv, cpu, float32)\n'
                                     'PASS: one: fine\nother text\nFAIL: two: not\n')
    assert steps.main(['summary', '--title', 'dry_run=1', '--logs', 'good', 'nothere']) == 0
    summary = (out / 'summary.txt').read_text()
    table = {ln.split()[0]: ln.split()[1:] for ln in summary.splitlines()
             if ln.split() and ln.split()[0] in ('good', 'bad', 'pytest_cuda', 'slow', 'build',
                                                 'late')}
    assert table == {'good': ['0', '0', 'ok'], 'bad': ['3', '0', 'failed'],
                     'pytest_cuda': ['5', '0', 'no-tests-selected'],
                     'slow': ['124', table['slow'][1], 'timeout(1s)'],
                     'build': ['-', '0', 'skipped:dry', 'run'],
                     'late': ['-', '0', 'skipped:out-of-time-budget']}
    assert 'dry_run=1' in summary.splitlines()[0]
    assert '== good\nhello' in summary and '== nothere' not in summary
    assert '== target lines\n# a.json (benchmark_bi_wkv, cpu, float32)\nPASS: one: fine\n' \
           'FAIL: two: not\n' in summary
    assert '== tail of bad.log (rc=3)\nboom' in summary and '== tail of slow.log' in summary
    assert 'tail of pytest_cuda' not in summary and not (out / '.steps').exists()

    for i in range(6):
        (out / f'extra{i}.json').write_text('{}')
    before = sorted(p.name for p in out.iterdir())
    assert len(before) > 8
    assert steps.main(['pack', '--max-files', '8', '--keep', 'extra3.json', 'missing.png',
                       'extra1.json']) == 0
    after = sorted(p.name for p in out.iterdir())
    assert after == ['extra1.json', 'extra3.json', 'gpu_check.tar.gz', 'summary.txt']
    with tarfile.open(out / 'gpu_check.tar.gz') as tar:
        assert sorted(tar.getnames()) == before
    assert (out / 'summary.txt').read_text().splitlines()[-1] == (
        'packed: everything in gpu_check.tar.gz; loose: summary.txt gpu_check.tar.gz '
        'extra3.json extra1.json')
    # Few files: nothing is packed.
    monkeypatch.setenv('OUT', str(tmp_path / 'few'))
    (tmp_path / 'few').mkdir()
    (tmp_path / 'few' / 'summary.txt').write_text('x\n')
    assert steps.main(['pack', '--max-files', '8']) == 0
    assert sorted(p.name for p in (tmp_path / 'few').iterdir()) == ['summary.txt']


# ----------------------------------------------------------------------------- plot, threads

def test_plot_draws_the_copy_baseline(bench, tmp_path, monkeypatch):
    """CPU time plot: besides the backends, a black dotted line per batch size at the copy
    times the rows carry (the baseline the x_copy column divides by)."""
    pytest.importorskip('matplotlib')
    figures = []
    real_save = plots.save_figure

    def keep(fig, path, *args, **kwargs):
        figures.append([(ln.get_label(), list(ln.get_xdata()), list(ln.get_ydata()))
                        for ax in fig.axes for ln in ax.lines])
        real_save(fig, path, *args, **kwargs)
    monkeypatch.setattr(plots, 'save_figure', keep)
    js = tmp_path / 'b.json'
    argv = TINY + ['--modes', 'fwd', '--json', str(js), '--plot', str(tmp_path / 'b.png')]
    assert bench.main(argv) == 0
    (lines, ) = figures
    rows = json.loads(js.read_text())['rows']
    copy = {r['T']: r['copy_ms'] for r in rows}
    (baseline, ) = [ln for ln in lines if ln[0] == 'copy k, v B=1']
    assert baseline[1] == [16, 24]
    assert baseline[2] == pytest.approx([copy[16], copy[24]])
    assert {ln[0] for ln in lines} >= {f'{b} B=1' for b in _backends(bench)}


def test_script_sets_passive_openmp_wait(tmp_path):
    """Run as a script, the tool makes waiting OpenMP threads sleep (spinning ones made the
    2-thread 'torch' timings stall on a shared machine) unless the environment says otherwise,
    and records the policy it ran with."""
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    for policy, expected in ((None, 'PASSIVE'), ('ACTIVE', 'ACTIVE')):
        if policy:
            env['OMP_WAIT_POLICY'] = policy
        js = tmp_path / f'{expected}.json'
        res = subprocess.run([os.sys.executable, SCRIPT] + TINY + ['--backends', 'torch',
                                                                  '--modes', 'fwd', '--json',
                                                                  str(js)],
                             capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        assert f'OMP_WAIT_POLICY={expected}' in res.stdout.splitlines()[0]
        assert json.loads(js.read_text())['env']['omp_wait_policy'] == expected
