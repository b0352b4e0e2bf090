"""Generate the synthetic "shapes" scene dataset of the detection and segmentation demos.

Each image shows 1-5 filled shapes -- circles, rectangles (squares included, rotated) and
triangles -- of varied size and colour, possibly overlapping, on a textured background
(gradients, stripes, checkerboards, smooth noise) plus pixel noise. The same scenes are
written in two real dataset formats, so the demo configs use the upstream dataset classes
unchanged::

    OUT/coco/annotations/instances_train.json    COCO instances (mmdet ``CocoDataset``)
    OUT/coco/annotations/instances_val.json
    OUT/coco/train/000000.png ...                 images (PNG, lossless)
    OUT/coco/val/000000.png ...
    OUT/ade/images/training/shapes_train_000000.jpg ...      ADE20K layout (mmseg
    OUT/ade/images/validation/shapes_val_000000.jpg ...      ``BaseSegDataset`` with
    OUT/ade/annotations/training/shapes_train_000000.png ... ``reduce_zero_label=True``,
    OUT/ade/annotations/validation/shapes_val_000000.png ... like ``ADE20KDataset``)
    OUT/shapes_dataset.json                       parameters, classes, counts (written last)

COCO: categories ``circle`` (id 1), ``rectangle`` (2), ``triangle`` (3). Every instance's
``segmentation`` is a compressed RLE of its **visible** pixels (shapes drawn later occlude
earlier ones; the RLE, ``area`` and ``bbox`` are computed from what is left visible, so masks
match the image exactly, holes included -- which polygons could not represent). Scenes are
built so that every instance keeps at least half of its area and ``--min-visible`` pixels
visible. ``iscrowd`` is 0 throughout.

ADE20K: label PNGs (uint8, one channel) follow ADE20K's convention that 0 is "unlabeled" and
is dropped by ``reduce_zero_label=True`` (it becomes 255 = ignored). By default the textured
background is a class of its own (label 1, like ADE20K's stuff classes wall/sky/floor) and the
shapes are 2, 3, 4, so after reduction the seg classes are
``('background', 'circle', 'rectangle', 'triangle')``: the model must find the shapes, not
only tell them apart. With ``--ignore-background`` the background is written as 0 (ignored),
the shapes as 1, 2, 3 and the classes are ``('circle', 'rectangle', 'triangle')``.
Images are JPEG (quality 95, no chroma subsampling) as in ADE20K; the COCO copies are PNG.

Deterministic: image i of a split depends only on (seed, split, i, size), not on the number
of images. Idempotent: a second run with the same arguments finds ``OUT/shapes_dataset.json``
and the files and does nothing; with other arguments it deletes ``OUT/coco`` and ``OUT/ade``
(only when ``OUT/shapes_dataset.json`` shows it made them) and writes them again.

Command line (:func:`main`)::

    python tools/dataset_converters/make_shapes_dataset.py data/shapes
    python tools/dataset_converters/make_shapes_dataset.py /tmp/s --num-train 8 --num-val 4 \\
        --size 64 --seed 1
"""
import argparse
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

CLASSES = ('circle', 'rectangle', 'triangle')
#: Bumped whenever the drawing changes, so old outputs are regenerated.
VERSION = 1
SPLITS = (('train', 'training', 0), ('val', 'validation', 1))
META_FILE = 'shapes_dataset.json'


def seg_classes(ignore_background: bool = False) -> Tuple[str, ...]:
    """Class names of the segmentation labels after ``reduce_zero_label``."""
    return CLASSES if ignore_background else ('background', ) + CLASSES


# ----------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured float32 ``[size, size, 3]`` background in [0, 255]."""
    c1 = rng.uniform(0, 255, 3)
    c2 = np.clip(c1 + rng.uniform(-110, 110, 3), 0, 255)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    kind = rng.integers(4)
    if kind == 0:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 1:  # stripes
        a = rng.uniform(0, np.pi)
        freq = rng.uniform(2, 10)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(a) * xx + np.sin(a) * yy)
                               + rng.uniform(0, 2 * np.pi))
    elif kind == 2:  # checkerboard
        cells = int(rng.integers(3, 12))
        t = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(np.float32)
    else:  # smooth random blobs (bilinear up-sampling of a coarse grid)
        import cv2
        g = int(rng.integers(3, 7))
        coarse = rng.uniform(0, 1, (g, g)).astype(np.float32)
        t = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        t = np.clip(t, 0, 1)
    img = c1[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]
    return img.astype(np.float32)


def _shape_polygon(rng: np.random.Generator, cls: int, cx: float, cy: float,
                   r: float) -> np.ndarray:
    """Vertices (float, ``[N, 2]`` x/y) of a rectangle or triangle of radius ``r``."""
    if cls == 1:  # rectangle (square with probability 1/3), rotated
        if rng.uniform() < 1 / 3:
            hw = hh = r / np.sqrt(2)
        else:
            aspect = rng.uniform(0.45, 0.85)
            hw, hh = r * np.cos(np.arctan(aspect)), r * np.sin(np.arctan(aspect))
        a = rng.uniform(0, np.pi / 2)
        corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
    else:  # triangle: three vertices on the circle, angles jittered (never degenerate)
        a = rng.uniform(0, 2 * np.pi)
        ang = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.35, 0.35, 3)
        rad = r * rng.uniform(0.85, 1.0, 3)
        corners = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return corners @ rot.T + np.array([cx, cy])


def _shape_mask(rng: np.random.Generator, cls: int, size: int) -> np.ndarray:
    import cv2
    r = rng.uniform(0.07, 0.24) * size
    cx, cy = rng.uniform(r, size - r, 2)
    mask = np.zeros((size, size), np.uint8)
    if cls == 0:
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 1, -1,
                   lineType=cv2.LINE_8)
    else:
        pts = np.round(_shape_polygon(rng, cls, cx, cy, r)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8)
    return mask.astype(bool)


def make_scene(seed: int, split_id: int, index: int, size: int, min_visible: int = 40
               ) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    """One scene: the uint8 RGB image ``[size, size, 3]`` and the instances as
    ``(class index, visible mask)`` in drawing order (later ones on top)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, index, size]))
    img = _background(rng, size)
    full: List[np.ndarray] = []
    visible: List[np.ndarray] = []
    classes: List[int] = []
    for _ in range(int(rng.integers(1, 6))):
        for _try in range(20):
            cls = int(rng.integers(len(CLASSES)))
            mask = _shape_mask(rng, cls, size)
            if mask.sum() < max(min_visible, 2):
                continue
            kept = [v & ~mask for v in visible]
            if all(k.sum() >= max(min_visible, 0.5 * f.sum()) for k, f in zip(kept, full)):
                break
        else:
            continue  # no placement that leaves the others visible enough: fewer shapes
        # a colour that stands out from the background under the shape
        under = img[mask].mean(0)
        for _c in range(10):
            colour = rng.uniform(0, 255, 3)
            if np.abs(colour - under).sum() > 120:
                break
        shade = rng.uniform(-12, 12, (size, size, 1)).astype(np.float32)
        img = np.where(mask[..., None], colour[None, None] + shade, img)
        visible = kept + [mask]
        full.append(mask)
        classes.append(cls)
    img = img + rng.normal(0, 5, img.shape)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return img, list(zip(classes, visible))


# ----------------------------------------------------------------------------- writing
def _coco_annotation(mask: np.ndarray, ann_id: int, image_id: int, cls: int) -> dict:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    rle['counts'] = rle['counts'].decode('ascii')
    return dict(id=ann_id, image_id=image_id, category_id=cls + 1, segmentation=rle,
                area=float(mask.sum()), bbox=bbox, iscrowd=0)


def _params(args) -> Dict:
    return dict(version=VERSION, num_train=args.num_train, num_val=args.num_val,
                size=args.size, seed=args.seed, min_visible=args.min_visible,
                ignore_background=bool(args.ignore_background))


def _expected_files(out: str, params: Dict) -> List[str]:
    files = [osp.join(out, 'coco', 'annotations', f'instances_{s}.json') for s, _, _ in SPLITS]
    for split, ade_split, _ in SPLITS:
        for i in range(params[f'num_{split}']):
            files += [osp.join(out, 'coco', split, f'{i:06d}.png'),
                      osp.join(out, 'ade', 'images', ade_split, f'shapes_{split}_{i:06d}.jpg'),
                      osp.join(out, 'ade', 'annotations', ade_split,
                               f'shapes_{split}_{i:06d}.png')]
    return files


def _up_to_date(out: str, params: Dict) -> bool:
    try:
        with open(osp.join(out, META_FILE)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    return (meta.get('params') == params
            and all(osp.isfile(p) for p in _expected_files(out, params)))


def generate(out: str, num_train: int = 400, num_val: int = 100, size: int = 128,
             seed: int = 0, min_visible: int = 40, ignore_background: bool = False,
             quiet: bool = False) -> Dict:
    """Write the dataset under ``out`` (see the module docstring); returns the metadata."""
    import cv2
    args = argparse.Namespace(num_train=num_train, num_val=num_val, size=size, seed=seed,
                              min_visible=min_visible, ignore_background=ignore_background)
    if num_train < 0 or num_val < 0:
        raise ValueError('--num-train and --num-val must be >= 0')
    if size < 32:
        raise ValueError(f'--size must be at least 32, got {size}')
    params = _params(args)
    meta_path = osp.join(out, META_FILE)
    if _up_to_date(out, params):
        if not quiet:
            print(f'{out}: shapes dataset already there ({num_train} train / {num_val} val, '
                  f'{size}px, seed {seed}); nothing to do')
        with open(meta_path) as f:
            return json.load(f)
    ours = osp.isfile(meta_path)
    for sub in ('coco', 'ade'):
        path = osp.join(out, sub)
        if osp.exists(path) and os.listdir(path):
            if not ours:
                raise RuntimeError(f'{path} exists and was not written by this tool (no '
                                   f'{META_FILE}); choose another output folder')
            shutil.rmtree(path)
    if ours:
        os.remove(meta_path)

    # quality 95 without chroma subsampling (sharp colour edges at the shape borders)
    jpeg_params = [int(cv2.IMWRITE_JPEG_QUALITY), 95]
    if hasattr(cv2, 'IMWRITE_JPEG_SAMPLING_FACTOR'):
        jpeg_params += [int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR),
                        int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)]
    bg_label = 0 if ignore_background else 1
    first_shape = 1 if ignore_background else 2
    counts = {}
    for split, ade_split, split_id in SPLITS:
        n = params[f'num_{split}']
        coco_dir = osp.join(out, 'coco', split)
        ade_img = osp.join(out, 'ade', 'images', ade_split)
        ade_ann = osp.join(out, 'ade', 'annotations', ade_split)
        for d in (coco_dir, ade_img, ade_ann, osp.join(out, 'coco', 'annotations')):
            os.makedirs(d, exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            img, instances = make_scene(seed, split_id, i, size, min_visible)
            name = f'{i:06d}.png'
            bgr = np.ascontiguousarray(img[..., ::-1])
            cv2.imwrite(osp.join(coco_dir, name), bgr)
            cv2.imwrite(osp.join(ade_img, f'shapes_{split}_{i:06d}.jpg'), bgr, jpeg_params)
            label = np.full((size, size), bg_label, np.uint8)
            images.append(dict(id=i + 1, file_name=name, height=size, width=size))
            for cls, mask in instances:
                label[mask] = first_shape + cls
                annotations.append(_coco_annotation(mask, len(annotations) + 1, i + 1, cls))
            cv2.imwrite(osp.join(ade_ann, f'shapes_{split}_{i:06d}.png'), label)
        coco = dict(
            info=dict(description='mmvrwkv synthetic shapes', version=str(VERSION)),
            licenses=[], images=images, annotations=annotations,
            categories=[dict(id=k + 1, name=c, supercategory='shape')
                        for k, c in enumerate(CLASSES)])
        with open(osp.join(out, 'coco', 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
        counts[split] = dict(images=n, instances=len(annotations))
    meta = dict(params=params, classes=list(CLASSES),
                seg_classes=list(seg_classes(ignore_background)),
                seg_labels=dict(unlabeled=0, **{c: first_shape + k for k, c in
                                                enumerate(CLASSES)},
                                **({} if ignore_background else dict(background=1))),
                counts=counts)
    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    if not quiet:
        print(f'{out}: wrote {counts["train"]["images"]} train / {counts["val"]["images"]} val '
              f'images ({counts["train"]["instances"]} / {counts["val"]["instances"]} '
              f'instances), {size}x{size}, seed {seed}: coco/ (CocoDataset) and ade/ '
              f'(ADE20K layout, classes {list(seg_classes(ignore_background))})')
    return meta


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line (``make_shapes_dataset.py OUT [--num-train N] [--num-val N] [--size S]
    [--seed S] [--min-visible N] [--ignore-background]``): 0, or 1 after a one-line error."""
    from mmvrwkv.apis.launch import exit_status
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out', help='output folder (e.g. data/shapes)')
    p.add_argument('--num-train', type=int, default=400, help='training images (400)')
    p.add_argument('--num-val', type=int, default=100, help='validation images (100)')
    p.add_argument('--size', type=int, default=128, help='image side in pixels (128)')
    p.add_argument('--seed', type=int, default=0, help='random seed (0)')
    p.add_argument('--min-visible', type=int, default=40,
                   help='minimum visible pixels of every instance (40)')
    p.add_argument('--ignore-background', action='store_true',
                   help='segmentation: write the background as 0 (ignored) instead of class 1')
    args = p.parse_args(argv)
    return exit_status(lambda: generate(args.out, args.num_train, args.num_val, args.size,
                                        args.seed, args.min_visible, args.ignore_background),
                       (ValueError, RuntimeError), 'error: ', 1)
