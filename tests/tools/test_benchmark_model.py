"""tools/analysis/benchmark_model.py on tiny settings (1-block models, 32/64 px): table shape
and ratios, JSON and plot written, OOM / error handling, argument checks, a run without
mmpretrain/mmcv (as on the GPU check machines: torchvision baseline), the training-step mode
and eager vs torch.compile side by side."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

pytest.importorskip('mmengine')
pytest.importorskip('torchvision')

from mmvrwkv.analysis import backbones, plots  # noqa: E402
from tool_helpers import ROOT, load_tool  # noqa: E402
SCRIPT = osp.join(ROOT, 'tools', 'analysis', 'benchmark_model.py')


def tiny(*resolutions):
    """Arguments of a tiny sweep: VRWKV-T / DeiT-T with 1 block at these resolutions."""
    return (['--device', 'cpu', '--archs', 'tiny', '--resolutions'] + [str(r) for r in resolutions]
            + ['--depth', '1', '--warmup', '0', '--repeat', '2', '--no-progress'])


@pytest.fixture(scope='module')
def bench():
    return load_tool('analysis/benchmark_model')


def test_tiny_run_table_json_plot(bench, tmp_path, capsys):
    out_json, out_png = str(tmp_path / 'b.json'), str(tmp_path / 'b.png')
    res = bench.main(tiny(32, 64) + ['--baseline', 'torchvision', '--json', out_json,
                                     '--plot', out_png])
    rows = res['table']
    assert [(r['arch'], r['res'], r['tokens']) for r in rows] == [('tiny', 32, 4), ('tiny', 64, 16)]
    for r in rows:
        assert list(r) == list(bench.TABLE_COLUMNS)
        assert r['vrwkv_img_s'] > 0 and r['vit_img_s'] > 0 and r['batch'] == 1
        assert r['speed_ratio'] == pytest.approx(r['vrwkv_img_s'] / r['vit_img_s'])
        if osp.exists('/proc/self/clear_refs'):
            assert r['vrwkv_mem_mib'] > 0 and r['vit_mem_mib'] > 0
            assert r['mem_ratio'] == pytest.approx(r['vrwkv_mem_mib'] / r['vit_mem_mib'])
    assert len(res['results']) == 4
    assert all(len(r['times_s']) == 2 and r['status'] == 'ok' for r in res['results'])

    printed = capsys.readouterr().out
    table_lines = [ln for ln in printed.splitlines() if ln.strip().startswith('tiny')]
    assert len(table_lines) == 2 and 'VRWKV img/s' in printed and 'torchvision' in printed

    with open(out_json) as f:
        data = json.load(f)
    assert data['columns'] == list(bench.TABLE_COLUMNS)
    assert len(data['table']) == 2 and len(data['results']) == 4
    assert data['settings']['baseline'] == 'torchvision'
    assert data['environment']['device'] == 'cpu'
    with open(out_png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_mmpretrain_baseline(bench):
    pytest.importorskip('mmpretrain')
    res = bench.main(tiny(32) + ['--baseline', 'mmpretrain'])
    (row, ) = res['table']
    assert row['vit_img_s'] > 0
    assert all(r['status'] == 'ok' for r in res['results'])
    assert bench.resolve_baseline('auto') == 'mmpretrain'


def test_oom_and_errors_are_recorded(bench, monkeypatch, capsys):
    real_build = bench.build_model

    def build(model, arch, res, *args, **kwargs):
        if model == 'vit' and res >= 64:
            raise RuntimeError('CUDA out of memory. Tried to allocate 9.00 GiB')
        if model == 'vrwkv' and res == 64:
            raise ValueError('something else')
        return real_build(model, arch, res, *args, **kwargs)

    monkeypatch.setattr(bench, 'build_model', build)
    res = bench.main(tiny(32, 64, 96) + ['--baseline', 'torchvision'])
    status = {(r['model'], r['res']): r['status'] for r in res['results']}
    assert status == {('vrwkv', 32): 'ok', ('vrwkv', 64): 'error', ('vrwkv', 96): 'ok',
                      ('vit', 32): 'ok', ('vit', 64): 'OOM', ('vit', 96): 'OOM'}
    skipped = [r for r in res['results'] if r['model'] == 'vit' and r['res'] == 96][0]
    assert 'skipped' in skipped['error']
    rows = {r['res']: r for r in res['table']}
    assert rows[32]['speed_ratio'] > 0
    assert rows[64]['vrwkv_img_s'] == 'error' and rows[64]['vit_img_s'] == 'OOM'
    assert rows[64]['speed_ratio'] is None and rows[96]['vit_img_s'] == 'OOM'
    out = capsys.readouterr().out
    assert 'ValueError: something else' in out and 'OOM' in out


def test_is_oom(bench):
    assert bench.is_oom(MemoryError())
    assert bench.is_oom(RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB'))
    assert bench.is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                     "can't allocate memory: you tried to allocate 1 bytes"))
    if hasattr(torch.cuda, 'OutOfMemoryError'):
        assert bench.is_oom(torch.cuda.OutOfMemoryError('x'))
    assert not bench.is_oom(ValueError('shape mismatch'))


def test_arguments(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(['--device', 'cpu', '--resolutions', '100'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--device', 'cpu', '--repeat', '0'])
    args = bench.parse_args(['--device', 'cpu', '--baseline', 'torchvision'])
    assert (args.archs, args.resolutions, args.batch_size, args.dtype) == (
        ['tiny', 'small', 'base'], [224, 384, 512], [1], 'float32')
    assert bench.parse_args(['--device', 'cpu', '--batch-size', '8', '1', '8']).batch_size == [1, 8]
    with pytest.raises(SystemExit):
        bench.parse_args(['--device', 'cpu', '--batch-size', '0'])
    args = bench.parse_args(['--device', 'cpu', '--quick', '--baseline', 'torchvision',
                             '--resolutions', '64', '32', '64'])
    assert args.archs == ['tiny'] and args.resolutions == [32, 64] and args.repeat == 2
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench.parse_args(['--device', 'cuda'])


def test_runs_without_mmpretrain_and_mmcv(tmp_path):
    """The GPU check machines have neither: 'auto' falls back to torchvision."""
    code = ('import sys, runpy; sys.modules["mmpretrain"] = None; sys.modules["mmcv"] = None; '
            f'sys.argv = [{SCRIPT!r}] + sys.argv[1:]; '
            f'runpy.run_path({SCRIPT!r}, run_name="__main__")')
    out_json = str(tmp_path / 'b.json')
    proc = subprocess.run([sys.executable, '-c', code] + tiny(32)
                          + ['--json', out_json], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out_json) as f:
        data = json.load(f)
    assert data['settings']['baseline'] == 'torchvision'
    assert 'mmpretrain' not in data['environment']
    assert all(r['status'] == 'ok' for r in data['results'])


def test_training_step_mode(bench, monkeypatch):
    """--mode train: forward + backward + AdamW step; the weights really change."""
    steps = []
    real = torch.optim.AdamW.step

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.AdamW, 'step', counting_step)
    res = bench.main(tiny(32) + ['--baseline', 'torchvision', '--mode', 'train'])
    assert all(r['status'] == 'ok' and r['mode'] == 'train' for r in res['results'])
    assert len(steps) == 2 * 2  # 2 models x (0 warm-up + 2 timed runs)
    (row, ) = res['table']
    assert row['vrwkv_img_s'] > 0 and row['vit_img_s'] > 0 and row['compiled'] == 'eager'
    step = bench.make_step(nn_linear_model(), torch.randn(2, 4), 'train', compiled=False)
    step()  # a plain module works too (tuple or tensor outputs)


def nn_linear_model():
    class TupleOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return (self.fc(x), )
    return TupleOut()


def test_eager_and_compiled_side_by_side(bench, tmp_path):
    """--compile both: each model eager and through torch.compile in the same run, one table
    row per variant; the compiled forward is warmed up (compiled) before timing."""
    out_png = str(tmp_path / 'c.png')
    res = bench.main(tiny(32) + ['--baseline', 'torchvision', '--compile', 'both',
                                 '--plot', out_png])
    assert [(r['model'], r['compiled']) for r in res['results']] == [
        ('vrwkv', False), ('vrwkv', True), ('vit', False), ('vit', True)]
    assert all(r['status'] == 'ok' for r in res['results']), res['results']
    assert [r['compiled'] for r in res['table']] == ['eager', 'compiled']
    assert all(r['speed_ratio'] > 0 for r in res['table'])
    assert osp.getsize(out_png) > 0


def capture_figures(bench, monkeypatch):
    """Figures the tool saves, kept open for inspection (axes drawn, so tick labels exist)."""
    figures = []

    def keep(fig, path, title=None, *args, **kwargs):
        if title:
            fig.suptitle(title)
        fig.canvas.draw()
        figures.append(fig)
        fig.savefig(path)
    monkeypatch.setattr(plots, 'save_figure', keep)
    return figures


def test_batch_sizes_vrwkv6_and_plot(bench, tmp_path, monkeypatch):
    """--batch-size 1 2 with VRWKV6 beside VRWKV and DeiT: table rows per batch (VRWKV6
    columns and ratios), and a plot with a row of panels per batch: distinct colours per
    model, the measured resolutions as x tick labels, labelled y ticks, a ratio panel with
    the parity line and the table's ratios, a title naming device, dtype, batches and mode."""
    pytest.importorskip('matplotlib')
    figures = capture_figures(bench, monkeypatch)
    png = tmp_path / 'p.png'
    res = bench.main(tiny(32, 64) + ['--baseline', 'torchvision', '--batch-size', '1', '2',
                                     '--models', 'vrwkv', 'vrwkv6', 'vit', '--plot', str(png)])
    assert all(r['status'] == 'ok' for r in res['results']), res['results']
    assert {(r['model'], r['batch']) for r in res['results']} == {
        (m, b) for m in ('vrwkv', 'vrwkv6', 'vit') for b in (1, 2)}
    rows = res['table']
    assert [(r['batch'], r['res']) for r in rows] == [(1, 32), (1, 64), (2, 32), (2, 64)]
    for r in rows:
        assert list(r) == list(bench.table_columns(['vrwkv6']))
        assert r['v6_speed_ratio'] == pytest.approx(r['vrwkv6_img_s'] / r['vit_img_s'])
    assert png.stat().st_size > 0

    (fig, ) = figures
    axes = fig.axes
    assert len(axes) == 2 * 3  # (speed, memory, ratio) per batch size
    speed, memory, ratio = axes[3:6]  # batch 2
    colours = {ln.get_label(): ln.get_color() for ln in speed.lines}
    assert set(colours) == {'VRWKV-T', 'VRWKV6-T', 'DeiT-T (torchvision)'}
    assert len(set(colours.values())) == 3
    for ax in (speed, memory, ratio):
        assert ax.get_xscale() == 'log' and ax.get_yscale() == 'log'
        assert [t.get_text() for t in ax.get_xticklabels()] == ['32', '64']
        assert any(t.get_text() for t in ax.get_yticklabels())
    assert 'batch 2' in speed.get_title()
    parity = [ln for ln in ratio.lines if ln.get_label() == 'parity (1)']
    assert parity and list(parity[0].get_ydata()) == [1.0, 1.0]
    (line, ) = [ln for ln in ratio.lines if ln.get_label() == 'VRWKV-T / ViT img/s']
    assert list(line.get_ydata()) == pytest.approx([r['speed_ratio'] for r in rows[2:]])
    (line, ) = [ln for ln in ratio.lines if ln.get_label() == 'VRWKV6-T / ViT memory']
    if rows[2]['v6_mem_ratio'] is not None:  # (memory needs /proc/self/clear_refs)
        assert list(line.get_ydata()) == pytest.approx([r['v6_mem_ratio'] for r in rows[2:]])
    title = fig._suptitle.get_text()
    for part in ('cpu', 'float32', 'batch 1, 2', 'inference', 'eager'):
        assert part in title, title


def test_vrwkv6_must_be_registered(bench, monkeypatch):
    monkeypatch.setattr(backbones, 'vrwkv6_class', lambda: None)
    with pytest.raises(SystemExit):
        bench.parse_args(['--device', 'cpu', '--models', 'vrwkv6', 'vit'])
    with pytest.raises(ValueError, match='VRWKV6 is not registered'):
        bench.build_model('vrwkv6', 'tiny', 32, 'torchvision', depth=1)
