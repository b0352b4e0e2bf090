"""``tools/run_demo.py --epochs N`` shortens the LR schedule together with the run."""
import os.path as osp

import pytest
from mmengine.config import Config

from tool_helpers import ROOT, load_tool  # noqa: E402

run_demo = load_tool('run_demo')


def _cfg(task):
    return Config.fromfile(osp.join(ROOT, run_demo.DEMOS[task]['config']))


def test_cls_cosine_ends_with_the_run():
    cfg = _cfg('cls')
    assert cfg.train_cfg.max_epochs == 15
    run_demo.shorten_schedule(cfg, 4)
    warm, cos = cfg.param_scheduler
    assert cfg.train_cfg.max_epochs == 4 and cfg.train_cfg.val_interval == 4
    assert (warm.begin, warm.end) == (0, 1)  # warm-up unchanged
    assert (cos.type, cos.begin, cos.end) == ('CosineAnnealingLR', 1, 4)


def test_cls_one_epoch_keeps_only_the_warmup():
    cfg = _cfg('cls')
    changes = run_demo.shorten_schedule(cfg, 1)
    assert [s.type for s in cfg.param_scheduler] == ['LinearLR']
    assert any('CosineAnnealingLR removed' in c for c in changes)


def test_seg_poly_ends_with_the_run_iteration_warmup_untouched():
    cfg = _cfg('seg')
    run_demo.shorten_schedule(cfg, 3)
    warm, poly = cfg.param_scheduler
    assert (warm.by_epoch, warm.end) == (False, 100)
    assert (poly.type, poly.end, poly.by_epoch) == ('PolyLR', 3, True)


def test_det_milestones_scale():
    cfg = _cfg('det')
    old = cfg.train_cfg.max_epochs
    step = cfg.param_scheduler[1]
    milestone = step.milestones[0]
    assert 1 <= milestone < old
    run_demo.shorten_schedule(cfg, 4)
    step = cfg.param_scheduler[1]
    assert step.end == 4 and step.milestones == [round(milestone * 4 / old)]
    run_demo.shorten_schedule(cfg, 1)  # clamped to epoch 1: no LR step in a 1-epoch run
    assert cfg.param_scheduler[1].milestones == [1]


def test_shortened_config_dumps_and_reloads(tmp_path):
    cfg = _cfg('seg')
    run_demo.shorten_schedule(cfg, 2)
    path = str(tmp_path / 'seg_2e.py')
    cfg.dump(path)
    again = Config.fromfile(path)
    assert again.train_cfg.max_epochs == 2 and again.param_scheduler[1].end == 2
    assert again.model.backbone.type == 'mmvrwkv.VRWKVAdapter'


def test_bad_epochs():
    with pytest.raises(ValueError, match='epochs must be >= 1'):
        run_demo.shorten_schedule(_cfg('cls'), 0)


def test_cli_rejects_nonpositive_epochs(capsys):
    with pytest.raises(SystemExit):
        run_demo.main(['--epochs', '0'])
    assert '--epochs: must be an integer >= 1, got 0' in capsys.readouterr().err


def test_cli_rejects_non_integer_epochs(capsys):
    with pytest.raises(SystemExit):
        run_demo.main(['--epochs', 'ten'])
    assert '--epochs: must be an integer >= 1, got ten' in capsys.readouterr().err
