#!/usr/bin/env python
"""Benchmark the Bi-WKV op per backend: forward and forward+backward time.

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

``--check`` compares every backend's output (and, for fwd+bwd, all four gradients) with the
'torch' backend (the 'torch' rows are compared with the float64 O(T^2) 'reference' while
that is cheap) and adds the column ``max_rel_err`` = max|x - x_ref| / max|x_ref|, the worst
over the compared tensors.

At the end, PASS/FAIL/SKIP lines report the project's targets:

* CPU kernel forward >= 15x faster than 'torch' and <= 4x the copy time
  (configurations with B*T*C >= --target-min-elems, default 2^19 on CPU);
* CUDA kernel in bf16 with B*T*C >= 2^24: forward >= 70 % and fwd+bwd >= 50 % of the
  measured copy bandwidth;
* with --check: every max_rel_err within tolerance.

Examples::

    python tools/analysis/benchmark_bi_wkv.py --quick
    python tools/analysis/benchmark_bi_wkv.py --device cpu --T 196 1024 4096 --C 192 768 --B 1 8
    python tools/analysis/benchmark_bi_wkv.py --device cuda --dtype bfloat16 --check \\
        --json bench.json --plot bench.png
"""
import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from mmvrwkv.ops import available_backends, bi_wkv  # noqa: E402

MODES = ('fwd', 'fwdbwd')
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
# Elements of size B*T*C moved through memory per call (see the module docstring).
ELEMS_MOVED = {'fwd': 3, 'fwdbwd': 8}
# Default --check tolerance per dtype (max|x - x_ref| / max|x_ref|).
CHECK_TOL = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 1e-2}

# Defaults per device; --quick replaces them with a preset that finishes in seconds.
DEFAULTS = {
    'cpu': dict(T=[196, 1024, 4096, 16384], C=[192, 768], B=[1, 8], warmup=1, repeat=5,
                budget=1.0, max_elems=2**22, target_min_elems=2**19),
    'cuda': dict(T=[196, 1024, 4096, 16384], C=[192, 768], B=[1, 8, 64], warmup=3, repeat=20,
                 budget=0.3, max_elems=2**28, target_min_elems=2**24),
}
QUICK = {
    'cpu': dict(T=[196, 1024, 4096], C=[192], B=[1], warmup=1, repeat=3, budget=0.3),
    'cuda': dict(T=[196, 4096], C=[768], B=[1, 8], warmup=2, repeat=10, budget=0.2),
}
TARGETS = {
    'cpu_fwd_speedup': 15.0,    # torch_time / cpu_time, at least
    'cpu_fwd_x_copy': 4.0,      # cpu_time / copy_time, at most
    'cuda_fwd_pct': 70.0,       # % of copy bandwidth, at least (bf16, B*T*C >= 2^24)
    'cuda_fwdbwd_pct': 50.0,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        epilog='Per-device defaults (when the option is not given): ' + '; '.join(
            f'{d}: T={v["T"]} C={v["C"]} B={v["B"]} warmup={v["warmup"]} repeat={v["repeat"]} '
            f'budget={v["budget"]}s max-elems=2^{int(math.log2(v["max_elems"]))}'
            for d, v in DEFAULTS.items()) + '. --quick: ' + '; '.join(
            f'{d}: T={v["T"]} C={v["C"]} B={v["B"]} repeat={v["repeat"]}' for d, v in QUICK.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', choices=['cpu', 'cuda'], default=None,
                   help='where to run (default: cuda when available, else cpu)')
    p.add_argument('--backends', nargs='+', default=None,
                   help="backends to time (default: the compiled backend of the device, if built, "
                        "plus 'torch'); 'reference' is not allowed")
    p.add_argument('--T', type=int, nargs='+', default=None, help='token counts')
    p.add_argument('--C', type=int, nargs='+', default=None, help='channel counts')
    p.add_argument('--B', type=int, nargs='+', default=None, help='batch sizes')
    p.add_argument('--dtype', choices=sorted(DTYPES), default='float32',
                   help='dtype of k, v (w, u stay float32)')
    p.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES),
                   help='fwd = forward only (no_grad); fwdbwd = forward + backward')
    p.add_argument('--warmup', type=int, default=None, help='untimed runs before timing')
    p.add_argument('--repeat', type=int, default=None,
                   help='timed runs; their median (see --stat) is reported')
    p.add_argument('--stat', choices=['median', 'min'], default='median',
                   help='statistic of the timed runs (min helps on a busy shared machine)')
    p.add_argument('--budget', type=float, default=None,
                   help='seconds per measurement after which repeating stops early '
                        '(at least 3 timed runs are always made)')
    p.add_argument('--max-elems', type=int, default=None,
                   help='skip configurations with B*T*C above this')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s)')
    p.add_argument('--chunk-len', type=int, default=None,
                   help='chunk_len passed to the compiled backends (default: theirs)')
    p.add_argument('--quick', action='store_true',
                   help='small preset (CPU: < 20 s on 2 cores) for smoke tests; explicit --T/--C/'
                        '--B/--warmup/--repeat still win')
    p.add_argument('--check', action='store_true',
                   help="compare outputs (and gradients) with the 'torch' backend; adds max_rel_err")
    p.add_argument('--check-tol', type=float, default=None,
                   help='tolerance of the --check target (default: 1e-3 float32, 1e-2 float16, '
                        '5e-2 bfloat16)')
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
    p.add_argument('--no-progress', action='store_true', help='no progress bar on stderr')
    p.add_argument('--strict', action='store_true', help='exit with status 1 when a target FAILs')
    args = p.parse_args(argv)

    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda but torch sees no CUDA GPU')
    preset = dict(DEFAULTS[args.device])
    if args.quick:
        preset.update(QUICK[args.device])
    for key in ('T', 'C', 'B', 'warmup', 'repeat', 'budget', 'max_elems', 'target_min_elems'):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    usable = [b for b in available_backends() if b != 'reference']
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
    if args.repeat < 1 or args.warmup < 0:
        p.error('--repeat must be >= 1 and --warmup >= 0')
    if min(args.T + args.C + args.B) < 1:
        p.error('--T, --C and --B must be positive')
    return args


# ----------------------------------------------------------------------------- environment

def environment(device):
    env = {
        'python': platform.python_version(),
        'platform': platform.platform(),
        'processor': _cpu_model(),
        'torch': torch.__version__,
        'torch_cuda': torch.version.cuda,
        'threads': torch.get_num_threads(),
        'cpu_count': os.cpu_count(),
        'loadavg': _loadavg(),
        'available_backends': list(available_backends()),
        'device': device,
        'device_name': _cpu_model() if device == 'cpu' else torch.cuda.get_device_name(),
    }
    try:
        from mmvrwkv import __version__
        env['mmvrwkv'] = __version__
    except ImportError:  # pragma: no cover
        pass
    if device == 'cuda':
        prop = torch.cuda.get_device_properties(torch.cuda.current_device())
        env.update(capability=f'{prop.major}.{prop.minor}', sm_count=prop.multi_processor_count,
                   l2_bytes=getattr(prop, 'L2_cache_size', None), total_memory=prop.total_memory)
    return env


def _loadavg():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return None


def _cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- timing

def _sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def measure(fn, device, warmup, repeat, budget, stat='median'):
    """Median (or min) seconds of ``fn()`` after ``warmup`` calls; stops after ``budget``
    seconds (never before 3 timed calls or ``repeat`` if that is smaller)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    start = time.perf_counter()
    if device == 'cuda':
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(repeat):
        if device == 'cuda':
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        if len(times) >= min(3, repeat) and time.perf_counter() - start > budget:
            break
    return (min(times) if stat == 'min' else statistics.median(times)), times


def copy_bandwidth(mib, warmup=3, repeat=20):
    """Device-to-device copy bandwidth in GB/s (bytes read + written per second)."""
    n = mib * 2**20 // 4
    src = torch.randn(n, device='cuda')
    dst = torch.empty_like(src)
    t, _ = measure(lambda: dst.copy_(src), 'cuda', warmup, repeat, budget=2.0)
    gbps = 2 * src.numel() * src.element_size() / t / 1e9
    del src, dst
    torch.cuda.empty_cache()
    return gbps


# ----------------------------------------------------------------------------- inputs / ops

def make_inputs(B, T, C, dtype, device, gen):
    """w, u as a model passes them (spatial_decay / T, spatial_first / T), random k, v, grad_y."""
    decay = torch.rand(C, generator=gen, device=device) * 6 - 3
    first = torch.rand(C, generator=gen, device=device) * 2 - 1
    w, u = decay / T, first / T
    k, v, gy = (torch.randn(B, T, C, generator=gen, device=device, dtype=dtype) for _ in range(3))
    return w, u, k, v, gy


def run_op(backend, mode, inputs, chunk_len=None):
    """One call; returns y (fwd) or (gw, gu, gk, gv) (fwdbwd)."""
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


def max_rel_err(out, ref):
    outs = out if isinstance(out, (tuple, list)) else (out, )
    refs = ref if isinstance(ref, (tuple, list)) else (ref, )
    worst = 0.0
    for a, b in zip(outs, refs):
        a, b = a.detach().double(), b.detach().double()
        if not torch.isfinite(a).all():
            return float('inf')
        scale = b.abs().max().item()
        err = (a - b).abs().max().item()
        worst = max(worst, err / scale if scale > 0 else err)
    return worst


def estimate_bytes(N, es, backends, mode, check):
    """Rough peak memory of one configuration (the 'torch' backend keeps ~20 float32
    temporaries of size B*T*C in fwd+bwd, ~10 in fwd)."""
    fp32 = 4 * N
    need = 4 * N * es  # k, v, grad_y, y
    if 'torch' in backends or check:
        need += (20 if mode == 'fwdbwd' else 10) * fp32
    else:
        need += (6 if mode == 'fwdbwd' else 2) * N * es
    return need


# ----------------------------------------------------------------------------- main loop

def benchmark(args, progress):
    device, dtype = args.device, DTYPES[args.dtype]
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
                base = dict(device=device, dtype=args.dtype, B=B, T=T, C=C, elems=N)
                todo = [(b, m) for m in args.modes for b in args.backends]
                skip = None
                if N > args.max_elems:
                    skip = f'B*T*C={N} > --max-elems={args.max_elems}'
                elif device == 'cuda':
                    free, _ = torch.cuda.mem_get_info()
                    need = max(estimate_bytes(N, torch.finfo(dtype).bits // 8, args.backends, m,
                                              args.check) for m in args.modes)
                    if need > 0.8 * free:
                        skip = f'needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free'
                if skip:
                    for b, m in todo:
                        rows.append(dict(base, backend=b, mode=m, status='skipped', reason=skip))
                        progress.update(1)
                    continue
                oom = None
                try:
                    rows.extend(bench_config(args, base, todo, gen, l2, progress))
                except torch.cuda.OutOfMemoryError as e:  # pragma: no cover - GPU only
                    oom = f'out of memory: {str(e).splitlines()[0][:80]}'
                if oom:  # pragma: no cover - GPU only (outside `except`: frees the frames)
                    gc.collect()
                    torch.cuda.empty_cache()
                    for b, m in todo:
                        rows.append(dict(base, backend=b, mode=m, status='skipped', reason=oom))
                        progress.update(1)
    return rows


def bench_config(args, base, todo, gen, l2, progress):
    device, dtype = args.device, DTYPES[args.dtype]
    B, T, C, N = base['B'], base['T'], base['C'], base['elems']
    es = torch.finfo(dtype).bits // 8
    # Rotate input sets so that small problems are not timed out of the GPU's L2 cache.
    n_sets = 1
    if device == 'cuda' and l2:
        n_sets = max(1, min(8, math.ceil(4 * l2 / (3 * N * es))))
    sets = [make_inputs(B, T, C, dtype, device, gen) for _ in range(n_sets)]
    out = []

    copy_s = None
    if device == 'cpu':
        k, v = sets[0][2], sets[0][3]
        # Cheap and noisy: at least 10 timed copies.
        copy_s, _ = measure(lambda: (k.clone(), v.clone()), device, max(args.warmup, 1),
                            max(args.repeat, 10), min(args.budget, 0.5), args.stat)

    refs = {}
    if args.check:
        for mode in args.modes:
            refs[('torch', mode)] = run_op('torch', mode, sets[0])
            # The 'torch' rows are checked against the float64 O(T^2) reference while it is cheap.
            if B * T * T * C <= 2**23:
                refs[('reference', mode)] = run_op('reference', mode, sets[0])

    times = {}
    for backend, mode in todo:
        row = dict(base, backend=backend, mode=mode)
        counter = [0]

        def fn(backend=backend, mode=mode, counter=counter):
            counter[0] += 1
            return run_op(backend, mode, sets[counter[0] % n_sets], args.chunk_len)

        try:
            t, samples = measure(fn, device, args.warmup, args.repeat, args.budget, args.stat)
        except torch.cuda.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError) as e:
            row.update(status='error', reason=f'{type(e).__name__}: {str(e).splitlines()[0][:120]}')
            out.append(row)
            progress.update(1)
            continue
        times[(backend, mode)] = t
        moved = ELEMS_MOVED[mode] * N * es
        row.update(status='ok', time_ms=t * 1e3, times_ms=[s * 1e3 for s in samples],
                   gbps=moved / t / 1e9, bytes=moved, input_sets=n_sets)
        if copy_s is not None:
            row.update(copy_ms=copy_s * 1e3, x_copy=t / copy_s,
                       copy_gbps=4 * N * es / copy_s / 1e9)
        if args.check:
            ref_name = 'reference' if backend == 'torch' else 'torch'
            ref = refs.get((ref_name, mode))
            if ref is not None:
                row['max_rel_err'] = max_rel_err(run_op(backend, mode, sets[0], args.chunk_len), ref)
                row['check_against'] = ref_name
        out.append(row)
        progress.update(1)
    for row in out:
        t_torch = times.get(('torch', row['mode']))
        if row.get('status') == 'ok' and t_torch:
            row['vs_torch'] = t_torch / (row['time_ms'] / 1e3)
    del sets, refs
    if device == 'cuda':
        torch.cuda.empty_cache()
    return out


# ----------------------------------------------------------------------------- report

def _fmt(x, spec):
    return '-' if x is None else format(x, spec)


def format_table(rows, device, check, copy_gbps=None):
    cols = ['backend', 'mode', 'dtype', 'B', 'T', 'C', 'time_ms', 'GB/s', 'vs_torch']
    cols += ['x_copy'] if device == 'cpu' else ['%copy']
    if check:
        cols.append('max_rel_err')
    lines = []
    body = []
    for r in rows:
        cells = [r['backend'], r['mode'], r['dtype'], str(r['B']), str(r['T']), str(r['C'])]
        if r.get('status') != 'ok':
            cells += [f"{r.get('status')}: {r.get('reason', '')}"]
            body.append(cells)
            continue
        cells += [_fmt(r['time_ms'], '.4g'), _fmt(r.get('gbps'), '.1f'), _fmt(r.get('vs_torch'), '.2f')]
        if device == 'cpu':
            cells.append(_fmt(r.get('x_copy'), '.2f'))
        else:
            pct = 100 * r['gbps'] / copy_gbps if copy_gbps else None
            cells.append(_fmt(pct, '.1f'))
        if check:
            cells.append(_fmt(r.get('max_rel_err'), '.2e'))
        body.append(cells)
    widths = [len(c) for c in cols]
    for cells in body:
        if len(cells) == len(cols):
            widths = [max(w, len(c)) for w, c in zip(widths, cells)]
    lines.append('  '.join(c.rjust(w) for c, w in zip(cols, widths)))
    lines.append('  '.join('-' * w for w in widths))
    for cells in body:
        if len(cells) == len(cols):
            lines.append('  '.join(c.rjust(w) for c, w in zip(cells, widths)))
        else:  # a skipped / failed row: its reason spans the numeric columns
            lines.append('  '.join(c.rjust(w) for c, w in zip(cells[:6], widths)) + '  ' + cells[6])
    return '\n'.join(lines)


def evaluate_targets(rows, args, copy_gbps):
    """Return a list of dicts: name, status (PASS/FAIL/SKIP), value, threshold, detail."""
    res = []
    ok = [r for r in rows if r.get('status') == 'ok']

    def desc(r):
        return f"{r['backend']} {r['mode']} {r['dtype']} B={r['B']} T={r['T']} C={r['C']}"

    def add(name, sel, key, threshold, at_least, none_msg):
        sel = [r for r in sel if r.get(key) is not None]
        if not sel:
            res.append(dict(name=name, status='SKIP', value=None, threshold=threshold,
                            detail=none_msg))
            return
        worst = (min if at_least else max)(sel, key=lambda r: r[key])
        good = sum((r[key] >= threshold) if at_least else (r[key] <= threshold) for r in sel)
        status = 'PASS' if good == len(sel) else 'FAIL'
        res.append(dict(name=name, status=status, value=worst[key], threshold=threshold,
                        detail=f'{good}/{len(sel)} configurations meet it; worst {worst[key]:.3g} '
                               f'at {desc(worst)}'))

    if args.device == 'cpu':
        big = [r for r in ok if r['backend'] == 'cpu' and r['mode'] == 'fwd'
               and r['elems'] >= args.target_min_elems]
        why = (f"needs 'cpu' and 'torch' fwd rows with B*T*C >= {args.target_min_elems}")
        add(f"CPU kernel forward >= {TARGETS['cpu_fwd_speedup']:g}x faster than 'torch'",
            big, 'vs_torch', TARGETS['cpu_fwd_speedup'], True, why)
        add(f"CPU kernel forward <= {TARGETS['cpu_fwd_x_copy']:g}x the copy time of k, v",
            big, 'x_copy', TARGETS['cpu_fwd_x_copy'], False, why)
    else:
        for mode, key in (('fwd', 'cuda_fwd_pct'), ('fwdbwd', 'cuda_fwdbwd_pct')):
            sel = [dict(r, pct_copy_bw=100 * r['gbps'] / copy_gbps) for r in ok
                   if r['backend'] == 'cuda' and r['mode'] == mode and r['dtype'] == 'bfloat16'
                   and r['elems'] >= 2**24]
            add(f"CUDA kernel {mode} >= {TARGETS[key]:g}% of copy bandwidth "
                f"({copy_gbps:.0f} GB/s), bf16, B*T*C >= 2^24", sel, 'pct_copy_bw', TARGETS[key],
                True, "needs 'cuda' rows in bfloat16 with B*T*C >= 2^24")
    if args.check:
        tol = args.check_tol if args.check_tol is not None else CHECK_TOL[DTYPES[args.dtype]]
        add(f'--check: max_rel_err <= {tol:g} ({args.dtype})', ok, 'max_rel_err', tol, False,
            'no compared rows')
    return res


def plot(rows, args, copy_gbps, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    metric = args.plot_metric
    if metric == 'auto':
        metric = 'gbps' if args.device == 'cuda' else 'time'
    ok = [r for r in rows if r.get('status') == 'ok']
    modes = [m for m in args.modes if any(r['mode'] == m for r in ok)] or list(args.modes)
    Cs = sorted({r['C'] for r in ok}) or list(args.C)
    fig, axes = plt.subplots(len(modes), len(Cs), figsize=(5 * len(Cs), 3.8 * len(modes)),
                             squeeze=False)
    for i, mode in enumerate(modes):
        for j, C in enumerate(Cs):
            ax = axes[i][j]
            for bi, backend in enumerate(args.backends):
                for mi, B in enumerate(args.B):
                    pts = sorted((r['T'], r['gbps'] if metric == 'gbps' else r['time_ms'])
                                 for r in ok if r['mode'] == mode and r['C'] == C
                                 and r['backend'] == backend and r['B'] == B)
                    if pts:
                        ax.plot(*zip(*pts), marker='osD^v*'[mi % 6], color=f'C{bi}',
                                label=f'{backend} B={B}',
                                linestyle='--' if backend == 'torch' else '-')
            if metric == 'gbps' and copy_gbps:
                ax.axhline(copy_gbps, color='k', linewidth=0.8, linestyle=':',
                           label=f'copy {copy_gbps:.0f} GB/s')
            ax.set_xscale('log', base=2)
            ax.set_yscale('log')
            ax.set_xlabel('T (tokens)')
            ax.set_ylabel('GB/s' if metric == 'gbps' else 'time (ms)')
            ax.set_title(f'{mode}, C={C}, {args.dtype}, {args.device}')
            ax.grid(True, which='both', alpha=0.3)
            if ax.has_data():
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class _Counter:
    """Minimal progress display on stderr when tqdm is missing."""

    def __init__(self, total, disable):
        self.n, self.total, self.disable = 0, total, disable

    def update(self, k=1):
        self.n += k
        if not self.disable:
            sys.stderr.write(f'\r[benchmark_bi_wkv] {self.n}/{self.total}')
            if self.n >= self.total:
                sys.stderr.write('\n')
            sys.stderr.flush()

    def close(self):
        pass


def make_progress(total, disable):
    try:
        from tqdm import tqdm
    except ImportError:
        return _Counter(total, disable)
    return tqdm(total=total, disable=disable, file=sys.stderr, desc='bi_wkv', leave=False)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args.device)
    copy_gbps = None
    if args.device == 'cuda':
        copy_gbps = copy_bandwidth(args.copy_mib)
    total = len(args.B) * len(args.C) * len(args.T) * len(args.backends) * len(args.modes)
    progress = make_progress(total, args.no_progress)
    t0 = time.perf_counter()
    try:
        rows = benchmark(args, progress)
    finally:
        progress.close()
    elapsed = time.perf_counter() - t0

    print(f"# Bi-WKV benchmark: device={args.device} ({env['device_name']}), dtype={args.dtype}, "
          f"torch {env['torch']}, threads={env['threads']}, backends={args.backends}, "
          f"warmup={args.warmup}, repeat={args.repeat} ({args.stat})")
    if args.device == 'cpu':
        print("# baseline: copy = k.clone(); v.clone() per configuration; "
              "vs_torch = torch_time / time; x_copy = time / copy_time")
    else:
        print(f'# baseline: device copy bandwidth {copy_gbps:.1f} GB/s ({args.copy_mib} MiB, '
              'read + write); GB/s counts k, v read + y written (fwd) and + k, v, grad_y read, '
              'grad_k, grad_v written (fwdbwd); %copy = GB/s / copy bandwidth')
    load = env.get('loadavg')
    if args.device == 'cpu' and load and max(load[0], _loadavg()[0]) > (os.cpu_count() or 1):
        print(f'# WARNING: the machine was busy (load average {load[0]:.1f} at the start, '
              f'{_loadavg()[0]:.1f} at the end, {os.cpu_count()} CPUs): CPU timings are unreliable '
              '(multi-threaded ops suffer most; --threads 1 and --stat min help)')
    print(format_table(rows, args.device, args.check, copy_gbps))
    targets = evaluate_targets(rows, args, copy_gbps)
    print(f'# {len(rows)} rows in {elapsed:.1f} s')
    for t in targets:
        print(f"{t['status']}: {t['name']}: {t['detail']}")

    if args.json:
        doc = dict(tool='benchmark_bi_wkv', env=env, args=vars(args),
                   baseline=dict(kind='clone' if args.device == 'cpu' else 'device_copy',
                                 copy_gbps=copy_gbps, copy_mib=args.copy_mib if copy_gbps else None),
                   rows=rows, targets=targets, elapsed_s=elapsed)
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(doc, f, indent=1, default=str)
        print(f'# wrote {args.json}')
    if args.plot:
        try:
            plot(rows, args, copy_gbps, args.plot)
            print(f'# wrote {args.plot}')
        except ImportError as e:
            print(f'# no plot: {e}', file=sys.stderr)
    if args.strict and any(t['status'] == 'FAIL' for t in targets):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
