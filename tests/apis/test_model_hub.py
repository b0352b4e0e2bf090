"""mmpretrain's model hub knows our classifiers after ``import mmvrwkv``
(mmvrwkv/apis/model_hub.py): list_models, get_model, inference_model, and official weights
converted on the fly (downloads replaced by a local copy: no network in tests)."""
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')
import yaml  # noqa: E402
from mmpretrain import get_model, inference_model, list_models  # noqa: E402
from inference_helpers import official_layout, serve_official_download  # noqa: E402

import mmvrwkv  # noqa: E402,F401  (registers the models)
from mmvrwkv.apis import package_root, register_mmpretrain_models  # noqa: E402
from mmvrwkv.engine import CheckpointMismatchError  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')

NAME = 'vrwkv-tiny_8xb128_in1k'


def _metafile_models(rel):
    with open(osp.join(package_root(), rel)) as f:
        return {m['Name']: m for m in yaml.safe_load(f)['Models']}


def test_list_models_has_exactly_our_classifiers():
    with open(osp.join(package_root(), 'model-index.yml')) as f:
        metafiles = yaml.safe_load(f)['Import']
    classifiers = [name for rel in metafiles for name, m in _metafile_models(rel).items()
                   if {r['Task'] for r in m['Results']} == {'Image Classification'}]
    assert set(_metafile_models('configs/vrwkv/metafile.yml')) <= set(classifiers)
    assert list_models('*vrwkv*') == sorted(classifiers)
    # dense-prediction models would be built as mmpretrain models: not in its hub
    assert list_models('mask-rcnn_vrwkv*') == [] and list_models('upernet_vrwkv*') == []


def test_registration_is_idempotent():
    before = list_models('*vrwkv*')
    assert sorted(register_mmpretrain_models()) == before
    assert list_models('*vrwkv*') == before


def test_get_model_and_inference_model():
    model = get_model(NAME)
    assert type(model.backbone).__name__ == 'VRWKV' and model.backbone.embed_dims == 192
    assert osp.samefile(model._config.filename,
                        osp.join(package_root(), 'configs', 'vrwkv', NAME + '.py'))
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    result = inference_model(model, image)
    assert result['pred_scores'].shape == (1000,)
    assert result['pred_class'] == model._dataset_meta['classes'][result['pred_label']]


# ----------------------------------------------------------------------------- official weights

@pytest.fixture
def official_download(monkeypatch, tmp_path):
    """Serve a local file for the official URL of NAME; returns (url, path to write)."""
    url = _metafile_models('configs/vrwkv/metafile.yml')[NAME]['Weights']
    source = tmp_path / 'official.pth'
    serve_official_download(monkeypatch, tmp_path, url, str(source))
    return url, source


def test_pretrained_official_weights_are_converted(official_download):
    url, source = official_download
    official = official_layout(get_model(NAME))
    torch.save(official, source)
    model = get_model(NAME, pretrained=True)
    state = model.state_dict()
    assert torch.equal(state['backbone.pos_embed'], official['model']['pos_embed'])
    assert torch.equal(state['head.fc.weight'], official['model']['head.weight'])
    assert model._dataset_meta['classes'][3] == 'class 3'


def test_pretrained_official_weights_that_do_not_fit_are_refused(official_download):
    _, source = official_download
    official = official_layout(get_model(NAME))
    for key in [k for k in official['model'] if k.startswith('layers.11.')]:
        del official['model'][key]
    torch.save(official, source)
    with pytest.raises(CheckpointMismatchError, match=r'missing key.*layers\.11\.'):
        get_model(NAME, pretrained=True)


# ----------------------------------------------------------------------------- where configs are

def test_package_root_prefers_the_installed_mim_folder(tmp_path, monkeypatch):
    package = tmp_path / 'site' / 'mmvrwkv'
    (package / '.mim').mkdir(parents=True)
    monkeypatch.setattr(mmvrwkv, '__file__', str(package / '__init__.py'))
    with pytest.raises(FileNotFoundError, match='model-index.yml is neither in .*pip install'):
        package_root()
    (tmp_path / 'site' / 'model-index.yml').write_text('Import: []\n')  # a checkout
    assert package_root() == str(tmp_path / 'site')
    (package / '.mim' / 'model-index.yml').write_text('Import: []\n')  # an installed package
    assert package_root() == str(package / '.mim')
