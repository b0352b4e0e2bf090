#!/usr/bin/env python
"""Convert an official Vision-RWKV checkpoint to the mmvrwkv / mmpretrain layout.

Official checkpoints (HuggingFace ``OpenGVLab/Vision-RWKV``: mmcls 0.25 VRWKV-T/S/B and
VRWKV6-T/S/B, InternImage/timm VRWKV-L), wrapped or raw, with or without ``module.`` /
``backbone.``, are mapped to an mmpretrain ``ImageClassifier``. The layouts, the key map and
the arch inference are the package's (``mmvrwkv/engine/checkpoint/conversion.py``, described
in the ``README.md`` beside it); this file is the command line over
``mmvrwkv.engine.checkpoint.file_conversion.convert_file``.

The result is compared, key by key and shape by shape, with the model built from a config
(``--config``, or ``--arch``, which picks the matching config of the checkpoint's family:
``configs/vrwkv`` for VRWKV, ``configs/vrwkv6`` for VRWKV6, the family being told by the
keys; without either, the arch is inferred from the embedding width). A checkpoint that
would leave parameters of that model uninitialised (missing keys, shape mismatches) is
refused unless ``--allow-missing``; unexpected keys are reported and dropped (refused with
``--strict``). The output ``{'state_dict': ..., 'meta': {...}}`` loads with ``strict=True``
into the model of the config and with ``torch.load(weights_only=True)``; it is written
atomically and never over an existing file unless ``--overwrite``.

Examples::

    python tools/model_converters/vrwkv2mmvrwkv.py vrwkv_t_in1k_224.pth \\
        vrwkv-tiny_in1k_mmvrwkv.pth --arch tiny
    python tools/model_converters/vrwkv2mmvrwkv.py vrwkv_l_in22k_192.pth \\
        vrwkv-large_in22k-192px_mmvrwkv.pth --arch large --num-classes 21841
    python tools/model_converters/vrwkv2mmvrwkv.py vrwkv6_t_in1k_224.pth \\
        vrwkv6-tiny_in1k_mmvrwkv.pth --config configs/vrwkv6/vrwkv6-tiny_8xb128_in1k.py

Exit status: 0 written, 1 refused or failed (the reason on stderr), 2 bad arguments.
"""
import argparse
import sys
from typing import Optional, Sequence

from mmvrwkv.engine.checkpoint.conversion import (FAMILIES, ConversionError, all_arch_names,
                                                  arch_configs, find_config, infer_family,
                                                  map_key, reference_shapes)
from mmvrwkv.engine.checkpoint.file_conversion import convert_file

__all__ = ['ConversionError', 'find_config', 'infer_family', 'main', 'map_key',
           'parse_args', 'reference_shapes', 'run']

#: Options that override the reference model, and what they do.
OVERRIDES = {
    '--num-classes': 'override the head size of the reference model '
                     '(e.g. 21841 for vrwkv_l_in22k_192.pth)',
    '--img-size': 'override the backbone img_size (pos-embed grid) of the reference model',
}
#: Switches, and what they do.
SWITCHES = {
    '--ema': 'convert the EMA weights (model_ema / state_dict_ema) instead',
    '--strict': 'refuse unexpected keys too (default: report and drop them)',
    '--allow-missing': 'write even if keys of the reference model are missing or have '
                       'another shape (shape-mismatched keys are dropped)',
    '--overwrite': 'replace an existing DST',
    '--unsafe-load': 'if SRC is not weights-only, load it with weights_only=False '
                     '(runs code from the file: only for trusted files)',
}


def _arch_help() -> str:
    """``--arch`` help: the config of each arch, of the first family and then the others."""
    def listing(family: str) -> str:
        return ' | '.join(f'{a}: {c}' for a, c in arch_configs(family).items())

    first, *others = FAMILIES
    return (f'compare with the model of configs/{first}/{listing(first)}' + ''.join(
        f' (of configs/{f}/{listing(f)} for a {f.upper()} checkpoint)' for f in others))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official Vision-RWKV checkpoint to the mmvrwkv / '
        'mmpretrain layout ({"state_dict": ..., "meta": ...}).')
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='output file')
    ref = parser.add_mutually_exclusive_group()
    ref.add_argument('--arch', choices=sorted(all_arch_names()), help=_arch_help())
    ref.add_argument('--config', help='compare with the model of this config (without '
                     '--arch or --config the arch is inferred from the embedding width)')
    for flag, text in OVERRIDES.items():
        parser.add_argument(flag, type=int, default=None, help=text)
    for flag, text in SWITCHES.items():
        parser.add_argument(flag, action='store_true', help=text)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Convert as ``args`` say (the report on stdout); ``ConversionError`` on a refusal."""
    convert_file(**vars(args))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except ConversionError as err:
        print(f'ERROR: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
