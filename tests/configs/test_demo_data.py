"""Demo configs from any directory: ``demo_data`` in configs/demo and
:mod:`mmvrwkv.datasets.demo_data`, called by tools/train.py and tools/test.py.

* every demo config names a converter that exists and an ``out`` folder holding all its
  loaders' data roots (else the check would silently never fire);
* missing digits are written relative to the current directory, a second call does nothing;
* loaders pointed elsewhere (``--cfg-options``) generate nothing;
* a distributed run with missing data raises, naming the one command that makes it;
* ``tools/train.py`` (what ``mim train mmvrwkv <demo config>.py`` runs) trains the digits
  demo from an empty directory, where it used to fail with
  ``FileNotFoundError: data/digits/meta/train.txt``.

Needs mmpretrain, mmdet and mmseg (the demo configs inherit their bases).
"""
import glob
import os
import os.path as osp
import sys

import pytest

pytest.importorskip('mmpretrain')
pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
from mmengine.config import Config  # noqa: E402

from mmvrwkv.datasets import demo_data  # noqa: E402
from tool_helpers import CFG, ROOT  # noqa: E402

DEMOS = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', '*.py')))
SHAPES_DEMOS = [p for p in DEMOS if '_shapes' in osp.basename(p)]


@pytest.mark.parametrize('path', DEMOS, ids=osp.basename)
def test_every_demo_config_says_how_its_data_is_made(path):
    cfg = Config.fromfile(path)
    spec = cfg.demo_data
    cmd = demo_data.demo_data_command(spec)
    assert cmd[0] == sys.executable and osp.isfile(cmd[1]) and cmd[2] == spec.out
    roots = demo_data._data_roots(cfg)
    assert len(roots) == 3  # train / val / test
    assert all(demo_data._inside(r, osp.abspath(spec.out)) for r in roots), (roots, spec)


def test_missing_digits_are_written_where_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(CFG)
    assert demo_data.ensure_demo_data(cfg) == str(tmp_path / 'data' / 'digits')
    with open(tmp_path / 'data' / 'digits' / 'meta' / 'train.txt') as f:
        assert sum(1 for _ in f) == 1438
    mtime = os.path.getmtime(tmp_path / 'data' / 'digits' / 'meta' / 'val.txt')
    assert demo_data.ensure_demo_data(cfg) is None  # complete: nothing to do
    assert os.path.getmtime(tmp_path / 'data' / 'digits' / 'meta' / 'val.txt') == mtime


@pytest.mark.parametrize('path', SHAPES_DEMOS, ids=osp.basename)
def test_distributed_run_names_the_command(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(path)
    with pytest.raises(FileNotFoundError) as err:
        demo_data.ensure_demo_data(cfg, distributed=True)
    converter = osp.join(ROOT, 'tools', 'dataset_converters', 'make_shapes_dataset.py')
    assert f'{sys.executable} {converter} data/shapes' in str(err.value)
    assert not (tmp_path / 'data').exists()


def test_loaders_elsewhere_generate_nothing(tmp_path, monkeypatch, digits):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(CFG)
    cfg.merge_from_dict({f'{s}.dataset.data_root': digits
                         for s in ('train_dataloader', 'val_dataloader', 'test_dataloader')})
    assert demo_data.ensure_demo_data(cfg) is None
    assert demo_data.ensure_demo_data(cfg, distributed=True) is None
    assert not (tmp_path / 'data').exists()


def test_bad_spec_is_named(tmp_path):
    cfg = Config(dict(demo_data=dict(converter='../train.py', out='x', done='y'),
                      train_dataloader=dict(dataset=dict(data_root='x'))))
    with pytest.raises(ValueError, match='demo_data.converter must be the file name'):
        demo_data.ensure_demo_data(cfg)
    cfg.demo_data.pop('done')
    with pytest.raises(ValueError, match="demo_data needs 'done'"):
        demo_data.ensure_demo_data(cfg)


def test_converter_exit_is_an_error(tmp_path, monkeypatch, capsys):
    """A converter that exits (argparse, sys.exit) inside the training process becomes a
    RuntimeError naming the status and the command, not a silent exit of the run."""
    def exits(argv):
        raise SystemExit(2)
    monkeypatch.setitem(demo_data.CONVERTERS, 'make_digits_imagenet.py', exits)
    out = str(tmp_path / 'data' / 'digits')
    cfg = Config(dict(demo_data=dict(converter='make_digits_imagenet.py', out=out,
                                     done='meta/val.txt'),
                      train_dataloader=dict(dataset=dict(data_root=out))))
    with pytest.raises(RuntimeError, match=r'exit status 2\): .*make_digits_imagenet.py'):
        demo_data.ensure_demo_data(cfg)
    assert 'the same as running' in capsys.readouterr().out


def test_train_py_from_an_empty_directory(tmp_path, monkeypatch, trainer, clean_env,
                                          one_thread):
    """tools/train.py with the demo config as it is, data roots untouched, started in an
    empty directory: it writes data/digits there and trains (2 blocks, 16 images)."""
    monkeypatch.chdir(tmp_path)
    opts = {'model.backbone.depth': 2, 'train_cfg.max_epochs': 1,
            'train_cfg.val_interval': 1000, 'train_dataloader.batch_size': 16}
    for split in ('train', 'val', 'test'):
        opts.update({f'{split}_dataloader.dataset.indices': 16,
                     f'{split}_dataloader.num_workers': 0,
                     f'{split}_dataloader.persistent_workers': False})
    trainer.main([CFG, '--work-dir', str(tmp_path / 'work'), '--cfg-options']
                 + [f'{k}={v}' for k, v in opts.items()])
    assert (tmp_path / 'data' / 'digits' / 'meta' / 'val.txt').is_file()
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
