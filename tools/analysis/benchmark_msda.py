#!/usr/bin/env python
"""Benchmark the adapter's deformable sampling on the CPU: grid_sample vs the dense form.

The VRWKV adapter's deformable attentions sample values in two shapes per interaction:

* injector: the RWKV tokens (``(R/16)^2`` queries) sample the spatial prior's three levels
  (strides 8, 16, 32 of an ``R x R`` input);
* extractor: the spatial prior's tokens (all three levels as queries) sample the RWKV tokens
  (one level, stride 16).

For every input side ``R`` (``--resolutions``) and batch size (``--batch-sizes``) both shapes
are timed with the arch's heads and value width (``--arch``; 4 points per level), for the two
CPU backends of the op ``mmvrwkv.ops.ms_deform_attn``:

* ``grid_sample``: one ``grid_sample`` per level (what mmcv's CPU path does too);
* ``dense``: one ``[Q, S]`` matrix per batch item and head, then a matrix product.

Timing: median of ``--repeat`` runs after ``--warmup``, forward + backward (``.backward()``
of the output against a fixed random gradient, all three inputs requiring grad), float32.
Columns: both times, ``speed-up`` = grid_sample / dense, the dense matrix's element count
(``B * heads * Q * S``) and which one the adapter's dispatch takes
(``choose_backend``, i.e. up to ``DENSE_MAX_ELEMENTS``); a last line says in
how many cases that was the faster one and the worst slow-down a wrong pick costs. ``--check``
also reports the largest relative difference between the two (output and gradients).
``--json`` writes every row, ``--plot`` draws the speed-up against the dense element count
with the dispatch threshold.

Examples::

    python tools/analysis/benchmark_msda.py                  # 128..384 px, batch 1, 2, 4
    python tools/analysis/benchmark_msda.py --quick --check  # a few seconds
    python tools/analysis/benchmark_msda.py --arch base --resolutions 128 256 --plot msda.png
"""
import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import torch  # noqa: E402

from mmvrwkv.models.backbones.vrwkv_adapter import VRWKVAdapter  # noqa: E402
from mmvrwkv.ops.ms_deform_attn import (DENSE_MAX_ELEMENTS, choose_backend,  # noqa: E402
                                        ms_deform_attn_dense, ms_deform_attn_grid_sample)

IMPLS = {'grid_sample': ms_deform_attn_grid_sample, 'dense': ms_deform_attn_dense}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='tiny', choices=sorted(VRWKVAdapter.arch_zoo))
    p.add_argument('--resolutions', type=int, nargs='+', default=[128, 192, 256, 384])
    p.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 2, 4])
    p.add_argument('--dense-max-elements', type=int, default=DENSE_MAX_ELEMENTS,
                   help='the dispatch threshold to evaluate (default: the op\'s, '
                   f'{DENSE_MAX_ELEMENTS})')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeat', type=int, default=10)
    p.add_argument('--quick', action='store_true',
                   help='128 and 192 px, batch 1 and 4, 5 repeats')
    p.add_argument('--check', action='store_true',
                   help='also compare the two implementations (output and gradients)')
    p.add_argument('--json', help='write the rows to this file')
    p.add_argument('--plot', help='write a plot (png/pdf/svg) of speed-up vs matrix size')
    args = p.parse_args(argv)
    if args.quick:
        args.resolutions, args.batch_sizes, args.repeat = [128, 192], [1, 4], 5
    for r in args.resolutions:
        if r <= 0 or r % 32:
            p.error(f'--resolutions: {r} is not a positive multiple of 32 (the adapter\'s '
                    f'coarsest stride)')
    if min(args.batch_sizes) <= 0 or args.repeat <= 0 or args.warmup < 0:
        p.error('--batch-sizes and --repeat must be positive, --warmup not negative')
    return args


def sampling_cases(arch: str, res: int):
    """``(name, level shapes, number of queries, heads, value width per head)`` of the
    injector and extractor of ``arch`` at an ``res x res`` input."""
    settings = VRWKVAdapter.arch_zoo[arch]
    heads = settings['deform_num_heads']
    head_dims = int(settings['embed_dims'] * settings['deform_ratio']) // heads
    prior = [(res // s, res // s) for s in (8, 16, 32)]
    tokens = (res // 16, res // 16)
    return [('injector', prior, tokens[0] * tokens[1], heads, head_dims),
            ('extractor', [tokens], sum(h * w for h, w in prior), heads, head_dims)]


def make_inputs(batch, shapes, queries, heads, head_dims, points=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    S, L = sum(h * w for h, w in shapes), len(shapes)
    value = torch.randn(batch, S, heads, head_dims, generator=g)
    # locations around the map, some just outside (zero padding)
    loc = torch.rand(batch, queries, heads, L, points, 2, generator=g) * 1.2 - 0.1
    weights = torch.rand(batch, queries, heads, L, points, generator=g).softmax(-1)
    grad = torch.randn(batch, queries, heads * head_dims, generator=g)
    return [t.requires_grad_() for t in (value, loc, weights)], grad


def forward_backward(fn, inputs, shapes, grad) -> torch.Tensor:
    """One ``fn`` call on ``inputs`` (value, locations, weights) and its backward against
    ``grad``, with the inputs' ``.grad`` reset first; returns the output."""
    for t in inputs:
        t.grad = None
    out = fn(inputs[0], shapes, inputs[1], inputs[2])
    out.backward(grad)
    return out


def time_impl(fn, inputs, shapes, grad, warmup, repeat) -> float:
    for _ in range(warmup):
        forward_backward(fn, inputs, shapes, grad)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        forward_backward(fn, inputs, shapes, grad)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def max_difference(inputs, shapes, grad) -> float:
    """Largest relative difference (max |a - b| / max |a|) over the output and the three
    gradients of the two implementations."""
    results = []
    for fn in IMPLS.values():
        out = forward_backward(fn, inputs, shapes, grad)
        results.append([out.detach()] + [t.grad.clone() for t in inputs])
    return max(((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()
               for a, b in zip(*results))


def run_sweep(args) -> list:
    rows = []
    for res in args.resolutions:
        for name, shapes, queries, heads, head_dims in sampling_cases(args.arch, res):
            for batch in args.batch_sizes:
                inputs, grad = make_inputs(batch, shapes, queries, heads, head_dims)
                elements = batch * heads * queries * sum(h * w for h, w in shapes)
                row = dict(resolution=res, attention=name, batch=batch, queries=queries,
                           levels=[list(s) for s in shapes], dense_elements=elements,
                           dispatch='dense' if choose_backend('cpu', elements, args.dense_max_elements) == 'dense'
                           else 'grid_sample')
                for impl, fn in IMPLS.items():
                    row[f'{impl}_ms'] = 1e3 * time_impl(fn, inputs, shapes, grad,
                                                        args.warmup, args.repeat)
                row['speedup'] = row['grid_sample_ms'] / row['dense_ms']
                if args.check:
                    row['max_rel_diff'] = max_difference(inputs, shapes, grad)
                rows.append(row)
                print(format_row(row, args.check), flush=True)
    return rows


HEADER = (f'{"px":>5} {"attention":>9} {"B":>3} {"Q":>6} {"S":>6} {"grid_sample":>12} '
          f'{"dense":>9} {"speed-up":>9} {"elements":>10} {"dispatch":>11}')


def format_row(row: dict, check: bool) -> str:
    S = sum(h * w for h, w in row['levels'])
    line = (f'{row["resolution"]:>5} {row["attention"]:>9} {row["batch"]:>3} '
            f'{row["queries"]:>6} {S:>6} {row["grid_sample_ms"]:>9.2f} ms '
            f'{row["dense_ms"]:>6.2f} ms {row["speedup"]:>8.2f}x {row["dense_elements"]:>10} '
            f'{row["dispatch"]:>11}')
    if check:
        line += f'  max rel. diff {row["max_rel_diff"]:.1e}'
    return line


def dispatch_summary(rows: list, threshold: int = DENSE_MAX_ELEMENTS) -> str:
    """How often the adapter's size threshold picks the implementation that was faster here,
    and the worst slow-down it causes (time of its pick / time of the faster one)."""
    def cost(row):
        picked = row[f'{row["dispatch"]}_ms']
        return picked / min(row['grid_sample_ms'], row['dense_ms'])
    good = sum(cost(r) == 1.0 for r in rows)
    worst = max(rows, key=cost)
    return (f'dispatch (dense up to {threshold} elements) took the faster '
            f'implementation in {good} of {len(rows)} cases; worst pick: {cost(worst):.2f}x '
            f'the faster one ({worst["resolution"]} px {worst["attention"]} B{worst["batch"]})')


def plot(rows: list, arch: str, path: str, threshold: int = DENSE_MAX_ELEMENTS) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker as ticker
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, marker in (('injector', 'o'), ('extractor', 's')):
        sel = [r for r in rows if r['attention'] == name]
        ax.scatter([r['dense_elements'] for r in sel], [r['speedup'] for r in sel],
                   marker=marker, label=name)
        for r in sel:
            ax.annotate(f'{r["resolution"]}px B{r["batch"]}',
                        (r['dense_elements'], r['speedup']), fontsize=7,
                        textcoords='offset points', xytext=(3, 3))
    ax.axhline(1.0, color='gray', lw=0.8)
    ax.axvline(threshold, color='red', ls='--', lw=0.8,
               label='dispatch threshold')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_yticks([0.25, 0.5, 1, 2, 4])
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter('%gx'))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel('dense matrix elements (B x heads x Q x S)')
    ax.set_ylabel('speed-up of dense over grid_sample (fwd+bwd)')
    ax.set_title(f'VRWKV-{arch[0].upper()} adapter: deformable sampling on the CPU '
                 f'({torch.get_num_threads()} threads)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> list:
    args = parse_args(argv)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{platform.processor() or platform.machine()}; arch {args.arch}, float32, '
          f'fwd+bwd, median of {args.repeat}')
    print(HEADER)
    rows = run_sweep(args)
    print(dispatch_summary(rows, args.dense_max_elements))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(torch=torch.__version__, threads=torch.get_num_threads(),
                           arch=args.arch, threshold=args.dense_max_elements,
                           rows=rows), f, indent=1)
    if args.plot:
        plot(rows, args.arch, args.plot, args.dense_max_elements)
        print(f'plot: {args.plot}')
    return rows


if __name__ == '__main__':
    main()
