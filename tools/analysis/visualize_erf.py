#!/usr/bin/env python
"""Effective receptive field (ERF) of VRWKV variants and DeiT, as one figure.

The ERF of a backbone (Luo et al. 2016; the form RepLKNet and the Vision-RWKV paper plot) is
how strongly each input pixel moves the *centre* output token:

    ERF[y, x] = mean_n sum_c | d centre_n / d img[n, c, y, x] |,
    centre_n  = sum over feature channels of relu(out[n, :, h // 2, w // 2])

computed with one backward pass per batch of images. The ReLU (as in RepLKNet's ERF tool) is
needed: both backbones end in a LayerNorm, initialised with weight 1 and bias 0, and the
channel sum of such a normalised token is always 0, so its plain gradient is zero up to
rounding. The ERF is shown as ``log10(ERF / max ERF)`` (clipped at ``--floor``), so that both
the near field and the weak far field are visible.

Models (``--models``, each built with the same size, patch and depth):

* ``bi``: VRWKV as published (Q-Shift + Bi-WKV): the centre sees every pixel;
* ``uni``: uni-directional (causal) WKV, ``attn_direction='uni'``: a token sees the tokens
  before it in raster order, plus what the token shifts bring in from its right and lower
  neighbours (``shift_pixel`` rows per shift, two shifts per block);
* ``noshift``: Bi-WKV without the token shift, ``shift_mode='none'``;
* ``deit``: mmpretrain's VisionTransformer (DeiT arch of the same size; torchvision's ViT
  when mmpretrain is not installed).

Weights: random init (``--seed``) or ``--checkpoint MODEL=FILE`` (a backbone or classifier
checkpoint; ``backbone.`` prefixes are stripped; the built model must match it, so give
``--arch``, ``--patch-size``, ``--img-size`` and ``--depth`` of its config). Inputs: random
normal images (``--images N``) or the images of ``--image-dir`` (resized, ImageNet mean/std).

Output: ``--out`` PNG (a panel per model with its title and a colour bar) and, with
``--save-arrays``, an ``.npz`` with the raw ERF of each model (``[H, W]``, not normalised).

Example::

    python tools/analysis/visualize_erf.py --arch tiny --img-size 224 --images 8 --out erf.png
"""
import argparse
import glob
import os
import os.path as osp
from typing import Dict, Iterable, Optional, Sequence

import torch
import torch.nn as nn

from mmvrwkv.analysis import backbones, plots

#: ``--models`` names: VRWKV keyword arguments of each variant, or None for DeiT.
VARIANTS = {
    'bi': dict(attn_direction='bi', shift_mode='q_shift'),
    'uni': dict(attn_direction='uni', shift_mode='q_shift'),
    'noshift': dict(attn_direction='bi', shift_mode='none'),
    'deit': None,
}
TITLES = {'bi': 'VRWKV (Q-Shift + Bi-WKV)', 'uni': 'VRWKV, uni-directional WKV',
          'noshift': 'VRWKV, Bi-WKV without shift', 'deit': 'DeiT (attention)'}
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def build_backbone(name: str, arch: str = 'tiny', img_size: int = 224, patch_size: int = 16,
                   depth: Optional[int] = None, baseline: str = 'auto') -> nn.Module:
    """The backbone ``name`` (a key of :data:`VARIANTS`), returning ``[B, C, h, w]`` maps."""
    if name not in VARIANTS:
        raise ValueError(f'model must be one of {sorted(VARIANTS)}, got {name!r}')
    if VARIANTS[name] is None:
        return backbones.build_vit(arch, img_size, patch_size, baseline, depth)
    return backbones.build_vrwkv(arch, img_size, patch_size, depth, **VARIANTS[name])


def load_weights(model: nn.Module, checkpoint: str) -> None:
    """Backbone weights from a backbone or whole-model checkpoint (mmvrwkv's safe loader;
    a mismatch is an error naming the keys)."""
    import mmvrwkv  # noqa: F401  (registers the safe checkpoint loaders)
    from mmengine.runner import load_checkpoint
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                    revise_keys=[(r'^backbone\.', ''), (r'^module\.', '')])


def effective_receptive_field(model: nn.Module, images: Iterable[torch.Tensor]) -> torch.Tensor:
    """``[H, W]``: the mean over all images of sum_c |d sum(relu(centre token)) / d pixel|
    (module docstring); ``images`` yields batches ``[B, 3, H, W]``."""
    model.eval()
    total, count = None, 0
    for x in images:
        x = x.detach().clone().requires_grad_(True)
        out = model(x)
        feat = out[-1] if isinstance(out, (tuple, list)) else out
        if feat.dim() != 4:
            raise ValueError(f'the backbone must return [B, C, h, w] maps, got {tuple(feat.shape)}')
        h, w = feat.shape[-2:]
        centre = torch.relu(feat[:, :, h // 2, w // 2]).sum()
        (grad, ) = torch.autograd.grad(centre, x)
        erf = grad.abs().sum(dim=1).sum(dim=0)
        total = erf if total is None else total + erf
        count += x.shape[0]
    if total is None:
        raise ValueError('no images: give --images N >= 1 or a non-empty --image-dir')
    return (total / count).detach()


def random_images(n: int, size: int, batch: int, seed: int = 0):
    """``n`` standard-normal images ``[3, size, size]`` in batches of at most ``batch``."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        yield torch.randn(min(batch, n - start), 3, size, size, generator=gen)


def folder_images(folder: str, size: int, batch: int, limit: Optional[int] = None):
    """The images of ``folder`` (jpg/jpeg/png/bmp), resized to ``size``, ImageNet-normalised."""
    from PIL import Image
    files = sorted(f for ext in ('jpg', 'jpeg', 'png', 'bmp')
                   for f in glob.glob(osp.join(folder, f'*.{ext}')))[:limit]
    if not files:
        raise ValueError(f'--image-dir {folder!r} holds no .jpg/.jpeg/.png/.bmp images')
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for start in range(0, len(files), batch):
        imgs = []
        for f in files[start:start + batch]:
            img = Image.open(f).convert('RGB').resize((size, size), Image.BILINEAR)
            pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            imgs.append((pixels.view(size, size, 3).permute(2, 0, 1).float() - mean) / std)
        yield torch.stack(imgs)


def display_map(erf: torch.Tensor, floor: float = -4.0) -> torch.Tensor:
    """``log10(erf / max erf)`` clipped below at ``floor`` (all ``floor`` for a zero map)."""
    peak = erf.max()
    if not peak > 0:
        return torch.full_like(erf, floor)
    return torch.log10(erf / peak).clamp(min=floor)


def plot_erfs(erfs: Dict[str, torch.Tensor], path: str, title: str, floor: float = -4.0,
              patch_size: Optional[int] = None) -> None:
    """One panel per model (``log10(ERF / max)``, a shared colour scale and bar); a white
    cross marks the centre of the centre token's patch."""
    fig, axes = plots.subplots(1, len(erfs), panel=(4.0, 4.0))
    image = None
    for ax, (name, erf) in zip(axes[0], erfs.items()):
        image = ax.imshow(display_map(erf, floor).numpy(), cmap='viridis', vmin=floor, vmax=0)
        H, W = erf.shape
        p = patch_size or 1
        cy, cx = ((H // p) // 2 + 0.5) * p - 0.5, ((W // p) // 2 + 0.5) * p - 0.5
        ax.plot([cx], [cy], marker='+', color='w', markersize=8)
        ax.set_title(TITLES.get(name, name), fontsize=10)
        ax.set_xlabel('x (px)')
        ax.set_ylabel('y (px)')
    bar = fig.colorbar(image, ax=list(axes[0]), shrink=0.8, pad=0.02)
    bar.set_label('log10(ERF / max ERF)')
    plt = plots.pyplot()
    note = f' (patch {patch_size})' if patch_size else ''
    fig.suptitle(title + note)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)


def parse_checkpoints(items: Sequence[str], models: Sequence[str], error) -> Dict[str, str]:
    """``['bi=a.pth', ...]`` -> ``{'bi': 'a.pth'}`` (each a chosen model, each file present)."""
    out = {}
    for item in items or ():
        name, sep, path = item.partition('=')
        if not sep or name not in models:
            error(f'--checkpoint wants MODEL=FILE with MODEL one of {list(models)}, got {item!r}')
        if not osp.isfile(path):
            error(f'--checkpoint {item!r}: no such file')
        out[name] = path
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--models', nargs='+', choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument('--arch', choices=['tiny', 'small', 'base'], default='tiny')
    p.add_argument('--img-size', type=int, default=224, help='square input side (px)')
    p.add_argument('--patch-size', type=int, default=16)
    p.add_argument('--depth', type=int, default=None, help='blocks (default: the arch)')
    p.add_argument('--baseline', choices=list(backbones.BASELINES), default='auto',
                   help='where DeiT comes from')
    p.add_argument('--checkpoint', nargs='+', metavar='MODEL=FILE', default=None,
                   help='weights per model (random init otherwise)')
    p.add_argument('--images', type=int, default=8, help='random images (without --image-dir)')
    p.add_argument('--image-dir', help='a folder of images to average over instead')
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--floor', type=float, default=-4.0, help='lowest log10 shown')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--out', default='erf.png', help='the figure (PNG)')
    p.add_argument('--save-arrays', metavar='NPZ', help='also save the raw ERF arrays')
    args = p.parse_args(argv)
    for name in ('img_size', 'patch_size', 'images', 'batch_size'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.img_size < args.patch_size:
        p.error('--img-size must be at least --patch-size')
    if args.depth is not None and args.depth < 1:
        p.error('--depth must be >= 1')
    if args.floor >= 0:
        p.error('--floor must be negative (log10 of a fraction of the maximum)')
    args.models = list(dict.fromkeys(args.models))
    args.checkpoint = parse_checkpoints(args.checkpoint, args.models, p.error)
    return args


def main(argv=None) -> Dict[str, torch.Tensor]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    erfs = {}
    for name in args.models:
        torch.manual_seed(args.seed)
        model = build_backbone(name, args.arch, args.img_size, args.patch_size, args.depth,
                               args.baseline)
        if name in args.checkpoint:
            load_weights(model, args.checkpoint[name])
        if args.image_dir:
            images = folder_images(args.image_dir, args.img_size, args.batch_size)
        else:
            images = random_images(args.images, args.img_size, args.batch_size, args.seed)
        erfs[name] = erf = effective_receptive_field(model, images)
        nonzero = float((erf > 0).float().mean())
        weights = args.checkpoint.get(name, 'random init')
        print(f'{name}: ERF max {float(erf.max()):.3g}, {100 * nonzero:.1f} % of pixels '
              f'reached ({weights})')
    weights = 'given checkpoints' if args.checkpoint else 'random init'
    source = args.image_dir or f'{args.images} random images'
    plot_erfs(erfs, args.out, f'Effective receptive field of the centre token: {args.arch}, '
              f'{args.img_size}px, {weights}, {source}', args.floor, args.patch_size)
    print(f'# wrote {args.out}')
    if args.save_arrays:
        import numpy as np
        np.savez(args.save_arrays, **{k: v.numpy() for k, v in erfs.items()})
        print(f'# wrote {args.save_arrays}')
    return erfs


if __name__ == '__main__':
    main()
