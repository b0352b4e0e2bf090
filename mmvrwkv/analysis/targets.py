"""The project's performance targets, evaluated on a benchmark's rows or JSON.

The benchmarks measure and write JSON; the targets live here, so that changing a target
does not touch a benchmark. ``evaluate(doc)`` gives one result per target: PASS, FAIL or
SKIP (no rows it applies to), with how many configurations meet it and the worst one.
``tools/analysis/benchmark_bi_wkv.py`` prints them after its table (and stores them in its
JSON as ``targets``); the check_targets command line evaluates stored JSON files.

Targets of ``benchmark_bi_wkv`` (names for overrides, e.g. ``--target NAME=VALUE``):

* ``cpu_fwd_speedup`` (15): CPU kernel forward at least this many times faster than the
  'torch' backend, and ``cpu_fwd_x_copy`` (4): at most this many times the time to copy
  k and v, both on configurations with B*T*C >= ``cpu_min_elems`` (the run's
  ``--target-min-elems``, else 2^19);
* ``cuda_fwd_pct`` (70) / ``cuda_fwdbwd_pct`` (50): CUDA kernel in bf16 on B*T*C >=
  ``cuda_min_elems`` (2^24), forward / forward + backward at least this % of the measured
  device copy bandwidth;
* ``check_tol``: with ``--check``, every max_rel_err at most this (the run's ``--check-tol``,
  else 1e-3 float32, 1e-2 float16, 5e-2 bfloat16).

Targets of ``benchmark_bi_wkv --op bi_wkv6``: ``cpu_v6_speedup`` (5): CPU kernel forward and
forward + backward at least this many times faster than the 'torch' backend at T =
``cpu_v6_T`` (4096); ``check_tol`` as above.

Needs only the standard library.
"""
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

BI_WKV_TARGETS = {
    'cpu_fwd_speedup': 15.0,    # torch_time / cpu_time, at least
    'cpu_fwd_x_copy': 4.0,      # cpu_time / copy_time, at most
    'cpu_min_elems': 2**19,     # default size floor of the CPU targets
    'cuda_fwd_pct': 70.0,       # % of copy bandwidth, at least (bf16)
    'cuda_fwdbwd_pct': 50.0,
    'cuda_min_elems': 2**24,    # size floor of the CUDA targets
}
BI_WKV6_TARGETS = {
    'cpu_v6_speedup': 5.0,      # torch_time / cpu_time at T = cpu_v6_T, at least
    'cpu_v6_T': 4096,
}
# Default --check tolerance per dtype (max|x - x_ref| / max|x_ref|).
CHECK_TOL = {'float32': 1e-3, 'bfloat16': 5e-2, 'float16': 1e-2}
# Every target name an override may set.
TARGET_NAMES = frozenset(BI_WKV_TARGETS) | frozenset(BI_WKV6_TARGETS) | {'check_tol'}


def _get(settings: Any, key: str, default: Any = None) -> Any:
    if isinstance(settings, Mapping):
        return settings.get(key, default)
    return getattr(settings, key, default)


class _Targets:
    """Collects results: one dict per target (name, status, value, threshold, detail)."""

    def __init__(self):
        self.results: List[dict] = []

    def add(self, name: str, rows: Sequence[Mapping], key: str, threshold: float,
            at_least: bool, none_msg: str) -> None:
        rows = [r for r in rows if r.get(key) is not None]
        if not rows:
            self.results.append(dict(name=name, status='SKIP', value=None, threshold=threshold,
                                     detail=none_msg))
            return
        worst = (min if at_least else max)(rows, key=lambda r: r[key])
        good = sum((r[key] >= threshold) if at_least else (r[key] <= threshold) for r in rows)
        self.results.append(dict(
            name=name, status='PASS' if good == len(rows) else 'FAIL', value=worst[key],
            threshold=threshold,
            detail=f'{good}/{len(rows)} configurations meet it; worst {worst[key]:.3g} at '
                   f"{worst['backend']} {worst['mode']} {worst['dtype']} B={worst['B']} "
                   f"T={worst['T']} C={worst['C']}"))


def bi_wkv_targets(rows: Sequence[Mapping], settings: Any, copy_gbps: Optional[float],
                   targets: Optional[Mapping[str, float]] = None) -> List[dict]:
    """The Bi-WKV benchmark's targets on its rows. ``settings``: the run's options (a
    Namespace or the JSON's ``args``: device, dtype, check, check_tol, target_min_elems);
    ``targets`` override entries of BI_WKV_TARGETS (and ``check_tol``)."""
    if _get(settings, 'op', 'bi_wkv') == 'bi_wkv6':
        return bi_wkv6_targets(rows, settings, targets)
    t = dict(BI_WKV_TARGETS, **(targets or {}))
    ok = [r for r in rows if r.get('status') == 'ok']
    out = _Targets()
    if _get(settings, 'device') == 'cpu':
        min_elems = int((targets or {}).get('cpu_min_elems')
                        or _get(settings, 'target_min_elems') or t['cpu_min_elems'])
        big = [r for r in ok if r['backend'] == 'cpu' and r['mode'] == 'fwd'
               and r['elems'] >= min_elems]
        why = f"needs 'cpu' and 'torch' fwd rows with B*T*C >= {min_elems}"
        out.add(f"CPU kernel forward >= {t['cpu_fwd_speedup']:g}x faster than 'torch'",
                big, 'vs_torch', t['cpu_fwd_speedup'], True, why)
        out.add(f"CPU kernel forward <= {t['cpu_fwd_x_copy']:g}x the copy time of k, v",
                big, 'x_copy', t['cpu_fwd_x_copy'], False, why)
    else:
        min_elems = int(t['cuda_min_elems'])
        power = min_elems.bit_length() - 1
        size = f'2^{power}' if min_elems == 2**power else str(min_elems)
        for mode, key in (('fwd', 'cuda_fwd_pct'), ('fwdbwd', 'cuda_fwdbwd_pct')):
            sel = [dict(r, pct_copy_bw=100 * r['gbps'] / copy_gbps) for r in ok
                   if copy_gbps and r['backend'] == 'cuda' and r['mode'] == mode
                   and r['dtype'] == 'bfloat16' and r['elems'] >= min_elems]
            out.add(f'CUDA kernel {mode} >= {t[key]:g}% of copy bandwidth '
                    f'({copy_gbps or 0:.0f} GB/s), bf16, B*T*C >= {size}', sel, 'pct_copy_bw',
                    t[key], True, f"needs 'cuda' rows in bfloat16 with B*T*C >= {size}")
    _check_tol_target(out, ok, settings, t)
    return out.results


def bi_wkv6_targets(rows: Sequence[Mapping], settings: Any,
                    targets: Optional[Mapping[str, float]] = None) -> List[dict]:
    """The targets of ``benchmark_bi_wkv --op bi_wkv6`` (BI_WKV6_TARGETS, overridable)."""
    t = dict(BI_WKV6_TARGETS, **(targets or {}))
    ok = [r for r in rows if r.get('status') == 'ok']
    out = _Targets()
    if _get(settings, 'device') == 'cpu':
        T = int(t['cpu_v6_T'])
        for mode in ('fwd', 'fwdbwd'):
            sel = [r for r in ok if r['backend'] == 'cpu' and r['mode'] == mode and r['T'] == T]
            out.add(f"CPU bi_wkv6 kernel {mode} >= {t['cpu_v6_speedup']:g}x faster than 'torch' "
                    f'at T = {T}', sel, 'vs_torch', t['cpu_v6_speedup'], True,
                    f"needs 'cpu' and 'torch' {mode} rows at T = {T}")
    _check_tol_target(out, ok, settings, t)
    return out.results


def _check_tol_target(out: _Targets, ok: Sequence[Mapping], settings: Any,
                      t: Mapping[str, float]) -> None:
    """With --check: every max_rel_err within the tolerance (override, run's, per dtype)."""
    if _get(settings, 'check'):
        dtype = _get(settings, 'dtype')
        tol = t.get('check_tol')
        if tol is None:
            tol = _get(settings, 'check_tol')
        if tol is None:
            tol = CHECK_TOL[dtype]
        out.add(f'--check: max_rel_err <= {tol:g} ({dtype})', ok, 'max_rel_err', tol, False,
                'no compared rows')


def _bi_wkv_doc(doc: Mapping, targets: Optional[Mapping[str, float]]) -> List[dict]:
    return bi_wkv_targets(doc['rows'], doc['args'], doc.get('baseline', {}).get('copy_gbps'),
                          targets)


# Benchmarks with targets: JSON 'tool' -> function(doc, overrides) -> results.
CHECKERS: Dict[str, Callable[[Mapping, Optional[Mapping[str, float]]], List[dict]]] = {
    'benchmark_bi_wkv': _bi_wkv_doc,
}


def evaluate(doc: Mapping, targets: Optional[Mapping[str, float]] = None) -> List[dict]:
    """The targets of the benchmark that wrote ``doc`` (its ``tool`` field); KeyError for a
    benchmark without targets."""
    return CHECKERS[doc.get('tool')](doc, targets)


def format_results(results: Sequence[Mapping]) -> List[str]:
    """'STATUS: name: detail' lines."""
    return [f"{r['status']}: {r['name']}: {r['detail']}" for r in results]
