"""What a measurement ran on: the environment record a benchmark stores in its JSON, the
device label of its plots, and a warning when a CPU run shared a busy machine."""
import os
import platform
from typing import Any, Iterable, Mapping, Optional

import torch


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
