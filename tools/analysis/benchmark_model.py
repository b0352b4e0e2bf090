#!/usr/bin/env python
"""Inference throughput and peak memory of VRWKV backbones vs ViT/DeiT of the same size.

For every size (``--archs``: tiny / small / base) and input resolution (``--resolutions``)
both backbones are built at that resolution (random weights, ``eval()``, ``--dtype``), fed a
random ``[B, 3, R, R]`` batch under ``torch.inference_mode()``, run ``--warmup`` times untimed
and ``--repeat`` times timed; the median time gives img/s = B / median. Backbone only: no
neck or head, both return the last feature map.

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

Output: a table (rows = size x resolution; columns: img/s of both, ratio VRWKV/ViT, memory of
both, ratio VRWKV/ViT), ``--json FILE`` (environment, settings, every measurement, the
table), ``--plot FILE`` (img/s and memory vs resolution, log scales).

Examples::

    python tools/analysis/benchmark_model.py                       # CPU: 224/384/512, batch 1
    python tools/analysis/benchmark_model.py --quick --device cpu  # smoke test, seconds
    python tools/analysis/benchmark_model.py --device cuda --json model.json --plot model.png
    python tools/analysis/benchmark_model.py --device cuda --archs tiny \\
        --resolutions 224 512 1024 2048 --dtype float32 --batch-size 1
"""
import argparse
import ctypes
import gc
import json
import os
import os.path as osp
import platform
import re
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

ARCHS = ('tiny', 'small', 'base')
# ViT/DeiT of the same size as VRWKV-T/S/B (mmpretrain's 'deit-*' archs).
VIT_ARCHS = {
    'tiny': dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768),
    'small': dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
}
MODELS = ('vrwkv', 'vit')
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
DEFAULTS = {
    'cpu': dict(archs=list(ARCHS), resolutions=[224, 384, 512], batch_size=1, warmup=1,
                repeat=3, dtype='float32'),
    'cuda': dict(archs=list(ARCHS), resolutions=[224, 384, 512, 768, 1024, 1536, 2048],
                 batch_size=1, warmup=3, repeat=10, dtype='bfloat16'),
}
QUICK = {
    'cpu': dict(archs=['tiny'], resolutions=[224, 384], warmup=1, repeat=2),
    'cuda': dict(archs=list(ARCHS), resolutions=[224, 1024, 2048], warmup=2, repeat=5),
}
TABLE_COLUMNS = ('arch', 'res', 'tokens', 'batch', 'vrwkv_img_s', 'vit_img_s', 'speed_ratio',
                 'vrwkv_mem_mib', 'vit_mem_mib', 'mem_ratio')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Per-device defaults: ' + '; '.join(
            f'{d}: archs={" ".join(v["archs"])} resolutions={" ".join(map(str, v["resolutions"]))}'
            f' batch={v["batch_size"]} warmup={v["warmup"]} repeat={v["repeat"]} dtype={v["dtype"]}'
            for d, v in DEFAULTS.items()) + '. --quick: ' + '; '.join(
            f'{d}: archs={" ".join(v["archs"])} resolutions={" ".join(map(str, v["resolutions"]))}'
            f' repeat={v["repeat"]}' for d, v in QUICK.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', choices=['cpu', 'cuda'], default=None,
                   help='default: cuda when available, else cpu')
    p.add_argument('--archs', nargs='+', choices=ARCHS, default=None, help='model sizes')
    p.add_argument('--resolutions', nargs='+', type=int, default=None,
                   help='square input sides in pixels (multiples of 16)')
    p.add_argument('--batch-size', type=int, default=None, help='images per forward pass')
    p.add_argument('--dtype', choices=sorted(DTYPES), default=None,
                   help='weights and input dtype (default: float32 on cpu, bfloat16 on cuda)')
    p.add_argument('--warmup', type=int, default=None, help='untimed runs per measurement')
    p.add_argument('--repeat', type=int, default=None, help='timed runs (median reported)')
    p.add_argument('--baseline', choices=['auto', 'mmpretrain', 'torchvision'], default='auto',
                   help='where the ViT comes from (auto: mmpretrain if installed, else torchvision)')
    p.add_argument('--models', nargs='+', choices=MODELS, default=list(MODELS),
                   help='which backbones to measure')
    p.add_argument('--depth', type=int, default=None,
                   help='override the depth of both backbones (smoke tests; default 12)')
    p.add_argument('--wkv-backend', default='auto', help="VRWKV(wkv_backend=...)")
    p.add_argument('--threads', type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument('--quick', action='store_true',
                   help='small preset for smoke tests; explicit options still win')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', metavar='FILE', help='write settings, measurements and table as JSON')
    p.add_argument('--plot', metavar='FILE', help='write a PNG of img/s and memory vs resolution')
    p.add_argument('--no-progress', action='store_true', help='no progress bar on stderr')
    args = p.parse_args(argv)

    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda but torch sees no CUDA GPU')
    preset = dict(DEFAULTS[args.device])
    if args.quick:
        preset.update(QUICK[args.device])
    for key in ('archs', 'resolutions', 'batch_size', 'warmup', 'repeat', 'dtype'):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.repeat < 1 or args.warmup < 0 or args.batch_size < 1:
        p.error('--repeat and --batch-size must be >= 1, --warmup >= 0')
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


def resolve_baseline(name, error=None):
    """'auto' -> 'mmpretrain' when importable, else 'torchvision'; check availability."""
    def importable(mod):
        try:
            __import__(mod)
            return True
        except Exception:  # noqa: BLE001  (mmpretrain fails with ImportError or mmcv errors)
            return False

    if name == 'auto':
        name = 'mmpretrain' if importable('mmpretrain.models') else 'torchvision'
    module = {'mmpretrain': 'mmpretrain.models', 'torchvision': 'torchvision.models'}[name]
    if not importable(module):
        msg = f'--baseline {name}: {module} cannot be imported'
        if error is None:
            raise ImportError(msg)
        error(msg)
    return name


# ----------------------------------------------------------------------------- models

class TorchvisionViT(nn.Module):
    """torchvision's ViT as a backbone: patch embedding, class token, encoder (position
    embedding, blocks, final LayerNorm); returns the patch tokens as ``[B, C, H', W']``."""

    def __init__(self, embed_dims, num_layers, num_heads, feedforward_channels, img_size,
                 patch_size=16):
        super().__init__()
        from torchvision.models.vision_transformer import VisionTransformer
        self.vit = VisionTransformer(
            image_size=img_size, patch_size=patch_size, num_layers=num_layers,
            num_heads=num_heads, hidden_dim=embed_dims, mlp_dim=feedforward_channels)
        self.vit.heads = nn.Identity()

    def forward(self, x):
        B = x.shape[0]
        hw = (x.shape[2] // self.vit.patch_size, x.shape[3] // self.vit.patch_size)
        x = self.vit._process_input(x)
        x = torch.cat([self.vit.class_token.expand(B, -1, -1), x], dim=1)
        x = self.vit.encoder(x)
        return (x[:, 1:].transpose(1, 2).reshape(B, -1, *hw), )


def build_model(model, arch, res, baseline, depth=None, wkv_backend='auto'):
    if model == 'vrwkv':
        from mmvrwkv.models.backbones import VRWKV
        kw = dict(arch=arch, img_size=res, patch_size=16, wkv_backend=wkv_backend)
        if depth is not None:
            kw['depth'] = depth
        return VRWKV(**kw)
    spec = dict(VIT_ARCHS[arch])
    if depth is not None:
        spec['num_layers'] = depth
    if baseline == 'mmpretrain':
        from mmpretrain.models import VisionTransformer
        return VisionTransformer(arch=spec, img_size=res, patch_size=16, out_type='featmap')
    return TorchvisionViT(img_size=res, **spec)


def model_label(model, arch, baseline):
    if model == 'vrwkv':
        return f'VRWKV-{arch[0].upper()}'
    return f'DeiT-{arch[0].upper()} ({baseline})'


# ----------------------------------------------------------------------------- memory

_PROC_STATUS = '/proc/self/status'
_CLEAR_REFS = '/proc/self/clear_refs'


def _proc_kib(key):
    with open(_PROC_STATUS) as f:
        m = re.search(rf'^{key}:\s+(\d+) kB', f.read(), re.M)
    return int(m.group(1)) if m else None


def _malloc_trim():
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class CpuMemory:
    """Resident-set peak above a baseline (see the module docstring)."""

    def __init__(self):
        self.reason = None
        try:
            _proc_kib('VmRSS')
            with open(_CLEAR_REFS, 'w') as f:
                f.write('5')
            if _proc_kib('VmHWM') is None:
                raise OSError('no VmHWM in /proc/self/status')
        except OSError as e:
            self.reason = f'CPU memory not measured: /proc/self/clear_refs or VmHWM unusable ({e})'

    @property
    def available(self):
        return self.reason is None

    def baseline(self):
        if not self.available:
            return None
        gc.collect()
        _malloc_trim()
        return _proc_kib('VmRSS')

    def reset_peak(self):
        if self.available:
            gc.collect()
            _malloc_trim()
            with open(_CLEAR_REFS, 'w') as f:
                f.write('5')

    def peak_mib(self, base):
        if not self.available or base is None:
            return None
        return max(0, _proc_kib('VmHWM') - base) / 1024


class CudaMemory:
    reason = None
    available = True

    def baseline(self):
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        return torch.cuda.memory_allocated()

    def reset_peak(self):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def peak_mib(self, base):
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20


# ----------------------------------------------------------------------------- measuring

def is_oom(exc):
    oom_type = getattr(torch.cuda, 'OutOfMemoryError', None)
    if isinstance(exc, MemoryError) or (oom_type is not None and isinstance(exc, oom_type)):
        return True
    msg = str(exc).lower()
    return 'out of memory' in msg or "can't allocate memory" in msg or 'failed to allocate' in msg


def _sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def measure_one(args, model_name, arch, res, memory):
    """One model at one resolution: returns a result dict (status 'ok', 'OOM' or 'error')."""
    device, dtype, B = args.device, DTYPES[args.dtype], args.batch_size
    res_dict = dict(model=model_name, arch=arch, res=res, tokens=(res // 16) ** 2, batch=B,
                    name=model_label(model_name, arch, args.baseline), status='ok', img_s=None,
                    median_s=None, times_s=[], mem_mib=None, params=None, error=None)
    model = x = None
    try:
        base = memory.baseline()
        torch.manual_seed(args.seed)
        model = build_model(model_name, arch, res, args.baseline, args.depth, args.wkv_backend)
        model.to(device=device, dtype=dtype)
        model.eval()  # (mmpretrain's backbones' train() returns None: no chaining)
        res_dict['params'] = sum(p.numel() for p in model.parameters())
        x = torch.randn(B, 3, res, res, device=device, dtype=dtype)
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(x)
            _sync(device)
            times = []
            for i in range(args.repeat):
                if i == 0:
                    memory.reset_peak()
                _sync(device)
                t0 = time.perf_counter()
                out = model(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
                if i == 0:
                    res_dict['mem_mib'] = memory.peak_mib(base)
                del out
        res_dict['times_s'] = times
        res_dict['median_s'] = statistics.median(times)
        res_dict['img_s'] = B / res_dict['median_s']
    except Exception as e:  # noqa: BLE001  (recorded, the sweep goes on)
        res_dict['status'] = 'OOM' if is_oom(e) else 'error'
        res_dict['error'] = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:300]
    finally:
        del model, x
        gc.collect()
        if device == 'cuda':
            torch.cuda.empty_cache()
    return res_dict


def warm_up_process(args):
    """One untimed forward of each (shallow) model first, so that lazily loaded libraries and
    kernels are not charged to the first configuration's time or memory."""
    dtype = DTYPES[args.dtype]
    for model_name in args.models:
        try:
            model = build_model(model_name, args.archs[0], args.resolutions[0], args.baseline,
                                1, args.wkv_backend)
            model.to(device=args.device, dtype=dtype)
            model.eval()
            x = torch.randn(1, 3, args.resolutions[0], args.resolutions[0], device=args.device,
                            dtype=dtype)
            with torch.inference_mode():
                model(x)
            _sync(args.device)
        except Exception:  # noqa: BLE001  (the real measurement records the error)
            pass
        finally:
            model = x = None
            gc.collect()


def run_sweep(args, progress=None):
    memory = CudaMemory() if args.device == 'cuda' else CpuMemory()
    warm_up_process(args)
    results = []
    for arch in args.archs:
        for model_name in args.models:
            oom_at = None
            for res in args.resolutions:
                if oom_at is not None:
                    r = dict(model=model_name, arch=arch, res=res, tokens=(res // 16) ** 2,
                             batch=args.batch_size, params=None,
                             name=model_label(model_name, arch, args.baseline),
                             status='OOM', img_s=None, median_s=None, times_s=[], mem_mib=None,
                             error=f'skipped: out of memory at {oom_at}px')
                else:
                    if progress is not None:
                        progress.set_description(f'{model_label(model_name, arch, args.baseline)} {res}px')
                    r = measure_one(args, model_name, arch, res, memory)
                    if r['status'] == 'OOM':
                        oom_at = res
                results.append(r)
                if progress is not None:
                    progress.update(1)
    return results, memory.reason


def build_table(results, archs, resolutions):
    """One row per (arch, resolution), columns TABLE_COLUMNS; ratios are VRWKV / ViT."""
    by_key = {(r['model'], r['arch'], r['res']): r for r in results}
    rows = []
    for arch in archs:
        for res in resolutions:
            a, b = by_key.get(('vrwkv', arch, res)), by_key.get(('vit', arch, res))

            def val(r, key):
                if r is None:
                    return None
                return r[key] if r['status'] == 'ok' else r['status']

            def ratio(x, y):
                ok = isinstance(x, (int, float)) and isinstance(y, (int, float)) and y
                return x / y if ok else None

            row = dict(arch=arch, res=res, tokens=(res // 16) ** 2,
                       batch=(a or b or {}).get('batch'),
                       vrwkv_img_s=val(a, 'img_s'), vit_img_s=val(b, 'img_s'),
                       vrwkv_mem_mib=val(a, 'mem_mib'), vit_mem_mib=val(b, 'mem_mib'))
            row['speed_ratio'] = ratio(row['vrwkv_img_s'], row['vit_img_s'])
            row['mem_ratio'] = ratio(row['vrwkv_mem_mib'], row['vit_mem_mib'])
            rows.append({k: row[k] for k in TABLE_COLUMNS})
    return rows


def _fmt(x, spec):
    if x is None:
        return 'n/a'
    if isinstance(x, str):
        return x
    return format(x, spec)


def format_table(rows, baseline):
    head = ['size', 'res', 'tokens', 'B', 'VRWKV img/s', 'ViT img/s', 'speed x',
            'VRWKV MiB', 'ViT MiB', 'mem x']
    body = [[r['arch'], str(r['res']), str(r['tokens']), str(r['batch']),
             _fmt(r['vrwkv_img_s'], '.2f'), _fmt(r['vit_img_s'], '.2f'),
             _fmt(r['speed_ratio'], '.2f'), _fmt(r['vrwkv_mem_mib'], '.1f'),
             _fmt(r['vit_mem_mib'], '.1f'), _fmt(r['mem_ratio'], '.2f')] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    lines = ['  '.join(h.rjust(w) for h, w in zip(head, widths)),
             '  '.join('-' * w for w in widths)]
    lines += ['  '.join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
    lines.append(f'ViT = DeiT of the same size from {baseline}; speed x = img/s VRWKV / ViT '
                 '(> 1: VRWKV faster); mem x = peak memory VRWKV / ViT (< 1: VRWKV lighter)')
    return '\n'.join(lines)


def plot(results, args, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = dict(zip(ARCHS, ('tab:blue', 'tab:orange', 'tab:green')))
    for arch in args.archs:
        for model_name in args.models:
            rs = [r for r in results if r['arch'] == arch and r['model'] == model_name]
            style = dict(color=colors[arch], marker='o' if model_name == 'vrwkv' else 's',
                         linestyle='-' if model_name == 'vrwkv' else '--',
                         label=model_label(model_name, arch, args.baseline))
            for ax, key in zip(axes, ('img_s', 'mem_mib')):
                pts = [(r['res'], r[key]) for r in rs if r['status'] == 'ok' and r[key]]
                if pts:
                    ax.plot(*zip(*pts), **style)
                for r in rs:  # mark failures on the x axis
                    if r['status'] != 'ok':
                        ax.annotate(r['status'], (r['res'], 0), xycoords=('data', 'axes fraction'),
                                    color=colors[arch], fontsize=7, ha='center', va='bottom')
    for ax, title in zip(axes, ('throughput (img/s)', 'peak memory (MiB)')):
        ax.set_xlabel('resolution (px, square)')
        ax.set_title(title)
        ax.set_yscale('log')
        ax.set_xscale('log')
        ax.set_xticks(args.resolutions)
        ax.set_xticklabels([str(r) for r in args.resolutions])
        ax.minorticks_off()
        ax.grid(True, which='both', alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    dev = args.device if args.device == 'cpu' else torch.cuda.get_device_name()
    fig.suptitle(f'VRWKV vs ViT backbone inference, {dev}, {args.dtype}, batch {args.batch_size}')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def environment(args):
    env = dict(python=platform.python_version(), platform=platform.platform(),
               torch=torch.__version__, torch_cuda=torch.version.cuda,
               threads=torch.get_num_threads(), cpu_count=os.cpu_count(), device=args.device)
    try:
        env['loadavg'] = list(os.getloadavg())
    except OSError:
        pass
    if args.device == 'cuda':
        env['device_name'] = torch.cuda.get_device_name()
    try:
        from mmvrwkv.ops import available_backends
        env['wkv_backends'] = list(available_backends())
    except ImportError:
        pass
    for mod in ('mmvrwkv', 'mmpretrain', 'torchvision'):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    return env


class _Progress:
    """Minimal progress display on stderr when tqdm is missing."""

    def __init__(self, total, disable):
        self.total, self.n, self.disable, self.desc = total, 0, disable, ''

    def set_description(self, desc):
        self.desc = desc

    def update(self, k=1):
        self.n += k
        if not self.disable:
            print(f'\r[{self.n}/{self.total}] {self.desc}   ', end='', file=sys.stderr, flush=True)

    def close(self):
        if not self.disable:
            print(file=sys.stderr)


def make_progress(total, disable):
    try:
        from tqdm import tqdm
    except ImportError:
        return _Progress(total, disable)
    return tqdm(total=total, disable=disable, file=sys.stderr, desc='benchmark', leave=False)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == 'cuda':
        torch.backends.cudnn.benchmark = False
    total = len(args.archs) * len(args.resolutions) * len(args.models)
    progress = make_progress(total, args.no_progress)
    t0 = time.time()
    try:
        results, mem_note = run_sweep(args, progress)
    finally:
        progress.close()
    rows = build_table(results, args.archs, args.resolutions)
    table = format_table(rows, args.baseline)
    print(f'device {args.device}, dtype {args.dtype}, batch {args.batch_size}, warmup '
          f'{args.warmup}, median of {args.repeat} runs, threads {torch.get_num_threads()}'
          + (f', depth {args.depth}' if args.depth else '') + f', {time.time() - t0:.0f}s')
    print(table)
    if mem_note:
        print(mem_note)
    for r in results:
        if r['status'] != 'ok':
            print(f"{r['name']} {r['res']}px: {r['status']} {r['error'] or ''}")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ('json', 'plot')}
        memory_method = ('torch.cuda.max_memory_allocated above the pre-build allocation'
                         if args.device == 'cuda' else
                         'VmHWM (reset via /proc/self/clear_refs) above the pre-build VmRSS')
        with open(args.json, 'w') as f:
            json.dump(dict(environment=environment(args), settings=settings,
                           memory_method=memory_method, memory_note=mem_note,
                           results=results, table=rows, columns=list(TABLE_COLUMNS)),
                      f, indent=1)
    if args.plot:
        plot(results, args, args.plot)
    return dict(results=results, table=rows, memory_note=mem_note)


if __name__ == '__main__':
    main()
