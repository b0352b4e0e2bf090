"""How the FLOP analysis reports: the per-module table and the summary printed by
``tools/analysis/get_flops.py``."""
from typing import Dict, List


def fmt(x: float, unit: str = '') -> str:
    """``x`` with a K / M / G / T suffix (three decimals), or as an int below 1000."""
    for div, suffix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(x) >= div:
            return f'{x / div:.3f}{suffix}{unit}'
    return f'{int(x)}{unit}'


def module_table(model, params: Dict[str, int], flops: Dict[str, int],
                 op_flops: Dict[str, int], max_depth: int) -> List[dict]:
    """Rows (module, depth, params, analyzer FLOPs, Bi-WKV / Bi-WKV6 FLOPs, total) of the
    modules of ``model`` down to ``max_depth`` that have parameters or FLOPs."""
    rows = []
    for name, _ in model.named_modules():
        depth = 0 if name == '' else name.count('.') + 1
        if depth > max_depth:
            continue
        p, f, b = params.get(name, 0), int(flops.get(name, 0)), int(op_flops.get(name, 0))
        if name and p == 0 and f == 0 and b == 0:
            continue
        rows.append(dict(module=name or 'model', depth=depth, params=p, flops_analyzer=f,
                         flops_bi_wkv=b, flops=f + b))
    return rows


def format_table(rows: List[dict]) -> str:
    """The rows of :func:`module_table` as a Markdown table."""
    head = ('module', '#params', '#FLOPs analyzer', '#FLOPs Bi-WKV', '#FLOPs total')
    lines = [[' ' * r['depth'] + r['module'], fmt(r['params']), fmt(r['flops_analyzer']),
              fmt(r['flops_bi_wkv']) if r['flops_bi_wkv'] else '',
              fmt(r['flops'])] for r in rows]
    widths = [max(len(head[i]), *(len(line[i]) for line in lines)) for i in range(5)]
    out = ['| ' + ' | '.join(h.ljust(w) if i == 0 else h.rjust(w)
                             for i, (h, w) in enumerate(zip(head, widths))) + ' |',
           '|' + '|'.join(':' + '-' * (w + 1) if i == 0 else '-' * (w + 1) + ':'
                          for i, w in enumerate(widths)) + '|']
    for line in lines:
        out.append('| ' + ' | '.join(c.ljust(w) if i == 0 else c.rjust(w)
                                     for i, (c, w) in enumerate(zip(line, widths))) + ' |')
    return '\n'.join(out)


def report(res: dict) -> str:
    """Human-readable summary of a :func:`~mmvrwkv.analysis.flops.get_flops` result."""
    lines = []
    lines.append(f"Config:     {res['config']}")
    lines.append(f"Model:      {res['model']} (default_scope={res['default_scope']!r}); "
                 f"analysed: {res['analysed']}")
    for err in res['fallback_errors']:
        lines.append(f'  (not traceable: {err})')
    lines.append(f"Input:      {res['input_shape']} from {res['shape_source']}")
    lines.append('')
    lines.append(format_table(res['table']))
    lines.append('')
    ops = ', '.join(f'{k} {fmt(v)}' for k, v in sorted(res['by_operator'].items(),
                                                        key=lambda kv: -kv[1]))
    lines.append(f'FLOPs by operator: {ops}')
    if res['bi_wkv_num_calls']:
        groups = '; '.join(f"{g['count']} x (B={g['B']}, T={g['T']}, C={g['C']}"
                           f"{', causal' if g['causal'] else ''})" for g in res['bi_wkv_calls'])
        lines.append(f"Bi-WKV calls: {res['bi_wkv_num_calls']}: {groups}; counted "
                     f"29*B*T*C each = {fmt(res['flops_bi_wkv'])} (the original's constant)")
    elif not res['bi_wkv6_num_calls']:
        lines.append('Bi-WKV calls: none recorded')
    if res['bi_wkv6_num_calls']:
        groups = '; '.join(f"{g['count']} x (B={g['B']}, T={g['T']}, C={g['C']}, "
                           f"head_size={g['head_size']})" for g in res['bi_wkv6_calls'])
        lines.append(f"Bi-WKV6 calls: {res['bi_wkv6_num_calls']}: {groups}; counted "
                     f"7*head_size*B*T*C each = {fmt(res['flops_bi_wkv6'])} (one node per "
                     'call: its portable backend is not traced)')
    skipped = ', '.join(f'{k.replace("aten::", "")} x{v}' for k, v in
                        sorted(res['skipped_ops'].items(), key=lambda kv: -kv[1]))
    lines.append(f'Not counted (element-wise/data movement): {skipped or "none"}')
    conv = ('mmcv (1 MAC = 1 FLOP for linear/matmul/conv; conv bias +1/output; norms 2 per '
            'element with affine; pooling 1/input, interpolation 1/output element)'
            if res['convention'] == 'mmcv' else
            "fvcore (mmengine FlopAnalyzer defaults: 1 MAC = 1 FLOP, no conv bias, norms 5 "
            'per element with affine, bilinear 4/output)')
    lines.append(f'Convention: {conv}; per image (batch 1).')
    lines.append('')
    lines.append(f"Params: {res['params'] / 1e6:.2f} M ({res['params']:,})")
    ops = [('Bi-WKV', res['flops_bi_wkv']), ('Bi-WKV6', res['flops_bi_wkv6'])]
    ops = [(n, f) for n, f in ops if f] or ops[:1]
    lines.append(f"FLOPs:  {res['flops'] / 1e9:.2f} G ({res['flops']:,}) = analyzer "
                 f"{res['flops_analyzer'] / 1e9:.3f} G"
                 + ''.join(f' + {n} {f / 1e9:.3f} G' for n, f in ops))
    lines.append(f"Time:   build {res['time_build_s']:.1f} s, analysis "
                 f"{res['time_analysis_s']:.1f} s")
    return '\n'.join(lines)
