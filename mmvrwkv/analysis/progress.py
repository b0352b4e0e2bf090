"""A text progress bar on stderr for the benchmarks' sweeps (no dependency on tqdm)."""
import sys
import time
from typing import Optional, TextIO


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
