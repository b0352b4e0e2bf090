"""How a benchmark reports: a right-aligned text table, the JSON document (``--json``) and
the plot (``--plot``), each said on stdout when written."""
import argparse
import json
import os
import os.path as osp
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union


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
