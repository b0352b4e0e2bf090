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
A progress bar on stderr shows the case being timed (``--no-progress``: none).
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

import torch

from mmvrwkv.analysis import machine, options, plots, report
from mmvrwkv.analysis.accuracy import max_rel_err
from mmvrwkv.analysis.progress import Progress
from mmvrwkv.analysis.report import Column
from mmvrwkv.analysis.timing import measure
from mmvrwkv.models.backbones.vrwkv_adapter import VRWKVAdapter
from mmvrwkv.ops.ms_deform_attn import (DENSE_MAX_ELEMENTS, choose_backend,
                                        ms_deform_attn_dense, ms_deform_attn_grid_sample)

IMPLS = {'grid_sample': ms_deform_attn_grid_sample, 'dense': ms_deform_attn_dense}
# The op has only CPU backends worth comparing here: one preset, and the --quick one.
DEFAULTS = {'cpu': dict(resolutions=[128, 192, 256, 384], batch_sizes=[1, 2, 4], warmup=2,
                        repeat=10)}
QUICK = {'cpu': dict(resolutions=[128, 192], batch_sizes=[1, 4], repeat=5)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                epilog=options.describe_presets(DEFAULTS, QUICK))
    options.add_common_args(p, devices=('cpu', ),
                            quick_help='128 and 192 px, batch 1 and 4, 5 repeats; explicit '
                                       'options still win')
    p.add_argument('--arch', default='tiny', choices=sorted(VRWKVAdapter.arch_zoo))
    p.add_argument('--resolutions', type=int, nargs='+', default=None)
    p.add_argument('--batch-sizes', type=int, nargs='+', default=None)
    p.add_argument('--dense-max-elements', type=int, default=DENSE_MAX_ELEMENTS,
                   help='the dispatch threshold to evaluate (default: the op\'s, '
                   f'{DENSE_MAX_ELEMENTS})')
    p.add_argument('--check', action='store_true',
                   help='also compare the two implementations (output and gradients)')
    p.add_argument('--json', help='write the rows to this file')
    p.add_argument('--plot', help='write a plot (png/pdf/svg) of speed-up vs matrix size')
    args = options.finish_args(p.parse_args(argv), p, DEFAULTS, QUICK)
    for r in args.resolutions:
        if r <= 0 or r % 32:
            p.error(f'--resolutions: {r} is not a positive multiple of 32 (the adapter\'s '
                    f'coarsest stride)')
    if min(args.batch_sizes) <= 0:
        p.error('--batch-sizes must be positive')
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
    """Random values, sampling locations (some just outside the map: zero padding), softmax
    weights and an output gradient; the first three require grad."""
    g = torch.Generator().manual_seed(seed)
    S, L = sum(h * w for h, w in shapes), len(shapes)
    value = torch.randn(batch, S, heads, head_dims, generator=g)
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


def max_difference(inputs, shapes, grad) -> float:
    """Largest relative difference (max |a - b| / max |a|) over the output and the three
    gradients of the two implementations (a: grid_sample)."""
    results = []
    for fn in IMPLS.values():
        out = forward_backward(fn, inputs, shapes, grad)
        results.append([out.detach()] + [t.grad.clone() for t in inputs])
    return max_rel_err(results[1], results[0])


def run_sweep(args, progress=None) -> list:
    """Every resolution x attention x batch size: a row with both times (median, ms)."""
    rows = []
    for res in args.resolutions:
        for name, shapes, queries, heads, head_dims in sampling_cases(args.arch, res):
            for batch in args.batch_sizes:
                if progress is not None:
                    progress.set_description(f'{res}px {name} B{batch}')
                inputs, grad = make_inputs(batch, shapes, queries, heads, head_dims)
                elements = batch * heads * queries * sum(h * w for h, w in shapes)
                picked = choose_backend('cpu', elements, args.dense_max_elements)
                row = dict(resolution=res, attention=name, batch=batch, queries=queries,
                           levels=[list(s) for s in shapes], dense_elements=elements,
                           dispatch='dense' if picked == 'dense' else 'grid_sample')
                for impl, fn in IMPLS.items():
                    timing = measure(lambda: forward_backward(fn, inputs, shapes, grad),
                                     'cpu', args.warmup, args.repeat)
                    row[f'{impl}_ms'] = 1e3 * timing.median
                    row[f'{impl}_spread'] = timing.spread
                row['speedup'] = row['grid_sample_ms'] / row['dense_ms']
                if args.check:
                    row['max_rel_diff'] = max_difference(inputs, shapes, grad)
                rows.append(row)
                if progress is not None:
                    progress.update(1)
    return rows


def columns(check: bool) -> list:
    """The printed table's columns (S = value tokens sampled from, all levels)."""
    cols = [Column('px', 'resolution'), Column('attention', 'attention'),
            Column('B', 'batch'), Column('Q', 'queries'),
            Column('S', lambda r: sum(h * w for h, w in r['levels'])),
            Column('grid_sample', 'grid_sample_ms', '.2f', ' ms'),
            Column('dense', 'dense_ms', '.2f', ' ms'),
            Column('speed-up', 'speedup', '.2f', 'x'),
            Column('elements', 'dense_elements'), Column('dispatch', 'dispatch')]
    if check:
        cols.append(Column('max_rel_diff', 'max_rel_diff', '.1e'))
    return cols


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


def plot(rows: list, arch: str, path: str, threshold: int = DENSE_MAX_ELEMENTS,
         env=None) -> None:
    """Speed-up of dense over grid_sample against the dense matrix size, per attention, with
    the dispatch threshold."""
    fig, axes = plots.subplots(1, 1, panel=(6.5, 4.2))
    ax = axes[0][0]
    for i, name in enumerate(('injector', 'extractor')):
        sel = [r for r in rows if r['attention'] == name]
        style = plots.series_style(i)
        ax.scatter([r['dense_elements'] for r in sel], [r['speedup'] for r in sel],
                   marker=style['marker'], color=style['color'], label=name)
        for r in sel:
            ax.annotate(f'{r["resolution"]}px B{r["batch"]}',
                        (r['dense_elements'], r['speedup']), fontsize=7,
                        textcoords='offset points', xytext=(3, 3))
    ax.axhline(1.0, color='gray', lw=0.8)
    ax.axvline(threshold, color='red', ls='--', lw=0.8, label='dispatch threshold')
    plots.log_axis(ax, 'x')
    plots.log_axis(ax, 'y', base=2, suffix='x')
    ax.set_xlabel('dense matrix elements (B x heads x Q x S); fwd + bwd')
    ax.set_ylabel('speed-up of dense over grid_sample')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    env = env or dict(device='cpu', threads=torch.get_num_threads())
    title = plots.plot_title(f'VRWKV-{arch[0].upper()} adapter: deformable sampling', env,
                             'float32', sorted({r['batch'] for r in rows}))
    plots.save_figure(fig, path, title, dpi=120)


def main(argv=None) -> list:
    args = parse_args(argv)
    env = machine.environment('cpu', 'float32')
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{env["processor"]}; arch {args.arch}, float32, fwd+bwd, median of {args.repeat}')
    total = len(args.resolutions) * 2 * len(args.batch_sizes)
    with Progress(total, 'msda', args.no_progress) as progress:
        rows = run_sweep(args, progress)
    print(report.format_table(columns(args.check), rows))
    print(dispatch_summary(rows, args.dense_max_elements))
    warning = machine.busy_warning(env)
    if warning:
        print(warning)
    doc = dict(tool='benchmark_msda', env=env, torch=torch.__version__,
               threads=torch.get_num_threads(), arch=args.arch,
               threshold=args.dense_max_elements, rows=rows)
    report.write_outputs(args.json, doc, args.plot,
                         lambda path: plot(rows, args.arch, path, args.dense_max_elements, env))
    return rows


if __name__ == '__main__':
    main()
