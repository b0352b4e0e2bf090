"""The benchmarks' timer: warm-up calls, then timed calls (CUDA events on a GPU,
``time.perf_counter`` on the CPU) until a repeat count or a time budget is reached, and the
statistics of them (median, minimum, spread)."""
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch


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
