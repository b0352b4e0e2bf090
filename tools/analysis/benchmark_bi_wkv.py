#!/usr/bin/env python
"""Benchmark the Bi-WKV op (or, with ``--op bi_wkv6``, the Bi-WKV6 op of VRWKV6) per backend:
forward and forward+backward time.

For every (B, T, C) configuration and every backend (default: the compiled backend of the
device plus the portable 'torch' backend; 'reference' is never timed) the median time of
``--repeat`` runs is measured after ``--warmup`` runs, for the forward pass alone (under
``torch.no_grad``) and for forward + backward (``torch.autograd.grad`` of y w.r.t. w, u, k, v
with a random grad_y, no ``.grad`` accumulation).

A baseline is measured in the same run:

* CPU: a plain copy of k and v (``k.clone(); v.clone()``) per configuration. Columns:
  ``vs_torch`` = torch_time / backend_time (speed-up over the 'torch' backend) and
  ``x_copy`` = backend_time / copy_time.
* CUDA: the device copy bandwidth (one large ``dst.copy_(src)``, bytes read + written / time).
  Columns: ``GB/s`` of the op and ``%copy`` = that over the copy bandwidth. Bytes counted:
  forward reads k, v and writes y (3 elements per B*T*C); forward + backward adds reading k,
  v, grad_y and writing grad_k, grad_v (8 elements in all). w, u and their gradients are [C]
  and not counted.

``--op bi_wkv6`` times ``mmvrwkv.ops.bi_wkv6(r, k, v, w, u)`` instead, with heads of
``--head-size`` channels (default 64; it must divide every C), decay logits w ~ U(-6, -1)
(the range of VRWKV6's 'fancy' init) and u ~ U(-1, 1); the gradients are those of r, k, v, w,
u, and the bytes counted are r, k, v, w read and y written (5 elements per B*T*C) forward,
plus r, k, v, w, grad_y read and their four gradients written (14 in all) forward + backward.
Its target (mmvrwkv/analysis/targets.py): the CPU kernel >= 5x the 'torch' backend at T = 4096.

``--check`` compares every backend's output (and, for fwd+bwd, all four gradients) with the
'torch' backend (the 'torch' rows are compared with the float64 O(T^2) 'reference' while
that is cheap) and adds the column ``max_rel_err`` = max|x - x_ref| / max|x_ref|, the worst
over the compared tensors.

At the end, PASS/FAIL/SKIP lines report the project's targets, as
``mmvrwkv.analysis.targets`` evaluates them on this run's JSON (the targets are defined
there; the check_targets command line does the same on stored JSON files): CPU kernel
forward >= 15x 'torch' and <= 4x the copy time (B*T*C >= --target-min-elems, default 2^19);
CUDA kernel in bf16 with B*T*C >= 2^24 at >= 70 % (fwd) and >= 50 % (fwd+bwd) of the copy
bandwidth; with --check every max_rel_err within --check-tol.

Threads: on the CPU, the 'torch' backend is ~70 small aten ops per call (casts, exp, products,
cumsums, ...), most of them a fork-join over torch's OpenMP threads, while the kernel is one
parallel region. OpenMP's
default lets idle threads spin at its barriers; on a machine whose cores other processes also
use, the spinning master holds a core while its preempted worker waits for a scheduler slice,
so every op can stall for milliseconds: with 2 threads on 2 shared cores the 'torch' backend
took 100-400 ms per call at T = 196 (1-2 ms without the stalls) and its timings, and
``vs_torch``, meant nothing. So this tool sets ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads
sleep) unless the environment sets it; it takes effect only when the tool starts the process
(python tools/analysis/benchmark_bi_wkv.py), not when torch was imported before. Passive
waiting costs a thread wake-up (microseconds) per parallel region on a quiet machine; run with
``OMP_WAIT_POLICY=ACTIVE`` to measure spinning workers there. The header line and the JSON
(``env.omp_wait_policy``) say which policy a run used.

Examples::

    python tools/analysis/benchmark_bi_wkv.py --quick
    python tools/analysis/benchmark_bi_wkv.py --device cpu --T 196 1024 4096 --C 192 768 --B 1 8
    python tools/analysis/benchmark_bi_wkv.py --device cuda --dtype bfloat16 --check \\
        --json bench.json --plot bench.png
"""
import argparse
import functools
import math
import os
import sys
import time

# Set before torch (and with it OpenMP) loads; why: "Threads" in the module docstring.
OMP_WAIT_POLICY = os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
_OMP_POLICY_APPLIED = 'torch' not in sys.modules  # too late when torch is already imported

import torch  # noqa: E402

from mmvrwkv.analysis import machine, options, plots, report  # noqa: E402
from mmvrwkv.analysis.accuracy import max_rel_err  # noqa: E402
from mmvrwkv.analysis.memory import free_memory  # noqa: E402
from mmvrwkv.analysis.progress import Progress  # noqa: E402
from mmvrwkv.analysis.report import Column  # noqa: E402
from mmvrwkv.analysis.targets import evaluate, format_results  # noqa: E402
from mmvrwkv.analysis.timing import measure  # noqa: E402
from mmvrwkv.ops import available_backends, bi_wkv, bi_wkv6  # noqa: E402

MODES = ('fwd', 'fwdbwd')
# Elements of size B*T*C moved through memory per call (see the module docstring).
ELEMS_MOVED = {'fwd': 3, 'fwdbwd': 8}
ELEMS_MOVED_V6 = {'fwd': 5, 'fwdbwd': 14}
OPS = ('bi_wkv', 'bi_wkv6')

# Defaults per device; --quick replaces them with a preset that finishes in seconds.
DEFAULTS = {
    'cpu': dict(T=[196, 1024, 4096, 16384], C=[192, 768], B=[1, 8], warmup=1, repeat=5,
                budget=1.0, max_elems=2**22),
    'cuda': dict(T=[196, 1024, 4096, 16384], C=[192, 768], B=[1, 8, 64], warmup=3, repeat=20,
                 budget=0.3, max_elems=2**28),
}
QUICK = {
    'cpu': dict(T=[196, 1024, 4096], C=[192], B=[1], warmup=1, repeat=3, budget=0.3),
    'cuda': dict(T=[196, 4096], C=[768], B=[1, 8], warmup=2, repeat=10, budget=0.2),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                epilog=options.describe_presets(DEFAULTS, QUICK),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_common_args(p, quick_help='small preset (CPU: < 20 s on 2 cores) for smoke '
                                          'tests; explicit --T/--C/--B/--warmup/--repeat '
                                          'still win')
    p.add_argument('--op', choices=OPS, default='bi_wkv',
                   help='the op: bi_wkv (VRWKV) or bi_wkv6 (VRWKV6; see --head-size)')
    p.add_argument('--head-size', type=int, default=64,
                   help='bi_wkv6: channels per head (must divide every --C)')
    p.add_argument('--backends', nargs='+', default=None,
                   help="backends to time (default: the compiled backend of the device, if built, "
                        "plus 'torch'); 'reference' is not allowed")
    p.add_argument('--T', type=int, nargs='+', default=None, help='token counts')
    p.add_argument('--C', type=int, nargs='+', default=None, help='channel counts')
    p.add_argument('--B', type=int, nargs='+', default=None, help='batch sizes')
    p.add_argument('--dtype', choices=sorted(options.DTYPES), default='float32',
                   help='dtype of k, v (w, u stay float32)')
    p.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES),
                   help='fwd = forward only (no_grad); fwdbwd = forward + backward')
    p.add_argument('--stat', choices=['median', 'min'], default='median',
                   help='statistic of the timed runs (min helps on a busy shared machine)')
    p.add_argument('--budget', type=float, default=None,
                   help='seconds per measurement after which repeating stops early '
                        '(at least 3 timed runs are always made)')
    p.add_argument('--max-elems', type=int, default=None,
                   help='skip configurations with B*T*C above this')
    p.add_argument('--chunk-len', type=int, default=None,
                   help='chunk_len passed to the compiled backends (default: theirs)')
    p.add_argument('--check', action='store_true',
                   help="compare outputs (and gradients) with the 'torch' backend; adds "
                        'max_rel_err')
    p.add_argument('--check-tol', type=float, default=None,
                   help='tolerance of the --check target (default: 1e-3 float32, 1e-2 float16, '
                        '5e-2 bfloat16; see mmvrwkv/analysis/targets.py)')
    p.add_argument('--target-min-elems', type=int, default=None,
                   help='configurations with B*T*C at least this count for the CPU targets '
                        '(default 2^19); the CUDA targets always use 2^24 in bf16')
    p.add_argument('--copy-mib', type=int, default=1024,
                   help='CUDA: MiB of the tensor copied to measure the copy bandwidth')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', metavar='FILE', help='save rows, targets and environment as JSON')
    p.add_argument('--plot', metavar='FILE', help='save a plot (PNG) of time or GB/s vs T')
    p.add_argument('--plot-metric', choices=['auto', 'time', 'gbps'], default='auto',
                   help='plotted quantity (auto: GB/s on cuda, time on cpu)')
    p.add_argument('--strict', action='store_true', help='exit with status 1 when a target FAILs')
    args = options.finish_args(p.parse_args(argv), p, DEFAULTS, QUICK)

    backends = available_backends(args.op)
    usable = [b for b in backends if b != 'reference']
    if args.backends is None:
        args.backends = [b for b in usable if b == args.device] + ['torch']
    for b in args.backends:
        if b == 'reference':
            p.error("'reference' is O(T^2) float64 (tests only) and is not benchmarked")
        if b not in ('cpu', 'cuda', 'torch'):
            p.error(f'unknown backend {b!r}')
        if b in ('cpu', 'cuda') and b != args.device:
            p.error(f'backend {b!r} needs --device {b}')
        if b not in usable:
            p.error(f'backend {b!r} is not available here (available: {usable})')
    if min(args.T + args.C + args.B) < 1:
        p.error('--T, --C and --B must be positive')
    if args.op == 'bi_wkv6':
        if args.head_size < 1 or any(C % args.head_size for C in args.C):
            p.error(f'--head-size {args.head_size} must be >= 1 and divide every --C {args.C}')
        if args.chunk_len is not None:
            p.error('--chunk-len applies to --op bi_wkv only')
    return args


# ----------------------------------------------------------------------------- cases

def copy_bandwidth(mib: int, warmup: int = 3, repeat: int = 20) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written per second)."""
    n = mib * 2**20 // 4
    src = torch.randn(n, device='cuda')
    dst = torch.empty_like(src)
    t = measure(functools.partial(dst.copy_, src), 'cuda', warmup, repeat, budget=2.0).value
    gbps = 2 * src.numel() * src.element_size() / t / 1e9
    del src, dst
    torch.cuda.empty_cache()
    return gbps


def make_inputs(B, T, C, dtype, device, gen):
    """w, u as a model passes them (spatial_decay / T, spatial_first / T), random k, v, grad_y."""
    decay = torch.rand(C, generator=gen, device=device) * 6 - 3
    first = torch.rand(C, generator=gen, device=device) * 2 - 1
    w, u = decay / T, first / T
    k, v, gy = (torch.randn(B, T, C, generator=gen, device=device, dtype=dtype) for _ in range(3))
    return w, u, k, v, gy


def make_inputs_v6(B, T, C, head_size, dtype, device, gen):
    """r, k, v, grad_y ~ N(0, 1) in dtype, decay logits w ~ U(-6, -1) [B, T, C] and bonus
    u ~ U(-1, 1) [H, head_size] in float32 (as VRWKV6 passes them)."""
    r, k, v, gy = (torch.randn(B, T, C, generator=gen, device=device, dtype=dtype)
                   for _ in range(4))
    w = torch.rand(B, T, C, generator=gen, device=device) * 5 - 6
    u = torch.rand(C // head_size, head_size, generator=gen, device=device) * 2 - 1
    return r, k, v, w, u, gy


def make_case(args, B, T, C, dtype, device, gen):
    """The inputs of args.op, grad_y last."""
    if args.op == 'bi_wkv6':
        return make_inputs_v6(B, T, C, args.head_size, dtype, device, gen)
    return make_inputs(B, T, C, dtype, device, gen)


def kv_of(op, inputs):
    """(k, v) of an input tuple of ``op``."""
    return inputs[1:3] if op == 'bi_wkv6' else inputs[2:4]


def run_op(backend, mode, inputs, chunk_len=None, op='bi_wkv'):
    """One call; returns y (fwd) or the gradients of the op's tensor arguments (fwdbwd)."""
    if op == 'bi_wkv6':
        *xs, gy = inputs
        if mode == 'fwd':
            with torch.no_grad():
                return bi_wkv6(*xs, backend=backend)
        leaves = [x.detach().requires_grad_(True) for x in xs]
        return torch.autograd.grad(bi_wkv6(*leaves, backend=backend), leaves, gy)
    w, u, k, v, gy = inputs
    kw = {'backend': backend}
    if chunk_len is not None and backend in ('cpu', 'cuda'):
        kw['chunk_len'] = chunk_len
    if mode == 'fwd':
        with torch.no_grad():
            return bi_wkv(w, u, k, v, **kw)
    leaves = [x.detach().requires_grad_(True) for x in (w, u, k, v)]
    y = bi_wkv(*leaves, **kw)
    return torch.autograd.grad(y, leaves, gy)


def estimate_bytes(N, es, backends, mode, check, op='bi_wkv'):
    """Rough peak memory of one configuration (the 'torch' backend keeps ~20 float32
    temporaries of size B*T*C in fwd+bwd, ~10 in fwd; for bi_wkv6 its intra-chunk decay
    matrices, ~4 of 32 * B*T*C floats, per direction, kept for backward)."""
    fp32 = 4 * N
    need = 4 * N * es  # k, v, grad_y, y
    if op == 'bi_wkv6' and ('torch' in backends or check):
        need += (8 if mode == 'fwdbwd' else 4) * 32 * fp32
    elif 'torch' in backends or check:
        need += (20 if mode == 'fwdbwd' else 10) * fp32
    else:
        need += (6 if mode == 'fwdbwd' else 2) * N * es
    return need


def benchmark(args, progress):
    """Every (B, C, T) configuration x backend x mode: a list of row dicts."""
    device, dtype = args.device, options.DTYPES[args.dtype]
    gen = torch.Generator(device=device).manual_seed(args.seed)
    rows = []
    l2 = 0
    if device == 'cuda':
        l2 = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()),
                     'L2_cache_size', 0) or 0
    for B in args.B:
        for C in args.C:
            for T in args.T:
                N = B * T * C
                base = dict(op=args.op, device=device, dtype=args.dtype, B=B, T=T, C=C, elems=N)
                todo = [(b, m) for m in args.modes for b in args.backends]
                skip = None
                if N > args.max_elems:
                    skip = f'B*T*C={N} > --max-elems={args.max_elems}'
                elif device == 'cuda':
                    free, _ = torch.cuda.mem_get_info()
                    need = max(estimate_bytes(N, torch.finfo(dtype).bits // 8, args.backends, m,
                                              args.check, args.op) for m in args.modes)
                    if need > 0.8 * free:
                        skip = f'needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free'
                progress.set_description(f'B={B} T={T} C={C}')
                if not skip:
                    try:
                        rows.extend(bench_config(args, base, todo, gen, l2, progress))
                    except torch.cuda.OutOfMemoryError as e:  # pragma: no cover - GPU only
                        skip = f'out of memory: {str(e).splitlines()[0][:80]}'
                    if skip:  # pragma: no cover - GPU only (outside `except`: frees the frames)
                        free_memory(device)
                if skip:
                    for b, m in todo:
                        rows.append(dict(base, backend=b, mode=m, status='skipped', reason=skip))
                        progress.update(1)
    return rows


def bench_config(args, base, todo, gen, l2, progress):
    """All backends and modes of one configuration (plus its copy baseline and --check)."""
    device, dtype = args.device, options.DTYPES[args.dtype]
    B, T, C, N = base['B'], base['T'], base['C'], base['elems']
    es = torch.finfo(dtype).bits // 8
    # Rotate input sets so that small problems are not timed out of the GPU's L2 cache.
    n_sets = 1
    if device == 'cuda' and l2:
        n_sets = max(1, min(8, math.ceil(4 * l2 / (3 * N * es))))
    sets = [make_case(args, B, T, C, dtype, device, gen) for _ in range(n_sets)]
    out = []

    copy_s = None
    if device == 'cpu':
        k, v = kv_of(args.op, sets[0])
        # Cheap and noisy: at least 10 timed copies.
        copy_s = measure(lambda: (k.clone(), v.clone()), device, max(args.warmup, 1),
                         max(args.repeat, 10), min(args.budget, 0.5), args.stat).value

    refs = {}
    if args.check:
        for mode in args.modes:
            refs[('torch', mode)] = run_op('torch', mode, sets[0], op=args.op)
            # The 'torch' rows are checked against the float64 O(T^2) reference while it is cheap.
            if B * T * T * C <= 2**23:
                refs[('reference', mode)] = run_op('reference', mode, sets[0], op=args.op)

    times = {}
    for backend, mode in todo:
        row = dict(base, backend=backend, mode=mode)
        counter = [0]

        def fn(backend=backend, mode=mode, counter=counter):
            counter[0] += 1
            return run_op(backend, mode, sets[counter[0] % n_sets], args.chunk_len, args.op)

        try:
            timing = measure(fn, device, args.warmup, args.repeat, args.budget, args.stat)
        except torch.cuda.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError) as e:
            row.update(status='error', reason=f'{type(e).__name__}: {str(e).splitlines()[0][:120]}')
            out.append(row)
            progress.update(1)
            continue
        t = timing.value
        times[(backend, mode)] = t
        moved = (ELEMS_MOVED_V6 if args.op == 'bi_wkv6' else ELEMS_MOVED)[mode] * N * es
        row.update(status='ok', time_ms=t * 1e3, times_ms=[s * 1e3 for s in timing.samples],
                   time_min_ms=timing.min * 1e3, spread=timing.spread, threads=timing.threads,
                   gbps=moved / t / 1e9, bytes=moved, input_sets=n_sets)
        if copy_s is not None:
            row.update(copy_ms=copy_s * 1e3, x_copy=t / copy_s,
                       copy_gbps=4 * N * es / copy_s / 1e9)
        if args.check:
            ref_name = 'reference' if backend == 'torch' else 'torch'
            ref = refs.get((ref_name, mode))
            if ref is not None:
                row['max_rel_err'] = max_rel_err(
                    run_op(backend, mode, sets[0], args.chunk_len, args.op), ref)
                row['check_against'] = ref_name
        out.append(row)
        progress.update(1)
    for row in out:
        t_torch = times.get(('torch', row['mode']))
        if row.get('status') == 'ok' and t_torch:
            row['vs_torch'] = t_torch / (row['time_ms'] / 1e3)
    sets.clear()  # (the timed closures hold the list) free the inputs before the next size
    refs.clear()
    if device == 'cuda':
        torch.cuda.empty_cache()
    return out


# ----------------------------------------------------------------------------- report

def columns(device, check, copy_gbps=None):
    """The table's columns: x_copy on the CPU, %copy (of the copy bandwidth) on CUDA."""
    cols = [Column('backend', 'backend'), Column('mode', 'mode'), Column('dtype', 'dtype'),
            Column('B', 'B'), Column('T', 'T'), Column('C', 'C'),
            Column('time_ms', 'time_ms', '.4g'), Column('GB/s', 'gbps', '.1f'),
            Column('vs_torch', 'vs_torch', '.2f')]
    if device == 'cpu':
        cols.append(Column('x_copy', 'x_copy', '.2f'))
    else:
        cols.append(Column('%copy', lambda r: 100 * r['gbps'] / copy_gbps if copy_gbps else None,
                           '.1f'))
    if check:
        cols.append(Column('max_rel_err', 'max_rel_err', '.2e'))
    return cols


def format_table(rows, device, check, copy_gbps=None):
    """The printed table; skipped / failed rows show their reason after B, T, C."""
    def note(r):
        return None if r.get('status') == 'ok' else f"{r.get('status')}: {r.get('reason', '')}"
    return report.format_table(columns(device, check, copy_gbps), rows, note=note, lead=6)


def copy_baseline_points(rows, mode, C, B):
    """(T, copy_ms) of the CPU copy baseline for one panel (mode, C) and batch B, by T."""
    return sorted({r['T']: r['copy_ms'] for r in rows if r['mode'] == mode and r['C'] == C
                   and r['B'] == B and r.get('copy_ms')}.items())


def plot_copy_baseline(ax, rows, mode, C, Bs):
    """The time to copy k and v, in black, one dotted line per batch size (CPU runs)."""
    for i, B in enumerate(Bs):
        pts = copy_baseline_points(rows, mode, C, B)
        if pts:
            ax.plot(*zip(*pts), color='k', linestyle=':', linewidth=1.0,
                    marker=plots.MARKERS[i % len(plots.MARKERS)], markersize=3,
                    label=f'copy k, v B={B}')


def plot(rows, args, copy_gbps, path, env=None):
    """Time (or GB/s) vs T: a panel per (mode, C), a line per (backend, B), and the
    baseline: the copy time of k and v (CPU) or the copy bandwidth (CUDA) in black."""
    metric = args.plot_metric
    if metric == 'auto':
        metric = 'gbps' if args.device == 'cuda' else 'time'
    ok = [r for r in rows if r.get('status') == 'ok']
    modes = [m for m in args.modes if any(r['mode'] == m for r in ok)] or list(args.modes)
    Cs = sorted({r['C'] for r in ok}) or list(args.C)
    fig, axes = plots.subplots(len(modes), len(Cs))
    for i, mode in enumerate(modes):
        for j, C in enumerate(Cs):
            ax = axes[i][j]
            series = 0
            for backend in args.backends:
                for B in args.B:
                    pts = sorted((r['T'], r['gbps'] if metric == 'gbps' else r['time_ms'])
                                 for r in ok if r['mode'] == mode and r['C'] == C
                                 and r['backend'] == backend and r['B'] == B)
                    if pts:
                        ax.plot(*zip(*pts), label=f'{backend} B={B}',
                                **plots.series_style(series, dashed=backend == 'torch'))
                    series += 1
            if metric == 'gbps' and copy_gbps:
                ax.axhline(copy_gbps, color='k', linewidth=0.8, linestyle=':',
                           label=f'copy {copy_gbps:.0f} GB/s')
            if metric == 'time':
                plot_copy_baseline(ax, ok, mode, C, args.B)
            plots.log_axis(ax, 'x', sorted({r['T'] for r in ok} or args.T))
            if ax.has_data():
                plots.log_axis(ax, 'y')
                ax.legend(fontsize=7)
            ax.set_xlabel('T (tokens)')
            ax.set_ylabel('GB/s' if metric == 'gbps' else 'time (ms)')
            ax.set_title(f'{mode}, C={C}')
            ax.grid(True, which='both', alpha=0.3)
    env = env or dict(device=args.device, device_name=args.device,
                      threads=torch.get_num_threads())
    what = 'Bi-WKV op ' + ('bandwidth' if metric == 'gbps' else 'time')
    plots.save_figure(fig, path, plots.plot_title(what, env, args.dtype, args.B), dpi=100)


def main(argv=None):
    args = parse_args(argv)
    env = machine.environment(args.device, args.dtype)
    env['omp_wait_policy'] = OMP_WAIT_POLICY if _OMP_POLICY_APPLIED else 'set before torch loaded'
    copy_gbps = copy_bandwidth(args.copy_mib) if args.device == 'cuda' else None
    total = len(args.B) * len(args.C) * len(args.T) * len(args.backends) * len(args.modes)
    t0 = time.perf_counter()
    with Progress(total, args.op, args.no_progress) as progress:
        rows = benchmark(args, progress)
    elapsed = time.perf_counter() - t0

    print(f"# {args.op} benchmark: device={args.device} ({env['device_name']}), "
          f"dtype={args.dtype}, "
          f"torch {env['torch']}, threads={env['threads']}, backends={args.backends}, "
          f"warmup={args.warmup}, repeat={args.repeat} ({args.stat}), "
          f"OMP_WAIT_POLICY={env['omp_wait_policy']}")
    if args.device == 'cpu':
        print("# baseline: copy = k.clone(); v.clone() per configuration; "
              "vs_torch = torch_time / time; x_copy = time / copy_time")
    else:
        print(f'# baseline: device copy bandwidth {copy_gbps:.1f} GB/s ({args.copy_mib} MiB, '
              'read + write); GB/s counts k, v read + y written (fwd) and + k, v, grad_y read, '
              'grad_k, grad_v written (fwdbwd); %copy = GB/s / copy bandwidth')
    warning = machine.busy_warning(env, ' (multi-threaded ops suffer most; --threads 1 and '
                                        '--stat min help)')
    if warning:
        print(warning)
    print(format_table(rows, args.device, args.check, copy_gbps))
    doc = dict(tool='benchmark_bi_wkv', env=env, args=vars(args),
               baseline=dict(kind='clone' if args.device == 'cpu' else 'device_copy',
                             copy_gbps=copy_gbps, copy_mib=args.copy_mib if copy_gbps else None),
               rows=rows, elapsed_s=elapsed)
    doc['targets'] = targets = evaluate(doc)
    print(f'# {len(rows)} rows in {elapsed:.1f} s')
    for line in format_results(targets):
        print(line)
    report.write_outputs(args.json, doc, args.plot,
                         lambda path: plot(rows, args, copy_gbps, path, env))
    if args.strict and any(t['status'] == 'FAIL' for t in targets):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
