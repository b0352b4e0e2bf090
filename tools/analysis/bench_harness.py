"""What the benchmarks in tools/analysis share: options and device presets, a timer, peak
memory meters, an environment record, a text progress bar, and table / JSON / plot writers.

A benchmark then only says what it measures (its cases) and how it reports (its columns).
Benchmarks import this module from beside them, so it works for ``python
tools/analysis/benchmark_x.py`` from any directory and for tests that load a benchmark from its
path::

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_harness as bh

Importing it also puts the checkout on ``sys.path`` (the benchmarks run from a checkout without
installing the package). Needs only torch (and matplotlib for plots): the GPU check machines
have no mmengine / mmcv.
"""

import argparse
import ctypes
import gc
import json
import math
import os
import os.path as osp
import platform
import re
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TextIO, Union

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # mmvrwkv from this checkout
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


# ----------------------------------------------------------------------------- options, presets

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


# ----------------------------------------------------------------------------- timing

def sync(device: Union[str, torch.device]) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


@dataclass
class Timing:
    """Seconds of the timed calls of one measurement and the statistics of them."""
    samples: list
    stat: str = 'median'
    threads: int = 1
    device: str = 'cpu'

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def value(self) -> float:
        """The reported time: the median, or the minimum with stat='min'."""
        return self.min if self.stat == 'min' else self.median

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the timed calls disagree."""
        return (self.max - self.min) / self.median if self.median > 0 else 0.0


def measure(fn: Callable[[], Any], device: Union[str, torch.device] = 'cpu', warmup: int = 1,
            repeat: int = 5, budget: Optional[float] = None, stat: str = 'median',
            min_repeat: int = 3, before: Optional[Callable[[int], Any]] = None,
            after: Optional[Callable[[int], Any]] = None) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeat`` timed ones.

    On CUDA each call is timed with CUDA events after a synchronise, so queued work is not
    charged to it; on the CPU with ``time.perf_counter``. Timing stops once ``budget``
    seconds have passed (never before ``min(min_repeat, repeat)`` calls). ``before(i)`` and
    ``after(i)`` run around timed call i, outside the timed region (e.g. peak memory).
    """
    cuda = torch.device(device).type == 'cuda'
    for _ in range(warmup):
        fn()
    sync(device)
    if cuda:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    start = time.perf_counter()
    for i in range(repeat):
        if before is not None:
            before(i)
        if cuda:
            torch.cuda.synchronize()
            begin.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(begin.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        if after is not None:
            after(i)
        if (budget is not None and len(samples) >= min(min_repeat, repeat)
                and time.perf_counter() - start > budget):
            break
    return Timing(samples, stat, torch.get_num_threads(), torch.device(device).type)


def max_rel_err(out: Any, ref: Any) -> float:
    """Worst max|x - x_ref| / max|x_ref| over a tensor or paired sequences of tensors
    (inf when x is not finite; the absolute error when x_ref is all zero)."""
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


def is_oom(exc: BaseException) -> bool:
    """Whether an exception is an out-of-memory error (CUDA or CPU allocator)."""
    oom_type = getattr(torch.cuda, 'OutOfMemoryError', None)
    if isinstance(exc, MemoryError) or (oom_type is not None and isinstance(exc, oom_type)):
        return True
    msg = str(exc).lower()
    return 'out of memory' in msg or "can't allocate memory" in msg or 'failed to allocate' in msg


def free_memory(device: Union[str, torch.device]) -> None:
    """Collect garbage and hand cached CUDA blocks back (between configurations)."""
    gc.collect()
    if torch.device(device).type == 'cuda':
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- peak memory

_PROC_STATUS = '/proc/self/status'
_CLEAR_REFS = '/proc/self/clear_refs'


def _proc_kib(key: str) -> Optional[int]:
    with open(_PROC_STATUS) as f:
        m = re.search(rf'^{key}:\s+(\d+) kB', f.read(), re.M)
    return int(m.group(1)) if m else None


def _malloc_trim() -> None:
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class CpuMemory:
    """Peak resident set above a baseline: VmHWM (reset through /proc/self/clear_refs) minus
    VmRSS taken after gc and malloc_trim. A proxy (torch keeps no CPU allocator statistics);
    unavailable (``reason`` says why) without a writable clear_refs."""
    method = 'VmHWM (reset via /proc/self/clear_refs) above the pre-build VmRSS'

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
    def available(self) -> bool:
        return self.reason is None

    def baseline(self) -> Optional[int]:
        if not self.available:
            return None
        gc.collect()
        _malloc_trim()
        return _proc_kib('VmRSS')

    def reset_peak(self) -> None:
        if self.available:
            gc.collect()
            _malloc_trim()
            with open(_CLEAR_REFS, 'w') as f:
                f.write('5')

    def peak_mib(self, base: Optional[int]) -> Optional[float]:
        if not self.available or base is None:
            return None
        return max(0, _proc_kib('VmHWM') - base) / 1024


class CudaMemory:
    """Peak ``torch.cuda.max_memory_allocated()`` above the allocation at the baseline."""
    method = 'torch.cuda.max_memory_allocated above the pre-build allocation'
    reason = None
    available = True

    def baseline(self) -> int:
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        return torch.cuda.memory_allocated()

    def reset_peak(self) -> None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def peak_mib(self, base: int) -> float:
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20


def memory_meter(device: str) -> Union[CpuMemory, CudaMemory]:
    """The peak memory meter of a device."""
    return CudaMemory() if device == 'cuda' else CpuMemory()


# ----------------------------------------------------------------------------- environment

def loadavg() -> Optional[list]:
    """The 1/5/15-minute load averages, or None where the platform has none."""
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return None


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, dtype: Optional[str] = None, modules: Iterable[str] = ()) -> dict:
    """What a measurement depends on: Python, platform, CPU, torch, threads, load, the device
    (name, and on CUDA capability, SMs, L2, memory), the dtype, the Bi-WKV backends built
    here, and the versions of ``modules`` that import (absent ones are left out)."""
    env = {
        'python': platform.python_version(),
        'platform': platform.platform(),
        'processor': cpu_model(),
        'torch': torch.__version__,
        'torch_cuda': torch.version.cuda,
        'threads': torch.get_num_threads(),
        'cpu_count': os.cpu_count(),
        'loadavg': loadavg(),
        'device': device,
        'device_name': cpu_model() if device == 'cpu' else torch.cuda.get_device_name(),
    }
    if dtype is not None:
        env['dtype'] = dtype
    if device == 'cuda':
        prop = torch.cuda.get_device_properties(torch.cuda.current_device())
        env.update(capability=f'{prop.major}.{prop.minor}', sm_count=prop.multi_processor_count,
                   l2_bytes=getattr(prop, 'L2_cache_size', None), total_memory=prop.total_memory)
    try:
        from mmvrwkv.ops import available_backends
        env['available_backends'] = list(available_backends())
    except ImportError:  # pragma: no cover
        pass
    for mod in ('mmvrwkv', *modules):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001  (missing, or broken by a missing dependency)
            pass
    return env


def device_label(env: Mapping[str, Any]) -> str:
    """'NVIDIA H200' on CUDA, 'cpu (<model>, N threads)' on the CPU."""
    if env.get('device') == 'cuda':
        return env.get('device_name') or 'cuda'
    return f"cpu ({env.get('device_name') or cpu_model()}, {env.get('threads')} threads)"


def busy_warning(env: Mapping[str, Any], hint: str = '') -> Optional[str]:
    """A warning line when the load average, at the start (``env``) or now, exceeds the CPU
    count of a CPU measurement; None otherwise."""
    start, now = env.get('loadavg'), loadavg()
    if env.get('device') != 'cpu' or not start or not now:
        return None
    cpus = os.cpu_count() or 1
    if max(start[0], now[0]) <= cpus:
        return None
    return (f'# WARNING: the machine was busy (load average {start[0]:.1f} at the start, '
            f'{now[0]:.1f} at the end, {cpus} CPUs): CPU timings are unreliable' + hint)


# ----------------------------------------------------------------------------- progress

class Progress:
    """A text progress bar on stderr: ``[name] 3/12 [#####...] 25% 4.1s <what runs now>``.

    On a terminal it redraws one line; elsewhere (logs) it writes a line per tenth done.
    ``disable=True`` (--no-progress) writes nothing."""

    def __init__(self, total: int, name: str, disable: bool = False,
                 stream: Optional[TextIO] = None, width: int = 20):
        self.total, self.name, self.disable, self.width = max(0, total), name, disable, width
        self.stream = stream if stream is not None else sys.stderr
        self.n, self.desc, self.t0 = 0, '', time.perf_counter()
        self._tty = bool(getattr(self.stream, 'isatty', lambda: False)())
        self._shown, self._last_tenth = 0, -1

    def set_description(self, desc: str) -> None:
        self.desc = desc
        if self._tty:
            self._draw()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw()

    def _draw(self) -> None:
        if self.disable:
            return
        frac = min(1.0, self.n / self.total) if self.total else 1.0
        done = int(frac * self.width)
        text = (f'[{self.name}] {self.n}/{self.total} [{"#" * done}{"." * (self.width - done)}] '
                f'{100 * frac:3.0f}% {time.perf_counter() - self.t0:.1f}s {self.desc}'.rstrip())
        if self._tty:
            self.stream.write('\r' + text.ljust(self._shown))
            self._shown = len(text)
        elif int(frac * 10) != self._last_tenth:
            self._last_tenth = int(frac * 10)
            self.stream.write(text + '\n')
        self.stream.flush()

    def close(self) -> None:
        if self._tty and self._shown and not self.disable:
            self.stream.write('\n')
            self.stream.flush()
            self._shown = 0

    def __enter__(self) -> 'Progress':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- tables, JSON

@dataclass(frozen=True)
class Column:
    """One table column: its title, the row key (or a function of the row) and how a number
    is written. Strings are written as they are, None as ``missing``."""
    title: str
    key: Union[str, Callable[[Mapping], Any]]
    fmt: str = ''
    suffix: str = ''
    missing: str = '-'

    def cell(self, row: Mapping) -> str:
        value = self.key(row) if callable(self.key) else row.get(self.key)
        if value is None:
            return self.missing
        if isinstance(value, str):
            return value
        return format(value, self.fmt) + self.suffix


def format_table(columns: Sequence[Column], rows: Iterable[Mapping],
                 note: Optional[Callable[[Mapping], Optional[str]]] = None, lead: int = 0,
                 sep: str = '  ') -> str:
    """Right-aligned text table with a dashed rule under the titles. A row for which
    ``note(row)`` returns text (a skipped or failed case) shows its first ``lead`` cells and
    then that text across the other columns; column widths come from the full rows."""
    widths = [len(c.title) for c in columns]
    body = []
    for row in rows:
        text = note(row) if note is not None else None
        cells = [c.cell(row) for c in (columns[:lead] if text is not None else columns)]
        body.append((cells, text))
        if text is None:
            widths = [max(w, len(c)) for w, c in zip(widths, cells)]
    lines = [sep.join(c.title.rjust(w) for c, w in zip(columns, widths)),
             sep.join('-' * w for w in widths)]
    for cells, text in body:
        line = sep.join(c.rjust(w) for c, w in zip(cells, widths))
        lines.append(line if text is None else (line + sep if cells else '') + text)
    return '\n'.join(lines)


def _jsonable(x: Any) -> Any:
    if isinstance(x, argparse.Namespace):
        return vars(x)
    return str(x)


def write_json(path: str, doc: Mapping) -> None:
    """Write ``doc`` as indented JSON (folders created; dtypes and the like as strings)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(doc, f, indent=1, default=_jsonable)


# ----------------------------------------------------------------------------- plots

# Distinct colours (matplotlib's 'tab10', without its grey) and markers, taken in order.
PALETTE = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2',
           '#bcbd22', '#17becf')
MARKERS = 'osD^v<>PX*'


def series_style(i: int, dashed: bool = False) -> dict:
    """Colour and marker of the i-th series of a plot (distinct for the first nine)."""
    return dict(color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)],
                linestyle='--' if dashed else '-')


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (ImportError without matplotlib)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def subplots(nrows: int = 1, ncols: int = 1, panel: tuple = (5.0, 3.8)):
    """A figure of nrows x ncols panels of size ``panel`` (inches); axes as a 2-D list."""
    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows),
                             squeeze=False)
    return fig, axes


def plot_title(what: str, env: Mapping[str, Any], dtype: str, batch: Any) -> str:
    """'<what> - <device>, <dtype>, batch <B>' (batch: a number or a list of them)."""
    if isinstance(batch, (list, tuple)):
        batch = ', '.join(map(str, batch))
    return f'{what} - {device_label(env)}, {dtype}, batch {batch}'


def tick_label(v: float, suffix: str = '') -> str:
    """Plain tick text: '0.25', '196', '16384', '10k', '4.19M' (SI prefixes for round numbers
    from 10^4 and for all from 10^6)."""
    if v != 0 and abs(v) >= 1e4:
        digits = abs(v) / 10 ** math.floor(math.log10(abs(v)))
        if abs(v) >= 1e6 or round(digits, 1) == digits:
            for scale, prefix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
                if abs(v) >= scale:
                    return f'{v / scale:.3g}{prefix}{suffix}'
    if v == int(v):
        return f'{int(v)}{suffix}'
    return f'{v:.4g}{suffix}'


def _log_ticks(lo: float, hi: float, base: int) -> list:
    """Tick positions inside [lo, hi]: powers of two (base 2), else powers of ten (every
    other one beyond nine), else 1-2-5 steps, else round linear steps (narrow ranges)."""
    def inside(values):
        return [v for v in values if lo <= v <= hi]

    if base == 2:
        return inside(2.0**k for k in range(math.floor(math.log2(lo)),
                                            math.ceil(math.log2(hi)) + 1))
    ks = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = inside(10.0**k for k in ks)
    if len(ticks) >= 3:
        return ticks[::2] if len(ticks) > 9 else ticks
    ticks = inside(s * 10.0**k for k in ks for s in (1, 2, 5))
    if len(ticks) >= 2:
        return ticks
    from matplotlib.ticker import MaxNLocator
    return inside(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi))


def log_axis(ax, axis: str = 'y', ticks: Optional[Sequence[float]] = None, base: int = 10,
             suffix: str = '') -> None:
    """Log scale with labelled major ticks: at ``ticks`` (e.g. the measured sizes) or, by
    default, at 1-2-5 steps (base 10) or powers of two (base 2) inside the data range.
    Call after plotting."""
    getattr(ax, f'set_{axis}scale')('log', base=base)
    if ticks is None:
        lo, hi = getattr(ax, f'get_{axis}lim')()
        if not (lo > 0 and hi > lo):
            return
        ticks = _log_ticks(lo, hi, base)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator
    target = ax.xaxis if axis == 'x' else ax.yaxis
    target.set_major_locator(FixedLocator(list(ticks)))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: tick_label(v, suffix)))
    target.set_minor_locator(NullLocator())
    target.set_minor_formatter(NullFormatter())


def save_figure(fig, path: str, title: Optional[str] = None, dpi: int = 110) -> None:
    """Give the figure its title (wrapped to the figure's width), lay it out, write it
    (folders created) and close it."""
    if title:
        fig.suptitle(textwrap.fill(title, max(30, int(fig.get_figwidth() * 9))))
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def write_outputs(json_path: Optional[str], doc: Mapping, plot_path: Optional[str] = None,
                  plot: Optional[Callable[[str], None]] = None) -> None:
    """Write the JSON document and the plot a run asked for (--json, --plot) and say so; a
    missing matplotlib costs only the plot."""
    if json_path:
        write_json(json_path, doc)
        print(f'# wrote {json_path}')
    if plot_path and plot is not None:
        try:
            plot(plot_path)
        except ImportError as e:
            print(f'# no plot: {e}', file=sys.stderr)
            return
        print(f'# wrote {plot_path}')
