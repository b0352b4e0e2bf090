"""Peak memory of a measurement, and out-of-memory errors.

CPU: the resident-set high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``)
above a baseline taken after ``gc`` and ``malloc_trim``: a proxy, torch keeps no CPU
allocator statistics. CUDA: ``torch.cuda.max_memory_allocated`` above the allocation at the
baseline.
"""
import ctypes
import gc
import re
from typing import Optional, Union

import torch

_PROC_STATUS = '/proc/self/status'
_CLEAR_REFS = '/proc/self/clear_refs'


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
