"""The options every benchmark has, filled from per-device presets.

A benchmark declares its presets as ``{device: {option: value}}`` (and a ``--quick`` one that
finishes in seconds); options left unset on the command line take the preset's value, so an
explicit option always wins.
"""
import argparse
from typing import Any, Mapping, Optional, Sequence

import torch

DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def add_common_args(parser: argparse.ArgumentParser, devices: Sequence[str] = ('cpu', 'cuda'),
                    quick_help: str = 'small preset for smoke tests; explicit options still win'
                    ) -> None:
    """The options every benchmark has: --device (when it has more than one), --warmup,
    --repeat, --threads, --quick, --no-progress. Unset ones are filled by `finish_args`."""
    if len(devices) > 1:
        parser.add_argument('--device', choices=list(devices), default=None,
                            help='where to run (default: cuda when available, else cpu)')
    else:
        parser.set_defaults(device=devices[0])
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed runs before each measurement (default: the preset)')
    parser.add_argument('--repeat', type=int, default=None,
                        help='timed runs per measurement (default: the preset)')
    parser.add_argument('--threads', type=int, default=None,
                        help="torch CPU threads (default: torch's)")
    parser.add_argument('--quick', action='store_true', help=quick_help)
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on stderr')


def finish_args(args: argparse.Namespace, parser: argparse.ArgumentParser,
                defaults: Mapping[str, Mapping[str, Any]],
                quick: Optional[Mapping[str, Mapping[str, Any]]] = None) -> argparse.Namespace:
    """Pick the device, fill every option left at None from the device's preset (updated by
    the --quick preset), check --warmup / --repeat, apply --threads."""
    if getattr(args, 'device', None) is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but torch sees no CUDA GPU')
    preset = dict(defaults[args.device])
    if getattr(args, 'quick', False) and quick:
        preset.update(quick[args.device])
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, list(value) if isinstance(value, (list, tuple)) else value)
    if args.repeat < 1 or args.warmup < 0:
        parser.error('--repeat must be >= 1 and --warmup >= 0')
    if getattr(args, 'threads', None):
        torch.set_num_threads(args.threads)
    return args


def describe_presets(defaults: Mapping[str, Mapping[str, Any]],
                     quick: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    """The presets as one line for a parser's epilog."""
    def fmt(preset):
        return ' '.join(f'{k}={" ".join(map(str, v)) if isinstance(v, (list, tuple)) else v}'
                        for k, v in preset.items())
    text = 'Defaults when an option is not given: ' + '; '.join(
        f'{d}: {fmt(p)}' for d, p in defaults.items()) + '.'
    if quick:
        text += ' --quick: ' + '; '.join(f'{d}: {fmt(p)}' for d, p in quick.items()) + '.'
    return text
