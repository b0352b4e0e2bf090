"""mmvrwkv.datasets.shapes and its command line tools/dataset_converters/make_shapes_dataset.py:
the synthetic shapes scenes in COCO instance format and ADE20K layout.

* mmdet's CocoDataset and mmseg's BaseSegDataset (as configured by the demo configs) load the
  output unchanged, with the right numbers of images, instances and classes;
* COCO masks (RLE), boxes and areas describe exactly the visible pixels, and agree with the
  ADE20K label maps; ground truth scored against itself gives AP 1.0;
* deterministic for a seed, idempotent, refuses to overwrite folders it did not write.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

import mmvrwkv.datasets.shapes as msd
from tool_helpers import ROOT

SCRIPT = osp.join(ROOT, 'tools', 'dataset_converters', 'make_shapes_dataset.py')

N_TRAIN, N_VAL, SIZE = 6, 3, 64


@pytest.fixture(scope='module')
def out(tmp_path_factory):
    d = str(tmp_path_factory.mktemp('shapes'))
    msd.generate(d, num_train=N_TRAIN, num_val=N_VAL, size=SIZE, seed=3, quiet=True)
    return d


def _coco(out, split):
    with open(osp.join(out, 'coco', 'annotations', f'instances_{split}.json')) as f:
        return json.load(f)


def _files(d):
    return sorted(osp.relpath(osp.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)


def test_layout_and_masks_match_labels(out):
    import cv2
    from pycocotools import mask as mask_utils
    assert len(_files(osp.join(out, 'coco'))) == 2 + N_TRAIN + N_VAL
    for split, ade_split, n in (('train', 'training', N_TRAIN), ('val', 'validation', N_VAL)):
        coco = _coco(out, split)
        assert [c['name'] for c in coco['categories']] == list(msd.CLASSES)
        assert [c['id'] for c in coco['categories']] == [1, 2, 3]
        assert len(coco['images']) == n and coco['annotations']
        assert len({a['id'] for a in coco['annotations']}) == len(coco['annotations'])
        for img in coco['images']:
            stem = f'shapes_{split}_{img["id"] - 1:06d}'
            label = cv2.imread(osp.join(out, 'ade', 'annotations', ade_split, stem + '.png'),
                               cv2.IMREAD_UNCHANGED)
            pic = cv2.imread(osp.join(out, 'ade', 'images', ade_split, stem + '.jpg'))
            png = cv2.imread(osp.join(out, 'coco', split, img['file_name']))
            assert label.shape == (SIZE, SIZE) and label.dtype == np.uint8
            assert pic.shape == png.shape == (SIZE, SIZE, 3)
            assert np.abs(pic.astype(int) - png.astype(int)).mean() < 6  # same scene (JPEG)
            union = np.zeros((SIZE, SIZE), bool)
            for a in (a for a in coco['annotations'] if a['image_id'] == img['id']):
                m = mask_utils.decode(a['segmentation']).astype(bool)
                assert a['iscrowd'] == 0 and a['area'] == m.sum() >= 40
                ys, xs = np.nonzero(m)
                assert a['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                     ys.max() - ys.min() + 1]
                # visible pixels only: no overlap between instances, label map agrees
                assert not (union & m).any()
                union |= m
                assert (label[m] == a['category_id'] + 1).all()
            assert (label[~union] == 1).all()  # background class; 0 (unlabeled) unused


def test_ground_truth_scores_ap_one(out):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(osp.join(out, 'coco', 'annotations', 'instances_val.json'))
        dets = [dict(image_id=a['image_id'], category_id=a['category_id'], score=1.0,
                     bbox=a['bbox'], segmentation=a['segmentation'])
                for a in gt.dataset['annotations']]
        for iou_type in ('bbox', 'segm'):
            ev = COCOeval(gt, gt.loadRes([dict(d) for d in dets]), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            assert ev.stats[0] == pytest.approx(1.0), iou_type


def test_mmdet_coco_dataset_loads(out):
    pytest.importorskip('mmdet')
    from mmengine.registry import DefaultScope
    import mmdet.datasets  # noqa: F401
    from mmdet.registry import DATASETS
    coco = _coco(out, 'train')
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = DATASETS.build(dict(
            type='CocoDataset', data_root=osp.join(out, 'coco'),
            ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
            metainfo=dict(classes=msd.CLASSES), test_mode=False,
            filter_cfg=dict(filter_empty_gt=True, min_size=4),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                      dict(type='PackDetInputs')]))
    assert len(ds) == N_TRAIN and ds.metainfo['classes'] == msd.CLASSES
    total = 0
    for i in range(len(ds)):
        gt = ds[i]['data_samples'].gt_instances
        total += len(gt)
        assert gt.masks.masks.shape[1:] == (SIZE, SIZE)
        assert set(gt.labels.tolist()) <= {0, 1, 2}
        assert (gt.masks.masks.sum((1, 2)) >= 40).all()
    assert total == len(coco['annotations'])


@pytest.mark.parametrize('ignore_background', [False, True])
def test_mmseg_dataset_loads(tmp_path, ignore_background):
    pytest.importorskip('mmseg')
    from mmengine.registry import DefaultScope
    import mmseg.datasets  # noqa: F401
    from mmseg.registry import DATASETS
    d = str(tmp_path / 's')
    meta = msd.generate(d, num_train=3, num_val=2, size=SIZE, seed=0, quiet=True,
                        ignore_background=ignore_background)
    classes = msd.seg_classes(ignore_background)
    assert tuple(meta['seg_classes']) == classes
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = DATASETS.build(dict(
            type='BaseSegDataset', data_root=osp.join(d, 'ade'), metainfo=dict(classes=classes),
            img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
            data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
            pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                      dict(type='PackSegInputs')]))
    assert len(ds) == 2 and ds.metainfo['classes'] == classes
    seen = set()
    for i in range(len(ds)):
        seg = ds[i]['data_samples'].gt_sem_seg.data
        assert tuple(seg.shape) == (1, SIZE, SIZE)
        seen |= set(np.unique(seg.numpy()).tolist())
    valid = set(range(len(classes)))
    assert seen <= valid | {255}
    if ignore_background:
        assert 255 in seen  # background ignored
    else:
        assert 0 in seen and 255 not in seen  # background is class 0 after reduction


def test_deterministic_and_idempotent(tmp_path, out):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    msd.generate(a, num_train=4, num_val=2, size=SIZE, seed=3, quiet=True)
    # a different number of images does not change the others (per-image seeds)
    msd.generate(b, num_train=2, num_val=3, size=SIZE, seed=3, quiet=True)
    for rel in ('coco/train/000001.png', 'coco/val/000001.png',
                'ade/images/training/shapes_train_000001.jpg',
                'ade/annotations/validation/shapes_val_000001.png'):
        with open(osp.join(a, rel), 'rb') as f1, open(osp.join(out, rel), 'rb') as f2:
            assert f1.read() == f2.read(), rel
        with open(osp.join(a, rel), 'rb') as f1, open(osp.join(b, rel), 'rb') as f2:
            assert f1.read() == f2.read(), rel
    # another seed: other scenes
    c = str(tmp_path / 'c')
    msd.generate(c, num_train=1, num_val=0, size=SIZE, seed=4, quiet=True)
    with open(osp.join(a, 'coco/train/000000.png'), 'rb') as f1, \
            open(osp.join(c, 'coco/train/000000.png'), 'rb') as f2:
        assert f1.read() != f2.read()
    # same arguments again: nothing rewritten (through the command line)
    stamp = {p: os.stat(osp.join(a, p)).st_mtime_ns for p in _files(a)}
    res = subprocess.run([sys.executable, SCRIPT, a, '--num-train', '4', '--num-val', '2',
                          '--size', str(SIZE), '--seed', '3'], capture_output=True, text=True)
    assert res.returncode == 0 and 'nothing to do' in res.stdout, res.stderr
    assert {p: os.stat(osp.join(a, p)).st_mtime_ns for p in _files(a)} == stamp
    # other arguments: regenerated, stale files gone
    msd.generate(a, num_train=2, num_val=1, size=SIZE, seed=3, quiet=True)
    assert len(_files(osp.join(a, 'ade', 'images', 'training'))) == 2
    assert len(_files(osp.join(a, 'coco', 'val'))) == 1
    # a deleted file is noticed and rewritten
    os.remove(osp.join(a, 'coco', 'train', '000000.png'))
    msd.generate(a, num_train=2, num_val=1, size=SIZE, seed=3, quiet=True)
    assert osp.isfile(osp.join(a, 'coco', 'train', '000000.png'))


def test_refuses_foreign_folder(tmp_path):
    foreign = tmp_path / 'data' / 'coco'
    foreign.mkdir(parents=True)
    (foreign / 'keep.txt').write_text('real COCO here')
    res = subprocess.run([sys.executable, SCRIPT, str(tmp_path / 'data'), '--num-train', '1',
                          '--num-val', '0', '--size', '32'], capture_output=True, text=True)
    assert res.returncode == 1 and 'not written by this tool' in res.stderr
    assert (foreign / 'keep.txt').read_text() == 'real COCO here'
    with pytest.raises(ValueError):
        msd.generate(str(tmp_path / 'x'), size=16)
