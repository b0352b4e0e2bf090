"""tools/analysis/bench_harness.py: timer, presets, environment, progress, tables, JSON, plot
helpers, and that the benchmarks find it however they are started."""
import argparse
import io
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from tool_helpers import ROOT, load_tool  # noqa: E402

ANALYSIS = osp.join(ROOT, 'tools', 'analysis')


@pytest.fixture(scope='module')
def bh():
    return load_tool('analysis/bench_harness')


def test_measure_counts_hooks_and_stats(bh):
    calls = []
    timing = bh.measure(lambda: calls.append('x'), 'cpu', warmup=2, repeat=4,
                        before=lambda i: calls.append(f'b{i}'),
                        after=lambda i: calls.append(f'a{i}'))
    assert calls == ['x', 'x'] + [c for i in range(4) for c in (f'b{i}', 'x', f'a{i}')]
    assert len(timing.samples) == 4 and timing.threads == torch.get_num_threads()
    assert timing.device == 'cpu' and timing.value == timing.median
    t = bh.Timing([3.0, 1.0, 2.0, 10.0], stat='min')
    assert (t.min, t.median, t.max, t.value) == (1.0, 2.5, 10.0, 1.0)
    assert t.spread == pytest.approx(9.0 / 2.5)
    # A spent budget stops after min(min_repeat, repeat) timed calls.
    n = []
    bh.measure(lambda: n.append(1), 'cpu', warmup=0, repeat=50, budget=0.0)
    assert len(n) == 3
    n.clear()
    bh.measure(lambda: n.append(1), 'cpu', warmup=0, repeat=2, budget=0.0)
    assert len(n) == 2


def test_presets_explicit_options_win(bh):
    defaults = {'cpu': dict(sizes=[1, 2], warmup=1, repeat=5),
                'cuda': dict(sizes=[8], warmup=3, repeat=20)}
    quick = {'cpu': dict(sizes=[1], repeat=2), 'cuda': dict(sizes=[8], repeat=3)}

    def parse(argv):
        p = argparse.ArgumentParser()
        bh.add_common_args(p)
        p.add_argument('--sizes', type=int, nargs='+')
        return bh.finish_args(p.parse_args(argv), p, defaults, quick)

    a = parse(['--device', 'cpu'])
    assert (a.sizes, a.warmup, a.repeat, a.no_progress) == ([1, 2], 1, 5, False)
    a = parse(['--device', 'cpu', '--quick', '--repeat', '7'])
    assert (a.sizes, a.warmup, a.repeat) == ([1], 1, 7)
    a.sizes.append(99)  # filled lists are copies of the preset
    assert defaults['cpu']['sizes'] == [1, 2] and quick['cpu']['sizes'] == [1]
    with pytest.raises(SystemExit):
        parse(['--device', 'cpu', '--repeat', '0'])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            parse(['--device', 'cuda'])
    text = bh.describe_presets(defaults, quick)
    assert 'cpu: sizes=1 2 warmup=1 repeat=5' in text and '--quick: cpu: sizes=1 repeat=2' in text
    p = argparse.ArgumentParser()
    bh.add_common_args(p, devices=('cpu', ))
    assert p.parse_args([]).device == 'cpu'
    with pytest.raises(SystemExit):
        p.parse_args(['--device', 'cpu'])


def test_environment_and_busy_warning(bh, monkeypatch):
    env = bh.environment('cpu', 'float32', modules=('no_such_module_xyz', 'json'))
    assert {'python', 'platform', 'processor', 'torch', 'torch_cuda', 'threads', 'cpu_count',
            'loadavg', 'device', 'device_name', 'dtype', 'available_backends',
            'mmvrwkv'} <= set(env)
    assert env['device'] == 'cpu' and env['dtype'] == 'float32'
    assert 'no_such_module_xyz' not in env and 'json' in env
    assert bh.device_label(env).startswith('cpu (') and 'threads)' in bh.device_label(env)
    assert bh.device_label(dict(device='cuda', device_name='NVIDIA H200')) == 'NVIDIA H200'
    cpus = os.cpu_count() or 1
    monkeypatch.setattr(bh, 'loadavg', lambda: [0.0, 0.0, 0.0])
    assert bh.busy_warning(dict(env, loadavg=[0.0, 0, 0])) is None
    warning = bh.busy_warning(dict(env, loadavg=[cpus + 1.0, 0, 0]), ' (hint)')
    assert warning.startswith('# WARNING: the machine was busy') and warning.endswith('(hint)')
    assert bh.busy_warning(dict(env, device='cuda', loadavg=[cpus + 1.0, 0, 0])) is None


def test_progress_non_terminal_and_disabled(bh):
    buf = io.StringIO()
    with bh.Progress(20, 'job', stream=buf) as progress:
        for i in range(20):
            progress.set_description(f'case {i}')
            progress.update()
    lines = buf.getvalue().splitlines()
    assert 1 < len(lines) <= 11  # a line per tenth, not per step
    assert lines[-1].startswith('[job] 20/20 [####################] 100% ')
    assert lines[-1].endswith('case 19')
    quiet = io.StringIO()
    with bh.Progress(3, 'job', disable=True, stream=quiet) as progress:
        progress.update(3)
    assert quiet.getvalue() == ''

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    with bh.Progress(2, 'job', stream=tty) as progress:
        progress.update()
        progress.update()
    assert tty.getvalue().count('\r') == 2 and tty.getvalue().endswith('\n')


def test_format_table_columns_and_notes(bh):
    cols = [bh.Column('name', 'name'), bh.Column('n', 'n'),
            bh.Column('time', 'ms', '.2f', ' ms'), bh.Column('ratio', lambda r: r.get('x'), '.1f',
                                                             missing='n/a')]
    rows = [dict(name='a', n=1, ms=1.234, x=2.0), dict(name='long-name', n=22, ms=None),
            dict(name='b', n=3, status='skipped')]
    text = bh.format_table(cols, rows, lead=2,
                           note=lambda r: 'skipped: too big' if r.get('status') else None)
    assert text.splitlines() == [
        '     name   n     time  ratio',
        '---------  --  -------  -----',
        '        a   1  1.23 ms    2.0',
        'long-name  22        -    n/a',
        '        b   3  skipped: too big']
    assert bh.Column('s', 's').cell(dict(s='OOM')) == 'OOM'


def test_max_rel_err_is_oom_and_json(bh, tmp_path):
    a = torch.tensor([1.0, 2.0])
    assert bh.max_rel_err(a, a) == 0.0
    assert bh.max_rel_err((a, a + 1), (a, a)) == pytest.approx(0.5)
    assert bh.max_rel_err(torch.tensor([float('nan')]), a[:1]) == float('inf')
    assert bh.max_rel_err(torch.tensor([0.5]), torch.zeros(1)) == 0.5
    assert bh.is_oom(MemoryError()) and not bh.is_oom(ValueError('x'))
    path = tmp_path / 'sub' / 'x.json'
    bh.write_json(str(path), dict(dtype=torch.float32, ns=argparse.Namespace(a=1), v=[1, 2]))
    assert json.loads(path.read_text()) == dict(dtype='torch.float32', ns=dict(a=1), v=[1, 2])


def test_plot_helpers(bh, tmp_path):
    assert [bh.tick_label(v) for v in (0.25, 196, 16384, 10000, 4194304)] == [
        '0.25', '196', '16384', '10k', '4.19M']
    assert bh.tick_label(2, 'x') == '2x'
    assert bh._log_ticks(0.9, 1100, 10) == [1, 10, 100, 1000]
    assert bh._log_ticks(3, 30, 10) == [5, 10, 20]
    assert bh._log_ticks(0.2, 5, 2) == [0.25, 0.5, 1, 2, 4]
    assert all(2.9 <= t <= 3.8 for t in bh._log_ticks(2.9, 3.8, 10))
    assert len({bh.series_style(i)['color'] for i in range(9)}) == 9
    assert bh.series_style(1, dashed=True)['linestyle'] == '--'
    env = dict(device='cuda', device_name='NVIDIA H200')
    assert bh.plot_title('op time', env, 'bfloat16', [1, 8]) == \
        'op time - NVIDIA H200, bfloat16, batch 1, 8'
    pytest.importorskip('matplotlib')
    fig, axes = bh.subplots(1, 2)
    ax = axes[0][1]
    ax.plot([196, 1024, 4096], [0.1, 1.0, 12.0], **bh.series_style(0))
    bh.log_axis(ax, 'x', [196, 1024, 4096])
    bh.log_axis(ax, 'y')
    assert list(ax.get_xticks()) == [196, 1024, 4096]
    assert [t.get_text() for t in ax.get_xticklabels()] == ['196', '1024', '4096']
    out = tmp_path / 'p' / 'fig.png'
    bh.save_figure(fig, str(out), 'a title ' * 20)
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('tool', ['benchmark_bi_wkv', 'benchmark_model', 'benchmark_msda',
                                  'check_targets', 'gpu_check_steps'])
def test_tools_start_from_another_directory(tool, tmp_path):
    """As scripts from an unrelated working directory (the harness is found beside them)."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    res = subprocess.run([sys.executable, osp.join(ANALYSIS, f'{tool}.py'), '--help'],
                         capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'usage:' in res.stdout


def test_loaded_from_path_shares_one_harness():
    """Loaded by path (as the tests do), the benchmarks import the same harness module."""
    a = load_tool('analysis/benchmark_bi_wkv')
    b = load_tool('analysis/benchmark_msda')
    assert a.bh is b.bh is sys.modules['bench_harness']
    assert osp.samefile(a.bh.__file__, osp.join(ANALYSIS, 'bench_harness.py'))
    assert sys.path.count(ANALYSIS) <= 1
