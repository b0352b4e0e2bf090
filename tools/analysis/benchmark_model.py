#!/usr/bin/env python
"""Throughput and peak memory of VRWKV backbones vs ViT/DeiT of the same size.

For every size (``--archs``: tiny / small / base) and input resolution (``--resolutions``)
both backbones are built at that resolution (random weights, ``--dtype``) and fed a random
``[B, 3, R, R]`` batch, ``--warmup`` times untimed and ``--repeat`` times timed; the median time
gives img/s = B / median. Backbone only: no neck or head, both return the last feature map.

``--mode infer`` (default): ``eval()``, forward under ``torch.inference_mode()``
(``torch.no_grad()`` when compiled: dynamo guards fail on mmpretrain's DropPath under
inference mode). ``--mode train``: ``train()``, one training step = forward, the mean of the
output as loss, backward and an ``AdamW`` step. ``--compile eager|compiled|both``: the models
as they are and/or through ``torch.compile`` (compilation happens during the warm-up, which is
at least one run then); ``both`` measures each model both ways in the same run, side by side.

Models (patch 16, 12 blocks, hidden width 4x):

=====  ==============================  ===========================================
size   VRWKV (mmvrwkv)                 ViT baseline (DeiT arch, attention via SDPA)
=====  ==============================  ===========================================
tiny   ``VRWKV(arch='tiny')`` C 192    deit-tiny  C 192, 3 heads
small  ``VRWKV(arch='small')`` C 384   deit-small C 384, 6 heads
base   ``VRWKV(arch='base')`` C 768    deit-base  C 768, 12 heads
=====  ==============================  ===========================================

Baselines (``--baseline``): ``mmpretrain`` = ``mmpretrain.models.VisionTransformer``
(arch 'deit-*', ``out_type='featmap'``; its ``MultiheadAttention`` calls
``F.scaled_dot_product_attention`` on torch >= 2.0); ``torchvision`` = the same
architecture from ``torchvision.models.vision_transformer.VisionTransformer`` (class token +
encoder, no head; its ``nn.MultiheadAttention`` runs through SDPA at inference, as the fused
fast path or ``F.multi_head_attention_forward``). ``auto`` (default) takes mmpretrain when it
is installed, torchvision otherwise (GPU check machines have no mmpretrain). The table and
the JSON name the baseline used. Note that SDPA picks flash / memory-efficient kernels on
GPUs, so the ViT baseline's memory grows linearly with the token count there (the paper's
ViT materialised the T x T attention matrix); its time still grows quadratically.

Peak memory (``mem MiB``), per model and configuration, taken during the first timed run:

* CUDA: ``torch.cuda.max_memory_allocated()`` minus the memory allocated before the model was
  built (weights + input + activations of one forward pass);
* CPU: the process's resident-set high-water mark (``VmHWM`` in ``/proc/self/status``, reset
  through ``/proc/self/clear_refs`` just before the run) minus the resident set before the
  model was built, after ``gc`` and ``malloc_trim`` (weights + input + activations +
  allocator overhead; a proxy: torch has no CPU allocator statistics). Without a writable
  ``/proc/self/clear_refs`` (non-Linux) memory is reported as n/a.

Out-of-memory (CUDA or CPU) is recorded as ``OOM`` and the sweep continues (larger
resolutions of that model and size are then skipped as ``OOM``); any other error is recorded
as ``error`` with its message.

``--models`` picks the backbones (default ``vrwkv vit``); ``vrwkv6`` adds
``mmvrwkv.VRWKV6`` of the same size (built only when asked for; refused with a message where
it is not registered), with its own table columns and ratios to ViT. ``--batch-size 1 8``
measures every configuration at each batch size.

Output: a table (rows = batch x size x resolution (x eager/compiled); columns: img/s of
both, ratio VRWKV/ViT, memory of both, ratio VRWKV/ViT; the same for VRWKV6 when measured),
``--json FILE`` (environment, settings, every measurement, the table), ``--plot FILE`` (per
batch size a row of three panels: img/s and peak memory vs resolution, a colour per model and
size, and the ratios VRWKV / ViT of speed (solid) and memory (dashed) with the parity line
at 1; log axes whose ticks are the measured resolutions and labelled values; the title names
device, threads, dtype, batch sizes, mode and eager/compiled).

Examples::

    python tools/analysis/benchmark_model.py                       # CPU: 224/384/512, batch 1
    python tools/analysis/benchmark_model.py --quick --device cpu  # smoke test, seconds
    python tools/analysis/benchmark_model.py --device cuda --json model.json --plot model.png
    python tools/analysis/benchmark_model.py --device cpu --archs tiny --batch-size 1 8 \\
        --resolutions 224 448 896 --models vrwkv vrwkv6 vit --plot model.png
    python tools/analysis/benchmark_model.py --device cuda --archs tiny \\
        --resolutions 224 512 1024 2048 --dtype float32 --batch-size 1
"""
import argparse
import time

import torch

from mmvrwkv.analysis import backbones, machine, options, plots, report
from mmvrwkv.analysis.backbones import resolve_baseline
# is_oom is part of this tool's interface too (benchmark_model.is_oom).
from mmvrwkv.analysis.memory import CpuMemory, CudaMemory, free_memory, is_oom, memory_meter
from mmvrwkv.analysis.progress import Progress
from mmvrwkv.analysis.report import Column
from mmvrwkv.analysis.timing import measure, sync

ARCHS = ('tiny', 'small', 'base')
MODELS = ('vrwkv', 'vrwkv6', 'vit')
DEFAULT_MODELS = ['vrwkv', 'vit']
DEFAULTS = {
    'cpu': dict(archs=list(ARCHS), resolutions=[224, 384, 512], batch_size=[1], warmup=1,
                repeat=3, dtype='float32'),
    'cuda': dict(archs=list(ARCHS), resolutions=[224, 384, 512, 768, 1024, 1536, 2048],
                 batch_size=[1], warmup=3, repeat=10, dtype='bfloat16'),
}
QUICK = {
    'cpu': dict(archs=['tiny'], resolutions=[224, 384], warmup=1, repeat=2),
    'cuda': dict(archs=list(ARCHS), resolutions=[224, 1024, 2048], warmup=2, repeat=5),
}
TABLE_COLUMNS = ('arch', 'res', 'tokens', 'batch', 'compiled', 'vrwkv_img_s', 'vit_img_s',
                 'speed_ratio', 'vrwkv_mem_mib', 'vit_mem_mib', 'mem_ratio')
# Added to the table when VRWKV6 is measured (ratios: VRWKV6 / ViT).
V6_COLUMNS = ('vrwkv6_img_s', 'v6_speed_ratio', 'vrwkv6_mem_mib', 'v6_mem_ratio')
MODES = ('infer', 'train')
COMPILE_CHOICES = {'eager': (False,), 'compiled': (True,), 'both': (False, True)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog=options.describe_presets(DEFAULTS, QUICK),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_common_args(p)
    p.add_argument('--archs', nargs='+', choices=ARCHS, default=None, help='model sizes')
    p.add_argument('--resolutions', nargs='+', type=int, default=None,
                   help='square input sides in pixels (multiples of 16)')
    p.add_argument('--batch-size', type=int, nargs='+', default=None,
                   help='images per forward pass; several give table rows and plot panels '
                        'per batch size')
    p.add_argument('--dtype', choices=sorted(options.DTYPES), default=None,
                   help='weights and input dtype (default: float32 on cpu, bfloat16 on cuda)')
    p.add_argument('--baseline', choices=list(backbones.BASELINES), default='auto',
                   help='where the ViT comes from (auto: mmpretrain if installed, else '
                        'torchvision)')
    p.add_argument('--models', nargs='+', choices=MODELS, default=list(DEFAULT_MODELS),
                   help='which backbones to measure (vrwkv6: mmvrwkv.VRWKV6, built only when '
                        'asked for)')
    p.add_argument('--mode', choices=MODES, default='infer',
                   help='infer: forward only; train: forward + backward + AdamW step')
    p.add_argument('--compile', choices=sorted(COMPILE_CHOICES), default='eager',
                   help='eager models, torch.compile\'d ones, or both side by side')
    p.add_argument('--depth', type=int, default=None,
                   help='override the depth of both backbones (smoke tests; default 12)')
    p.add_argument('--wkv-backend', default='auto', help="VRWKV(wkv_backend=...)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', metavar='FILE', help='write settings, measurements and table as JSON')
    p.add_argument('--plot', metavar='FILE', help='write a PNG of img/s and memory vs resolution')
    args = options.finish_args(p.parse_args(argv), p, DEFAULTS, QUICK)
    if min(args.batch_size) < 1:
        p.error('--batch-size must be >= 1')
    args.batch_size = sorted(set(args.batch_size))
    args.models = list(dict.fromkeys(args.models))
    if 'vrwkv6' in args.models and backbones.vrwkv6_class() is None:
        p.error('--models vrwkv6: mmvrwkv.VRWKV6 is not registered in this checkout '
                '(mmvrwkv.models.backbones has no VRWKV6)')
    bad = [r for r in args.resolutions if r < 16 or r % 16]
    if bad:
        p.error(f'resolutions must be positive multiples of the patch size 16, got {bad}')
    if args.depth is not None and args.depth < 1:
        p.error('--depth must be >= 1')
    if 'vit' in args.models:
        args.baseline = resolve_baseline(args.baseline, p.error)
    args.archs = list(dict.fromkeys(args.archs))
    args.resolutions = sorted(set(args.resolutions))
    return args


# ----------------------------------------------------------------------------- models

def build_model(model, arch, res, baseline, depth=None, wkv_backend='auto'):
    """``model`` ('vrwkv', 'vrwkv6' or 'vit') of size ``arch`` at ``res`` px, patch 16."""
    if model == 'vit':
        return backbones.build_vit(arch, res, 16, baseline, depth)
    return backbones.build_vrwkv(arch, res, 16, depth, version=model, wkv_backend=wkv_backend)


def model_label(model, arch, baseline):
    if model in ('vrwkv', 'vrwkv6'):
        return f'{model.upper()}-{arch[0].upper()}'
    return f'DeiT-{arch[0].upper()} ({baseline})'


# ----------------------------------------------------------------------------- measuring

def result_record(model_name, arch, res, args, status='ok', error=None, compiled=False,
                  batch=None):
    """The result dict of one model at one resolution and batch size (default: the first
    of --batch-size), before measuring (or for a skipped one: status 'OOM' with the reason in
    ``error``)."""
    return dict(model=model_name, arch=arch, res=res, tokens=(res // 16) ** 2,
                batch=args.batch_size[0] if batch is None else batch, mode=args.mode,
                compiled=bool(compiled),
                name=model_label(model_name, arch, args.baseline),
                status=status, img_s=None, median_s=None, min_s=None, spread=None, times_s=[],
                mem_mib=None, params=None, error=error)


def make_step(model, x, mode, compiled):
    """The timed callable: one forward (infer) or one training step (train)."""
    run = torch.compile(model) if compiled else model
    if mode == 'infer':
        model.eval()  # (mmpretrain's backbones' train() returns None: no chaining)
        context = torch.no_grad if compiled else torch.inference_mode

        def step():
            with context():
                return run(x)
        return step
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = sum(out.float().mean() for out in run(x))
        loss.backward()
        optimizer.step()
    return step


def measure_one(args, model_name, arch, res, memory, compiled=False, batch=None):
    """One model at one resolution and batch size: returns a result dict (status 'ok',
    'OOM' or 'error'); peak memory is taken during the first timed run."""
    device, dtype = args.device, options.DTYPES[args.dtype]
    B = args.batch_size[0] if batch is None else batch
    result = result_record(model_name, arch, res, args, compiled=compiled, batch=B)
    model = x = step = None
    try:
        base = memory.baseline()
        torch.manual_seed(args.seed)
        model = build_model(model_name, arch, res, args.baseline, args.depth, args.wkv_backend)
        model.to(device=device, dtype=dtype)
        result['params'] = sum(p.numel() for p in model.parameters())
        x = torch.randn(B, 3, res, res, device=device, dtype=dtype)
        step = make_step(model, x, args.mode, compiled)

        def first_peak(i):
            if i == 0:
                result['mem_mib'] = memory.peak_mib(base)

        warmup = max(args.warmup, 1) if compiled else args.warmup  # compile before timing
        timing = measure(step, device, warmup, args.repeat,
                         before=lambda i: memory.reset_peak() if i == 0 else None,
                         after=first_peak)
        result.update(times_s=timing.samples, median_s=timing.median, min_s=timing.min,
                      spread=timing.spread, img_s=B / timing.median)
    except Exception as e:  # noqa: BLE001  (recorded, the sweep goes on)
        result['status'] = 'OOM' if is_oom(e) else 'error'
        result['error'] = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:300]
    finally:
        model = x = step = None  # (the closures hold them) free them before the next one
        if compiled:
            torch._dynamo.reset()  # compiled graphs of this model hold its weights
        free_memory(device)
    return result


def warm_up_process(args):
    """One untimed forward of each (shallow) model first, so that lazily loaded libraries and
    kernels are not charged to the first configuration's time or memory."""
    dtype = options.DTYPES[args.dtype]
    for model_name in args.models:
        model = x = None
        try:
            model = build_model(model_name, args.archs[0], args.resolutions[0], args.baseline,
                                1, args.wkv_backend)
            model.to(device=args.device, dtype=dtype)
            model.eval()
            x = torch.randn(1, 3, args.resolutions[0], args.resolutions[0], device=args.device,
                            dtype=dtype)
            with torch.inference_mode():
                model(x)
            sync(args.device)
        except Exception:  # noqa: BLE001  (the real measurement records the error)
            pass
        finally:
            model = x = None
            free_memory(args.device)


def run_sweep(args, progress=None):
    """Every batch size x arch x model x resolution (larger resolutions after an OOM are
    skipped as OOM): the result dicts and the memory meter's note (None when it works)."""
    memory = memory_meter(args.device)
    warm_up_process(args)
    results = []
    for batch in args.batch_size:
        for arch in args.archs:
            for model_name in args.models:
                for compiled in COMPILE_CHOICES[args.compile]:
                    results.extend(sweep_resolutions(args, model_name, arch, compiled, batch,
                                                     memory, progress))
    return results, memory.reason


def sweep_resolutions(args, model_name, arch, compiled, batch, memory, progress=None):
    """One model variant at one batch size over --resolutions, in increasing order."""
    results, oom_at = [], None
    for res in args.resolutions:
        if oom_at is not None:
            r = result_record(model_name, arch, res, args, 'OOM',
                              f'skipped: out of memory at {oom_at}px', compiled, batch)
        else:
            if progress is not None:
                progress.set_description(
                    f'{model_label(model_name, arch, args.baseline)} {res}px B={batch}'
                    + (' compiled' if compiled else ''))
            r = measure_one(args, model_name, arch, res, memory, compiled, batch)
            if r['status'] == 'OOM':
                oom_at = res
        results.append(r)
        if progress is not None:
            progress.update(1)
    return results


def _value(r, key):
    """A measurement of result ``r``, its status when it failed, None when absent."""
    if r is None:
        return None
    return r[key] if r['status'] == 'ok' else r['status']


def _ratio(x, y):
    ok = isinstance(x, (int, float)) and isinstance(y, (int, float)) and y
    return x / y if ok else None


def table_columns(models=DEFAULT_MODELS):
    """The table's keys: TABLE_COLUMNS, plus V6_COLUMNS when VRWKV6 is measured."""
    return TABLE_COLUMNS + (V6_COLUMNS if 'vrwkv6' in models else ())


def build_table(results, archs, resolutions, compile_variants=(False,), batches=None,
                models=DEFAULT_MODELS):
    """One row per (batch, arch, resolution, eager/compiled), columns
    ``table_columns(models)``; ratios are VRWKV (VRWKV6) / ViT of the same variant."""
    by_key = {(r['model'], r['arch'], r['res'], r.get('compiled', False), r.get('batch')): r
              for r in results}
    if batches is None:
        batches = sorted({r.get('batch') for r in results}, key=lambda b: (b is None, b))
    rows = []
    for batch in batches:
        for arch in archs:
            for res in resolutions:
                for compiled in compile_variants:
                    def get(model):
                        return by_key.get((model, arch, res, compiled, batch))
                    a, b, c = get('vrwkv'), get('vit'), get('vrwkv6')
                    row = dict(arch=arch, res=res, tokens=(res // 16) ** 2, batch=batch,
                               compiled='compiled' if compiled else 'eager',
                               vrwkv_img_s=_value(a, 'img_s'), vit_img_s=_value(b, 'img_s'),
                               vrwkv_mem_mib=_value(a, 'mem_mib'),
                               vit_mem_mib=_value(b, 'mem_mib'),
                               vrwkv6_img_s=_value(c, 'img_s'),
                               vrwkv6_mem_mib=_value(c, 'mem_mib'))
                    row['speed_ratio'] = _ratio(row['vrwkv_img_s'], row['vit_img_s'])
                    row['mem_ratio'] = _ratio(row['vrwkv_mem_mib'], row['vit_mem_mib'])
                    row['v6_speed_ratio'] = _ratio(row['vrwkv6_img_s'], row['vit_img_s'])
                    row['v6_mem_ratio'] = _ratio(row['vrwkv6_mem_mib'], row['vit_mem_mib'])
                    rows.append({k: row[k] for k in table_columns(models)})
    return rows


# The printed table: (title, TABLE_COLUMNS key, number format); missing values are 'n/a'.
COLUMNS = [Column(title, key, fmt, missing='n/a') for title, key, fmt in (
    ('size', 'arch', ''), ('res', 'res', ''), ('tokens', 'tokens', ''), ('B', 'batch', ''),
    ('run', 'compiled', ''),
    ('VRWKV img/s', 'vrwkv_img_s', '.2f'), ('ViT img/s', 'vit_img_s', '.2f'),
    ('speed x', 'speed_ratio', '.2f'), ('VRWKV MiB', 'vrwkv_mem_mib', '.1f'),
    ('ViT MiB', 'vit_mem_mib', '.1f'), ('mem x', 'mem_ratio', '.2f'))]
V6_TABLE_COLUMNS = [Column(title, key, fmt, missing='n/a') for title, key, fmt in (
    ('VRWKV6 img/s', 'vrwkv6_img_s', '.2f'), ('v6 speed x', 'v6_speed_ratio', '.2f'),
    ('VRWKV6 MiB', 'vrwkv6_mem_mib', '.1f'), ('v6 mem x', 'v6_mem_ratio', '.2f'))]


def format_table(rows, baseline, models=DEFAULT_MODELS):
    """The table and a line that says what the ratios mean."""
    v6 = 'vrwkv6' in models
    columns = COLUMNS + (V6_TABLE_COLUMNS if v6 else [])
    return (report.format_table(columns, rows) + '\n'
            f'ViT = DeiT of the same size from {baseline}; speed x = img/s VRWKV / ViT '
            '(> 1: VRWKV faster); mem x = peak memory VRWKV / ViT (< 1: VRWKV lighter)'
            + ('; v6 speed x, v6 mem x: the same for VRWKV6' if v6 else ''))


# Markers per model (colours are per model and size, see series_styles).
MODEL_MARKERS = {'vrwkv': 'o', 'vrwkv6': 'D', 'vit': 's'}
# The ratio panel: (VRWKV model, ratio of what, results key, line style).
RATIOS = (('img/s', 'img_s', '-'), ('memory', 'mem_mib', '--'))


def series_styles(args):
    """A distinct colour per (size, model) series of the sweep, in plot order; compiled
    variants share their model's colour, dotted with hollow markers."""
    styles = {}
    for arch in args.archs:
        for model_name in args.models:
            i = len({k[:2] for k in styles})
            for compiled in COMPILE_CHOICES[args.compile]:
                style = plots.series_style(i)
                style['marker'] = MODEL_MARKERS[model_name]
                if compiled:
                    style.update(linestyle=':', markerfacecolor='none')
                styles[(arch, model_name, compiled)] = style
    return styles


def _ok_points(rs, key):
    return sorted((r['res'], r[key]) for r in rs if r['status'] == 'ok' and r[key])


def ratio_points(results, model_name, arch, compiled, batch, key):
    """(resolution, model / ViT) of ``key`` where both were measured."""
    def series(name):
        return {r['res']: r[key] for r in results
                if r['model'] == name and r['arch'] == arch and r['status'] == 'ok'
                and r.get('compiled', False) == compiled and r['batch'] == batch and r[key]}
    mine, vit = series(model_name), series('vit')
    return sorted((res, mine[res] / vit[res]) for res in mine if res in vit)


def plot(results, args, path, env=None):
    """A row of three panels per batch size: img/s and peak memory vs resolution (a colour per
    model and size; failures marked on the x axis), and VRWKV / ViT of both (solid: speed,
    dashed: memory; the line at 1 is parity). Log axes labelled with the measured values."""
    batches = list(args.batch_size)
    with_ratio = 'vit' in args.models and len(args.models) > 1
    ncols = 3 if with_ratio else 2
    fig, axes = plots.subplots(len(batches), ncols, panel=(5.2, 4.2))
    styles = series_styles(args)
    for row, batch in zip(axes, batches):
        for (arch, model_name, compiled), style in styles.items():
            rs = [r for r in results if r['arch'] == arch and r['model'] == model_name
                  and r.get('compiled', False) == compiled and r['batch'] == batch]
            label = model_label(model_name, arch, args.baseline) + (
                ' compiled' if compiled else '')
            for ax, key in zip(row, ('img_s', 'mem_mib')):
                pts = _ok_points(rs, key)
                if pts:
                    ax.plot(*zip(*pts), label=label, **style)
                for r in rs:  # mark failures on the x axis
                    if r['status'] != 'ok':
                        ax.annotate(r['status'], (r['res'], 0), xycoords=('data', 'axes fraction'),
                                    color=style['color'], fontsize=7, ha='center', va='bottom')
            if with_ratio and model_name != 'vit':
                for what, key, linestyle in RATIOS:
                    pts = ratio_points(results, model_name, arch, compiled, batch, key)
                    if pts:
                        row[2].plot(*zip(*pts), label=f'{label} / ViT {what}',
                                    **dict(style, linestyle=linestyle if not compiled else ':'))
        titles = ['throughput (img/s, higher is better)', 'peak memory (MiB, lower is better)']
        ylabels = ['img/s', 'MiB']
        if with_ratio:
            row[2].axhline(1.0, color='k', linewidth=0.8, label='parity (1)')
            titles.append('VRWKV / ViT: speed (solid), memory (dashed)')
            ylabels.append('ratio')
        for ax, title, ylabel in zip(row, titles, ylabels):
            ax.set_xlabel('resolution (px, square)')
            ax.set_ylabel(ylabel)
            ax.set_title(f'{title}, batch {batch}' if len(batches) > 1 else title, fontsize=9)
            plots.log_axis(ax, 'x', args.resolutions)
            if ax.lines:
                plots.log_axis(ax, 'y')
                ax.legend(fontsize=7)
            ax.grid(True, which='both', alpha=0.3)
    env = env or dict(device=args.device, device_name=args.device,
                      threads=torch.get_num_threads())
    what = 'inference' if args.mode == 'infer' else 'training step (fwd + bwd + AdamW)'
    run = {'eager': 'eager', 'compiled': 'torch.compile', 'both': 'eager and torch.compile'}
    plots.save_figure(fig, path, plots.plot_title(
        f'Backbones, {what}, {run[args.compile]}', env, args.dtype, batches))


def main(argv=None):
    args = parse_args(argv)
    if args.device == 'cuda':
        torch.backends.cudnn.benchmark = False
    variants = COMPILE_CHOICES[args.compile]
    total = (len(args.archs) * len(args.resolutions) * len(args.models) * len(variants)
             * len(args.batch_size))
    t0 = time.time()
    with Progress(total, 'model', args.no_progress) as progress:
        results, mem_note = run_sweep(args, progress)
    rows = build_table(results, args.archs, args.resolutions, variants, args.batch_size,
                       args.models)
    print(f'mode {args.mode}, device {args.device}, dtype {args.dtype}, '
          f'batch {" ".join(map(str, args.batch_size))}, warmup '
          f'{args.warmup}, median of {args.repeat} runs, threads {torch.get_num_threads()}'
          + (f', depth {args.depth}' if args.depth else '') + f', {time.time() - t0:.0f}s')
    print(format_table(rows, args.baseline, args.models))
    if mem_note:
        print(mem_note)
    for r in results:
        if r['status'] != 'ok':
            print(f"{r['name']} {r['res']}px B={r['batch']}: {r['status']} {r['error'] or ''}")
    env = machine.environment(args.device, args.dtype, ('mmpretrain', 'torchvision'))
    if 'available_backends' in env:
        env['wkv_backends'] = env['available_backends']  # this tool's earlier name for it
    settings = {k: v for k, v in vars(args).items() if k not in ('json', 'plot')}
    doc = dict(tool='benchmark_model', environment=env, settings=settings,
               memory_method=(CudaMemory if args.device == 'cuda' else CpuMemory).method,
               memory_note=mem_note,
               results=results, table=rows, columns=list(table_columns(args.models)))
    report.write_outputs(args.json, doc, args.plot, lambda path: plot(results, args, path, env))
    return dict(results=results, table=rows, memory_note=mem_note)


if __name__ == '__main__':
    main()
