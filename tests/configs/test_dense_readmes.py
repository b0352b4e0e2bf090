"""configs/mask_rcnn/README.md and configs/upernet/README.md against what they describe.

* every results row names an existing config and carries the numbers and weight link of
  that model in the folder's metafile.yml (which test_configs_dense.py checks against the
  paper), so README, metafile and configs cannot drift apart;
* the documented way to prepare an ImageNet backbone -- converting an official
  classification checkpoint with tools/model_converters/vrwkv2mmvrwkv.py -- gives a file
  that the tiny Mask R-CNN (``init_cfg``) and UperNet (``pretrained``) recipes load.

Needs mmpretrain, mmdet and mmseg (skipped without them).
"""
import os.path as osp
import re

import pytest
import torch

pytest.importorskip('mmpretrain')
pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
import yaml  # noqa: E402

from test_configs_dense import _fake_cls_checkpoint, build, det_file, load, seg_file  # noqa: E402
from tool_helpers import ROOT, load_tool  # noqa: E402

HF = 'https://huggingface.co/OpenGVLab/Vision-RWKV/resolve/main/'
FOLDERS = {
    'mask_rcnn': dict(columns=('params', 'flops', 'box AP', 'mask AP'),
                      metrics={'box AP': 'Object Detection', 'mask AP': 'Instance Segmentation'}),
    'upernet': dict(columns=('params', 'flops', 'mIoU'), metrics={'mIoU': 'Semantic Segmentation'}),
}


def readme_rows(folder):
    """Results rows of the folder's README: (numbers by column, config file, weights URL)."""
    with open(osp.join(ROOT, 'configs', folder, 'README.md'), encoding='utf-8') as f:
        lines = [line for line in f if line.startswith('| VRWKV-')]
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        numbers = [float(c) for c in cells if re.fullmatch(r'\d+(\.\d+)?', c)]
        (config, ) = re.findall(r'\[config\]\(\./([^)]+)\)', line)
        (weights, ) = re.findall(r'\]\((https://[^)]+\.pth)\)', line)
        rows.append((dict(zip(FOLDERS[folder]['columns'], numbers)), config, weights))
    return rows


@pytest.mark.parametrize('folder', sorted(FOLDERS))
def test_readme_table_matches_metafile(folder):
    with open(osp.join(ROOT, 'configs', folder, 'metafile.yml')) as f:
        models = {m['Config']: m for m in yaml.safe_load(f)['Models']}
    rows = readme_rows(folder)
    assert len(rows) == len(models) == 4
    for numbers, config, weights in rows:
        assert len(numbers) == len(FOLDERS[folder]['columns']), (folder, config)
        model = models[f'configs/{folder}/{config}']  # the config exists (metafile test)
        assert weights == model['Weights'] and weights.startswith(HF)
        meta = model['Metadata']
        assert round(numbers['params'] * 1e6) == meta['Backbone Parameters'], config
        assert round(numbers['flops'] * 1e9) == meta['Backbone FLOPs'], config
        results = {r['Task']: r['Metrics'] for r in model['Results']}
        for column, task in FOLDERS[folder]['metrics'].items():
            assert results[task][column] == numbers[column], (config, column)


@pytest.fixture(scope='module')
def converted_tiny(tmp_path_factory):
    """An official-layout VRWKV-T classification checkpoint, converted as the READMEs say."""
    folder = tmp_path_factory.mktemp('converted')
    src, dst = str(folder / 'vrwkv_t_in1k_224.pth'), str(folder / 'converted.pth')
    official = _fake_cls_checkpoint(src)
    converter = load_tool('model_converters/vrwkv2mmvrwkv')
    converter.run(converter.parse_args([src, dst, '--arch', 'tiny']))
    return official, dst


@pytest.mark.parametrize('kind', ['det', 'seg'])
def test_converted_backbone_loads_into_the_recipe(kind, converted_tiny, one_thread):
    official, ckpt = converted_tiny
    bn = dict(norm_cfg=dict(type='BN'))
    if kind == 'det':
        model = build(load(det_file('tiny')), meta=False,
                      backbone=dict(init_cfg=dict(checkpoint=ckpt), **bn))
    else:
        model = build(load(seg_file('tiny')), meta=False, pretrained=ckpt, backbone=bn,
                      decode_head=bn, auxiliary_head=bn)
    key = 'layers.11.att.key.weight'
    assert not torch.equal(model.backbone.state_dict()[key], official['backbone.' + key])
    model.init_weights()
    got = model.backbone.state_dict()
    for key in (key, 'patch_embed.projection.weight', 'pos_embed'):
        assert torch.equal(got[key], official['backbone.' + key]), key
