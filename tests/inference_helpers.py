"""Checkpoints and images of the three demo configs for the inference tests (image demo,
tools/test.py --out / --show-dir, the README's Inference snippets).

The checkpoints hold the initialised model of the unchanged demo config with the dataset's
class names in ``meta['dataset_meta']``, as a Runner saves them; what these tests check is
the path from checkpoint to prediction, not the accuracy (tools/run_demo.py trains)."""
import os
import os.path as osp
from types import SimpleNamespace

import torch

from tool_helpers import CFG as CLS_CONFIG, ROOT

DET_CONFIG = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_vrwkv-tiny-adapter_fpn_shapes.py')
SEG_CONFIG = osp.join(ROOT, 'configs', 'demo', 'upernet_vrwkv-tiny-adapter_shapes.py')
CONFIGS = {'cls': CLS_CONFIG, 'det': DET_CONFIG, 'seg': SEG_CONFIG}


def make_shapes(out: str) -> str:
    """The shapes dataset (2 train / 2 val images, 128 px) under ``out``."""
    from mmvrwkv.datasets.shapes import generate
    generate(out, num_train=2, num_val=2, size=128, seed=0, quiet=True)
    return out


def save_initialised_checkpoint(config: str, path: str) -> str:
    """Build the model of ``config`` in its scope, initialise it, save it with the class
    names; returns ``path``."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    import mmvrwkv  # noqa: F401  (registers our modules)
    cfg = Config.fromfile(config)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):  # (no global scope left)
        model = MODELS.build(cfg.model)
    model.init_weights()
    dataset = cfg.test_dataloader.dataset
    classes = dataset.get('metainfo', {}).get('classes') or dataset.get('classes')
    meta = dict(dataset_meta=dict(cfg.get('metainfo') or dict(classes=tuple(classes))))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


def _files(folder: str) -> list:
    return sorted(osp.join(folder, name) for name in os.listdir(folder))


def _first(folder: str) -> str:
    return _files(folder)[0]


def demo_case(task: str, work: str, digits: str, shapes: str) -> SimpleNamespace:
    """Config, checkpoint, test images and ``--cfg-options`` (data roots) of one demo."""
    config = CONFIGS[task]
    checkpoint = save_initialised_checkpoint(config, osp.join(work, f'{task}.pth'))
    if task == 'cls':
        images = [_first(osp.join(digits, 'val', label)) for label in ('0', '1')]
        options = {'test_dataloader.dataset.data_root': digits,
                   'test_dataloader.dataset.indices': 4,
                   'test_dataloader.num_workers': 0,
                   'test_dataloader.persistent_workers': False}
    elif task == 'det':
        root = osp.join(shapes, 'coco') + '/'
        images = _files(osp.join(root, 'val'))
        options = {'test_dataloader.dataset.data_root': root,
                   'test_evaluator.ann_file': root + 'annotations/instances_val.json'}
    else:
        root = osp.join(shapes, 'ade')
        images = _files(osp.join(root, 'images', 'validation'))
        options = {'test_dataloader.dataset.data_root': root}
    return SimpleNamespace(task=task, config=config, checkpoint=checkpoint, images=images,
                           options=options)


def official_layout(model) -> dict:
    """Random weights of an mmpretrain classifier in the layout of the official
    InternImage-style files: under 'model', bare backbone keys and a bare linear head (the
    converter's mapping must undo this), class names as mmcls 0.x's ``meta['CLASSES']``."""
    weights = {}
    for key, value in model.state_dict().items():
        key = key.replace('backbone.', '', 1).replace('head.fc.', 'head.', 1)
        weights[key] = torch.randn_like(value) if value.is_floating_point() else value
    classes = [f'class {i}' for i in range(model.head.num_classes)]
    return {'model': weights, 'meta': {'CLASSES': classes}}


def serve_official_download(monkeypatch, tmp_path, url: str, source: str) -> None:
    """Make mmvrwkv's http loader 'download' ``url`` by copying the local file ``source``
    (into a hub cache under ``tmp_path``); tests have no network."""
    import shutil

    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))

    def fake_download(src, dst, progress=True):
        assert src == url, src
        shutil.copyfile(source, dst)

    monkeypatch.setattr(torch.hub, 'download_url_to_file', fake_download)


def runner_checkpoint_like(real_checkpoint: str, weights: str, config: str, out: str) -> str:
    """``real_checkpoint`` (a real Runner checkpoint: meta, message hub, optimizer and
    scheduler state) with the weights and ``dataset_meta`` of the checkpoint ``weights`` and
    the config text of ``config`` in ``meta['cfg']`` and ``message_hub.runtime_info['cfg']``
    (where mmengine writes it), ``runtime_info['last_ckpt']`` = ``out`` (as for a checkpoint
    in its own work dir) and a fresh digest; written to ``out``, which is returned. For
    attacks through the det / seg inferencers, which need their own model's weights in a
    checkpoint of the Runner's layout."""
    from mmengine.config import Config

    from mmvrwkv.engine.checkpoint import add_digest
    ckpt = torch.load(real_checkpoint, map_location='cpu', weights_only=False)  # our own file
    own = torch.load(weights, map_location='cpu', weights_only=False)
    text = Config.fromfile(config).pretty_text
    ckpt['state_dict'] = own['state_dict']
    info = ckpt['message_hub']['runtime_info']
    for record in (ckpt['meta'], info):
        record['cfg'] = text
        record['dataset_meta'] = own['meta']['dataset_meta']
    info['last_ckpt'] = out
    add_digest(ckpt)
    torch.save(ckpt, out)
    return out
