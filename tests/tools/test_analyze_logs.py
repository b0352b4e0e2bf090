"""Training curves, as README "Analysis tools" documents them: mmpretrain's
tools/analysis_tools/analyze_logs.py (shipped in mmpretrain's .mim folder, run by
`mim run mmpretrain analyze_logs ...`) on the vis_data/scalars.json of a tiny training run of
the digits demo config (2 blocks, 16 images, 2 epochs, validation after each)."""
import glob
import os.path as osp
import runpy
import sys

import pytest

pytest.importorskip('mmpretrain')
pytest.importorskip('matplotlib')

from tool_helpers import CFG, tiny_options  # noqa: E402


def analyze_logs_script():
    import mmpretrain
    path = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'analysis_tools',
                    'analyze_logs.py')
    if not osp.isfile(path):
        pytest.skip(f'mmpretrain without its .mim tools ({path})')
    return path


def run_script(path, argv, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [path] + argv)
    runpy.run_path(path, run_name='__main__')


def test_analyze_logs_on_our_scalars_json(trainer, digits, clean_env, one_thread, tmp_path,
                                          monkeypatch, capsys):
    import matplotlib
    matplotlib.use('Agg')
    work = str(tmp_path / 'work')
    trainer.main([CFG, '--work-dir', work] + tiny_options(
        digits, epochs=2, **{'train_cfg.val_interval': 1}))
    (scalars, ) = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    script = analyze_logs_script()
    png = str(tmp_path / 'curves.png')
    capsys.readouterr()
    run_script(script, ['plot_curve', scalars, '--keys', 'loss', 'accuracy/top1', '--out', png],
               monkeypatch)
    out = capsys.readouterr().out
    assert 'metric is loss' in out and 'metric is accuracy/top1' in out
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    run_script(script, ['cal_train_time', scalars], monkeypatch)
    out = capsys.readouterr().out
    assert 'average iter time' in out and 'slowest epoch' in out
