"""README "Inference": the demo command and every Python snippet of the section run as
written, on initialised checkpoints of the three demo configs (tests/inference_helpers.py).
Only the paths of files a test cannot have (the demo's trained checkpoints, the generated
images) are replaced, and the official-weights download is served from a local file."""
import os.path as osp
import re
import shlex
import shutil

import pytest
import yaml

pytest.importorskip('mmpretrain')

from inference_helpers import (CONFIGS, official_layout,  # noqa: E402
                               serve_official_download)
from tool_helpers import ROOT, load_tool  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread', 'fresh_session')


@pytest.fixture
def fresh_session(monkeypatch):
    """No default scope, as in a new Python session: each snippet is meant to run in one
    (mmdet's / mmseg's init functions set a process-wide default scope, mmpretrain's
    inferencer then builds in it)."""
    from collections import OrderedDict

    from mmengine.registry import DefaultScope
    monkeypatch.setattr(DefaultScope, '_instance_dict', OrderedDict())

HUB_MODEL = 'vrwkv-tiny_8xb128_in1k'
# README path -> (task, what replaces it)
IMAGES = {'data/digits/val/3/0060.png': 'cls', 'data/shapes/coco/val/000000.png': 'det',
          'data/shapes/ade/images/validation/shapes_val_000000.jpg': 'seg'}


def _section():
    with open(osp.join(ROOT, 'README.md')) as f:
        text = f.read()
    match = re.search(r'^## Inference\n(.*?)^## ', text, flags=re.S | re.M)
    assert match, 'README.md has no "## Inference" section'
    return match.group(1)


def _blocks(section, lang):
    return re.findall(rf'^```{lang}\n(.*?)^```', section, flags=re.S | re.M)


def _checkpoint_names():
    """README checkpoint path of each demo: the last epoch of its config (what
    tools/run_demo.py leaves)."""
    from mmengine.config import Config
    return {task: f'work_dirs/demo_{task}/epoch_{Config.fromfile(cfg).train_cfg.max_epochs}.pth'
            for task, cfg in CONFIGS.items()}


@pytest.fixture
def replacements(demo_case, tmp_path):
    """README text -> test file, for every path the section names."""
    cases = {task: demo_case(task) for task in CONFIGS}
    folder = tmp_path / 'threes'
    folder.mkdir()
    for image in cases['cls'].images:
        shutil.copy(image, folder)
    table = {name: cases[task].checkpoint for task, name in _checkpoint_names().items()}
    table.update({path: cases[task].images[0] for path, task in IMAGES.items()})
    table['data/digits/val/3 '] = f'{folder} '  # the demo command's folder argument
    table["'configs/"] = f"'{ROOT}/configs/"
    table[' configs/'] = f' {ROOT}/configs/'
    return table


def _substitute(text, table):
    for old, new in table.items():
        text = text.replace(old, new)
    return text


def test_section_names_the_demo_checkpoints_and_images():
    section = _section()
    for name in list(_checkpoint_names().values()) + list(IMAGES):
        assert name in section, name
    assert len(_blocks(section, 'python')) == 4 and len(_blocks(section, 'bash')) == 1


def test_demo_command(replacements, tmp_path, monkeypatch, capsys):
    (command,) = _blocks(_section(), 'bash')
    argv = shlex.split(_substitute(command.strip(), replacements))
    assert argv[:2] == ['.venv/bin/python', 'demo/image_demo.py']
    monkeypatch.chdir(tmp_path)
    results = load_tool('image_demo', folder='demo').main(argv[2:])
    assert len(results) == 2
    assert '[2/2]' in capsys.readouterr().out
    assert len(list((tmp_path / 'outputs' / 'digits' / 'vis').iterdir())) == 2


@pytest.mark.parametrize('index, task', [(0, 'cls'), (1, 'det'), (2, 'seg')])
def test_task_snippets(index, task, replacements, tmp_path, monkeypatch, capsys):
    snippet = _blocks(_section(), 'python')[index]
    assert _checkpoint_names()[task] in snippet
    monkeypatch.chdir(tmp_path)
    exec(compile(_substitute(snippet, replacements), f'README.md Inference [{index}]', 'exec'),
         {'__name__': '__readme__'})
    printed = capsys.readouterr().out.strip().splitlines()[-1]  # (after mmengine's log)
    if task == 'cls':  # a digit and its score; the picture under show_dir
        label, score = printed.split()
        assert label in [str(d) for d in range(10)] and 0 < float(score) <= 1
        assert [p.suffix for p in (tmp_path / 'outputs').iterdir()] == ['.png']
    elif task == 'det':  # labels, boxes, mask shape of the kept detections
        assert printed.endswith('128, 128])'), printed
    else:
        assert printed == 'torch.Size([1, 128, 128])'
        assert (tmp_path / 'outputs' / 'seg.png').is_file()


def test_model_hub_snippet(replacements, tmp_path, monkeypatch, capsys):
    """The official download is served from a local file in the official layout."""
    from mmpretrain import get_model
    with open(osp.join(ROOT, 'configs', 'vrwkv', 'metafile.yml')) as f:
        url = {m['Name']: m['Weights'] for m in yaml.safe_load(f)['Models']}[HUB_MODEL]
    import torch
    source = str(tmp_path / 'official.pth')
    official = official_layout(get_model(HUB_MODEL))
    torch.save(official, source)
    serve_official_download(monkeypatch, tmp_path, url, source)
    snippet = _blocks(_section(), 'python')[3]
    assert HUB_MODEL in snippet
    monkeypatch.chdir(tmp_path)
    exec(compile(_substitute(snippet, replacements), 'README.md Inference [3]', 'exec'),
         {'__name__': '__readme__'})
    lines = capsys.readouterr().out.strip().splitlines()
    assert HUB_MODEL in lines[0]
    assert lines[-1].startswith('class ')  # the class names of the (stand-in) download
