#!/usr/bin/env python
"""Parameters and FLOPs of a model built from an mmvrwkv config (any OpenMMLab 2.0 task).

    python tools/analysis/get_flops.py CONFIG [--shape H W | --shape S] [--backbone-only]
        [--json out.json] [--max-depth 3] [--convention mmcv|fvcore] [--device cpu]
        [--forward auto|tensor|feat] [--cfg-options key=value ...]

One random image is traced by mmengine's FlopAnalyzer, with the Bi-WKV ops counted by their
formulas (29*B*T*C, 7*head_size*B*T*C per call). What is run, the input size and what is
counted in each convention: ``mmvrwkv.analysis.flops`` (the library of this tool). Counts are
per image (batch 1); ``--json`` writes all numbers (per module too).
"""
import argparse
import json


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description='Params and FLOPs of an mmvrwkv config, Bi-WKV op included',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('config', help='config file path')
    p.add_argument('--shape', type=int, nargs='+', metavar='S',
                   help='input size: S (square) or H W; default from the test pipeline')
    p.add_argument('--backbone-only', action='store_true',
                   help='analyse model.backbone only (e.g. the backbone FLOPs of det/seg)')
    p.add_argument('--forward', choices=['auto', 'tensor', 'feat'], default='auto',
                   help="what to run for the full model: forward(mode='tensor'), "
                        'extract_feat, or the first that works (default)')
    p.add_argument('--convention', choices=['mmcv', 'fvcore'], default='mmcv',
                   help='counting convention for norms/conv bias/pooling (default mmcv, as '
                        'the paper)')
    p.add_argument('--device', default='cpu', help='device to build and trace on')
    p.add_argument('--max-depth', type=int, default=3, help='depth of the module table')
    p.add_argument('--json', metavar='FILE', help='write all results to this JSON file')
    p.add_argument('--verbose', action='store_true', help='print tracebacks of fallbacks')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config entries, e.g. model.backbone.depth=2')
    args = p.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        p.error('--shape takes one (S) or two (H W) integers')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmvrwkv.analysis.flops import get_flops, report
    res = get_flops(args.config, shape=args.shape, backbone_only=args.backbone_only,
                    cfg_options=args.cfg_options, convention=args.convention,
                    device=args.device, forward=args.forward, max_depth=args.max_depth,
                    verbose=args.verbose)
    print(report(res))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=2)
        print(f'Results written to {args.json}')
    return res


if __name__ == '__main__':
    main()
