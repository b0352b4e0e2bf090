"""The benchmarks' plot helpers: distinct series styles, log axes labelled with the measured
values, titles naming the device, and figures written to a file.

matplotlib is imported only inside the functions that draw (``pyplot()``), on the file-only
Agg backend; ``tick_label``, ``series_style`` and ``plot_title`` need no matplotlib.
"""
import math
import os
import os.path as osp
import textwrap
from typing import Any, Mapping, Optional, Sequence

from .machine import device_label

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


def log_ticks(lo: float, hi: float, base: int) -> list:
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
        ticks = log_ticks(lo, hi, base)
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
