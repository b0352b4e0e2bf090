"""Upstream callers with mmvrwkv imported (mmvrwkv/engine/checkpoint/upstream.py):

* ``DetInferencer(model=None, weights=CKPT)`` and ``MMSegInferencer(None, weights=CKPT)``
  would run the config text stored in the checkpoint: refused, with the config to pass;
  the same files create the marker through mmengine's own path (subprocess, no mmvrwkv);
* ``get_model(..., pretrained=PATH)``, the three inferencers and ``init_cfg`` ``Pretrained``
  refuse a checkpoint that does not fit an mmvrwkv model, listing the first mismatches,
  and load what fits when asked explicitly (``allow_partial_loading()``,
  ``allow_partial=True``); models without mmvrwkv modules keep upstream's behaviour.
"""
import os.path as osp
import warnings

import pytest
import torch
from torch import nn

pytest.importorskip('mmpretrain')
from payloads_callers import PAYLOADS  # noqa: E402
from inference_helpers import DET_CONFIG, SEG_CONFIG  # noqa: E402
from tool_helpers import CFG as CLS_CONFIG  # noqa: E402

import mmvrwkv  # noqa: E402,F401
from mmvrwkv.apis import allow_partial_loading  # noqa: E402
from mmvrwkv.engine import CheckpointError, CheckpointMismatchError  # noqa: E402
from mmvrwkv.engine.checkpoint import upstream  # noqa: E402
from mmvrwkv.models.backbones import VRWKV  # noqa: E402

upstream.install_upstream_patches()  # (import mmvrwkv does it; idempotent)
pytestmark = pytest.mark.usefixtures('one_thread')

NAME = 'vrwkv-tiny_8xb128_in1k'
PAYLOAD = {p.name: p for p in PAYLOADS}


@pytest.fixture(autouse=True)
def fresh_session(monkeypatch):
    """No default scope left by an earlier test (mmdet's and mmseg's inferencers set a
    process-wide one, in which mmpretrain's would then build)."""
    from collections import OrderedDict

    from mmengine.registry import DefaultScope
    monkeypatch.setattr(DefaultScope, '_instance_dict', OrderedDict())


# ----------------------------------------------------------------------------- model=None

@pytest.fixture(params=sorted(PAYLOAD))
def config_payload(request, tmp_path, real_checkpoint):
    payload = PAYLOAD[request.param]
    path, marker = tmp_path / f'{payload.name}.pth', tmp_path / 'MARKER'
    payload.build(path, marker, tmp_path / 'victim', real_checkpoint)
    return payload, path, marker


def test_upstream_runs_the_config_text_of_the_checkpoint(config_payload, tmp_path):
    """Without mmvrwkv (subprocess), mmengine's model=None path executes the text."""
    payload, path, marker = config_payload
    payload.unprotected(path, marker, tmp_path / 'victim')
    assert marker.exists(), f'{payload.name}: the config text did not run upstream'


def test_det_inferencer_without_model_is_refused(config_payload):
    from mmdet.apis import DetInferencer
    payload, path, marker = config_payload
    with pytest.raises(CheckpointError) as info:
        DetInferencer(model=None, weights=str(path), device='cpu')
    text = str(info.value)
    assert str(path) in text and payload.must_name in text, text
    assert "DetInferencer(model='CONFIG.py'" in text and 'run as code' in text, text
    assert not marker.exists()


def test_seg_inferencer_without_model_is_refused(config_payload):
    from mmseg.apis import MMSegInferencer
    payload, path, marker = config_payload
    with pytest.raises(CheckpointError) as info:
        MMSegInferencer(None, weights=str(path), device='cpu')
    text = str(info.value)
    assert str(path) in text and "MMSegInferencer(model='CONFIG.py'" in text, text
    assert not marker.exists()


def test_init_model_with_an_empty_config_is_refused(config_payload):
    """Direct calls of BaseInferencer._init_model with no config are refused as well."""
    from mmengine.config import ConfigDict
    from mmengine.infer.infer import BaseInferencer
    _, path, marker = config_payload
    with pytest.raises(CheckpointError, match='Pass the config'):
        BaseInferencer._init_model(object(), ConfigDict(), str(path))
    assert not marker.exists()


# ----------------------------------------------------------------------------- get_model

def _digits_classes(path):
    return torch.load(path, weights_only=False)['meta']['dataset_meta']['classes']


def test_get_model_refuses_the_digits_checkpoint(real_checkpoint):
    from mmpretrain import get_model
    with pytest.raises(CheckpointMismatchError) as info:
        get_model(NAME, pretrained=real_checkpoint)
    text = str(info.value)
    assert real_checkpoint in text, text
    assert 'missing key(s)' in text and 'backbone.layers.2.' in text, text
    assert 'head.fc.weight [10, 192] vs model [1000, 192]' in text, text
    assert 'backbone.patch_embed.projection.weight [192, 3, 2, 2]' in text, text
    assert 'allow_partial_loading' in text and 'allow_partial=True' in text, text


def test_get_model_loads_what_fits_when_asked(real_checkpoint):
    """Upstream's behaviour, explicitly: the head and 10 of 12 blocks stay at their init,
    and the 10 class names of the checkpoint meet a 1000-way head (the IndexError later)."""
    from mmpretrain import get_model
    trained = torch.load(real_checkpoint, weights_only=False)['state_dict']
    with allow_partial_loading():
        model = get_model(NAME, pretrained=real_checkpoint)
    state = model.state_dict()
    key = 'backbone.layers.1.att.key.weight'
    assert torch.equal(state[key], trained[key])
    assert len(model._dataset_meta['classes']) == 10 and model.head.num_classes == 1000
    assert not upstream.partial_loading_allowed()  # the context is left


def test_explicit_strict_stays_strict_inside_the_opt_in(real_checkpoint):
    from mmengine.runner import load_checkpoint
    from mmpretrain import get_model
    model = get_model(NAME)
    with allow_partial_loading(), pytest.raises(CheckpointMismatchError, match='head.fc'):
        load_checkpoint(model, real_checkpoint, strict=True)


def test_models_without_mmvrwkv_modules_load_as_upstream(tmp_path):
    from mmengine.runner import load_checkpoint
    model = nn.Sequential(nn.Linear(2, 3))
    torch.save({'state_dict': {'0.weight': torch.ones(3, 2), 'extra': torch.zeros(1)}},
               tmp_path / 'other.pth')
    load_checkpoint(model, str(tmp_path / 'other.pth'))  # warns, loads what fits
    assert torch.equal(model[0].weight, torch.ones(3, 2))
    assert not upstream.holds_mmvrwkv_module(model)


# ----------------------------------------------------------------------------- inferencers

def _mismatched(source, path):
    """``source`` with one weight dropped, one cut down and one key added."""
    ckpt = torch.load(source, weights_only=False)
    state = ckpt['state_dict']
    dropped = sorted(k for k in state if k.startswith('backbone.layers.1.'))[0]
    del state[dropped]
    cut = next(k for k, v in state.items() if k.startswith('backbone.') and v.dim() == 2)
    state[cut] = state[cut][:1]
    state['not.in.the.model'] = torch.zeros(1)
    torch.save(ckpt, path)
    return str(path), dropped, cut


def _assert_mismatch_listed(info, path, dropped, cut):
    text = str(info.value)
    assert path in text and dropped in text and cut in text and 'not.in.the.model' in text, \
        text


@pytest.fixture
def cls_case(demo_case):
    return demo_case('cls')


def test_classification_inferencer_refuses_a_mismatch(cls_case, tmp_path):
    from mmpretrain.apis import ImageClassificationInferencer
    path, dropped, cut = _mismatched(cls_case.checkpoint, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointMismatchError) as info:
        ImageClassificationInferencer(CLS_CONFIG, pretrained=path, device='cpu')
    _assert_mismatch_listed(info, path, dropped, cut)
    with allow_partial_loading():
        ImageClassificationInferencer(CLS_CONFIG, pretrained=path, device='cpu')
    ImageClassificationInferencer(CLS_CONFIG, pretrained=cls_case.checkpoint, device='cpu')


def test_det_inferencer_refuses_a_mismatch(demo_case, tmp_path):
    from mmdet.apis import DetInferencer
    case = demo_case('det')
    path, dropped, cut = _mismatched(case.checkpoint, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointMismatchError) as info:
        DetInferencer(DET_CONFIG, weights=path, device='cpu', show_progress=False)
    _assert_mismatch_listed(info, path, dropped, cut)
    DetInferencer(DET_CONFIG, weights=case.checkpoint, device='cpu', show_progress=False)


def test_seg_inferencer_refuses_a_mismatch(demo_case, tmp_path):
    from mmseg.apis import MMSegInferencer
    case = demo_case('seg')
    path, dropped, cut = _mismatched(case.checkpoint, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointMismatchError) as info:
        MMSegInferencer(SEG_CONFIG, weights=path, device='cpu')
    _assert_mismatch_listed(info, path, dropped, cut)
    with allow_partial_loading():
        MMSegInferencer(SEG_CONFIG, weights=path, device='cpu')


def test_init_detector_and_init_model_refuse_a_mismatch(demo_case, tmp_path):
    """The functions the README names for Mask R-CNN / UperNet (mmengine's load_checkpoint)."""
    from mmdet.apis import init_detector
    from mmseg.apis import init_model
    for task, init in (('det', init_detector), ('seg', init_model)):
        path, dropped, cut = _mismatched(demo_case(task).checkpoint, tmp_path / f'{task}.pth')
        with pytest.raises(CheckpointMismatchError) as info:
            init(DET_CONFIG if task == 'det' else SEG_CONFIG, path, device='cpu')
        _assert_mismatch_listed(info, path, dropped, cut)


def test_modules_imported_before_the_install_are_rebound():
    """A module that took mmengine's load_checkpoint by name before ``import mmvrwkv``."""
    import sys
    import types
    original = object()
    module = types.ModuleType('_d2_early_importer')
    module.load_checkpoint = original
    sys.modules[module.__name__] = module
    try:
        upstream._rebind_everywhere('load_checkpoint', original, len)
    finally:
        del sys.modules[module.__name__]
    assert module.load_checkpoint is len


# ----------------------------------------------------------------------------- init_cfg

def _backbone_checkpoint(path, depth=2, embed_dims=16):
    torch.manual_seed(0)
    src = VRWKV(depth=depth, embed_dims=embed_dims)
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.state_dict().items()},
                'meta': {}}, path)
    return src


def _pretrained(path, **extra):
    return dict(type='Pretrained', checkpoint=str(path), prefix='backbone.', **extra)


def test_pretrained_init_fits_and_is_strict(tmp_path):
    path = tmp_path / 'cls.pth'
    src = _backbone_checkpoint(path, depth=3)
    exact = VRWKV(depth=3, embed_dims=16, init_cfg=_pretrained(path))
    exact.init_weights()
    assert torch.equal(exact.layers[2].att.key.weight, src.layers[2].att.key.weight)
    deeper = VRWKV(depth=4, embed_dims=16, init_cfg=_pretrained(path))
    with pytest.raises(CheckpointMismatchError) as info:
        deeper.init_weights()
    text = str(info.value)
    assert str(path) in text and "the keys under 'backbone.'" in text, text
    assert 'missing key(s)' in text and 'layers.3.' in text and 'allow_partial=True' in text


def test_pretrained_init_without_prefix_is_strict(tmp_path):
    path = tmp_path / 'raw.pth'
    torch.manual_seed(0)
    torch.save({'state_dict': VRWKV(depth=2, embed_dims=16).state_dict()}, path)
    wider = VRWKV(depth=2, embed_dims=32, init_cfg=dict(type='Pretrained',
                                                          checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match=r'shape mismatch.*\[1, 196, 16\]'):
        wider.init_weights()


def test_pretrained_init_partial_when_asked(tmp_path):
    path = tmp_path / 'cls.pth'
    src = _backbone_checkpoint(path, depth=2)
    deeper = VRWKV(depth=3, embed_dims=16, init_cfg=_pretrained(path, allow_partial=True))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        deeper.init_weights()
    assert torch.equal(deeper.layers[1].att.key.weight, src.layers[1].att.key.weight)


def test_pretrained_init_of_other_modules_is_upstream(tmp_path):
    """A module without mmvrwkv parts (e.g. mmdet's ResNet with torchvision weights, which
    have an unused fc) still loads what fits."""
    from mmengine.model import BaseModule

    class Plain(BaseModule):
        def __init__(self, init_cfg):
            super().__init__(init_cfg=init_cfg)
            self.conv = nn.Conv2d(3, 4, 1)

    torch.save({'conv.weight': torch.ones(4, 3, 1, 1), 'fc.weight': torch.zeros(2, 2)},
               tmp_path / 'tv.pth')
    plain = Plain(dict(type='Pretrained', checkpoint=str(tmp_path / 'tv.pth')))
    plain.init_weights()
    assert torch.equal(plain.conv.weight, torch.ones(4, 3, 1, 1))


def test_install_is_idempotent():
    from mmengine.runner import load_checkpoint
    before = load_checkpoint
    upstream.install_upstream_patches()
    from mmengine.runner import load_checkpoint as after
    assert after is before and hasattr(after, '_mmvrwkv_original')
    assert not hasattr(after._mmvrwkv_original, '_mmvrwkv_original')
    assert osp.basename(upstream.__file__) == 'upstream.py'
