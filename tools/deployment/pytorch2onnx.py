#!/usr/bin/env python
"""Export a VRWKV backbone or a whole mmpretrain classifier to ONNX, optionally verified
against onnxruntime.

What is exported:

* ``--arch tiny|small|base|large`` (no config): a randomly initialised ``VRWKV`` backbone
  (``--depth`` overrides its depth, ``--checkpoint`` loads backbone weights);
* ``CONFIG [--checkpoint CKPT]``: the config's model, built by mmpretrain's ``init_model``
  (checkpoints go through mmvrwkv's safe loader); the whole classifier (backbone, neck, head:
  logits, before softmax) or, with ``--backbone-only``, its backbone.

The graph takes *normalised* images ``[B, 3, H, W]`` (the data preprocessor's mean/std are not
part of it) and returns the logits (``logits``) or the backbone's feature maps (``feat0``,
``feat1``, ...). The Bi-WKV op runs its portable ``'torch'`` backend while exporting, so the
graph holds only standard ONNX operators.

The batch dimension is dynamic unless ``--static-batch``. ``--dynamic-size`` makes height and
width dynamic too (dynamo exporter only: the legacy exporter records the patch grid as
constants); ``--verify`` then also runs a second image size.

Exporters (``--exporter``): ``dynamo`` (``torch.onnx.export(..., dynamo=True)``, through
``torch.export``; needs ``onnxscript``) and ``legacy`` (``dynamo=False``, TorchScript tracing).

``--verify`` runs the ONNX file in onnxruntime (CPU) on random inputs of the export size and
of a second batch size, and prints the largest absolute difference from PyTorch per output;
the exit status is 1 when it exceeds ``--atol``.

Examples::

    python tools/deployment/pytorch2onnx.py --arch tiny --shape 224 224 --out vrwkv-t.onnx --verify
    python tools/deployment/pytorch2onnx.py configs/vrwkv/vrwkv-tiny_8xb128_in1k.py \\
        --checkpoint vrwkv-t.pth --out vrwkv-t-cls.onnx --exporter legacy --verify
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

EXPORTERS = ('dynamo', 'legacy')
ARCHS = ('tiny', 'small', 'base', 'large')


class ClassifierLogits(nn.Module):
    """An mmpretrain classifier as ``images -> logits`` (its ``mode='tensor'`` forward), the
    signature an exporter needs (no data samples, one tensor out)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x, mode='tensor')


def build_backbone(arch: str, img_size: Sequence[int], depth: Optional[int] = None,
                   checkpoint: Optional[str] = None) -> nn.Module:
    """A ``VRWKV`` backbone of ``arch`` for images of ``img_size``; weights from
    ``checkpoint`` (a backbone or whole-model state dict; ``backbone.`` prefixes are taken)."""
    import mmvrwkv  # noqa: F401  (registers the safe checkpoint loaders)
    from mmvrwkv.models.backbones import VRWKV
    kwargs = dict(arch=arch, img_size=tuple(img_size))
    if depth is not None:
        kwargs['depth'] = depth
    model = VRWKV(**kwargs)
    if checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        revise_keys=[(r'^backbone\.', ''), (r'^module\.', '')])
    return model


def build_from_config(config: str, checkpoint: Optional[str] = None,
                      backbone_only: bool = False) -> nn.Module:
    """The classifier of an mmpretrain config (``images -> logits``) or its backbone."""
    import mmvrwkv  # noqa: F401  (registers the safe checkpoint loaders)
    from mmpretrain.apis import init_model
    model = init_model(config, checkpoint, device='cpu')
    return model.backbone if backbone_only else ClassifierLogits(model)


def output_names(model: nn.Module, example: torch.Tensor) -> List[str]:
    """``['logits']`` for one tensor out, ``['feat0', 'feat1', ...]`` for a tuple."""
    with torch.no_grad():
        out = model(example)
    if isinstance(out, torch.Tensor):
        return ['logits']
    return [f'feat{i}' for i in range(len(out))]


def export_onnx(model: nn.Module, path: str, shape: Sequence[int], exporter: str = 'dynamo',
                opset: Optional[int] = None, dynamic_batch: bool = True,
                dynamic_size: bool = False) -> List[str]:
    """Export ``model`` (in eval mode) for inputs of ``shape = (B, 3, H, W)`` to ``path``;
    returns the output names. Raises ValueError for a bad ``exporter`` or ``shape``."""
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f'shape must be (B, C, H, W) with positive sides, got {tuple(shape)}')
    model.eval()
    example = torch.randn(*shape)
    names = output_names(model, example)
    dyn_dims = ([0] if dynamic_batch else []) + ([2, 3] if dynamic_size else [])
    dim_names = {0: 'batch', 2: 'height', 3: 'width'}
    kwargs = dict(input_names=['input'], output_names=names, dynamo=exporter == 'dynamo')
    if opset is not None:
        kwargs['opset_version'] = opset
    if exporter == 'dynamo':
        if dyn_dims:
            kwargs['dynamic_shapes'] = ({d: torch.export.Dim.DYNAMIC for d in dyn_dims}, )
    else:
        kwargs['dynamic_axes'] = {'input': {d: dim_names[d] for d in dyn_dims}}
        for name in names:  # outputs share the batch dimension
            kwargs['dynamic_axes'][name] = {0: 'batch'} if dynamic_batch else {}
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, (example, ), path, **kwargs)
    return names


def verify_onnx(model: nn.Module, path: str, shapes: Sequence[Sequence[int]],
                seed: int = 0) -> List[Tuple[tuple, Dict[str, float]]]:
    """Run the ONNX file in onnxruntime (CPU) and ``model`` on the same random inputs of each
    shape: ``[(shape, {output name: max abs difference})]``."""
    import numpy as np
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    results = []
    for shape in shapes:
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            ref = model(x)
        refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        outs = session.run(None, {input_name: x.numpy()})
        diffs = {}
        for name, r, o in zip(names, refs, outs):
            r = r.numpy()
            diffs[name] = (float(np.abs(o - r).max()) if o.shape == r.shape
                           else float('inf'))  # a wrong shape is a failure, not a number
        results.append((tuple(shape), diffs))
    return results


def verify_shapes(shape: Sequence[int], dynamic_batch: bool, dynamic_size: bool,
                  patch_size: int = 16) -> List[tuple]:
    """The export shape, another batch size (dynamic batch) and another image size (dynamic
    size: one more patch row and column)."""
    B, C, H, W = shape
    shapes = [tuple(shape)]
    if dynamic_batch:
        shapes.append((B + 2, C, H, W))
    if dynamic_size:
        shapes.append((B, C, H + patch_size, W + patch_size))
    return shapes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config', nargs='?', help='mmpretrain config (omit to export --arch)')
    p.add_argument('--arch', choices=ARCHS, help='export a VRWKV backbone of this size')
    p.add_argument('--depth', type=int, help='with --arch: number of blocks (default: the arch)')
    p.add_argument('--checkpoint', help='weights to load (config model or --arch backbone)')
    p.add_argument('--backbone-only', action='store_true',
                   help='with a config: export its backbone instead of the classifier')
    p.add_argument('--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'),
                   help='image size of the export (default 224 224)')
    p.add_argument('--batch-size', type=int, default=1, help='batch of the example input')
    p.add_argument('--static-batch', action='store_true', help='fix the batch size')
    p.add_argument('--dynamic-size', action='store_true',
                   help='dynamic height and width too (dynamo exporter only)')
    p.add_argument('--exporter', choices=EXPORTERS, default='dynamo')
    p.add_argument('--opset', type=int, default=None, help="opset (default: the exporter's)")
    p.add_argument('--out', default='vrwkv.onnx', help='ONNX file to write')
    p.add_argument('--verify', action='store_true', help='compare with onnxruntime')
    p.add_argument('--atol', type=float, default=1e-4,
                   help='largest absolute difference --verify accepts')
    args = p.parse_args(argv)
    if (args.config is None) == (args.arch is None):
        p.error('give either a config or --arch')
    if args.depth is not None and (args.arch is None or args.depth < 1):
        p.error('--depth needs --arch and must be >= 1')
    if args.backbone_only and args.config is None:
        p.error('--backbone-only needs a config')
    if args.batch_size < 1 or min(args.shape) < 1:
        p.error('--batch-size and --shape must be positive')
    if args.dynamic_size and args.exporter == 'legacy':
        p.error('--dynamic-size needs --exporter dynamo (the legacy exporter records the patch '
                'grid as constants)')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.arch:
        model = build_backbone(args.arch, args.shape, args.depth, args.checkpoint)
    else:
        model = build_from_config(args.config, args.checkpoint, args.backbone_only)
    shape = (args.batch_size, 3, *args.shape)
    names = export_onnx(model, args.out, shape, args.exporter, args.opset,
                        dynamic_batch=not args.static_batch, dynamic_size=args.dynamic_size)
    print(f'wrote {args.out} ({args.exporter} exporter, input {shape}, outputs {names}, '
          f'dynamic: {"batch" if not args.static_batch else "none"}'
          f'{" + height, width" if args.dynamic_size else ""})')
    if not args.verify:
        return 0
    worst = 0.0
    shapes = verify_shapes(shape, not args.static_batch, args.dynamic_size,
                           getattr(getattr(model, 'patch_embed', None), 'patch_size', 16))
    try:
        results = verify_onnx(model, args.out, shapes)
    except Exception as e:  # noqa: BLE001  (onnxruntime rejects a shape the graph fixed)
        print(f'FAIL: onnxruntime could not run {args.out} on {shapes}: '
              f'{type(e).__name__}: {str(e).splitlines()[0][:300]}')
        return 1
    for s, diffs in results:
        text = ', '.join(f'{n} {d:.3g}' for n, d in diffs.items())
        print(f'onnxruntime vs PyTorch, input {s}: max abs diff {text}')
        worst = max([worst, *diffs.values()])
    status = 'PASS' if worst <= args.atol else 'FAIL'
    print(f'{status}: max abs diff {worst:.3g} (atol {args.atol:g})')
    return 0 if status == 'PASS' else 1


if __name__ == '__main__':
    sys.exit(main())
