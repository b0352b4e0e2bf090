"""mmvrwkv.analysis, what the benchmarks share: timer, presets, environment, progress,
tables, JSON, plot helpers; and that the benchmarks import it as the installed package
however they are started."""
import argparse
import io
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmvrwkv.analysis import (accuracy, machine, memory, options, plots, progress, report,
                              timing)
from tool_helpers import ROOT, load_tool  # noqa: E402

ANALYSIS = osp.join(ROOT, 'tools', 'analysis')


def test_measure_counts_hooks_and_stats():
    calls = []
    result = timing.measure(lambda: calls.append('x'), 'cpu', warmup=2, repeat=4,
                        before=lambda i: calls.append(f'b{i}'),
                        after=lambda i: calls.append(f'a{i}'))
    assert calls == ['x', 'x'] + [c for i in range(4) for c in (f'b{i}', 'x', f'a{i}')]
    assert len(result.samples) == 4 and result.threads == torch.get_num_threads()
    assert result.device == 'cpu' and result.value == result.median
    t = timing.Timing([3.0, 1.0, 2.0, 10.0], stat='min')
    assert (t.min, t.median, t.max, t.value) == (1.0, 2.5, 10.0, 1.0)
    assert t.spread == pytest.approx(9.0 / 2.5)
    # A spent budget stops after min(min_repeat, repeat) timed calls.
    n = []
    timing.measure(lambda: n.append(1), 'cpu', warmup=0, repeat=50, budget=0.0)
    assert len(n) == 3
    n.clear()
    timing.measure(lambda: n.append(1), 'cpu', warmup=0, repeat=2, budget=0.0)
    assert len(n) == 2


def test_presets_explicit_options_win():
    defaults = {'cpu': dict(sizes=[1, 2], warmup=1, repeat=5),
                'cuda': dict(sizes=[8], warmup=3, repeat=20)}
    quick = {'cpu': dict(sizes=[1], repeat=2), 'cuda': dict(sizes=[8], repeat=3)}

    def parse(argv):
        p = argparse.ArgumentParser()
        options.add_common_args(p)
        p.add_argument('--sizes', type=int, nargs='+')
        return options.finish_args(p.parse_args(argv), p, defaults, quick)

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
    text = options.describe_presets(defaults, quick)
    assert 'cpu: sizes=1 2 warmup=1 repeat=5' in text and '--quick: cpu: sizes=1 repeat=2' in text
    p = argparse.ArgumentParser()
    options.add_common_args(p, devices=('cpu', ))
    assert p.parse_args([]).device == 'cpu'
    with pytest.raises(SystemExit):
        p.parse_args(['--device', 'cpu'])


def test_environment_and_busy_warning(monkeypatch):
    env = machine.environment('cpu', 'float32', modules=('no_such_module_xyz', 'json'))
    assert {'python', 'platform', 'processor', 'torch', 'torch_cuda', 'threads', 'cpu_count',
            'loadavg', 'device', 'device_name', 'dtype', 'available_backends',
            'mmvrwkv'} <= set(env)
    assert env['device'] == 'cpu' and env['dtype'] == 'float32'
    assert 'no_such_module_xyz' not in env and 'json' in env
    assert machine.device_label(env).startswith('cpu (')
    assert 'threads)' in machine.device_label(env)
    assert machine.device_label(dict(device='cuda', device_name='NVIDIA H200')) == 'NVIDIA H200'
    cpus = os.cpu_count() or 1
    monkeypatch.setattr(machine, 'loadavg', lambda: [0.0, 0.0, 0.0])
    assert machine.busy_warning(dict(env, loadavg=[0.0, 0, 0])) is None
    warning = machine.busy_warning(dict(env, loadavg=[cpus + 1.0, 0, 0]), ' (hint)')
    assert warning.startswith('# WARNING: the machine was busy') and warning.endswith('(hint)')
    assert machine.busy_warning(dict(env, device='cuda', loadavg=[cpus + 1.0, 0, 0])) is None


def test_progress_non_terminal_and_disabled():
    buf = io.StringIO()
    with progress.Progress(20, 'job', stream=buf) as bar:
        for i in range(20):
            bar.set_description(f'case {i}')
            bar.update()
    lines = buf.getvalue().splitlines()
    assert 1 < len(lines) <= 11  # a line per tenth, not per step
    assert lines[-1].startswith('[job] 20/20 [####################] 100% ')
    assert lines[-1].endswith('case 19')
    quiet = io.StringIO()
    with progress.Progress(3, 'job', disable=True, stream=quiet) as bar:
        bar.update(3)
    assert quiet.getvalue() == ''

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    with progress.Progress(2, 'job', stream=tty) as bar:
        bar.update()
        bar.update()
    assert tty.getvalue().count('\r') == 2 and tty.getvalue().endswith('\n')


def test_format_table_columns_and_notes():
    Column = report.Column
    cols = [Column('name', 'name'), Column('n', 'n'), Column('time', 'ms', '.2f', ' ms'),
            Column('ratio', lambda r: r.get('x'), '.1f', missing='n/a')]
    rows = [dict(name='a', n=1, ms=1.234, x=2.0), dict(name='long-name', n=22, ms=None),
            dict(name='b', n=3, status='skipped')]
    text = report.format_table(cols, rows, lead=2,
                           note=lambda r: 'skipped: too big' if r.get('status') else None)
    assert text.splitlines() == [
        '     name   n     time  ratio',
        '---------  --  -------  -----',
        '        a   1  1.23 ms    2.0',
        'long-name  22        -    n/a',
        '        b   3  skipped: too big']
    assert Column('s', 's').cell(dict(s='OOM')) == 'OOM'


def test_max_rel_err_is_oom_and_json(tmp_path):
    a = torch.tensor([1.0, 2.0])
    assert accuracy.max_rel_err(a, a) == 0.0
    assert accuracy.max_rel_err((a, a + 1), (a, a)) == pytest.approx(0.5)
    assert accuracy.max_rel_err(torch.tensor([float('nan')]), a[:1]) == float('inf')
    assert accuracy.max_rel_err(torch.tensor([0.5]), torch.zeros(1)) == 0.5
    assert memory.is_oom(MemoryError()) and not memory.is_oom(ValueError('x'))
    path = tmp_path / 'sub' / 'x.json'
    report.write_json(str(path), dict(dtype=torch.float32, ns=argparse.Namespace(a=1), v=[1, 2]))
    assert json.loads(path.read_text()) == dict(dtype='torch.float32', ns=dict(a=1), v=[1, 2])


def test_plot_helpers(tmp_path):
    assert [plots.tick_label(v) for v in (0.25, 196, 16384, 10000, 4194304)] == [
        '0.25', '196', '16384', '10k', '4.19M']
    assert plots.tick_label(2, 'x') == '2x'
    assert plots.log_ticks(0.9, 1100, 10) == [1, 10, 100, 1000]
    assert plots.log_ticks(3, 30, 10) == [5, 10, 20]
    assert plots.log_ticks(0.2, 5, 2) == [0.25, 0.5, 1, 2, 4]
    assert all(2.9 <= t <= 3.8 for t in plots.log_ticks(2.9, 3.8, 10))
    assert len({plots.series_style(i)['color'] for i in range(9)}) == 9
    assert plots.series_style(1, dashed=True)['linestyle'] == '--'
    env = dict(device='cuda', device_name='NVIDIA H200')
    assert plots.plot_title('op time', env, 'bfloat16', [1, 8]) == \
        'op time - NVIDIA H200, bfloat16, batch 1, 8'
    pytest.importorskip('matplotlib')
    fig, axes = plots.subplots(1, 2)
    ax = axes[0][1]
    ax.plot([196, 1024, 4096], [0.1, 1.0, 12.0], **plots.series_style(0))
    plots.log_axis(ax, 'x', [196, 1024, 4096])
    plots.log_axis(ax, 'y')
    assert list(ax.get_xticks()) == [196, 1024, 4096]
    assert [t.get_text() for t in ax.get_xticklabels()] == ['196', '1024', '4096']
    out = tmp_path / 'p' / 'fig.png'
    plots.save_figure(fig, str(out), 'a title ' * 20)
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


# The analysis command lines, and the device check's two that use mmvrwkv.analysis.
SCRIPTS = dict({name: osp.join(ANALYSIS, f'{name}.py') for name in (
    'benchmark_bi_wkv', 'benchmark_model', 'benchmark_msda', 'visualize_erf')},
    **{name: osp.join(ROOT, '.ci', 'device', f'{name}.py') for name in (
        'check_targets', 'gpu_check_steps')})


@pytest.mark.parametrize('tool', sorted(SCRIPTS))
def test_tools_start_from_another_directory(tool, tmp_path):
    """As scripts from an unrelated working directory (they import the installed package)."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    res = subprocess.run([sys.executable, SCRIPTS[tool], '--help'],
                         capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'usage:' in res.stdout


def test_benchmarks_use_the_package():
    """Loaded by path (as the tests do), the benchmarks use mmvrwkv.analysis; nothing puts
    tools/analysis on sys.path."""
    a = load_tool('analysis/benchmark_bi_wkv')
    b = load_tool('analysis/benchmark_msda')
    assert a.measure is b.measure is timing.measure
    assert a.plots is b.plots is plots
    assert 'bench_harness' not in sys.modules and ANALYSIS not in sys.path


def test_package_import_is_light():
    """Importing every module of mmvrwkv.analysis loads neither matplotlib nor torchvision
    (they are imported where a plot is drawn or a baseline built)."""
    code = ('import sys, mmvrwkv.analysis\n'
            'from mmvrwkv.analysis import (accuracy, backbones, machine, memory, options, plots,\n'
            '    progress, report, targets, timing)\n'
            "print(sorted(m for m in ('matplotlib', 'torchvision') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == '[]'
