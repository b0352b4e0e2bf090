"""Write scikit-learn's bundled digits (1,797 real 8x8 handwritten digits, no download) as a
small ImageNet-style dataset that mmpretrain reads unchanged:

    OUT/
      train/<class>/<id>.png      val/<class>/<id>.png
      meta/train.txt  meta/val.txt   ("<class>/<id>.png <label>" per line, like ImageNet's)
      meta/classes.txt

Images are stored as 8x8 RGB PNGs (grey replicated, 0..16 scaled to 0..255). The split is a
fixed stratified 80/20 (seed 0), so every run trains and evaluates on the same images.

Command line: ``python tools/dataset_converters/make_digits_imagenet.py data/digits``
(:func:`main`).
"""
import argparse
import os
import os.path as osp
from typing import Optional, Sequence

import numpy as np


def make_digits(out_dir: str, val_fraction: float = 0.2, seed: int = 0, force: bool = False) -> dict:
    """Write the dataset (skipped when it is already complete); returns split sizes."""
    from PIL import Image
    from sklearn.datasets import load_digits

    done = osp.join(out_dir, 'meta', 'val.txt')
    if osp.exists(done) and not force:
        with open(osp.join(out_dir, 'meta', 'train.txt')) as f:
            n_train = sum(1 for _ in f)
        with open(done) as f:
            n_val = sum(1 for _ in f)
        return {'train': n_train, 'val': n_val}
    if not 0 < val_fraction < 1:
        raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
    digits = load_digits()
    images = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)  # [N, 8, 8]
    labels = digits.target.astype(int)
    rng = np.random.default_rng(seed)
    split = {'train': [], 'val': []}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        split['val'] += idx[:n_val].tolist()
        split['train'] += idx[n_val:].tolist()
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    for name, idx in split.items():
        lines = []
        for i in sorted(idx):
            rel = f'{labels[i]}/{i:04d}.png'
            path = osp.join(out_dir, name, rel)
            os.makedirs(osp.dirname(path), exist_ok=True)
            Image.fromarray(np.repeat(images[i][:, :, None], 3, axis=2)).save(path)
            lines.append(f'{rel} {labels[i]}\n')
        # the val list is written last: its presence marks a complete dataset
        with open(osp.join(out_dir, 'meta', f'{name}.txt'), 'w') as f:
            f.writelines(lines)
    with open(osp.join(out_dir, 'meta', 'classes.txt'), 'w') as f:
        f.writelines(f'{c}\n' for c in range(10))
    return {k: len(v) for k, v in split.items()}


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The command line (``make_digits_imagenet.py [OUT_DIR] [--val-fraction F] [--seed S]
    [--force]``): writes the dataset and prints its split sizes."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('out_dir', nargs='?', default='data/digits')
    p.add_argument('--val-fraction', type=float, default=0.2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true', help='rewrite even if the dataset exists')
    args = p.parse_args(argv)
    sizes = make_digits(args.out_dir, args.val_fraction, args.seed, args.force)
    print(f"digits written to {args.out_dir}: {sizes['train']} train / {sizes['val']} val images")
