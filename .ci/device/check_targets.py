#!/usr/bin/env python
"""Compare a benchmark's JSON (``--json``) with the project's acceptance targets.

The targets and their evaluation are ``mmvrwkv.analysis.targets`` (names, defaults and what
each one measures are listed there); ``benchmark_bi_wkv.py`` prints the same lines after its
table (and puts them in its JSON as ``targets``). This command line evaluates stored JSON
files, e.g. those of a device run (.ci/device/gpu_check.sh). One line per target: PASS,
FAIL or SKIP (no rows it applies to), with how many configurations meet it and the worst one.

Examples::

    python .ci/device/check_targets.py bench_bf16.json bench_fp32.json
    python .ci/device/check_targets.py bench.json --target cpu_fwd_x_copy=5 --strict

Exit status: 0, or 1 with ``--strict`` when a target FAILs; 2 for an unreadable file or a
benchmark without targets.
"""
import argparse
import json
import sys
from typing import Optional, Sequence

from mmvrwkv.analysis import targets
from mmvrwkv.analysis.targets import TARGET_NAMES, evaluate, format_results


def _target(text: str) -> tuple:
    name, sep, value = text.partition('=')
    if not sep:
        raise argparse.ArgumentTypeError(f'expected NAME=VALUE, got {text!r}')
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r}: {value!r} is not a number') from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog=__doc__.split('\n\n', 1)[1] + '\n'
                                + targets.__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('json', nargs='+', help="benchmark JSON files (written with --json)")
    p.add_argument('--target', type=_target, action='append', default=[],
                   metavar='NAME=VALUE', help='override a target (repeatable)')
    p.add_argument('--strict', action='store_true', help='exit with status 1 when a target FAILs')
    args = p.parse_args(argv)
    overrides = dict(args.target)
    unknown = sorted(set(overrides) - TARGET_NAMES)
    if unknown:
        p.error(f'unknown target(s) {unknown}; known: {sorted(TARGET_NAMES)}')
    failed = False
    for path in args.json:
        try:
            with open(path) as f:
                doc = json.load(f)
            results = evaluate(doc, overrides)
        except (OSError, ValueError, KeyError) as e:
            print(f'{path}: cannot check: {type(e).__name__}: {e}', file=sys.stderr)
            return 2
        print(f"# {path} ({doc.get('tool')}, {doc.get('args', {}).get('device')}, "
              f"{doc.get('args', {}).get('dtype')})")
        for line in format_results(results):
            print(line)
        failed |= any(r['status'] == 'FAIL' for r in results)
    return 1 if failed and args.strict else 0


if __name__ == '__main__':
    sys.exit(main())
